"""Bootstrap uncertainty of benchmark scores: intervals and how often orders flip.

One replicate redraws the logs and rescores everything, because a score depends on
every submission through the "fastest submission" of each workload:

* ``level="studies"`` (default): for each submission and workload, draw its n studies
  with replacement (n = the number it has) and take the median of their chosen trials'
  times (the fastest, or under the v0.5 rule the earliest by eval index); the trials
  of a study stay as they are.
* ``level="trials"``: as above, and within each drawn study also draw its trials with
  replacement before choosing its trial (a two-stage bootstrap for external tuning,
  where a study is a small random search; with one trial per study it equals
  ``"studies"``). It also reflects the luck of the search points, but the fastest of
  a resample with repeats is slower on average, so its intervals lean low.

The 4x rule, the held-out rule, ratios and the area are then applied to each replicate
exactly as to the point estimate. The interval is the percentile interval of the
replicate scores; ``flips[a, b]`` is the fraction of replicates in which a and b are
ordered the other way round than by their point scores (a tie counts one half; for
point scores that tie, it is P(they differ in the other direction) + P(tie)/2).

Rank probabilities come from the same replicates: in replicate b submission s ranks
r_b(s) = 1 + #{s' : score_b(s') > score_b(s)} (a tie shares the better rank, so two
submissions tied on top both rank first); ``p_first[s]`` = mean_b [r_b(s) = 1] and the
rank interval is the percentile interval of r_b(s) at the same confidence (lower
bound: the smallest rank r with P(rank <= r) >= alpha; upper: with >= 1 - alpha).

Everything is numpy over a (replicates, submissions, workloads, studies[, trials])
array, so 1000 replicates of a leaderboard take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algoperf.scoring.errors import ScoringError
from algoperf.scoring.profile import (
    ScoreResult,
    ScoringOptions,
    TimeTable,
    apply_rules,
    baseline_index,
    exact_score,
    median_padded,
    performance_ratios,
    speedups,
    study_times,
    trapezoid_score,
)

LEVELS = ("studies", "trials")


@dataclass
class BootstrapResult:
    """Replicate scores of every submission and what they say about uncertainty."""

    samples: np.ndarray  # (B, S) replicate scores
    interval: np.ndarray  # (S, 2) percentile interval [lo, hi]
    flips: np.ndarray  # (S, S) fraction of replicates with the pair ordered the other way
    confidence: float
    n: int
    seed: int
    level: str
    speedup_samples: np.ndarray | None = None  # (B, S)
    speedup_interval: np.ndarray | None = None  # (S, 2)
    p_first: np.ndarray | None = None  # (S,) share of replicates ranking it first
    rank_interval: np.ndarray | None = None  # (S, 2) int ranks [lo, hi]


def _draw(rng: np.random.Generator, counts: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Indices uniform in [0, counts) of shape ``size`` (counts broadcast on the left)."""
    u = rng.random(size)
    return np.minimum((u * counts[..., None]).astype(np.intp), np.maximum(counts[..., None] - 1, 0))


def resample_workload_times(
    table: TimeTable, n: int, rng: np.random.Generator, level: str = "studies"
) -> np.ndarray:
    """(B, S, W) per-workload median times of ``n`` bootstrap replicates of the logs."""
    if level not in LEVELS:
        raise ScoringError(f"unknown bootstrap level {level!r}: use studies or trials")
    tt = table.trial_times  # (S, W, K, J)
    keys = table.choice_keys()  # None: each study's fastest trial
    S, W, K, J = tt.shape
    st = study_times(tt, keys)  # (S, W, K)
    n_studies = np.sum(~np.isnan(st), axis=-1)  # (S, W)
    pick = _draw(rng, n_studies, (n, S, W, K))  # (B, S, W, K)
    pad = np.arange(K) >= n_studies[..., None]  # (S, W, K) positions beyond the real studies
    if level == "studies":
        drawn = np.take_along_axis(np.broadcast_to(st, (n, S, W, K)), pick, axis=-1)
    else:
        n_trials = np.sum(~np.isnan(tt), axis=-1)  # (S, W, K)
        n_sel = np.take_along_axis(np.broadcast_to(n_trials, (n, S, W, K)), pick, axis=-1)
        trial_pick = _draw(rng, n_sel, (n, S, W, K, J))  # (B, S, W, K, J)
        s_idx = np.arange(S)[None, :, None, None, None]
        w_idx = np.arange(W)[None, None, :, None, None]
        values = tt[s_idx, w_idx, pick[..., None], trial_pick]  # (B, S, W, K, J)
        drawn_keys = None if keys is None else keys[s_idx, w_idx, pick[..., None], trial_pick]
        drawn = study_times(values, drawn_keys)
    drawn = np.where(pad, np.nan, drawn)
    return median_padded(drawn)


