"""The compose stack of docker/deploy_check.py: start it, drive it from this host, read it back.

Everything here talks to the stack the way docs/deployment.md tells a lab to: the published
loopback ports, the Ray token file, MLflow user names and passwords.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKER_DIR = REPO / "docker"
SECRET_NAMES = ("postgres_password", "mlflow_admin_password", "mlflow_flask_secret_key",
                "mlflow_worker_password", "ray_auth_token")
SERVICES = ("postgres", "mlflow", "ray-head", "ray-worker")
PROJECT = "algoperf-check"
LAPTOP_USER = "deploy-check-laptop"
WORKER_USER = "algoperf-worker"
EXPERIMENTS = Path("/data/experiments")  # the shared volume, inside the Ray containers
# A learning rate too small to reach mnist1d's targets: the trial runs to --max-steps,
# long enough to be killed mid-way whatever the machine's speed.
SLOW_HPARAMS = {"learning_rate": 1e-5, "one_minus_beta1": 0.1, "beta2": 0.999, "weight_decay": 0.0,
                "warmup_factor": 0.05, "dropout_rate": 0.0, "label_smoothing": 0.0}
HOSTS_LINE = "127.0.0.1 mlflow  # algoperf deploy-check (removed when it ends)"


class CheckFailed(Exception):
    """A deploy-check step that did not do what it should; the message says what happened."""


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600, what: str | None = None, show: bool = False, replace_env: bool = False) -> subprocess.CompletedProcess:
    """Run a command; with ``check``, a non-zero exit is a CheckFailed naming ``what``."""
    full_env = dict(env or {}) if replace_env else {**os.environ, **(env or {})}
    try:
        done = subprocess.run(argv, cwd=cwd, env=full_env, text=True, timeout=timeout,
                              stdout=None if show else subprocess.PIPE, stderr=None if show else subprocess.PIPE)
    except subprocess.TimeoutExpired as e:
        raise CheckFailed(f"{what or argv[0]}: no answer after {timeout:.0f} s") from e
    except FileNotFoundError as e:
        raise CheckFailed(f"{argv[0]} is not installed ({e})") from e
    if check and done.returncode != 0:
        tail = ((done.stdout or "") + (done.stderr or ""))[-3000:]
        raise CheckFailed(f"{what or ' '.join(argv[:3])} exited with {done.returncode}:\n{tail}")
    return done


def run_ray_client(argv: list[str], env: dict[str, str], what: str, attempts: int = 3, **kwargs) -> subprocess.CompletedProcess:
    """A command that connects through Ray Client, tried again when the head's client proxy
    gives up starting its per-connection server (`Initialization failure from server`: Ray
    2.60 on a busy head, docs/deployment.md step 6); any other failure counts at once."""
    for attempt in range(1, attempts + 1):
        done = run(argv, env=env, what=what, check=False, replace_env=True, **kwargs)
        if done.returncode == 0 or "Initialization failure from server" not in done.stderr or attempt == attempts:
            break
        print(f"deploy-check: {what}: Ray Client's server did not start on the head (attempt {attempt}); trying again", flush=True)
        time.sleep(10)
    if done.returncode != 0:
        raise CheckFailed(f"{what} exited with {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def docker_client() -> str:
    """Debian's client has BuildKit built in; a newer one without buildx refuses DOCKER_BUILDKIT=1."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def ensure_engine(docker: str, log: Path = Path("/tmp/algoperf-dockerd.log")) -> None:
    """A Docker engine that answers; start dockerd (and say so) when none does."""
    if run([docker, "info"], check=False, timeout=60).returncode == 0:
        return
    if shutil.which("dockerd") is None:
        raise CheckFailed("no Docker engine answers and dockerd is not installed: apt-get install docker.io docker-compose")
    if os.geteuid() != 0:
        raise CheckFailed("no Docker engine answers and this is not root: start dockerd (or add yourself to the docker group)")
    with log.open("a") as handle:
        process = subprocess.Popen(["dockerd"], stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"deploy-check: no Docker engine was running: started dockerd (pid {process.pid}, log {log}); "
          "it keeps running afterwards (its layer cache makes the next check fast)", flush=True)
    deadline = time.monotonic() + 90
    while run([docker, "info"], check=False, timeout=30).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise CheckFailed(f"dockerd did not come up; see {log}")
        time.sleep(1)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_status(url: str, **kwargs) -> int | None:
    import requests

    try:
        return requests.get(url, timeout=30, **kwargs).status_code
    except requests.RequestException:
        return None


