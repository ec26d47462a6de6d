"""The trial runner: timing rules, stop conditions, divergence, seeds, log format."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from algoperf import registry
from algoperf.runner.trial import run_trial
from algoperf.runner.trial_log import read_evals
from algoperf.runner.types import DIVERGED, FAILED, MISSED, REACHED, TrialConfig
from algoperf.submission.loading import load_submission
from algoperf.workloads.mnist1d.workload import Mnist1dWorkload

# A submission that spends a known time per step and never changes the model.
TIMED_SUBMISSION = """
import time
import jax.numpy as jnp
from algoperf import spec

STEP_SECONDS = {seconds}
BUSY = {busy}
SPENT = [0.0]  # wall time actually spent inside update_params (sleep can oversleep)
LONGEST = [0.0]  # the longest single step: a busy machine stretches it, and bounds below with it
_batch = None

def get_batch_size(workload_name):
    return 32

def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return {{}}

def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None):
    {raise_line}
    begin = time.perf_counter()
    if BUSY:
        while time.perf_counter() < begin + STEP_SECONDS:
            pass
    else:
        time.sleep(STEP_SECONDS)
    SPENT[0] += time.perf_counter() - begin
    LONGEST[0] = max(LONGEST[0], time.perf_counter() - begin)
    return optimizer_state, current_param_container, model_state

def data_selection(workload, input_queue, optimizer_state, current_param_container,
                   model_state, hyperparameters, global_step, rng):
    global _batch
    if _batch is None:
        _batch = next(input_queue)
    return _batch
