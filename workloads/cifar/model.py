"""AlgoPerf's CIFAR-10 ResNet-18: 3x3 stem, no max-pool, 4 stages of 2 basic blocks.

11,173,962 parameters (62 tensors) and 9,600 batch-norm running statistics. The basic
block is the ImageNet package's ``ResNetBlock`` (as in the reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf.workloads.imagenet_resnet.model import ResNetBlock, batch_norm


class ResNet18(nn.Module):
    """Stem 3x3/1 (pad 1) -> BN -> ReLU -> stages (64, 128, 256, 512) -> 4x4 avg pool -> Dense_0."""

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    num_filters: int = 64
    num_classes: int = 10

    @nn.compact
    def __call__(
        self, x: jax.Array, update_batch_norm: bool = True, use_running_average_bn: bool | None = None
    ) -> jax.Array:
        use_ra = (not update_batch_norm) if use_running_average_bn is None else use_running_average_bn
        x = nn.Conv(self.num_filters, (3, 3), (1, 1), padding=[(1, 1), (1, 1)], use_bias=False, name="Conv_init")(x)
        x = nn.relu(batch_norm(use_ra)(name="BatchNorm_init")(x))
        index = 0
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                strides = (2, 2) if stage > 0 and block == 0 else (1, 1)
                x = ResNetBlock(self.num_filters * 2**stage, strides, nn.relu, 0.0, name=f"ResNetBlock_{index}")(x, use_ra)
                index += 1
        # 4x4 map at 32x32 input: the pool leaves 1x1 and the mean is a no-op, as in the reference.
        x = nn.avg_pool(x, (4, 4), strides=(4, 4), padding="VALID")
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(), name="Dense_0")(x)
