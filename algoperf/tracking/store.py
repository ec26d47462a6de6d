"""How algoperf lays out a campaign in MLflow, shared by live logging and import.

* One experiment per campaign, tagged ``mlflow.experimentKind=custom_model_development``
  so MLflow 3.17's dashboard shows its runs table (not the GenAI view).
* One parent run per study (tags ``algoperf.kind=study``, ``algoperf.study``,
  ``algoperf.submission.loading``), found by those tags or created once.
* One nested run per trial (``algoperf.kind=trial``, ``mlflow.parentRunId``), found by
  ``algoperf.trial_dir`` (the trial folder's absolute path): the same folder always maps
  to the same run, which is what makes resume and re-import idempotent.

Every write is idempotent so a retry after a lost reply cannot duplicate anything:
metrics carry the timestamp fixed when they were made (MLflow's SQL store ignores an
exact duplicate), params are only written when absent, and (key, step) pairs already in
a run are skipped by the callers (:func:`logged_steps`).
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from algoperf.tracking.uri import TrackingError, display_uri, local_artifacts_dir

if TYPE_CHECKING:  # mlflow is imported lazily: `algoperf --help` must stay instant
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run

KIND = "algoperf.kind"
STUDY_KIND, TRIAL_KIND = "study", "trial"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
PARENT_TAG = "mlflow.parentRunId"
TRIAL_DIR_TAG = "algoperf.trial_dir"
ATTEMPT_TAG = "algoperf.attempt"  # id of the live start that created a trial run

# MLflow's limits per log_batch request and per value.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000

# Defaults for MLflow's own HTTP retries: ours (algoperf.tracking.observer) wrap them, so a
# down server should fail one attempt in seconds, not after MLflow's ~4 minutes.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # set_terminated prints "View run ... at" on stdout, which would corrupt `--json` output.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def client_for(tracking_uri: str) -> MlflowClient:
    """An MlflowClient for ``tracking_uri`` (MLflow's HTTP retry defaults shortened,
    unless the environment sets them)."""
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not logging.getLogger().handlers:
        # No logging set up (the CLI): urllib3 would print two lines per retried request
        # while a server is down; our own warning says it once.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def is_permanent(error: BaseException) -> bool:
    """Whether retrying cannot help: MLflow rejected the request (HTTP 4xx but 429)."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, TrackingError):
        return True
    if not isinstance(error, MlflowException):
        return False  # connection errors, "database is locked", timeouts: transient
    status = error.get_http_status_code()
    return 400 <= status < 500 and status != 429


def metric_key(name: str) -> str:
    """A name MLflow accepts as a metric/param key (it must be a normalised path)."""
    key = str(name).strip()[:250] or "_"
    if posixpath.normpath(key) != key or key.startswith(("/", "..")):
        key = key.replace("/", "_") or "_"
    return key


