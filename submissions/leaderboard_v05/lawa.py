"""LAWA, latest weight averaging, as in the lawa_ema and lawa_queue entries.

Kaddour, "Stop Wasting My Time! Saving Days of ImageNet and BERT Training with Latest
Weight Averaging" (2022); Sanyal et al., "Early Weight Averaging meets High Learning Rates
for LLM Pre-training" (2023). The entries train NAdamW on the training iterate theta and
hand the runner an average of recent iterates to evaluate. Each ``update_params`` call runs
``steps_per_call`` optimizer steps (drawing its own batches from the queue), where

    start    = ceil(step_hint * lawa_start_factor)
    interval = ceil(step_hint * lawa_interval_scaling)
    steps_per_call = ceil(eval_period_time_sec / (max_allowed_runtime_sec / step_hint)
                          * lawa_inner_steps_frac)

After the optimizer step with 0-based index j, if j >= start and (j - start) % interval == 0,
theta is snapshotted:
    EMA:   avg <- theta (first snapshot), else avg <- beta avg + (1 - beta) theta
    queue: the last k snapshots;  avg = (1/k) sum of them, defined once k are held.
At the end of a call that has an average to show, the runner gets avg and the state keeps
theta; the next call continues from theta. (The entry computes beta = int(lawa_beta):
lawa_beta = 0.2 gives beta = 0, so its "EMA" is the latest snapshot. Kept as is.)

Which snapshots exist depends only on the call index (steps j = call * steps_per_call ...),
so the control flow runs on the host without reading the device; the averages are arrays of
one fixed structure (a ring buffer of k copies for the queue) so a checkpoint restores them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from algoperf import spec
from algoperf.submissions.leaderboard_v05 import common, nadamw


class Plan(NamedTuple):
    start: int
    interval: int
    steps_per_call: int
    queue: int | None  # k for the queue variant; None for the EMA
    beta: float = 0.0


def plan(workload: spec.Workload, hyperparameters: spec.Hyperparameters, queue: bool) -> Plan:
    """The entry's constants from the workload's budget and the point (module docstring)."""
    step_hint = workload.step_hint
    steps_per_eval = workload.eval_period_time_sec / (workload.max_allowed_runtime_sec / step_hint)
    return Plan(
        start=math.ceil(step_hint * hyperparameters.lawa_start_factor),
        interval=math.ceil(step_hint * hyperparameters.lawa_interval_scaling),
        steps_per_call=math.ceil(steps_per_eval * hyperparameters.lawa_inner_steps_frac),
        queue=int(hyperparameters.k) if queue else None,
        beta=0.0 if queue else float(int(hyperparameters.lawa_beta)),
    )


def snapshots_before(p: Plan, step: int) -> int:
    """How many snapshots the steps 0 .. step-1 took."""
    return 0 if step <= p.start else (step - 1 - p.start) // p.interval + 1


def has_average(p: Plan, step: int) -> bool:
    """Whether, after ``step`` optimizer steps, there is an average to hand out."""
    n = snapshots_before(p, step)
    return n >= (p.queue or 1)


class State(NamedTuple):
    theta: Any  # the training iterate while the runner holds the average
    avg: Any  # EMA: the average; queue: k stacked snapshots (ring buffer)


def init(p: Plan, params: spec.ParameterContainer) -> State:
    zeros = jax.tree.map(jnp.zeros_like, params)
    if p.queue is None:
        return State(zeros, jax.tree.map(jnp.zeros_like, params))
    return State(zeros, jax.tree.map(lambda a: jnp.zeros((p.queue, *a.shape), a.dtype), params))


@functools.partial(jax.jit, static_argnums=(0,))
def snapshot(p: Plan, avg: Any, theta: Any, index: jax.Array) -> Any:
    """Record the ``index``-th snapshot (0-based) of theta."""
    if p.queue is None:
        return jax.tree.map(lambda a, t: jnp.where(index == 0, t, p.beta * a + (1.0 - p.beta) * t), avg, theta)
    return jax.tree.map(lambda a, t: a.at[index % p.queue].set(t), avg, theta)


@functools.partial(jax.jit, static_argnums=(0,))
def average(p: Plan, avg: Any) -> Any:
    """The params to evaluate: the EMA, or the mean of the k queued snapshots."""
    if p.queue is None:
        return avg
    return jax.tree.map(lambda a: jnp.sum(a / p.queue, axis=0), avg)


def init_state(
    workload: spec.Workload, model_params: spec.ParameterContainer, hyperparameters: spec.Hyperparameters, queue: bool,
) -> spec.OptimizerState:
    """(optax state, update fn, LAWA plan, LAWA state) with the entries' NAdamW and schedule."""
    optimizer = nadamw.nadamw(
        nadamw.warm_cosine(hyperparameters.learning_rate, int(hyperparameters.warmup_factor * workload.step_hint),
                           workload.step_hint),
        b1=1.0 - hyperparameters.one_minus_beta1, b2=hyperparameters.beta2, weight_decay=hyperparameters.weight_decay,
    )
    p = plan(workload, hyperparameters, queue)
    return optimizer.init(model_params), optimizer.update, p, init(p, model_params)


