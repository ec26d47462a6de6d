"""The Conformer of AlgoPerf's librispeech_conformer JAX workload.

frontend (log-mel) -> SpecAugment (train) -> conv subsampling (4x) -> + sinusoidal
positions -> dropout -> 4 Conformer blocks -> LayerNorm -> Dense(vocab).

Block (m = 1 - padding):
    x += FFN(x)/2;  x += MHSA(x);  x += ConvModule(x);  x += FFN(x)/2;  x = LN(x)
(the _layernorm variant drops the last LN). Every LayerNorm is the reference's custom
(1 + scale) one; every Dense is xavier-uniform with zero bias.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf.layers import dropout

from .frontend import ConvSubsampling, LayerNorm, MaskedBatchNorm, log_mel, spec_augment

Activation = Callable[[jax.Array], jax.Array]
XAVIER = nn.initializers.xavier_uniform()


def gelu_tanh(x: jax.Array) -> jax.Array:
    return nn.gelu(x, approximate=True)


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """[length, dim]: sin(p w_i) for i < dim/2, cos(p w_i) after; w_i = exp(-i ln(1e4) / (dim/2 - 1))."""
    half = dim // 2
    freqs = np.exp(-np.arange(half) * np.log(1e4) / (half - 1))
    angles = np.arange(length)[:, None] * freqs[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1).astype(np.float32)


class FeedForward(nn.Module):
    dim: int
    hidden: int
    activation: Activation

    @nn.compact
    def __call__(self, x, paddings, dropout_rate, train: bool) -> jax.Array:
        m = (1.0 - paddings)[..., None]
        y = LayerNorm()(x)
        y = nn.Dense(self.hidden, kernel_init=XAVIER)(y)
        y = dropout(self.activation(y), dropout_rate, self.make_rng("dropout") if train else None)
        y = nn.Dense(self.dim, kernel_init=XAVIER)(y * m) * m
        return dropout(y, dropout_rate, self.make_rng("dropout") if train else None)


class SelfAttention(nn.Module):
    """Masked multi-head self-attention with a learned per-dimension query scale.

    q <- q * 1.442695041 * softplus(s) / sqrt(head_dim) (s starts at 0, factor 1); the
    attended values are multiplied by ``temperature`` before the output projection.
    """

    dim: int
    num_heads: int
    temperature: float = 1.0

    @nn.compact
    def __call__(self, x, paddings) -> jax.Array:
        head_dim = self.dim // self.num_heads
        # DenseGeneral initialises the flattened [dim, dim] kernel: xavier on 512 x 512.
        proj = lambda name: nn.DenseGeneral((self.num_heads, head_dim), kernel_init=XAVIER, name=name)  # noqa: E731
        q, k, v = proj("query")(x), proj("key")(x), proj("value")(x)  # [B, T, H, D]
        per_dim_scale = self.param("per_dim_scale", nn.initializers.zeros, (head_dim,))
        q = q * (1.442695041 * jax.nn.softplus(per_dim_scale)) / np.sqrt(head_dim)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        valid = paddings == 0
        mask = valid[:, None, :, None] & valid[:, None, None, :]
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        y = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v) * self.temperature
        return nn.DenseGeneral(self.dim, axis=(-2, -1), kernel_init=XAVIER, name="out")(y)


class ConvModule(nn.Module):
    dim: int
    kernel_size: int
    activation: Activation

    @nn.compact
    def __call__(self, x, paddings, dropout_rate, train: bool) -> jax.Array:
        m = (1.0 - paddings)[..., None]
        y = LayerNorm()(x)
        y = nn.Dense(self.dim, kernel_init=XAVIER)(y) * nn.sigmoid(nn.Dense(self.dim, kernel_init=XAVIER)(y))
        y = y * m
        # Depthwise [5, 1, dim]: xavier with fan_in 5 and fan_out 5 * dim, as flax counts it.
        y = nn.Conv(
            self.dim, (self.kernel_size,), padding="SAME", feature_group_count=self.dim, use_bias=False,
            kernel_init=XAVIER,
        )(y)
        y = MaskedBatchNorm()(y, paddings, train)
        y = nn.Dense(self.dim, kernel_init=XAVIER)(self.activation(y))
        return dropout(y, dropout_rate, self.make_rng("dropout") if train else None)


class ConformerBlock(nn.Module):
    dim: int = 512
    num_heads: int = 8
    ffn_hidden: int = 2048
    kernel_size: int = 5
    activation: Activation = nn.swish
    temperature: float = 1.0
    post_layer_norm: bool = True

    @nn.compact
    def __call__(self, x, paddings, dropout_rate, train: bool) -> jax.Array:
        x = x + 0.5 * FeedForward(self.dim, self.ffn_hidden, self.activation)(x, paddings, dropout_rate, train)
        y = SelfAttention(self.dim, self.num_heads, self.temperature)(LayerNorm()(x), paddings)
        x = x + dropout(y, dropout_rate, self.make_rng("dropout") if train else None)
        x = x + ConvModule(self.dim, self.kernel_size, self.activation)(x, paddings, dropout_rate, train)
        x = x + 0.5 * FeedForward(self.dim, self.ffn_hidden, self.activation)(x, paddings, dropout_rate, train)
        return LayerNorm()(x) if self.post_layer_norm else x


class Conformer(nn.Module):
    """(audio [B, N], paddings [B, N]) -> (logits [B, T', vocab], logit paddings [B, T'])."""

    vocab_size: int = 1024
    dim: int = 512
    num_heads: int = 8
    num_blocks: int = 4
    ffn_hidden: int = 2048
    kernel_size: int = 5
    activation: Activation = nn.swish
    temperature: float = 1.0
    post_layer_norm: bool = True
    subsampling_channels: int = 512

    @nn.compact
    def __call__(self, audio, audio_paddings, train: bool = False, dropout_rate: float | jax.Array = 0.1):
        x, paddings = log_mel(audio, audio_paddings)
        if train:
            x = spec_augment(self.make_rng("dropout"), x, paddings)
        x, paddings = ConvSubsampling(self.dim, self.subsampling_channels)(x, paddings)
        x = x + sinusoidal_positions(x.shape[1], self.dim)[None]
        x = dropout(x, dropout_rate, self.make_rng("dropout") if train else None)
        for _ in range(self.num_blocks):
            x = ConformerBlock(
                self.dim, self.num_heads, self.ffn_hidden, self.kernel_size, self.activation,
                self.temperature, self.post_layer_norm,
            )(x, paddings, dropout_rate, train)
        x = LayerNorm()(x)
        return nn.Dense(self.vocab_size, kernel_init=XAVIER, name="Dense_0")(x), paddings
