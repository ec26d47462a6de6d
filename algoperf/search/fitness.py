"""Fitness: time to target on each workload, aggregated as a performance profile against the field.

Notation: workloads w = 1..N; the field F = the seeds (the first seed first) and every
candidate evaluated on all workloads so far; candidate c. t_{x,w} is the time to target the
runner reports (submission time at the first eval reaching the validation target; inf when
missed, diverged or failed). The candidate's times are put beside the field's rows, and
algoperf.scoring.profile (the same functions `algoperf score` uses) gives
    r_{c,w} = t_{c,w} / min(t_{c,w}, min_{f in F} t_{f,w})
    score_c = sum_w max(0, 4 - max(r_{c,w}, 1)) / (3N)      (exact area of the profile on [1, 4])
    speedup_c = exp(mean_w log(t_{seed 1,w} / t_{c,w}))      (misses count as budget + 1 s)
Candidates are ranked by (score, speedup). The profile is against the best time known, as
AlgoPerf scores against the best submission: against the seeds alone, a workload stops
counting once the seeds are beaten there (measured: the search then preferred 1 % on mnist1d
to 30 % on ctr; docs/search.md). The field grows, so the search scores every evaluated
candidate again after each generation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from algoperf.scoring.profile import exact_score, performance_ratios, speedups

Times = Mapping[str, float | None]


def _row(times: Times, workloads: Sequence[str]) -> list[float]:
    return [math.inf if times.get(w) is None else float(times[w]) for w in workloads]


def profile_fitness(candidate: Times, field: Sequence[Times], workloads: Sequence[str], budgets: Sequence[float]) -> dict[str, float]:
    """{score, speedup} of ``candidate`` against ``field`` (its first row: the speedup's baseline;
    see the module docstring)."""
    times = np.array([_row(f, workloads) for f in field] + [_row(candidate, workloads)])
    score = float(exact_score(performance_ratios(times))[-1])
    speedup = float(speedups(times, np.asarray(budgets, dtype=float), baseline=0)[-1])
    return {"score": score, "speedup": speedup}


def rank_key(fitness: Mapping[str, float] | None) -> tuple[float, float]:
    """Larger is better; no fitness ranks last."""
    if not fitness:
        return (-math.inf, -math.inf)
    return (fitness["score"], fitness["speedup"])


def passes_funnel(time: float | None, best_seed_time: float | None, threshold: float) -> bool:
    """The first (short) stage: the target reached within ``threshold`` x the best seed's time."""
    if time is None or not math.isfinite(time):
        return False
    if best_seed_time is None or not math.isfinite(best_seed_time):
        return True  # no seed reached it: reaching it at all is progress
    return time <= threshold * best_seed_time
