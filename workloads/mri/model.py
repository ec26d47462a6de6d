"""A small U-Net in the layout of AlgoPerf's fastMRI model (NHWC, instance norm, no conv bias)."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf.layers import dropout

Activation = Callable[[jax.Array], jax.Array]


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with slope 0.2, fastMRI's activation."""
    return nn.leaky_relu(x, negative_slope=0.2)



def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """(x - mean) / sqrt(var + eps) over H and W, per example and channel; no affine part."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) - jnp.square(mean), 0.0)
    return (x - mean) * jax.lax.rsqrt(var + eps)


class ConvBlock(nn.Module):
    """Twice: 3x3 conv (no bias), instance norm, activation, channel dropout."""

    channels: int
    activation: Activation = leaky_relu

    @nn.compact
    def __call__(
        self, x: jax.Array, dropout_rate: float | jax.Array = 0.0, train: bool = False
    ) -> jax.Array:
        for _ in range(2):
            x = nn.Conv(self.channels, (3, 3), use_bias=False)(x)
            x = self.activation(instance_norm(x))
            # Dropout2d: one keep/drop per (example, channel), shared over H and W.
            x = dropout(x, dropout_rate, self.make_rng("dropout") if train else None, broadcast_dims=(1, 2))
        return x


class TransposeConvBlock(nn.Module):
    """2x2 stride-2 transposed conv (no bias), instance norm, activation."""

    channels: int
    activation: Activation = leaky_relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.ConvTranspose(self.channels, (2, 2), strides=(2, 2), use_bias=False)(x)
        return self.activation(instance_norm(x))


class UNet(nn.Module):
    """U-Net: ``num_pool_layers`` down stages (channels doubling from ``channels``), a
    bottleneck, as many up stages with skip connections, and a 1x1 conv head (``output``).

    Input [B, H, W] (H and W divisible by 2^num_pool_layers), output [B, H, W].
    """

    channels: int = 16
    num_pool_layers: int = 2
    activation: Activation = leaky_relu

    @nn.compact
    def __call__(
        self, x: jax.Array, dropout_rate: float | jax.Array = 0.0, train: bool = False
    ) -> jax.Array:
        x = x[..., None]
        skips = []
        ch = self.channels
        for i in range(self.num_pool_layers):
            x = ConvBlock(ch, self.activation, name=f"down_{i}")(x, dropout_rate, train)
            skips.append(x)
            x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            ch *= 2
        x = ConvBlock(ch, self.activation, name="bottleneck")(x, dropout_rate, train)
        for i in range(self.num_pool_layers):
            ch //= 2
            x = TransposeConvBlock(ch, self.activation, name=f"up_transpose_{i}")(x)
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = ConvBlock(ch, self.activation, name=f"up_{i}")(x, dropout_rate, train)
        x = nn.Conv(1, (1, 1), name="output")(x)
        return x[..., 0]
