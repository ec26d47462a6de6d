"""librispeech_conformer: LibriSpeech 960h ASR with a Conformer, CTC, target WER (AlgoPerf v0.6).

Batches: {'inputs': (audio [B, 320000], audio_paddings), 'targets': (tokens [B, 256],
token_paddings), 'weights' [B] (eval)}. ``model_fn`` returns (logits, logit_paddings).
The base class here also serves librispeech_deepspeech (which overrides the model).
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

from algoperf import param_utils, spec
from algoperf.array_workload import BatchQueue, MappedQueue
from algoperf.data.seeds import seed_from_rng

from . import input_pipeline, metrics
from .model import Conformer, gelu_tanh


class LibriSpeechWorkloadBase(spec.Workload):
    """Data, CTC loss and WER evaluation shared by the Conformer and DeepSpeech workloads."""

    data_source = "download"
    target_metric_name = "wer"
    loss_type = spec.LossType.CTC_LOSS
    num_train_examples = 263_840
    num_validation_examples = 5_348
    num_test_examples = 2_472
    eval_batch_size = 256
    num_eval_train_examples = 5_376  # 5,348 rounded up to a multiple of 256
    default_dropout_rate = 0.1
    eval_period_time_sec = 1_440.0

    def __init__(self, model_overrides: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """``model_overrides``: keyword arguments for the model class (sizes, ``vocab_size``)
        replacing the workload's; tests use them for small configurations."""
        super().__init__(**kwargs)
        self.model_overrides = dict(model_overrides or {})
        self._tokenizer = None

    @property
    def model(self) -> nn.Module:
        raise NotImplementedError

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == self.output_layer

    output_layer = "Dense_0"

    # --- model ---------------------------------------------------------------------
    def init_model_fn(self, rng, dropout_rate=None, aux_dropout_rate=None) -> spec.ModelInitState:
        """Params and model state {'batch_stats': ...} ({} without batch norm)."""
        del dropout_rate, aux_dropout_rate
        x = jnp.zeros((2, input_pipeline.MAX_AUDIO), jnp.float32)
        variables = param_utils.fast_init(self.model, rng, x, x)
        params = variables["params"]
        self._param_shapes = param_utils.param_shapes(params)
        self._param_types = param_utils.param_types(params)
        state = {"batch_stats": variables["batch_stats"]} if "batch_stats" in variables else {}
        return params, state

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
        """((logits, logit_paddings), new model state).

        As in the reference: TRAIN mode, or ``update_batch_norm`` in any mode, runs the
        train path (SpecAugment, dropout, batch statistics) and updates the running
        averages; otherwise the running averages are used and nothing random happens.
        """
        if use_running_average_bn is not None:
            raise NotImplementedError(
                f"{self.name}: use_running_average_bn is not supported yet (its batch norm follows "
                "the train path); leave it None"
            )
        audio, audio_paddings = augmented_and_preprocessed_input_batch["inputs"]
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        variables = {"params": params, **(model_state or {})}
        if mode == spec.ForwardPassMode.TRAIN or update_batch_norm:
            outputs, new_state = self.model.apply(
                variables, audio, audio_paddings, train=True, dropout_rate=rate,
                rngs={"dropout": rng}, mutable=["batch_stats"],
            )
            return outputs, dict(new_state) if new_state else model_state
        return self.model.apply(variables, audio, audio_paddings, train=False, dropout_rate=rate), model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0) -> dict[str, spec.Tensor]:
        """CTC per utterance; ``n_valid_examples`` = number of target tokens (EOS included).

        ``mask_batch`` [B] (our eval passes it) weights utterances and their tokens; the
        reference's broadcasting of a [B] mask against [B, 256] paddings is not copied.
        """
        del label_smoothing
        labels, label_paddings = label_batch
        logits, logit_paddings = logits_batch
        per_example = metrics.ctc_loss(logits, logit_paddings, labels, label_paddings)
        if mask_batch is None:
            mask_batch = jnp.ones_like(per_example)
        per_example = per_example * mask_batch
        num_tokens = jnp.sum((1.0 - label_paddings) * mask_batch[:, None])
        return {"summed": jnp.sum(per_example), "n_valid_examples": jnp.maximum(num_tokens, 1.0), "per_example": per_example}

    # --- data ----------------------------------------------------------------------
    def _build_input_queue(
        self, data_rng, split, data_dir, global_batch_size, cache=None, repeat_final_dataset=None, num_batches=None
    ) -> Iterator[dict[str, Any]]:
        prefixes = input_pipeline.utterances(data_dir, split)  # DataNotFoundError now, not at next()
        if split == "train":
            train = input_pipeline.train_batches(prefixes, global_batch_size, seed_from_rng(data_rng))
            # Train batches are full: no weights (MappedQueue keeps the stream's seek).
            batches = MappedQueue(train, lambda batch: {k: v for k, v in batch.items() if k != "weights"})
        else:
            repeat = split == "eval_train" or bool(repeat_final_dataset)
            batches = input_pipeline.batches(prefixes, global_batch_size, None, repeat, False)
        return BatchQueue(batches, num_batches)

    # --- evaluation ----------------------------------------------------------------
    @functools.cached_property
    def _eval_step(self):
        def step(params, model_state, batch):
            (logits, logit_paddings), _ = self.model_fn(
                params, batch, model_state, spec.ForwardPassMode.EVAL, None, False
            )
            loss = self.loss_fn(batch["targets"], (logits, logit_paddings), batch["weights"])
            return {
                "ctc_sum": loss["summed"],
                "num_tokens": jnp.sum((1.0 - batch["targets"][1]) * batch["weights"][:, None]),
                "logits": logits,
                "logit_paddings": logit_paddings,
            }

        return jax.jit(step)

    def detokenize(self, data_dir: str | None):
        if self._tokenizer is None:
            self._tokenizer = input_pipeline.load_tokenizer(data_dir)
        return lambda ids: self._tokenizer.decode([int(i) for i in ids])

    def _eval_model_on_split(
        self, split, num_examples, global_batch_size, params, model_state, rng, data_dir, global_step=0
    ) -> dict[str, float]:
        """{'wer': corpus WER, 'ctc_loss': summed CTC / target tokens} over the split.

        eval_train walks on through the unshuffled train set across evaluations (as JAX's
        reference does); validation and test are read whole, in order, each time.
        """
        del rng, global_step
        detok = self.detokenize(data_dir)
        num_batches = math.ceil(num_examples / global_batch_size)
        if split == "eval_train":
            if split not in self._eval_iters:
                self._eval_iters[split] = self._build_input_queue(None, split, data_dir, global_batch_size)
            it = self._eval_iters[split]
        else:
            it = self._build_input_queue(None, split, data_dir, global_batch_size, num_batches=num_batches)
        ctc = tokens = 0.0
        errors = words = 0
        for _, batch in zip(range(num_batches), it, strict=False):
            out = jax.device_get(self._eval_step(params, model_state, batch))
            ctc += float(out["ctc_sum"])
            tokens += float(out["num_tokens"])
            tok, tok_pad = (np.asarray(a) for a in jax.device_get(batch["targets"]))
            e, w = metrics.batch_word_errors(
                out["logits"], out["logit_paddings"], tok, tok_pad, np.asarray(jax.device_get(batch["weights"])), detok
            )
            errors, words = errors + e, words + w
        return {"wer": errors / max(words, 1), "ctc_loss": ctc / max(tokens, 1.0)}


