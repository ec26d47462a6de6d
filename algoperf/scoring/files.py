"""The files of a score: scores.csv, times.csv, study_times.csv, order_flips.csv, cost.csv,
and the performance-profile plots (:func:`write_outputs` writes them all)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from algoperf.scoring.cost import write_cost_csv
from algoperf.scoring.profile import TAU_MAX, profile_steps, study_times
from algoperf.scoring.report import (
    RULESET_TITLES,
    RulesetReport,
    _num,
    format_score,
    report_to_dict,
    reports_to_json,
)

SCORES_HEADER = [
    "ruleset", "rank", "submission", "score", "lo", "hi", "score_exact", "score_trapezoid",
    "speedup", "speedup_lo", "speedup_hi", "p_rank_1", "rank_lo", "rank_hi", "device_s",
]
TIMES_HEADER = [
    "ruleset", "submission", "workload", "time_to_target", "median_time", "status", "ratio", "studies",
]
STUDIES_HEADER = ["ruleset", "submission", "workload", "study", "fastest_trial_time"]
FLIPS_HEADER = ["ruleset", "a", "b", "p_flip"]


def _score_rows(rep: RulesetReport, d: dict) -> list[list]:
    rows = []
    for sub in d["submissions"]:
        lo, hi = sub["interval"] or (None, None)
        slo, shi = sub.get("speedup_interval") or (None, None)
        rlo, rhi = sub["rank_interval"] or (None, None)
        rows.append([
            rep.ruleset, sub["rank"], sub["name"], sub["score"], lo, hi, sub["score_exact"],
            sub["score_trapezoid"], sub.get("speedup"), slo, shi, sub["p_rank_1"], rlo, rhi,
            (sub.get("cost") or {}).get("device_s"),
        ])
    return rows


def _time_rows(rep: RulesetReport) -> tuple[list[list], list[list]]:
    """(times.csv rows, study_times.csv rows) of one ruleset."""
    res = rep.result
    st = study_times(res.table.trial_times, res.table.choice_keys())
    times, studies = [], []
    for i, name in enumerate(res.submissions):
        for j, w in enumerate(res.workloads):
            times.append([
                rep.ruleset, name, w, _num(res.times[i, j]), _num(res.raw_times[i, j]),
                res.status[i, j], _num(res.ratios[i, j]), len(res.table.study_ids[i][j]),
            ])
        for j, w in enumerate(res.table.workloads):
            for k, study in enumerate(res.table.study_ids[i][j]):
                studies.append([rep.ruleset, name, w, study, _num(st[i, j, k])])
    return times, studies


def write_csvs(reports: Sequence[RulesetReport], out: Path) -> list[Path]:
    """scores.csv, times.csv, study_times.csv and order_flips.csv in ``out``."""
    tables: dict[str, list[list]] = {
        "scores.csv": [SCORES_HEADER],
        "times.csv": [TIMES_HEADER],
        "study_times.csv": [STUDIES_HEADER],
        "order_flips.csv": [FLIPS_HEADER],
    }
    for rep in reports:
        d = report_to_dict(rep)
        tables["scores.csv"] += _score_rows(rep, d)
        times, studies = _time_rows(rep)
        tables["times.csv"] += times
        tables["study_times.csv"] += studies
        tables["order_flips.csv"] += [[rep.ruleset, f["a"], f["b"], f["p_flip"]] for f in d["order_flips"]]
    paths = []
    for name, rows in tables.items():
        path = out / name
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        paths.append(path)
    return paths


def plot_profiles(report: RulesetReport, stem: Path, digits: int = 4) -> list[Path]:
    """Performance-profile step plot as ``<stem>.png`` and ``<stem>.svg``."""
    from matplotlib.figure import Figure  # Agg canvas; no pyplot state, no display needed

    res, boot = report.result, report.boot
    fig = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    styles = ["-", "--", "-.", ":"]
    colors = [
        "#0072B2",
        "#D55E00",
        "#009E73",
        "#CC79A7",
        "#E69F00",
        "#56B4E9",
        "#000000",
        "#F0E442",
    ]
    for n, i in enumerate(res.ranking()):
        taus, rho = profile_steps(res.ratios[i])
        label = f"{res.submissions[i]}  " + format_score(
            res.score[i], None if boot is None else boot.interval[i], min(digits, 3)
        )
        ax.step(
            taus,
            rho,
            where="post",
            label=label,
            linewidth=1.8,
            linestyle=styles[(n // len(colors)) % len(styles)],
            color=colors[n % len(colors)],
        )
    ax.set_xlim(1.0, TAU_MAX)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(r"performance ratio $\tau$ (time to target / fastest submission's)")
    ax.set_ylabel(r"fraction of base workloads $\rho_s(\tau)$")
    ax.set_title(
        f"Performance profiles, {RULESET_TITLES[report.ruleset]} ({len(res.workloads)} workloads)",
        fontsize="medium",
    )
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.legend(
        title="submission  score" + (f" [{boot.confidence:.0%} CI]" if boot else ""),
        fontsize="small",
        title_fontsize="small",
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
    )
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=200)
    fig.savefig(paths[1])
    return paths


def write_outputs(reports: Sequence[RulesetReport], out: str | Path, digits: int = 4) -> list[Path]:
    """CSV, JSON and plots of every ruleset into folder ``out`` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_csvs(reports, out)
    if any(rep.cost is not None for rep in reports):
        paths.append(write_cost_csv(reports, out / "cost.csv"))
    json_path = out / "scores.json"
    json_path.write_text(reports_to_json(reports) + "\n")
    paths.append(json_path)
    for rep in reports:
        paths += plot_profiles(rep, out / f"performance_profile_{rep.ruleset}", digits)
    return paths
