"""The NAdamW and warmup-cosine schedules of the cyclic_lr, lawa_ema and lawa_queue entries.

NAdamW as the entries' PyTorch ``NAdamW`` (AlgoPerf's baseline; Dozat 2016 with decoupled
weight decay, Loshchilov & Hutter 2019), per step t = 1, 2, ... with lr_t from the schedule:
    p <- p (1 - lr_t wd)
    m_t = b1 m_{t-1} + (1 - b1) g_t          v_t = b2 v_{t-1} + (1 - b2) g_t^2
    p <- p - lr_t / (1 - b1^t) * (b1 m_t + (1 - b1) g_t) / (sqrt(v_t) / sqrt(1 - b2^t) + eps)
``optax.nadamw`` bias-corrects the b1 m_t term by 1 - b1^(t+1) instead of 1 - b1^t, so the
Nesterov moment is written here (``scale_by_nadam``); the decay and the learning rate are
optax's ``add_decayed_weights`` and ``scale_by_learning_rate``.

The schedule (the entries' ``WarmCosine``, lr_min = 1e-10, W warmup steps, T = step_hint)
is set after each optimizer step, so the t-th step (t = 0, 1, ...) uses
    lr_0 = learning_rate (the optimizer's initial lr: no warmup on the first step),
    lr_t = lr_min + (lr - lr_min) t / W                               for 1 <= t <= W,
    lr_t = lr_min + (lr - lr_min) (1 + cos(pi (t - W) / (T - W))) / 2   for W < t <= T,
    lr_t = lr_min                                                       after T;
with ``cycles`` = C > 1 (``WarmCosineCycles``, a = T / C) cycle j covers (j a, (j + 1) a]:
a warmup from lr_min over W steps from j a, then a cosine to lr_min at (j + 1) a.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

LR_MIN = 1e-10


class NadamState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_nadam(b1: float, b2: float, eps: float = 1e-8) -> optax.GradientTransformation:
    """g -> (b1 m_t + (1 - b1) g) / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)."""

    def init(params):
        # Two separate trees: the train step donates the state, and a buffer may be donated once.
        return NadamState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        t = count.astype(jnp.float32)
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, updates)
        bc1, bc2 = 1.0 - b1**t, jnp.sqrt(1.0 - b2**t)
        out = jax.tree.map(lambda m, v, g: (b1 * m + (1.0 - b1) * g) / bc1 / (jnp.sqrt(v) / bc2 + eps), mu, nu, updates)
        return out, NadamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def warm_cosine(learning_rate: float, warmup_steps: int, step_hint: int, cycles: int = 1) -> optax.Schedule:
    """The entries' schedule as a function of the 0-based step index (module docstring)."""
    if cycles == 1:
        inner = optax.warmup_cosine_decay_schedule(
            init_value=LR_MIN, peak_value=learning_rate, warmup_steps=warmup_steps,
            decay_steps=step_hint, end_value=LR_MIN,
        )
    else:
        inner = _cycles(learning_rate, warmup_steps, step_hint, cycles)

    def schedule(step):
        return jnp.where(step == 0, learning_rate, inner(step))

    return schedule


def _cycles(lr_max: float, warmup: int, horizon: int, cycles: int) -> optax.Schedule:
    length = horizon / cycles

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        lr = jnp.asarray(LR_MIN, jnp.float32)
        for phi in reversed(range(cycles)):  # the first matching cycle wins, as in the entry's loop
            start = phi * length
            up = LR_MIN + (lr_max - LR_MIN) / max(warmup, 1) * (t - start)
            down = LR_MIN + 0.5 * (lr_max - LR_MIN) * (1 + jnp.cos((t - warmup - start) * jnp.pi / (length - warmup)))
            lr = jnp.where(t <= start + warmup, up, jnp.where(t <= start + length, down, lr))
        return lr

    return schedule


def nadamw(schedule: optax.Schedule, b1: float, b2: float, weight_decay: float, eps: float = 1e-8) -> optax.GradientTransformation:
    """The entries' NAdamW on ``schedule`` (module docstring)."""
    return optax.chain(
        scale_by_nadam(b1, b2, eps),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(schedule),
    )
