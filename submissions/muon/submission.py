"""Muon (Jordan et al. 2024): orthogonalised momentum for hidden matrices, AdamW for the rest.

optax.contrib.muon. For a hidden weight matrix W (d_in x d_out) with gradient G:
    M_t = beta M_{t-1} + (1 - beta) G_t        N_t = beta M^_t + (1 - beta) G^_t  (Nesterov,
                                                 ^: bias-corrected; the scale washes out below)
    O_t = NewtonSchulz5(N_t) ~ U V^T  for N_t = U S V^T   (5 quintic iterations)
    W_t = W_{t-1} - lr_t (sqrt(max(1, d_out / d_in)) O_t + wd W_{t-1})
Every other parameter takes a NAdamW step (optax's Nesterov AdamW) with
``adam_learning_rate`` (b1 = 1 - one_minus_beta1, b2 = beta2, weight decay
``adam_weight_decay``). Which parameters are
"hidden matrices" is decided from the workload, not from the shapes alone: 2-D weights,
conv kernels (flattened to (taps * d_in) x d_out) and attention projections go to Muon;
embeddings (ParameterType.EMBEDDING) and the output layer (workload.is_output_params),
whose rows/columns are not a linear map between hidden features, go to AdamW, as do
biases and norm scales. Both learning rates follow the same schedule: a linear warmup
over ``warmup_factor * step_hint`` steps, then a cosine (or, with
``decay_schedule="linear"``, a line) to 0 at ``step_hint``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import optax
from optax.contrib import MuonDimensionNumbers

from algoperf import spec

DECAY_SCHEDULES = ("cosine", "linear")
# Attention projections stored as (d_model, heads, head_dim) or (heads, head_dim, d_model).
_ATTENTION_IN = {
    spec.ParameterType.ATTENTION_Q, spec.ParameterType.ATTENTION_K, spec.ParameterType.ATTENTION_V,
    spec.ParameterType.ATTENTION_QKV, spec.ParameterType.ATTENTION_KV,
}


def schedule_shape(hyperparameters: spec.Hyperparameters, step_hint: int) -> optax.Schedule:
    """The multiplier (peak 1): linear warmup, then cosine or linear decay to 0 at step_hint."""
    warmup_steps = int(hyperparameters.warmup_factor * step_hint)
    decay_steps = max(step_hint - warmup_steps, 1)
    kind = getattr(hyperparameters, "decay_schedule", "cosine")
    if kind == "cosine":
        decay = optax.cosine_decay_schedule(1.0, decay_steps)
    elif kind == "linear":
        decay = optax.linear_schedule(1.0, 0.0, decay_steps)
    else:
        raise ValueError(f"muon: decay_schedule must be one of {', '.join(DECAY_SCHEDULES)}, got {kind!r}")
    warmup = optax.linear_schedule(0.0, 1.0, max(warmup_steps, 1))
    return optax.join_schedules([warmup, decay], boundaries=[warmup_steps])


def _path_keys(path: tuple[Any, ...]) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]


def muon_dimension_numbers(workload: spec.Workload, params: spec.ParameterContainer) -> Any:
    """Per parameter: how Muon sees it as a matrix, or None to send it to AdamW.

    None for embeddings, the output layer (any key on its path, or the whole '/'-joined
    path, that ``workload.is_output_params`` accepts) and anything that is not a hidden
    weight matrix.
    """
    types = workload.model_params_types

    def dims(path: tuple[Any, ...], param: Any, param_type: spec.ParameterType) -> MuonDimensionNumbers | None:
        keys = _path_keys(path)
        if param_type is spec.ParameterType.EMBEDDING:
            return None
        if any(workload.is_output_params(k) for k in keys) or workload.is_output_params("/".join(keys)):
            return None
        ndim = param.ndim
        if param_type in _ATTENTION_IN and ndim == 3:
            return MuonDimensionNumbers(reduction_axis=0, output_axis=(1, 2))
        if param_type is spec.ParameterType.ATTENTION_OUT and ndim == 3:
            return MuonDimensionNumbers(reduction_axis=(0, 1), output_axis=2)
        if param_type is spec.ParameterType.CONV_WEIGHT and ndim >= 3:
            return MuonDimensionNumbers(reduction_axis=tuple(range(ndim - 1)), output_axis=ndim - 1)
        if ndim == 2 and param_type in (spec.ParameterType.WEIGHT, *_ATTENTION_IN, spec.ParameterType.ATTENTION_OUT):
            return MuonDimensionNumbers(reduction_axis=0, output_axis=1)
        return None

    return jax.tree_util.tree_map_with_path(dims, params, types)


def make_optimizer(hyperparameters: spec.Hyperparameters, workload: spec.Workload, params: spec.ParameterContainer) -> optax.GradientTransformation:
    """Optional global-norm clipping, then optax.contrib.muon with the workload's Muon/AdamW split."""
    shape = schedule_shape(hyperparameters, workload.step_hint)
    muon_lr = hyperparameters.learning_rate
    adam_lr = hyperparameters.adam_learning_rate
    transforms = []
    if getattr(hyperparameters, "grad_clip", None):
        transforms.append(optax.clip_by_global_norm(hyperparameters.grad_clip))
    transforms.append(
        optax.contrib.muon(
            learning_rate=lambda count: muon_lr * shape(count),
            beta=hyperparameters.beta,
            weight_decay=hyperparameters.weight_decay,
            adam_b1=1.0 - hyperparameters.one_minus_beta1,
            adam_b2=hyperparameters.beta2,
            adam_weight_decay=getattr(hyperparameters, "adam_weight_decay", hyperparameters.weight_decay),
            adam_learning_rate=lambda count: adam_lr * shape(count),
            muon_weight_dimension_numbers=muon_dimension_numbers(workload, params),
        )
    )
    return optax.chain(*transforms)


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    del model_state, rng
    optimizer = make_optimizer(hyperparameters, workload, model_params)
    return optimizer.init(model_params), optimizer.update


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def train_step(
    workload: spec.Workload,
    opt_update_fn: Any,
    optimizer_state: Any,
    params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    batch: dict[str, spec.Tensor],
    rng: spec.RandomState,
    label_smoothing: float,
    dropout_rate: float,
):
    """One step: mean loss over valid examples, its gradient, the optax update."""

    def loss_fn(p):
        logits, new_model_state = workload.model_fn(
            p, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
            update_batch_norm=True, dropout_rate=dropout_rate,
        )
        loss = workload.loss_fn(
            label_batch=batch["targets"], logits_batch=logits,
            mask_batch=batch.get("weights"), label_smoothing=label_smoothing,
        )
        return loss["summed"] / loss["n_valid_examples"], new_model_state

    (loss, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, optimizer_state = opt_update_fn(grads, optimizer_state, params)
    return optimizer_state, optax.apply_updates(params, updates), new_model_state, loss, optax.tree.norm(grads)


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
    del current_params_types, loss_type, eval_results, train_state
    state, opt_update_fn = optimizer_state
    state, params, model_state, loss, grad_norm = train_step(
        workload, opt_update_fn, state, current_param_container, model_state, batch, rng,
        getattr(hyperparameters, "label_smoothing", 0.0),
        getattr(hyperparameters, "dropout_rate", 0.0),
    )
    # Arrays, not floats: the runner converts them outside the timed region.
    if global_step % 100 == 0 and workload.metrics_logger is not None:
        workload.metrics_logger.append_scalar_metrics({"loss": loss, "grad_norm": grad_norm}, global_step)
    return (state, opt_update_fn), params, model_state


def prepare_for_eval(
    workload: spec.Workload,
    current_param_container: spec.ParameterContainer,
    current_params_types: spec.ParameterTypeTree,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    loss_type: spec.LossType,
    optimizer_state: spec.OptimizerState,
    eval_results: list[tuple[int, float]],
    global_step: int,
    rng: spec.RandomState,
) -> spec.UpdateReturn:
    del workload, current_params_types, hyperparameters, loss_type, eval_results, global_step, rng
    return optimizer_state, current_param_container, model_state


BATCH_SIZES = {
    # AlgoPerf's workloads (their baseline batch sizes).
    "criteo1tb": 262_144, "fastmri": 32, "imagenet_resnet": 1024, "imagenet_vit": 1024,
    "librispeech_conformer": 256, "librispeech_deepspeech": 256, "ogbg": 512, "wmt": 128,
    "finewebedu_lm": 64, "mnist": 16, "cifar": 128,
    # The small suite.
    "mnist1d": 128, "charlm": 64, "ctr": 256, "molgraph": 64, "translate": 64, "mri": 16, "speech": 32,
}


def get_batch_size(workload_name: str) -> int:
    if workload_name not in BATCH_SIZES:
        raise ValueError(f"Unsupported workload name: {workload_name}.")
    return BATCH_SIZES[workload_name]


def data_selection(
    workload: spec.Workload,
    input_queue: Iterator[dict[str, spec.Tensor]],
    optimizer_state: spec.OptimizerState,
    current_param_container: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    global_step: int,
    rng: spec.RandomState,
) -> dict[str, spec.Tensor]:
    del workload, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
    return next(input_queue)
