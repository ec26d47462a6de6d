"""From trial records to a :class:`TimeTable`: each trial's time to target, padded.

A trial's time to target is the ``accumulated_submission_time`` of its first eval whose
validation metric reaches the target (>= for higher-is-better, <= for lower; NaN never
does); inf if none does or if that time is over the workload's runtime budget. The row
number of that eval (its *eval index*) is kept beside it: the v0.5 scorer picks a
study's trial by it (``trial_choice="eval-index"``) where v0.6 picks the least time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from algoperf import target_rule
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.logs import TrialLog
from algoperf.scoring.targets import RULESETS, Targets, normalise_version, runtime_budget
from algoperf.scoring.tree import ReadIssues

#: Largest performance ratio that scores; also the "within 4x of the best" rule.
TAU_MAX = 4.0
#: Points of AlgoPerf's discretised tau grid.
ALGOPERF_TAU_POINTS = 100
AREAS = ("exact", "trapezoid")
HELDOUT_RULES = ("v0.6", "v0.5")
#: Per study, the trial with the least time to target, or the one reaching the target at
#: the smallest eval index (first listed on a tie).
TRIAL_CHOICES = ("time", "eval-index")


@dataclass(frozen=True)
class ScoringOptions:
    """How to score one ruleset's logs (:mod:`algoperf.scoring.versions` fills it per version)."""

    ruleset: str = "external"  # "external" or "self": budgets; never mixed in one profile
    heldout_rule: str = "v0.6"  # "v0.5": a base workload also needs its held-out variant
    area: str = "exact"  # "exact" step-function area or AlgoPerf's "trapezoid"
    tau_points: int = ALGOPERF_TAU_POINTS  # grid of the trapezoid area
    missing_as_miss: bool = False  # base workloads without logs count as misses
    workloads: tuple[str, ...] | None = None  # score these instead of the base workloads
    benchmark_version: str | None = None  # budget table; default: the targets' version
    budget_check: bool = True  # a time to target over the budget is a miss
    trial_choice: str = "time"  # which trial of a study counts: "time" or "eval-index"
    tau_max: float = TAU_MAX  # the profile is integrated over [1, tau_max]
    studies: int | None = None  # expected studies per workload (None: not checked)
    trials: int | None = None  # expected trials per study, external tuning (None: not checked)
    strict: bool = False  # a trial without the metric column or a count off is an error

    def __post_init__(self) -> None:
        if self.ruleset not in RULESETS:
            raise ScoringError(f"unknown ruleset {self.ruleset!r}: use external or self")
        if self.heldout_rule not in HELDOUT_RULES:
            raise ScoringError(f"unknown held-out rule {self.heldout_rule!r}: use v0.6 or v0.5")
        if self.area not in AREAS:
            raise ScoringError(f"unknown area {self.area!r}: use exact or trapezoid")
        if self.trial_choice not in TRIAL_CHOICES:
            raise ScoringError(
                f"unknown trial choice {self.trial_choice!r}: use {' or '.join(TRIAL_CHOICES)}"
            )
        if self.tau_points < 2:
            raise ScoringError("the tau grid needs at least 2 points")
        if not self.tau_max > 1:
            raise ScoringError(f"tau_max must be above 1, not {self.tau_max}")


@dataclass
class TimeTable:
    """Times to target of every trial, padded into one array for vectorised scoring.

    ``trial_times[s, w, k, j]`` is trial j of the k-th study of submission s on
    workload w: its time to target, inf for a miss, NaN where there is no such
    study/trial; ``eval_index`` the same for the row of the eval that reached the target.
    Studies and trials are packed at the front, trials in trial-number order. Columns
    are the scored base workloads (the first ``n_base``) followed by the held-out
    variants the v0.5 rule needs; ``pairs`` lists (variant column, base column).
    """

    submissions: list[str]
    workloads: list[str]
    n_base: int
    pairs: list[tuple[int, int]]
    trial_times: np.ndarray
    budgets: np.ndarray  # (W,) seconds, NaN where unknown
    study_ids: list[list[list[int]]]  # [s][w] -> study numbers in column order
    ruleset: str
    notes: list[str] = field(default_factory=list)
    eval_index: np.ndarray | None = None  # like trial_times; None: not recorded
    trial_choice: str = "time"

    @property
    def base_workloads(self) -> list[str]:
        return self.workloads[: self.n_base]

    def present(self) -> np.ndarray:
        """(S, W) bool: the submission has logs for the workload."""
        return ~np.all(np.isnan(self.trial_times), axis=(-1, -2))

    def choice_keys(self) -> np.ndarray | None:
        """What picks a study's trial: None for the least time, else the eval indices."""
        if self.trial_choice == "time":
            return None
        if self.eval_index is None:
            raise ScoringError("this table has no eval indices: use trial_choice='time'")
        return self.eval_index


