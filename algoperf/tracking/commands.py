"""The command line of tracking: ``algoperf ui`` and ``algoperf mlflow import``.

Registered by :mod:`algoperf.cli`. MLflow is imported inside the commands only.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from algoperf.tracking.uri import (
    TrackingError,
    display_uri,
    is_http,
    resolve_tracking_uri,
    sqlite_path,
)

console = Console(stderr=True)
stdout = Console()

mlflow_app = typer.Typer(help="MLflow tracking: import AlgoPerf-format logs.", no_args_is_help=True)

TRACKING_URI_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)."


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _resolve(uri: str | None) -> str:
    try:
        return resolve_tracking_uri(uri)
    except TrackingError as e:
        raise _fail(str(e)) from e


@mlflow_app.command("import")
def import_command(
    experiment_dir: Annotated[Path, typer.Argument(help="A folder of trial logs: ours (<experiment>/[study_<k>/]<workload>_jax/trial_<n>) or AlgoPerf's (<submission>/study_<k>/<workload>_<framework>/trial_<n>).")],
    experiment: Annotated[str | None, typer.Option("--experiment", help="MLflow experiment for everything (default: one per submission/experiment folder, named after it).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help=TRACKING_URI_HELP)] = None,
    ruleset: Annotated[str | None, typer.Option(help="external or self, for logs that do not say (default: from the folder name, else external).")] = None,
) -> None:
    """Import trial logs into MLflow (again and again: nothing is duplicated)."""
    from algoperf.tracking.importer import import_logs

    if ruleset not in (None, "external", "self"):
        raise _fail(f"--ruleset must be external or self, not {ruleset!r}")
    uri = _resolve(tracking_uri)
    if not experiment_dir.is_dir():
        raise _fail(f"{experiment_dir}: no such folder; give the folder that holds the trial logs")
    try:
        report = import_logs(experiment_dir, uri, experiment=experiment, ruleset=ruleset)
    except TrackingError as e:
        raise _fail(str(e)) from e
    except Exception as e:  # noqa: BLE001 - the store failed: one line, not a traceback
        raise _fail(f"importing into {display_uri(uri)} failed: {type(e).__name__}: {str(e).splitlines()[0]}; "
                    "run the same command again when the store is back (it resumes without duplicates)", 1) from e
    for warning in report.warnings:
        console.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    console.print(
        f"Imported {report.trials} trials into {', '.join(report.experiments)} at {display_uri(uri)}: "
        f"{report.runs_created} new runs, {report.metrics_logged} metric values logged, "
        f"{report.metrics_present} already there.",
        highlight=False, soft_wrap=True,
    )
    base = uri if is_http(uri) else None
    if base:
        from algoperf.tracking.server import runs_page_url

        for eid in report.experiments.values():
            stdout.print(runs_page_url(base, eid), highlight=False, soft_wrap=True)
    else:
        console.print("View them with `algoperf ui`" + (f" --tracking-uri {uri}" if tracking_uri else ""), highlight=False, soft_wrap=True)


def _with_view(uri: str, experiment_id: str | None) -> str | None:
    """The shared-view key of the experiment's algoperf view (written now), or None."""
    from algoperf.tracking.store import client_for
    from algoperf.tracking.view import ensure_view

    if experiment_id is None:
        return None
    try:
        return ensure_view(client_for(uri), experiment_id)
    except Exception as e:  # noqa: BLE001 - a read-only store: the plain runs table still opens
        console.print(f"warning: could not store the dashboard view ({type(e).__name__}); opening the plain runs table", highlight=False)
        return None


def _pick_experiment(uri: str, name: str | None) -> tuple[str | None, str | None]:
    """(id, name) of ``name``, else of the most recently updated experiment (not Default)."""
    from algoperf.tracking.store import client_for

    client = client_for(uri)
    if name is not None:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = [e.name for e in client.search_experiments()]
            raise _fail(f"no experiment named {name!r} in {display_uri(uri)}; it holds: {', '.join(known) or 'none'}")
        return exp.experiment_id, exp.name
    experiments = client.search_experiments(order_by=["last_update_time DESC"])
    ours = [e for e in experiments if e.name != "Default"] or experiments
    return (ours[0].experiment_id, ours[0].name) if ours else (None, None)


def ui(
    port: Annotated[int, typer.Option(help="Port of the dashboard.")] = 5000,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", "--backend-store-uri", help=TRACKING_URI_HELP)] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="Experiment to open (default: the latest).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 shows it to the network).")] = "127.0.0.1",
) -> None:
    """Open the MLflow dashboard: start `mlflow server` over the local store and print its URL."""
    from algoperf.tracking.server import MlflowServer, port_in_use, runs_page_url

    uri = _resolve(tracking_uri)
    if is_http(uri):  # a server already: nothing to start
        experiment_id, _ = _pick_experiment(uri, experiment)
        stdout.print(runs_page_url(uri, experiment_id, _with_view(uri, experiment_id)), highlight=False, soft_wrap=True)
        return
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise _fail(f"no MLflow store at {db}: `algoperf run` records there by default (run it from this "
                    "folder first), or point --tracking-uri at your store")
    if port_in_use(port):
        raise _fail(f"port {port} is already in use (another `algoperf ui`?): choose another with --port")
    experiment_id, name = _pick_experiment(uri, experiment)
    view = _with_view(uri, experiment_id)
    server = MlflowServer(uri, host=host, port=port, workers=2)
    # SIGTERM (e.g. from a supervisor) must stop the server's process group too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    console.print(f"Starting mlflow server over {display_uri(uri)} ...", highlight=False)
    try:
        server.start()
    except TrackingError as e:
        raise _fail(str(e), 1) from e
    try:
        console.print(f"MLflow dashboard{f' for {name}' if name else ''} (Ctrl-C stops it):", highlight=False)
        stdout.print(runs_page_url(server.url, experiment_id, view), highlight=False, soft_wrap=True)
        sys.stdout.flush()
        code = server.wait()
        if code:
            raise _fail(f"mlflow server exited with status {code}; its log ({server.log_path}) ends with:\n{server.log_tail()}", 1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