"""


def timed_submission(write_submission, seconds: float, busy: bool = False, raise_line: str = "pass", name: str = "timed"):
    source = TIMED_SUBMISSION.format(seconds=seconds, busy=busy, raise_line=raise_line)
    return write_submission(source, name=name)


class SlowEvalWorkload(Mnist1dWorkload):
    """mnist1d whose every eval takes an extra 0.4 s, and evals every 0.25 s."""

    eval_period_time_sec = 0.25
    EXTRA = 0.4

    def eval_model(self, *args, **kwargs):
        import time

        time.sleep(self.EXTRA)
        return super().eval_model(*args, **kwargs)


class TinyBudgetWorkload(Mnist1dWorkload):
    max_allowed_runtime_sec = 0.5
    eval_period_time_sec = 0.2
    validation_target_value = 0.999  # unreachable


@pytest.fixture(autouse=True)
def _test_workloads():
    registry.register_workload("mnist1d_slow_eval", SlowEvalWorkload)
    registry.register_workload("mnist1d_tiny_budget", TinyBudgetWorkload)


@pytest.mark.parametrize("busy", [False, True], ids=["sleep", "busy-wait"])
def test_submission_is_charged_its_step_time_and_not_eval_time(tmp_path, write_submission, busy):
    steps, seconds = 40, 0.05
    sub = load_submission(timed_submission(write_submission, seconds, busy=busy))
    config = TrialConfig(workload="mnist1d_slow_eval", submission=sub.path, experiment_dir=tmp_path, max_steps=steps)
    result = run_trial(config, submission=sub)
    spent = sub.module.SPENT[0]
    assert spent >= steps * seconds
    assert result.global_step == steps
    # Charged: the time the submission really spent plus the runner's overhead around each
    # step (ms; more on a busy machine), and far less than the evals' extra time.
    assert result.accumulated_submission_time >= spent
    assert result.accumulated_submission_time < spent + result.num_evals * SlowEvalWorkload.EXTRA / 2
    # Several evals happened, each with 0.4 s of extra eval work, none of it charged.
    assert result.num_evals >= 3
    assert result.accumulated_eval_time >= result.num_evals * SlowEvalWorkload.EXTRA
    rows = read_evals(result.trial_dir)
    assert rows[-1]["accumulated_submission_time"] == pytest.approx(result.accumulated_submission_time)
    assert rows[-1]["total_duration"] >= result.accumulated_submission_time + result.accumulated_eval_time


def test_evals_follow_the_period_in_submission_time(tmp_path, write_submission):
    sub = load_submission(timed_submission(write_submission, 0.02))
    result = run_trial(TrialConfig(workload="mnist1d_slow_eval", submission=sub.path, experiment_dir=tmp_path, max_steps=60), submission=sub)
    rows = read_evals(result.trial_dir)
    assert rows[0]["global_step"] == 1  # an eval right after step 1
    assert rows[-1]["global_step"] == 60  # and a final one when training ends
    times = [r["accumulated_submission_time"] for r in rows]
    gaps = np.diff(times[:-1])
    # Each periodic eval comes once 0.25 s of submission time has passed, one step late at
    # most (bounded by the longest step measured, not a fixed time: the machine may be busy).
    step = sub.module.LONGEST[0]
    assert all(0.25 <= g < 0.25 + 2 * step + 0.01 for g in gaps), (gaps, step)


def test_budget_stops_without_an_eval_past_it(tmp_path, write_submission):
    sub = load_submission(timed_submission(write_submission, 0.02))
    result = run_trial(TrialConfig(workload="mnist1d_tiny_budget", submission=sub.path, experiment_dir=tmp_path), submission=sub)
    assert result.status == MISSED and result.stop_reason == "budget"
    assert result.accumulated_submission_time >= 0.5
    # Stopped promptly (within a step or two), not at the next eval.
    assert result.accumulated_submission_time < 0.5 + 2 * sub.module.LONGEST[0] + 0.01
    rows = read_evals(result.trial_dir)
    assert all(r["accumulated_submission_time"] < 0.5 for r in rows)


def test_budget_factor_extends_the_budget(tmp_path, write_submission):
    sub = load_submission(timed_submission(write_submission, 0.02))
    result = run_trial(TrialConfig(workload="mnist1d_tiny_budget", submission=sub.path, experiment_dir=tmp_path, budget_factor=2.0), submission=sub)
    assert 1.0 <= result.accumulated_submission_time < 1.0 + 2 * sub.module.LONGEST[0] + 0.01


def test_training_complete_error_ends_with_a_final_eval(tmp_path, write_submission):
    sub = timed_submission(
        write_submission, 0.0, raise_line="if global_step == 7: raise spec.TrainingCompleteError()"
    )
    result = run_trial(TrialConfig(workload="mnist1d", submission=sub, experiment_dir=tmp_path))
    assert result.stop_reason == "training_complete"
    assert result.global_step == 8
    assert read_evals(result.trial_dir)[-1]["global_step"] == 8


def test_exception_in_submission_is_a_failed_trial_with_its_traceback(tmp_path, write_submission):
    sub = timed_submission(write_submission, 0.0, raise_line="if global_step == 3: raise RuntimeError('boom at 3')")
    result = run_trial(TrialConfig(workload="mnist1d", submission=sub, experiment_dir=tmp_path))
    assert result.status == FAILED
    assert "RuntimeError: boom at 3" in result.error and "update_params" in result.error
    saved = json.loads((tmp_path / "default" / "mnist1d_jax" / "trial_1" / "trial_result.json").read_text())
    assert saved["status"] == FAILED
    assert len(read_evals(result.trial_dir)) == 1  # the step-1 eval stays on disk


DIVERGING = """
import jax, jax.numpy as jnp
def get_batch_size(workload_name): return 32
def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng): return None
def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step, rng):
    factor = jnp.where(global_step >= 5, jnp.nan, 1.0)
    return optimizer_state, jax.tree.map(lambda p: p * factor, current_param_container), model_state
def data_selection(workload, input_queue, optimizer_state, current_param_container, model_state,
                   hyperparameters, global_step, rng):
    return next(input_queue)
