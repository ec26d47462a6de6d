"""``algoperf mlflow import``: AlgoPerf-format trial folders into MLflow runs.

Reads the layouts the scoring reader knows (:func:`algoperf.scoring.tree.discover_trials`):
AlgoPerf's ``<submission>/study_<k>/<workload>_<framework>/trial_<n>/`` and our
``<experiment>/[study_<k>/]<workload>_jax/trial_<n>/``, so other people's published
logs come in as well as ours. Each submission (or our experiment) folder becomes an
experiment (or all go to ``--experiment``), each study a parent run, each trial a
nested run, exactly as live logging lays them out (:mod:`algoperf.tracking.store`).

Idempotent: a trial folder maps to the run tagged with its path, and only the
(metric, step) pairs that run lacks are logged. So importing twice, or importing a
trial whose live logging stopped halfway (server down), leaves one value per step.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from algoperf.runner.trial_log import EVAL_FILE, SUBMISSION_METRICS_FILE, read_evals
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.logs import infer_ruleset
from algoperf.scoring.tree import TrialFolder, discover_trials
from algoperf.tracking import artifacts, store
from algoperf.tracking.uri import TrackingError, is_http

_META = re.compile(r"meta_data_(\d+)\.json")


@dataclass
class ImportReport:
    """What an import did."""

    experiments: dict[str, str] = field(default_factory=dict)  # name -> id
    trials: int = 0
    runs_created: int = 0
    metrics_logged: int = 0
    metrics_present: int = 0  # already in MLflow, skipped
    warnings: list[str] = field(default_factory=list)


def _read_json(path: Path, warnings: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        warnings.append(f"{path}: unreadable ({e}); imported without it")
        return None


def _latest_meta(folder: Path, warnings: list[str]) -> dict[str, Any]:
    metas = sorted((int(m[1]), p) for p in folder.glob("meta_data_*.json") if (m := _META.fullmatch(p.name)))
    data = _read_json(metas[-1][1], warnings) if metas else None
    return data if isinstance(data, dict) else {}


def _submission_metrics(path: Path, ts: int) -> list[Any]:
    from mlflow.entities import Metric

    out = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
            out.append(Metric(store.metric_key(item["name"]), float(item["value"]), ts, int(item["step"])))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill
    return out


@dataclass(frozen=True)
class _Trial(TrialFolder):
    """A trial folder and where it goes in MLflow."""

    experiment: str = ""
    ruleset: str = "external"


def _trials(root: Path, experiment: str | None, ruleset: str | None) -> list[_Trial]:
    try:
        found = discover_trials(root)
    except ScoringError as e:
        raise TrackingError(str(e)) from None
    default_ruleset = ruleset or infer_ruleset(root) or "external"
    return [
        _Trial(**{f.name: getattr(t, f.name) for f in fields(t)},
               experiment=experiment or t.submission, ruleset=default_ruleset)
        for t in found
    ]


def import_logs(
    root: str | Path,
    tracking_uri: str,
    *,
    experiment: str | None = None,
    ruleset: str | None = None,
    on_trial: Callable[[str, bool, int], None] | None = None,
    max_workers: int = 4,
) -> ImportReport:
    """Import every trial folder under ``root`` into MLflow; see the module docstring.

    ``experiment``: one experiment for everything (default: one per submission or
    experiment folder, named after it). ``ruleset``: for logs that do not record it
    (default: from the folder name, e.g. ``external_tuning``, else external).
    ``on_trial(trial_dir, created, metrics_logged)`` is called after each trial.
    """
    root = Path(root)
    trials = _trials(root, experiment, ruleset)
    report = ImportReport()
    client = store.client_for(tracking_uri)
    prepared = [_prepare(t, report.warnings) for t in trials]
    # Experiments and study runs first, one at a time, so parallel trials find them.
    parents: dict[tuple[str, str, int], str] = {}
    for trial, info in zip(trials, prepared, strict=True):
        if trial.experiment not in report.experiments:
            report.experiments[trial.experiment] = store.get_or_create_experiment(client, tracking_uri, trial.experiment)
        key = (trial.experiment, info["submission"], trial.study)
        if key not in parents:
            parents[key] = store.get_or_create_study_run(
                client, report.experiments[trial.experiment], info["submission"], trial.study, info["ruleset"]
            )

    def one(pair: tuple[_Trial, dict[str, Any]]) -> tuple[bool, int, int]:
        trial, info = pair
        experiment_id = report.experiments[trial.experiment]
        parent = parents[(trial.experiment, info["submission"], trial.study)]
        created, logged, present = _import_trial(client, tracking_uri, experiment_id, parent, trial, info)
        if on_trial:
            on_trial(str(trial.path), created, logged)
        return created, logged, present

    # SQLite takes one writer at a time; a server takes a few requests at once.
    workers = max_workers if is_http(tracking_uri) else 1
    pairs = list(zip(trials, prepared, strict=True))
    if workers > 1 and len(pairs) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, pairs))
    else:
        results = [one(p) for p in pairs]
    for created, logged, present in results:
        report.trials += 1
        report.runs_created += int(created)
        report.metrics_logged += logged
        report.metrics_present += present
    return report


def _prepare(trial: _Trial, warnings: list[str]) -> dict[str, Any]:
    """What a trial folder says about itself (read once, before any MLflow call)."""
    folder = trial.path
    meta = _latest_meta(folder, warnings)
    hparams = _read_json(folder / "hparams.json", warnings) if (folder / "hparams.json").is_file() else None
    result = _read_json(folder / "trial_result.json", warnings) if (folder / "trial_result.json").is_file() else None
    eval_file = folder / EVAL_FILE
    rows = read_evals(eval_file) if eval_file.is_file() else []
    if not eval_file.is_file():
        warnings.append(f"{folder}: no {EVAL_FILE} (the trial died before its first eval)")
    ours = "submission_hash" in meta  # written by algoperf.runner.trial
    stamps = [p.stat().st_mtime for p in folder.iterdir() if p.is_file()]
    return {
        "started_ms": int(1000 * min(stamps)) if stamps else None,
        "ended_ms": int(1000 * max(stamps)) if stamps else None,
        "meta": meta,
        "hparams": hparams if isinstance(hparams, dict) else {},
        "result": result if isinstance(result, dict) else None,
        "rows": rows,
        "ours": ours,
        "submission": str(meta.get("submission") or trial.submission),
        "ruleset": str(meta.get("ruleset") or trial.ruleset),
    }


def _step_of(row: dict[str, float], index: int) -> int:
    step = row.get("global_step")
    return int(step) if step is not None and math.isfinite(step) else index + 1


def _import_trial(client: Any, tracking_uri: str, experiment_id: str, parent_id: str, trial: _Trial, info: dict[str, Any]) -> tuple[bool, int, int]:
    """(run created?, metric values logged, values already present) for one trial folder."""
    trial_dir = str(trial.path.resolve())
    meta, result = info["meta"], info["result"]
    tags = store.trial_tags(
        workload=trial.workload, submission=info["submission"], study=trial.study, trial=trial.trial,
        ruleset=info["ruleset"], trial_dir=trial_dir, framework=trial.framework, meta=meta,
    )
    tags[store.PARENT_TAG] = parent_id
    tags["algoperf.imported"] = "true"
    ts = store.now_ms()
    metrics = []
    for i, row in enumerate(info["rows"]):
        metrics += store.make_metrics(row, _step_of(row, i), ts)
    metrics += _submission_metrics(trial.path / SUBMISSION_METRICS_FILE, ts)
    status = None
    if result is not None:
        status = result.get("status")
        tags.update(store.end_tags(status, result.get("stop_reason"), result.get("error")))
        ttt = store.finite_or_none(result.get("time_to_result"))
        if ttt is not None:
            step = next((_step_of(r, i) for i, r in enumerate(info["rows"])
                         if abs(r.get("accumulated_submission_time", math.nan) - ttt) <= 1e-9 * max(1.0, ttt)),
                        int(result.get("global_step") or 0))
            metrics += store.make_metrics({"time_to_target": ttt}, step, ts)

    run = store.find_trial_run(client, experiment_id, trial_dir)
    created = run is None
    if run is None:  # dated by its files, so the dashboard shows when it ran and how long
        run = client.create_run(experiment_id, start_time=info["started_ms"],
                                run_name=store.trial_run_name(trial.workload, trial.trial), tags=tags)
        steps: dict[str, set[int]] = {}
    else:
        steps = store.logged_steps(client, run)
    fresh = store.unlogged(metrics, steps)
    store.log_batches(client, run.info.run_id, metrics=fresh, params=store.new_params(run, info["hparams"]), tags=tags)
    files = artifacts.trial_files(trial.path) + artifacts.submission_files(meta.get("submission_path"))
    artifacts.log_files(client, tracking_uri, run, files)
    if result is not None:
        final = store.run_status(status)
    else:  # ours without a result: the trial was killed (or still runs); theirs: complete
        final = "KILLED" if info["ours"] else "FINISHED"
    if created or run.info.status != final:
        client.set_terminated(run.info.run_id, status=final, end_time=info["ended_ms"] if created else None)
    store.update_study_run(client, parent_id, trial.workload, store.finite_or_none((result or {}).get("time_to_result")))
    return created, len(fresh), len(metrics) - len(fresh)