def image_size(docker: str, tag: str) -> str:
    done = run([docker, "image", "inspect", "-f", "{{.Size}}", tag], check=False)
    return f"{int(done.stdout) / 1e9:.2f} GB" if done.returncode == 0 else "?"


@contextlib.contextmanager
def as_mlflow_user(user: str, password: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@contextlib.contextmanager
def mlflow_name_on_this_host() -> Iterator[None]:
    """`mlflow` names 127.0.0.1 here as it names the MLflow container inside the stack.

    A driver on this host passes its tracking URI to the trials on the workers, so one URL
    must reach MLflow from both sides (docs/deployment.md, step 6): a line in /etc/hosts
    for the time of the check, unless the name resolves already.
    """
    try:
        address = socket.gethostbyname("mlflow")
    except OSError:
        address = None
    if address == "127.0.0.1":
        yield
        return
    if address is not None:
        raise CheckFailed(f"the name 'mlflow' resolves to {address} on this host; the laptop campaign needs it to be 127.0.0.1")
    hosts = Path("/etc/hosts")
    try:
        original = hosts.read_text()
        hosts.write_text(original + ("" if original.endswith("\n") else "\n") + HOSTS_LINE + "\n")
    except OSError as e:
        raise CheckFailed(f"cannot add '127.0.0.1 mlflow' to /etc/hosts ({e}); add it yourself and run again") from e
    print("deploy-check: added '127.0.0.1 mlflow' to /etc/hosts for the laptop campaign", flush=True)
    try:
        yield
    finally:
        lines = [line for line in hosts.read_text().splitlines() if line != HOSTS_LINE]
        hosts.write_text("\n".join(lines) + "\n")


class Stack:
    """docker/compose.yml + compose.check.yml as project `algoperf-check` on free loopback ports."""

    def __init__(self, docker: str, work: Path, secrets: dict[str, str], postgres_image: str,
                 mlflow_port: int, client_port: int, dashboard_port: int):
        self.docker, self.work, self.secrets = docker, work, secrets
        self.laptop_password = uuid.uuid4().hex  # a person's MLflow password (made by the admin in step 4)
        self.mlflow_local = f"http://127.0.0.1:{mlflow_port}"
        self.mlflow_shared = f"http://mlflow:{mlflow_port}"  # the same server, as the containers name it
        self.client = f"ray://127.0.0.1:{client_port}"
        self.dashboard = f"http://127.0.0.1:{dashboard_port}"
        self.env = {
            "ALGOPERF_SECRETS_DIR": str(work / "secrets"), "ALGOPERF_BIND": "127.0.0.1",
            "MLFLOW_PORT": str(mlflow_port), "RAY_CLIENT_PORT": str(client_port), "RAY_DASHBOARD_PORT": str(dashboard_port),
            "POSTGRES_IMAGE": postgres_image, "ALGOPERF_CPU_IMAGE": "algoperf:cpu", "ALGOPERF_WORKER_IMAGE": "algoperf:cpu",
            "MLFLOW_WORKERS": "1", "RAY_HEAD_SHM_SIZE": "1gb", "RAY_WORKER_SHM_SIZE": "2gb",
        }
        # An empty env file: a deployment's docker/.env must not change what is checked.
        (work / "check.env").write_text("")
        (work / "home").mkdir()  # the laptop's HOME: no ~/.ray/auth_token of this machine's own Ray

    def compose_argv(self, *args: str) -> list[str]:
        return ["docker-compose", "--env-file", str(self.work / "check.env"), "-p", PROJECT,
                "-f", str(DOCKER_DIR / "compose.yml"), "-f", str(DOCKER_DIR / "compose.check.yml"), *args]

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        return run(self.compose_argv(*args), env=self.env, timeout=timeout, check=check, what=f"docker-compose {args[0]}")

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).stdout.strip()
        if not cid:
            raise CheckFailed(f"no container for service {service}")
        return cid

    def inspect(self, container: str, template: str) -> str:
        return run([self.docker, "inspect", "-f", template, container]).stdout.strip()

    def up(self, timeout_s: float = 420) -> None:
        # What an interrupted earlier check left (containers, volumes) goes first.
        self.compose("down", "-v", "--remove-orphans", "--timeout=10", timeout=300)
        print("deploy-check: docker-compose up (postgres, mlflow, ray-head, ray-worker) ...", flush=True)
        self.compose("up", "-d", "--no-build", timeout=timeout_s)
        self.wait_healthy(SERVICES, timeout_s)

    def wait_healthy(self, services: tuple[str, ...], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            states = {s: self.inspect(self.container(s), "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}")
                      for s in services}
            if all(state == "running/healthy" for state in states.values()):
                return
            if time.monotonic() > deadline:
                raise CheckFailed(f"services not healthy after {timeout_s:.0f} s: {states}")
            time.sleep(3)

    def dump_logs(self) -> None:
        done = self.compose("logs", "--no-color", "--tail=60", check=False, timeout=120)
        print(done.stdout[-12000:], file=sys.stderr)

    def down(self) -> None:
        print("deploy-check: docker-compose down -v ...", flush=True)
        self.compose("down", "-v", "--remove-orphans", "--timeout=20", timeout=300, check=False)

    def check_ports_on_loopback(self) -> None:
        published = {}
        for service in SERVICES:
            ports = json.loads(self.inspect(self.container(service), "{{json .NetworkSettings.Ports}}")) or {}
            published[service] = sorted(f"{b['HostIp']}:{b['HostPort']}" for bindings in ports.values() if bindings for b in bindings)
        wrong = {s: p for s, p in published.items() if any(not b.startswith("127.0.0.1:") for b in p)}
        if wrong or published["postgres"] or published["ray-worker"]:
            raise CheckFailed(f"published ports not on loopback only, or services published that should not be: {published}")
        print(f"deploy-check: published ports, all on 127.0.0.1: {published}", flush=True)

    def laptop_env(self) -> dict[str, str]:
        """A campaign driver's environment as docs/deployment.md sets it up, and nothing else."""
        return {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.work / "home"), "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.work / "secrets" / "ray_auth_token"),
            "MLFLOW_TRACKING_USERNAME": LAPTOP_USER, "MLFLOW_TRACKING_PASSWORD": self.laptop_password,
        }

    def create_mlflow_users(self) -> None:
        """docs/deployment.md step 4: the workers' user (admin) and one person's user."""
        from mlflow.server import get_app_client

        with as_mlflow_user("admin", self.secrets["mlflow_admin_password"]):
            users = get_app_client("basic-auth", tracking_uri=self.mlflow_local)
            users.create_user(WORKER_USER, self.secrets["mlflow_worker_password"])
            users.update_user_admin(WORKER_USER, True)
            users.create_user(LAPTOP_USER, self.laptop_password)

    # --- campaigns ----------------------------------------------------------------------
    def trial_dir(self, experiment: str) -> Path:
        return EXPERIMENTS / experiment / "mnist1d_jax" / "trial_1"

    def head(self) -> str:
        if not getattr(self, "_head", None):  # one container for the stack's life (the head is not killed)
            self._head = self.container("ray-head")
        return self._head

    def read_in_head(self, path: Path) -> str | None:
        done = run([self.docker, "exec", self.head(), "cat", str(path)], check=False)
        return done.stdout if done.returncode == 0 else None

    def list_in_head(self, path: Path) -> list[str]:
        done = run([self.docker, "exec", self.head(), "ls", "-1", str(path)], check=False)
        return done.stdout.split() if done.returncode == 0 else []

    def job_status(self, job_id: str) -> str:
        import requests

        reply = requests.get(f"{self.dashboard}/api/jobs/{job_id}", timeout=30,
                             headers={"Authorization": f"Bearer {self.secrets['ray_auth_token']}"})
        reply.raise_for_status()
        return reply.json()["status"]

    def job_logs(self, job_id: str) -> str:
        import requests

        reply = requests.get(f"{self.dashboard}/api/jobs/{job_id}/logs", timeout=30,
                             headers={"Authorization": f"Bearer {self.secrets['ray_auth_token']}"})
        return reply.json().get("logs", "") if reply.ok else f"(no logs: HTTP {reply.status_code})"

    def campaign_as_job_with_worker_killed(self, experiment: str, max_steps: int, label: str) -> None:
        """A Ray job's campaign; the worker container is killed after the trial's first checkpoint."""
        from algoperf.runner.checkpoint import checkpoint_dir

        job_id = f"deploy-check-{uuid.uuid4().hex[:8]}"
        run([str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", self.dashboard, "--submission-id", job_id,
             "--no-wait", "--", "algoperf", "run", "--submission", "nadamw", "--workload", "mnist1d",
             "--max-steps", str(max_steps), "--hparams", json.dumps(SLOW_HPARAMS),
             "--hardware", f"cpu:1@{label}", "--experiment-dir", str(EXPERIMENTS),
             "--experiment-name", experiment], env=self.laptop_env(), replace_env=True, what="ray job submit")
        print(f"deploy-check: submitted Ray job {job_id}; waiting for the trial's first checkpoint ...", flush=True)
        trial = self.trial_dir(experiment)
        worker = self.container("ray-worker")
        deadline = time.monotonic() + 600
        while not self.list_in_head(checkpoint_dir(trial)):
            status = self.job_status(job_id)
            if status in ("SUCCEEDED", "FAILED", "STOPPED") or time.monotonic() > deadline:
                raise CheckFailed(f"job {job_id} is {status} and the trial never saved a checkpoint to kill it after")
            time.sleep(1)
        if self.read_in_head(trial / "trial_result.json") is not None:
            raise CheckFailed(f"the trial finished before the worker could be killed: raise --max-steps (now {max_steps})")
        restarts = int(self.inspect(worker, "{{.RestartCount}}"))
        # SIGKILL to the container's first process from the host: the container dies as on a
        # crash or an OOM kill. (`docker kill` would count as a manual stop: no restart.)
        os.kill(int(self.inspect(worker, "{{.State.Pid}}")), signal.SIGKILL)
        print(f"deploy-check: killed the ray-worker container after the checkpoint at step "
              f"{self.list_in_head(checkpoint_dir(trial))}; waiting for its restart ...", flush=True)
        deadline = time.monotonic() + 120
        while int(self.inspect(worker, "{{.RestartCount}}")) <= restarts:
            if time.monotonic() > deadline:
                raise CheckFailed("the killed ray-worker container was not restarted (restart: unless-stopped)")
            time.sleep(1)
        self.wait_healthy(("ray-worker",), 300)
        deadline = time.monotonic() + 900
        while (status := self.job_status(job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            if time.monotonic() > deadline:
                raise CheckFailed(f"job {job_id} still {status} after 15 min")
            time.sleep(3)
        if status != "SUCCEEDED":
            raise CheckFailed(f"job {job_id} {status}:\n{self.job_logs(job_id)[-4000:]}")
        metas = sorted(n for n in self.list_in_head(trial) if n.startswith("meta_data_"))
        result = json.loads(self.read_in_head(trial / "trial_result.json") or "{}")
        if len(metas) < 2:
            raise CheckFailed(f"the trial did not resume after the kill (meta files {metas}, result {result}); "
                              f"the job's log:\n{self.job_logs(job_id)[-4000:]}")
        steps = [int(float(row["global_step"])) for row in csv.DictReader(io.StringIO(self.read_in_head(trial / "eval_measurements.csv") or ""))]
        if len(steps) != len(set(steps)) or steps != sorted(steps):
            raise CheckFailed(f"eval_measurements.csv has duplicate or unordered steps after the resume: {steps}")
        runs = self.trial_runs(experiment)
        duplicates = self.duplicate_metric_steps(runs[0].info.run_id)
        if duplicates:
            raise CheckFailed(f"MLflow holds duplicate rows for the resumed trial (metric: steps): {duplicates}")
        print(f"deploy-check: Ray job {job_id} SUCCEEDED; the trial resumed ({metas}), {result.get('status')} at step "
              f"{result.get('global_step')}; {len(steps)} eval rows and MLflow's histories without duplicates", flush=True)

    def campaign_from_laptop(self, experiment: str, label: str) -> None:
        """`algoperf run --address ray://...` from this host, logging to the stack's MLflow."""
        with mlflow_name_on_this_host():
            done = run_ray_client([sys.executable, "-m", "algoperf.cli", "run", "--submission", "nadamw", "--workload", "mnist1d",
                                   "--max-steps", "300", "--address", self.client, "--hardware", f"cpu:1@{label}",
                                   "--tracking-uri", self.mlflow_shared, "--experiment-dir", str(EXPERIMENTS),
                                   "--experiment-name", experiment, "--json"],
                                  self.laptop_env(), "algoperf run --address (laptop)", cwd=REPO, timeout=900)
        rows = json.loads(done.stdout[done.stdout.index("["):])
        if [r["status"] for r in rows] not in (["reached_target"], ["missed"]):
            raise CheckFailed(f"the laptop campaign's trial: {rows}")
        meta = json.loads(self.read_in_head(self.trial_dir(experiment) / "meta_data_0.json") or "{}")
        if label not in meta.get("scheduler", {}).get("ray_resources", {}):
            raise CheckFailed(f"the laptop campaign's trial did not run on the labelled worker: {meta.get('scheduler')}")
        [trial] = self.trial_runs(experiment)
        if trial.data.tags.get("algoperf.status") != rows[0]["status"]:
            raise CheckFailed(f"MLflow's trial run says {trial.data.tags.get('algoperf.status')}, the driver {rows[0]['status']}")
        print(f"deploy-check: laptop campaign {rows[0]['status']} at step {rows[0]['global_step']} on the worker; "
              "its runs are in MLflow", flush=True)

    # --- reading MLflow back --------------------------------------------------------------
    def trial_runs(self, experiment: str) -> list:
        """The experiment's trial runs, read through the API as the laptop's user."""
        from mlflow import MlflowClient

        env = self.laptop_env()
        with as_mlflow_user(env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]):
            client = MlflowClient(tracking_uri=self.mlflow_local)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise CheckFailed(f"no MLflow experiment {experiment!r}")
            runs = client.search_runs([found.experiment_id], "tags.`algoperf.kind` = 'trial'")
        if len(runs) != 1 or "validation/accuracy" not in runs[0].data.metrics:
            raise CheckFailed(f"MLflow experiment {experiment!r}: expected one trial run with validation/accuracy, got "
                              f"{[(r.info.run_id, sorted(r.data.metrics)) for r in runs]}")
        return runs

    def duplicate_metric_steps(self, run_id: str) -> dict[str, list[int]]:
        from mlflow import MlflowClient

        env = self.laptop_env()
        with as_mlflow_user(env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]):
            client = MlflowClient(tracking_uri=self.mlflow_local)
            duplicates = {}
            for key in client.get_run(run_id).data.metrics:
                steps = [m.step for m in client.get_metric_history(run_id, key)]
                if len(steps) != len(set(steps)):
                    duplicates[key] = sorted(s for s in set(steps) if steps.count(s) > 1)
        return duplicates
