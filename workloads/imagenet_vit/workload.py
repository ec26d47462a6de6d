"""AlgoPerf's ``imagenet_vit`` (ViT-S/16 on ImageNet) and its glu, post_ln and map variants."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from algoperf import spec
from algoperf.workloads.imagenet_resnet.workload import ImagenetWorkload

from .model import vit


class ImagenetVitWorkload(ImagenetWorkload):
    name = "imagenet_vit"
    description = "ImageNet ViT-S/16 (needs --data-dir with AlgoPerf's ImageNet), accuracy"
    output_layer = "head"
    has_batch_norm = False
    # AlgoPerf's ViT train stream: RandAugment (N=2, M=10) after crop + flip, then mixup (alpha 0.2).
    use_randaugment = True
    use_mixup = True
    use_glu = False
    use_post_layer_norm = False
    use_map = False

    validation_target_value = 0.77309  # 1 - 0.22691
    test_target_value = 0.6519  # 1 - 0.3481
    max_allowed_runtime_sec = 69_768
    eval_period_time_sec = 420
    step_hint = 167_999
    eval_batch_size = 2048

    def build_model(self):
        return vit("S/16", use_glu=self.use_glu, use_post_layer_norm=self.use_post_layer_norm, use_map=self.use_map)

    def _init_variables(self, rng: spec.RandomState) -> dict[str, Any]:
        # The reference splits the key first for ViT (not for ResNet), G12.
        params_rng, _ = jax.random.split(rng)
        return jax.jit(self.model.init)({"params": params_rng}, jnp.ones((1, *self.init_shape), jnp.float32))

    def model_fn(
        self,
        params: spec.ParameterContainer,
        augmented_and_preprocessed_input_batch: dict[str, spec.Tensor],
        model_state: spec.ModelAuxiliaryState,
        mode: spec.ForwardPassMode,
        rng: spec.RandomState,
        update_batch_norm: bool,
        dropout_rate: float | None = None,
        use_running_average_bn: bool | None = None,
    ) -> tuple[spec.Tensor, spec.ModelAuxiliaryState]:
        """Dropout (default: the rate given to init_model_fn, else 0) only in TRAIN mode."""
        del update_batch_norm, use_running_average_bn
        rate = self._dropout_rate if dropout_rate is None else dropout_rate
        train = mode == spec.ForwardPassMode.TRAIN
        rngs = {"dropout": rng} if train and rate > 0 else {}
        logits = self.model.apply(
            {"params": params}, augmented_and_preprocessed_input_batch["inputs"], train=train,
            dropout_rate=rate, rngs=rngs,
        )
        return logits, model_state


class ImagenetVitGluWorkload(ImagenetVitWorkload):
    name = "imagenet_vit_glu"
    description = "ImageNet ViT-S/16 with GLU MLP blocks (variant)"
    base_workload = "imagenet_vit"
    use_glu = True
    validation_target_value = 0.75738
    test_target_value = 0.6359


class ImagenetVitPostLNWorkload(ImagenetVitWorkload):
    name = "imagenet_vit_post_ln"
    description = "ImageNet ViT-S/16 with post-LayerNorm blocks (variant)"
    base_workload = "imagenet_vit"
    use_post_layer_norm = True
    validation_target_value = 0.75312
    test_target_value = 0.6286


class ImagenetVitMapWorkload(ImagenetVitWorkload):
    name = "imagenet_vit_map"
    description = "ImageNet ViT-S/16 with a multihead-attention-pooling head (variant)"
    base_workload = "imagenet_vit"
    use_map = True
    validation_target_value = 0.77113
    test_target_value = 0.6523
