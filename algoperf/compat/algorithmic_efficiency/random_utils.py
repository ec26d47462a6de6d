"""v0.5's ``algorithmic_efficiency.random_utils`` for JAX submissions.

v0.5 switched between JAX keys and a NumPy emulation by its ``--framework`` flag; here
the framework is always JAX, so these are JAX's own key functions.
"""

from __future__ import annotations

from typing import Any

import jax

# v0.5 exposed the int32 range it draws seeds from.
MAX_INT32 = 2**31
MIN_INT32 = -MAX_INT32


def prng_key(seed: int) -> jax.Array:
    """A key from an integer seed (v0.5: ``prng_key(seed)``)."""
    return jax.random.PRNGKey(seed)


def split(seed: Any, num: int = 2) -> jax.Array:
    """``num`` keys derived from ``seed``."""
    return jax.random.split(seed, num)


def fold_in(seed: Any, data: int) -> jax.Array:
    """A key derived from ``seed`` and the integer ``data``."""
    return jax.random.fold_in(seed, data)
