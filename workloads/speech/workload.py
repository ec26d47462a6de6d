"""The speech workload: CTC recognition of generated dual-tone "speech", target WER.

Batches follow AlgoPerf's librispeech convention: ``batch['inputs'] = (features,
input_paddings)`` and ``batch['targets'] = (labels, label_paddings)``; ``model_fn``
returns ``(logits, logit_paddings)`` as its logits, which ``loss_fn`` takes with the
targets. The arrays are stored flat ('inputs', 'input_paddings', 'targets',
'target_paddings') and paired up in ``_build_input_queue``; ``model_fn`` accepts both forms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf import spec
from algoperf.array_workload import ArrayWorkload, MappedQueue
from algoperf.param_utils import fast_init

from . import input_pipeline, metrics
from .model import Conformer

BASE_DIM = 64
NUM_HEADS = 4


def _paired(batch: dict[str, Any]) -> dict[str, Any]:
    """Flat arrays -> AlgoPerf's (values, paddings) pairs for 'inputs' and 'targets'."""
    out = {k: v for k, v in batch.items() if k not in ("input_paddings", "target_paddings")}
    out["inputs"] = (batch["inputs"], batch["input_paddings"])
    out["targets"] = (batch["targets"], batch["target_paddings"])
    return out



class SpeechWorkload(ArrayWorkload):
    """LibriSpeech Conformer's small twin: Conformer + CTC on dual-tone spelled words."""

    name = "speech"
    description = "Generated dual-tone spelled words (log-mel), Conformer + CTC, WER"
    data_source = "generated"
    # Batch size (algoperf.submission.batch_size): AlgoPerf's baselines use 256 on librispeech_conformer; 32 set the targets.
    reference_workload = "librispeech_conformer"
    reference_batch_size = 256
    default_batch_size = 32
    activation = staticmethod(nn.swish)
    default_dropout_rate = 0.0

    def __init__(self, size: float = 1.0, **kwargs: Any) -> None:
        """``size`` scales the Conformer's width (1.0: model width 64, 4 heads)."""
        super().__init__(**kwargs)
        dim = NUM_HEADS * max(1, round(BASE_DIM * size / NUM_HEADS))
        self.model = Conformer(
            vocab_size=input_pipeline.VOCAB_SIZE,
            dim=dim,
            num_heads=NUM_HEADS,
            subsampling_channels=max(1, round(16 * size)),
            activation=self.activation,
        )

    # --- targets and budget (see TARGETS.md for how they were set) -------------------
    target_metric_name = "wer"
    validation_target_value = 0.017
    test_target_value = 0.0277
    max_allowed_runtime_sec = 63.0
    eval_period_time_sec = 5.0
    step_hint = 533
    eval_batch_size = 256
    num_eval_train_examples = 512
    loss_type = spec.LossType.CTC_LOSS

    # --- data ----------------------------------------------------------------------
    def load_split(self, split: str, data_dir: str | None) -> dict:
        return input_pipeline.load(data_dir)[split]

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
        """ArrayWorkload's batches with 'inputs' and 'targets' as (values, paddings) pairs."""
        # Not a generator function: the data loads here, at setup, not at the first next().
        batches = super()._build_input_queue(
            data_rng, split, data_dir, global_batch_size, cache, repeat_final_dataset, num_batches
        )
        return MappedQueue(batches, _paired)  # keeps the queue's seek (a resume jumps, not replays)

    # --- model -----------------------------------------------------------------------
    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == "output"

    def init_model_fn(
        self,
        rng: spec.RandomState,
        dropout_rate: float | None = None,
        aux_dropout_rate: float | None = None,
    ) -> spec.ModelInitState:
        """Params and model state {'batch_stats': running means and variances}."""
        del dropout_rate, aux_dropout_rate
        shape = (1, input_pipeline.MAX_FRAMES, input_pipeline.NUM_MEL)
        variables = fast_init(
            self.model, rng, jnp.zeros(shape, jnp.float32), jnp.zeros(shape[:2], jnp.float32)
        )
        params = variables["params"]
        self._record_params(params)
        return params, {"batch_stats": variables["batch_stats"]}

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
        """((logits [B, T/4, vocab], logit_paddings [B, T/4]), new model state).

        Batch norm uses (and updates the running averages from) batch statistics when
        ``update_batch_norm``; otherwise the running averages. Dropout at ``dropout_rate`` (a
        float or a traced scalar) only in TRAIN mode.
        """
        batch = augmented_and_preprocessed_input_batch
        inputs = batch["inputs"]
        features, paddings = (
            inputs if isinstance(inputs, tuple | list) else (inputs, batch["input_paddings"])
        )
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        train = mode == spec.ForwardPassMode.TRAIN
        variables = {"params": params, **model_state}
        # The model normalises with batch statistics when told to update them; AlgoPerf's
        # use_running_average_bn can ask for the running averages instead.
        batch_stats = update_batch_norm if use_running_average_bn is None else not use_running_average_bn
        kwargs = {"dropout_rate": rate, "train": train, "update_batch_norm": batch_stats}
        rngs = {"dropout": rng} if train and rng is not None else None
        if update_batch_norm:
            outputs, new_state = self.model.apply(
                variables, features, paddings, rngs=rngs, mutable=["batch_stats"], **kwargs
            )
            return outputs, dict(new_state)
        return self.model.apply(variables, features, paddings, rngs=rngs, **kwargs), model_state

    def loss_fn(
        self,
        label_batch: spec.Tensor,
        logits_batch: spec.Tensor,
        mask_batch: spec.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, spec.Tensor]:
        """CTC: 'summed' over utterances, 'n_valid_examples' = number of target tokens.

        ``label_batch`` = (labels, label_paddings), ``logits_batch`` = (logits,
        logit_paddings), ``mask_batch`` [B] (optional) marks real utterances. As in
        AlgoPerf, summed / n_valid_examples is the CTC loss per target token.
        """
        del label_smoothing
        labels, label_paddings = label_batch
        logits, logit_paddings = logits_batch
        per_example = metrics.ctc_loss(logits, logit_paddings, labels, label_paddings)
        if mask_batch is None:
            mask_batch = jnp.ones_like(per_example)
        per_example = per_example * mask_batch
        num_tokens = jnp.sum((1.0 - label_paddings) * mask_batch[:, None])
        return {
            "summed": jnp.sum(per_example),
            "n_valid_examples": jnp.maximum(num_tokens, 1.0),
            "per_example": per_example,
        }

    # --- evaluation --------------------------------------------------------------------
    def eval_batch_outputs(self, params, model_state, batch) -> dict[str, jax.Array]:
        """Summed CTC loss, token count, greedy frame labels and the references."""
        weights = batch["weights"]
        logits, _ = self.model_fn(
            params, batch, model_state, spec.ForwardPassMode.EVAL, None, False
        )
        targets = (batch["targets"], batch["target_paddings"])
        loss = self.loss_fn(targets, logits, weights)
        return {
            "loss": loss["summed"],
            "num_tokens": jnp.sum((1.0 - batch["target_paddings"]) * weights[:, None]),
            "frame_labels": metrics.greedy_frame_labels(*logits),
            "targets": batch["targets"],
            "target_paddings": batch["target_paddings"],
            "weights": weights,
        }

    def reduce_eval_outputs(self, outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """'loss' = CTC per target token; 'wer' = corpus word error rate of greedy decoding."""
        cat = {k: np.concatenate([np.atleast_1d(o[k]) for o in outputs]) for k in outputs[0]}
        real = cat["weights"] > 0
        hypotheses = [
            metrics.ids_to_text(ids) for ids in metrics.compact(cat["frame_labels"][real])
        ]
        references = [
            metrics.ids_to_text(ids, pad)
            for ids, pad in zip(cat["targets"][real], cat["target_paddings"][real], strict=True)
        ]
        return {
            "loss": float(np.sum(cat["loss"]) / max(np.sum(cat["num_tokens"]), 1.0)),
            "wer": metrics.corpus_wer(references, hypotheses),
        }


class SpeechGeluWorkload(SpeechWorkload):
    """Variant: GELU (tanh approximation) instead of swish, as AlgoPerf's conformer_gelu."""

    name = "speech_gelu"
    base_workload = "speech"
    description = "Generated dual-tone spelled words (log-mel), Conformer with GELU + CTC, WER"
    activation = staticmethod(nn.gelu)
    validation_target_value = 0.0144
    test_target_value = 0.0178
    step_hint = 593
    max_allowed_runtime_sec = 64.0
