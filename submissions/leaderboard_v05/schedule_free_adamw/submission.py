"""JAX port of the AlgoPerf v0.5 external-tuning entry schedule_free_adamw (Schedule-Free AdamW).

The update is ``schedule_free.adamw`` (its docstring has the maths): gradients at
y = b1 x + (1 - b1) z, z an RMSProp step with weight decay at x, x the (k+1)^0.75 lr_max^2
weighted average of the z's; lr a linear warmup over ``warmup_factor * step_hint`` steps, then
constant. The runner holds x, which is also what is evaluated (no prepare_for_eval, as in the
entry). Fixed as in the entry: eps 1e-8, weight_lr_power 2, r 0.75. README: every difference.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import optax

from algoperf import spec
from algoperf.submissions.leaderboard_v05 import common, schedule_free


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    """(Schedule-Free state, the transformation)."""
    del model_state, rng
    optimizer = schedule_free.adamw(
        learning_rate=hyperparameters.learning_rate,
        warmup_steps=int(hyperparameters.warmup_factor * workload.step_hint),
        b1=1.0 - hyperparameters.one_minus_beta1,
        b2=hyperparameters.beta2,
        weight_decay=hyperparameters.weight_decay,
    )
    return optimizer.init(model_params), optimizer


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def train_step(workload: spec.Workload, optimizer: Any, state: Any, x: Any, model_state: Any,
               batch: dict[str, spec.Tensor], rng: spec.RandomState, smoothing: float):
    """Gradient at y = extrapolate(x, z), then the Schedule-Free update of (z, x)."""
    y = optimizer.extrapolate(state, x)
    (loss, new_model_state), grads = common.loss_and_grad(workload, y, model_state, batch, rng, smoothing)
    updates, state = optimizer.update(grads, state, x)
    return state, optax.apply_updates(x, updates), new_model_state, loss


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
) -> spec.UpdateReturn:
    del current_params_types, loss_type, eval_results
    state, optimizer = optimizer_state
    state, params, model_state, loss = train_step(
        workload, optimizer, state, current_param_container, model_state, batch, rng,
        common.label_smoothing(hyperparameters),
    )
    common.log_metrics(workload, global_step, {"loss": loss})
    return (state, optimizer), params, model_state


# The entry's table (AlgoPerf workload names only; see common.batch_size_lookup).
BATCH_SIZES = {
    "criteo1tb": 262_144, "fastmri": 16, "imagenet_resnet": 1024, "imagenet_vit": 1024,
    "librispeech_conformer": 224, "librispeech_deepspeech": 128, "ogbg": 512, "wmt": 128, "mnist": 16,
    "imagenet_resnet_gelu": 512, "imagenet_resnet_silu": 512,
}
get_batch_size = common.batch_size_lookup(BATCH_SIZES)
data_selection = common.next_batch
