"""MLflow tracking without a server: URIs, the live observer, resume, a store that is
down, import of AlgoPerf-format logs, read-back for scoring, CLI errors.

Everything here writes a SQLite store directly (one per module; a fresh experiment per
test); tests/test_tracking_server.py covers real servers, a real trial and the dashboard.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from algoperf.cli import app
from algoperf.runner.trial_log import TrialWriter
from algoperf.runner.types import TrialConfig, TrialResult
from algoperf.scoring.logs import read_logs
from algoperf.scoring.profile import ScoringOptions, score_records
from algoperf.scoring.targets import targets_from_dict
from algoperf.tracking import (
    TrackerFactory,
    TrackingError,
    ensure_server_for_workers,
    import_logs,
    read_campaign,
    resolve_tracking_uri,
)
from algoperf.tracking.server import free_port

REPO = Path(__file__).resolve().parents[1]
NADAMW = REPO / "submissions" / "nadamw" / "submission.py"


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One SQLite store for the module (creating one costs seconds of migrations)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def name() -> str:
    return f"exp-{uuid.uuid4().hex[:8]}"


def _meta(config: TrialConfig, preemption_count: int = 0, resumed_from_step: int | None = None) -> dict:
    return {
        "workload": config.workload, "submission": "nadamw", "submission_path": str(NADAMW),
        "submission_hash": "abc123", "ruleset": config.ruleset, "seed": config.seed,
        "study": config.study_index, "trial": config.trial_index, "framework": "jax",
        "hardware": {"platform": "cpu", "device_kind": "cpu", "device_count": 1, "cpu_model": "Test CPU",
                     "cpu_count": 2, "gpu_driver": None, "hostname": "testhost"},
        "hardware_label": "cpu:2", "versions": {"python": "3.11", "jax": "0.10.2", "algoperf": "0.1.0"},
        "algoperf_git_commit": "deadbeef", "submission_git_commit": "deadbeef", "batch_size": 128,
        "preemption_count": preemption_count, "resumed_from_step": resumed_from_step,
    }


def _row(step: int, seconds: float, accuracy: float) -> dict:
    return {"global_step": step, "accumulated_submission_time": seconds, "accumulated_eval_time": 0.1 * step,
            "validation/accuracy": accuracy, "validation/loss": 1.0 - accuracy, "test/accuracy": accuracy,
            "train/loss": 1.5 - accuracy, "score": seconds, "preemption_count": 0}


def _result(config: TrialConfig, status: str, steps: int, ttr: float | None, error: str | None = None) -> TrialResult:
    return TrialResult(
        status=status, stop_reason="targets_reached" if ttr else "max_steps", time_to_result=ttr,
        global_step=steps, accumulated_submission_time=ttr or 1.0, accumulated_eval_time=0.1,
        accumulated_logging_time=0.01, total_duration=2.0, num_evals=3, best_validation=0.9,
        trial_dir=str(config.path), workload=config.workload, submission="nadamw", seed=config.seed, error=error,
    )


def _play(observer, config: TrialConfig, rows: list[dict], meta: dict, submission_rows=(), result=None) -> None:
    """Drive an observer as run_trial does, writing the trial folder as it goes."""
    log = TrialWriter(config.path)
    log.write_hparams(config.hyperparameters)
    log.write_meta(meta, meta.get("preemption_count", 0))
    observer.on_start(config, meta)
    for row in rows:
        log.append_eval(row)
        observer.on_eval(row["global_step"], row)
        drained = [r for r in submission_rows if r[0] <= row["global_step"]]
        log.append_submission_metrics(drained)
        observer.on_submission_metrics(drained)
        submission_rows = [r for r in submission_rows if r[0] > row["global_step"]]
    if result is not None:
        log.write_result(result.to_dict())
        observer.on_end(result)


def _config(tmp_path: Path, name: str, **kw) -> TrialConfig:
    defaults = dict(workload="mnist1d", submission=NADAMW, hyperparameters={"learning_rate": 0.003, "beta2": 0.999},
                    seed=7, experiment_dir=tmp_path / "exp", experiment_name=name, trial_index=1, study_index=None)
    defaults.update(kw)
    return TrialConfig(**defaults)


def _trial_runs(client: MlflowClient, name: str):
    exp = client.get_experiment_by_name(name)
    return exp, client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'trial'")


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


# --- tracking URI ------------------------------------------------------------------------

def test_tracking_uri_precedence_and_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000/")
    assert resolve_tracking_uri(None) == "http://tracking.example:5000"
    assert resolve_tracking_uri("sqlite:///rel/m.db") == f"sqlite:///{tmp_path / 'rel' / 'm.db'}"
    assert resolve_tracking_uri("runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    pg = "postgresql+psycopg2://u@h:5432/db"
    assert resolve_tracking_uri(pg) == pg
    with pytest.raises(TrackingError, match="file store.*sqlite:///"):
        resolve_tracking_uri("./mlruns")
    with pytest.raises(TrackingError, match="MLFLOW_TRACKING_URI.*file store"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///tmp/mlruns")
        resolve_tracking_uri(None)
    with pytest.raises(TrackingError, match="unknown tracking URI scheme 'ftp'"):
        resolve_tracking_uri("ftp://x")


def test_workers_server_is_only_started_for_sqlite():
    for uri in ("http://127.0.0.1:5000", "postgresql+psycopg2://u@h/db"):
        got, handle = ensure_server_for_workers(uri)
        assert got == uri
        handle.stop()  # a no-op, callable all the same


def test_cli_run_refuses_a_file_store_before_training(tmp_path):
    result = CliRunner().invoke(app, ["run", "-s", "nadamw", "-w", "mnist1d", "--experiment-dir", str(tmp_path),
                                      "--tracking-uri", str(tmp_path / "mlruns")])
    assert result.exit_code == 2
    assert "file store" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "nadamw_external").exists()  # nothing trained


# --- live logging ----------------------------------------------------------------------

def test_observer_records_experiment_study_trial_metrics_and_artifacts(tmp_path, store_uri, name, monkeypatch):
    sizes: list[int] = []
    real_log_batch = MlflowClient.log_batch

    def spy(self, run_id, metrics=(), params=(), tags=(), **kw):
        sizes.append(len(metrics))
        assert len(params) + len(tags) <= 100
        return real_log_batch(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", spy)
    config = _config(tmp_path, name)
    rows = [_row(1, 0.5, 0.3), _row(100, 5.0, 0.8), _row(200, 9.5, 0.95)]
    per_step = [(s, "grad_norm", 1.0 / s) for s in range(1, 201)] + [(s, "learning_rate", 1e-3) for s in range(1, 201)]
    per_step += [(s, f"aux/{k}", float(s)) for k in range(5) for s in range(1, 201)]  # 1000 more: split batches
    result = _result(config, "reached_target", 200, 9.5)
    factory = TrackerFactory(store_uri, name)
    _play(factory.observer_for(config), config, rows, _meta(config), per_step, result)

    client = MlflowClient(store_uri)
    exp, trials = _trial_runs(client, name)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = trials
    studies = client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'study'")
    assert [s.info.run_id for s in studies] == [run.data.tags["mlflow.parentRunId"]]
    assert studies[0].data.tags["algoperf.study"] == "0" and studies[0].info.status == "FINISHED"
    assert studies[0].data.metrics["time_to_target/mnist1d"] == pytest.approx(9.5)
    assert run.info.run_name == "mnist1d trial 1" and run.info.status == "FINISHED"
    assert run.data.params == {"learning_rate": "0.003", "beta2": "0.999"}
    tags = run.data.tags
    expected = {"algoperf.workload": "mnist1d", "algoperf.submission": "nadamw", "algoperf.submission_hash": "abc123",
                "algoperf.ruleset": "external", "algoperf.study": "0", "algoperf.trial": "1", "algoperf.seed": "7",
                "algoperf.status": "reached_target", "algoperf.trial_dir": str(config.path.resolve()),
                "algoperf.hardware": "cpu:2", "algoperf.hardware.cpu_model": "Test CPU",
                "algoperf.versions.jax": "0.10.2", "algoperf.git_commit": "deadbeef", "algoperf.kind": "trial"}
    assert {k: tags.get(k) for k in expected} == expected
    assert "algoperf.error" not in tags
    for key in ("validation/accuracy", "accumulated_submission_time", "test/accuracy", "score"):
        assert _steps(client, run.info.run_id, key) == [1, 100, 200]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "validation/accuracy")] == [0.3, 0.8, 0.95]
    assert _steps(client, run.info.run_id, "grad_norm") == list(range(1, 201))
    assert _steps(client, run.info.run_id, "aux/4") == list(range(1, 201))
    assert _steps(client, run.info.run_id, "time_to_target") == [200]  # the eval that reached it
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"eval_measurements.csv", "hparams.json", "meta_data_0.json", "trial_result.json", "submission"} <= artifacts
    assert "submission/submission.py" in {a.path for a in client.list_artifacts(run.info.run_id, "submission")}
    assert max(sizes) <= 1000
    assert sum(sizes) == 3 * 9 + len(per_step) + 2  # every value once (+ time to target on both runs)
    assert len([s for s in sizes if s]) <= 8  # batched: not one request per eval row or value


def test_failed_trial_records_status_and_error(tmp_path, store_uri, name):
    config = _config(tmp_path, name)
    error = "ValueError: boom\n" + "Traceback line\n" * 2000  # longer than MLflow's tag limit
    diverged = {**_row(1, 0.5, 0.1), "validation/loss": float("nan"), "train/loss": float("inf")}
    _play(TrackerFactory(store_uri, name).observer_for(config), config, [diverged], _meta(config),
          result=_result(config, "failed", 1, None, error=error))
    client = MlflowClient(store_uri)
    _, (run,) = _trial_runs(client, name)
    assert np.isnan(client.get_metric_history(run.info.run_id, "validation/loss")[0].value)  # kept, not refused
    assert run.info.status == "FAILED" and run.data.tags["algoperf.status"] == "failed"
    assert run.data.tags["algoperf.error"].startswith("ValueError: boom") and "truncated" in run.data.tags["algoperf.error"]


def test_resumed_trial_continues_its_run_without_duplicate_steps(tmp_path, store_uri, name):
    config = _config(tmp_path, name)
    factory = TrackerFactory(store_uri, name)
    first = factory.observer_for(config)
    _play(first, config, [_row(1, 0.5, 0.3), _row(100, 5.0, 0.6)], _meta(config))
    assert first.flush(30)
    first_id = first.run_id
    del first  # killed: no on_end
    # The runner resumes from the checkpoint at step 100 and logs step 100 again.
    second = factory.observer_for(config)
    rows = [_row(100, 5.0, 0.6), _row(200, 9.0, 0.7)]
    _play(second, config, rows, _meta(config, preemption_count=1, resumed_from_step=100),
          result=_result(config, "missed", 200, None))
    client = MlflowClient(store_uri)
    _, runs = _trial_runs(client, name)
    assert [r.info.run_id for r in runs] == [first_id] and second.run_id == first_id
    assert runs[0].info.status == "FINISHED"
    assert _steps(client, first_id, "validation/accuracy") == [1, 100, 200]


def test_trial_started_over_in_an_emptied_folder_gets_a_fresh_run(tmp_path, store_uri, name):
    config = _config(tmp_path, name)
    factory = TrackerFactory(store_uri, name)
    old = factory.observer_for(config)
    _play(old, config, [_row(1, 0.5, 0.3)], _meta(config), result=_result(config, "missed", 1, None))
    new = factory.observer_for(config)
    _play(new, config, [_row(1, 0.4, 0.35)], _meta(config), result=_result(config, "missed", 1, None))
    client = MlflowClient(store_uri)
    _, runs = _trial_runs(client, name)
    assert [r.info.run_id for r in runs] == [new.run_id] != [old.run_id]
    assert [m.value for m in client.get_metric_history(new.run_id, "validation/accuracy")] == [0.35]
    assert client.get_run(old.run_id).info.lifecycle_stage == "deleted"  # recoverable


def test_store_down_the_trial_goes_on_warns_and_import_fills_in(tmp_path, store_uri, name, caplog):
    config = _config(tmp_path, name)
    down = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    observer = TrackerFactory(down, name, retry_timeout_s=6.0).observer_for(config)
    rows = [_row(1, 0.5, 0.3), _row(100, 5.0, 0.8)]
    with caplog.at_level(logging.WARNING, logger="algoperf.tracking"):
        started = time.monotonic()
        _play(observer, config, rows, _meta(config), [(1, "grad_norm", 2.0)])
        # Still retrying in the background while the trial went on: it did not wait out the
        # 6 s of retries (a lower bound on time only; a busy machine makes things slower).
        assert not observer.gave_up
        TrialWriter(config.path).write_result(_result(config, "missed", 100, None).to_dict())
        observer.on_end(_result(config, "missed", 100, None))
        total = time.monotonic() - started
    assert total >= 6.0  # on_end waited out the retries, then gave up
    assert observer.gave_up
    assert "algoperf mlflow import" in caplog.text and str(config.path.parent.parent.resolve()) in caplog.text
    assert len((config.path / "eval_measurements.csv").read_text().splitlines()) == 3  # the source of truth

    report = import_logs(tmp_path / "exp", store_uri)
    assert (report.trials, report.runs_created) == (1, 1)
    again = import_logs(tmp_path / "exp", store_uri)
    assert (again.runs_created, again.metrics_logged) == (0, 0) and again.metrics_present == report.metrics_logged
    client = MlflowClient(store_uri)
    _, (run,) = _trial_runs(client, name)
    assert _steps(client, run.info.run_id, "validation/accuracy") == [1, 100]
    assert _steps(client, run.info.run_id, "grad_norm") == [1]
    assert run.data.tags["algoperf.status"] == "missed" and run.data.params["learning_rate"] == "0.003"


def test_import_completes_a_partly_logged_trial(tmp_path, store_uri, name):
    """Live logging stopped after the first eval; import adds the rest, once."""
    config = _config(tmp_path, name)
    observer = TrackerFactory(store_uri, name).observer_for(config)
    _play(observer, config, [_row(1, 0.5, 0.3)], _meta(config))
    assert observer.flush(30)
    TrialWriter(config.path).append_eval(_row(100, 5.0, 0.8))
    TrialWriter(config.path).write_result(_result(config, "missed", 100, None).to_dict())
    report = import_logs(tmp_path / "exp", store_uri)
    assert report.runs_created == 0 and report.metrics_present > 0
    client = MlflowClient(store_uri)
    _, (run,) = _trial_runs(client, name)
    assert run.info.run_id == observer.run_id
    assert _steps(client, run.info.run_id, "accumulated_submission_time") == [1, 100]
    assert run.info.status == "FINISHED"


def test_deleted_experiment_is_a_clear_error(store_uri, name):
    client = MlflowClient(store_uri)
    client.delete_experiment(client.create_experiment(name))
    with pytest.raises(TrackingError, match=f"{name}.*deleted.*mlflow experiments restore"):
        TrackerFactory(store_uri, name).prepare([])


# --- import of other people's logs and read-back -----------------------------------------

def _algoperf_tree(root: Path) -> Path:
    """A small log tree in AlgoPerf's layout (PyTorch, two studies, two trials)."""
    base = root / "external_tuning" / "someone"
    header = "accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,global_step,preemption_count,score,total_duration,train/loss,validation/accuracy,validation/loss\n"
    for study in (0, 1):
        for trial in (1, 2):
            folder = base / f"study_{study}" / "mnist_pytorch" / f"trial_{trial}"
            folder.mkdir(parents=True)
            lines = [header]
            for i, step in enumerate((1, 500, 1000)):
                t = 10.0 * (i + 1) + study + trial / 10
                lines.append(f"{i},0.0,{t},{step},0,{t},{t + 5},{1 / (i + 1)},{0.5 + 0.2 * i + 0.01 * trial},{1 - 0.2 * i}\n")
            lines.append("7,0.0,99")  # a row cut off by a kill
            (folder / "eval_measurements.csv").write_text("".join(lines))
            (folder / "hparams.json").write_text(json.dumps({"learning_rate": 0.01 * trial, "beta1": 0.9}))
            (folder / "meta_data_0.json").write_text(json.dumps({"torch_version": "2.1.0", "git_commit": "cafe"}))
    return base.parent


