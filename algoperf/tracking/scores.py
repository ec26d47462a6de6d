"""Scores back onto the campaign: one ``score`` run per experiment and ruleset.

After ``algoperf score --experiment NAME`` has scored a campaign from MLflow, the results
go back onto that experiment so the dashboard shows them beside the trials:

* a run tagged ``algoperf.kind=score`` and ``algoperf.ruleset=<external|self>``, named
  ``score (<ruleset> tuning)``, with
  - metrics (step 0) ``score/<submission>``, ``score_lo/<submission>`` and
    ``score_hi/<submission>`` (the bootstrap interval), ``score_exact/<submission>``,
    ``score_trapezoid/<submission>``, ``rank/<submission>``, ``speedup/<submission>``
    (with a baseline) and ``time_to_target/<submission>/<workload>`` where that time
    counts (finite after the 4x and held-out rules); with a bootstrap the rank
    probabilities ``p_rank_1/<submission>``, ``rank_lo/<submission>`` and
    ``rank_hi/<submission>``; the compute cost ``device_hours/<submission>``,
    ``device_hours_total`` and, with prices, ``cost_usd/<submission>`` and
    ``cost_usd_total``;
  - params: the scoring options (area, held-out rule, bootstrap replicates, seed,
    confidence, ...), the targets and every source scored together;
  - artifacts: scores.csv, times.csv, study_times.csv, order_flips.csv, scores.json and
    cost.csv and the performance-profile PNG and SVG (:func:`algoperf.scoring.files.write_outputs`);
  - the score table as the run's description (``mlflow.note.content``);
* on each study run of a scored submission: tags ``algoperf.score`` (``0.78 [0.71,
  0.83]``, the submission's score, which all its studies share) and
  ``algoperf.score_run_id``.

Re-scoring replaces the score run (params cannot change in MLflow, so a new run is
written and the older ones of the same experiment and ruleset are moved to MLflow's
trash). When two scorings race, the newer run survives. Readers of trials
(:func:`algoperf.tracking.read_campaign`) only look at ``algoperf.kind=trial`` runs, so a
score run is never read as a trial.
"""

from __future__ import annotations

import math
import re
import socket
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algoperf.scoring.files import write_outputs
from algoperf.scoring.report import (
    RULESET_TITLES,
    RulesetReport,
    format_hours,
    format_score,
    format_time,
    rank_text,
)
from algoperf.tracking import artifacts, store
from algoperf.tracking.uri import TrackingError, display_uri, is_http, sqlite_path

SCORE_KIND = "score"
SCORE_TAG = "algoperf.score"
SCORE_RUN_TAG = "algoperf.score_run_id"
RULESET_TAG = "algoperf.ruleset"
NOTE_TAG = "mlflow.note.content"
# MLflow metric names take letters, digits, "_-. /" only.
_UNSAFE = re.compile(r"[^\w\-. /]")


@dataclass(frozen=True)
class ScoreRun:
    """Where one ruleset's scores were logged."""

    experiment: str
    experiment_id: str
    ruleset: str
    run_id: str
    replaced: int  # older score runs moved to the trash
    study_runs: int  # study runs tagged with their submission's score


def check_store(tracking_uri: str, timeout: float = 3.0) -> None:
    """Fail fast and plainly where a store obviously cannot be read.

    An HTTP server nobody listens on would otherwise cost MLflow's retries (tens of
    seconds) and end in a long urllib3 message; a SQLite file that does not exist would be
    created empty by MLflow (seconds of migrations, a stray ``mlflow.db``).
    Raises :class:`TrackingError` naming the store and what to do.
    """
    if is_http(tracking_uri):
        parts = urllib.parse.urlsplit(tracking_uri)
        host = parts.hostname or "localhost"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise TrackingError(
                f"no MLflow tracking server answers at {display_uri(tracking_uri)} ({reason}): "
                f"start it (e.g. `mlflow server --host {host} --port {port}`) or pass "
                "--tracking-uri (or set MLFLOW_TRACKING_URI) to a running server or a "
                "sqlite:///path/mlflow.db store"
            ) from None
        return
    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_file():
        raise TrackingError(
            f"no MLflow store at {path} (the SQLite file does not exist): run in the folder "
            "whose mlflow.db recorded the campaign, or pass --tracking-uri"
        )


