"""MLflow tracking against real servers, as a user meets it.

* a real ``mlflow server`` over PostgreSQL (a fresh schema, dropped afterwards; SQLite
  where PostgreSQL is not reachable), started by the test on a free loopback port;
* ``algoperf run`` of short real trials (mnist1d) logging to it: experiment, study run,
  nested trial runs, params, tags, metric histories, artifacts;
* the server going down in the middle of a trial: the trial finishes, the CSV is
  complete, a warning names ``algoperf mlflow import``, which then fills in the rest;
* the server that multi-process campaigns log to, over a SQLite store;
* ``algoperf run`` with the default store (./mlflow.db), then ``algoperf ui`` in the same
  folder and the dashboard in headless Chromium (screenshots in test-output/).

Each test trains or starts a server (10-30 s each on two busy cores): all are slow.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from algoperf.cli import app
from algoperf.runner.trial import run_trial
from algoperf.runner.trial_log import read_evals
from algoperf.runner.types import TrialConfig
from algoperf.scoring.logs import read_logs
from algoperf.tracking import MlflowServer, TrackerFactory, ensure_server_for_workers, read_campaign
from algoperf.tracking.server import free_port, port_in_use, server_is_up

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NADAMW = REPO / "submissions" / "nadamw" / "submission.py"
OUTPUT = REPO / "test-output"
CHROMIUM = Path("/usr/bin/chromium")
PG = dict(host="127.0.0.1", port=5432, user="postgres", dbname="test")


def _postgres_schema() -> tuple[str, object] | None:
    """A fresh schema in the local PostgreSQL (uri, connection), or None if unavailable."""
    try:
        import psycopg2
    except ImportError:
        return None
    try:
        conn = psycopg2.connect(connect_timeout=3, **PG)
    except psycopg2.OperationalError:
        return None
    conn.autocommit = True
    schema = f"algoperf_test_{uuid.uuid4().hex[:10]}"
    conn.cursor().execute(f"CREATE SCHEMA {schema}")
    uri = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{PG['dbname']}?options=-csearch_path%3D{schema}"
    return uri, (conn, schema)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real mlflow server on a free loopback port (PostgreSQL-backed when possible)."""
    folder = tmp_path_factory.mktemp("pgserver")
    pg = _postgres_schema()
    uri = pg[0] if pg else f"sqlite:///{folder / 'mlflow.db'}"
    srv = MlflowServer(uri, artifacts_destination=folder / "artifacts", log_path=folder / "server.log").start()
    srv.backend = "postgresql" if pg else "sqlite"
    yield srv
    srv.stop()
    if pg:
        conn, schema = pg[1]
        conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def campaign(server, tmp_path_factory):
    """`algoperf run` of a short nadamw trial on mnist1d, logged to the server."""
    folder = tmp_path_factory.mktemp("campaign")
    name = _unique("nadamw-mnist1d")
    result = CliRunner().invoke(app, [
        "run", "-s", "nadamw", "-w", "mnist1d", "--max-steps", "10",
        "--experiment-dir", str(folder), "--experiment-name", name, "--tracking-uri", server.url, "--json",
    ])
    assert result.exit_code == 0, result.output
    return {"name": name, "dir": folder / name, "rows": json.loads(result.stdout)}


def test_cli_run_records_experiment_study_nested_trials_and_artifacts(server, campaign, tmp_path):
    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name(campaign["name"])
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (study,) = client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'study'")
    trials = client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'trial'", order_by=["tags.`algoperf.trial` ASC"])
    assert [t.info.run_name for t in trials] == ["nadamw · mnist1d · study 0 · trial 1"]
    for run, row in zip(trials, campaign["rows"], strict=True):
        folder = Path(row["trial_dir"])
        assert run.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert run.data.tags["algoperf.trial_dir"] == str(folder.resolve())
        assert run.data.tags["algoperf.status"] == row["status"] and run.info.status == "FINISHED"
        meta = json.loads((folder / "meta_data_0.json").read_text())
        assert run.data.tags["algoperf.submission_hash"] == meta["submission_hash"]
        assert run.data.tags["algoperf.hardware"] == meta["hardware_label"]
        assert run.data.tags["algoperf.versions.jax"] == meta["versions"]["jax"]
        assert run.data.tags["algoperf.seed"] == str(row["seed"])
        hparams = json.loads((folder / "hparams.json").read_text())
        assert run.data.params == {k: str(v) for k, v in hparams.items()}
        evals = read_evals(folder)
        for key in ("validation/accuracy", "accumulated_submission_time", "train/loss"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [(m.step, m.value) for m in history] == [(int(e["global_step"]), pytest.approx(e[key])) for e in evals]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"eval_measurements.csv", "hparams.json", "meta_data_0.json", "trial_result.json"} <= artifacts
        assert "submission/submission.py" in {a.path for a in client.list_artifacts(run.info.run_id, "submission")}
        got = client.download_artifacts(run.info.run_id, "eval_measurements.csv", str(tmp_path / run.info.run_id))
        assert Path(got).read_bytes() == (folder / "eval_measurements.csv").read_bytes()  # through the server


