"""How well does the small suite predict the published ranking? Rank agreement with intervals.

The small-suite score of each entry comes from the shipped logs, scored exactly as
``algoperf score --logs <leaderboard logs>`` scores them (the board's ``rules_version``,
AlgoPerf v0.6's rules; our registry's small-suite targets). Against the published full-scale scores it reports:

* Kendall's tau-b (pairs ordered alike minus pairs ordered the other way, over the pairs,
  with the tie correction) and Spearman's rho (Pearson correlation of the ranks);
* top-1 agreement: does the small suite put the published winner first;
* intervals from the scoring bootstrap: each replicate redraws, per entry and workload, the
  trials (two-stage: studies, then trials within them; with one study that is the trials),
  rescores everything, and recomputes tau and rho against the fixed published scores. The
  percentile interval says how much of the agreement is luck of the trials we ran;
* per small workload: the ranking that workload alone gives (its time-to-target profile
  score) against the published ranking, to see which workloads carry the agreement;
* per small workload and full-scale workload (given full-scale logs of some entries, e.g.
  AlgoPerf's published per-workload logs): Kendall tau between the entries' times to target
  on the one and on the other (median over studies; a miss ties with every miss, after every
  time), over the entries both have; "which small workload agrees with which full one";
* per entry and workload, the cost profile that explains much of a disagreement: the
  first eval's submission time (compilation and the first step, charged as on AlgoPerf) and
  the rate of ``update_params`` calls per second of submission time between the first and
  last eval, relative to the baseline entry's (median over trials).

A workload enters the score only when every entry has logs for it, so a campaign in
progress is scored on the same workloads for everyone; the report names them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import stats

from algoperf.leaderboards import Leaderboard, reference_records
from algoperf.scoring.bootstrap import bootstrap
from algoperf.scoring.profile import score_records
from algoperf.scoring.targets import registry_targets
from algoperf.scoring.versions import get_version


@dataclass
class Agreement:
    """Rank agreement of one set of small-suite scores with the published ones."""

    n: int
    kendall_tau: float
    spearman_rho: float
    top1: bool
    tau_interval: tuple[float, float] | None = None
    rho_interval: tuple[float, float] | None = None
    top1_share: float | None = None  # share of bootstrap replicates with the published winner first


@dataclass
class ValidityReport:
    board: str
    entries: list[str]
    workloads: list[str]
    missing: dict[str, list[str]]  # entry -> workloads without logs (left out of everyone's score)
    small_scores: dict[str, float]
    small_intervals: dict[str, tuple[float, float]]
    published: dict[str, float]
    overall: Agreement
    per_workload: dict[str, Agreement] = field(default_factory=dict)
    n_bootstrap: int = 0
    confidence: float = 0.95
    hardware: dict[str, list[str]] = field(default_factory=dict)  # workload -> machines its trials ran on
    costs: dict[str, dict[str, StepCost]] = field(default_factory=dict)  # workload -> entry -> cost
    small_times: dict[str, dict[str, float]] = field(default_factory=dict)  # entry -> workload -> time
    by_workload: WorkloadAgreement | None = None


@dataclass
class WorkloadAgreement:
    """Small workload x full-scale workload: do the entries' times order alike on both?"""

    source: str  # the full-scale logs
    entries: list[str]  # the entries in both
    full_times: dict[str, dict[str, float]]  # entry -> full workload -> time (inf: a miss)
    tau: dict[tuple[str, str], float | None]  # (small, full) -> Kendall tau-b; None: no order on one side


@dataclass(frozen=True)
class StepCost:
    """What one entry's trials on one workload cost per step (medians over its trials)."""

    first_eval_s: float  # submission time at the first eval: compilation plus the first step
    rate: float | None  # update_params calls per second after it; None if no trial evaluated twice
    relative_rate: float | None = None  # rate / the reference entry's rate


def step_costs(records, board: Leaderboard, reference: str = "baseline") -> dict[str, dict[str, StepCost]]:
    """Workload -> entry -> :class:`StepCost`, the rate relative to ``reference``'s."""
    grouped: dict[str, dict[str, list]] = {}
    for r in records:
        grouped.setdefault(r.workload, {}).setdefault(_entry(r.submission, board), []).append(r)
    out: dict[str, dict[str, StepCost]] = {}
    for workload, by_entry in sorted(grouped.items()):
        costs = {}
        for entry, trials in sorted(by_entry.items()):
            rates = [
                (t.steps[-1] - t.steps[0]) / (t.times[-1] - t.times[0])
                for t in trials
                if t.steps is not None and len(t.times) > 1 and t.times[-1] > t.times[0]
            ]
            first = float(np.median([t.times[0] for t in trials if len(t.times)]))
            costs[entry] = StepCost(first_eval_s=first, rate=float(np.median(rates)) if rates else None)
        ref = costs.get(reference)
        if ref is not None and ref.rate:
            costs = {e: replace(c, relative_rate=c.rate / ref.rate if c.rate is not None else None)
                     for e, c in costs.items()}
        out[workload] = costs
    return out