def _quote(value: str) -> str | None:
    """``value`` as a quoted search-filter literal, or None if it holds both quote kinds."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str] | None = None) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=1000, order_by=order_by, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_runs(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> list[Run]:
    """Active runs carrying every tag of ``tags``, oldest first."""
    clauses, later = [], {}
    for key, value in tags.items():
        quoted = _quote(str(value))
        if quoted is None:
            later[key] = str(value)  # filtered here, below: no literal can spell it
        else:
            clauses.append(f"tags.`{key}` = {quoted}")
    runs = _search_all(client, experiment_id, " and ".join(clauses), ["attributes.start_time ASC"])
    runs = [r for r in runs if all(r.data.tags.get(k) == v for k, v in later.items())]
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def experiment_artifact_location(tracking_uri: str, name: str) -> str | None:
    """Where a new experiment's artifacts go when this process writes the store directly.

    For a local SQLite store: ``<db folder>/mlartifacts/<name>`` (a plain path, readable
    by any MLflow on this machine). Servers choose their own (None).
    """
    root = local_artifacts_dir(tracking_uri)
    if root is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "experiment"
    return (root / "by-name" / safe).as_uri()


def get_or_create_experiment(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The id of experiment ``name`` (created and tagged if absent)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=experiment_artifact_location(tracking_uri, name),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except MlflowException as e:  # another process created it just now
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted in "
            f"{display_uri(tracking_uri)}: restore it (`mlflow experiments restore --experiment-id "
            f"{experiment.experiment_id}`) or choose another name (--experiment-name)"
        )
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def study_tags(submission: str, study: int, ruleset: str | None) -> dict[str, str]:
    tags = {KIND: STUDY_KIND, "algoperf.submission": submission, "algoperf.study": str(study)}
    if ruleset:
        tags["algoperf.ruleset"] = ruleset
    return tags


def get_or_create_study_run(client: MlflowClient, experiment_id: str, submission: str, study: int, ruleset: str | None = None) -> str:
    """The parent run of a study, created once.

    Two processes may create one at the same moment: after creating, the oldest matching
    run wins and a newer duplicate is deleted (both see the same oldest run).
    """
    key = {KIND: STUDY_KIND, "algoperf.submission": submission, "algoperf.study": str(study)}
    found = find_runs(client, experiment_id, key)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"{submission} study {study}", tags=study_tags(submission, study, ruleset))
    found = find_runs(client, experiment_id, key)
    winner = found[0].info.run_id if found else run.info.run_id
    if winner != run.info.run_id:
        client.delete_run(run.info.run_id)
    return winner


def trial_tags(
    *,
    workload: str,
    submission: str,
    study: int,
    trial: int,
    ruleset: str | None,
    trial_dir: str,
    framework: str = "jax",
    seed: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The tags of a trial run (see the shared conventions) from its identity and meta data.

    ``meta`` is a trial's ``meta_data_<p>.json``: ours (hardware, versions, git commits,
    submission hash) or AlgoPerf's, whose ``*_version`` and ``git_*`` keys are kept.
    """
    meta = dict(meta or {})
    tags: dict[str, Any] = {
        KIND: TRIAL_KIND,
        "algoperf.workload": workload,
        "algoperf.submission": submission,
        "algoperf.study": str(study),
        "algoperf.trial": str(trial),
        "algoperf.ruleset": ruleset,
        "algoperf.framework": framework,
        TRIAL_DIR_TAG: trial_dir,
        "algoperf.seed": seed if seed is not None else meta.get("seed"),
        "algoperf.submission_hash": meta.get("submission_hash"),
        "algoperf.submission_path": meta.get("submission_path"),
        "algoperf.git_commit": meta.get("algoperf_git_commit") or meta.get("git_commit"),
        "algoperf.submission_git_commit": meta.get("submission_git_commit"),
        "algoperf.batch_size": meta.get("batch_size"),
        "algoperf.preemption_count": meta.get("preemption_count"),
        "algoperf.hardware": meta.get("hardware_label"),
    }
    hardware = meta.get("hardware")
    if isinstance(hardware, Mapping):
        for key, value in hardware.items():
            tags[f"algoperf.hardware.{key}"] = value
    versions = meta.get("versions")
    if isinstance(versions, Mapping):
        for key, value in versions.items():
            tags[f"algoperf.versions.{key}"] = value
    for key, value in meta.items():  # AlgoPerf's own meta data: jax_version, torch_version, ...
        if key.endswith("_version") and isinstance(value, str | int | float):
            tags[f"algoperf.versions.{key.removesuffix('_version')}"] = value
    if meta.get("submission_path"):
        tags["mlflow.source.name"] = Path(str(meta["submission_path"])).name
        tags["mlflow.source.type"] = "LOCAL"
    return {k: str(v) for k, v in tags.items() if v is not None and v != ""}


def end_tags(status: str | None, stop_reason: str | None = None, error: str | None = None) -> dict[str, str]:
    """``algoperf.status`` (reached_target|missed|diverged|failed), stop reason, error."""
    tags = {"algoperf.status": status, "algoperf.stop_reason": stop_reason, "algoperf.error": error}
    return {k: str(v) for k, v in tags.items() if v}


