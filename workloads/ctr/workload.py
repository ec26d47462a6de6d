"""The ctr workload: click-through-rate prediction with DLRM-small, target validation log-loss."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from algoperf import jax_sharding_utils, losses, spec
from algoperf.array_workload import ArrayWorkload

from . import input_pipeline
from .model import DlrmSmall


class CtrWorkload(ArrayWorkload):
    name = "ctr"
    description = (
        "Criteo-like click logs (13 dense + 26 hashed categorical) from a fixed teacher, "
        "DLRM-small, log-loss"
    )
    data_source = "generated"
    # Batch size (algoperf.submission.batch_size): AlgoPerf's baselines use 262_144 on criteo1tb; 256 set the targets.
    reference_workload = "criteo1tb"
    reference_batch_size = 262_144
    default_batch_size = 256
    use_layer_norm = False

    def __init__(self, size: float = 1.0, **kwargs: Any) -> None:
        """``size`` scales the MLP widths and the embedding width (1.0: 16-wide embeddings)."""
        super().__init__(**kwargs)
        embed_dim = max(2, round(16 * size))
        self.model = DlrmSmall(
            vocab_sizes=input_pipeline.VOCAB_SIZES,
            embed_dim=embed_dim,
            bottom_dims=(max(1, round(64 * size)), max(1, round(32 * size)), embed_dim),
            top_dims=tuple(max(1, round(w * size)) for w in (128, 128, 64, 32)),
            use_layer_norm=self.use_layer_norm,
        )

    # --- targets and budget: set by the procedure in TARGETS.md ------------------------
    target_metric_name = "loss"
    validation_target_value = 0.4792
    test_target_value = 0.4774
    max_allowed_runtime_sec = 26.0
    eval_period_time_sec = 5.0
    step_hint = 5193
    eval_batch_size = 10_000
    num_eval_train_examples = 50_000
    loss_type = spec.LossType.SIGMOID_CROSS_ENTROPY

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
        dummy = jnp.zeros((2, input_pipeline.NUM_DENSE + input_pipeline.NUM_CATEGORICAL))
        # Jitted: one compilation is faster than running the initialisers op by op.
        init = jax.jit(lambda rng: self.model.init({"params": rng}, dummy, train=False))
        params = init(rng)["params"]
        self._record_params(params)
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
        """Click logits [B] (dropout before the output layer; default rate 0)."""
        del use_running_average_bn  # no batch norm in this model (AlgoPerf's argument, accepted)
        del update_batch_norm
        train = mode == spec.ForwardPassMode.TRAIN
        rngs = {"dropout": rng} if train and rng is not None else None
        logits = self.model.apply(
            {"params": params},
            augmented_and_preprocessed_input_batch["inputs"],
            train=train,
            dropout_rate=0.0 if dropout_rate is None else dropout_rate,
            rngs=rngs,
        )
        return logits[:, 0], model_state

    def loss_fn(
        self,
        label_batch: spec.Tensor,
        logits_batch: spec.Tensor,
        mask_batch: spec.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, spec.Tensor]:
        """Per-example sigmoid cross-entropy ``-[y log s(z) + (1 - y) log s(-z)]``."""
        return losses.sigmoid_cross_entropy(
            label_batch.reshape(-1), logits_batch.reshape(-1), mask_batch, label_smoothing
        )

    def eval_batch_outputs(
        self, params: spec.ParameterContainer, model_state: Any, batch: dict[str, jax.Array]
    ) -> dict[str, jax.Array]:
        logits, _ = self.model_fn(
            params, batch, model_state, spec.ForwardPassMode.EVAL, None, False
        )
        weights = batch["weights"]
        loss = self.loss_fn(batch["targets"], logits, weights)["summed"]
        return {"loss": loss, "num_valid": jnp.sum(weights)}


class CtrLayerNormWorkload(CtrWorkload):
    """Variant: LayerNorm after every MLP activation and on the embeddings.

    Its own targets, budget and step hint come from `algoperf targets` on it (TARGETS.md).
    """

    name = "ctr_layernorm"
    base_workload = "ctr"
    description = "Criteo-like click logs from a fixed teacher, DLRM-small with LayerNorm, log-loss"
    use_layer_norm = True
    validation_target_value = 0.4623
    test_target_value = 0.4619
    step_hint = 6629
    max_allowed_runtime_sec = 46.0
