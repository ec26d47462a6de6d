"""A small 1-D CNN for MNIST-1D (in the spirit of the paper's CNN baseline)."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax


class Cnn1d(nn.Module):
    """Three 1-D convolutions (the last two strided) and a linear classifier."""

    width: int = 32
    num_classes: int = 10
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.activation(nn.Conv(self.width, (5,), name="conv1")(x))
        x = self.activation(nn.Conv(self.width, (3,), strides=(2,), name="conv2")(x))
        x = self.activation(nn.Conv(self.width, (3,), strides=(2,), name="conv3")(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, name="output")(x)
