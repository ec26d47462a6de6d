"""A small Conformer for CTC, laid out as AlgoPerf's librispeech_conformer (JAX side).

Frames [B, T, F] with paddings [B, T] go through a two-stage stride-2 conv subsampling
(T -> T/4), a linear projection to the model width, a sinusoidal position signal, then
``num_blocks`` Conformer blocks

    x += FFN(x)/2;  x += MHSA(x);  x += ConvModule(x);  x += FFN(x)/2;  x = LayerNorm(x)

and a final LayerNorm and Dense to the vocabulary. Padded frames are masked out of
attention, zeroed inside the FFN and conv module, and excluded from batch statistics.
Differences from the reference, for size: standard LayerNorms (scale initialised to 1),
no per-dimension query scaling in attention, no SpecAugment, batch-norm momentum 0.99.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf.layers import dropout

Activation = Callable[[jax.Array], jax.Array]



class MaskedBatchNorm(nn.Module):
    """Batch norm over the unpadded frames (B and T axes).

    y = (x - mean) (1 + scale) / sqrt(var + eps) + bias, then zeroed on padded frames;
    ``scale`` and ``bias`` start at 0. With batch statistics the running averages
    (in 'batch_stats') move as r <- momentum r + (1 - momentum) batch.
    """

    momentum: float = 0.99
    epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array, paddings: jax.Array, use_running_average: bool) -> jax.Array:
        dim = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (dim,))
        running_var = self.variable("batch_stats", "var", jnp.ones, (dim,))
        scale = self.param("scale", nn.initializers.zeros, (dim,))
        bias = self.param("bias", nn.initializers.zeros, (dim,))
        mask = (1.0 - paddings)[..., None]
        if use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            count = jnp.maximum(jnp.sum(mask), 1.0)
            mean = jnp.sum(x * mask, axis=(0, 1)) / count
            var = jnp.sum(jnp.square((x - mean) * mask), axis=(0, 1)) / count
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = m * running_mean.value + (1 - m) * mean
                running_var.value = m * running_var.value + (1 - m) * var
        y = (x - mean) * (1.0 + scale) * jax.lax.rsqrt(var + self.epsilon) + bias
        return y * mask


class FeedForward(nn.Module):
    """LayerNorm, Dense(4d), activation, dropout, Dense(d), dropout; padded frames zeroed."""

    dim: int
    hidden: int
    activation: Activation

    @nn.compact
    def __call__(
        self, x: jax.Array, paddings: jax.Array, dropout_rate: float | jax.Array, train: bool
    ) -> jax.Array:
        mask = (1.0 - paddings)[..., None]
        y = nn.LayerNorm(name="ln")(x)
        y = self.activation(nn.Dense(self.hidden, name="dense_in")(y))
        y = dropout(y, dropout_rate, self.make_rng("dropout") if train else None)
        y = nn.Dense(self.dim, name="dense_out")(y * mask) * mask
        return dropout(y, dropout_rate, self.make_rng("dropout") if train else None)


class ConvModule(nn.Module):
    """LayerNorm, GLU, depthwise conv (no bias), masked batch norm, activation, Dense, dropout."""

    dim: int
    kernel_size: int
    activation: Activation

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        paddings: jax.Array,
        dropout_rate: float | jax.Array,
        train: bool,
        update_batch_norm: bool,
    ) -> jax.Array:
        mask = (1.0 - paddings)[..., None]
        y = nn.LayerNorm(name="ln")(x)
        y = nn.Dense(self.dim, name="glu_value")(y) * nn.sigmoid(
            nn.Dense(self.dim, name="glu_gate")(y)
        )
        y = y * mask
        y = nn.Conv(
            self.dim,
            (self.kernel_size,),
            feature_group_count=self.dim,
            use_bias=False,
            name="depthwise_conv",
        )(y)
        y = MaskedBatchNorm(name="batch_norm")(
            y, paddings, use_running_average=not update_batch_norm
        )
        y = nn.Dense(self.dim, name="pointwise")(self.activation(y))
        return dropout(y, dropout_rate, self.make_rng("dropout") if train else None)


class ConformerBlock(nn.Module):
    """Half FFN, self-attention, conv module, half FFN (all residual), then LayerNorm."""

    dim: int
    num_heads: int
    ffn_hidden: int
    kernel_size: int
    activation: Activation

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        paddings: jax.Array,
        dropout_rate: float | jax.Array,
        train: bool,
        update_batch_norm: bool,
    ) -> jax.Array:
        x = x + 0.5 * FeedForward(self.dim, self.ffn_hidden, self.activation, name="ffn_1")(
            x, paddings, dropout_rate, train
        )
        valid = paddings == 0
        attention_mask = nn.make_attention_mask(valid, valid)
        y = nn.LayerNorm(name="ln_attention")(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, name="attention")(
            y, y, mask=attention_mask, deterministic=True
        )
        x = x + dropout(y, dropout_rate, self.make_rng("dropout") if train else None)
        x = x + ConvModule(self.dim, self.kernel_size, self.activation, name="conv_module")(
            x, paddings, dropout_rate, train, update_batch_norm
        )
        x = x + 0.5 * FeedForward(self.dim, self.ffn_hidden, self.activation, name="ffn_2")(
            x, paddings, dropout_rate, train
        )
        return nn.LayerNorm(name="ln_out")(x)


def sinusoidal_positions(length: int, dim: int) -> jax.Array:
    """[length, dim]: sin(p w_i) in the first half, cos(p w_i) in the second, w_i = 1e4^(-i/(h-1))."""
    half = dim // 2
    freqs = jnp.exp(-jnp.arange(half) * jnp.log(1e4) / max(half - 1, 1))
    angles = jnp.arange(length)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Conformer(nn.Module):
    """Conv subsampling (4x in time), Conformer blocks, LayerNorm and the output Dense.

    Returns (logits [B, T/4, vocab_size], logit paddings [B, T/4]).
    """

    vocab_size: int
    dim: int = 64
    num_heads: int = 4
    num_blocks: int = 2
    subsampling_channels: int = 16
    kernel_size: int = 5
    activation: Activation = nn.swish

    @nn.compact
    def __call__(
        self,
        features: jax.Array,
        paddings: jax.Array,
        dropout_rate: float | jax.Array = 0.0,
        train: bool = False,
        update_batch_norm: bool = False,
    ) -> tuple[jax.Array, jax.Array]:
        x = features[..., None]  # [B, T, F, 1]: time as height, mel bins as width
        for i in range(2):
            x = nn.Conv(
                self.subsampling_channels, (3, 3), strides=(2, 2), name=f"subsample_conv_{i}"
            )(x)
            x = nn.relu(x)
            paddings = paddings[:, ::2]
            x = x * (1.0 - paddings)[:, :, None, None]
        x = x.reshape(x.shape[0], x.shape[1], -1)
        x = nn.Dense(self.dim, name="subsample_dense")(x)
        x = x + sinusoidal_positions(x.shape[1], self.dim)[None]
        x = dropout(x, dropout_rate, self.make_rng("dropout") if train else None)
        for i in range(self.num_blocks):
            x = ConformerBlock(
                self.dim,
                self.num_heads,
                4 * self.dim,
                self.kernel_size,
                self.activation,
                name=f"block_{i}",
            )(x, paddings, dropout_rate, train, update_batch_norm)
        x = nn.LayerNorm(name="ln_final")(x)
        return nn.Dense(self.vocab_size, name="output")(x), paddings
