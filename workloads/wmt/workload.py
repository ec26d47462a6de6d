"""AlgoPerf's WMT workloads: German -> English Transformer, target validation BLEU.

Loss: token cross-entropy against ``optax.smooth_labels(one_hot, a)`` over non-padding
target tokens (EOS counts). Eval (untimed): token-mean loss and accuracy, then BLEU of
beam-search translations (beam 4, alpha 0.6, 256 tokens) against the detokenized
references, with sacrebleu's ``corpus_bleu`` (13a, case-sensitive, exp smoothing).
Constants are AlgoPerf v0.6's (``algoperf/workloads/wmt``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils, param_utils, spec
from algoperf.array_workload import BatchQueue
from algoperf.data.seeds import seed_from_rng
from algoperf.losses import token_cross_entropy

from . import decode, input_pipeline
from .model import Transformer, TransformerConfig


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """sacrebleu corpus BLEU (0-100): one reference, 13a tokenization, exp smoothing."""
    import sacrebleu  # lazy: only evals need it

    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


class WmtWorkload(spec.Workload):
    name = "wmt"
    description = "WMT17 de->en, 6+6-layer pre-LN Transformer (d 1024), BLEU"
    data_source = "download"

    pre_ln = True
    attention_temp = 1.0
    activation = staticmethod(nn.relu)
    glu = False

    target_metric_name = "bleu"
    validation_target_value = 30.8491
    test_target_value = 30.7219
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    num_train_examples = 5_906_184
    num_eval_train_examples = 3_072
    num_validation_examples = 3_000
    num_test_examples = 3_003
    eval_batch_size = 128
    max_allowed_runtime_sec = 43_336
    eval_period_time_sec = 840
    step_hint = 120_000
    default_dropout_rate = 0.1
    beam_size = 4
    length_penalty_alpha = 0.6
    max_decode_len = 256

    def __init__(self, config_overrides: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """``config_overrides`` changes TransformerConfig fields (tests use tiny models)."""
        super().__init__(**kwargs)
        self._config_overrides = dict(config_overrides or {})
        self._tokenizer = None

    @functools.cached_property
    def config(self) -> TransformerConfig:
        return TransformerConfig(
            activation=self.activation,
            glu=self.glu,
            pre_ln=self.pre_ln,
            attention_temp=self.attention_temp,
            **self._config_overrides,
        )

    @functools.cached_property
    def model(self) -> Transformer:
        return Transformer(self.config)

    # --- model -----------------------------------------------------------------------
    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == "shared_embedding"  # tied: the output layer is the embedding

    def init_model_fn(
        self,
        rng: spec.RandomState,
        dropout_rate: float | None = None,
        aux_dropout_rate: float | None = None,
    ) -> spec.ModelInitState:
        del dropout_rate, aux_dropout_rate  # the rate is a model_fn argument since v0.6
        dummy = jnp.ones((8, self.config.max_len), jnp.int32)
        params = jax.jit(self.model.init)(rng, dummy, dummy)["params"]
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
        """Teacher-forced logits [B, L, 32000]; packed-batch keys are used when present."""
        del use_running_average_bn  # no batch norm in this model (AlgoPerf's argument, accepted)
        del update_batch_norm
        batch = augmented_and_preprocessed_input_batch
        train = mode == spec.ForwardPassMode.TRAIN
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        logits = self.model.apply(
            {"params": params},
            batch["inputs"],
            batch["targets"],
            inputs_positions=batch.get("inputs_position"),
            targets_positions=batch.get("targets_position"),
            inputs_segmentation=batch.get("inputs_segmentation"),
            targets_segmentation=batch.get("targets_segmentation"),
            rate=rate,
            train=train,
            rngs={"dropout": rng} if train else None,
        )
        return logits, model_state

    def loss_fn(
        self,
        label_batch: spec.Tensor,
        logits_batch: spec.Tensor,
        mask_batch: spec.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, spec.Tensor]:
        return token_cross_entropy(label_batch, logits_batch, mask_batch, label_smoothing, ignore_padding=True)

    # --- data ------------------------------------------------------------------------
    def tokenizer(self, data_dir: str | None):
        if self._tokenizer is None:
            self._tokenizer = input_pipeline.load_tokenizer(data_dir)
        return self._tokenizer

    def _host_batches(
        self, data_rng: spec.RandomState, split: str, data_dir: str | None, global_batch_size: int
    ) -> Iterator[dict[str, np.ndarray]]:
        tok = self.tokenizer(data_dir)
        files = input_pipeline.split_files(data_dir, split)  # fail now, clearly, if files are missing
        if split == "train":
            return input_pipeline.TrainBatches(files, tok, global_batch_size, seed_from_rng(data_rng))
        examples = input_pipeline.pairs(data_dir, split, tok)
        if split == "eval_train":
            rng = np.random.default_rng(seed_from_rng(data_rng))
            shuffled = input_pipeline.shuffle_buffer(examples, input_pipeline.SHUFFLE_BUFFER, rng)
            examples = (e for _, e in zip(range(self.num_eval_train_examples), shuffled, strict=False))
        return input_pipeline.eval_batches(examples, global_batch_size)

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
        batches = self._host_batches(data_rng, split, data_dir, global_batch_size)
        return BatchQueue(batches, num_batches)  # keeps the train stream's position / restore

    # --- evaluation ------------------------------------------------------------------
    @functools.cached_property
    def _eval_step(self):
        def step(params: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
            logits = self.model.apply({"params": params}, batch["inputs"], batch["targets"])
            loss = token_cross_entropy(batch["targets"], logits, batch["weights"], ignore_padding=True)
            valid = (batch["targets"] > 0) & (batch["weights"] > 0)
            correct = jnp.sum(valid & (jnp.argmax(logits, -1) == batch["targets"]))
            return {"loss": loss["summed"], "tokens": loss["n_valid_examples"], "correct": correct}

        return jax.jit(step)

    @functools.cached_property
    def _decode_model(self) -> Transformer:
        return Transformer(self.config, decode=True)

    def predict(self, params: spec.ParameterContainer, inputs: jax.Array) -> jax.Array:
        """Beam-search translations [B, max_decode_len - 1] of ``inputs`` [B, L_src]."""
        return self._jitted_predict(params, inputs)

    @functools.cached_property
    def _jitted_predict(self):
        model, k = self._decode_model, self.beam_size

        def predict(params: Any, inputs: jax.Array) -> jax.Array:
            batch = inputs.shape[0]
            encoded = model.apply({"params": params}, inputs, method=Transformer.encode)
            encoded = jnp.repeat(encoded, k, axis=0)
            beam_inputs = jnp.repeat(inputs, k, axis=0)
            shapes = jax.eval_shape(
                functools.partial(model.init, method=Transformer.decode_step),
                jax.random.PRNGKey(0),
                encoded,
                beam_inputs,
                jnp.ones((batch * k, self.max_decode_len), jnp.int32),
            )["cache"]
            cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

            def logprob_fn(tokens: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
                logits, updated = model.apply(
                    {"params": params, "cache": cache},
                    encoded,
                    beam_inputs,
                    tokens,
                    method=Transformer.decode_step,
                    mutable=["cache"],
                )
                return jax.nn.log_softmax(logits[:, 0]), updated["cache"]

            seqs, _ = decode.beam_search(
                logprob_fn, cache, batch, k, self.length_penalty_alpha, self.max_decode_len
            )
            return seqs

        return jax.jit(predict)

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
        """Token-mean 'loss' and 'accuracy' and corpus 'bleu' over the split's real rows."""
        del model_state, global_step
        num_batches = -(-num_examples // global_batch_size)
        tok = self.tokenizer(data_dir)
        totals = {"loss": 0.0, "tokens": 0.0, "correct": 0.0}
        hypotheses: list[str] = []
        references: list[str] = []
        # eval_train: the same fixed sample serves loss and BLEU (the reference draws a new one).
        for batch in self._build_input_queue(rng, split, data_dir, global_batch_size, num_batches=num_batches):
            out = jax.device_get(self._eval_step(params, batch))
            for key in totals:
                totals[key] += float(out[key])
            predicted = np.asarray(self.predict(params, batch["inputs"]))
            weights, targets = np.asarray(batch["weights"]), np.asarray(batch["targets"])
            for row in np.flatnonzero(weights[:, 0] > 0):
                hypotheses.append(input_pipeline.detokenize(tok, predicted[row]))
                references.append(input_pipeline.detokenize(tok, targets[row]))
        tokens = max(totals["tokens"], 1.0)
        return {
            "loss": totals["loss"] / tokens,
            "accuracy": totals["correct"] / tokens,
            "bleu": corpus_bleu(hypotheses, references),
        }


class WmtPostLnWorkload(WmtWorkload):
    """Variant: LayerNorm after each residual add, no final LayerNorms."""

    name = "wmt_post_ln"
    base_workload = "wmt"
    description = "WMT17 de->en, post-LN Transformer, BLEU"
    pre_ln = False
    validation_target_value = 30.0779
    test_target_value = 29.8982


class WmtAttentionTempWorkload(WmtWorkload):
    """Variant: attention queries multiplied by 4 (logits 4x sharper)."""

    name = "wmt_attention_temp"
    base_workload = "wmt"
    description = "WMT17 de->en, Transformer with attention temperature 4, BLEU"
    attention_temp = 4.0
    validation_target_value = 29.3379
    test_target_value = 29.4143


class WmtGluTanhWorkload(WmtWorkload):
    """Variant: MLP hidden ``tanh(W1 x + b1) * (W2 x + b2)`` (GLU with a linear gate)."""

    name = "wmt_glu_tanh"
    base_workload = "wmt"
    description = "WMT17 de->en, Transformer with tanh GLU MLPs, BLEU"
    activation = staticmethod(nn.tanh)
    glu = True
    validation_target_value = 29.5779
    test_target_value = 29.0515
