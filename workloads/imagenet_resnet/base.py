"""What AlgoPerf's image-classification workloads share: loss, eval loop, bookkeeping.

Used by ``cifar``, ``imagenet_resnet`` and ``imagenet_vit``. A subclass gives the model
(``build_model``), the input shape of ``init``, its data (``_build_input_queue``) and its
constants; evaluation follows AlgoPerf (spec section 0.3):

* ``ceil(num_examples / global_batch_size)`` batches per split from an iterator built once
  per split and kept in ``self._eval_iters`` (the eval-train stream goes on between evals,
  so every eval sees the next subset);
* per batch, with weights w (0 on padded rows):
  ``accuracy_sum = sum w * [argmax(logits) == label]`` and ``loss_sum = sum w * CE``;
* both sums are divided by the *nominal* ``num_examples`` of the split.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import optax

from algoperf import jax_sharding_utils, param_utils, spec
from algoperf.eval_loop import dispatch_then_fetch, summed


def softmax_cross_entropy(
    label_batch: jax.Array,
    logits_batch: jax.Array,
    mask_batch: jax.Array | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, jax.Array]:
    """AlgoPerf's image loss: summed (masked) cross-entropy against smoothed targets.

    Targets t = (1 - a) * onehot + a / K (optax.smooth_labels); per example
    ``-sum_k t_k log_softmax(logits)_k``. Integer labels have one dimension fewer than the
    logits; dense (e.g. mixup) targets have the logits' shape. Deciding by rank fixes the
    reference's G6 quirk (a 1-D integer batch of exactly K labels read as one-hot).
    Returns {'summed', 'n_valid_examples', 'per_example'}; nothing is averaged.
    """
    num_classes = logits_batch.shape[-1]
    if label_batch.ndim == logits_batch.ndim:
        targets = label_batch.astype(logits_batch.dtype)
    else:
        targets = jax.nn.one_hot(label_batch, num_classes, dtype=logits_batch.dtype)
    targets = optax.smooth_labels(targets, label_smoothing)
    per_example = -jnp.sum(targets * jax.nn.log_softmax(logits_batch, axis=-1), axis=-1)
    if mask_batch is not None:
        per_example = per_example * mask_batch
        n_valid = jnp.sum(mask_batch)
    else:
        n_valid = jnp.asarray(per_example.shape[0], per_example.dtype)
    return {"summed": jnp.sum(per_example), "n_valid_examples": n_valid, "per_example": per_example}


def batch_metric_sums(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> dict[str, jax.Array]:
    """What one eval batch adds: {'accuracy': weighted correct count, 'loss': weighted CE sum}."""
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return {
        "accuracy": jnp.sum(correct * weights),
        "loss": softmax_cross_entropy(labels, logits, weights)["summed"],
    }


class ImageClassifierWorkload(spec.Workload):
    """Softmax classifier over images, accuracy target, AlgoPerf's eval procedure."""

    data_source = "download"
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    target_metric_name = "accuracy"
    output_layer = "Dense_0"
    # Shape of one example for ``init`` (AlgoPerf inits on a batch of ones of this shape).
    init_shape: tuple[int, ...] = (224, 224, 3)
    # Whether the model keeps BatchNorm statistics (model_state = {'batch_stats': ...}).
    has_batch_norm = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model = None  # built lazily: importing or listing a workload allocates nothing
        self._dropout_rate = 0.0

    # --- model -------------------------------------------------------------------
    def build_model(self) -> Any:
        raise NotImplementedError

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self.build_model()
        return self._model

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == self.output_layer

    def _init_variables(self, rng: spec.RandomState) -> dict[str, Any]:
        # Flax does not update BN running stats during init, so init in "train" mode is harmless.
        return jax.jit(self.model.init)({"params": rng}, jnp.ones((1, *self.init_shape), jnp.float32))

    def init_model_fn(
        self,
        rng: spec.RandomState,
        dropout_rate: float | None = None,
        aux_dropout_rate: float | None = None,
    ) -> spec.ModelInitState:
        del aux_dropout_rate
        self._dropout_rate = 0.0 if dropout_rate is None else float(dropout_rate)
        variables = dict(self._init_variables(rng))
        params = variables.pop("params")
        # CIFAR's reference returns params as model_state (G5); we return the real batch_stats.
        model_state = variables if self.has_batch_norm else None
        self._param_shapes = param_utils.param_shapes(params)
        self._param_types = param_utils.param_types(params)
        return jax_sharding_utils.replicate(params), (
            jax_sharding_utils.replicate(model_state) if model_state is not None else None
        )

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
        """BatchNorm models (AlgoPerf JAX semantics, G4); ``mode`` and dropout are ignored.

        update_batch_norm=True: batch statistics, ``batch_stats`` updated and returned.
        update_batch_norm=False: running averages, state returned unchanged.
        ``use_running_average_bn`` overrides which statistics normalise.
        """
        del mode, rng, dropout_rate
        inputs = augmented_and_preprocessed_input_batch["inputs"]
        variables = {"params": params, **model_state}
        if update_batch_norm:
            logits, new_state = self.model.apply(
                variables, inputs, update_batch_norm=True, use_running_average_bn=use_running_average_bn,
                mutable=["batch_stats"],
            )
            return logits, new_state
        logits = self.model.apply(
            variables, inputs, update_batch_norm=False, use_running_average_bn=use_running_average_bn, mutable=False
        )
        return logits, model_state

    def loss_fn(
        self,
        label_batch: spec.Tensor,
        logits_batch: spec.Tensor,
        mask_batch: spec.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, spec.Tensor]:
        return softmax_cross_entropy(label_batch, logits_batch, mask_batch, label_smoothing)

    # --- evaluation --------------------------------------------------------------
    @functools.cached_property
    def _eval_step(self):
        def step(params, model_state, batch):
            logits, _ = self.model_fn(
                params, batch, model_state, spec.ForwardPassMode.EVAL, None, update_batch_norm=False
            )
            weights = batch.get("weights")
            if weights is None:
                weights = jnp.ones(logits.shape[:1], jnp.float32)
            return batch_metric_sums(logits, batch["targets"], weights)

        return jax.jit(step)

    def _eval_model_on_split(
        self,
        split: str,
        num_examples: int,
        global_batch_size: int,
        params: spec.ParameterContainer,
        model_state: spec.ModelAuxiliaryState,
        rng: spec.RandomState,
        data_dir: str | None,
        global_step: int = 0,
    ) -> dict[str, float]:
        del global_step
        num_devices = jax_sharding_utils.get_mesh().size  # the trial's devices, not every device
        if global_batch_size % num_devices:
            raise ValueError(
                f"eval batch size {global_batch_size} is not divisible by the {num_devices} devices; "
                "choose an eval batch size that is a multiple of the device count"
            )
        if split not in self._eval_iters:
            self._eval_iters[split] = self._build_input_queue(
                rng, split, data_dir, global_batch_size, cache=True, repeat_final_dataset=True
            )
        iterator: Iterator[dict[str, Any]] = self._eval_iters[split]
        num_batches = math.ceil(num_examples / global_batch_size)
        batches = (next(iterator) for _ in range(num_batches))
        totals = dispatch_then_fetch(lambda b: self._eval_step(params, model_state, b), batches)
        return {k: v / num_examples for k, v in summed(totals, ("accuracy", "loss")).items()}
