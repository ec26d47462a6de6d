"""MLflow tracking: every study and trial of a campaign as MLflow runs.

* :mod:`~algoperf.tracking.uri`: which store (``--tracking-uri``, ``$MLFLOW_TRACKING_URI``,
  ``./mlflow.db``).
* :mod:`~algoperf.tracking.store`: the layout (experiment per campaign, parent run per
  study, nested run per trial) and idempotent writes, shared by the two writers below.
* :mod:`~algoperf.tracking.observer`: live logging from the trial runner, batched and
  asynchronous, surviving a tracking server that is down.
* :mod:`~algoperf.tracking.importer`: AlgoPerf-format trial folders (ours or anyone's)
  into the same runs.
* :mod:`~algoperf.tracking.readback`: runs back into scoring records.
* :mod:`~algoperf.tracking.scores`: scores back onto the campaign (a ``score`` run).
* :mod:`~algoperf.tracking.server`: a local ``mlflow server`` (``algoperf ui``, workers).

MLflow itself is imported only when something is logged or read.
"""

from algoperf.tracking.importer import ImportReport, import_logs
from algoperf.tracking.observer import MlflowObserver, TrackerFactory
from algoperf.tracking.readback import read_campaign
from algoperf.tracking.scores import ScoreRun, check_store, log_scores
from algoperf.tracking.server import MlflowServer, ensure_server_for_workers, runs_page_url
from algoperf.tracking.uri import TrackingError, resolve_tracking_uri, sqlite_path

__all__ = [
    "ImportReport",
    "MlflowObserver",
    "MlflowServer",
    "ScoreRun",
    "TrackerFactory",
    "TrackingError",
    "check_store",
    "ensure_server_for_workers",
    "import_logs",
    "log_scores",
    "read_campaign",
    "resolve_tracking_uri",
    "runs_page_url",
    "sqlite_path",
]
