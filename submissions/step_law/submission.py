"""Step Law (Li et al., "Predictable Scale: Part I", 2025): learning rate and batch size from
the model size and the training tokens, no tuning.

For the language-model workloads (``lm``, ``charlm`` and their variants), with N the
non-embedding parameter count and D the training tokens:

    peak learning rate  eta(N, D) = 1.79 N^-0.713 D^0.307
    batch size          B(D)      = 0.58 D^0.571   (tokens)

D = step_hint x batch x seq_len depends on the batch, so the batch is the fixed point
B = 0.58 (S B)^0.571, i.e. B = (0.58 S^0.571)^(1 / 0.429) tokens for S = step_hint steps,
rounded to whole sequences and capped at BATCH_CAP x the workload's default batch (what
its memory plan is sized for). AdamW (b1 0.9, b2 0.95, eps 1e-8, weight decay 0.1,
gradient clipping at 1.0), linear warmup, then cosine decay to a fixed floor of 1e-5 at
step_hint (see README.md for which of these are the paper's and which are our choices).

Every other workload falls back to NAdamW at AlgoPerf's published self-tuning point
(``nadamw_self``), unchanged, and says so in the log.
"""

from __future__ import annotations

import collections
import functools
import logging
from typing import Any

import jax
import numpy as np
import optax

from algoperf import spec
from algoperf.submissions.nadamw_self import submission as nadamw_self

log = logging.getLogger(__name__)

# The paper's fits (its eq. for eta(N, D) and B(D)).
LR_COEF, LR_N_EXP, LR_D_EXP = 1.79, -0.713, 0.307
BS_COEF, BS_D_EXP = 0.58, 0.571
# Fitted range: models up to about 1B parameters, up to about 100B tokens.
FITTED_MAX_N, FITTED_MAX_D = 1.0e9, 1.0e11
BATCH_CAP = 8  # x the workload's default batch size
FINAL_LR = 1e-5
MAX_WARMUP_STEPS = 2000
WARMUP_FRACTION = 0.05  # of step_hint, where 2000 steps would be most of training
ADAMW = {"b1": 0.9, "b2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 1.0}


def step_law_lr(n_params: float, tokens: float) -> float:
    """eta(N, D) = 1.79 N^-0.713 D^0.307."""
    return LR_COEF * n_params**LR_N_EXP * tokens**LR_D_EXP


def step_law_batch_tokens(tokens: float) -> float:
    """B(D) = 0.58 D^0.571 tokens."""
    return BS_COEF * tokens**BS_D_EXP


def self_consistent_batch_tokens(steps: int) -> float:
    """The B with B = B(steps x B): (0.58 steps^0.571)^(1 / (1 - 0.571)) tokens."""
    return (BS_COEF * steps**BS_D_EXP) ** (1.0 / (1.0 - BS_D_EXP))


@functools.lru_cache(maxsize=32)
def _language_model(workload_name: str) -> tuple[int, int, int] | None:
    """(step_hint, seq_len, default batch) of an lm/charlm workload by name, else None."""
    from algoperf.registry import get_workload_class

    if workload_name.split("_")[0] not in ("lm", "charlm"):
        return None
    try:
        cls = get_workload_class(workload_name)
    except Exception:  # noqa: BLE001 - unknown name: not ours to set
        return None
    if workload_name.startswith("charlm"):
        from algoperf.workloads.charlm.input_pipeline import SEQ_LEN as seq_len
    else:
        from algoperf.workloads.lm.model import LmConfig

        seq_len = LmConfig().seq_len
    default = getattr(cls, "default_batch_size", None) or nadamw_self.BATCH_SIZES.get("finewebedu_lm", 64)
    return int(cls.step_hint), int(seq_len), int(default)


def batch_size_for(step_hint: int, seq_len: int, default_batch: int) -> int:
    """Sequences per batch: the self-consistent Step Law batch, capped at BATCH_CAP x default."""
    sequences = round(self_consistent_batch_tokens(step_hint) / seq_len)
    return int(min(max(sequences, 1), BATCH_CAP * default_batch))


def get_batch_size(workload_name: str) -> int:
    lm = _language_model(workload_name)
    if lm is None:
        return nadamw_self.get_batch_size(workload_name)
    return batch_size_for(*lm)


def non_embedding_params(params: Any, workload: spec.Workload) -> int:
    """Parameters outside the token/position embeddings and the output (unembedding) layer."""
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        top = str(getattr(path[0], "key", path[0]))
        if "embed" in top or workload.is_output_params(top):
            continue
        total += int(np.prod(np.shape(leaf)))
    return total


def step_law_point(workload: spec.Workload, model_params: Any) -> dict[str, Any] | None:
    """The Step Law hyperparameters of an lm/charlm workload (None elsewhere), with N and D."""
    lm = _language_model(workload.name)
    if lm is None:
        return None
    step_hint, seq_len, default = lm
    batch = batch_size_for(step_hint, seq_len, default)
    n = non_embedding_params(model_params, workload)
    d = float(workload.step_hint) * batch * seq_len
    return {"learning_rate": step_law_lr(n, d), "batch_size": batch, "N": n, "D": d, **ADAMW}


def learning_rate_schedule(peak: float, step_hint: int) -> optax.Schedule:
    """Linear warmup, then cosine decay from ``peak`` to the fixed floor FINAL_LR at step_hint."""
    warmup = min(MAX_WARMUP_STEPS, max(1, int(WARMUP_FRACTION * step_hint)))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(step_hint, warmup + 1),
        end_value=min(FINAL_LR, peak),
    )


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    point = step_law_point(workload, model_params)
    if point is None:
        log.warning(
            "step_law: %s is not a language-model workload (the law is fitted for those): "
            "falling back to NAdamW's published self-tuning point", workload.name,
        )
        return nadamw_self.init_optimizer_state(workload, model_params, model_state, hyperparameters, rng)
    log.warning(
        "step_law: %s N=%d non-embedding params, D=%.3g tokens -> lr %.4g, batch %d sequences%s",
        workload.name, point["N"], point["D"], point["learning_rate"], point["batch_size"],
        " (outside the fitted range)" if point["N"] > FITTED_MAX_N or point["D"] > FITTED_MAX_D else "",
    )
    optimizer = optax.chain(
        optax.clip_by_global_norm(point["grad_clip"]),
        optax.adamw(
            learning_rate_schedule(point["learning_rate"], workload.step_hint),
            b1=point["b1"], b2=point["b2"], eps=point["eps"], weight_decay=point["weight_decay"],
        ),
    )
    return optimizer.init(model_params), optimizer.update


_NO_DROPOUT = collections.namedtuple("Hyperparameters", ["dropout_rate", "label_smoothing"])(0.0, 0.0)


def update_params(
    workload: spec.Workload,
    current_param_container: spec.ParameterContainer,
    current_params_types: spec.ParameterTypeTree,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    batch: dict[str, spec.Tensor],
    loss_type: spec.LossType,
    optimizer_state: spec.OptimizerState,
    eval_results: list[tuple[int, float]],
    global_step: int,
    rng: spec.RandomState,
    train_state: dict[str, Any] | None = None,
) -> spec.UpdateReturn:
    if _language_model(workload.name) is not None:  # the paper trains without dropout
        hyperparameters = _NO_DROPOUT
    return nadamw_self.update_params(
        workload, current_param_container, current_params_types, model_state, hyperparameters,
        batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state,
    )


prepare_for_eval = nadamw_self.prepare_for_eval
data_selection = nadamw_self.data_selection