def bootstrap(
    result: ScoreResult,
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    level: str = "studies",
) -> BootstrapResult:
    """Bootstrap replicates of the scores (and speedups) of a :class:`ScoreResult`."""
    if n < 1:
        raise ScoringError("--bootstrap needs at least 1 replicate (0 turns it off)")
    if not 0 < confidence < 1:
        raise ScoringError(f"confidence must be between 0 and 1, not {confidence}")
    table, options = result.table, result.options
    rng = np.random.default_rng(seed)
    raw = resample_workload_times(table, n, rng, level)  # (B, S, W)
    samples = replicate_scores(raw, table, options)
    alpha = (1.0 - confidence) / 2.0
    interval = np.quantile(samples, [alpha, 1.0 - alpha], axis=0).T
    out = BootstrapResult(
        samples=samples,
        interval=interval,
        flips=order_flips(result.score, samples),
        confidence=confidence,
        n=n,
        seed=seed,
        level=level,
    )
    out.p_first, out.rank_interval = rank_probabilities(samples, confidence)
    if result.baseline is not None:
        b = baseline_index(table, result.baseline)
        sp = speedups(raw[..., : table.n_base], table.budgets[: table.n_base], b)
        out.speedup_samples = sp
        out.speedup_interval = np.quantile(sp, [alpha, 1.0 - alpha], axis=0).T
    return out


def replicate_scores(raw: np.ndarray, table: TimeTable, options: ScoringOptions) -> np.ndarray:
    """(..., S, W) raw median times -> (..., S) scores under the options' rules."""
    times = apply_rules(raw, table.n_base, table.pairs, options.heldout_rule == "v0.5")
    ratios = performance_ratios(times)  # type: ignore[arg-type]
    if options.area == "exact":
        return exact_score(ratios, options.tau_max)
    return trapezoid_score(ratios, options.tau_points, options.tau_max)


def order_flips(point: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """(S, S) fraction of replicates that order each pair against the point scores.

    For a pair with point scores p_a > p_b: P(s_a < s_b) + P(s_a = s_b)/2. For a point
    tie, the pair is ordered by name. The matrix is symmetric with a zero diagonal.
    """
    S = point.shape[0]
    flips = np.zeros((S, S))
    for a in range(S):
        for b in range(a + 1, S):
            hi, lo = (a, b) if point[a] >= point[b] else (b, a)
            below = np.mean(samples[:, hi] < samples[:, lo])
            tie = np.mean(samples[:, hi] == samples[:, lo])
            flips[a, b] = flips[b, a] = below + 0.5 * tie
    return flips


def replicate_ranks(samples: np.ndarray) -> np.ndarray:
    """(B, S) scores -> (B, S) ranks 1 + #{better}: a tie shares the better rank."""
    return 1 + np.sum(samples[:, None, :] > samples[:, :, None], axis=-1)


def rank_probabilities(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(P(rank 1st), rank interval) of each submission over bootstrap replicates.

    See the module docstring; the interval bounds are ranks that occur in the replicates.
    """
    ranks = replicate_ranks(samples)
    alpha = (1.0 - confidence) / 2.0
    p_first = np.mean(ranks == 1, axis=0)
    interval = np.quantile(ranks, [alpha, 1.0 - alpha], axis=0, method="inverted_cdf").T
    return p_first, interval.astype(int)