def test_import_algoperf_logs_is_idempotent_and_reads_back_for_scoring(tmp_path, store_uri):
    root = _algoperf_tree(tmp_path)
    experiment = f"someone-{uuid.uuid4().hex[:6]}"
    result = CliRunner().invoke(app, ["mlflow", "import", str(root), "--experiment", experiment, "--tracking-uri", store_uri])
    assert result.exit_code == 0, result.output
    assert "Imported 4 trials" in result.output and "4 new runs" in result.output
    again = CliRunner().invoke(app, ["mlflow", "import", str(root), "--experiment", experiment, "--tracking-uri", store_uri])
    assert again.exit_code == 0 and "0 new runs, 0 metric values logged" in again.output

    client = MlflowClient(store_uri)
    exp, trials = _trial_runs(client, experiment)
    studies = client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'study'")
    assert sorted(s.data.tags["algoperf.study"] for s in studies) == ["0", "1"]
    parents = {s.info.run_id: s.data.tags["algoperf.study"] for s in studies}
    assert sorted((parents[r.data.tags["mlflow.parentRunId"]], r.data.tags["algoperf.trial"]) for r in trials) == [
        ("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]
    one = trials[0]
    assert one.data.tags["algoperf.framework"] == "pytorch" and one.data.tags["algoperf.ruleset"] == "external"
    assert one.data.tags["algoperf.versions.torch"] == "2.1.0" and one.data.tags["algoperf.git_commit"] == "cafe"
    assert one.data.params["beta1"] == "0.9"
    assert _steps(client, one.info.run_id, "validation/accuracy") == [1, 500, 1000]

    from_mlflow = read_campaign(store_uri, experiment)
    from_files = read_logs(root / "someone", "external")
    assert len(from_mlflow) == len(from_files) == 4
    key = lambda r: (r.study, r.trial)  # noqa: E731
    for got, want in zip(sorted(from_mlflow, key=key), sorted(from_files, key=key), strict=True):
        assert (got.submission, got.study, got.workload, got.trial, got.ruleset) == (
            want.submission, want.study, want.workload, want.trial, want.ruleset)
        np.testing.assert_allclose(got.times, want.times)
        assert set(got.metrics) == set(want.metrics) == {"validation/accuracy", "validation/loss"}
        for k in got.metrics:
            np.testing.assert_allclose(got.metrics[k], want.metrics[k])
        np.testing.assert_array_equal(got.steps, want.steps)
    # ... so the scoring engine gives the same times to target and score from either source.
    targets = targets_from_dict({"workloads": {"mnist": {"target_metric_name": "accuracy", "validation_target_value": 0.85,
                                                         "max_allowed_runtime_sec": 100}}}, "test")
    options = ScoringOptions(ruleset="external", workloads=("mnist",))
    scored = [score_records(records, targets, options) for records in (from_mlflow, from_files)]
    assert np.isfinite(scored[0].raw_times).all()  # some trials reach 0.85: a real comparison
    np.testing.assert_allclose(scored[0].raw_times, scored[1].raw_times)
    np.testing.assert_allclose(scored[0].score_exact, scored[1].score_exact)


def test_read_campaign_names_what_exists(store_uri):
    with pytest.raises(TrackingError, match="no MLflow experiment named 'nope'"):
        read_campaign(store_uri, "nope")


def test_import_cli_errors_are_one_line(tmp_path, store_uri):
    missing = CliRunner().invoke(app, ["mlflow", "import", str(tmp_path / "none"), "--tracking-uri", store_uri])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    (tmp_path / "odd" / "whatever").mkdir(parents=True)
    odd = CliRunner().invoke(app, ["mlflow", "import", str(tmp_path / "odd"), "--tracking-uri", store_uri])
    assert odd.exit_code == 2 and "unexpected layout" in odd.output and "Traceback" not in odd.output


# --- helpers -----------------------------------------------------------------------------

class _Recorder:
    def __init__(self):
        self.events = []

    def on_start(self, config, meta):
        self.events.append("start")

    def on_eval(self, step, row):
        self.events.append(("eval", step))

    def on_submission_metrics(self, rows):
        self.events.append(("sub", len(rows)))

    def on_end(self, result):
        self.events.append("end")


def test_combine_observers_fans_out_in_order():
    from algoperf.runner.observers import combine_observers

    a, b = _Recorder(), _Recorder()
    assert combine_observers(None, a) is a and combine_observers(None) is None
    both = combine_observers(a, None, b)
    both.on_start(None, {})
    both.on_eval(3, {})
    both.on_submission_metrics([(1, "x", 1.0)])
    both.on_end(None)
    both.attach_progress(lambda: {})  # neither has it: ignored
    assert a.events == b.events == ["start", ("eval", 3), ("sub", 1), "end"]
