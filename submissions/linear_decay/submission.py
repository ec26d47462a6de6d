"""AdamW with linear warmup then linear decay to 0, logging every step's gradient norms.

The baseline schedule of Defazio et al. 2023 ("When, Why and How Much? Adaptive Learning
Rate Scheduling by Refinement"), whose worst-case analysis makes linear decay the optimal
schedule for the last iterate. Update (optax.adamw), per step t:
    m_t = b1 m_{t-1} + (1 - b1) g_t          v_t = b2 v_{t-1} + (1 - b2) g_t^2
    p_t = p_{t-1} - lr_t (m^_t / (sqrt(v^_t) + eps) + wd p_{t-1})      (bias-corrected m^, v^)
    lr_t = learning_rate * t / W                 for t < W = warmup_factor * step_hint
    lr_t = learning_rate * (T - t) / (T - W)     for W <= t <= T = step_hint, then 0
(optax.join_schedules of two optax.linear_schedule). Once lr reaches 0 at step_hint no
step can change the model, so update_params raises TrainingCompleteError there.

Every step logs ``grad_norm_l2`` = ||g_t||_2 and ``grad_norm_l1`` = ||g_t||_1 (the raw
gradient, before clipping) through ``workload.metrics_logger`` as device arrays: the
runner converts them outside the timed region. The ``refined`` submission reads this
sequence to build its schedule.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import optax

from algoperf import spec


def learning_rate_schedule(hyperparameters: spec.Hyperparameters, step_hint: int) -> optax.Schedule:
    """Linear warmup over warmup_factor * step_hint steps, then linear decay to 0 at step_hint."""
    warmup_steps = int(hyperparameters.warmup_factor * step_hint)
    peak = hyperparameters.learning_rate
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, peak, max(warmup_steps, 1)),
            optax.linear_schedule(peak, 0.0, max(step_hint - warmup_steps, 1)),
        ],
        boundaries=[warmup_steps],
    )


def make_optimizer(hyperparameters: spec.Hyperparameters, step_hint: int) -> optax.GradientTransformation:
    """Optional global-norm clipping, then optax.adamw on the warmup-linear-decay schedule."""
    transforms = []
    if getattr(hyperparameters, "grad_clip", None):
        transforms.append(optax.clip_by_global_norm(hyperparameters.grad_clip))
    transforms.append(
        optax.adamw(
            learning_rate=learning_rate_schedule(hyperparameters, step_hint),
            b1=1.0 - hyperparameters.one_minus_beta1,
            b2=hyperparameters.beta2,
            eps=getattr(hyperparameters, "epsilon", 1e-8),
            weight_decay=hyperparameters.weight_decay,
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
    optimizer = make_optimizer(hyperparameters, workload.step_hint)
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
    """One step: mean loss, its gradient, the optax update, and the gradient's l2 and l1 norms."""

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
    norms = {"grad_norm_l2": optax.tree.norm(grads), "grad_norm_l1": optax.tree.norm(grads, ord=1)}
    return optimizer_state, optax.apply_updates(params, updates), new_model_state, loss, norms


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
    if global_step >= workload.step_hint:
        # The learning rate is 0 from here on: further steps only spend the budget.
        raise spec.TrainingCompleteError
    state, opt_update_fn = optimizer_state
    state, params, model_state, loss, norms = train_step(
        workload, opt_update_fn, state, current_param_container, model_state, batch, rng,
        getattr(hyperparameters, "label_smoothing", 0.0),
        getattr(hyperparameters, "dropout_rate", 0.0),
    )
    # Every step, as arrays: the runner converts them at the next eval, outside the timed
    # region, so this forces no device sync.
    if workload.metrics_logger is not None:
        workload.metrics_logger.append_scalar_metrics(
            {**norms, "loss": loss} if global_step % 100 == 0 else norms, global_step
        )
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
