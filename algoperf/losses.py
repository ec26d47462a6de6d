"""Losses in AlgoPerf's return format: summed loss, number of valid examples, per example.

All take an optional ``mask`` (1 for real examples, 0 for padding) so that a padded
last eval batch counts each real example exactly once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _reduce(per_example: jax.Array, mask: jax.Array | None) -> dict[str, jax.Array]:
    if mask is None:
        mask = jnp.ones(per_example.shape[:1], per_example.dtype)
    mask = mask.reshape(mask.shape[:1] + (1,) * (per_example.ndim - 1)).astype(per_example.dtype)
    per_example = per_example * mask
    n_valid = jnp.sum(mask) * (per_example[0].size if per_example.ndim > 1 else 1)
    return {"summed": jnp.sum(per_example), "n_valid_examples": n_valid, "per_example": per_example}


def softmax_cross_entropy(
    labels: jax.Array,
    logits: jax.Array,
    mask: jax.Array | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, jax.Array]:
    """Cross-entropy of integer ``labels`` against ``logits`` over the last axis.

    With smoothing eps over K classes the target is (1 - eps) * onehot + eps / K.
    """
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    per_example = optax.softmax_cross_entropy(logits, targets)
    return _reduce(per_example, mask)


def sigmoid_cross_entropy(
    labels: jax.Array,
    logits: jax.Array,
    mask: jax.Array | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, jax.Array]:
    """Binary cross-entropy per label; labels smoothed towards 1/2 by ``label_smoothing``."""
    labels = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
    per_example = optax.sigmoid_binary_cross_entropy(logits, labels)
    return _reduce(per_example, mask)


def mean_squared_error(
    labels: jax.Array, logits: jax.Array, mask: jax.Array | None = None, label_smoothing: float = 0.0
) -> dict[str, jax.Array]:
    del label_smoothing
    return _reduce(jnp.square(logits - labels), mask)


def mean_absolute_error(
    labels: jax.Array, logits: jax.Array, mask: jax.Array | None = None, label_smoothing: float = 0.0
) -> dict[str, jax.Array]:
    del label_smoothing
    return _reduce(jnp.abs(logits - labels), mask)


def token_cross_entropy(
    labels: jax.Array,
    logits: jax.Array,
    mask: jax.Array | None = None,
    label_smoothing: float = 0.0,
    ignore_padding: bool = False,
) -> dict[str, jax.Array]:
    """Per-token cross-entropy of (B, L) integer ``labels`` against (B, L, V) ``logits``.

    Per token ``-sum_v y_v log softmax(z)_v`` with ``y = (1 - a) onehot + a / V``, computed
    in float32 (bf16 logits lose too much in the log-sum-exp). A token's weight is ``mask``
    ((B,) per row or (B, L) per token; 1 without one), times ``labels > 0`` with
    ``ignore_padding`` (token id 0 is padding). 'n_valid_examples' is the sum of the
    weights (the number of valid tokens for 0/1 masks), 'per_example' the weighted (B, L)
    losses.
    """
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    per_token = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
    weights = jnp.ones_like(per_token)
    if ignore_padding:
        weights = weights * (labels > 0)
    if mask is not None:
        mask = mask.astype(per_token.dtype)
        weights = weights * (mask[:, None] if mask.ndim == 1 else mask)
    per_token = per_token * weights
    return {"summed": jnp.sum(per_token), "n_valid_examples": jnp.sum(weights), "per_example": per_token}
