"""SGD with heavy-ball momentum, linear warmup and linear decay: AlgoPerf's target-setting Momentum.

Update (Polyak 1964, as optax.sgd(nesterov=False)), with mu = 1 - one_minus_beta1 and the
weight decay added to the gradient before the momentum (an L2 penalty, as in AlgoPerf's
target-setting runs), per step t:
    b_t = mu b_{t-1} + (g_t + wd p_{t-1})
    p_t = p_{t-1} - lr_t b_t
lr_t rises linearly from 0 to ``learning_rate`` over ``warmup_factor * step_hint`` steps,
then falls linearly to ``end_factor * learning_rate`` over
``decay_steps_factor * (step_hint - warmup_steps)`` steps and stays there. Built from
``optax.add_decayed_weights`` + ``optax.sgd`` and optax's linear schedules. Optional:
``grad_clip`` (global norm), ``label_smoothing``, ``dropout_rate``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import optax

from algoperf import spec


def learning_rate_schedule(hyperparameters: spec.Hyperparameters, step_hint: int) -> optax.Schedule:
    """Linear warmup to learning_rate, then linear decay to end_factor * learning_rate."""
    warmup_steps = int(hyperparameters.warmup_factor * step_hint)
    decay_steps = max(int(hyperparameters.decay_steps_factor * (step_hint - warmup_steps)), 1)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, hyperparameters.learning_rate, max(warmup_steps, 1)),
            optax.linear_schedule(
                hyperparameters.learning_rate,
                hyperparameters.learning_rate * hyperparameters.end_factor,
                decay_steps,
            ),
        ],
        boundaries=[warmup_steps],
    )


def make_optimizer(
    hyperparameters: spec.Hyperparameters, step_hint: int, nesterov: bool = False
) -> optax.GradientTransformation:
    """Optional clipping, L2 weight decay into the gradient, then SGD with momentum
    (heavy-ball, or Nesterov's: ``submissions/sgd_nesterov`` is this module with ``nesterov=True``)."""
    transforms = []
    if getattr(hyperparameters, "grad_clip", None):
        transforms.append(optax.clip_by_global_norm(hyperparameters.grad_clip))
    transforms += [
        optax.add_decayed_weights(hyperparameters.weight_decay),
        optax.sgd(
            learning_rate=learning_rate_schedule(hyperparameters, step_hint),
            momentum=1.0 - hyperparameters.one_minus_beta1,
            nesterov=nesterov,
        ),
    ]
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