def _key(*parts: str) -> str:
    return store.metric_key("/".join(_UNSAFE.sub("_", p) for p in parts))


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def score_metrics(report: RulesetReport) -> dict[str, float]:
    """The metrics of a score run (see the module docstring); non-finite values left out."""
    res, boot = report.result, report.boot
    out: dict[str, float | None] = {}
    for rank, i in enumerate(res.ranking(), start=1):
        sub = res.submissions[i]
        out[_key("score", sub)] = float(res.score[i])
        out[_key("score_exact", sub)] = float(res.score_exact[i])
        out[_key("score_trapezoid", sub)] = float(res.score_trapezoid[i])
        out[_key("rank", sub)] = float(rank)
        if boot is not None:
            out[_key("score_lo", sub)] = float(boot.interval[i][0])
            out[_key("score_hi", sub)] = float(boot.interval[i][1])
            if boot.p_first is not None and boot.rank_interval is not None:
                out[_key("p_rank_1", sub)] = float(boot.p_first[i])
                out[_key("rank_lo", sub)] = float(boot.rank_interval[i][0])
                out[_key("rank_hi", sub)] = float(boot.rank_interval[i][1])
        if res.speedup is not None:
            out[_key("speedup", sub)] = _finite(res.speedup[i])
        for j, workload in enumerate(res.workloads):
            out[_key("time_to_target", sub, workload)] = _finite(res.times[i, j])
    if report.cost is not None:
        out.update(_cost_metrics(report))
    return {k: v for k, v in out.items() if v is not None and math.isfinite(v)}


def _cost_metrics(report: RulesetReport) -> dict[str, float | None]:
    cost = report.cost
    assert cost is not None
    out: dict[str, float | None] = {"device_hours_total": cost.total_device_s / 3600}
    priced = cost.total_usd is not None
    if priced:
        out["cost_usd_total"] = cost.total_usd
    for (sub,), row in cost.sums("submission").items():
        out[_key("device_hours", sub)] = row["total"] / 3600
        if priced:
            out[_key("cost_usd", sub)] = row["usd"]
    return out


def score_params(
    report: RulesetReport, sources: Sequence[str] = (), targets_source: str | None = None
) -> dict[str, str]:
    """The options a score run was computed with (MLflow params are text)."""
    res, boot, opts = report.result, report.boot, report.result.options
    params: dict[str, Any] = {
        "ruleset": opts.ruleset,
        "area": opts.area,
        "tau_points": opts.tau_points if opts.area == "trapezoid" else None,
        "heldout_rule": opts.heldout_rule,
        "benchmark_version": report.benchmark_version,
        "budget_check": opts.budget_check,
        "missing_as_miss": opts.missing_as_miss,
        "workloads": ",".join(res.workloads),
        "baseline": res.baseline,
        "bootstrap": boot.n if boot is not None else 0,
        "bootstrap_seed": boot.seed if boot is not None else None,
        "confidence": boot.confidence if boot is not None else None,
        "resample": boot.level if boot is not None else None,
        "targets": targets_source,
        "sources": ", ".join(sources) if sources else None,
    }
    return {k: str(v) for k, v in params.items() if v is not None}


