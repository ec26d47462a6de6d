"""Run one trial: a submission trains a workload under AlgoPerf's timing rules.

The rules, as implemented here (the clock lives in ``algoperf.runner.clock``):

* Model and optimizer initialisation are not timed (as in AlgoPerf). From then on the
  submission is charged for data_selection, update_params, prepare_for_eval, compilation
  and the runner's own per-step work.
* An eval is due after step 1, after a step that ends ``eval_period_time_sec`` or more of
  wall time after the end of the last eval (AlgoPerf's rule), and when training ends (TrainingCompleteError or
  --max-steps). Before a due eval the device is drained and the clock read exactly; if
  the budget (``max_allowed_runtime_sec`` x budget factor) is spent, the trial stops with
  no further eval. Eval and logging time are measured and not charged.
* Each eval covers the eval-train subset, validation and test. The trial stops when the
  validation and test targets are both reached, the budget is spent, the submission
  raises TrainingCompleteError, --max-steps is hit, or the model diverges (a non-finite
  loss or parameter at an eval: a result, status 'diverged', not a crash).
* Time to result = accumulated submission time at the first eval that reaches the
  validation target.

Nothing forces a device sync per step: the host clock is read once per step without
waiting (``TrialClock.peek``) to keep ``train_state`` current (``algoperf.runner.train_state``)
and to notice that an eval or the budget may be due. An exception in an eval is recorded
and training goes on (``algoperf.runner.eval_errors``). Every trial starts cold
(``cold_start``): what ran before it in the same process cannot shorten its charged time.
Where this differs from AlgoPerf's runner on purpose: docs/differences.md.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import jax

from algoperf import registry, spec
from algoperf.runner import checkpoint
from algoperf.runner.clock import TrialClock
from algoperf.runner.device import all_finite, cold_start, replicated, serial_host_blas
from algoperf.runner.eval_errors import EvalErrors
from algoperf.runner.failure import TrialFailure, describe_failure
from algoperf.runner.metrics_logger import MetricsLogger
from algoperf.runner.observers import TrialObserver
from algoperf.runner.records import record_result, record_setup_failure, trial_meta
from algoperf.runner.resume import CountingIterator, resume_point, trial_identity
from algoperf.runner.stall import StallWatch, stall_failure, stall_message, window_from_env
from algoperf.runner.step_keys import StepKeys
from algoperf.runner.train_state import TrainState
from algoperf.runner.trial_log import TrialWriter
from algoperf.runner.types import DIVERGED, FAILED, MISSED, REACHED, TrialConfig, TrialResult
from algoperf.submission.loading import Submission, load_submission
from algoperf.submission.search_space import make_hyperparameters


def run_trial(
    config: TrialConfig,
    observer: TrialObserver | None = None,
    submission: Submission | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> TrialResult:
    """Run one trial to its end and write its AlgoPerf-format directory.

    Raises ``SubmissionError``/``UnknownNameError`` for a broken setup (before any
    training). An exception raised by submission code during training ends the trial
    as 'failed' with its traceback in the result; the CSV written so far stays valid.

    A trial folder left by a killed attempt (meta data but no trial_result.json) is
    resumed: from its latest checkpoint if there is one (else from step 0), with
    ``preemption_count`` = the number of earlier attempts, a new meta_data_<p>.json,
    and the rows the killed attempt logged after that checkpoint dropped. ``extra_meta``
    is merged into the meta data (the scheduler records where the trial ran).
    """
    # Submissions that build on earlier runs (e.g. `refined`) look for them here.
    os.environ["ALGOPERF_EXPERIMENT_DIR"] = str(Path(config.experiment_dir).resolve())
    submission = submission or load_submission(config.submission, style=config.submission_style)
    log = TrialWriter(config.path)
    try:  # what one workload cannot do fails this trial, not the campaign
        workload = registry.get_workload(config.workload, **config.workload_kwargs)
        batch = submission.batch_size_for(workload, config.workload, config.batch_sizes)
    except Exception as e:  # noqa: BLE001 - recorded as a failed trial with its reason
        return record_setup_failure(config, submission, log, e, observer, extra_meta)
    hyperparameters = make_hyperparameters(config.hyperparameters)
    batch_size = batch.size
    preemption_count, resume_step = resume_point(config, trial_identity(config, submission, batch_size))
    log.write_hparams(config.hyperparameters)
    meta = trial_meta(config, submission)
    meta["batch_size"] = batch_size
    meta["batch_size_source"] = batch.source
    meta["preemption_count"] = preemption_count
    meta["resumed_from_step"] = resume_step
    meta.update(extra_meta or {})
    log.write_meta(meta, preemption_count=preemption_count)
    if observer:
        observer.on_start(config, meta)

    cold_start()
    serial_host_blas()
    metrics_logger = MetricsLogger()
    workload.attach_metrics_logger(metrics_logger)
    watch = StallWatch(window_from_env(jax.default_backend()), lambda idle_s: _record_stall(state, watch, idle_s))
    clock = TrialClock()
    state = _TrialState(config, workload, submission, hyperparameters, batch_size, clock, log, metrics_logger, observer)
    state.preemption_count = preemption_count
    if observer is not None and hasattr(observer, "attach_progress"):
        observer.attach_progress(state.progress)  # optional hook: live step/time for a progress view
    try:
        with watch.watching():
            state.initialise()
            if resume_step is not None:
                state.restore()
                log.write_meta({**meta, "resume": state.resume_info}, preemption_count=preemption_count)
            state.train()
    except Exception as e:  # submission code (or its data) failed: a recorded result, not a lost trial
        state.stop_reason = "error" if clock.started else "setup"  # setup: before the clock started
        state.failure = describe_failure(e, submission.path)
    finally:
        state.close()
    return record_result(state.result(), log, observer, state.failure, metrics_logger.drain())


def _record_stall(state: _TrialState, watch: StallWatch, idle_s: float) -> None:
    """Record a stuck trial as failed; runs on the watch's thread, the process ends right after."""
    state.stop_reason, state.failure = "stalled", stall_failure(idle_s, watch.window_s)
    print(f"{state.config.path}: {stall_message(idle_s, watch.window_s)}", file=sys.stderr, flush=True)
    record_result(state.result(), state.log, state.observer, state.failure, state.metrics_logger.drain())


