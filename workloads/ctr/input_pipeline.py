"""Criteo-like click logs drawn from a fixed random teacher (generated, no download).

Each example mimics one line of the Criteo 1TB logs: 13 integer ("dense") count features
and 26 categorical features, with the 26 per-column cardinalities of Criteo.

Generation, fixed by ``SEED``:

* A latent "activity" factor ``h ~ N(0, 1)`` per impression.
* Dense counts ``d_j = floor(exp(mu_j + s_j (rho_j h + sqrt(1 - rho_j^2) z_j)))`` (log-normal,
  heavy tailed like Criteo's counts), missing (0) with probability ``p_j``.
* Categorical raw ids ``r_i`` in ``1..V_i`` (``V_i`` = Criteo's cardinality of column i) are
  Zipf-like: ``P(r) ~ r^-a_i`` (a continuous power law, inverted in closed form). As in the
  reference pipeline, raw ids are hashed into a small number of buckets per column:
  ``bucket_i = hash(r_i, i) mod min(V_i, NUM_BUCKETS)``, so rare ids collide.
* The teacher's click logit is a fixed, sparse factorisation machine over the *raw* ids
  plus a small tanh network over the dense features:

      logit = b + f(log1p(d), h) + sum_i c_i u_i(r_i) + sum_{(i,k) in P} w_ik <v_i(r_i), v_k(r_k)>

  where ``u_i(r)`` (scalar) and ``v_i(r)`` (``FM_RANK`` vector) are pseudo-random unit-variance
  values derived by hashing ``(column, raw id)`` (so a 40M-row teacher table is never
  stored), ``c_i`` is a per-column strength (several columns carry no signal) and ``P`` is a
  fixed random set of column pairs. ``y ~ Bernoulli(sigmoid(logit))``.

The model sees what a Criteo model sees: ``log1p(max(d, 0))`` and the bucket ids, as a
``[N, 39]`` float32 array (13 dense, then 26 ids), like AlgoPerf's criteo1tb pipeline. The
bucket hashing and the hidden ``h`` make the Bayes log-loss out of the student's reach.

The arrays are cached as an .npz file (about 3 s to generate).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from algoperf.data import generated

NUM_DENSE = 13
NUM_CATEGORICAL = 26
# Criteo 1TB's per-column cardinalities (AlgoPerf criteo1tb ``vocab_sizes``).
# fmt: off
CRITEO_VOCAB_SIZES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)
# fmt: on
NUM_BUCKETS = 1000  # hash buckets per categorical column (fewer if the column is smaller)
VOCAB_SIZES = tuple(min(v, NUM_BUCKETS) for v in CRITEO_VOCAB_SIZES)

NUM_TRAIN = 1_000_000
NUM_VALIDATION = 50_000
NUM_TEST = 50_000
SEED = 20_231
FM_RANK = 4
NUM_PAIRS = 40
BIAS = -1.65  # sets the click rate near Criteo Kaggle's 25%
VERSION = 1  # bump when the generator changes: it renames the cache file

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective, well-mixing hash of uint64 values."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def _hash(raw_ids: np.ndarray, column: int, salt: int) -> np.ndarray:
    """A uint64 hash of (raw id, column, salt)."""
    key = np.uint64((salt * 1_000_003 + column) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF)
    return _splitmix64(raw_ids.astype(np.uint64) ^ key)


def _hash_uniform(raw_ids: np.ndarray, column: int, salt: int) -> np.ndarray:
    """Pseudo-random values in [-sqrt(3), sqrt(3)) (zero mean, unit variance)."""
    u = (_hash(raw_ids, column, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (2.0 * u - 1.0) * np.sqrt(3.0)


def _zipf_ids(rng: np.random.Generator, n: int, vocab: int, exponent: float) -> np.ndarray:
    """Raw ids in 1..vocab with P(r) roughly proportional to r^-exponent (inverse CDF)."""
    u = rng.random(n)
    if vocab <= 1:
        return np.ones(n, np.int64)
    one_minus = 1.0 - exponent
    top = (vocab + 1.0) ** one_minus
    r = (1.0 + u * (top - 1.0)) ** (1.0 / one_minus)
    return np.clip(np.floor(r), 1, vocab).astype(np.int64)


class _Teacher:
    """The fixed generative process: its parameters come from ``SEED`` alone."""

    def __init__(self) -> None:
        rng = np.random.default_rng(SEED)
        self.dense_mu = rng.uniform(0.0, 3.0, NUM_DENSE)
        self.dense_sigma = rng.uniform(0.6, 1.6, NUM_DENSE)
        self.dense_rho = rng.uniform(0.0, 0.8, NUM_DENSE) * rng.choice([-1.0, 1.0], NUM_DENSE)
        self.dense_missing = rng.uniform(0.0, 0.4, NUM_DENSE)
        # Criteo-like skew: most columns are very skewed, small columns less so.
        self.zipf_exponent = rng.uniform(1.05, 1.4, NUM_CATEGORICAL)
        # Per-column first-order strength: a third of the columns carry no signal.
        strength = rng.uniform(0.2, 0.7, NUM_CATEGORICAL)
        strength[rng.permutation(NUM_CATEGORICAL)[: NUM_CATEGORICAL // 3]] = 0.0
        self.cat_strength = strength
        pairs = set()
        while len(pairs) < NUM_PAIRS:
            i, k = sorted(rng.choice(NUM_CATEGORICAL, 2, replace=False).tolist())
            pairs.add((i, k))
        self.pairs = sorted(pairs)
        self.pair_weight = rng.uniform(0.1, 0.3, NUM_PAIRS) * rng.choice([-1.0, 1.0], NUM_PAIRS)
        # Dense tower: 13 (+ activity) -> 16 tanh -> 1.
        self.w1 = rng.normal(0.0, 1.0, (NUM_DENSE + 1, 16)) / np.sqrt(NUM_DENSE + 1)
        self.b1 = rng.normal(0.0, 0.5, 16)
        self.w2 = rng.normal(0.0, 1.0, 16) * 0.5

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """``n`` impressions: model inputs [n, 39] float32, clicks [n] float32, true p [n]."""
        activity = rng.standard_normal(n)
        z = rng.standard_normal((n, NUM_DENSE))
        rho = self.dense_rho
        latent = rho * activity[:, None] + np.sqrt(1.0 - rho**2) * z
        counts = np.floor(np.exp(self.dense_mu + self.dense_sigma * latent))
        counts[rng.random((n, NUM_DENSE)) < self.dense_missing] = 0.0
        dense = np.log1p(np.maximum(counts, 0.0))

        raw = np.stack(
            [
                _zipf_ids(rng, n, CRITEO_VOCAB_SIZES[i], self.zipf_exponent[i])
                for i in range(NUM_CATEGORICAL)
            ],
            axis=1,
        )
        buckets = np.stack(
            [
                (_hash(raw[:, i], i, salt=1) % np.uint64(VOCAB_SIZES[i])).astype(np.int64)
                for i in range(NUM_CATEGORICAL)
            ],
            axis=1,
        )

        dense_in = np.concatenate([(dense - 1.5) / 1.5, activity[:, None]], axis=1)
        logit = BIAS + np.tanh(dense_in @ self.w1 + self.b1) @ self.w2
        for i in range(NUM_CATEGORICAL):
            if self.cat_strength[i] > 0:
                logit += self.cat_strength[i] * _hash_uniform(raw[:, i], i, salt=2)
        factors = {}
        for i in sorted({c for pair in self.pairs for c in pair}):
            factors[i] = np.stack(
                [_hash_uniform(raw[:, i], i, salt=10 + f) for f in range(FM_RANK)], axis=1
            )
        for (i, k), w in zip(self.pairs, self.pair_weight, strict=True):
            logit += w * np.sum(factors[i] * factors[k], axis=1)

        prob = 1.0 / (1.0 + np.exp(-logit))
        clicks = (rng.random(n) < prob).astype(np.float32)
        inputs = np.concatenate([dense, buckets.astype(np.float64)], axis=1).astype(np.float32)
        return {"inputs": inputs, "targets": clicks, "prob": prob.astype(np.float32)}


def generate(seed: int = SEED, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """All splits' arrays, freshly generated.

    The teacher is fixed; ``seed`` draws the impressions and ``sizes`` (split -> count,
    default the workload's) sets how many, e.g. small ones for tests.
    """
    teacher = _Teacher()
    out = {}
    sizes = sizes or {"train": NUM_TRAIN, "validation": NUM_VALIDATION, "test": NUM_TEST}
    for offset, (split, n) in enumerate(sizes.items()):
        sample = teacher.sample(np.random.default_rng([seed, offset]), n)
        out.update({f"{split}_{k}": v for k, v in sample.items()})
    return out


def load(data_dir: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Splits 'train', 'validation', 'test': {'inputs': [N, 39] float32, 'targets': [N] float32}."""
    return to_splits(_load_arrays(generated.cache_path(data_dir, "ctr", VERSION, SEED, NUM_TRAIN, NUM_VALIDATION, NUM_TEST, NUM_BUCKETS, BIAS)))


@functools.lru_cache(maxsize=1)
def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The cached arrays (generated and saved first if missing); read once per process."""
    return generated.cached_arrays(path, generate)


def to_splits(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``generate``'s flat arrays as {split: {'inputs', 'targets'}} (the model's view)."""
    splits = sorted({key.rsplit("_", 1)[0] for key in arrays})
    return {
        split: {"inputs": arrays[f"{split}_inputs"], "targets": arrays[f"{split}_targets"]}
        for split in splits
    }
