"""The runner keeps AlgoPerf's rules: train_state, eval errors, data seek (issue #24)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from algoperf import registry
from algoperf.array_workload import BatchQueue, ShuffledBatches
from algoperf.runner.eval_errors import EVAL_ERRORS_FILE, MAX_CONSECUTIVE_BUGS
from algoperf.runner.resume import CountingIterator
from algoperf.runner.trial import run_trial
from algoperf.runner.trial_log import read_evals
from algoperf.runner.types import FAILED, TrialConfig
from algoperf.submission.loading import load_submission
from algoperf.workloads.mnist1d.workload import Mnist1dWorkload

# Records the train_state it is given at every step (a copy: the view is live).
RECORDING = """
import time
from algoperf import spec

SEEN = []
_batch = None

def get_batch_size(workload_name):
    return 32

def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return {{}}

def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, {extra}):
    {record}
    time.sleep(0.01)
    return optimizer_state, current_param_container, model_state

def data_selection(workload, input_queue, optimizer_state, current_param_container,
                   model_state, hyperparameters, global_step, rng):
    global _batch
    if _batch is None:
        _batch = next(input_queue)
    return _batch
"""


class EvalsOften(Mnist1dWorkload):
    eval_period_time_sec = 0.05


class EvalRaises(Mnist1dWorkload):
    """Every eval raises; ``MESSAGE`` says how."""

    eval_period_time_sec = 0.0
    MESSAGE = "a bug in the eval"

    def eval_model(self, *args, **kwargs):
        raise ValueError(self.MESSAGE)


class EvalOutOfMemory(EvalRaises):
    MESSAGE = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 bytes"


@pytest.fixture(autouse=True)
def _workloads():
    registry.register_workload("mnist1d_evals_often", EvalsOften)
    registry.register_workload("mnist1d_eval_raises", EvalRaises)
    registry.register_workload("mnist1d_eval_oom", EvalOutOfMemory)


def test_train_state_is_current_at_every_step(tmp_path, write_submission):
    path = write_submission(RECORDING.format(extra="train_state=None", record="SEEN.append((global_step, dict(train_state)))"))
    sub = load_submission(path)
    result = run_trial(TrialConfig("mnist1d_evals_often", path, experiment_dir=tmp_path, max_steps=30), submission=sub)
    seen = sub.module.SEEN
    assert [s for s, _ in seen] == list(range(30))
    assert set(seen[0][1]) == {"validation_goal_reached", "test_goal_reached", "is_time_remaining", "last_eval_time",
                               "training_complete", "accumulated_submission_time", "accumulated_eval_time",
                               "accumulated_logging_time", "last_step_end_time"}
    first = seen[0][1]
    assert first["accumulated_submission_time"] == 0.0 and first["last_eval_time"] == 0
    assert first["last_step_end_time"] is not None and first["is_time_remaining"] and not first["training_complete"]
    charged = [st["accumulated_submission_time"] for _, st in seen]
    ends = [st["last_step_end_time"] for _, st in seen]
    # Each step sees the time charged up to the step before: it grows at every step (each
    # step sleeps), not only at evals.
    assert all(b > a for a, b in zip(charged[1:], charged[2:], strict=False)), charged
    assert all(b > a for a, b in zip(ends, ends[1:], strict=False))
    assert charged[-1] <= result.accumulated_submission_time
    # last_eval_time: the end of the latest eval, once there was one (after step 1).
    eval_times = [st["last_eval_time"] for _, st in seen[1:]]
    assert all(t > 0 for t in eval_times) and eval_times == sorted(eval_times)
    assert seen[1][1]["accumulated_eval_time"] > 0
    assert seen[-1][1]["accumulated_eval_time"] <= result.accumulated_eval_time


LAPACK_IN_A_STEP = """
import json, sys
import jax.numpy as jnp
import threadpoolctl
from algoperf.runner.trial import run_trial
from algoperf.runner.types import TrialConfig
from algoperf.submission.loading import load_submission

sub = load_submission(sys.argv[1])
run_trial(TrialConfig("mnist1d", sys.argv[1], experiment_dir=sys.argv[2], max_steps=2, checkpoints=False), submission=sub)
print(json.dumps(sub.module.SEEN))
"""


def test_a_trial_runs_with_one_host_blas_thread(tmp_path, write_submission):
    """In a fresh process whose first LAPACK call is jax's eigh inside a step (Shampoo's inverse
    roots): every BLAS library then loaded, scipy's OpenBLAS included, has one thread."""
    import subprocess
    import sys

    path = write_submission(RECORDING.format(extra="train_state=None", record=(
        "jnp.linalg.eigh(jnp.eye(3) * 2.0)[0].block_until_ready(); "
        "SEEN.append([(p['filepath'].rsplit('/', 1)[-1], p['num_threads']) "
        "for p in __import__('threadpoolctl').threadpool_info() if p['user_api'] == 'blas'])")).replace(
        "import time\n", "import time\nimport jax.numpy as jnp\n"))
    script = tmp_path / "trial.py"
    script.write_text(LAPACK_IN_A_STEP)
    env = {**__import__("os").environ, "OPENBLAS_NUM_THREADS": "2", "JAX_PLATFORMS": "cpu"}  # as on two cores
    done = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "exp")], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen and all(libraries and all(threads == 1 for _, threads in libraries) for libraries in seen), seen
    assert any("scipy_openblas" in name and "64" not in name for name, _ in seen[-1]), seen  # the one jax's LAPACK uses


