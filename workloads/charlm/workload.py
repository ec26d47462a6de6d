"""The charlm workload: next-byte prediction on CPython's documentation, target perplexity.

Loss: token-level softmax cross-entropy (nats per byte). Metric: perplexity
ppl = exp(sum of token NLL / number of tokens) over a split, lower is better.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils, spec
from algoperf.array_workload import ArrayWorkload
from algoperf.losses import token_cross_entropy

from . import input_pipeline
from .model import CharTransformer


class CharlmWorkload(ArrayWorkload):
    name = "charlm"
    description = "CPython pydoc text as bytes, pre-LN decoder-only Transformer, perplexity"
    data_source = "real"
    # Batch size (algoperf.submission.batch_size): AlgoPerf's baselines use 64 on finewebedu_lm; 64 set the targets.
    reference_workload = "finewebedu_lm"
    reference_batch_size = 64
    default_batch_size = 64
    pre_ln = True
    activation = staticmethod(nn.gelu)

    def __init__(self, size: float = 1.0, **kwargs: Any) -> None:
        """``size`` scales the width linearly (1.0: d_model 64) and the depth by sqrt(size)
        (1.0: 2 layers); heads stay 4 and the MLP is 4 x d_model wide."""
        super().__init__(**kwargs)
        dim = max(16, 16 * round(4 * size))
        self.model = CharTransformer(
            vocab_size=input_pipeline.VOCAB_SIZE,
            dim=dim,
            num_heads=4,
            num_layers=max(1, round(2 * math.sqrt(size))),
            mlp_dim=4 * dim,
            max_len=input_pipeline.SEQ_LEN,
            activation=self.activation,
            pre_ln=self.pre_ln,
        )

    # --- targets and budget (see TARGETS.md for how they were set) ------------------
    target_metric_name = "ppl"
    validation_target_value = 4.387
    test_target_value = 4.12
    max_allowed_runtime_sec = 123.0
    eval_period_time_sec = 5.0
    step_hint = 891
    eval_batch_size = 256
    num_eval_train_examples = 1024
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    dropout_rate = 0.0  # default when model_fn gets dropout_rate=None

    def load_split(self, split: str, data_dir: str | None) -> dict[str, np.ndarray]:
        del data_dir  # the text ships with CPython
        return input_pipeline.load()[split]

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == "output"

    def init_model_fn(
        self,
        rng: spec.RandomState,
        dropout_rate: float | None = None,
        aux_dropout_rate: float | None = None,
    ) -> spec.ModelInitState:
        del dropout_rate, aux_dropout_rate  # the rate is a model_fn argument
        dummy = jnp.zeros((1, input_pipeline.SEQ_LEN), jnp.int32)
        params = jax.jit(self.model.init)(rng, dummy)["params"]  # jit: faster than eager
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
        del use_running_average_bn  # no batch norm in this model (AlgoPerf's argument, accepted)
        del update_batch_norm
        rate = self.dropout_rate if dropout_rate is None else dropout_rate
        train = mode == spec.ForwardPassMode.TRAIN
        logits = self.model.apply(
            {"params": params},
            augmented_and_preprocessed_input_batch["inputs"],
            rate if train else 0.0,
            rng if train else None,
        )
        return logits, model_state

    def loss_fn(
        self,
        label_batch: spec.Tensor,
        logits_batch: spec.Tensor,
        mask_batch: spec.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, spec.Tensor]:
        return token_cross_entropy(label_batch, logits_batch, mask_batch, label_smoothing)

    def eval_batch_outputs(
        self, params: spec.ParameterContainer, model_state: Any, batch: dict[str, jax.Array]
    ) -> dict[str, jax.Array]:
        logits, _ = self.model_fn(
            params, batch, model_state, spec.ForwardPassMode.EVAL, None, False
        )
        loss = self.loss_fn(batch["targets"], logits, batch["weights"])
        return {"loss": loss["summed"], "num_tokens": loss["n_valid_examples"]}

    def reduce_eval_outputs(self, outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """loss = mean token NLL (nats); ppl = exp(loss)."""
        total = float(np.sum([o["loss"] for o in outputs], dtype=np.float64))
        tokens = float(np.sum([o["num_tokens"] for o in outputs], dtype=np.float64))
        loss = total / tokens
        return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}  # a diverged model: a huge perplexity, not OverflowError


class CharlmPostLnWorkload(CharlmWorkload):
    """Variant: LayerNorm after each residual add (post-LN), no final LayerNorm."""

    name = "charlm_post_ln"
    base_workload = "charlm"
    description = "CPython pydoc text as bytes, post-LN decoder-only Transformer, perplexity"
    pre_ln = False
    # Its own targets, budget and step hint, from `algoperf targets` on the variant (TARGETS.md).
    validation_target_value = 4.47
    test_target_value = 4.168
    step_hint = 1131
    max_allowed_runtime_sec = 144.0