# --- one trial ---------------------------------------------------------------------------


def first_hit(
    times: np.ndarray,
    values: np.ndarray,
    target: float,
    higher_is_better: bool,
    budget: float | None = None,
) -> tuple[float, float]:
    """(time, eval index) of the first eval whose value reaches ``target``; (inf, inf) if
    none does or its time is over ``budget``."""
    values = np.asarray(values, dtype=float)
    # algoperf.target_rule.reached, one value at a time (a NaN never reaches).
    hits = np.flatnonzero([target_rule.reached("", v, target, higher=higher_is_better) for v in values])
    if hits.size == 0:
        return float("inf"), float("inf")
    t = float(times[hits[0]])
    if budget is not None and not t <= budget:
        return float("inf"), float("inf")
    return t, float(hits[0])


def time_to_target(
    times: np.ndarray,
    values: np.ndarray,
    target: float,
    higher_is_better: bool,
    budget: float | None = None,
) -> float:
    """Time of the first eval whose value reaches ``target``; inf if none or over budget."""
    return first_hit(times, values, target, higher_is_better, budget)[0]


# --- building the table ------------------------------------------------------------------


def _choose_workloads(
    logged: set[str], targets: Targets, options: ScoringOptions, warn: Callable[[str], None]
) -> tuple[list[str], list[str]]:
    """(scored base workloads, held-out variants needed by the rule)."""
    unknown = sorted(w for w in logged if w not in targets.workloads)
    if options.workloads:
        base = list(dict.fromkeys(options.workloads))
        for w in base:
            targets.get(w)
    elif unknown:
        others = f" (nor for {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
        raise ScoringError(
            f"no target known for workload {unknown[0]!r}{others}, targets from "
            f"{targets.source}: give one with --targets FILE, a JSON in the format of "
            "AlgoPerf's workload_targets.json, or leave it out with --workloads"
        )
    elif targets.base_workloads:
        present = [b for b in targets.base_workloads if b in logged]
        absent = [b for b in targets.base_workloads if b not in logged]
        if not present and not options.missing_as_miss:
            raise ScoringError(
                f"none of the logged workloads ({', '.join(sorted(logged))}) is a base workload "
                f"of the targets from {targets.source} ({', '.join(targets.base_workloads)}): "
                "name the workloads to score with --workloads or give other --targets"
            )
        if absent and options.missing_as_miss:
            warn(f"base workloads without logs counted as misses: {', '.join(absent)}")
            base = list(targets.base_workloads)
        else:
            base = present
            # A benchmark version's published suite is scored whole; our registry's many
            # workloads are a menu: a campaign of two of them misses nothing.
            if absent and normalise_version(targets.benchmark_version) is not None:
                warn(
                    f"base workloads left out (no logs): {', '.join(absent)}; "
                    "--missing-as-miss counts them as misses"
                )
    else:
        base = sorted(logged)

    variants: list[str] = []
    if options.heldout_rule == "v0.5":
        listed = [v for v in targets.held_out_workloads if targets.base_of(v) in base]
        if not targets.held_out_workloads:
            listed = sorted(w for w in logged if w not in base and targets.base_of(w) in base)
            if listed:
                warn(
                    f"the targets list no held-out workloads; the v0.5 rule uses the logged "
                    f"variants {', '.join(listed)}"
                )
        if not listed:
            raise ScoringError(
                "--heldout-rule v0.5 needs held-out variants of the scored base workloads: "
                f"none in the targets from {targets.source} nor in the logs "
                "(use targets such as AlgoPerf's workload_targets_v05.json)"
            )
        for v in listed:
            targets.get(v)
            if v in logged or options.missing_as_miss:
                variants.append(v)
            else:
                warn(
                    f"held-out variant {v} has no logs: {targets.base_of(v)} is scored without "
                    "the held-out check (--missing-as-miss counts it as a miss)"
                )
    ignored = sorted(logged - set(base) - set(variants))
    if ignored:
        held = [w for w in ignored if w in targets.held_out_workloads]
        other = [w for w in ignored if w not in held]
        if held and options.heldout_rule == "v0.6":
            warn(
                f"held-out variants not scored under the v0.6 rules: {', '.join(held)} "
                "(--heldout-rule v0.5 uses them)"
            )
        if other:
            warn(f"logged workloads not scored (not base workloads): {', '.join(other)}")
    return base, variants


