"""A decoder-only LM workload after AlgoPerf's upstream finewebedu_lm; metric perplexity.

Targets and budgets are the upstream ones (validation ppl 22.432, no test split) and are
PROVISIONAL here: our data are whatever corpus ``algoperf data prepare lm`` was given, so
reset them with ``algoperf targets`` on real hardware and data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils, param_utils, spec
from algoperf.array_workload import BatchQueue
from algoperf.data.seeds import seed_from_rng
from algoperf.eval_loop import dispatch_then_fetch, summed
from algoperf.losses import token_cross_entropy

from . import input_pipeline
from .model import DecoderLM, LmConfig


class LmWorkload(spec.Workload):
    name = "lm"
    description = (
        "decoder-only LM (RoPE, QK-norm, ctx 1024, bf16), perplexity; PROVISIONAL targets "
        "(upstream finewebedu_lm's 22.432 ppl, not re-set on our data and hardware)"
    )
    data_source = "download"

    target_metric_name = "ppl"
    validation_target_value = 22.432  # provisional (upstream finewebedu_lm)
    test_target_value = 22.432  # no test split: has_reached_test_target is always true
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    num_train_examples = 8_749_870
    num_eval_train_examples = 10_000
    num_validation_examples = 100_000
    num_test_examples = 0
    eval_batch_size = 256
    max_allowed_runtime_sec = 31_967
    eval_period_time_sec = 2_571
    step_hint = 72_000

    def __init__(self, config_overrides: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """``config_overrides`` changes LmConfig fields (tests use tiny models)."""
        super().__init__(**kwargs)
        self._config_overrides = dict(config_overrides or {})
        self._windows: dict[str, np.ndarray] = {}

    @functools.cached_property
    def config(self) -> LmConfig:
        return LmConfig(**self._config_overrides)

    @functools.cached_property
    def model(self) -> DecoderLM:
        return DecoderLM(self.config)

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == "embed"  # tied embedding is the output layer

    def init_model_fn(
        self,
        rng: spec.RandomState,
        dropout_rate: float | None = None,
        aux_dropout_rate: float | None = None,
    ) -> spec.ModelInitState:
        del dropout_rate, aux_dropout_rate  # the model has no dropout
        dummy = jnp.zeros((1, self.config.seq_len), jnp.int32)
        params = jax.jit(self.model.init)(rng, dummy)["params"]
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
        """Logits [B, L, V] in float32; ``dropout_rate`` is ignored (no dropout)."""
        del use_running_average_bn  # no batch norm in this model (AlgoPerf's argument, accepted)
        del mode, rng, update_batch_norm, dropout_rate
        logits = self.model.apply({"params": params}, augmented_and_preprocessed_input_batch["inputs"])
        return logits, model_state

    def loss_fn(
        self,
        label_batch: spec.Tensor,
        logits_batch: spec.Tensor,
        mask_batch: spec.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, spec.Tensor]:
        return token_cross_entropy(label_batch, logits_batch, mask_batch, label_smoothing)

    # --- data ------------------------------------------------------------------------
    def _split_windows(self, split: str, data_dir: str | None) -> np.ndarray:
        key = "train" if split == "eval_train" else split
        if key not in self._windows:
            vocab = input_pipeline.load_meta(data_dir)["vocab_size"]
            if vocab > self.config.vocab_size:  # ids past the embedding would be silently wrong
                raise ValueError(
                    f"the data in {data_dir} has a vocabulary of {vocab} tokens, the model only "
                    f"{self.config.vocab_size}: prepare it with the model's tokenizer (GPT-2)"
                )
            self._windows[key] = input_pipeline.windows(data_dir, key, self.config.seq_len)
        return self._windows[key]

    def _build_input_queue(
        self,
        data_rng: spec.RandomState,
        split: str,
        data_dir: str | None,
        global_batch_size: int,
        cache: bool | None = None,
        repeat_final_dataset: bool | None = None,
        num_batches: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        data = self._split_windows(split, data_dir)
        if split == "train":
            batches = input_pipeline.train_batches(data, global_batch_size, seed_from_rng(data_rng))
        else:
            limit = self.num_eval_train_examples if split == "eval_train" else self.num_validation_examples
            batches = input_pipeline.eval_batches(data, global_batch_size, limit)
        return BatchQueue(batches, num_batches)  # keeps the train stream's seek

    @functools.cached_property
    def _eval_step(self):
        def step(params: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
            logits = self.model.apply({"params": params}, batch["inputs"])
            loss = token_cross_entropy(batch["targets"], logits, batch["weights"])
            return {"loss": loss["summed"], "tokens": loss["n_valid_examples"]}

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
        """Token-mean 'loss' and 'ppl' = exp(loss) over the split's first windows."""
        del num_examples, model_state, rng, global_step
        batches = self._build_input_queue(None, split, data_dir, global_batch_size)
        totals = summed(dispatch_then_fetch(lambda b: self._eval_step(params, b), batches), ("loss", "tokens"))
        loss = totals["loss"] / max(totals["tokens"], 1.0)
        return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}
