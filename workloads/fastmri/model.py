"""The fastMRI U-Net of AlgoPerf's JAX workload (NHWC).

Down path: ConvBlock(C), ConvBlock(2C), ... ConvBlock(C 2^(P-1)), each followed by a 2x2
average pool (its output kept as a skip); bottleneck ConvBlock(C 2^P); up path: for each
stage a TransposeConvBlock (2x2, stride 2), concat with the skip, ConvBlock; head: a 1x1
conv with bias (the output layer, ``Conv_0``).

ConvBlock = 2 x [conv 3x3 no bias, norm, activation, channel dropout]. The norm is instance
norm (per example and channel over H, W; eps 1e-5; no affine) or, in the _layernorm
variant, a LayerNorm over (H, W, C) with per-channel scale and bias (eps 1e-6). Transposed
conv blocks always use instance norm. Initialisers are flax's defaults (LeCun normal
kernels, zero bias).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf.layers import dropout

Activation = Callable[[jax.Array], jax.Array]


def leaky_relu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, negative_slope=0.2)


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """(x - mean) / sqrt(var + eps) over H, W per example and channel; var = max(0, E[x^2] - E[x]^2)."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) - jnp.square(mean), 0.0)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def channel_dropout(x: jax.Array, rate: float | jax.Array, rng: jax.Array | None) -> jax.Array:
    """Dropout2d on NHWC: one keep/drop draw per example and channel, shared over H and W.

    Decision (see README): unlike the reference JAX U-Net, where the rate never reaches
    the blocks (so dropout is dead), the rate passed to ``model_fn`` takes effect, as in
    the PyTorch reference. The default rate is 0, where both agree.
    """
    if rng is None:
        return x
    return x * dropout(jnp.ones((x.shape[0], 1, 1, x.shape[3]), x.dtype), rate, rng)


class ConvBlock(nn.Module):
    out_channels: int
    activation: Activation = leaky_relu
    use_layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, dropout_rate: float | jax.Array, train: bool) -> jax.Array:
        for _ in range(2):
            x = nn.Conv(self.out_channels, (3, 3), strides=(1, 1), padding="SAME", use_bias=False)(x)
            if self.use_layer_norm:
                x = nn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=-1, epsilon=1e-6)(x)
            else:
                x = instance_norm(x)
            x = self.activation(x)
            x = channel_dropout(x, dropout_rate, self.make_rng("dropout") if train else None)
        return x


class TransposeConvBlock(nn.Module):
    out_channels: int
    activation: Activation = leaky_relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.ConvTranspose(self.out_channels, (2, 2), strides=(2, 2), use_bias=False)(x)
        return self.activation(instance_norm(x))


class UNet(nn.Module):
    """[B, H, W] normalised zero-filled image -> [B, H, W] reconstruction."""

    num_channels: int = 32
    num_pool_layers: int = 4
    activation: Activation = leaky_relu
    use_layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate: float | jax.Array = 0.0) -> jax.Array:
        block = dict(activation=self.activation, use_layer_norm=self.use_layer_norm)
        x = x[..., None]
        skips = []
        ch = self.num_channels
        for _ in range(self.num_pool_layers):
            x = ConvBlock(ch, **block)(x, dropout_rate, train)
            skips.append(x)
            x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            ch *= 2
        x = ConvBlock(ch, **block)(x, dropout_rate, train)
        for _ in range(self.num_pool_layers):
            ch //= 2
            x = TransposeConvBlock(ch, activation=self.activation)(x)
            skip = skips.pop()
            # Odd sizes: reflect-pad the bottom/right by one (never at 320 x 320).
            pad_h, pad_w = skip.shape[1] - x.shape[1], skip.shape[2] - x.shape[2]
            if pad_h or pad_w:
                x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
            x = jnp.concatenate([x, skip], axis=-1)
            x = ConvBlock(ch, **block)(x, dropout_rate, train)
        x = nn.Conv(1, (1, 1), strides=(1, 1), name="Conv_0")(x)
        return x[..., 0]
