"""Trial and submission files stored as MLflow artifacts of a trial run.

Through a server MLflow uploads them; writing a local store directly they are copied into
the run's artifact folder (MLflow cannot resolve ``mlflow-artifacts:`` without a server).
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from algoperf.runner.trial_log import (
    EVAL_FILE,
    HPARAMS_FILE,
    RESULT_FILE,
    SUBMISSION_METRICS_FILE,
    TRACEBACK_FILE,
)
from algoperf.tracking.uri import is_http, local_artifacts_dir

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

# Files of a trial folder stored as artifacts (checkpoints are not: they are large and
# only serve resume).
TRIAL_FILE_PATTERNS = (EVAL_FILE, HPARAMS_FILE, "meta_data_*.json", "flags_*.json", SUBMISSION_METRICS_FILE, RESULT_FILE, TRACEBACK_FILE)
SUBMISSION_FILE_SUFFIXES = (".py", ".json", ".md", ".txt", ".yaml", ".yml")
MAX_SUBMISSION_FILES = 50
MAX_SUBMISSION_BYTES = 5_000_000


def trial_files(trial_dir: str | Path) -> list[tuple[Path, str | None]]:
    """The trial folder's log files, as (path, artifact folder) pairs (at the root)."""
    folder = Path(trial_dir)
    found: dict[Path, None] = {}
    for pattern in TRIAL_FILE_PATTERNS:
        for path in sorted(folder.glob(pattern)):
            found[path] = None
    return [(p, None) for p in found]


def submission_files(submission_path: str | Path | None) -> list[tuple[Path, str | None]]:
    """A snapshot of a submission's source, under the artifact folder ``submission``.

    A ``<folder>/submission.py`` brings the folder's other small text files (search
    space, README, helper modules); a single-file submission is just that file.
    """
    if not submission_path:
        return []
    path = Path(submission_path)
    if not path.is_file():
        return []
    files = [path]
    if path.name == "submission.py":
        siblings = sorted(p for p in path.parent.iterdir() if p.is_file() and p != path and p.suffix in SUBMISSION_FILE_SUFFIXES)
        files += siblings[: MAX_SUBMISSION_FILES - 1]
    out, total = [], 0
    for f in files:
        total += f.stat().st_size
        if total > MAX_SUBMISSION_BYTES:
            break
        out.append((f, "submission"))
    return out


def _local_path_of(tracking_uri: str, artifact_uri: str) -> Path | None:
    """Where a run's artifacts live on this machine, when this process writes them itself.

    Plain paths and ``file:`` URIs map to themselves. ``mlflow-artifacts:/<path>`` (an
    experiment created through a server we started over this SQLite store) maps to
    ``<db folder>/mlartifacts/<path>``, the folder that server stores them in.
    """
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme in ("", "file"):
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "mlflow-artifacts":
        root = local_artifacts_dir(tracking_uri)
        if root is not None:
            return root / urllib.parse.unquote(parsed.path).lstrip("/")
    return None


def log_files(client: MlflowClient, tracking_uri: str, run: Run, files: Iterable[tuple[Path, str | None]]) -> int:
    """Store ``(local file, artifact folder or None)`` pairs as artifacts of ``run``.

    Through a server: MLflow uploads them. Writing the store directly: copied into the
    run's artifact folder (MLflow cannot resolve ``mlflow-artifacts:`` without a server).
    Returns the number of files stored; missing files are skipped.
    """
    files = [(Path(f), d) for f, d in files if Path(f).is_file()]
    local = None if is_http(tracking_uri) else _local_path_of(tracking_uri, run.info.artifact_uri)
    for path, folder in files:
        if local is not None:
            target = local / folder if folder else local
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.name)
        else:
            client.log_artifact(run.info.run_id, str(path), folder)
    return len(files)
