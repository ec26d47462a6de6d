"""AlgoPerf's ``cifar`` development workload: ResNet-18 on CIFAR-10, accuracy > 0.85."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax

from algoperf import spec
from algoperf.workloads.imagenet_resnet.base import ImageClassifierWorkload

from . import input_pipeline
from .model import ResNet18


class CifarWorkload(ImageClassifierWorkload):
    name = "cifar"
    description = "CIFAR-10 ResNet-18 (needs --data-dir with cifar-10-batches-py), accuracy"
    reference_workload = None
    init_shape = (32, 32, 3)

    validation_target_value = 0.85
    test_target_value = 0.85
    max_allowed_runtime_sec = 3600
    eval_period_time_sec = 600
    step_hint = 4883
    eval_batch_size = 1024
    num_train_examples = 45_000
    num_validation_examples = 5_000
    num_test_examples = 10_000
    train_mean = input_pipeline.MEAN
    train_stddev = input_pipeline.STDDEV

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._splits: dict[str, input_pipeline.Split] | None = None

    @property
    def num_eval_train_examples(self) -> int:
        # The validation size rounded up to whole eval batches (5,120), as in AlgoPerf.
        return -(-self.num_validation_examples // self.eval_batch_size) * self.eval_batch_size

    def build_model(self):
        return ResNet18()

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
        del cache, repeat_final_dataset  # in memory; eval streams always repeat
        if self._splits is None:  # read now, not at the first next(): loading is setup
            self._splits = input_pipeline.load(data_dir)
        return input_pipeline.build_input_queue(self._splits, data_rng, split, global_batch_size, num_batches)