def _check_counts(
    grouped: dict[tuple[int, int], dict[int, dict[int, tuple[float, float]]]],
    submissions: list[str],
    workloads: list[str],
    options: ScoringOptions,
    issues: ReadIssues,
) -> None:
    """Record workloads with another number of studies (or trials) than the rules expect."""
    for (s, w), studies in sorted(grouped.items()):
        where = f"{submissions[s]}/{workloads[w]}"
        if options.studies is not None and len(studies) != options.studies:
            kind = f"other than the {options.studies} studies the rules expect"
            issues.add(kind, f"{where}: {len(studies)}", "scored with those it has", "workload")
        if options.trials is not None and options.ruleset == "external":
            for k, trials in sorted(studies.items()):
                if len(trials) != options.trials:
                    kind = f"other than the {options.trials} trials the rules expect"
                    issues.add(kind, f"{where}/study_{k}: {len(trials)}", "scored with those it has", "study")


def _pack(
    grouped: dict[tuple[int, int], dict[int, dict[int, tuple[float, float]]]], n_s: int, n_w: int
) -> tuple[np.ndarray, np.ndarray, list[list[list[int]]]]:
    """(trial times, eval indices, study ids): studies and trials packed at the front."""
    n_k = max((len(v) for v in grouped.values()), default=1)
    n_j = max((len(t) for v in grouped.values() for t in v.values()), default=1)
    trial_times = np.full((n_s, n_w, n_k, n_j), np.nan)
    eval_index = np.full_like(trial_times, np.nan)
    study_ids: list[list[list[int]]] = [[[] for _ in range(n_w)] for _ in range(n_s)]
    for (s, w), studies in grouped.items():
        for k, study in enumerate(sorted(studies)):
            trials = studies[study]
            hits = [trials[j] for j in sorted(trials)]
            trial_times[s, w, k, : len(hits)] = [h[0] for h in hits]
            eval_index[s, w, k, : len(hits)] = [h[1] for h in hits]
            study_ids[s][w].append(study)
    return trial_times, eval_index, study_ids


def build_table(
    records: Sequence[TrialLog],
    targets: Targets,
    options: ScoringOptions,
    warn: Callable[[str], None] | None = None,
) -> TimeTable:
    """Times to target of every trial of one ruleset's records, in a :class:`TimeTable`."""
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        if warn is not None:
            warn(msg)

    if not records:
        raise ScoringError("no trials to score")
    rulesets = {r.ruleset for r in records}
    if rulesets != {options.ruleset}:
        raise ScoringError(
            f"trials of rulesets {', '.join(sorted(rulesets))} given for a "
            f"{options.ruleset}-tuning profile: score each ruleset separately"
        )
    logged = {r.workload for r in records}
    base, variants = _choose_workloads(logged, targets, options, note)
    workloads = base + variants
    col = {w: i for i, w in enumerate(workloads)}
    submissions = sorted({r.submission for r in records})
    row = {s: i for i, s in enumerate(submissions)}
    version = options.benchmark_version or targets.benchmark_version
    budgets = []
    for w in workloads:
        b = runtime_budget(w, targets, options.ruleset, version)
        budgets.append(np.nan if b is None else b)
    if options.budget_check:
        unknown = [w for w, b in zip(workloads, budgets, strict=True) if np.isnan(b)]
        if unknown:
            note(f"no runtime budget known for {', '.join(unknown)}: no budget check there")

    issues = ReadIssues()
    # (s, w) -> study -> trial -> (time to target, eval index)
    grouped: dict[tuple[int, int], dict[int, dict[int, tuple[float, float]]]] = {}
    for r in records:
        w = col.get(r.workload)
        if w is None:
            continue
        spec = targets.get(r.workload)
        values = r.metrics.get(spec.column)
        if values is None:
            if r.times.size:
                kind = f"no {spec.column} column (the target metric of {r.workload})"
                issues.add(kind, r.source or r.submission)
            values = np.full(r.times.shape, np.nan)
        budget = budgets[w] if options.budget_check and not np.isnan(budgets[w]) else None
        hit = first_hit(r.times, values, spec.target, spec.higher_is_better, budget)
        grouped.setdefault((row[r.submission], w), {}).setdefault(r.study, {})[r.trial] = hit
    _check_counts(grouped, submissions, workloads, options, issues)
    issues.report(note, options.strict)

    trial_times, eval_index, study_ids = _pack(grouped, len(submissions), len(workloads))
    table = TimeTable(
        submissions=submissions,
        workloads=workloads,
        n_base=len(base),
        pairs=[(col[v], col[targets.base_of(v)]) for v in variants],  # type: ignore[index]
        trial_times=trial_times,
        budgets=np.array(budgets, dtype=float),
        study_ids=study_ids,
        ruleset=options.ruleset,
        notes=notes,
        eval_index=eval_index,
        trial_choice=options.trial_choice,
    )
    present = table.present()
    for s, name in enumerate(submissions):
        gaps = [w for i, w in enumerate(workloads) if not present[s, i] and present[:, i].any()]
        if gaps:
            note(f"{name}: no logs for {', '.join(gaps)} (counted as a miss)")
    return table