class LibriSpeechConformerWorkload(LibriSpeechWorkloadBase):
    """Conformer (4 blocks, width 512, 8 heads) + CTC on LibriSpeech 960h."""

    name = "librispeech_conformer"
    description = "LibriSpeech 960h, Conformer (4 x 512) + CTC, WER"
    activation = staticmethod(nn.swish)
    attention_temperature = 1.0
    post_layer_norm = True
    validation_target_value = 0.085884
    test_target_value = 0.052981
    max_allowed_runtime_sec = 58_015.0
    step_hint = 76_000

    @functools.cached_property
    def model(self) -> nn.Module:
        return Conformer(**{
            "activation": self.activation, "temperature": self.attention_temperature,
            "post_layer_norm": self.post_layer_norm, **self.model_overrides,
        })


class LibriSpeechConformerAttentionTemperatureWorkload(LibriSpeechConformerWorkload):
    """Variant: attention outputs multiplied by 1.6."""

    name = "librispeech_conformer_attention_temperature"
    base_workload = "librispeech_conformer"
    description = "LibriSpeech, Conformer with attention temperature 1.6, WER"
    attention_temperature = 1.6
    validation_target_value = 0.109977
    test_target_value = 0.068065


class LibriSpeechConformerLayerNormWorkload(LibriSpeechConformerWorkload):
    """Variant: no post-block LayerNorm (the final encoder LayerNorm stays)."""

    name = "librispeech_conformer_layernorm"
    base_workload = "librispeech_conformer"
    description = "LibriSpeech, Conformer without post-block LayerNorm, WER"
    post_layer_norm = False
    validation_target_value = 0.09731
    test_target_value = 0.05996


class LibriSpeechConformerGeluWorkload(LibriSpeechConformerWorkload):
    """Variant: tanh-approximate GELU instead of swish."""

    name = "librispeech_conformer_gelu"
    base_workload = "librispeech_conformer"
    description = "LibriSpeech, Conformer with GELU, WER"
    activation = staticmethod(gelu_tanh)
    validation_target_value = 0.094114
    test_target_value = 0.056629
