"""Scores for people and scripts: terminal table, JSON, CSV files and profile plots."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from algoperf.scoring.bootstrap import BootstrapResult
from algoperf.scoring.profile import TAU_MAX, ScoreResult, profile_steps, study_times

RULESET_TITLES = {"external": "external tuning", "self": "self-tuning"}
#: Column headers of the terminal table for AlgoPerf's long workload names.
SHORT_NAMES = {
    "criteo1tb": "criteo1tb",
    "fastmri": "fastmri",
    "imagenet_resnet": "resnet",
    "imagenet_vit": "vit",
    "librispeech_conformer": "conformer",
    "librispeech_deepspeech": "deepspeech",
    "finewebedu_lm": "fineweb_lm",
    "ogbg": "ogbg",
    "wmt": "wmt",
}
_STATUS_TEXT = {
    "miss": "[red]miss[/]",
    "missing": "[red]no logs[/]",
    "over_4x": "[yellow]>4x[/]",
    "heldout": "[yellow]held-out[/]",
}


@dataclass
class RulesetReport:
    """Everything reported for one ruleset: point scores, bootstrap, warnings."""

    result: ScoreResult
    boot: BootstrapResult | None = None
    warnings: list[str] = field(default_factory=list)
    benchmark_version: str | None = None
    version_reason: str | None = None  # why that version (inferred from what)

    @property
    def ruleset(self) -> str:
        return self.result.options.ruleset


# --- formatting --------------------------------------------------------------------------


def format_score(score: float, interval: Sequence[float] | None = None, digits: int = 4) -> str:
    """``0.7800 [0.7100, 0.8300]`` (or just the score without an interval)."""
    text = f"{score:.{digits}f}"
    if interval is not None:
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


def format_time(seconds: float | None) -> str:
    """A duration for the table: ``45.2 s``, ``12.3 min`` or ``5.21 h``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 100:
        return f"{seconds:.1f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _num(x: float) -> float | None:
    """A JSON number, None for inf/NaN."""
    x = float(x)
    return x if math.isfinite(x) else None


# --- JSON ----------------------------------------------------------------------------------


def report_to_dict(report: RulesetReport) -> dict[str, Any]:
    """The JSON form of one ruleset's results (times in seconds, null for a miss)."""
    res, boot = report.result, report.boot
    workloads = res.workloads
    rank_of = {i: r + 1 for r, i in enumerate(res.ranking())}
    subs = []
    for i in res.ranking():
        entry: dict[str, Any] = {
            "name": res.submissions[i],
            "rank": rank_of[i],
            "score": float(res.score[i]),
            "interval": None if boot is None else [float(v) for v in boot.interval[i]],
            "score_exact": float(res.score_exact[i]),
            "score_trapezoid": float(res.score_trapezoid[i]),
            "times": {w: _num(res.times[i, j]) for j, w in enumerate(workloads)},
            "median_times": {w: _num(res.raw_times[i, j]) for j, w in enumerate(workloads)},
            "status": {w: str(res.status[i, j]) for j, w in enumerate(workloads)},
            "ratios": {w: _num(res.ratios[i, j]) for j, w in enumerate(workloads)},
        }
        if res.speedup is not None:
            entry["speedup"] = float(res.speedup[i])
            entry["speedup_interval"] = (
                None
                if boot is None or boot.speedup_interval is None
                else [float(v) for v in boot.speedup_interval[i]]
            )
        subs.append(entry)
    flips = []
    if boot is not None:
        order = res.ranking()
        for x, a in enumerate(order):
            for b in order[x + 1 :]:
                flips.append(
                    {
                        "a": res.submissions[a],
                        "b": res.submissions[b],
                        "p_flip": float(boot.flips[a, b]),
                    }
                )
    opts = res.options
    return {
        "ruleset": report.ruleset,
        "benchmark_version": report.benchmark_version,
        "benchmark_version_reason": report.version_reason,
        "heldout_rule": opts.heldout_rule,
        "trial_choice": opts.trial_choice,
        "area": opts.area,
        "tau_points": opts.tau_points if opts.area == "trapezoid" else None,
        "tau_max": opts.tau_max,
        "base_workloads": list(workloads),
        "heldout_workloads": [res.table.workloads[v] for v, _ in res.table.pairs],
        "budgets_sec": {w: _num(res.table.budgets[j]) for j, w in enumerate(res.table.workloads)},
        "baseline": res.baseline,
        "bootstrap": None
        if boot is None
        else {
            "replicates": boot.n,
            "seed": boot.seed,
            "level": boot.level,
            "confidence": boot.confidence,
        },
        "submissions": subs,
        "order_flips": flips,
        "warnings": list(report.warnings),
    }


def reports_to_json(reports: Sequence[RulesetReport]) -> str:
    """``{"rulesets": [...]}``: one entry per ruleset scored."""
    return json.dumps({"rulesets": [report_to_dict(r) for r in reports]}, indent=2)


# --- terminal ------------------------------------------------------------------------------


def version_label(version: str) -> str:
    """``benchmark v0.6`` for AlgoPerf's versions; other rule sets by their own name."""
    return f"benchmark v{version}" if str(version)[:1].isdigit() else f"{version} rules"


