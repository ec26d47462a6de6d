"""Refined schedule (Defazio et al. 2023): AdamW whose LR follows a pilot run's gradient norms.

"When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement" bounds the last
iterate's suboptimality for a schedule eta_t given the gradient norms s_t, and minimises
the bound. With weights u_t = s_t^-2 (SGD, l2 norms) or u_t = s_t^-1 (Adam, per-coordinate
steps, l1 norms), the minimiser is

    w_t = u_t * sum_{p > t} u_p        (t = 0 .. T-1, so w_{T-1} = 0)
    lr_t = learning_rate * w_t / max_k w_k

after a median filter over the norms (window ``window_fraction * T``, 10% by default).
Constant norms give exactly linear decay (the worst-case optimum); large early norms give
a warmup; norms that fall at the end give a fast final anneal.

The norms come from an earlier run of the ``linear_decay`` submission on the same workload
(it logs ``grad_norm_l1`` and ``grad_norm_l2`` every step), found in this order:
  1. hyperparameter ``pilot_trial_dir``: an AlgoPerf trial folder (its submission_metrics.jsonl);
  2. hyperparameter ``pilot_run_id``: an MLflow run (needs a tracking URI);
  3. hyperparameter ``pilot_experiment_dir``: the latest finished linear_decay trial of the
     workload under that folder;
  4. with a tracking URI (hyperparameter ``tracking_uri``, MLFLOW_TRACKING_URI, or an existing
     ./mlflow.db): the latest finished MLflow run tagged algoperf.submission=linear_decay and
     algoperf.workload=<workload>;
  5. the latest finished linear_decay trial of the workload under $ALGOPERF_EXPERIMENT_DIR,
     else ./experiments.
Without one, init_optimizer_state fails with a message saying which run to do first.

The horizon T is ``horizon_factor * step_hint`` (default 1: linear_decay's horizon, so the
two differ only in the schedule's shape). A pilot that stopped before T (it reached the
target) has no norms for its last steps: they are taken as flat at the median of its last
``window_fraction`` of steps, which refines that stretch to linear decay. After T steps the
learning rate is 0 and update_params raises TrainingCompleteError. The pilot run's time is
a cost of this method that its own trial time does not include: report it beside the
score. Update: optax.adamw as in linear_decay, with the refined lr_t.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from algoperf import spec

PILOT_SUBMISSION = "linear_decay"
# Norm name -> power p of the weights u_t = s_t^-p.
NORM_POWERS = {"l1": 1.0, "l2": 2.0}
USABLE_STATUSES = ("reached_target", "missed")
DEFAULT_EXPERIMENT_DIR = "experiments"
DEFAULT_TRACKING_DB = "mlflow.db"

log = logging.getLogger(__name__)


class PilotRunNotFoundError(RuntimeError):
    """No usable gradient-norm sequence of a pilot run; the message says which run to do."""


# --- the refinement ------------------------------------------------------------------


def median_filter(values: Sequence[float], window: int) -> np.ndarray:
    """Running median over ``window`` points centred on each point (an even window grows by
    one to stay centred); the ends are padded with the end values."""
    from scipy.ndimage import median_filter as running_median  # fast for long windows

    x = np.asarray(values, dtype=np.float64)
    if window <= 1:
        return x.copy()
    return running_median(x, size=window | 1, mode="nearest")


def refined_schedule(norms: Sequence[float], power: float, window_fraction: float = 0.1) -> np.ndarray:
    """The refined learning-rate multipliers (peak 1, last 0) for gradient norms ``norms``.

    s = median filter of ``norms`` (window round(window_fraction * T), at least 1);
    u_t = s_t^-power; w_t = u_t * sum_{p>t} u_p; return w / max(w).
    """
    s = np.asarray(norms, dtype=np.float64)
    if s.ndim != 1 or len(s) < 2:
        raise ValueError(f"refined_schedule needs at least 2 gradient norms, got {len(s)}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("refined_schedule needs finite, positive gradient norms (did the pilot run diverge?)")
    s = median_filter(s, max(1, round(window_fraction * len(s))))
    u = s ** (-power)
    # tail[t] = sum_{p > t} u_p: a reversed cumulative sum, shifted by one.
    tail = np.concatenate([np.cumsum(u[::-1])[::-1][1:], [0.0]])
    w = u * tail
    return w / w.max()


def fit_to_horizon(norms: np.ndarray, horizon: int, window_fraction: float = 0.1) -> np.ndarray:
    """The first ``horizon`` norms; a shorter sequence is extended flat at the median of its tail.

    The tail is its last ``window_fraction`` of steps (at least one step).
    """
    if len(norms) >= horizon:
        return norms[:horizon]
    tail = np.median(norms[-max(1, round(window_fraction * len(norms))):])
    return np.concatenate([norms, np.full(horizon - len(norms), tail)])


# --- where the pilot's norms come from -----------------------------------------------


def norms_from_metrics_file(path: str | Path, name: str) -> np.ndarray:
    """The per-step sequence of metric ``name`` in an AlgoPerf trial's submission_metrics.jsonl.

    Later lines win for a repeated step (a resumed trial); missing steps are interpolated.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "submission_metrics.jsonl"
    if not path.is_file():
        raise PilotRunNotFoundError(
            f"{path}: no such file; the pilot trial folder must hold the submission_metrics.jsonl "
            f"of a {PILOT_SUBMISSION} run"
        )
    by_step: dict[int, float] = {}
    with path.open() as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row.get("name") == name:
                    by_step[int(row["step"])] = float(row["value"])
    return _dense(by_step, f"{path} (metric {name!r})")