def score_note(report: RulesetReport, digits: int = 4) -> str:
    """The score table in Markdown, shown as the score run's description."""
    res, boot = report.result, report.boot

    ci = f" [{boot.confidence:.0%} CI]" if boot else ""
    head = ["#", "submission", "score" + ci]
    if boot is not None:
        head += ["P(1st)", "rank" + ci]
    if report.cost is not None:
        head.append("device-h")
    head += list(res.workloads)
    lines = [
        f"**AlgoPerf scores, {RULESET_TITLES[report.ruleset]}** ({res.options.area} area, "
        f"held-out rule {res.options.heldout_rule}"
        + (f", {boot.n} bootstrap replicates resampling {boot.level}" if boot else "")
        + ")",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for rank, i in enumerate(res.ranking(), start=1):
        cells = [
            str(rank),
            res.submissions[i],
            format_score(res.score[i], None if boot is None else boot.interval[i], digits),
        ]
        if boot is not None:
            cells += list(rank_text(boot, i))
        if report.cost is not None:
            row = report.cost.sums("submission").get((res.submissions[i],), {})
            cells.append(format_hours(row.get("total", 0.0)))
        for j in range(len(res.workloads)):
            status = str(res.status[i, j])
            cells.append(format_time(res.times[i, j]) if status == "ok" else status)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Times: median over studies of the fastest trial's time to target."]
    return "\n".join(lines)


def log_scores(
    tracking_uri: str,
    experiment_name: str,
    report: RulesetReport,
    *,
    sources: Sequence[str] = (),
    targets_source: str | None = None,
    digits: int = 4,
) -> ScoreRun:
    """Write ``report`` (one ruleset's scores) onto experiment ``experiment_name``.

    ``sources`` names everything scored together (``mlflow:<experiment>``, log folders),
    since the scores of a profile depend on every submission in it. Replaces an earlier
    score run of the same experiment and ruleset; see the module docstring.
    """
    client = store.client_for(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"no MLflow experiment named {experiment_name!r} in {display_uri(tracking_uri)} "
            "to log the scores onto"
        )
    eid, ruleset, res, boot = experiment.experiment_id, report.ruleset, report.result, report.boot
    tags = {
        store.KIND: SCORE_KIND,
        RULESET_TAG: ruleset,
        "algoperf.scored_submissions": ",".join(res.submissions[i] for i in res.ranking()),
        NOTE_TAG: score_note(report, digits),
    }
    run = client.create_run(eid, run_name=f"score ({RULESET_TITLES[ruleset]})", tags=tags)
    run_id = run.info.run_id
    try:
        store.log_batches(
            client,
            run_id,
            metrics=store.make_metrics(score_metrics(report), 0, store.now_ms()),
            params=score_params(report, sources, targets_source),
        )
        with tempfile.TemporaryDirectory(prefix="algoperf-score-") as tmp:
            paths = write_outputs([report], Path(tmp), digits)
            artifacts.log_files(client, tracking_uri, run, [(p, None) for p in paths])
        client.set_terminated(run_id, status="FINISHED")
    except BaseException:
        # A half-written score run would pass for a result: mark it, the next scoring
        # replaces it.
        try:
            client.set_terminated(run_id, status="FAILED")
        except Exception:  # noqa: BLE001 - the store is already failing; report the first error
            pass
        raise

    # Keep the newest score run of this experiment and ruleset, trash the others.
    found = store.find_runs(client, eid, {store.KIND: SCORE_KIND, RULESET_TAG: ruleset})
    keep = found[-1].info.run_id if found else run_id
    replaced = 0
    for old in found:
        if old.info.run_id != keep:
            client.delete_run(old.info.run_id)
            replaced += 1

    text = {
        res.submissions[i]: format_score(
            res.score[i], None if boot is None else boot.interval[i], digits
        )
        for i in range(len(res.submissions))
    }
    tagged = 0
    for study in store.find_runs(client, eid, {store.KIND: store.STUDY_KIND}):
        t = study.data.tags
        if t.get("algoperf.submission") in text and t.get(RULESET_TAG, ruleset) == ruleset:
            store.log_batches(
                client,
                study.info.run_id,
                tags={SCORE_TAG: text[t["algoperf.submission"]], SCORE_RUN_TAG: keep},
            )
            tagged += 1
    return ScoreRun(experiment_name, eid, ruleset, keep, replaced, tagged)
