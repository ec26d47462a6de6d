"""What every leaderboard_v05 port shares: the loss-and-gradient step and the AlgoPerf plumbing.

The PyTorch originals compute the mean loss over valid examples
``loss = summed / n_valid_examples`` with the point's ``label_smoothing`` and leave dropout
to the model the runner built with the point's ``dropout_rate`` (PyTorch AlgoPerf sets it at
``init_model_fn``); these helpers do the same in JAX.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import optax

from algoperf import spec


def loss_and_grad(
    workload: spec.Workload,
    params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    batch: dict[str, spec.Tensor],
    rng: spec.RandomState,
    label_smoothing: float,
) -> tuple[tuple[jax.Array, spec.ModelAuxiliaryState], spec.ParameterContainer]:
    """((mean training loss, new model state), its gradient) at ``params``."""

    def loss_fn(p):
        logits, new_model_state = workload.model_fn(
            p, batch, model_state, spec.ForwardPassMode.TRAIN, rng, update_batch_norm=True,
        )
        loss = workload.loss_fn(
            label_batch=batch["targets"], logits_batch=logits,
            mask_batch=batch.get("weights"), label_smoothing=label_smoothing,
        )
        return loss["summed"] / loss["n_valid_examples"], new_model_state

    return jax.value_and_grad(loss_fn, has_aux=True)(params)


def label_smoothing(hyperparameters: spec.Hyperparameters) -> float:
    """The point's label smoothing, 0 where it has none (as the originals read it)."""
    return getattr(hyperparameters, "label_smoothing", 0.0)


def log_metrics(workload: spec.Workload, global_step: int, metrics: Mapping[str, Any], every: int = 100) -> None:
    """Log arrays (not floats: the runner converts them outside the timed region)."""
    if global_step % every == 0 and workload.metrics_logger is not None:
        workload.metrics_logger.append_scalar_metrics(dict(metrics), global_step)


def batch_size_lookup(table: Mapping[str, int]) -> Callable[[str], int]:
    """``get_batch_size`` over the original's table of AlgoPerf workload names.

    Unknown names raise ValueError, as the originals do: the runner then derives a
    small-suite size from the reference workload's (algoperf.submission.batch_size), the
    same rule the published JAX entries go through.
    """

    def get_batch_size(workload_name: str) -> int:
        if workload_name not in table:
            raise ValueError(f"Unsupported workload name: {workload_name}.")
        return table[workload_name]

    return get_batch_size


def next_batch(
    workload: spec.Workload,
    input_queue: Iterator[dict[str, spec.Tensor]],
    optimizer_state: spec.OptimizerState,
    current_param_container: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    global_step: int,
    rng: spec.RandomState,
) -> dict[str, spec.Tensor]:
    """AlgoPerf's data_selection: the next batch of the pre-shuffled queue."""
    del workload, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
    return next(input_queue)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def train_step(
    workload: spec.Workload,
    opt_update_fn: Any,
    optimizer_state: Any,
    params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    batch: dict[str, spec.Tensor],
    rng: spec.RandomState,
    smoothing: float,
):
    """One plain step: gradient at params, the optax update; returns (state, params, model state, loss)."""
    (loss, new_model_state), grads = loss_and_grad(workload, params, model_state, batch, rng, smoothing)
    updates, optimizer_state = opt_update_fn(grads, optimizer_state, params)
    return optimizer_state, optax.apply_updates(params, updates), new_model_state, loss