def _dense(by_step: dict[int, float], where: str) -> np.ndarray:
    if len(by_step) < 2:
        raise PilotRunNotFoundError(
            f"{where}: {len(by_step)} value(s); a {PILOT_SUBMISSION} pilot logs the gradient norm "
            "every step, so run it for at least a few steps"
        )
    steps = np.array(sorted(by_step))
    values = np.array([by_step[s] for s in steps])
    return np.interp(np.arange(steps[-1] + 1), steps, values)


def find_pilot_trial(experiment_dirs: Sequence[str | Path], workload_name: str) -> Path | None:
    """The most recently finished, usable linear_decay trial of ``workload_name``, if any."""
    found: list[tuple[float, Path]] = []
    for root in experiment_dirs:
        root = Path(root)
        if not root.is_dir():
            continue
        for result_file in root.rglob(f"{workload_name}_jax/trial_*/trial_result.json"):
            try:
                result = json.loads(result_file.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if (
                result.get("submission") == PILOT_SUBMISSION
                and result.get("workload") == workload_name
                and result.get("status") in USABLE_STATUSES
                and (result_file.parent / "submission_metrics.jsonl").is_file()
            ):
                found.append((result_file.stat().st_mtime, result_file.parent))
    return max(found)[1] if found else None


def tracking_uri(hyperparameters: spec.Hyperparameters) -> str | None:
    """The MLflow tracking URI if one is configured, else None.

    The hyperparameter ``tracking_uri``, else $MLFLOW_TRACKING_URI, else a URI set in this
    process, else ./mlflow.db if that file exists (where ``algoperf run`` tracks by default).
    """
    uri = getattr(hyperparameters, "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if "mlflow" in sys.modules:  # a tracker in this process may have set it
        import mlflow

        if mlflow.tracking._tracking_service.utils.is_tracking_uri_set():
            return mlflow.get_tracking_uri()
    default = Path.cwd() / DEFAULT_TRACKING_DB
    return f"sqlite:///{default}" if default.is_file() else None


def norms_from_mlflow(uri: str, workload_name: str, name: str, run_id: str | None = None) -> tuple[np.ndarray, str] | None:
    """(norm sequence, run id) of MLflow run ``run_id``, or of the latest finished pilot run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if run_id is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            experiment_ids,
            filter_string=(
                f"tags.`algoperf.submission` = '{PILOT_SUBMISSION}' "
                f"AND tags.`algoperf.workload` = '{workload_name}' AND attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=20,
        ) if experiment_ids else []
        runs = [r for r in runs if r.data.tags.get("algoperf.status", "reached_target") in USABLE_STATUSES]
        for run in runs:
            history = client.get_metric_history(run.info.run_id, name)
            if len(history) >= 2:
                return _dense({m.step: m.value for m in history}, f"MLflow run {run.info.run_id}"), run.info.run_id
        return None
    history = client.get_metric_history(run_id, name)
    return _dense({m.step: m.value for m in history}, f"MLflow run {run_id} at {uri} (metric {name!r})"), run_id


def load_pilot_norms(workload_name: str, hyperparameters: spec.Hyperparameters) -> tuple[np.ndarray, str]:
    """The pilot's gradient norms (the metric of ``norm``) and a description of where they came from."""
    norm = getattr(hyperparameters, "norm", "l1")
    name = f"grad_norm_{norm}"
    trial_dir = getattr(hyperparameters, "pilot_trial_dir", None)
    if trial_dir:
        return norms_from_metrics_file(trial_dir, name), f"trial {trial_dir}"
    uri = tracking_uri(hyperparameters)
    run_id = getattr(hyperparameters, "pilot_run_id", None)
    if run_id:
        if uri is None:
            raise PilotRunNotFoundError(
                f"hyperparameter pilot_run_id={run_id!r} names an MLflow run, but no tracking URI is "
                "configured: set MLFLOW_TRACKING_URI or the hyperparameter tracking_uri"
            )
        norms, _ = norms_from_mlflow(uri, workload_name, name, run_id)
        return norms, f"MLflow run {run_id}"
    named_dir = getattr(hyperparameters, "pilot_experiment_dir", None)
    if uri is not None and not named_dir:
        found = norms_from_mlflow(uri, workload_name, name)
        if found is not None:
            return found[0], f"MLflow run {found[1]} at {uri}"
    roots = [named_dir or os.environ.get("ALGOPERF_EXPERIMENT_DIR") or DEFAULT_EXPERIMENT_DIR]
    pilot = find_pilot_trial(roots, workload_name)
    if pilot is not None:
        return norms_from_metrics_file(pilot, name), f"trial {pilot.resolve()}"
    searched_mlflow = uri is not None and not named_dir
    looked = (f"MLflow at {uri} and " if searched_mlflow else "") + f"experiment folder {Path(roots[0]).resolve()}"
    raise PilotRunNotFoundError(
        f"refined needs the gradient norms of an earlier finished {PILOT_SUBMISSION} run of workload "
        f"{workload_name!r} and found none ({looked}). Run it first: "
        f"`algoperf run --submission {PILOT_SUBMISSION} --workload {workload_name}` (same experiment "
        "folder or MLflow server), then run refined again; or name the pilot with the hyperparameter "
        "pilot_trial_dir (a trial folder) or pilot_run_id (an MLflow run id)"
    )


# --- the optimizer -------------------------------------------------------------------


def learning_rate_schedule(multipliers: np.ndarray, peak: float) -> optax.Schedule:
    """lr at optax count k: peak * multipliers[k], and 0 after the last one."""
    table = jnp.asarray(np.append(multipliers, 0.0) * peak, dtype=jnp.float32)
    last = len(multipliers)

    def schedule(count: jax.Array) -> jax.Array:
        return table[jnp.minimum(count, last)]

    return schedule


def make_optimizer(hyperparameters: spec.Hyperparameters, multipliers: np.ndarray) -> optax.GradientTransformation:
    """Optional global-norm clipping, then optax.adamw on the refined schedule."""
    transforms = []
    if getattr(hyperparameters, "grad_clip", None):
        transforms.append(optax.clip_by_global_norm(hyperparameters.grad_clip))
    transforms.append(
        optax.adamw(
            learning_rate=learning_rate_schedule(multipliers, hyperparameters.learning_rate),
            b1=1.0 - hyperparameters.one_minus_beta1,
            b2=hyperparameters.beta2,
            eps=getattr(hyperparameters, "epsilon", 1e-8),
            weight_decay=hyperparameters.weight_decay,
        )
    )
    return optax.chain(*transforms)


def schedule_for(workload: spec.Workload, hyperparameters: spec.Hyperparameters) -> np.ndarray:
    """Read the pilot's norms and refine them into this run's multipliers (length = horizon)."""
    norm = getattr(hyperparameters, "norm", "l1")
    if norm not in NORM_POWERS:
        raise ValueError(f"refined: hyperparameter norm must be one of {', '.join(NORM_POWERS)}, got {norm!r}")
    norms, source = load_pilot_norms(workload.name, hyperparameters)
    window_fraction = getattr(hyperparameters, "window_fraction", 0.1)
    horizon = max(2, round(getattr(hyperparameters, "horizon_factor", 1.0) * workload.step_hint))
    multipliers = refined_schedule(fit_to_horizon(norms, horizon, window_fraction), NORM_POWERS[norm], window_fraction)
    log.info("refined: %d-step schedule from %d %s gradient norms of %s", horizon, len(norms), norm, source)
    return multipliers


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    """Untimed, like model initialisation: reading the pilot run happens here."""
    del model_state, rng
    multipliers = schedule_for(workload, hyperparameters)
    optimizer = make_optimizer(hyperparameters, multipliers)
    return optimizer.init(model_params), optimizer.update, len(multipliers)


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
    state, opt_update_fn, horizon = optimizer_state
    if global_step >= horizon:
        # The refined learning rate is 0 from here on: further steps only spend the budget.
        raise spec.TrainingCompleteError
    state, params, model_state, loss, grad_norm = train_step(
        workload, opt_update_fn, state, current_param_container, model_state, batch, rng,
        getattr(hyperparameters, "label_smoothing", 0.0),
        getattr(hyperparameters, "dropout_rate", 0.0),
    )
    # Arrays, not floats: the runner converts them outside the timed region.
    if global_step % 100 == 0 and workload.metrics_logger is not None:
        workload.metrics_logger.append_scalar_metrics({"loss": loss, "grad_norm": grad_norm}, global_step)
    return (state, opt_update_fn, horizon), params, model_state


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