def run_call(
    workload: spec.Workload,
    current_param_container: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    input_queue: Any,
    optimizer_state: spec.OptimizerState,
    global_step: int,
    rng: spec.RandomState,
) -> spec.UpdateReturn:
    """``steps_per_call`` NAdamW steps from theta; hand out the average once there is one."""
    opt_state, update_fn, p, state = optimizer_state
    first = global_step * p.steps_per_call  # optimizer steps taken by earlier calls
    params = state.theta if has_average(p, first) else current_param_container
    avg, loss = state.avg, None
    for j in range(first, first + p.steps_per_call):
        opt_state, params, model_state, loss = common.train_step(
            workload, update_fn, opt_state, params, model_state, next(input_queue), rng,
            common.label_smoothing(hyperparameters),
        )
        if j >= p.start and (j - p.start) % p.interval == 0:
            avg = snapshot(p, avg, params, jnp.asarray(snapshots_before(p, j), jnp.int32))
    common.log_metrics(workload, global_step, {"loss": loss}, every=1)
    if has_average(p, first + p.steps_per_call):
        return (opt_state, update_fn, p, State(params, avg)), average(p, avg), model_state
    return (opt_state, update_fn, p, State(state.theta, avg)), params, model_state


# The entries' batch-size table (AlgoPerf workload names only; see common.batch_size_lookup).
BATCH_SIZES = {
    "criteo1tb": 262_144, "fastmri": 32, "imagenet_resnet": 512, "imagenet_vit": 1024,
    "librispeech_conformer": 256, "librispeech_deepspeech": 256, "ogbg": 512, "wmt": 128, "mnist": 16,
}


def submission_api(queue: bool) -> tuple[Callable, ...]:
    """An entry's AlgoPerf functions: (init_optimizer_state, update_params, data_selection, get_batch_size).

    The two entries differ only in how they average (``queue``: lawa_queue, else lawa_ema).
    As in the entries, data_selection hands over the input queue itself and each
    update_params call draws its ``steps_per_call`` batches from it.
    """

    def init_optimizer_state(
        workload: spec.Workload,
        model_params: spec.ParameterContainer,
        model_state: spec.ModelAuxiliaryState,
        hyperparameters: spec.Hyperparameters,
        rng: spec.RandomState,
    ) -> spec.OptimizerState:
        del model_state, rng
        return init_state(workload, model_params, hyperparameters, queue=queue)

    def update_params(
        workload: spec.Workload,
        current_param_container: spec.ParameterContainer,
        current_params_types: spec.ParameterTypeTree,
        model_state: spec.ModelAuxiliaryState,
        hyperparameters: spec.Hyperparameters,
        batch: Any,
        loss_type: spec.LossType,
        optimizer_state: spec.OptimizerState,
        eval_results: list[tuple[int, float]],
        global_step: int,
        rng: spec.RandomState,
    ) -> spec.UpdateReturn:
        del current_params_types, loss_type, eval_results
        return run_call(workload, current_param_container, model_state, hyperparameters, batch, optimizer_state,
                        global_step, rng)

    def data_selection(
        workload: spec.Workload,
        input_queue: Iterator[dict[str, spec.Tensor]],
        optimizer_state: spec.OptimizerState,
        current_param_container: spec.ParameterContainer,
        model_state: spec.ModelAuxiliaryState,
        hyperparameters: spec.Hyperparameters,
        global_step: int,
        rng: spec.RandomState,
    ) -> Iterator[dict[str, spec.Tensor]]:
        del workload, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
        return input_queue

    return init_optimizer_state, update_params, data_selection, common.batch_size_lookup(BATCH_SIZES)