def agreement(small: dict[str, float], published: dict[str, float]) -> Agreement:
    """Kendall tau-b, Spearman rho and top-1 of ``small`` against ``published`` (shared names)."""
    names = sorted(set(small) & set(published))
    if len(names) < 3:
        raise ValueError(f"rank agreement needs at least 3 entries in both, got {len(names)}")
    a = np.array([small[n] for n in names])
    b = np.array([published[n] for n in names])
    tau = stats.kendalltau(a, b).statistic
    rho = stats.spearmanr(a, b).statistic
    winner = names[int(np.argmax(b))]
    top1 = bool(a[names.index(winner)] >= a.max())
    return Agreement(n=len(names), kendall_tau=_num(tau), spearman_rho=_num(rho), top1=top1)


def median_times(result, board: Leaderboard | None = None) -> dict[str, dict[str, float]]:
    """Entry -> base workload -> time to target of a ScoreResult: median over studies, inf for a
    miss (the JSON report's ``median_times``)."""
    names = [_entry(s, board) if board else s for s in result.submissions]
    return {e: {w: float(result.raw_times[i, j]) for j, w in enumerate(result.workloads)} for i, e in enumerate(names)}


def full_scale_times(logs: Path, aliases: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Entry -> full workload -> time to target, from a full-scale log tree scored by its own rules.

    ``aliases`` renames the tree's submissions to the board's entries (``shampoo`` ->
    ``shampoo_submission``).
    """
    from algoperf.scoring.options import ScoreRequest, Warnings
    from algoperf.scoring.pipeline import score_sources

    scored = score_sources(ScoreRequest(logs=[str(logs)], n_bootstrap=0), Warnings())
    if not scored.reports:
        raise ValueError(f"{logs}: no trial logs to score")
    times = median_times(scored.reports[0].result)
    return {(aliases or {}).get(name, name): t for name, t in times.items()}


def workload_agreement(small: dict[str, dict[str, float]], full: dict[str, dict[str, float]],
                       source: str) -> WorkloadAgreement:
    """Kendall tau-b per (small workload, full workload) over the entries in both.

    A miss is inf: it ties with every other miss and comes after every time. Where every
    entry ties on one side (all missed, say) the pair has no order to agree with: None.
    """
    entries = sorted(set(small) & set(full))
    if len(entries) < 2:
        raise ValueError(f"{source}: needs at least 2 of the leaderboard's entries, found {entries or 'none'} "
                         f"(its submissions: {', '.join(sorted(full))}; --alias NAME=ENTRY renames them)")
    small_w = sorted(set.intersection(*(set(small[e]) for e in entries)))
    full_w = sorted(set.intersection(*(set(full[e]) for e in entries)))
    tau: dict[tuple[str, str], float | None] = {}
    for sw in small_w:
        a = np.array([small[e][sw] for e in entries])
        for fw in full_w:
            b = np.array([full[e][fw] for e in entries])
            tau[sw, fw] = _ordered_tau(a, b)
    return WorkloadAgreement(source=source, entries=entries, full_times={e: full[e] for e in entries}, tau=tau)


def _ordered_tau(a: np.ndarray, b: np.ndarray) -> float | None:
    """Kendall tau-b of two time vectors, misses (inf) ranked last and tied; None if one side is constant."""
    ra, rb = stats.rankdata(np.where(np.isfinite(a), a, np.inf)), stats.rankdata(np.where(np.isfinite(b), b, np.inf))
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return None
    return float(stats.kendalltau(ra, rb).statistic)


def _num(x: float) -> float:
    return float(x) if np.isfinite(x) else 0.0  # constant scores: no rank information


def _entry(submission: str, board: Leaderboard) -> str:
    return submission.removeprefix(f"{board.prefix}/")


def complete_workloads(records, board: Leaderboard) -> tuple[list[str], dict[str, list[str]]]:
    """Workloads every entry has logs for, and what each entry lacks."""
    have: dict[str, set[str]] = {}
    for r in records:
        have.setdefault(_entry(r.submission, board), set()).add(r.workload)
    every = set.intersection(*have.values()) if have else set()
    union = set.union(*have.values()) if have else set()
    missing = {e: sorted(union - w) for e, w in have.items() if union - w}
    return sorted(every), missing


def hardware_by_workload(records) -> dict[str, list[str]]:
    """Workload -> the hardware kinds its trials recorded (meta_data_0.json beside each log).

    Time to target is only comparable between entries measured on one kind of machine, so a
    workload with more than one kind is flagged in the report. Campaigns span sessions, and a
    session's machine is not chosen (two CPU models have been seen), so this is checked, not assumed.
    """
    kinds: dict[str, set[str]] = {}
    for r in records:
        meta_path = Path(r.source).parent / "meta_data_0.json" if r.source else None
        kind = "unknown"
        if meta_path is not None and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            kind = (meta.get("scheduler") or {}).get("hardware_kind") or str(meta.get("hardware", {}).get("cpu_model"))
        kinds.setdefault(r.workload, set()).add(kind)
    return {w: sorted(k) for w, k in sorted(kinds.items())}


def validity_report(
    board: Leaderboard, n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95,
    full_logs: Path | None = None, aliases: dict[str, str] | None = None,
) -> ValidityReport:
    """Score the shipped logs and compare their ranking with the published one (and, given
    ``full_logs``, each small workload's ordering with each full-scale workload's)."""
    records = reference_records(board)
    workloads, missing = complete_workloads(records, board)
    if not workloads:
        raise ValueError(f"no workload has logs of every entry of {board.name} yet")
    records = [r for r in records if r.workload in workloads]
    version = get_version(board.rules_version)
    targets = registry_targets()
    published = board.published_scores()

    def scored(names: list[str]):
        options = version.options("external", workloads=tuple(names))
        result = score_records(records, targets, options)
        entries = [_entry(s, board) for s in result.submissions]
        return result, entries

    result, entries = scored(workloads)
    small = dict(zip(entries, map(float, result.score), strict=True))
    overall = agreement(small, published)
    boot = bootstrap(result, n=n_bootstrap, seed=seed, confidence=confidence, level="trials")
    taus, rhos, tops = [], [], []
    for replicate in boot.samples:
        a = agreement(dict(zip(entries, map(float, replicate), strict=True)), published)
        taus.append(a.kendall_tau)
        rhos.append(a.spearman_rho)
        tops.append(a.top1)
    alpha = (1 - confidence) / 2
    overall.tau_interval = tuple(np.quantile(taus, [alpha, 1 - alpha]).tolist())
    overall.rho_interval = tuple(np.quantile(rhos, [alpha, 1 - alpha]).tolist())
    overall.top1_share = float(np.mean(tops))
    report = ValidityReport(
        board=board.name, entries=entries, workloads=workloads, missing=missing, small_scores=small,
        small_intervals={e: tuple(map(float, boot.interval[i])) for i, e in enumerate(entries)},
        published={e: published[e] for e in entries if e in published}, overall=overall,
        n_bootstrap=n_bootstrap, confidence=confidence, hardware=hardware_by_workload(records),
        costs=step_costs(records, board), small_times=median_times(result, board),
    )
    if full_logs is not None:
        full = full_scale_times(Path(full_logs), aliases)
        report.by_workload = workload_agreement(report.small_times, full, str(full_logs))
    if len(workloads) > 1:
        for w in workloads:
            one, names = scored([w])
            report.per_workload[w] = agreement(dict(zip(names, map(float, one.score), strict=True)), published)
    return report


def _interval(iv: tuple[float, float] | None) -> str:
    return f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else ""


def _cost_table(report: ValidityReport) -> list[str]:
    """Per entry and workload: first eval's submission time, and call rate relative to baseline."""
    workloads = list(report.costs)
    lines = ["", "Cost per step, median over trials: submission time at the first eval (compilation and the "
             "first step) / `update_params` calls per second after it, relative to baseline's "
             "(LAWA entries run several optimizer steps per call).", "",
             "| entry | " + " | ".join(workloads) + " |", "| --- |" + " --- |" * len(workloads)]
    for e in sorted(report.entries, key=lambda e: -report.small_scores[e]):
        cells = []
        for w in workloads:
            c = report.costs[w].get(e)
            if c is None:
                cells.append("-")
            else:
                rel = f"{c.relative_rate:.2f}x" if c.relative_rate is not None else "no 2nd eval"
                cells.append(f"{c.first_eval_s:.1f} s / {rel}")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return lines


def _time(t: float) -> str:
    return f"{t:.0f} s" if np.isfinite(t) else "miss"


def _workload_table(wa: WorkloadAgreement) -> list[str]:
    """Small workload x full workload: Kendall tau of the entries' times (n entries)."""
    full_w = sorted({fw for _, fw in wa.tau})
    small_w = sorted({sw for sw, _ in wa.tau})
    lines = ["", f"Which small workload orders the entries as which full-scale workload does: Kendall tau "
             f"of times to target over the {len(wa.entries)} entries with full-scale logs "
             f"({', '.join(wa.entries)}; {wa.source}). '-': every entry tied on one side (e.g. all missed).", "",
             "| full-scale time to target | " + " | ".join(full_w) + " |", "| --- |" + " --- |" * len(full_w)]
    for e in wa.entries:
        lines.append(f"| {e} | " + " | ".join(_time(wa.full_times[e][fw]) for fw in full_w) + " |")
    lines += ["", "| small workload (the one it stands in for in bold) | " + " | ".join(full_w) + " |",
              "| --- |" + " --- |" * len(full_w)]
    for sw in small_w:
        counterpart = _reference_workload(sw)
        cells = []
        for fw in full_w:
            cell = "-" if wa.tau[sw, fw] is None else f"{wa.tau[sw, fw]:+.2f}"
            cells.append(f"**{cell}**" if fw == counterpart else cell)
        lines.append(f"| {sw} ({counterpart or 'none'}) | " + " | ".join(cells) + " |")
    return lines


def _reference_workload(name: str) -> str | None:
    """The AlgoPerf workload a small-suite workload stands in for (its class says)."""
    from algoperf import registry

    try:
        return registry.get_workload_class(name).reference_workload
    except Exception:  # noqa: BLE001 - a workload not installed here: no counterpart shown
        return None


def render_markdown(report: ValidityReport, proxy: dict | None = None) -> str:
    """The report as a Markdown section (docs/validity.md embeds it)."""
    o = report.overall
    pct = round(report.confidence * 100)
    lines = [
        f"Leaderboard `{report.board}`: {o.n} entries scored on {len(report.workloads)} small-suite "
        f"workloads ({', '.join(report.workloads)}); {report.n_bootstrap} bootstrap replicates over trials, "
        f"{pct}% intervals.",
        "",
        "| measure | small suite vs published v0.5 |" + (" AlgoPerf's qualification set |" if proxy else ""),
        "| --- | --- |" + (" --- |" if proxy else ""),
        f"| Kendall tau | {o.kendall_tau:.3f}{_interval(o.tau_interval)} |" + (f" {proxy.get('kendall_tau', '-')} |" if proxy else ""),
        f"| Spearman rho | {o.spearman_rho:.3f}{_interval(o.rho_interval)} |" + (f" {proxy.get('spearman_rho', '-')} |" if proxy else ""),
        f"| published winner first | {'yes' if o.top1 else 'no'} (in {o.top1_share:.0%} of replicates) |" + (" - |" if proxy else ""),
        "",
        "| entry | small-suite score [interval] | published score |",
        "| --- | --- | --- |",
    ]
    for e in sorted(report.entries, key=lambda e: -report.small_scores[e]):
        lo, hi = report.small_intervals[e]
        pub = report.published.get(e)
        lines.append(f"| {e} | {report.small_scores[e]:.4f} [{lo:.4f}, {hi:.4f}] | {pub if pub is not None else '-'} |")
    if report.per_workload:
        lines += ["", "| small workload alone | Kendall tau | Spearman rho | winner first |", "| --- | --- | --- | --- |"]
        for w, a in report.per_workload.items():
            lines.append(f"| {w} | {a.kendall_tau:.3f} | {a.spearman_rho:.3f} | {'yes' if a.top1 else 'no'} |")
    if report.by_workload is not None:
        lines += _workload_table(report.by_workload)
    if report.costs:
        lines += _cost_table(report)
    if report.hardware:
        lines += ["", "| small workload | measured on |", "| --- | --- |"]
        for w, kinds in report.hardware.items():
            flag = " (MIXED: times across machines are not comparable)" if len(kinds) > 1 else ""
            lines.append(f"| {w} | {'; '.join(kinds)}{flag} |")
    if report.missing:
        lines += ["", "Left out of every entry's score (not yet run for some entries): "
                  + "; ".join(f"{e}: {', '.join(ws)}" for e, ws in sorted(report.missing.items()))]
    return "\n".join(lines) + "\n"
