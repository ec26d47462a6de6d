"""AlgoPerf's MNIST model: a 784-128-10 MLP with a sigmoid hidden layer (101,770 params)."""

from __future__ import annotations

import flax.linen as nn
import jax


class Mlp(nn.Module):
    hidden: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        x = nn.sigmoid(nn.Dense(self.hidden, name="Dense_0")(x))
        return nn.Dense(self.num_classes, name="Dense_1")(x)
