"""The answer on the experiment page: what ``algoperf score`` writes onto a campaign.

MLflow renders an experiment's ``mlflow.note.content`` tag as Markdown above its runs
table. After scoring, :func:`publish` replaces it with

* the score table (every column of the scores: score, interval, rank probabilities or
  whatever else :func:`algoperf.scoring.report.report_to_dict` carries per submission),
* the time to target per workload (median over studies of the chosen trial's time),
* the performance profile, the time-to-target distribution per workload and the
  validation curves per workload, as images served from the score run's artifacts,
* when, how (options, benchmark rules) and from what the scores were computed,

and logs the two plots of this module onto the score run:

* ``time_to_target_<ruleset>.png``: per workload, every trial's time to target as a dot
  (one column per submission, colour = study; misses drawn at the workload's budget);
* ``curves_<workload>.png``: every trial's validation metric against its accumulated
  submission time, with the target as a horizontal line.

Every rerun replaces the description: there is one per experiment and ruleset section.
"""

from __future__ import annotations

import datetime as _dt
import math
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from algoperf.tracking import artifacts

if TYPE_CHECKING:
    from algoperf.scoring.report import RulesetReport

NOTE_TAG = "mlflow.note.content"
MAX_NOTE_LENGTH = 20000  # MLflow's limit on an experiment tag's value
_SHOWN = ("rank", "name", "score", "interval", "score_exact", "score_trapezoid")
# Fields a bootstrap over studies gives: degenerate (and misleading) with one study.
_FROM_BOOTSTRAP = ("p_rank_1", "rank_interval", "speedup_interval")


def artifact_url(run_id: str, path: str) -> str:
    """A run's artifact as the MLflow server serves it, relative to the dashboard's root."""
    return "get-artifact?" + urllib.parse.urlencode({"path": path, "run_uuid": run_id})


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "-"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v, digits) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_cell(v, digits)}" for k, v in value.items())
    return str(value).replace("|", "/")


def score_table(report: RulesetReport, digits: int = 4) -> list[str]:
    """Markdown lines of the score table, with every per-submission field the report has."""
    from algoperf.scoring.report import format_score, report_to_dict

    subs = report_to_dict(report)["submissions"]
    workloads = set(report.result.table.workloads)

    def per_workload(value: Any) -> bool:  # those have their own table below
        return isinstance(value, dict) and bool(value) and set(value) <= workloads

    for s in subs:  # a nested record (cost) shows its headline figure; the CSVs hold the rest
        for k, v in list(s.items()):
            if isinstance(v, dict) and not per_workload(v):
                s[k] = v.get("device_h") if "device_h" in v else None
    extra = [k for k in dict.fromkeys(k for s in subs for k in s)
             if k not in _SHOWN and not any(per_workload(s.get(k)) for s in subs)
             and any(s.get(k) is not None for s in subs)]
    names = {"cost": "device-h", "p_rank_1": "P(1st)"}
    boot = report.boot
    one_study = studies_of(report) < 2
    if one_study:
        extra = [k for k in extra if k not in _FROM_BOOTSTRAP]
    head = ["#", "submission", "score" + ("" if boot is None or one_study else f" [{boot.confidence:.0%} CI]")]
    lines = ["| " + " | ".join(head + [names.get(k, k.replace("_", " ")) for k in extra]) + " |", "|" + "---|" * (len(head) + len(extra))]
    for s in sorted(subs, key=lambda s: s["rank"]):
        interval = None if one_study else s.get("interval")
        cells = [str(s["rank"]), s["name"], format_score(s["score"], interval, digits)]
        lines.append("| " + " | ".join(cells + [_cell(s.get(k), digits) for k in extra]) + " |")
    return lines


def studies_of(report: RulesetReport) -> int:
    """The most studies any submission has on any scored workload."""
    ids = report.result.table.study_ids
    return max((len(w) for s in ids for w in s), default=0)


def times_table(report: RulesetReport) -> list[str]:
    """Markdown lines: time to target per submission and workload (or why none counts)."""
    from algoperf.scoring.report import format_time

    res = report.result
    lines = ["| submission | " + " | ".join(res.workloads) + " |", "|---|" + "---|" * len(res.workloads)]
    for i in res.ranking():
        cells = [format_time(res.times[i, j]) if str(res.status[i, j]) == "ok" else str(res.status[i, j]) for j in range(len(res.workloads))]
        lines.append(f"| {res.submissions[i]} | " + " | ".join(cells) + " |")
    return lines


