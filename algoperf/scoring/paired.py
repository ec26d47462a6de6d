"""Paired comparison of two submissions: paired bootstrap intervals, permutation tests, Holm.

The design follows Raschka, "Model Evaluation, Model Selection, and Algorithm Selection
in Machine Learning" (arXiv:1811.12808): compare two algorithms on the *same* independent
units (a paired design), resample those units rather than anything inside them, and
correct for multiplicity when many comparisons are made at once.

**Paired units.** On workload w, unit u of A is paired with unit u of B:

* studies, where both have at least two (study k with study k, the first
  U_w = min(n_A, n_B) of each); a unit's value is its study's chosen trial's time and the
  workload's time is the median over units, as the score takes it;
* else the trials of their single study (trial j with trial j, the first U_w), treating
  them as seeds; the workload's time is the fastest of the units, the study's choice.

In time ratios a miss (inf) counts as the workload's runtime budget + 1 s (as for
speedups), or, without a known budget, 4x the slowest finite time logged on it by
anyone; scores keep misses as misses.

**Statistics.** Per workload, the log time ratio d_w = log(T_B,w / T_A,w) and the speedup
exp(d_w) = T_B,w / T_A,w (> 1: A reaches the target faster). On the benchmark, the score
difference Delta = score_A - score_B with every other submission of the table fixed at its
point times (their presence sets each workload's best time), and the geometric-mean
speedup exp(mean_w d_w) over the base workloads.

* Interval: paired bootstrap. Each replicate draws U_w unit indices per workload with
  replacement and applies the *same* indices to A and B, then recomputes everything;
  the interval is the percentile interval of the replicates.
* p-value: paired permutation (randomisation) test of H0 "A and B are exchangeable
  within each unit". Each replicate swaps A's and B's values of every unit independently
  with probability 1/2 and recomputes the statistic T; two-sided
  p = (1 + #{|T*| >= |T_obs|}) / (1 + n), valid (P(p <= alpha) <= alpha) under H0.
  With U units on a workload there are only 2^U distinct swaps: one unit can never give
  p < 1 there.
* Holm: m p-values sorted p_(1) <= ... <= p_(m); adjusted p_(i) = max_{j <= i}
  min(1, (m - j + 1) p_(j)). It controls the family-wise error rate at alpha with no
  assumption on how the tests depend on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from algoperf.scoring.bootstrap import replicate_scores
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.profile import ScoreResult, study_times

UNITS = ("studies", "trials")


def holm(pvalues: np.ndarray | list[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order (see the module docstring)."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.maximum.accumulate(adjusted)
    out = np.empty(m)
    out[order] = adjusted
    return out


@dataclass
class WorkloadUnits:
    """The paired unit values of A and B on one workload (column ``col`` of the table)."""

    workload: str
    col: int
    kind: str  # "studies" or "trials"
    a: np.ndarray  # (U,) seconds, inf for a miss
    b: np.ndarray  # (U,)
    cap: float  # what a miss counts as in the time ratio

    @property
    def n(self) -> int:
        return int(self.a.size)

    def aggregate(self, x: np.ndarray) -> np.ndarray:
        """(..., U) unit values -> (...) workload time."""
        return np.median(x, axis=-1) if self.kind == "studies" else np.min(x, axis=-1)


@dataclass
class PairResult:
    """A vs B: per base workload and on the benchmark (see the module docstring)."""

    a: str
    b: str
    workloads: list[str]
    units: list[WorkloadUnits]
    speedup: np.ndarray  # (N,) T_B / T_A per base workload
    speedup_interval: np.ndarray  # (N, 2)
    p_workload: np.ndarray  # (N,) permutation p-values
    p_workload_holm: np.ndarray  # (N,) Holm over the workloads of this pair
    score_a: float
    score_b: float
    score_diff: float
    score_diff_interval: np.ndarray  # (2,)
    p_score: float
    gm_speedup: float
    gm_speedup_interval: np.ndarray  # (2,)
    n: int
    confidence: float
    p_score_holm: float = float("nan")  # Holm over all pairs compared together
    notes: list[str] = field(default_factory=list)


def _caps(result: ScoreResult) -> np.ndarray:
    """(W,) what a miss counts as on each column: budget + 1 s, else 4x the slowest time."""
    tt = result.table.trial_times
    finite = np.where(np.isfinite(tt), tt, -np.inf)
    slowest = np.max(finite, axis=(0, 2, 3)) if tt.size else np.full(tt.shape[1], -np.inf)
    fallback = np.where(np.isfinite(slowest), 4.0 * slowest, 1.0)
    budgets = result.table.budgets
    return np.where(np.isfinite(budgets), budgets + 1.0, fallback)


def paired_units(result: ScoreResult, a: int, b: int) -> list[WorkloadUnits]:
    """The paired units of submissions ``a`` and ``b`` on every column of the table."""
    table = result.table
    tt = table.trial_times
    st = study_times(tt, table.choice_keys())  # (S, W, K)
    caps = _caps(result)
    out = []
    for w, name in enumerate(table.workloads):
        ka, kb = (int(np.sum(~np.isnan(st[s, w]))) for s in (a, b))
        if min(ka, kb) >= 2:
            kind, ua, ub = "studies", st[a, w, : min(ka, kb)], st[b, w, : min(ka, kb)]
        else:
            ja, jb = (int(np.sum(~np.isnan(tt[s, w, 0]))) for s in (a, b))
            j = min(ja, jb)
            kind, ua, ub = "trials", tt[a, w, 0, :j], tt[b, w, 0, :j]
        out.append(WorkloadUnits(name, w, kind, ua, ub, float(caps[w])))
    return out


def _statistics(
    result: ScoreResult, a: int, b: int, units: list[WorkloadUnits], ta: list, tb: list
) -> tuple[np.ndarray, np.ndarray]:
    """(d (..., N) log time ratios, Delta (...) score differences) from workload times.

    ``ta[w]``/``tb[w]`` are (...) workload times of A and B on column w, NaN: no units.
    """
    table = result.table
    shape = np.shape(ta[0])
    raw = np.broadcast_to(result.raw_times, (*shape, *result.raw_times.shape)).copy()
    for u, x, y in zip(units, ta, tb, strict=True):
        raw[..., a, u.col] = x
        raw[..., b, u.col] = y
    scores = replicate_scores(raw.reshape(-1, *result.raw_times.shape), table, result.options)
    scores = scores.reshape(*shape, -1)
    delta = scores[..., a] - scores[..., b]
    base = [(u, x, y) for u, x, y in zip(units, ta, tb, strict=True) if u.col < table.n_base]
    d = np.stack(
        [np.log(np.minimum(y, u.cap) / np.minimum(x, u.cap)) for u, x, y in base], axis=-1
    )
    return d, delta


def _draws(units: list[WorkloadUnits], n: int, rng: np.random.Generator, swap: bool):
    """Per workload, (n,) times of A and B: resampled units (bootstrap) or swapped (permutation)."""
    ta, tb = [], []
    for u in units:
        if u.n == 0:
            ta.append(np.full(n, np.nan))
            tb.append(np.full(n, np.nan))
            continue
        if swap:
            flip = rng.random((n, u.n)) < 0.5
            xa, xb = np.where(flip, u.b, u.a), np.where(flip, u.a, u.b)
        else:
            idx = rng.integers(0, u.n, size=(n, u.n))
            xa, xb = u.a[idx], u.b[idx]
        ta.append(u.aggregate(xa))
        tb.append(u.aggregate(xb))
    return ta, tb


def _p_value(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Two-sided permutation p-value(s): (1 + #{|T*| >= |T|}) / (1 + n), over axis 0."""
    tol = 1e-12 * np.maximum(1.0, np.abs(observed))
    hits = np.sum(np.abs(null) >= np.abs(observed) - tol, axis=0)
    return (1.0 + hits) / (1.0 + null.shape[0])


