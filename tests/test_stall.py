"""The stall watch: a trial stuck inside the runtime ends, recorded as failed, instead of never."""

from __future__ import annotations

import json
import threading
import time

import pytest

from algoperf.runner.stall import (
    EXIT_CODE,
    IDLE_SHARE,
    StallWatch,
    add_sample,
    is_stuck,
    window_from_env,
)
from tests.cli import run_algoperf

# update_params runs the baseline's step, then, from step 2 on, a host callback inside a
# jitted computation that never returns: the trial waits forever inside the runtime, using no
# CPU, as in the batched-eigh deadlock.
STUCK = """
import threading

import jax
import jax.numpy as jnp

from algoperf.submissions.nadamw.submission import data_selection, get_batch_size, init_optimizer_state
from algoperf.submissions.nadamw.submission import update_params as nadamw_update

NEVER = threading.Event()


def _wait_forever(x):
    NEVER.wait()
    return x


@jax.jit
def _stuck(x):
    return jax.pure_callback(_wait_forever, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


def update_params(workload, current_param_container, current_params_types, model_state, hyperparameters,
                  batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state=None):
    state, params, model_state = nadamw_update(
        workload, current_param_container, current_params_types, model_state, hyperparameters,
        batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state)
    if global_step >= 1:
        params = jax.tree.map(_stuck, params)
    return state, params, model_state
"""


def test_samples_decide_stuck_only_over_a_whole_idle_window():
    window = 10.0
    assert not is_stuck([(0.0, 5.0), (9.0, 5.0)], window)  # idle, but not for a whole window yet
    assert is_stuck([(0.0, 5.0), (10.0, 5.0)], window)
    assert is_stuck([(0.0, 5.0), (10.0, 5.0 + 0.5 * IDLE_SHARE * 10)], window)  # a watcher's own crumbs
    assert not is_stuck([(0.0, 5.0), (10.0, 5.0 + 0.015 * 10)], window)  # a nice-19 trial beside busy cores


def test_samples_keep_one_window_and_restart_after_a_suspension():
    window, poll, samples = 10.0, 1.0, [(0.0, 5.0)]
    for t in range(1, 13):
        samples = add_sample(samples, (float(t), 5.0), window, poll)
    assert samples[0] == (2.0, 5.0) and samples[1] == (3.0, 5.0) and is_stuck(samples, window)
    resumed = add_sample([(0.0, 5.0), (1.0, 5.0)], (60.0, 5.0), window, poll)  # SIGSTOP for a minute
    assert resumed == [(60.0, 5.0)] and not is_stuck(resumed, window)


def _watch_for(window_s: float, cpu_time, seconds: float) -> tuple[list[float], list[int]]:
    stalls, exits = [], []
    watch = StallWatch(window_s, stalls.append, exit_process=exits.append, cpu_time=cpu_time)
    with watch.watching():
        time.sleep(seconds)
    return stalls, exits


def test_an_idle_process_is_reported_once_and_ended():
    stalls, exits = _watch_for(0.5, cpu_time=lambda: 1.0, seconds=1.5)
    assert len(stalls) == 1 and 0.5 <= stalls[0] < 1.5
    assert exits == [EXIT_CODE]


def test_a_working_process_is_left_alone():
    start = time.monotonic()
    stalls, exits = _watch_for(0.5, cpu_time=lambda: 0.05 * (time.monotonic() - start), seconds=1.5)
    assert stalls == [] and exits == []


def test_the_watch_thread_ends_with_its_block_and_zero_turns_it_off():
    before = threading.active_count()
    stalls, exits = _watch_for(0.0, cpu_time=lambda: 1.0, seconds=0.3)
    assert stalls == [] and exits == []
    _watch_for(5.0, cpu_time=lambda: 1.0, seconds=0.1)
    assert threading.active_count() == before


def test_window_from_env(monkeypatch):
    monkeypatch.delenv("ALGOPERF_STALL_SECONDS", raising=False)
    assert window_from_env() == 300.0
    assert window_from_env("gpu") == 0.0  # the host may idle in long waits for a device: only when asked
    monkeypatch.setenv("ALGOPERF_STALL_SECONDS", "600")
    assert window_from_env("gpu") == 600.0
    monkeypatch.setenv("ALGOPERF_STALL_SECONDS", "0")
    assert window_from_env() == 0.0
    monkeypatch.setenv("ALGOPERF_STALL_SECONDS", "five")
    with pytest.raises(ValueError, match="ALGOPERF_STALL_SECONDS='five': give a number of seconds"):
        window_from_env()


def test_a_stuck_trial_ends_recorded_as_failed_with_its_stacks(tmp_path, write_submission, nadamw_point):
    folder = write_submission(STUCK, search_space=[nadamw_point])
    began = time.monotonic()
    proc = run_algoperf("run", "--submission", str(folder), "--workload", "mnist1d", "--ruleset", "external",
                        "--trials", "1", "--max-steps", "50", "--experiment-dir", str(tmp_path / "exp"),
                        "--executor", "local", "--no-tracking",
                        cwd=tmp_path, timeout=240, env={"ALGOPERF_STALL_SECONDS": "4"})
    assert proc.returncode == EXIT_CODE, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stopped making progress" in proc.stderr and "docs/submissions.md" in proc.stderr
    (result_file,) = (tmp_path / "exp").rglob("trial_result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "failed" and result["stop_reason"] == "stalled"
    assert result["global_step"] >= 1 and "no thread of it used CPU" in result["error_summary"]
    stacks = (result_file.parent / "traceback.txt").read_text()
    assert "in update_params" in stacks and "in _wait_forever" in stacks  # where the trial was stuck
    assert "in _watch" not in stacks  # the watcher's own stack is left out
    assert (result_file.parent / "eval_measurements.csv").read_text().count("\n") >= 2  # step 1's eval kept
    assert time.monotonic() - began < 200
