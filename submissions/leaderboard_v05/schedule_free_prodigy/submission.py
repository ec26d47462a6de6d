"""JAX port of the AlgoPerf v0.5 external-tuning entry schedule_free_prodigy.

Schedule-Free Prodigy (``schedule_free.prodigy``, maths in its docstring): Prodigy's
distance estimate d sets the step size d * lr of a Schedule-Free AdamW-like update; x is the
(k+1)^0.75-weighted average of the z's. lr is a linear warmup (k+1)/W over
W = int(0.075 * step_hint) steps, then 1. Fixed as in the entry: b1 0.9, b2 0.9955, r 0.75,
eps 1e-8, d0 1e-6, d_coef 1, label smoothing 0.2; the search space tunes weight_decay only.

The entry's optimizer calls its closure twice per step: once at x (a gradient it then
discards; the model's batch-norm statistics are updated by that pass) and once at y. The
port does the same, so a step costs what the entry's does (the discarded gradient's norm is
logged, which keeps XLA from removing that pass). README: every difference.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from algoperf import spec
from algoperf.submissions.leaderboard_v05 import common, schedule_free

LABEL_SMOOTHING = 0.2
WARMUP_FRACTION = 0.075


def lr_warmup(step_hint: int) -> optax.Schedule:
    """(step + 1) / W for step < W, then 1; W = int(0.075 step_hint) (1 when that is 0)."""
    warmup = max(int(WARMUP_FRACTION * step_hint), 1)
    return lambda step: jnp.minimum((step + 1.0) / warmup, 1.0)


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    """(Schedule-Free Prodigy state, the transformation)."""
    del model_state, rng
    optimizer = schedule_free.prodigy(lr_warmup(workload.step_hint), weight_decay=hyperparameters.weight_decay)
    return optimizer.init(model_params), optimizer


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def train_step(workload: spec.Workload, optimizer: Any, state: Any, x: Any, model_state: Any,
               batch: dict[str, spec.Tensor], rng: spec.RandomState):
    """The entry's two passes (at x, discarded; at y), then the update of (z, x)."""
    (_, model_state), grads_at_x = common.loss_and_grad(workload, x, model_state, batch, rng, LABEL_SMOOTHING)
    y = optimizer.extrapolate(state, x)
    (loss, new_model_state), grads = common.loss_and_grad(workload, y, model_state, batch, rng, LABEL_SMOOTHING)
    updates, state = optimizer.update(grads, state, x)
    return state, optax.apply_updates(x, updates), new_model_state, loss, optax.tree.norm(grads_at_x)


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
    del current_params_types, loss_type, eval_results, hyperparameters
    state, optimizer = optimizer_state
    state, params, model_state, loss, grad_norm_at_x = train_step(
        workload, optimizer, state, current_param_container, model_state, batch, rng,
    )
    common.log_metrics(workload, global_step, {"loss": loss, "grad_norm_at_x": grad_norm_at_x})
    return (state, optimizer), params, model_state


# The entry's table (AlgoPerf workload names only; see common.batch_size_lookup).
BATCH_SIZES = {
    "criteo1tb": 262_144, "fastmri": 32, "imagenet_resnet": 1024, "imagenet_vit": 1024,
    "librispeech_conformer": 224, "librispeech_deepspeech": 256, "ogbg": 512, "wmt": 128, "mnist": 16,
}
get_batch_size = common.batch_size_lookup(BATCH_SIZES)
data_selection = common.next_batch
