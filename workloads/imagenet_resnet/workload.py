"""AlgoPerf's ``imagenet_resnet`` (ResNet-50 on ImageNet) and its three variants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax

from algoperf import spec

from . import input_pipeline, preprocessing
from .base import ImageClassifierWorkload
from .model import resnet50


class ImagenetWorkload(ImageClassifierWorkload):
    """ImageNet constants shared by the ResNet and ViT workloads (spec section 3.3)."""

    num_train_examples = 1_281_167
    num_validation_examples = 50_000
    num_test_examples = 10_000  # ImageNet-v2 matched-frequency
    train_mean = preprocessing.MEAN_RGB
    train_stddev = preprocessing.STDDEV_RGB
    center_crop_size = preprocessing.CENTER_CROP_SIZE
    resize_size = preprocessing.RESIZE_SIZE
    aspect_ratio_range = preprocessing.CROP_ASPECT_RANGE
    scale_ratio_range = preprocessing.CROP_AREA_RANGE
    init_shape = (224, 224, 3)
    # Train-stream augmentations beyond crop + flip (the ViT workloads turn both on).
    use_mixup = False
    use_randaugment = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Indexed sources per (data dir, split): building an index of 1.28M records takes a while.
        self._sources: dict[str, input_pipeline.Source] = {}

    @property
    def num_eval_train_examples(self) -> int:
        # The validation size rounded up to whole eval batches, as in AlgoPerf.
        return -(-self.num_validation_examples // self.eval_batch_size) * self.eval_batch_size

    def _build_input_queue(
        self,
        data_rng: spec.RandomState,
        split: str,
        data_dir: str | None,
        global_batch_size: int,
        cache: bool | None = None,
        repeat_final_dataset: bool | None = None,
        num_batches: int | None = None,
    ) -> Iterator[dict[str, jax.Array]]:
        del cache, repeat_final_dataset  # eval streams always repeat; nothing is cached in RAM
        return input_pipeline.build_input_queue(
            data_rng, split, data_dir, global_batch_size, use_mixup=self.use_mixup,
            use_randaugment=self.use_randaugment, num_batches=num_batches, image_size=self.init_shape[0], sources=self._sources,
        )


class ImagenetResNetWorkload(ImagenetWorkload):
    name = "imagenet_resnet"
    description = "ImageNet ResNet-50 (needs --data-dir with AlgoPerf's ImageNet), accuracy"
    act_name = "relu"
    bn_init_scale = 0.0

    validation_target_value = 0.77431  # 1 - 0.22569
    test_target_value = 0.6560  # 1 - 0.3440
    max_allowed_runtime_sec = 66_159
    eval_period_time_sec = 510
    step_hint = 195_999
    eval_batch_size = 1024

    def build_model(self):
        return resnet50(self.act_name, self.bn_init_scale)


class ImagenetResNetSiLUWorkload(ImagenetResNetWorkload):
    name = "imagenet_resnet_silu"
    description = "ImageNet ResNet-50 with SiLU activations (variant)"
    base_workload = "imagenet_resnet"
    act_name = "silu"
    validation_target_value = 0.75445
    test_target_value = 0.6323


class ImagenetResNetGELUWorkload(ImagenetResNetWorkload):
    name = "imagenet_resnet_gelu"
    description = "ImageNet ResNet-50 with GELU (tanh) activations (variant)"
    base_workload = "imagenet_resnet"
    act_name = "gelu"
    validation_target_value = 0.76765
    test_target_value = 0.6519


class ImagenetResNetLargeBNScaleWorkload(ImagenetResNetWorkload):
    name = "imagenet_resnet_large_bn_init"
    description = "ImageNet ResNet-50, last BN of each block initialised to 8 (variant)"
    base_workload = "imagenet_resnet"
    bn_init_scale = 8.0
    validation_target_value = 0.76526
    test_target_value = 0.6423
