"""SSIM as AlgoPerf's fastMRI computes it (skimage's ``structural_similarity`` defaults).

For images X, Y and data range L, with 7x7 box-filtered local means mu_x, mu_y and sample
(co)variances v_x, v_y, v_xy (the 49/48 correction):

    S = (2 mu_x mu_y + C1) (2 v_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (v_x + v_y + C2)),
    C1 = (0.01 L)^2,  C2 = (0.03 L)^2,

and SSIM is the mean of S over the interior (3 pixels in from each edge), clipped to
[-1, 1]. The box filter pads symmetrically (edge-repeating), as scipy's uniform_filter.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

WIN_SIZE = 7


def _box_filter(x: jax.Array, size: int = WIN_SIZE) -> jax.Array:
    """Separable ``size`` x ``size`` moving average over the last two axes, symmetric padding."""
    pad = size // 2
    for axis in (-2, -1):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (pad, pad)
        padded = jnp.pad(x, widths, mode="symmetric")
        n = x.shape[axis]
        x = (
            sum(jax.lax.slice_in_dim(padded, i, i + n, axis=x.ndim + axis) for i in range(size))
            / size
        )
    return x


def ssim(x: jax.Array, y: jax.Array, data_range: jax.Array) -> jax.Array:
    """Per-image SSIM of ``x`` against ``y`` ([B, H, W]) with per-image ``data_range`` ([B]).

    A data range of 0 (e.g. a padded row) is replaced by 1.
    """
    data_range = jnp.where(data_range == 0, 1.0, data_range)[:, None, None]
    c1 = jnp.square(0.01 * data_range)
    c2 = jnp.square(0.03 * data_range)
    n = WIN_SIZE * WIN_SIZE
    cov_norm = n / (n - 1)
    mu_x, mu_y = _box_filter(x), _box_filter(y)
    mu_xx, mu_yy, mu_xy = _box_filter(x * x), _box_filter(y * y), _box_filter(x * y)
    v_x = cov_norm * (mu_xx - mu_x * mu_x)
    v_y = cov_norm * (mu_yy - mu_y * mu_y)
    v_xy = cov_norm * (mu_xy - mu_x * mu_y)
    s = ((2 * mu_x * mu_y + c1) * (2 * v_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (v_x + v_y + c2))
    pad = WIN_SIZE // 2
    s = s[:, pad:-pad, pad:-pad]
    return jnp.clip(jnp.mean(s, axis=(1, 2)), -1.0, 1.0)
