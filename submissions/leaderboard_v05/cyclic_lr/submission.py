"""JAX port of the AlgoPerf v0.5 external-tuning entry cyclic_lr: NAdamW on a cyclic warmup-cosine.

NAdamW (``nadamw.nadamw``) on the entry's schedule (``nadamw.warm_cosine``; the maths of both
in nadamw.py): ``cycles`` repetitions of a linear warmup over ``warmup_factor * step_hint``
steps from 1e-10 to ``learning_rate`` and a cosine back to 1e-10, over ``step_hint`` steps in
all; the first step runs at ``learning_rate`` (the entry sets the schedule after each step).
README: every difference.
"""

from __future__ import annotations

from algoperf import spec
from algoperf.submissions.leaderboard_v05 import common, nadamw


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    """(optax state, update fn)."""
    del model_state, rng
    schedule = nadamw.warm_cosine(
        hyperparameters.learning_rate, int(hyperparameters.warmup_factor * workload.step_hint),
        workload.step_hint, int(hyperparameters.cycles),
    )
    optimizer = nadamw.nadamw(
        schedule, b1=1.0 - hyperparameters.one_minus_beta1, b2=hyperparameters.beta2,
        weight_decay=hyperparameters.weight_decay,
    )
    return optimizer.init(model_params), optimizer.update


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
    state, update_fn = optimizer_state
    state, params, model_state, loss = common.train_step(
        workload, update_fn, state, current_param_container, model_state, batch, rng,
        common.label_smoothing(hyperparameters),
    )
    common.log_metrics(workload, global_step, {"loss": loss})
    return (state, update_fn), params, model_state


# The entry's table (AlgoPerf workload names only; see common.batch_size_lookup).
BATCH_SIZES = {
    "criteo1tb": 262_144, "fastmri": 32, "imagenet_resnet": 512, "imagenet_vit": 1024,
    "librispeech_conformer": 256, "librispeech_deepspeech": 256, "ogbg": 512, "wmt": 128, "mnist": 16,
}
get_batch_size = common.batch_size_lookup(BATCH_SIZES)
data_selection = common.next_batch
