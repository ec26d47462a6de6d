"""Schedule-Free AdamW (Defazio et al. 2024): no decay schedule; evaluates an averaged iterate.

"The Road Less Scheduled" (optax.contrib.schedule_free_adamw). With b1 = 1 - one_minus_beta1,
gradients are taken at y, the base step moves z, and x averages the z's:
    y_t = (1 - b1) z_t + b1 x_t
    z_{t+1} = z_t - lr_t (g(y_t) / (sqrt(v^_t) + eps) + wd y_t)     (RMSProp step, bias-corrected v)
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},   c_{t+1} = lr_max^p / sum_{i<=t+1} lr_max,i^p
where lr_t is a linear warmup over ``warmup_factor * step_hint`` steps then constant,
lr_max the largest lr so far and p = ``weight_lr_power``. optax has no polynomial
weighting (the AlgoPerf entry's r = 0.75, c ~ t^r lr_max^p): here r = 0.

The optimizer state is (optax state, update function, y): it always holds the training
iterate y, the same buffers as the params update_params returns (no copy). prepare_for_eval
hands the runner x (optax.contrib.schedule_free_eval_params) to evaluate, and update_params
always continues from the y in the state, never from the x the runner hands back. The
state's structure never changes, so a checkpoint taken at an eval restores y exactly. Hyperparameters default
to the AlgoPerf v0.5 winning self-tuning point (used when ``hyperparameters`` is None, as
in the self-tuning ruleset, or for any key a point leaves out).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import optax

from algoperf import spec

# The AlgoPerf v0.5 self-tuning winner's point. Its warmup was 0.75 * 2% of step_hint.
DEFAULTS = {
    "learning_rate": 0.0025,
    "one_minus_beta1": 0.1,
    "beta2": 0.9955159689799007,
    "weight_decay": 0.08121616522670176,
    "warmup_factor": 0.015,
    "weight_lr_power": 2.0,
    "label_smoothing": 0.2,
    "dropout_rate": 0.1,
}


def hparam(hyperparameters: spec.Hyperparameters, name: str) -> Any:
    """``hyperparameters.name``, or its default when absent (or when hyperparameters is None)."""
    return getattr(hyperparameters, name, DEFAULTS[name])


def make_optimizer(hyperparameters: spec.Hyperparameters, step_hint: int) -> optax.GradientTransformation:
    """optax.contrib.schedule_free_adamw with a warmup of warmup_factor * step_hint steps."""
    return optax.contrib.schedule_free_adamw(
        learning_rate=hparam(hyperparameters, "learning_rate"),
        warmup_steps=max(int(hparam(hyperparameters, "warmup_factor") * step_hint), 1),
        b1=1.0 - hparam(hyperparameters, "one_minus_beta1"),
        b2=hparam(hyperparameters, "beta2"),
        weight_decay=hparam(hyperparameters, "weight_decay"),
        weight_lr_power=hparam(hyperparameters, "weight_lr_power"),
    )


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    """(optax state, update function, training iterate y: the initial params)."""
    del model_state, rng
    optimizer = make_optimizer(hyperparameters, workload.step_hint)
    return optimizer.init(model_params), optimizer.update, model_params


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
    # After an eval the runner hands back x (the eval iterate): training continues from y.
    del current_param_container, current_params_types, loss_type, eval_results, train_state
    state, opt_update_fn, y = optimizer_state
    state, params, model_state, loss, grad_norm = train_step(
        workload, opt_update_fn, state, y, model_state, batch, rng,
        hparam(hyperparameters, "label_smoothing"), hparam(hyperparameters, "dropout_rate"),
    )
    # Arrays, not floats: the runner converts them outside the timed region.
    if global_step % 100 == 0 and workload.metrics_logger is not None:
        workload.metrics_logger.append_scalar_metrics({"loss": loss, "grad_norm": grad_norm}, global_step)
    return (state, opt_update_fn, params), params, model_state


eval_params = jax.jit(optax.contrib.schedule_free_eval_params)


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
    """Return x = (y - (1 - b1) z) / b1 to evaluate; keep y in the optimizer state."""
    del workload, current_param_container, current_params_types, hyperparameters, loss_type
    del eval_results, global_step, rng
    state, opt_update_fn, y = optimizer_state
    return optimizer_state, eval_params(state, y), model_state


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
