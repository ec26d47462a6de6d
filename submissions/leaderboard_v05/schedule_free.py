"""Schedule-Free AdamW and Schedule-Free Prodigy as in the AlgoPerf v0.5 entries.

Defazio et al., "The Road Less Scheduled" (NeurIPS 2024). The runner holds x (the averaged
iterate, evaluated as is); the state holds z (the base iterate). Each step, with k the
number of steps so far:

    y_k = b1 x_k + (1 - b1) z_k                  gradient g_k taken at y_k (``extrapolate``)
    z_{k+1} = z_k - step_k g_k / denom_k - (decay step)_k x_k      (weight decay at x, not y)
    x_{k+1} = (1 - c_{k+1}) x_k + c_{k+1} z_{k+1},   c_{k+1} = w_{k+1} / sum_{i<=k+1} w_i

AdamW (the schedule_free_adamw entry's ``AdamWScheduleFree``):
    lr_k = max(lr * min((k+1)/W, 1), eps)  (W = warmup steps; no warmup when W = 0),
    lr_max = max_{i<=k} lr_i,   w_{k+1} = (k+1)^r lr_max^p,
    v_{k+1} = b2 v_k + (1 - b2) g_k^2,   step_k = lr_k sqrt(1 - b2^(k+1)),
    z_{k+1} = z_k - step_k g_k / (sqrt(v_{k+1}) + eps) - step_k wd x_k.

Prodigy (the schedule_free_prodigy entry's ``ProdigyScheduleFree``; Mishchenko & Defazio,
"Prodigy", ICML 2024), lr_k the warmup factor (lr 1.0), d the distance estimate (d_0 = 1e-6),
dlr = d_k lr_k, x_0 the initial params:
    num_{k+1} = sqrt(b2) num_k + d_k dlr <g_k, x_0 - z_k>
    v_{k+1} = b2 v_k + d_k^2 (1 - b2) g_k^2,   s_{k+1} = sqrt(b2) s_k + d_k dlr g_k
    d_{k+1} = max(d_k, d_coef num_{k+1} / ||s_{k+1}||_1)
    z_{k+1} = z_k - wd dlr x_k - d_{k+1} dlr g_k / (sqrt(v_{k+1}) + d_{k+1} eps),
    w_{k+1} = (k+1)^r.
If ||s_{k+1}||_1 = 0 the entry stops after updating v and s (num, d, z, x and k unchanged).

optax.contrib.schedule_free has neither the polynomial weight (k+1)^r nor weight decay at
x, and optax.contrib.prodigy is not schedule-free, so both are written here as optax
GradientTransformations; ``extrapolate`` gives the point y where the gradient is taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

tree_map = jax.tree.map


class ScheduleFree(NamedTuple):
    """An optax GradientTransformation (init, update) plus where to take the gradient."""

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]
    extrapolate: Callable[[Any, Any], Any]  # (state, x) -> y


def _extrapolate(b1: float) -> Callable[[Any, Any], Any]:
    return lambda state, x: tree_map(lambda xi, zi: b1 * xi + (1.0 - b1) * zi, x, state.z)


def _copy(a: Any) -> jax.Array:
    """A fresh buffer: z and x_0 must not alias the params the runner donates."""
    return jnp.array(a, copy=True)


def _average(x: Any, z: Any, c: jax.Array) -> Any:
    return tree_map(lambda xi, zi: (1.0 - c) * xi + c * zi, x, z)


class AdamWState(NamedTuple):
    z: Any
    exp_avg_sq: Any
    count: jax.Array  # k: steps so far
    weight_sum: jax.Array
    lr_max: jax.Array


def adamw(
    learning_rate: float, warmup_steps: int, b1: float, b2: float, weight_decay: float,
    eps: float = 1e-8, weight_lr_power: float = 2.0, r: float = 0.75,
) -> ScheduleFree:
    """Schedule-Free AdamW (module docstring); ``update(g at y, state, x)`` returns x_{k+1} - x_k."""

    def init(params):
        zeros = tree_map(jnp.zeros_like, params)
        return AdamWState(tree_map(_copy, params), zeros, jnp.zeros([], jnp.int32),
                          jnp.zeros([], jnp.float32), jnp.zeros([], jnp.float32))

    def update(grads, state, params):
        k = state.count.astype(jnp.float32)
        sched = jnp.minimum((k + 1.0) / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
        lr = jnp.maximum(learning_rate * sched, eps)
        lr_max = jnp.maximum(lr, state.lr_max)
        weight = (k + 1.0) ** r * lr_max**weight_lr_power
        weight_sum = state.weight_sum + weight
        c = weight / weight_sum
        step = lr * jnp.sqrt(1.0 - b2 ** (k + 1.0))
        v = tree_map(lambda vi, g: b2 * vi + (1.0 - b2) * g * g, state.exp_avg_sq, grads)
        z = tree_map(lambda zi, g, vi, xi: zi - step * g / (jnp.sqrt(vi) + eps) - step * weight_decay * xi,
                     state.z, grads, v, params)
        new_x = _average(params, z, c)
        updates = tree_map(lambda n, xi: n - xi, new_x, params)
        return updates, AdamWState(z, v, state.count + 1, weight_sum, lr_max)

    return ScheduleFree(init, update, _extrapolate(b1))


class ProdigyState(NamedTuple):
    z: Any
    exp_avg_sq: Any
    s: Any
    x0: Any
    d: jax.Array
    d_numerator: jax.Array
    count: jax.Array  # k: steps that updated the iterates (the entry's group['k'])
    weight_sum: jax.Array


def prodigy(
    lr_schedule: optax.Schedule, b1: float = 0.9, b2: float = 0.9955, weight_decay: float = 0.0,
    eps: float = 1e-8, d0: float = 1e-6, d_coef: float = 1.0, r: float = 0.75,
) -> ScheduleFree:
    """Schedule-Free Prodigy (module docstring). ``lr_schedule(step)`` is the lr factor; step
    counts every call of ``update`` (the runner's global step), k only the applied ones."""

    def init(params):
        scalar = lambda v, dtype=jnp.float32: jnp.asarray(v, dtype)  # noqa: E731
        zeros = lambda: tree_map(jnp.zeros_like, params)  # noqa: E731  (fresh buffers: the state is donated)
        return ProdigyState(tree_map(_copy, params), zeros(), zeros(), tree_map(_copy, params),
                            scalar(d0), scalar(0.0), scalar(0, jnp.int32), scalar(0.0)), jnp.zeros([], jnp.int32)

    def update(grads, full_state, params):
        state, step = full_state
        lr = lr_schedule(step)
        d = state.d
        dlr = d * lr
        dot = sum(jnp.vdot(g, x0 - zi) for g, x0, zi in
                  zip(jax.tree.leaves(grads), jax.tree.leaves(state.x0), jax.tree.leaves(state.z), strict=True))
        numerator = state.d_numerator * jnp.sqrt(b2) + d * dlr * dot
        v = tree_map(lambda vi, g: b2 * vi + d * d * (1.0 - b2) * g * g, state.exp_avg_sq, grads)
        s = tree_map(lambda si, g: jnp.sqrt(b2) * si + d * dlr * g, state.s, grads)
        denom = sum(jnp.sum(jnp.abs(si)) for si in jax.tree.leaves(s))
        applied = denom != 0
        d_hat = d_coef * numerator / jnp.where(applied, denom, 1.0)
        new_d = jnp.maximum(d, d_hat)
        k = state.count.astype(jnp.float32)
        weight = (k + 1.0) ** r
        weight_sum = state.weight_sum + weight
        c = weight / weight_sum
        z = tree_map(lambda zi, g, vi, xi: zi - weight_decay * dlr * xi - new_d * dlr * g / (jnp.sqrt(vi) + new_d * eps),
                     state.z, grads, v, params)
        new_x = _average(params, z, c)
        keep = lambda new, old: tree_map(lambda a, b: jnp.where(applied, a, b), new, old)  # noqa: E731
        updates = keep(tree_map(lambda n, xi: n - xi, new_x, params), tree_map(jnp.zeros_like, params))
        new_state = ProdigyState(
            keep(z, state.z), v, s, state.x0, jnp.where(applied, new_d, d),
            jnp.where(applied, numerator, state.d_numerator), state.count + applied.astype(jnp.int32),
            jnp.where(applied, weight_sum, state.weight_sum),
        )
        return updates, (new_state, step + 1)

    return ScheduleFree(init, update, lambda full_state, x: _extrapolate(b1)(full_state[0], x))
