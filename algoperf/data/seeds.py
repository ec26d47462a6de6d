"""One numpy seed from AlgoPerf's ``rng`` argument, for host-side data pipelines.

Input pipelines shuffle and augment with numpy, seeded from the JAX key AlgoPerf hands
``_build_input_queue``: the key's last 32-bit word (a typed key's ``key_data`` or a raw
uint32 key alike). An int is taken as the seed itself; ``None`` is seed 0.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def seed_from_rng(rng: Any) -> int:
    """A numpy seed in [0, 2**32) from a JAX key (typed or raw), an int, or None."""
    if rng is None:
        return 0
    if isinstance(rng, int | np.integer):
        return int(rng)
    data = jax.random.key_data(rng) if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng
    return int(np.uint32(np.asarray(data).ravel()[-1]))
