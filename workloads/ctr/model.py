"""DLRM-small, scaled down: the model of AlgoPerf's criteo1tb workload at about 1/8 width.

Bottom MLP over the 13 dense features; one embedding table holding every categorical
column's buckets (column ``i`` occupies rows ``offset_i .. offset_i + V_i``); pairwise dot
products of the 27 vectors (bottom output and 26 embeddings), upper triangle including the
diagonal; top MLP on ``[bottom output, interactions]`` to one click logit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf.layers import dropout

NUM_DENSE = 13


def _normal_bias(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Bias init N(0, 1/fan_out), as in the reference DLRM-small."""
    return jax.random.normal(key, shape, dtype) * jnp.sqrt(1.0 / shape[-1])


def _top_kernel(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Top-MLP kernel init N(0, 2 / (fan_in + fan_out)), not truncated."""
    return jax.random.normal(key, shape, dtype) * jnp.sqrt(2.0 / (shape[0] + shape[1]))



def _uniform_embedding(scale: float) -> Callable[..., jax.Array]:
    """Embedding init U[0, scale) (non-centred, as in the reference)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype) * scale

    return init


class DlrmSmall(nn.Module):
    """DLRM with dot interactions.

    ``inputs``: [B, 13 + C] float32, 13 dense features then C bucket ids (stored as floats).
    Returns click logits [B, 1].
    """

    vocab_sizes: Sequence[int]
    embed_dim: int = 16
    bottom_dims: Sequence[int] = (64, 32, 16)
    top_dims: Sequence[int] = (128, 128, 64, 32)
    embedding_init_scale: float | None = None  # None: 1 / sqrt(total vocabulary)
    use_layer_norm: bool = False

    @nn.compact
    def __call__(
        self, inputs: jax.Array, train: bool, dropout_rate: float | jax.Array = 0.0
    ) -> jax.Array:
        if self.bottom_dims[-1] != self.embed_dim:
            raise ValueError("the bottom MLP must end at embed_dim for the dot interaction")
        dense = inputs[:, :NUM_DENSE]
        ids = inputs[:, NUM_DENSE:].astype(jnp.int32)
        offsets = np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]]).astype(np.int32)

        x = dense
        for width in self.bottom_dims:
            x = nn.Dense(
                width, kernel_init=nn.initializers.glorot_uniform(), bias_init=_normal_bias
            )(x)
            x = nn.relu(x)
            if self.use_layer_norm:
                x = nn.LayerNorm(epsilon=1e-6)(x)
        bottom = x

        total = int(sum(self.vocab_sizes))
        scale = self.embedding_init_scale
        scale = 1.0 / np.sqrt(total) if scale is None else scale
        table = nn.Embed(
            total, self.embed_dim, embedding_init=_uniform_embedding(scale), name="embedding"
        )
        embedded = table(ids + jnp.asarray(offsets))  # [B, C, D]
        if self.use_layer_norm:
            embedded = nn.LayerNorm(epsilon=1e-6, name="categorical_layer_norm")(embedded)

        features = jnp.concatenate([bottom[:, None, :], embedded], axis=1)  # [B, C + 1, D]
        gram = jnp.einsum("bid,bjd->bij", features, features)
        rows, cols = np.triu_indices(features.shape[1])
        x = jnp.concatenate([bottom, gram[:, rows, cols]], axis=1)

        for i, width in enumerate(self.top_dims):
            x = nn.Dense(width, kernel_init=_top_kernel, bias_init=_normal_bias)(x)
            x = nn.relu(x)
            if self.use_layer_norm:
                x = nn.LayerNorm(epsilon=1e-6)(x)
            if i == len(self.top_dims) - 1:
                x = dropout(x, dropout_rate, self.make_rng("dropout") if train else None)
        return nn.Dense(1, kernel_init=_top_kernel, bias_init=_normal_bias, name="output")(x)
