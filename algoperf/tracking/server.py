"""Start and stop a local ``mlflow server``; links into its dashboard.

Many processes writing one SQLite file lock each other out, so a campaign that runs
trials in several processes logs over HTTP to one server: :func:`ensure_server_for_workers`
starts one over a SQLite store (and passes other URIs through). ``algoperf ui`` starts
one over the local store for a person to look at.

The server runs in its own process group, so stopping it also ends the uvicorn workers
it forks. MLflow's background job runner (GenAI scorer jobs: four extra processes) is
turned off unless the environment asks for it: a benchmark machine needs its cores.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from algoperf.tracking.uri import (
    TrackingError,
    display_uri,
    is_http,
    local_artifacts_dir,
    sqlite_path,
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def runs_page_url(base_url: str, experiment_id: str | None, view: str | None = None) -> str:
    """The dashboard's runs table of an experiment (MLflow 3.17 would open its GenAI view),
    in the shared view ``view`` (:mod:`algoperf.tracking.view`) when given."""
    base = base_url.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning" + (f"&viewStateShareKey={view}" if view else "")


def server_is_up(url: str, timeout: float = 2.0) -> bool:
    """Whether an MLflow server answers ``GET /health`` at ``url``."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


class MlflowServer:
    """One ``mlflow server`` process over a backend store, on ``host:port``.

    ``artifacts_destination`` is where proxied artifacts (``mlflow-artifacts:/`` URIs) are
    stored; for a local SQLite store it defaults to the ``mlartifacts`` folder beside the
    database, where direct (server-less) logging puts them too.
    """

    def __init__(
        self,
        backend_store_uri: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        artifacts_destination: str | Path | None = None,
        workers: int = 1,
        log_path: str | Path | None = None,
    ):
        self.backend_store_uri = backend_store_uri
        self.host = host
        self.port = port or free_port(host if host != "0.0.0.0" else "127.0.0.1")
        if artifacts_destination is None:
            local = local_artifacts_dir(backend_store_uri)
            artifacts_destination = local if local is not None else Path.cwd() / "mlartifacts"
        self.artifacts_destination = str(artifacts_destination)
        self.workers = workers
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", self.artifacts_destination,
            "--host", self.host, "--port", str(self.port), "--workers", str(self.workers),
            # The dashboard polls; an access-log line per request would bury real errors.
            "--uvicorn-opts", "--no-access-log",
        ]

    def start(self, timeout: float = 180.0) -> MlflowServer:
        """Start the server and wait until it answers (first start migrates the database)."""
        if port_in_use(self.port, "127.0.0.1" if self.host == "0.0.0.0" else self.host):
            raise TrackingError(f"port {self.port} is already in use: pick another one with --port")
        path = sqlite_path(self.backend_store_uri)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        Path(self.artifacts_destination).mkdir(parents=True, exist_ok=True)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="algoperf-mlflow-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = dict(os.environ)
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TrackingError(
                    f"mlflow server over {display_uri(self.backend_store_uri)} exited with status "
                    f"{self.process.returncode}; its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if server_is_up(self.url, timeout=1.0):
                return self
            time.sleep(0.3)
        self.stop()
        raise TrackingError(
            f"mlflow server on {self.url} did not answer within {timeout:.0f} s; "
            f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:] if self.log_path else ""
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self) -> int:
        """Block until the server exits; its exit status."""
        return self.process.wait() if self.process else 0

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and the workers it forked (its whole process group)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # uvicorn's worker may outlive the parent for a moment: make sure the group is gone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> MlflowServer:
        return self if self.running() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerHandle(Protocol):
    def stop(self) -> None: ...


class _NoServer:
    """Nothing was started: stopping does nothing."""

    def stop(self) -> None:
        pass


def ensure_server_for_workers(
    uri: str, *, host: str = "127.0.0.1", port: int | None = None, advertise_host: str | None = None
) -> tuple[str, ServerHandle]:
    """The URI that trials in many processes should log to, and how to stop what started.

    * http(s) URIs: one server already; returned as they are.
    * SQLite: one file cannot take writes from many processes, so a local ``mlflow server``
      is started over it (on ``host:port``, a free port by default); workers log to its
      http URI. Call ``handle.stop()`` when the campaign is done. For workers on other
      machines, pass ``host="0.0.0.0"`` and ``advertise_host`` = this machine's address.
    * Other databases (PostgreSQL, MySQL) take concurrent writers: returned as they are.
    """
    if is_http(uri) or sqlite_path(uri) is None:
        return uri, _NoServer()
    server = MlflowServer(uri, host=host, port=port).start()
    address = advertise_host or ("127.0.0.1" if host == "0.0.0.0" else host)
    return f"http://{address}:{server.port}", server