class _TrialState:
    """The loop of one trial and its bookkeeping (AlgoPerf's ``train_state``)."""

    def __init__(self, config, workload, submission, hyperparameters, batch_size, clock, log, metrics_logger, observer):
        self.config, self.workload, self.submission = config, workload, submission
        self.hyperparameters, self.batch_size, self.clock = hyperparameters, batch_size, clock
        self.log, self.metrics_logger, self.observer = log, metrics_logger, observer
        self.budget = workload.max_allowed_runtime_sec * config.budget_factor
        self.global_step = 0
        self.eval_results: list[tuple[int, dict[str, float]]] = []
        self.time_to_result: float | None = None
        self.validation_reached = self.test_reached = False
        self.stop_reason = "unknown"
        self.failure: TrialFailure | None = None
        self.diverged = False
        self.preemption_count = 0
        self.train_state = TrainState(clock, self.budget)
        self.eval_errors = EvalErrors(config.path)
        # Clock reading at the end of the last eval (None: none yet in this attempt).
        self.last_eval_end: float | None = None
        # Resume bookkeeping (algoperf.runner.checkpoint): saved at evals, restored by ``restore``.
        self.resume_info: dict[str, Any] | None = None
        self._elapsed_before = 0.0
        self._checkpointer = checkpoint.Checkpointer(config.path) if config.checkpoints else None

    def initialise(self) -> None:
        """Data, model and optimizer state (untimed, as in AlgoPerf)."""
        w, cfg = self.workload, self.config
        # AlgoPerf's derivation: the seed's key is split once (mixing its two 32-bit
        # halves) before train_once splits it into data, optimizer, model and step keys.
        rng, _ = jax.random.split(jax.random.PRNGKey(cfg.seed), 2)
        data_rng, opt_init_rng, model_init_rng, self.rng = jax.random.split(rng, 4)
        self.step_keys = StepKeys(self.rng)
        self.step_keys(0)  # compile and fill the first chunk before the clock starts
        self.input_queue = CountingIterator(w._build_input_queue(data_rng, "train", cfg.data_dir, self.batch_size))
        dropout_rate = getattr(self.hyperparameters, "dropout_rate", None)
        aux_dropout_rate = getattr(self.hyperparameters, "aux_dropout_rate", None)
        self.params, self.model_state = replicated(w.init_model_fn(model_init_rng, dropout_rate, aux_dropout_rate))
        # Replicated over the trial's devices before the clock starts: an optimizer state
        # whose arrays (e.g. a step count) lack the sharding the first step's outputs
        # have would make the jitted step compile a second time at step 2, on the clock.
        self.optimizer_state = replicated(self.submission.init_optimizer_state(
            w, self.params, self.model_state, self.hyperparameters, opt_init_rng
        ))
        jax.block_until_ready((self.params, self.optimizer_state))
        self.eval_batch_size = getattr(self.submission.module, "get_eval_batch_size", lambda _: w.eval_batch_size)(cfg.workload)

    def _eval_due(self, now: float, submission_time: float, training_complete: bool) -> bool:
        """Whether to stop for an eval (or the budget) after the step that ended at ``now``."""
        if training_complete or submission_time >= self.budget:
            return True
        if self.config.eval_every_steps:  # a schedule in steps: the same after a resume
            return self.global_step == 1 or self.global_step % self.config.eval_every_steps == 0
        return self.last_eval_end is None or now - self.last_eval_end >= self.workload.eval_period_time_sec

    def train(self) -> None:
        w, sub, hp, cfg = self.workload, self.submission, self.hyperparameters, self.config
        clock = self.clock
        clock.start(already_elapsed=self._elapsed_before)
        train_state = self.train_state
        train_state.started()
        # Only to an update_params that names the parameter, as AlgoPerf passes it.
        extra = {"train_state": train_state.view} if sub.needs_train_state else {}
        while True:
            data_rng, update_rng, prep_rng, eval_rng = self.step_keys(self.global_step)
            batch = sub.data_selection(
                w, self.input_queue, self.optimizer_state, self.params, self.model_state, hp, self.global_step, data_rng
            )
            training_complete = False
            try:
                self.optimizer_state, self.params, self.model_state = sub.update_params(
                    workload=w, current_param_container=self.params, current_params_types=w.model_params_types,
                    model_state=self.model_state, hyperparameters=hp, batch=batch, loss_type=w.loss_type,
                    optimizer_state=self.optimizer_state, eval_results=self.eval_results,
                    global_step=self.global_step, rng=update_rng, **extra,
                )
            except spec.TrainingCompleteError:
                training_complete = True
            self.global_step += 1
            if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                training_complete = True
            # One host clock reading per step; exact time only once something may be due.
            now = clock.now()
            if not self._eval_due(now, train_state.step_ended(now), training_complete):
                continue
            del batch
            submission_time = clock.charge(wait_for=(self.params, self.optimizer_state, self.model_state))
            if submission_time >= self.budget:
                self.stop_reason = "budget"
                return
            if sub.prepare_for_eval is not None:
                self.optimizer_state, eval_params, self.model_state = sub.prepare_for_eval(
                    workload=w, current_param_container=self.params, current_params_types=w.model_params_types,
                    model_state=self.model_state, hyperparameters=hp, loss_type=w.loss_type,
                    optimizer_state=self.optimizer_state, eval_results=self.eval_results,
                    global_step=self.global_step, rng=prep_rng,
                )
                self.params = eval_params
                submission_time = clock.charge(wait_for=(self.params, self.optimizer_state, self.model_state))
                if submission_time >= self.budget:
                    self.stop_reason = "budget"
                    return
            self._evaluate(eval_rng)
            if self.diverged:
                self.stop_reason = "diverged"
                return
            if self.validation_reached and self.test_reached:
                self.stop_reason = "targets_reached"
                return
            if training_complete:
                self.stop_reason = "max_steps" if cfg.max_steps is not None and self.global_step >= cfg.max_steps else "training_complete"
                return
            self.save_checkpoint()  # the trial goes on: a preemption from here resumes here
            train_state.after_eval()

    def _evaluate(self, eval_rng: Any) -> None:
        w, clock = self.workload, self.clock
        try:
            with clock.excluded("eval"):
                metrics = w.eval_model(
                    self.eval_batch_size, self.params, self.model_state, eval_rng,
                    self.config.data_dir, None, self.global_step,
                )
                finite = all(math.isfinite(v) for k, v in metrics.items() if k.endswith("/loss")) and all_finite(self.params)
        except Exception as e:  # noqa: BLE001 - recorded; training goes on (algoperf.runner.eval_errors)
            # Also after a failed eval the next is a period away (the reference retries
            # after every step): an eval that runs out of memory is not retried per step.
            self.last_eval_end = clock.now()
            with clock.excluded("logging"):
                self.eval_errors.record(self.global_step, e)
            return
        self.last_eval_end = clock.now()
        self.eval_errors.succeeded()
        self.diverged = not finite
        if finite and w.has_reached_validation_target(metrics):
            if not self.validation_reached:
                self.time_to_result = clock.submission_time
            self.validation_reached = True
        if finite and w.has_reached_test_target(metrics):
            self.test_reached = True
        self.train_state.eval_ended(self.last_eval_end, self.validation_reached, self.test_reached)
        with clock.excluded("logging"):
            row = {
                **metrics,
                "global_step": self.global_step,
                "preemption_count": self.preemption_count,
                "score": clock.submission_time,
                "accumulated_submission_time": clock.submission_time,
                "accumulated_eval_time": clock.excluded_time["eval"],
                "accumulated_logging_time": clock.excluded_time["logging"],
                "total_duration": clock.elapsed,
            }
            self.eval_results.append((self.global_step, row))
            self.log.append_eval(row)
            submission_metrics = self.metrics_logger.drain()
            self.log.append_submission_metrics(submission_metrics)
            if self.observer:
                self.observer.on_eval(self.global_step, row)
                self.observer.on_submission_metrics(submission_metrics)

    # --- resume (algoperf.runner.checkpoint) ------------------------------------------------
    def _checkpoint_trees(self) -> dict[str, Any]:
        return {"params": self.params, "optimizer_state": self.optimizer_state, "model_state": self.model_state, "rng": self.rng}

    def _identity(self) -> dict[str, Any]:
        return trial_identity(self.config, self.submission, self.batch_size)

    def save_checkpoint(self) -> None:
        """Checkpoint the state the loop goes on from; timed as logging, not charged."""
        if self._checkpointer is None:
            return
        clock = self.clock
        with clock.excluded("logging"):
            info = {
                **self._identity(),
                "global_step": self.global_step,
                "accumulated_submission_time": clock.submission_time,
                "excluded_time": dict(clock.excluded_time),
                "total_duration": clock.elapsed,
                "eval_results": [[step, row] for step, row in self.eval_results],
                "eval_errors": self.eval_errors.count,
                "time_to_result": self.time_to_result,
                "validation_reached": self.validation_reached,
                "test_reached": self.test_reached,
                "batches_consumed": self.input_queue.count,
                "input_position": self.input_queue.position(),
                "preemption_count": self.preemption_count,
            }
            self._checkpointer.save(self.global_step, self._checkpoint_trees(), info)

    def restore(self) -> None:
        """Go on from the latest checkpoint (untimed, like initialisation).

        Restores params, optimizer and model state, the RNG, the step, the clock's
        accumulated times, the eval results, and the input queue's position
        (``CountingIterator.skip``: the pipeline's own position or a seek where it has one).
        The steps after the checkpoint are trained again; their time is not charged twice.
        """
        # (run_trial checked already that the checkpoint is this trial's: ``_resume_point``.)
        reader = checkpoint.Checkpointer(self.config.path)
        try:
            trees, info = reader.restore(self._checkpoint_trees())
        finally:
            reader.close()
        self.params, self.optimizer_state = trees["params"], trees["optimizer_state"]
        self.model_state, self.rng = trees["model_state"], trees["rng"]
        self.global_step = int(info["global_step"])
        self.step_keys = StepKeys(self.rng)
        self.step_keys(self.global_step)
        clock = self.clock
        clock.submission_time = float(info["accumulated_submission_time"])
        clock.excluded_time = {k: float(v) for k, v in info["excluded_time"].items()}
        self._elapsed_before = float(info["total_duration"])
        self.eval_results = [(int(step), row) for step, row in info["eval_results"]]
        # As the reference (its restored last_eval_time lies in the past): an eval is due
        # after the first step of this attempt.
        self.last_eval_end = None
        self.eval_errors.count = int(info.get("eval_errors", 0))
        self.time_to_result = info["time_to_result"]
        self.validation_reached, self.test_reached = bool(info["validation_reached"]), bool(info["test_reached"])
        self.train_state.values.update(validation_goal_reached=self.validation_reached, test_goal_reached=self.test_reached)
        consumed = int(info["batches_consumed"])
        restored = self.input_queue.skip(consumed, info.get("input_position"))
        jax.block_until_ready(self._checkpoint_trees())
        self.resume_info = {"from_step": self.global_step, "batches_consumed": consumed, "data_position_restored": restored}

    def progress(self) -> dict[str, Any]:
        """Where the trial is now (read from another thread by a progress display)."""
        clock = self.clock
        running = clock.started
        return {"global_step": self.global_step, "submission_time": clock.peek() if running else clock.submission_time,
                "budget": self.budget}

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()

    def result(self) -> TrialResult:
        key = f"validation/{self.workload.target_metric_name}"
        values = [row[key] for _, row in self.eval_results if key in row and not math.isnan(row[key])]
        best = None
        if values:
            best = max(values) if spec.higher_is_better(key) else min(values)
        if self.failure is not None:
            status = FAILED
        elif self.time_to_result is not None:
            status = REACHED
        elif self.diverged:
            status = DIVERGED
        else:
            status = MISSED
        return TrialResult(
            status=status,
            stop_reason=self.stop_reason,
            time_to_result=self.time_to_result,
            global_step=self.global_step,
            accumulated_submission_time=self.clock.submission_time,
            accumulated_eval_time=self.clock.excluded_time["eval"],
            accumulated_logging_time=self.clock.excluded_time["logging"],
            total_duration=self.clock.elapsed if self.clock.started else 0.0,
            num_evals=len(self.eval_results),
            eval_errors=self.eval_errors.count,
            best_validation=best,
            trial_dir=str(self.config.path),
            workload=self.config.workload,
            submission=self.submission.name,
            seed=self.config.seed,
            error=self.failure.details() if self.failure else None,
            error_summary=self.failure.summary() if self.failure else None,
        )