def compare_pair(
    result: ScoreResult, a: str, b: str, n: int = 2000, seed: int = 0, confidence: float = 0.95
) -> PairResult:
    """Paired intervals and permutation p-values of ``a`` vs ``b`` (module docstring)."""
    subs = result.submissions
    for name in (a, b):
        if name not in subs:
            raise ScoringError(f"{name!r} is not among the scored submissions ({', '.join(subs)})")
    if n < 1:
        raise ScoringError("the paired tests need at least 1 replicate")
    ia, ib = subs.index(a), subs.index(b)
    units = paired_units(result, ia, ib)
    point = ([np.asarray(u.aggregate(u.a)) if u.n else np.nan for u in units],
             [np.asarray(u.aggregate(u.b)) if u.n else np.nan for u in units])
    d0, delta0 = _statistics(result, ia, ib, units, *point)
    rng = np.random.default_rng(seed)
    d_boot, delta_boot = _statistics(result, ia, ib, units, *_draws(units, n, rng, swap=False))
    d_perm, delta_perm = _statistics(result, ia, ib, units, *_draws(units, n, rng, swap=True))
    alpha = (1.0 - confidence) / 2.0
    q = [alpha, 1.0 - alpha]
    base = [u for u in units if u.col < result.table.n_base]
    p_w = _p_value(d0, d_perm)
    ok = np.array([u.n > 0 for u in base])
    p_holm = np.full(len(base), np.nan)
    if ok.any():
        p_holm[ok] = holm(p_w[ok])
    out = PairResult(
        a=a,
        b=b,
        workloads=[u.workload for u in base],
        units=units,
        speedup=np.exp(d0),
        speedup_interval=np.exp(np.nanquantile(d_boot, q, axis=0)).T,
        p_workload=np.where(ok, p_w, np.nan),
        p_workload_holm=p_holm,
        score_a=float(result.score[ia]),
        score_b=float(result.score[ib]),
        score_diff=float(delta0),
        score_diff_interval=np.quantile(delta_boot, q),
        p_score=float(_p_value(np.asarray(delta0), delta_perm)),
        gm_speedup=float(np.exp(np.nanmean(d0))),
        gm_speedup_interval=np.exp(np.nanquantile(np.nanmean(d_boot, axis=-1), q)),
        n=n,
        confidence=confidence,
    )
    for u in base:
        if u.n == 0:
            out.notes.append(f"{u.workload}: no paired units (one of them has no logs there)")
    return out


