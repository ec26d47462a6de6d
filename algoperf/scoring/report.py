"""Scores for people and scripts: terminal table, JSON, CSV files and profile plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from algoperf.scoring.bootstrap import BootstrapResult
from algoperf.scoring.cost import CampaignCost
from algoperf.scoring.profile import ScoreResult

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
    cost: CampaignCost | None = None  # compute cost of the trials scored

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


def format_hours(device_s: float) -> str:
    """Device-seconds as device-hours: ``0.0123``, ``12.3``, ``9,170``."""
    h = device_s / 3600
    return f"{h:,.0f}" if h >= 100 else f"{h:.3g}"


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
            "p_rank_1": None if boot is None or boot.p_first is None else float(boot.p_first[i]),
            "rank_interval": None
            if boot is None or boot.rank_interval is None
            else [int(v) for v in boot.rank_interval[i]],
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
        if report.cost is not None:
            entry["cost"] = _cost_entry(report.cost, res.submissions[i], workloads)
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
        "cost_total": None
        if report.cost is None
        else {"device_s": report.cost.total_device_s, "device_h": report.cost.total_device_s / 3600,
              "usd": report.cost.total_usd, "notes": list(report.cost.notes)},
        "order_flips": flips,
        "warnings": list(report.warnings),
    }


def _cost_entry(cost: CampaignCost, sub: str, workloads: Sequence[str]) -> dict[str, Any]:
    """Device-seconds of one submission: split, in total, per workload, to target."""
    row = cost.sums("submission").get((sub,), {})
    per_w = cost.sums("workload")
    return {
        "train_device_s": row.get("train"),
        "eval_device_s": row.get("eval"),
        "overhead_device_s": row.get("overhead"),
        "device_s": row.get("total"),
        "device_h": None if not row else row["total"] / 3600,
        "usd": _num(row["usd"]) if row and cost.options.prices else None,
        "workloads": {w: per_w.get((sub, w), {}).get("total") for w in workloads},
        "to_target_device_s": {w: cost.to_target.get((sub, w)) for w in workloads},
    }


def rank_text(boot: BootstrapResult | None, i: int) -> tuple[str, str]:
    """(P(1st), rank interval) cells of submission ``i``: ``"0.62"``, ``"1-3"``."""
    if boot is None or boot.p_first is None or boot.rank_interval is None:
        return "-", "-"
    lo, hi = boot.rank_interval[i]
    return f"{boot.p_first[i]:.2f}", f"{lo}" if lo == hi else f"{lo}-{hi}"


def reports_to_json(reports: Sequence[RulesetReport]) -> str:
    """``{"rulesets": [...]}``: one entry per ruleset scored."""
    return json.dumps({"rulesets": [report_to_dict(r) for r in reports]}, indent=2)


# --- terminal ------------------------------------------------------------------------------


def score_table_view(report: RulesetReport, digits: int = 4) -> Table:
    """The score table of one ruleset as a rich :class:`Table` (what ``render`` prints)."""
    res, boot = report.result, report.boot
    opts = res.options
    title = (
        f"AlgoPerf scores, {RULESET_TITLES[report.ruleset]}"
        f" ({opts.area} area"
        + (", v0.5 held-out rule" if opts.heldout_rule == "v0.5" else "")
        + (", trial per study by eval index" if opts.trial_choice == "eval-index" else "")
        + (f", benchmark v{report.benchmark_version}" if report.benchmark_version else "")
        + ")"
    )
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("submission", no_wrap=True)
    ci = f" [{boot.confidence:.0%} CI]" if boot is not None else ""
    table.add_column("score" + ci, justify="right", no_wrap=True)
    if boot is not None:
        table.add_column("P(1st)", justify="right", no_wrap=True)
        table.add_column("rank" + ci, justify="right", no_wrap=True)
    if report.cost is not None:
        table.add_column("device-h", justify="right", no_wrap=True)
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
        if boot is not None:
            cells += list(rank_text(boot, i))
        if report.cost is not None:
            total = report.cost.sums("submission").get((res.submissions[i],), {}).get("total", 0.0)
            cells.append(format_hours(total))
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
        caption += (
            f"; CI: {boot.n} bootstrap replicates resampling {boot.level} (seed {boot.seed}); "
            "P(1st): share of replicates ranking it first"
        )
    if report.cost is not None:
        caption += "; device-h: devices x wall time of all its trials (training, eval, overhead)"
        if report.cost.total_usd is not None:
            caption += f"; campaign total {format_hours(report.cost.total_device_s)} device-h = USD {report.cost.total_usd:.2f}"
        else:
            caption += f"; campaign total {format_hours(report.cost.total_device_s)} device-h"
        if report.cost.notes:
            caption += "; " + "; ".join(report.cost.notes)
    table.caption = caption
    table.caption_justify = "left"
    return table


def render(report: RulesetReport, console: Console, digits: int = 4) -> None:
    """Print the score table (and, with a bootstrap, the order-flip matrix)."""
    console.print(score_table_view(report, digits))
    res, boot = report.result, report.boot
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
