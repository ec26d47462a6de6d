"""SSIM as AlgoPerf's fastMRI workload computes it (a port of skimage's defaults).

Per slice, on the denormalised images X = pred * std + mean, Y = target * std + mean
(the target is the clipped one):

    mu = box7x7(.)  (separable moving average, symmetric padding 3)
    vx = 49/48 (box(X^2) - mux^2),  vy likewise,  vxy = 49/48 (box(XY) - mux muy)
    C1 = (0.01 L)^2,  C2 = (0.03 L)^2,  L = volume max (0 -> 1, for padded rows)
    S  = (2 mux muy + C1)(2 vxy + C2) / ((mux^2 + muy^2 + C1)(vx + vy + C2))
    ssim = mean of S over the interior [3:-3, 3:-3], clamped to [-1, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

WIN = 7
PAD = WIN // 2


def _box(x: jax.Array) -> jax.Array:
    """7x7 moving average over the last two axes with symmetric (edge-repeating) padding."""
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(PAD, PAD), (PAD, PAD)], mode="symmetric")
    h, w = x.shape[-2] - 2 * PAD, x.shape[-1] - 2 * PAD
    x = sum(x[..., i : i + h, :] for i in range(WIN)) / WIN
    return sum(x[..., :, j : j + w] for j in range(WIN)) / WIN


def ssim(
    pred: jax.Array, target: jax.Array, mean: jax.Array, std: jax.Array, volume_max: jax.Array
) -> jax.Array:
    """[B] SSIM of each slice; ``pred``/``target`` [B, H, W] on the normalised scale."""
    mean, std = mean[:, None, None], std[:, None, None]
    x, y = pred * std + mean, target * std + mean
    data_range = jnp.where(volume_max == 0, 1.0, volume_max)[:, None, None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    cov_norm = WIN * WIN / (WIN * WIN - 1)
    ux, uy = _box(x), _box(y)
    vx = cov_norm * (_box(x * x) - ux * ux)
    vy = cov_norm * (_box(y * y) - uy * uy)
    vxy = cov_norm * (_box(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    s = s[:, PAD:-PAD, PAD:-PAD]
    return jnp.clip(jnp.mean(s, axis=(1, 2)), -1.0, 1.0)
