"""Checks that many workload tests share."""

from __future__ import annotations

from typing import Any

import jax

from algoperf import spec


def sgd_step_losses(workload: spec.Workload, params: Any, batch: dict, learning_rate: float,
                    model_state: Any = None) -> tuple[float, float]:
    """The batch's mean training loss before and after one SGD step on it (AlgoPerf's API)."""

    @jax.jit
    def loss(p):
        out, _ = workload.model_fn(p, batch, model_state, spec.ForwardPassMode.TRAIN, jax.random.PRNGKey(3), True)
        terms = workload.loss_fn(batch["targets"], out, batch.get("weights"))
        return terms["summed"] / terms["n_valid_examples"]

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    stepped = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
    return float(value), float(loss(stepped))
