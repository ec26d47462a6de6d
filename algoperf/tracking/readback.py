"""Read a campaign back from MLflow as the scoring engine's trial records.

``read_campaign`` finds the experiment's trial runs (``algoperf.kind=trial``) and, per run,
the metric histories the score needs: ``accumulated_submission_time`` (AlgoPerf's equal
``score`` column when absent) and every ``validation/<metric>``, aligned by step. The
result is a list of :class:`algoperf.scoring.logs.TrialLog`, the same records the log
reader builds from eval_measurements.csv, so ``algoperf score --experiment NAME`` needs
no trial folder.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from algoperf.scoring.logs import TrialLog
from algoperf.tracking import store
from algoperf.tracking.uri import TrackingError, display_uri

TIME_KEY = "accumulated_submission_time"


def _history(client: Any, run_id: str, key: str) -> dict[int, float]:
    """{step: value} of one metric; for a step logged twice, the latest value."""
    values: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, key):
        if m.step not in values or m.timestamp >= values[m.step][0]:
            values[m.step] = (m.timestamp, m.value)
    return {step: v for step, (_, v) in values.items()}


def _record(client: Any, run: Any, experiment_name: str) -> Any:
    tags, run_id = run.data.tags, run.info.run_id
    time_key = TIME_KEY if TIME_KEY in run.data.metrics else "score" if "score" in run.data.metrics else None
    times = _history(client, run_id, time_key) if time_key else {}
    steps = sorted(times)
    metrics = {}
    for key in sorted(k for k in run.data.metrics if k.startswith("validation/")):
        history = _history(client, run_id, key)
        metrics[key] = np.array([history.get(s, np.nan) for s in steps], dtype=float)
    return TrialLog(
        submission=tags.get("algoperf.submission", ""),
        study=int(tags.get("algoperf.study", 0)),
        workload=tags.get("algoperf.workload", ""),
        trial=int(tags.get("algoperf.trial", 1)),
        times=np.array([times[s] for s in steps], dtype=float),
        metrics=metrics,
        framework=tags.get("algoperf.framework", "jax"),
        ruleset=tags.get("algoperf.ruleset", "external"),
        source=f"mlflow:{experiment_name}/{run_id}",
        steps=np.array(steps, dtype=float),
    )


def read_campaign(
    tracking_uri: str,
    experiment_name: str,
    *,
    ruleset: str | None = None,
    warn: Callable[[str], None] | None = None,
    max_workers: int = 8,
) -> list[Any]:
    """Every trial of an MLflow experiment as :class:`algoperf.scoring.logs.TrialLog`.

    ``ruleset`` keeps only trials of that ruleset. When two runs hold the same trial
    (same submission, study, workload and trial number, e.g. a campaign run twice from
    different folders), the newer one is kept and ``warn`` is told.
    """
    client = store.client_for(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise TrackingError(
            f"no MLflow experiment named {experiment_name!r} in {display_uri(tracking_uri)}"
            + (f"; it holds: {', '.join(names)}" if names else " (it holds none)")
        )
    runs = store.find_runs(client, experiment.experiment_id, {store.KIND: store.TRIAL_KIND})
    if ruleset is not None:
        runs = [r for r in runs if r.data.tags.get("algoperf.ruleset", "external") == ruleset]
    newest: dict[tuple[str, str, str, str], Any] = {}
    for run in runs:  # oldest first: a later run of the same trial replaces an earlier one
        t = run.data.tags
        key = (t.get("algoperf.submission", ""), t.get("algoperf.study", "0"), t.get("algoperf.workload", ""), t.get("algoperf.trial", "1"))
        if key in newest and warn is not None:
            warn(f"MLflow runs {newest[key].info.run_id} and {run.info.run_id} both hold {key[0]} study {key[1]} "
                 f"{key[2]} trial {key[3]}; using the newer, {run.info.run_id}")
        newest[key] = run
    chosen = list(newest.values())
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(chosen)))) as pool:
        records = list(pool.map(lambda r: _record(client, r, experiment_name), chosen))
    return sorted(records, key=lambda r: (r.submission, r.study, r.workload, r.trial))


def campaign_names(tracking_uri: str) -> list[str]:
    """The experiments of a store that hold algoperf trial runs, newest first."""
    client = store.client_for(tracking_uri)
    experiments = client.search_experiments(order_by=["last_update_time DESC"])
    return [e.name for e in experiments if e.tags.get(store.EXPERIMENT_KIND_TAG) == store.EXPERIMENT_KIND]