def test_train_state_only_to_update_params_that_names_it(tmp_path, write_submission):
    path = write_submission(RECORDING.format(extra="**kwargs", record="SEEN.append(sorted(kwargs))"), name="kw")
    sub = load_submission(path)
    assert not sub.needs_train_state
    run_trial(TrialConfig("mnist1d", path, experiment_dir=tmp_path, max_steps=3), submission=sub)
    assert sub.module.SEEN == [[], [], []]


def test_a_bug_in_eval_is_recorded_and_fails_the_trial_when_it_repeats(tmp_path, write_submission):
    path = write_submission(RECORDING.format(extra="train_state=None", record="pass"))
    result = run_trial(TrialConfig("mnist1d_eval_raises", path, experiment_dir=tmp_path, max_steps=50))
    assert result.status == FAILED
    assert result.eval_errors == MAX_CONSECUTIVE_BUGS
    assert "raised 2 times in a row" in result.error_summary and EVAL_ERRORS_FILE in result.error_summary
    text = (Path(result.trial_dir) / EVAL_ERRORS_FILE).read_text()
    assert text.count("ValueError: a bug in the eval") >= MAX_CONSECUTIVE_BUGS
    saved = json.loads((Path(result.trial_dir) / "trial_result.json").read_text())
    assert saved["eval_errors"] == MAX_CONSECUTIVE_BUGS  # the trial's record is kept


def test_out_of_memory_in_eval_is_recorded_and_training_goes_on(tmp_path, write_submission):
    path = write_submission(RECORDING.format(extra="train_state=None", record="pass"))
    result = run_trial(TrialConfig("mnist1d_eval_oom", path, experiment_dir=tmp_path, max_steps=8))
    assert result.status != FAILED and result.global_step == 8
    assert result.eval_errors >= 2 and result.num_evals == 0
    text = (Path(result.trial_dir) / EVAL_ERRORS_FILE).read_text()
    assert text.count(": out_of_memory: ") == result.eval_errors
    assert not (Path(result.trial_dir) / "eval_measurements.csv").exists() or read_evals(result.trial_dir) == []


def test_seek_gives_the_batches_an_uninterrupted_queue_gives():
    rng = np.random.default_rng(0)
    split = {"inputs": rng.normal(size=(50, 3)), "targets": np.arange(50)}
    whole = [b["targets"] for b, _ in zip(ShuffledBatches(split, 8, seed=3), range(20), strict=False)]
    for n in (0, 5, 6, 13):  # within the first epoch, at an epoch boundary (6 per epoch), later
        queue = CountingIterator(BatchQueue(ShuffledBatches(split, 8, seed=3)))
        assert queue.skip(n)
        assert queue.count == n
        seen = [np.asarray(next(queue)["targets"]) for _ in range(20 - n)]
        assert all(np.array_equal(a, b) for a, b in zip(seen, whole[n:], strict=True))
    # Every epoch is a permutation: each example once.
    first_epoch = np.concatenate(whole[:6])
    assert len(set(first_epoch.tolist())) == 48


def test_a_queue_without_seek_is_drawn_forward():
    queue = CountingIterator(iter(range(100)))
    assert queue.skip(7) and next(queue) == 7 and queue.count == 8


def test_every_trial_starts_cold():
    import jax

    from algoperf.runner.device import cold_start

    step = jax.jit(lambda x: x * 2)
    step(1.0)
    assert step._cache_size() == 1
    cold_start()
    assert step._cache_size() == 0  # compiled again, and charged, by the next trial that calls it
    assert not jax.config.jax_enable_compilation_cache


def test_a_mapped_queue_keeps_its_seek():
    from algoperf.array_workload import MappedQueue

    split = {"inputs": np.zeros((40, 2)), "targets": np.arange(40)}
    plain = ShuffledBatches(split, 10, seed=1)
    expected = [next(plain)["targets"].sum() for _ in range(7)]
    queue = CountingIterator(MappedQueue(ShuffledBatches(split, 10, seed=1), lambda b: b["targets"].sum()))
    assert queue.skip(5) and [next(queue), next(queue)] == expected[5:7]


def test_a_saved_position_is_restored_before_a_seek_and_wrappers_keep_it():
    from algoperf.array_workload import MappedQueue

    calls = []

    class Stream:
        def __iter__(self):
            return self

        def __next__(self):
            return {"targets": np.zeros(1)}

        def seek(self, n):
            calls.append(("seek", n))

        def position(self):
            return {"at": 3}

        def restore(self, position):
            calls.append(("restore", position))

    queue = CountingIterator(MappedQueue(BatchQueue(Stream()), lambda b: b))
    assert queue.position() == {"at": 3}
    assert queue.skip(5, {"at": 3}) and queue.count == 5
    assert queue.skip(6) and queue.count == 6  # a checkpoint without a position: seek
    assert calls == [("restore", {"at": 3}), ("seek", 6)]
    assert CountingIterator(iter(range(3))).position() is None
