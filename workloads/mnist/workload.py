"""The mnist workload: AlgoPerf's MLP on MNIST, target validation accuracy 0.97 in 60 s."""

from __future__ import annotations

from typing import Any

from algoperf.array_workload import ClassifierWorkload

from . import input_pipeline
from .model import Mlp


class MnistWorkload(ClassifierWorkload):
    name = "mnist"
    description = "MNIST from IDX files (needs --data-dir), AlgoPerf's MLP, accuracy"
    data_source = "download"
    input_shape = (28, 28, 1)
    output_layer = "Dense_1"

    # AlgoPerf's constants for its MNIST development workload.
    validation_target_value = 0.97
    test_target_value = 0.97
    max_allowed_runtime_sec = 60.0
    eval_period_time_sec = 10.0
    step_hint = 7813
    eval_batch_size = 10_000
    num_eval_train_examples = 10_000
    train_mean = input_pipeline.MEAN
    train_stddev = input_pipeline.STDDEV

    def __init__(self, size: float = 1.0, **kwargs: Any) -> None:
        """``size`` scales the hidden layer (1.0: 128 units, AlgoPerf's model)."""
        super().__init__(**kwargs)
        self.model = Mlp(hidden=max(1, round(128 * size)))

    def load_split(self, split: str, data_dir: str | None) -> dict:
        return input_pipeline.load(data_dir)[split]
