"""The mri workload: reconstruct phantom images from 4x-undersampled k-space, target SSIM."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from algoperf import spec
from algoperf.array_workload import ArrayWorkload
from algoperf.param_utils import fast_init

from . import input_pipeline, metrics
from .model import UNet, leaky_relu

BASE_CHANNELS = 12



class MriWorkload(ArrayWorkload):
    """fastMRI's small twin: U-Net on zero-filled 4x-undersampled phantom k-space, L1 loss."""

    name = "mri"
    description = "Phantom MRI 4x-undersampled k-space (32x32), U-Net, SSIM"
    data_source = "generated"
    # Batch size (algoperf.submission.batch_size): AlgoPerf's baselines use 32 on fastmri; 16 set the targets.
    reference_workload = "fastmri"
    reference_batch_size = 32
    default_batch_size = 16
    activation = staticmethod(leaky_relu)
    default_dropout_rate = 0.0

    def __init__(self, size: float = 1.0, **kwargs: Any) -> None:
        """``size`` scales the U-Net's width (1.0: 12 channels in the first stage)."""
        super().__init__(**kwargs)
        self.model = UNet(channels=max(1, round(BASE_CHANNELS * size)), activation=self.activation)

    # --- targets and budget (see TARGETS.md for how they were set) -------------------
    target_metric_name = "ssim"
    validation_target_value = 0.8997
    test_target_value = 0.8984
    max_allowed_runtime_sec = 43.0
    eval_period_time_sec = 5.0
    step_hint = 750
    eval_batch_size = 256
    num_eval_train_examples = 512
    loss_type = spec.LossType.MEAN_ABSOLUTE_ERROR

    def load_split(self, split: str, data_dir: str | None) -> dict:
        return input_pipeline.load(data_dir)[split]

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == "output"

    def init_model_fn(
        self,
        rng: spec.RandomState,
        dropout_rate: float | None = None,
        aux_dropout_rate: float | None = None,
    ) -> spec.ModelInitState:
        del dropout_rate, aux_dropout_rate
        size = input_pipeline.IMAGE_SIZE
        params = fast_init(self.model, rng, jnp.zeros((1, size, size), jnp.float32))["params"]
        self._record_params(params)
        return params, None

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
        """Reconstructions [B, H, W] on the inputs' normalised scale; no model state.

        Channel dropout at ``dropout_rate`` (a float or a traced scalar) in TRAIN mode only.
        """
        del use_running_average_bn  # no batch norm in this model (AlgoPerf's argument, accepted)
        del update_batch_norm
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        train = mode == spec.ForwardPassMode.TRAIN
        outputs = self.model.apply(
            {"params": params},
            augmented_and_preprocessed_input_batch["inputs"],
            dropout_rate=rate,
            train=train,
            rngs={"dropout": rng} if train and rng is not None else None,
        )
        return outputs, model_state

    def loss_fn(
        self,
        label_batch: spec.Tensor,
        logits_batch: spec.Tensor,
        mask_batch: spec.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, spec.Tensor]:
        """Per-example mean |prediction - target| over the image (fastMRI's L1 loss)."""
        del label_smoothing
        per_example = jnp.mean(jnp.abs(logits_batch - label_batch), axis=(1, 2))
        if mask_batch is None:
            mask_batch = jnp.ones_like(per_example)
        per_example = per_example * mask_batch
        return {
            "summed": jnp.sum(per_example),
            "n_valid_examples": jnp.sum(mask_batch),
            "per_example": per_example,
        }

    def eval_batch_outputs(self, params, model_state, batch) -> dict[str, jax.Array]:
        """Summed L1 loss and summed SSIM (on the denormalised images) over real rows."""
        outputs, _ = self.model_fn(
            params, batch, model_state, spec.ForwardPassMode.EVAL, None, False
        )
        weights = batch["weights"]
        loss = self.loss_fn(batch["targets"], outputs, weights)["summed"]
        mean = batch["mean"][:, None, None]
        std = batch["std"][:, None, None]
        ssim = metrics.ssim(
            outputs * std + mean, batch["targets"] * std + mean, batch["volume_max"]
        )
        return {"loss": loss, "ssim": jnp.sum(ssim * weights), "num_valid": jnp.sum(weights)}


class MriTanhWorkload(MriWorkload):
    """Variant: tanh activations instead of LeakyReLU(0.2), as AlgoPerf's fastmri_tanh."""

    name = "mri_tanh"
    base_workload = "mri"
    description = "Phantom MRI 4x-undersampled k-space (32x32), U-Net with tanh, SSIM"
    activation = staticmethod(jnp.tanh)
    validation_target_value = 0.831
    test_target_value = 0.8268
    step_hint = 855
    max_allowed_runtime_sec = 46.0