def compare_all(
    result: ScoreResult, pairs: list[tuple[str, str]], n: int = 2000, seed: int = 0,
    confidence: float = 0.95,
) -> list[PairResult]:
    """Every pair compared, each score p-value Holm-adjusted over all the pairs."""
    out = [compare_pair(result, a, b, n, seed + k, confidence) for k, (a, b) in enumerate(pairs)]
    if out:
        adjusted = holm([r.p_score for r in out])
        for r, p in zip(out, adjusted, strict=True):
            r.p_score_holm = float(p)
    return out


def verdict(r: PairResult, alpha: float = 0.05, digits: int = 2) -> str:
    """One plain line: who is faster where, the score difference, its interval and p."""
    ok = ~np.isnan(r.p_workload)
    faster = int(np.sum(r.speedup[ok] > 1.0))
    sig = int(np.sum((r.speedup[ok] > 1.0) & (r.p_workload_holm[ok] <= alpha)))
    lo, hi = r.score_diff_interval
    p = r.p_score_holm if np.isfinite(r.p_score_holm) else r.p_score
    lead = r.a if r.score_diff >= 0 else r.b
    return (
        f"{r.a} faster on {faster} of {int(ok.sum())} workloads ({sig} significant at "
        f"{alpha:g} after Holm); score difference {r.score_diff:.{digits}f} "
        f"[{lo:.{digits}f}, {hi:.{digits}f}], p = {_fmt_p(p)}; geometric-mean speedup "
        f"{r.gm_speedup:.2f}x [{r.gm_speedup_interval[0]:.2f}, {r.gm_speedup_interval[1]:.2f}]"
        + ("" if p > alpha else f"; {lead} scores higher")
    )


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"
