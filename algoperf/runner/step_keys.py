"""Per-step random keys, derived as AlgoPerf derives them, made cheaply in bulk."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


class StepKeys:
    """The per-step random keys: split(fold_in(rng, step), 4), as AlgoPerf derives them.

    Made 1,024 steps at a time by one jitted call and handed out as host arrays (raw
    uint32 keys), so the runner spends well under a microsecond per step on randomness
    instead of four dispatched JAX ops (~180 us on a CPU), all charged to the submission.
    """

    CHUNK = 1024

    def __init__(self, rng: Any):
        self._rng = rng
        self._start = -self.CHUNK
        self._keys: np.ndarray | None = None
        self._make = jax.jit(
            lambda r, start: jax.vmap(lambda i: jax.random.split(jax.random.fold_in(r, i), 4))(
                start + jax.numpy.arange(self.CHUNK)
            )
        )

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self._start <= step < self._start + self.CHUNK:
            self._start = step - step % self.CHUNK
            self._keys = np.asarray(self._make(self._rng, self._start))
        keys = self._keys[step - self._start]
        return keys[0], keys[1], keys[2], keys[3]