def render(report: RulesetReport, console: Console, digits: int = 4) -> None:
    """Print the score table (and, with a bootstrap, the order-flip matrix)."""
    res, boot = report.result, report.boot
    n_studies = max((len(w) for s in res.table.study_ids for w in s), default=0)
    if boot is not None and n_studies < 2:  # resampling one study gives it back: no interval
        console.print(
            "One study per submission gives no interval and no order uncertainty (the bootstrap "
            "resamples studies): run 2 or more (`algoperf run --studies 3`, AlgoPerf's count) for one.",
            highlight=False,
        )
        boot = None
    opts = res.options
    title = (
        f"AlgoPerf scores, {RULESET_TITLES[report.ruleset]}"
        f" ({opts.area} area"
        + (", v0.5 held-out rule" if opts.heldout_rule == "v0.5" else "")
        + (", trial per study by eval index" if opts.trial_choice == "eval-index" else "")
        + (f", {version_label(report.benchmark_version)}" if report.benchmark_version else "")
        + ")"
    )
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("submission", no_wrap=True)
    ci = f" [{boot.confidence:.0%} CI]" if boot is not None else ""
    table.add_column("score" + ci, justify="right", no_wrap=True)
    if res.speedup is not None:
        table.add_column(f"speedup vs {res.baseline}", justify="right", no_wrap=True)
    for w in res.workloads:
        table.add_column(SHORT_NAMES.get(w, w), justify="right", no_wrap=True)
    for rank, i in enumerate(res.ranking(), start=1):
        cells = [
            str(rank),
            res.submissions[i],
            format_score(res.score[i], None if boot is None else boot.interval[i], digits),
        ]
        if res.speedup is not None:
            sp = f"{res.speedup[i]:.3f}"
            if boot is not None and boot.speedup_interval is not None:
                lo, hi = boot.speedup_interval[i]
                sp += f" [{lo:.2f}, {hi:.2f}]"
            cells.append(sp)
        for j in range(len(res.workloads)):
            status = res.status[i, j]
            if status == "ok":
                cells.append(format_time(res.times[i, j]))
            elif status in ("over_4x", "heldout"):
                cells.append(f"{_STATUS_TEXT[status]} {format_time(res.raw_times[i, j])}")
            else:
                cells.append(_STATUS_TEXT[status])
        table.add_row(*cells)
    chosen = "earliest (by eval index)" if opts.trial_choice == "eval-index" else "fastest"
    caption = (
        f"times: median over studies of the {chosen} trial's time to target; "
        "miss: target not reached within budget; >4x: over 4x the fastest; "
        "held-out: its held-out variant missed"
    )
    if boot is not None:
        caption += f"; CI: {boot.n} bootstrap replicates resampling {boot.level} (seed {boot.seed})"
    table.caption = caption
    table.caption_justify = "left"
    console.print(table)
    if boot is not None and len(res.submissions) > 1:
        order = res.ranking()
        console.print(
            f"How often each pair's order flips (share of the {boot.n} bootstrap replicates):"
        )
        flips = Table(header_style="bold")
        flips.add_column("")
        for i in order:
            flips.add_column(res.submissions[i], justify="right")
        for a in order:
            flips.add_row(
                res.submissions[a],
                *("" if a == b else f"{boot.flips[a, b]:.2f}" for b in order),
            )
        console.print(flips)


# --- files ---------------------------------------------------------------------------------


def write_csvs(reports: Sequence[RulesetReport], out: Path) -> list[Path]:
    """scores.csv, times.csv, study_times.csv and order_flips.csv in ``out``."""
    paths = [out / n for n in ("scores.csv", "times.csv", "study_times.csv", "order_flips.csv")]
    with (
        paths[0].open("w", newline="") as f_scores,
        paths[1].open("w", newline="") as f_times,
        paths[2].open("w", newline="") as f_studies,
        paths[3].open("w", newline="") as f_flips,
    ):
        scores = csv.writer(f_scores)
        scores.writerow(
            [
                "ruleset",
                "rank",
                "submission",
                "score",
                "lo",
                "hi",
                "score_exact",
                "score_trapezoid",
                "speedup",
                "speedup_lo",
                "speedup_hi",
            ]
        )
        times = csv.writer(f_times)
        times.writerow(
            [
                "ruleset",
                "submission",
                "workload",
                "time_to_target",
                "median_time",
                "status",
                "ratio",
                "studies",
            ]
        )
        studies = csv.writer(f_studies)
        studies.writerow(["ruleset", "submission", "workload", "study", "fastest_trial_time"])
        flips = csv.writer(f_flips)
        flips.writerow(["ruleset", "a", "b", "p_flip"])
        for rep in reports:
            d = report_to_dict(rep)
            res = rep.result
            for sub in d["submissions"]:
                lo, hi = sub["interval"] or (None, None)
                slo, shi = sub.get("speedup_interval") or (None, None)
                scores.writerow(
                    [
                        rep.ruleset,
                        sub["rank"],
                        sub["name"],
                        sub["score"],
                        lo,
                        hi,
                        sub["score_exact"],
                        sub["score_trapezoid"],
                        sub.get("speedup"),
                        slo,
                        shi,
                    ]
                )
            st = study_times(res.table.trial_times, res.table.choice_keys())
            for i, name in enumerate(res.submissions):
                for j, w in enumerate(res.workloads):
                    times.writerow(
                        [
                            rep.ruleset,
                            name,
                            w,
                            _num(res.times[i, j]),
                            _num(res.raw_times[i, j]),
                            res.status[i, j],
                            _num(res.ratios[i, j]),
                            len(res.table.study_ids[i][j]),
                        ]
                    )
                for j, w in enumerate(res.table.workloads):
                    for k, study in enumerate(res.table.study_ids[i][j]):
                        studies.writerow([rep.ruleset, name, w, study, _num(st[i, j, k])])
            for flip in d["order_flips"]:
                flips.writerow([rep.ruleset, flip["a"], flip["b"], flip["p_flip"]])
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
    json_path = out / "scores.json"
    json_path.write_text(reports_to_json(reports) + "\n")
    paths.append(json_path)
    for rep in reports:
        paths += plot_profiles(rep, out / f"performance_profile_{rep.ruleset}", digits)
    return paths