"""


def test_non_finite_params_end_the_trial_as_diverged(tmp_path, write_submission):
    sub = write_submission(DIVERGING, name="diverging")
    result = run_trial(TrialConfig(workload="mnist1d", submission=sub, experiment_dir=tmp_path, max_steps=10))
    assert result.status == DIVERGED and result.stop_reason == "diverged"
    assert result.global_step == 10


def test_nadamw_reaches_the_mnist1d_target(tmp_path, nadamw_point):
    result = run_trial(TrialConfig(workload="mnist1d", submission="nadamw", hyperparameters=nadamw_point, experiment_dir=tmp_path))
    assert result.status == REACHED and result.stop_reason == "targets_reached"
    rows = read_evals(result.trial_dir)
    first_hit = next(r for r in rows if r["validation/accuracy"] > Mnist1dWorkload.validation_target_value)
    assert result.time_to_result == pytest.approx(first_hit["accumulated_submission_time"])
    assert result.time_to_result <= Mnist1dWorkload.max_allowed_runtime_sec
    assert rows[-1]["test/accuracy"] > Mnist1dWorkload.test_target_value


def test_same_seed_same_losses_other_seed_other_losses(tmp_path, nadamw_point):
    def losses(seed: int, name: str) -> list[float]:
        config = TrialConfig(workload="mnist1d", submission="nadamw", hyperparameters=nadamw_point,
                             experiment_dir=tmp_path, experiment_name=name, seed=seed, max_steps=30)
        run_trial(config)
        return [r["train/loss"] for r in read_evals(config.path)]

    first, again, other = losses(1, "a"), losses(1, "b"), losses(2, "c")
    assert first == again
    assert first != other


def test_eval_csv_has_algoperf_columns_and_metadata(tmp_path, nadamw_point):
    config = TrialConfig(workload="mnist1d", submission="nadamw", hyperparameters=nadamw_point,
                         experiment_dir=tmp_path, experiment_name="fmt", max_steps=5, seed=3)
    run_trial(config)
    path = tmp_path / "fmt" / "mnist1d_jax" / "trial_1"
    with (path / "eval_measurements.csv").open() as f:
        header = next(csv.reader(f))
    for column in ("accumulated_eval_time", "accumulated_logging_time", "accumulated_submission_time",
                   "global_step", "preemption_count", "score", "total_duration", "train/accuracy",
                   "train/loss", "validation/accuracy", "validation/loss", "validation/num_examples",
                   "test/accuracy", "test/loss", "test/num_examples"):
        assert column in header
    assert header == sorted(header)
    assert json.loads((path / "hparams.json").read_text()) == nadamw_point
    meta = json.loads((path / "meta_data_0.json").read_text())
    assert meta["seed"] == 3 and meta["hardware"]["platform"] == "cpu"
    assert meta["versions"]["jax"] and meta["submission_hash"]


def test_submission_metrics_are_written_outside_the_step(tmp_path, nadamw_point):
    config = TrialConfig(workload="mnist1d", submission="nadamw", hyperparameters=nadamw_point,
                         experiment_dir=tmp_path, max_steps=201)
    run_trial(config)
    lines = [json.loads(line) for line in (config.path / "submission_metrics.jsonl").read_text().splitlines()]
    assert {(m["step"], m["name"]) for m in lines} == {(s, n) for s in (0, 100, 200) for n in ("loss", "grad_norm")}
    assert all(np.isfinite(m["value"]) for m in lines)


@pytest.mark.compat
def test_unmodified_algoperf_style_submission_runs(tmp_path):
    from tests.conftest import REPO

    result = run_trial(TrialConfig(
        workload="mnist1d", submission=REPO / "tests" / "fixtures" / "algoperf_style",
        hyperparameters={"learning_rate": 0.003, "one_minus_beta1": 0.1}, experiment_dir=tmp_path, max_steps=50,
    ))
    assert result.status != FAILED, result.error
    meta = json.loads((tmp_path / "default" / "mnist1d_jax" / "trial_1" / "meta_data_0.json").read_text())
    # AlgoPerf's 'mnist' answer (16) scaled to mnist1d: 128 x 16 / 16 (algoperf.submission.batch_size)
    assert meta["batch_size"] == 128 and "get_batch_size('mnist') = 16" in meta["batch_size_source"]
    rows = read_evals(result.trial_dir)
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
