"""JAX port of the AlgoPerf v0.5 external-tuning entry lawa_ema: NAdamW + LAWA (ema of recent iterates).

The maths and the control flow are in lawa.py (LAWA) and nadamw.py (NAdamW, warmup-cosine).
As in the entry, data_selection hands over the input queue itself and each update_params
call runs several optimizer steps, drawing their batches from it; the runner evaluates the
average the call returns. README: every difference.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from algoperf import spec
from algoperf.submissions.leaderboard_v05 import lawa

QUEUE = False


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    """(optax state, update fn, LAWA plan, LAWA state)."""
    del model_state, rng
    return lawa.init_optimizer_state(workload, model_params, hyperparameters, queue=QUEUE)


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
    """``batch`` is the input queue (see data_selection)."""
    del current_params_types, loss_type, eval_results
    return lawa.update_params(workload, current_param_container, model_state, hyperparameters, batch,
                              optimizer_state, global_step, rng)


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
    """The queue itself: update_params draws one batch per inner step."""
    del workload, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
    return input_queue


# The entry's table (AlgoPerf workload names only; see common.batch_size_lookup).
BATCH_SIZES = {
    "criteo1tb": 262_144, "fastmri": 32, "imagenet_resnet": 512, "imagenet_vit": 1024,
    "librispeech_conformer": 256, "librispeech_deepspeech": 256, "ogbg": 512, "wmt": 128, "mnist": 16,
}
get_batch_size = lawa.common.batch_size_lookup(BATCH_SIZES)