def describe(report: RulesetReport, run_id: str, images: Sequence[str], sources: Sequence[str] = (),
             when: _dt.datetime | None = None, digits: int = 4) -> str:
    """The experiment description (Markdown) for one ruleset's scores."""
    from algoperf.scoring.report import RULESET_TITLES

    boot, opts = report.boot, report.result.options
    when = when or _dt.datetime.now(_dt.UTC)
    n_studies = studies_of(report)
    lines = [f"## AlgoPerf scores, {RULESET_TITLES[report.ruleset]}", "", *score_table(report, digits), ""]
    if boot is not None and n_studies < 2:
        lines += ["*One study per submission gives no interval and no rank uncertainty: the bootstrap resamples "
                  "studies, so run at least 2 (`algoperf run --studies 3`, AlgoPerf's count) for an interval.*", ""]
    lines += ["### Time to target per workload (seconds of submission time)", "", *times_table(report), "",
              "Median over studies of the chosen trial's time; `miss`: target not reached within the budget.", ""]
    for name in images:
        lines += [f"![{name}]({artifact_url(run_id, name)})", ""]
    how = (f"{opts.area} area, held-out rule {opts.heldout_rule}, benchmark rules v{report.benchmark_version}"
           if str(report.benchmark_version)[:1].isdigit() else f"{opts.area} area, held-out rule {opts.heldout_rule}")
    if boot is not None:
        how += f", {boot.n} bootstrap replicates resampling {boot.level} (seed {boot.seed})"
    lines += [
        f"Scored {when:%Y-%m-%d %H:%M} UTC by `algoperf score` ({how}) from "
        f"{', '.join(sources) or 'this experiment'}; {n_studies} stud{'y' if n_studies == 1 else 'ies'} per "
        f"submission. Score run: `{run_id}` (its artifacts hold the CSVs). Rescoring replaces this text.",
    ]
    return "\n".join(lines)


def _target(workload: str) -> tuple[str, float] | None:
    try:
        from algoperf import registry

        info = registry.workload_info(workload)
    except Exception:  # noqa: BLE001 - a workload we do not register (imported logs): no line
        return None
    return f"validation/{info['target_metric_name']}", float(info["validation_target_value"])


def plot_curves(records: Sequence[Any], workload: str, path: Path) -> Path | None:
    """Every trial's validation metric against accumulated submission time, target drawn."""
    from matplotlib.figure import Figure

    mine = [r for r in records if r.workload == workload and len(r.times)]
    if not mine:
        return None
    target = _target(workload)
    key = target[0] if target and any(target[0] in r.metrics for r in mine) else next(iter(sorted(mine[0].metrics)), None)
    if key is None:
        return None
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    colours = {s: f"C{i}" for i, s in enumerate(sorted({r.submission for r in mine}))}
    for r in mine:
        if key in r.metrics:
            ax.plot(r.times, r.metrics[key], color=colours[r.submission], alpha=0.8, lw=1.2,
                    label=f"{r.submission} study {r.study} trial {r.trial}")
    if target and key == target[0]:
        ax.axhline(target[1], color="k", ls="--", lw=1, label=f"target {target[1]:g}")
    ax.set(xlabel="accumulated submission time (s)", ylabel=key, title=f"{workload}: every trial against submission time")
    ax.legend(fontsize="x-small", ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_time_to_target(report: RulesetReport, path: Path) -> Path:
    """Per workload: every trial's time to target, studies coloured, misses at the budget."""
    import numpy as np
    from matplotlib.figure import Figure

    table, subs = report.result.table, report.result.submissions
    n = len(table.workloads)
    fig = Figure(figsize=(max(4.0, 3.2 * n), 3.8))
    for j, workload in enumerate(table.workloads):
        ax = fig.add_subplot(1, n, j + 1)
        budget = table.budgets[j]
        for i, _ in enumerate(subs):
            for k in range(table.trial_times.shape[2]):
                t = table.trial_times[i, j, k]
                t = t[~np.isnan(t)]
                if not len(t):
                    continue
                x = i + np.linspace(-0.15, 0.15, len(t)) + 0.05 * k
                hit = np.isfinite(t)
                ax.scatter(x[hit], t[hit], color=f"C{k}", s=18, label=f"study {k}" if i == 0 else None)
                if (~hit).any() and np.isfinite(budget):
                    ax.scatter(x[~hit], np.full((~hit).sum(), budget), color=f"C{k}", marker="x", s=22)
        if np.isfinite(budget):
            ax.axhline(budget, color="grey", lw=0.8, ls=":")
        ax.set_xticks(range(len(subs)), subs, rotation=30, fontsize="small")
        ax.set(title=workload, ylabel="time to target (s)" if j == 0 else None)
    fig.suptitle("time to target of every trial (x: missed, at the budget)", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def publish(client: Any, tracking_uri: str, experiment_id: str, experiment_name: str, report: RulesetReport,
            run: Any, folder: Path, sources: Sequence[str] = (), digits: int = 4) -> str:
    """Plot, log the plots onto score ``run``, and write the experiment's description.

    ``folder`` holds the score run's other outputs (the profile PNG among them).
    Returns the Markdown written.
    """
    from algoperf.tracking.readback import read_campaign

    records = read_campaign(tracking_uri, experiment_name, ruleset=report.ruleset)
    made = [plot_time_to_target(report, folder / f"time_to_target_{report.ruleset}.png")]
    made += [p for w in report.result.workloads if (p := plot_curves(records, w, folder / f"curves_{w}.png"))]
    artifacts.log_files(client, tracking_uri, run, [(p, None) for p in made])
    profile = f"performance_profile_{report.ruleset}.png"
    images = ([profile] if (folder / profile).is_file() else []) + [p.name for p in made]
    text = describe(report, run.info.run_id, images, sources, digits=digits)
    client.set_experiment_tag(experiment_id, NOTE_TAG, text[:MAX_NOTE_LENGTH])
    return text
