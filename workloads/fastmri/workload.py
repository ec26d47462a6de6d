"""fastmri: single-coil knee MRI reconstruction with a U-Net, target SSIM (AlgoPerf v0.6).

Batches: {'inputs', 'targets' [B, 320, 320], 'mean', 'std', 'volume_max' [B],
'weights' [B] (eval only)}. Loss: per-slice mean |pred - target| on the normalised scale.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils, param_utils, spec
from algoperf.array_workload import BatchQueue, MappedQueue
from algoperf.data.seeds import seed_from_rng
from algoperf.eval_loop import dispatch_then_fetch, summed

from . import input_pipeline, metrics
from .model import UNet, leaky_relu


class FastMriWorkload(spec.Workload):
    """U-Net (32 channels, 4 pools) on 4x-undersampled single-coil knee slices."""

    name = "fastmri"
    description = "fastMRI knee single-coil, U-Net 32ch/4 pools, SSIM"
    data_source = "download"

    num_channels = 32
    num_pool_layers = 4
    activation = staticmethod(leaky_relu)
    use_layer_norm = False

    target_metric_name = "ssim"
    loss_type = spec.LossType.MEAN_ABSOLUTE_ERROR
    validation_target_value = 0.723653
    test_target_value = 0.740633
    max_allowed_runtime_sec = 4_430.0
    eval_period_time_sec = 80.0
    step_hint = 18_094
    num_train_examples = 34_742
    num_validation_examples = 3_554
    num_test_examples = 3_581
    eval_batch_size = 256
    num_eval_train_examples = 3_584  # 3,554 rounded up to a multiple of 256
    default_dropout_rate = 0.0
    image_size = 320

    @functools.cached_property
    def model(self) -> nn.Module:
        return UNet(
            num_channels=self.num_channels,
            num_pool_layers=self.num_pool_layers,
            activation=self.activation,
            use_layer_norm=self.use_layer_norm,
        )

    # --- model ---------------------------------------------------------------------
    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == "Conv_0"

    def init_model_fn(self, rng, dropout_rate=None, aux_dropout_rate=None) -> spec.ModelInitState:
        del dropout_rate, aux_dropout_rate
        x = jnp.zeros((1, self.image_size, self.image_size), jnp.float32)
        params = param_utils.fast_init(self.model, rng, x)["params"]
        self._param_shapes = param_utils.param_shapes(params)
        self._param_types = param_utils.param_types(params)
        return jax_sharding_utils.replicate(params), None

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
        """Reconstruction [B, H, W]; channel dropout at ``dropout_rate`` in TRAIN mode."""
        del use_running_average_bn  # no batch norm in this model (AlgoPerf's argument, accepted)
        del update_batch_norm
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        train = mode == spec.ForwardPassMode.TRAIN
        out = self.model.apply(
            {"params": params},
            augmented_and_preprocessed_input_batch["inputs"],
            train=train,
            dropout_rate=rate,
            rngs={"dropout": rng} if train else None,
        )
        return out, model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0) -> dict[str, spec.Tensor]:
        """Per example mean |pred - target| over the image; summed = sum of mask * per example."""
        del label_smoothing
        per_example = jnp.mean(jnp.abs(logits_batch - label_batch), axis=tuple(range(1, label_batch.ndim)))
        if mask_batch is None:
            mask_batch = jnp.ones_like(per_example)
        per_example = per_example * mask_batch
        return {"summed": jnp.sum(per_example), "n_valid_examples": jnp.sum(mask_batch), "per_example": per_example}

    # --- data ----------------------------------------------------------------------
    def _index(self, split: str, data_dir: str | None) -> list[tuple[str, int]]:
        """(file, slice) of every example of ``split`` (eval_train: the train slices), cached."""
        cache = self.__dict__.setdefault("_indices", {})
        key = "train" if split == "eval_train" else split
        if key not in cache:
            cache[key] = input_pipeline.slice_index(input_pipeline.split_files(data_dir, key))
        return cache[key]

    def _host_batches(self, data_rng, split, data_dir, global_batch_size, repeat) -> Iterator[dict[str, np.ndarray]]:
        index = self._index(split, data_dir)  # raises DataNotFoundError now, not at next()
        seed = seed_from_rng(data_rng) if data_rng is not None else 0
        if split == "train":
            return input_pipeline.train_batches(index, global_batch_size, seed)
        if split == "eval_train":
            # A fixed random subset of the training slices with per-slice masks, as the
            # reference's shuffled, cached take() of eval_train.
            chosen = np.random.default_rng(seed).permutation(len(index))[: self.num_eval_train_examples]
            subset = [index[i] for i in sorted(chosen)]
            return input_pipeline.batches(subset, global_batch_size, seed, repeat, drop_remainder=False, shuffle=False)
        return input_pipeline.batches(index, global_batch_size, None, repeat, drop_remainder=False)

    def _build_input_queue(
        self, data_rng, split, data_dir, global_batch_size, cache=None, repeat_final_dataset=None, num_batches=None
    ) -> Iterator[dict[str, Any]]:
        batches = self._host_batches(data_rng, split, data_dir, global_batch_size, bool(repeat_final_dataset))
        if split == "train":  # train batches are full: no weights (MappedQueue keeps the stream's seek)
            batches = MappedQueue(batches, lambda batch: {k: v for k, v in batch.items() if k != "weights"})
        return BatchQueue(batches, num_batches)

    # --- evaluation ----------------------------------------------------------------
    def eval_batch_sums(self, params: spec.ParameterContainer, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Sums over a padded batch: weighted SSIM and L1 (padded rows have weight 0)."""
        pred, _ = self.model_fn(params, batch, None, spec.ForwardPassMode.EVAL, None, False)
        weights = batch["weights"]
        ssim = metrics.ssim(pred, batch["targets"], batch["mean"], batch["std"], batch["volume_max"])
        loss = self.loss_fn(batch["targets"], pred, weights)["summed"]
        return {"ssim": jnp.sum(ssim * weights), "loss": loss}

    @functools.cached_property
    def _eval_step(self):
        return jax.jit(self.eval_batch_sums)

    def _eval_model_on_split(
        self, split, num_examples, global_batch_size, params, model_state, rng, data_dir, global_step=0
    ) -> dict[str, float]:
        """{'ssim', 'loss'}: weighted sums over ceil(num_examples / batch) batches / num_examples.

        Each split's batches are prepared once and kept on the host (the reference caches
        them too): eval_train's subset is drawn from a fixed seed at the first evaluation.
        """
        del model_state, global_step, rng
        num_batches = math.ceil(num_examples / global_batch_size)
        cache = self.__dict__.setdefault("_eval_batches", {})
        key = (split, global_batch_size, num_batches)
        if key not in cache:
            host = self._host_batches(jax.random.PRNGKey(0), split, data_dir, global_batch_size, repeat=True)
            cache[key] = list(itertools.islice(host, num_batches))
        sharding = jax_sharding_utils.get_batch_dim_sharding()
        sums = dispatch_then_fetch(lambda b: self._eval_step(params, jax.device_put(b, sharding)), cache[key])
        return {k: v / num_examples for k, v in summed(sums, ("ssim", "loss")).items()}


class FastMriModelSizeWorkload(FastMriWorkload):
    """Variant: 64 channels, 3 pool layers."""

    name = "fastmri_model_size"
    base_workload = "fastmri"
    description = "fastMRI, U-Net 64ch/3 pools, SSIM"
    num_channels = 64
    num_pool_layers = 3
    validation_target_value = 0.723559
    test_target_value = 0.740726


class FastMriTanhWorkload(FastMriWorkload):
    """Variant: tanh activations instead of LeakyReLU(0.2)."""

    name = "fastmri_tanh"
    base_workload = "fastmri"
    description = "fastMRI, U-Net with tanh, SSIM"
    activation = staticmethod(jnp.tanh)
    validation_target_value = 0.717840
    test_target_value = 0.734505


class FastMriLayerNormWorkload(FastMriWorkload):
    """Variant: LayerNorm over (H, W, C) in conv blocks (transposed convs keep instance norm)."""

    name = "fastmri_layernorm"
    base_workload = "fastmri"
    description = "fastMRI, U-Net with LayerNorm, SSIM"
    use_layer_norm = True
    validation_target_value = 0.723284
    test_target_value = 0.739996
