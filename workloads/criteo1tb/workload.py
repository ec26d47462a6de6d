"""criteo1tb: click-through prediction on the Criteo 1TB logs with DLRM-small (AlgoPerf v0.6).

Constants are AlgoPerf's JAX ones (eval batch size 131,072). Target metric: validation
log-loss (mean sigmoid cross-entropy over the split), lower is better.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils, losses, param_utils, spec
from algoperf.array_workload import BatchQueue, MappedQueue
from algoperf.data.seeds import seed_from_rng
from algoperf.eval_loop import dispatch_then_fetch

from . import input_pipeline
from .model import NUM_DENSE, NUM_SPARSE, DLRMResNet, DlrmSmall


class Criteo1TbDlrmSmallWorkload(spec.Workload):
    """DLRM-small on Criteo 1TB; batches {'inputs' [B, 39], 'targets' [B], 'weights' [B]}."""

    name = "criteo1tb"
    description = "Criteo 1TB click logs, DLRM-small (4.2M x 128 shared table), log-loss"
    data_source = "download"

    vocab_size = 4_194_304
    embed_dim = 128
    # None: the reference's widths (tests shrink them).
    mlp_bottom_dims: tuple[int, ...] | None = None
    mlp_top_dims: tuple[int, ...] | None = None
    use_layer_norm = False
    embedding_init_scale: float | None = None  # None: 1 / sqrt(vocab_size)
    use_resnet = False

    target_metric_name = "loss"
    loss_type = spec.LossType.SIGMOID_CROSS_ENTROPY
    validation_target_value = 0.123735
    test_target_value = 0.126041
    max_allowed_runtime_sec = 7_703.0
    eval_period_time_sec = 120.0
    step_hint = 10_666
    num_train_examples = 4_195_197_692
    num_validation_examples = 83_274_637
    num_test_examples = 95_000_000
    eval_batch_size = 131_072
    # num_validation_examples rounded up to a multiple of eval_batch_size (636 batches).
    num_eval_train_examples = math.ceil(83_274_637 / 131_072) * 131_072
    default_dropout_rate = 0.0

    @functools.cached_property
    def model(self) -> nn.Module:
        dims = {k: v for k, v in (("mlp_bottom_dims", self.mlp_bottom_dims), ("mlp_top_dims", self.mlp_top_dims)) if v}
        if self.use_resnet:
            return DLRMResNet(vocab_size=self.vocab_size, embed_dim=self.embed_dim, **dims)
        return DlrmSmall(
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            use_layer_norm=self.use_layer_norm,
            embedding_init_scale=self.embedding_init_scale,
            **dims,
        )

    # --- model ---------------------------------------------------------------------
    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == "Dense_7"

    def init_model_fn(self, rng, dropout_rate=None, aux_dropout_rate=None) -> spec.ModelInitState:
        """Params (no model state), replicated over the trial's devices.

        The 4,194,304 x 128 table (2 GiB) is replicated like every parameter, as in the
        reference (README: "Embedding table: replicated").
        """
        del dropout_rate, aux_dropout_rate
        x = jnp.zeros((2, NUM_DENSE + NUM_SPARSE), jnp.float32)
        params = param_utils.fast_init(self.model, rng, x)["params"]
        self._param_shapes = param_utils.param_shapes(params)
        types = param_utils.param_types(params)
        types["embedding_table"] = spec.ParameterType.EMBEDDING
        self._param_types = types
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
        """Logits [B, 1]; dropout (before the output layer) only in TRAIN mode."""
        del use_running_average_bn  # no batch norm in this model (AlgoPerf's argument, accepted)
        del update_batch_norm
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        train = mode == spec.ForwardPassMode.TRAIN
        logits = self.model.apply(
            {"params": params},
            augmented_and_preprocessed_input_batch["inputs"],
            train=train,
            dropout_rate=rate,
            rngs={"dropout": rng} if train else None,
        )
        return logits, model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0) -> dict[str, spec.Tensor]:
        """Per example -[y log s(z) + (1 - y) log s(-z)] on [B]; n_valid = mask sum (or B)."""
        batch_size = label_batch.shape[0]
        return losses.sigmoid_cross_entropy(
            jnp.reshape(label_batch, (batch_size,)),
            jnp.reshape(logits_batch, (batch_size,)),
            mask_batch,
            label_smoothing,
        )

    # --- data ----------------------------------------------------------------------
    def _build_input_queue(
        self,
        data_rng,
        split,
        data_dir,
        global_batch_size,
        cache=None,
        repeat_final_dataset=None,
        num_batches=None,
    ) -> Iterator[dict[str, Any]]:
        files = input_pipeline.split_files(data_dir, split)  # raises DataNotFoundError now
        train_like = split in ("train", "eval_train")
        batches = input_pipeline.batches(
            files,
            global_batch_size,
            shuffle_seed=seed_from_rng(data_rng) if train_like else None,
            repeat=split == "train" or bool(repeat_final_dataset),
            drop_remainder=split == "train",
        )
        if split == "train":  # train batches are full: no weights (MappedQueue keeps the seek)
            batches = MappedQueue(batches, lambda batch: {k: v for k, v in batch.items() if k != "weights"})
        return BatchQueue(batches, num_batches)

    # --- evaluation ----------------------------------------------------------------
    @functools.cached_property
    def _eval_step(self):
        def step(params, batch):
            logits, _ = self.model_fn(params, batch, None, spec.ForwardPassMode.EVAL, None, False)
            return self.loss_fn(batch["targets"], logits, batch["weights"])["summed"]

        return jax.jit(step)

    def _eval_model_on_split(
        self, split, num_examples, global_batch_size, params, model_state, rng, data_dir, global_step=0
    ) -> dict[str, float]:
        """{'loss': sum of per-example log-losses (float64 on the host) / num_examples}.

        eval_train keeps one iterator for the run (each evaluation reads the next chunk of
        the shuffled train files, as the reference's re-shuffled eval_train does);
        validation and test are read whole, in order, at every evaluation.
        """
        del model_state, global_step
        num_batches = math.ceil(num_examples / global_batch_size)
        if split == "eval_train":
            if split not in self._eval_iters:
                self._eval_iters[split] = self._build_input_queue(
                    rng, split, data_dir, global_batch_size, repeat_final_dataset=True
                )
            it = self._eval_iters[split]
        else:
            it = self._build_input_queue(rng, split, data_dir, global_batch_size, num_batches=num_batches)
        batches = (batch for _, batch in zip(range(num_batches), it, strict=False))
        losses = dispatch_then_fetch(lambda b: self._eval_step(params, b), batches)
        return {"loss": float(np.sum(np.asarray(losses, np.float64))) / num_examples}


class Criteo1TbDlrmSmallLayerNormWorkload(Criteo1TbDlrmSmallWorkload):
    """Variant: a LayerNorm after every hidden ReLU and over the embeddings."""

    name = "criteo1tb_layernorm"
    base_workload = "criteo1tb"
    description = "Criteo 1TB, DLRM-small with LayerNorm, log-loss"
    use_layer_norm = True
    validation_target_value = 0.123757
    test_target_value = 0.126152


class Criteo1TbDlrmSmallResNetWorkload(Criteo1TbDlrmSmallWorkload):
    """Variant: DLRM-ResNet (residual 256-wide MLPs, no dot interaction)."""

    name = "criteo1tb_resnet"
    base_workload = "criteo1tb"
    description = "Criteo 1TB, DLRM-ResNet, log-loss"
    use_resnet = True
    validation_target_value = 0.12415
    test_target_value = 0.12648


class Criteo1TbDlrmSmallEmbedInitWorkload(Criteo1TbDlrmSmallWorkload):
    """Variant: embedding table initialised U[0, 1) (scale 1 instead of 1/2048)."""

    name = "criteo1tb_embed_init"
    base_workload = "criteo1tb"
    description = "Criteo 1TB, DLRM-small with U[0,1) embedding init, log-loss"
    embedding_init_scale = 1.0
    validation_target_value = 0.129657
    test_target_value = 0.131967  # marked TODO in the reference code
