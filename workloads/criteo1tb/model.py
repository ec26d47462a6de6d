"""DLRM-small and DLRM-ResNet, laid out as AlgoPerf's criteo1tb JAX models.

``inputs`` [B, 39] float32: 13 dense features (already log1p'd) then 26 bucket ids stored
as floats. Every categorical column looks up the same table at ``int32(id) % vocab_size``.

DlrmSmall: bottom MLP over the dense features; dot interactions of the 27 vectors
(bottom output and 26 embeddings), upper triangle including the diagonal (378 values);
top MLP on ``[bottom, interactions]`` (506 wide) to one logit.
DLRMResNet: residual bottom and top MLPs, no dot interaction; the flattened embeddings
are concatenated with the bottom output.
Parameter names follow the reference: ``Dense_0 ... Dense_7``, ``embedding_table``,
``LayerNorm_*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf.layers import dropout

NUM_DENSE = 13
NUM_SPARSE = 26
VOCAB_SIZE = 4_194_304  # 32 * 128 * 1024
EMBED_DIM = 128


def normal_bias(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Bias ~ N(0, 1/fan_out) (so the 1-wide output bias has std 1)."""
    return jax.random.normal(key, shape, dtype) * jnp.sqrt(1.0 / shape[-1])


def top_kernel(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Top-MLP kernel ~ N(0, 2 / (fan_in + fan_out)), not truncated."""
    return jax.random.normal(key, shape, dtype) * jnp.sqrt(2.0 / (shape[0] + shape[1]))


def uniform_embedding(scale: float):
    """Embedding init U[0, 1) * scale: non-centred, as in the reference."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype) * scale

    return init


def _lookup(module: nn.Module, ids: jax.Array, vocab_size: int, embed_dim: int, scale: float) -> jax.Array:
    """[B, 26] float ids -> [B, 26, D] rows of the shared table."""
    table = module.param("embedding_table", uniform_embedding(scale), (vocab_size, embed_dim))
    idx = ids.astype(jnp.int32).reshape(-1) % vocab_size
    return jnp.take(table, idx, axis=0).reshape(ids.shape[0], ids.shape[1], embed_dim)


class DlrmSmall(nn.Module):
    """DLRM-small; ``use_layer_norm`` gives the _layernorm variant (a LayerNorm after every
    hidden ReLU and one over the embeddings), ``embedding_init_scale=1.0`` the _embed_init one."""

    vocab_size: int = VOCAB_SIZE
    embed_dim: int = EMBED_DIM
    mlp_bottom_dims: Sequence[int] = (512, 256, 128)
    mlp_top_dims: Sequence[int] = (1024, 1024, 512, 256, 1)
    use_layer_norm: bool = False
    # None: the reference's 1 / sqrt(vocab_size); _embed_init uses 1.0.
    embedding_init_scale: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate: float | jax.Array = 0.0) -> jax.Array:
        dense, ids = x[:, :NUM_DENSE], x[:, NUM_DENSE:]
        b = dense
        for width in self.mlp_bottom_dims:
            b = nn.Dense(width, kernel_init=nn.initializers.glorot_uniform(), bias_init=normal_bias)(b)
            b = nn.relu(b)
            if self.use_layer_norm:
                b = nn.LayerNorm(epsilon=1e-6)(b)
        scale = self.embedding_init_scale
        scale = 1.0 / np.sqrt(self.vocab_size) if scale is None else scale
        e = _lookup(self, ids, self.vocab_size, self.embed_dim, scale)
        if self.use_layer_norm:
            e = nn.LayerNorm(epsilon=1e-6)(e)
        features = jnp.concatenate([b[:, None, :], e], axis=1)  # [B, 27, D]
        gram = jnp.einsum("bid,bjd->bij", features, features)
        rows, cols = np.triu_indices(features.shape[1])  # row-major, i <= j
        t = jnp.concatenate([b, gram[:, rows, cols]], axis=1)  # [B, D + 378]
        last = len(self.mlp_top_dims) - 1
        for i, width in enumerate(self.mlp_top_dims):
            t = nn.Dense(width, kernel_init=top_kernel, bias_init=normal_bias)(t)
            if i < last:
                t = nn.relu(t)
                if self.use_layer_norm:
                    t = nn.LayerNorm(epsilon=1e-6)(t)
            if i == last - 1:
                t = dropout(t, dropout_rate, self.make_rng("dropout") if train else None)
        return t


class DLRMResNet(nn.Module):
    """DLRM with residual MLPs and no dot interaction (the _resnet variant).

    bottom: h = relu(W0 x); twice h = h + relu(W h).  top: t = relu(W [h, flat(e)]);
    three times t = t + relu(W t) (dropout on the last residual branch); then W t -> 1.
    The table is always initialised U[0, 1) / sqrt(vocab_size).
    """

    vocab_size: int = VOCAB_SIZE
    embed_dim: int = EMBED_DIM
    mlp_bottom_dims: Sequence[int] = (256, 256, 256)
    mlp_top_dims: Sequence[int] = (256, 256, 256, 256, 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate: float | jax.Array = 0.0) -> jax.Array:
        dense, ids = x[:, :NUM_DENSE], x[:, NUM_DENSE:]
        h = nn.relu(
            nn.Dense(self.mlp_bottom_dims[0], kernel_init=nn.initializers.glorot_uniform(), bias_init=normal_bias)(dense)
        )
        for width in self.mlp_bottom_dims[1:]:
            h = h + nn.relu(
                nn.Dense(width, kernel_init=nn.initializers.glorot_uniform(), bias_init=normal_bias)(h)
            )
        e = _lookup(self, ids, self.vocab_size, self.embed_dim, 1.0 / np.sqrt(self.vocab_size))
        t = jnp.concatenate([h, e.reshape(e.shape[0], -1)], axis=1)  # [B, 256 + 26 * D]
        t = nn.relu(nn.Dense(self.mlp_top_dims[0], kernel_init=top_kernel, bias_init=normal_bias)(t))
        last = len(self.mlp_top_dims) - 1
        for i in range(1, last):
            y = nn.relu(nn.Dense(self.mlp_top_dims[i], kernel_init=top_kernel, bias_init=normal_bias)(t))
            if i == last - 1:
                y = dropout(y, dropout_rate, self.make_rng("dropout") if train else None)
            t = t + y
        return nn.Dense(self.mlp_top_dims[last], kernel_init=top_kernel, bias_init=normal_bias)(t)