class _Proxy:
    """A TCP forwarder to the server that can be switched off (the server 'goes down')."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.up = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while self.up:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def down(self) -> None:
        self.up = False
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not)
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()


class _CutAfterFirstEval:
    """Passes events on; once the first eval is in MLflow, takes the server away."""

    def __init__(self, inner, proxy: _Proxy):
        self.inner, self.proxy, self.evals = inner, proxy, 0

    def on_start(self, config, meta):
        self.inner.on_start(config, meta)

    def on_eval(self, step, row):
        self.evals += 1
        self.inner.on_eval(step, row)

    def on_submission_metrics(self, rows):
        self.inner.on_submission_metrics(rows)
        if self.evals == 1 and self.proxy.up:
            assert self.inner.flush(60)
            self.proxy.down()

    def on_end(self, result):
        self.inner.on_end(result)


def test_server_down_mid_trial_then_import_fills_in_without_duplicates(server, tmp_path, caplog):
    name = _unique("down")
    proxy = _Proxy(server.port)
    point = json.loads((NADAMW.parent / "tuning_search_space.json").read_text())[0]
    config = TrialConfig(workload="mnist1d", submission=NADAMW, hyperparameters=point, max_steps=40,
                         experiment_dir=tmp_path, experiment_name=name, checkpoints=False)
    observer = TrackerFactory(proxy.url, name, retry_timeout_s=2.0).observer_for(config)
    with caplog.at_level(logging.WARNING, logger="algoperf.tracking"):
        result = run_trial(config, _CutAfterFirstEval(observer, proxy))
    assert result.error is None and result.num_evals >= 2  # the trial did not notice
    evals = read_evals(config.path)
    assert len(evals) == result.num_evals and int(evals[-1]["global_step"]) == 40  # CSV complete
    assert observer.gave_up and "algoperf mlflow import" in caplog.text
    client = MlflowClient(server.url)
    run = client.get_run(observer.run_id)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "validation/accuracy")] == [1]

    args = ["mlflow", "import", str(tmp_path / name), "--experiment", name, "--tracking-uri", server.url]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "0 new runs" in first.output  # it completed the live run
    history = client.get_metric_history(run.info.run_id, "validation/accuracy")
    assert [(m.step, m.value) for m in history] == [(int(e["global_step"]), pytest.approx(e["validation/accuracy"])) for e in evals]
    run = client.get_run(run.info.run_id)
    assert run.data.tags["algoperf.status"] == result.status and run.info.status == "FINISHED"
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 new runs, 0 metric values logged" in again.output

    # Read back for scoring: the same records as the log reader builds from the folder.
    (from_mlflow,) = read_campaign(server.url, name)
    (from_files,) = read_logs(tmp_path / name)
    assert (from_mlflow.workload, from_mlflow.study, from_mlflow.trial) == (from_files.workload, from_files.study, from_files.trial)
    assert from_mlflow.times.tolist() == pytest.approx(from_files.times.tolist())
    assert from_mlflow.metrics["validation/accuracy"].tolist() == pytest.approx(from_files.metrics["validation/accuracy"].tolist())


# --- the default SQLite store: a server for workers, then the dashboard -------------------

@pytest.fixture(scope="module")
def sqlite_store(campaign, tmp_path_factory):
    """A SQLite store filled through the server that multi-process campaigns log to."""
    folder = tmp_path_factory.mktemp("sqlite-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    http_uri, handle = ensure_server_for_workers(uri)
    try:
        assert http_uri.startswith("http://127.0.0.1:") and server_is_up(http_uri)
        result = CliRunner().invoke(app, ["mlflow", "import", str(campaign["dir"]), "--tracking-uri", http_uri])
        assert result.exit_code == 0, result.output
    finally:
        handle.stop()
    assert not server_is_up(http_uri)
    return {"uri": uri, "folder": folder, "name": campaign["name"]}


def test_workers_server_writes_the_sqlite_store(sqlite_store, campaign):
    records = read_campaign(sqlite_store["uri"], sqlite_store["name"])  # no server needed now
    assert [(r.workload, r.trial) for r in records] == [("mnist1d", 1)]
    (stored,) = (sqlite_store["folder"] / "mlartifacts").rglob("eval_measurements.csv")
    assert stored.read_bytes() == (campaign["dir"] / "mnist1d_jax" / "trial_1" / "eval_measurements.csv").read_bytes()


def _read_url(proc: subprocess.Popen, timeout: float) -> str:
    """The first http URL `algoperf ui` prints on stdout."""
    found: list[str] = []

    def reader():
        for line in proc.stdout:
            if m := re.search(r"http://\S+", line):
                found.append(m.group(0))
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        proc.terminate()
        raise AssertionError(f"`algoperf ui` printed no URL within {timeout} s: {proc.stderr.read()[-2000:]}")
    return found[0]


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    """`algoperf run` with no tracking option, in a fresh folder: two trials, one study."""
    folder = tmp_path_factory.mktemp("default-store")
    name = _unique("local")
    cwd, env_uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(folder)
    try:
        # In this process (a Ray campaign logs through ensure_server_for_workers, tested below).
        result = CliRunner().invoke(app, ["run", "-s", "nadamw", "-w", "mnist1d", "--trials", "2", "--max-steps", "5",
                                          "--experiment-name", name, "--executor", "local"])
    finally:
        os.chdir(cwd)
        if env_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_uri
    assert result.exit_code == 0, result.output
    return {"folder": folder, "name": name, "uri": f"sqlite:///{folder / 'mlflow.db'}", "output": result.output}


def test_cli_run_records_into_the_default_sqlite_store(local_store):
    folder = local_store["folder"]
    assert (folder / "mlflow.db").is_file() and "algoperf ui" in local_store["output"]
    client = MlflowClient(local_store["uri"])
    exp = client.get_experiment_by_name(local_store["name"])
    runs = client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'trial'")
    (study,) = client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'study'")
    assert sorted(r.info.run_name for r in runs) == ["nadamw · mnist1d · study 0 · trial 1", "nadamw · mnist1d · study 0 · trial 2"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {study.info.run_id}
    assert len(list((folder / "mlartifacts").rglob("eval_measurements.csv"))) == 2  # beside the database


@pytest.fixture(scope="module")
def ui(local_store):
    """`algoperf ui` in the folder where `algoperf run` ran, as a user starts it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "algoperf.cli", "ui", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=local_store["folder"],
    )
    try:
        url = _read_url(proc, 240)
        yield {"url": url, "port": port, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert not port_in_use(port)  # the server went with it


def test_ui_prints_the_runs_table_of_the_latest_experiment(ui, local_store):
    client = MlflowClient(local_store["uri"])
    exp = client.get_experiment_by_name(local_store["name"])
    assert ui["url"] == f"http://127.0.0.1:{ui['port']}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey=algoperf"
    (run,) = client.search_runs([exp.experiment_id], "tags.`algoperf.trial` = '1'")
    base = ui["url"].split("/#")[0]
    with urllib.request.urlopen(f"{base}/get-artifact?path=eval_measurements.csv&run_uuid={run.info.run_id}") as r:
        assert r.read().decode().startswith("accumulated_eval_time,")  # artifacts are served


async def _drive_dashboard(url: str, name: str, study: str, trials: list[str], shots: Path) -> dict:
    """Open the runs page in headless Chromium over the DevTools protocol, as a user would:
    find the study run, expand its trials, switch to the chart view; screenshot each."""
    import aiohttp

    profile = Path(tempfile.mkdtemp(prefix="algoperf-chromium-"))
    proc = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1600,1000", "about:blank"],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        port = None
        for line in proc.stderr:
            if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(m.group(1))
                break
        assert port, "chromium did not open its DevTools port"
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        async with aiohttp.ClientSession() as session, session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 10**6))

            async def call(method: str, **params):
                i = next(ids)
                await ws.send_json({"id": i, "method": method, "params": params})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == i:
                        assert "error" not in msg, msg
                        return msg["result"]

            async def js(expr: str):
                return (await call("Runtime.evaluate", expression=expr, returnByValue=True))["result"].get("value")

            async def until(expr: str, what: str, timeout: float = 60):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if await js(expr):
                        return
                    await asyncio.sleep(0.5)
                text = await js("document.body ? document.body.innerText : ''")
                raise AssertionError(f"the dashboard never showed {what}; it shows:\n{text[:3000]}")

            async def shot(path: Path):
                data = (await call("Page.captureScreenshot", format="png"))["data"]
                path.write_bytes(base64.b64decode(data))

            has = "document.body && document.body.innerText.includes({!r})".format
            await call("Page.navigate", url=url)
            await until(has(name), f"the experiment name {name!r}")
            await until(has(study), "the study run")
            # Close the assistant side panel if present: it covers part of the table.
            await js("""(() => { const b = [...document.querySelectorAll('button')].find(
                        x => (x.getAttribute('aria-label') || '') === 'Close'); if (b) b.click(); })()""")
            expanders = await js("""(() => { const b = [...document.querySelectorAll(
                'button[data-component-id*="runnamecellrenderer"]')]; b.forEach(x => x.click()); return b.length; })()""")
            await until(" && ".join(has(t) for t in trials), "the nested trial runs")
            runs_text = await js("document.body.innerText")
            await shot(shots / "mlflow-dashboard-runs.png")
            await js("document.querySelector('input[name=runs-view-mode][value=CHART]').click()")
            search = "document.querySelector('input[placeholder=\"Search metric charts\"]')"
            await until(f"!!{search}", "the chart view")
            # Type the metric into the chart search box (React listens to input events).
            await js(f"""(() => {{ const i = {search};
                const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
                set.call(i, 'validation/accuracy'); i.dispatchEvent(new Event('input', {{bubbles: true}})); }})()""")
            await until("document.querySelectorAll('.js-plotly-plot svg.main-svg').length > 0 && "
                        + has("validation/accuracy"), "a metric chart of validation/accuracy")
            await asyncio.sleep(1.0)  # let the curves draw before the screenshot
            await shot(shots / "mlflow-dashboard-charts.png")
            charts_text = await js("document.body.innerText")
        return {"expanders": expanders, "runs": runs_text, "charts": charts_text}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def test_dashboard_shows_the_experiment_study_nested_trials_and_charts(ui, local_store):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): `apt-get install -y chromium` "
                    "to check the dashboard in a browser; .ci/run installs it")
    pytest.importorskip("aiohttp", reason="aiohttp (a Ray dependency) drives Chromium's DevTools protocol")
    OUTPUT.mkdir(exist_ok=True)
    trials = ["nadamw · mnist1d · study 0 · trial 1", "nadamw · mnist1d · study 0 · trial 2"]
    # MLflow's own view (without algoperf's grouping, tests/test_dashboard.py checks that one):
    # trials nested under their study run.
    plain = ui["url"].split("&viewStateShareKey=")[0]
    seen = asyncio.run(_drive_dashboard(plain, local_store["name"], "nadamw study 0", trials, OUTPUT))
    assert seen["expanders"] >= 1  # the study row can be expanded: it has nested runs
    runs = seen["runs"]
    assert local_store["name"] in runs and "nadamw study 0" in runs
    assert runs.index("nadamw study 0") < runs.index("nadamw · mnist1d · study 0 · trial 1")  # nested under it
    assert "validation/accuracy" in seen["charts"]
    for png in ("mlflow-dashboard-runs.png", "mlflow-dashboard-charts.png"):
        assert (OUTPUT / png).stat().st_size > 10_000  # a real picture, kept for a person to look at
