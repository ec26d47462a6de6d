"""Layers that several workloads share."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dropout(
    x: jax.Array, rate: float | jax.Array, rng: jax.Array | None, broadcast_dims: tuple[int, ...] = ()
) -> jax.Array:
    """Inverted dropout whose ``rate`` may be a traced value (submissions pass it into jit).

    Keeps each entry with probability ``p = 1 - rate`` and scales kept entries by ``1 / p``,
    so ``E[dropout(x)] = x``. ``rng=None`` (evaluation) or a literal rate of 0 is the identity.
    ``broadcast_dims`` share one draw along those axes (H and W: channel dropout).

    A traced rate that is 0 at run time gives ``x`` too. On the CPU a ``lax.cond`` then
    skips drawing the mask, which halves a small model's step time; on accelerators the
    mask is always drawn, because a conditional there reads its predicate back to the host
    and would stall JAX's asynchronous dispatch at every layer.
    """
    if rng is None or (isinstance(rate, int | float) and rate == 0.0):
        return x

    def drop(x: jax.Array) -> jax.Array:
        keep = 1.0 - jnp.asarray(rate, x.dtype)
        shape = tuple(1 if i in broadcast_dims else n for i, n in enumerate(x.shape))
        return jnp.where(jax.random.bernoulli(rng, keep, shape), x / keep, jnp.zeros_like(x))

    if isinstance(rate, int | float) or jax.default_backend() != "cpu":
        return drop(x)
    return jax.lax.cond(jnp.asarray(rate) > 0.0, drop, lambda x: x, x)
