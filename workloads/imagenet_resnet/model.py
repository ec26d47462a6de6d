"""ResNet in Flax linen, parameter-for-parameter AlgoPerf's JAX ResNets.

ResNet-50 (ImageNet, bottleneck "v1.5" blocks, 25,557,032 params) and the basic block
that CIFAR's ResNet-18 reuses. Convolutions have no bias and lecun_normal kernels (Flax's
default); the last BatchNorm of each block's main branch starts at ``bn_init_scale``
(0 by default, so every block starts as the identity on its shortcut).

BatchNorm: momentum 0.9, eps 1e-5, biased batch variance; running stats are
``ra <- 0.9 ra + 0.1 batch``. Under ``jit`` over a batch-sharded mesh the batch
statistics are those of the global batch (XLA inserts the cross-device reduction).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Activation] = {
    "relu": nn.relu,
    "silu": nn.silu,
    # Flax's gelu is the tanh approximation, as in the reference.
    "gelu": functools.partial(nn.gelu, approximate=True),
}


def batch_norm(use_running_average: bool) -> functools.partial:
    """AlgoPerf's BatchNorm settings (momentum 0.9, eps 1e-5, float32)."""
    return functools.partial(
        nn.BatchNorm, use_running_average=use_running_average, momentum=0.9, epsilon=1e-5, dtype=jnp.float32
    )


class ResNetBlock(nn.Module):
    """Basic block: 3x3 conv (stride s) -> BN -> act -> 3x3 conv -> BN(scale init) ; + shortcut."""

    filters: int
    strides: tuple[int, int] = (1, 1)
    act: Activation = nn.relu
    bn_init_scale: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
        norm = batch_norm(use_running_average)
        y = nn.Conv(self.filters, (3, 3), self.strides, use_bias=False, name="Conv_0")(x)
        y = self.act(norm(name="BatchNorm_0")(y))
        y = nn.Conv(self.filters, (3, 3), use_bias=False, name="Conv_1")(y)
        y = norm(scale_init=nn.initializers.constant(self.bn_init_scale), name="BatchNorm_1")(y)
        residual = x
        if x.shape != y.shape or self.strides != (1, 1):
            residual = nn.Conv(self.filters, (1, 1), self.strides, use_bias=False, name="Conv_proj")(x)
            residual = norm(name="BatchNorm_proj")(residual)
        return self.act(residual + y)


class BottleneckResNetBlock(nn.Module):
    """1x1 (f) -> 3x3 stride s (f) -> 1x1 (4f, BN scale init) ; + projected shortcut."""

    filters: int
    strides: tuple[int, int] = (1, 1)
    act: Activation = nn.relu
    bn_init_scale: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
        norm = batch_norm(use_running_average)
        y = nn.Conv(self.filters, (1, 1), use_bias=False, name="Conv_0")(x)
        y = self.act(norm(name="BatchNorm_0")(y))
        # The stride sits on the 3x3 conv ("v1.5"); SAME pads bottom/right for stride 2.
        y = nn.Conv(self.filters, (3, 3), self.strides, use_bias=False, name="Conv_1")(y)
        y = self.act(norm(name="BatchNorm_1")(y))
        y = nn.Conv(4 * self.filters, (1, 1), use_bias=False, name="Conv_2")(y)
        y = norm(scale_init=nn.initializers.constant(self.bn_init_scale), name="BatchNorm_2")(y)
        residual = x
        if x.shape != y.shape or self.strides != (1, 1):
            residual = nn.Conv(4 * self.filters, (1, 1), self.strides, use_bias=False, name="Conv_proj")(x)
            residual = norm(name="BatchNorm_proj")(residual)
        return self.act(residual + y)


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages, global mean, Dense_0."""

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    num_filters: int = 64
    num_classes: int = 1000
    act_name: str = "relu"
    bn_init_scale: float = 0.0

    @nn.compact
    def __call__(
        self, x: jax.Array, update_batch_norm: bool = True, use_running_average_bn: bool | None = None
    ) -> jax.Array:
        use_ra = (not update_batch_norm) if use_running_average_bn is None else use_running_average_bn
        act = ACTIVATIONS[self.act_name]
        x = nn.Conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False, name="Conv_init")(x)
        x = act(batch_norm(use_ra)(name="BatchNorm_init")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # pads with -inf
        index = 0
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                strides = (2, 2) if stage > 0 and block == 0 else (1, 1)
                x = BottleneckResNetBlock(
                    self.num_filters * 2**stage, strides, act, self.bn_init_scale,
                    name=f"BottleneckResNetBlock_{index}",
                )(x, use_ra)
                index += 1
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(), name="Dense_0")(x)


def resnet50(act_name: str = "relu", bn_init_scale: float = 0.0) -> ResNet:
    """ResNet-50 as in AlgoPerf's imagenet_resnet (and its activation / BN-init variants)."""
    if act_name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act_name!r}; use one of {', '.join(ACTIVATIONS)}")
    return ResNet(stage_sizes=(3, 4, 6, 3), act_name=act_name, bn_init_scale=bn_init_scale)
