"""The mnist1d workload: classify 40-sample 1-D digit signals, target validation accuracy."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf import losses, spec
from algoperf.array_workload import ArrayWorkload

from . import input_pipeline
from .model import Cnn1d


class Mnist1dWorkload(ArrayWorkload):
    name = "mnist1d"
    description = "MNIST-1D digit signals, 1-D CNN, accuracy"
    data_source = "generated"
    reference_workload = "mnist"
    activation = staticmethod(nn.relu)

    def __init__(self, size: float = 1.0, **kwargs: Any) -> None:
        """``size`` scales the CNN's width (1.0: 32 channels)."""
        super().__init__(**kwargs)
        self.model = Cnn1d(width=max(1, round(32 * size)), activation=self.activation)

    # --- targets and budget (see docs/targets.md for how they were set) -------------
    target_metric_name = "accuracy"
    validation_target_value = 0.9
    test_target_value = 0.9
    max_allowed_runtime_sec = 60.0
    eval_period_time_sec = 5.0
    step_hint = 2000
    eval_batch_size = 1000
    num_eval_train_examples = 1000
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY

    def load_split(self, split: str, data_dir: str | None) -> dict:
        return input_pipeline.load(data_dir)[split]

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == "output"

    def init_model_fn(self, rng, dropout_rate=None, aux_dropout_rate=None):
        del dropout_rate, aux_dropout_rate
        params = self.model.init(rng, jnp.zeros((1, 40, 1), jnp.float32))["params"]
        self._record_params(params)
        return params, None

    def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state, mode, rng, update_batch_norm, dropout_rate=None):
        del mode, rng, update_batch_norm, dropout_rate
        logits = self.model.apply({"params": params}, augmented_and_preprocessed_input_batch["inputs"])
        return logits, model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
        return losses.softmax_cross_entropy(label_batch, logits_batch, mask_batch, label_smoothing)

    def eval_batch_outputs(self, params, model_state, batch) -> dict[str, jax.Array]:
        logits, _ = self.model_fn(params, batch, model_state, spec.ForwardPassMode.EVAL, None, False)
        weights = batch["weights"]
        loss = self.loss_fn(batch["targets"], logits, weights)["summed"]
        correct = jnp.sum((jnp.argmax(logits, -1) == batch["targets"]) * weights)
        return {"loss": loss, "accuracy": correct, "num_valid": jnp.sum(weights)}


class Mnist1dGeluWorkload(Mnist1dWorkload):
    """Variant: GELU activations instead of ReLU."""

    name = "mnist1d_gelu"
    base_workload = "mnist1d"
    description = "MNIST-1D, 1-D CNN with GELU, accuracy"
    activation = staticmethod(nn.gelu)