def run_status(status: str | None) -> str:
    """The MLflow run status for a trial outcome."""
    return "FAILED" if status == "failed" else "FINISHED"


def find_trial_run(client: MlflowClient, experiment_id: str, trial_dir: str) -> Run | None:
    """The run already recording trial folder ``trial_dir``, if any (the newest)."""
    found = find_runs(client, experiment_id, {KIND: TRIAL_KIND, TRIAL_DIR_TAG: trial_dir})
    return found[-1] if found else None


def trial_run_name(workload: str, trial: int) -> str:
    return f"{workload} trial {trial}"


def logged_steps(client: MlflowClient, run: Run) -> dict[str, set[int]]:
    """{metric key: steps already logged} of a run (one history request per key)."""
    return {key: {m.step for m in client.get_metric_history(run.info.run_id, key)} for key in run.data.metrics}


def make_metrics(values: Mapping[str, Any], step: int, timestamp_ms: int) -> list[Metric]:
    """Metric entities of the numeric entries of ``values`` (bools and text skipped)."""
    from mlflow.entities import Metric

    out = []
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                value = float(value)  # numpy scalars
            except (TypeError, ValueError):
                continue
        out.append(Metric(metric_key(name), float(value), timestamp_ms, int(step)))
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


def _truncate(value: Any, limit: int) -> str:
    text = str(value)
    if len(text) <= limit:
        return text
    # Keep the head (what failed) and the tail (where): the middle of a traceback matters least.
    half = (limit - 20) // 2
    return f"{text[:half]}\n... [truncated] ...\n{text[-half:]}"


def log_batches(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[Metric] = (),
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> None:
    """Write metrics, params and tags in as few requests as MLflow's limits allow."""
    from mlflow.entities import Param, RunTag

    param_list = [Param(metric_key(k), _truncate(v, MAX_PARAM_LENGTH)) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, _truncate(v, MAX_TAG_LENGTH)) for k, v in (tags or {}).items() if v is not None]
    mixed: list[Any] = [*param_list, *tag_list]
    for i in range(0, len(mixed), MAX_PARAMS_TAGS_PER_BATCH):
        chunk = mixed[i : i + MAX_PARAMS_TAGS_PER_BATCH]
        client.log_batch(
            run_id,
            params=[p for p in chunk if isinstance(p, Param)],
            tags=[t for t in chunk if isinstance(t, RunTag)],
        )
    for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=list(metrics[i : i + MAX_METRICS_PER_BATCH]))


def new_params(run: Run | None, params: Mapping[str, Any]) -> dict[str, str]:
    """The params not yet on ``run`` (MLflow refuses to change a logged param)."""
    existing = run.data.params if run is not None else {}
    return {k: v for k, v in ((metric_key(k), _truncate(v, MAX_PARAM_LENGTH)) for k, v in params.items()) if k not in existing}


def unlogged(metrics: Iterable[Metric], steps: dict[str, set[int]]) -> list[Metric]:
    """The metrics whose (key, step) is not in ``steps`` yet; ``steps`` is updated."""
    out = []
    for m in metrics:
        seen = steps.setdefault(m.key, set())
        if m.step in seen:
            continue
        seen.add(m.step)
        out.append(m)
    return out


def finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def update_study_run(client: Any, parent_id: str, workload: str, time_to_target: float | None) -> None:
    """The study run ends when its latest trial ends, and shows each workload's fastest trial."""
    if time_to_target is not None:
        key = metric_key(f"time_to_target/{workload}")
        best = client.get_run(parent_id).data.metrics.get(key)
        if best is None or time_to_target < best:
            client.log_batch(parent_id, metrics=make_metrics({key: time_to_target}, 0, now_ms()))
    client.set_terminated(parent_id, status="FINISHED")
