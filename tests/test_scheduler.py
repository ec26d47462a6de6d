"""The Ray scheduler on a real two-node cluster on this machine.

Node 'fast' (the head) and node 'slow' have one CPU each and a custom resource naming
their kind, as `ray start --resources` would give real nodes. Trials are tiny mnist1d
runs (a few steps).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import ray
from ray.cluster_utils import Cluster
from rich.console import Console

from algoperf.campaign.ray_executor import SchedulerError, run_campaign
from tests.conftest import RAY_TEST_NODE, RAY_TEST_WORKER

STORE = 80 * 1024**2  # the smallest object store Ray accepts: trials pass only small dicts

BROKEN = """
from algoperf.submissions.nadamw.submission import data_selection, get_batch_size, init_optimizer_state
from algoperf.submissions.nadamw.submission import update_params as nadamw_update


def update_params(workload, current_param_container, current_params_types, model_state, hyperparameters,
                  batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state=None):
    if hyperparameters.explode and global_step >= 2:
        raise ValueError(f"boom at step {global_step}")
    return nadamw_update(workload, current_param_container, current_params_types, model_state, hyperparameters,
                         batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state)
"""


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    os.environ.pop("RAY_ADDRESS", None)
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"fast": 1000}, "object_store_memory": STORE, **RAY_TEST_NODE},
    )
    slow = nodes.add_node(num_cpus=1, resources={"slow": 1000}, object_store_memory=STORE, **RAY_TEST_WORKER)
    ray.init(address=nodes.address, log_to_driver=False, logging_level="ERROR")
    yield SimpleNamespace(address=nodes.address, fast=nodes.head_node.node_id, slow=slow.node_id)
    ray.shutdown()
    nodes.shutdown()


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def _meta(config, attempt: int = 0) -> dict:
    return json.loads((config.path / f"meta_data_{attempt}.json").read_text())


def _steps(config) -> list[int]:
    from algoperf.runner.trial_log import read_evals

    return [int(r["global_step"]) for r in read_evals(config.path)]


def test_trials_run_on_the_labelled_node_and_a_failing_one_is_recorded(cluster, write_submission, nadamw_point) -> None:
    from algoperf.campaign.plan import plan_trials
    from algoperf.submission.loading import load_submission

    folder = write_submission(BROKEN, search_space=[{**nadamw_point, "explode": 0}, {**nadamw_point, "explode": 1}])
    configs = plan_trials(load_submission(folder), ["mnist1d"], trials=2, experiment_dir=folder.parent / "exp", max_steps=4)
    console = _quiet()
    outcomes = run_campaign(configs, hardware="cpu:1@slow", max_retries=2, console=console, live=False)

    assert [o.state for o in outcomes] == ["finished", "finished"]
    ok, failed = (o.result for o in outcomes)
    assert ok["status"] != "failed" and ok["global_step"] == 4
    assert failed["status"] == "failed" and failed["global_step"] == 2
    assert "ValueError: boom at step 2" in failed["error"] and "Traceback" in failed["error"]
    for config in configs:
        scheduled = _meta(config)["scheduler"]
        assert scheduled["node_id"] == cluster.slow  # never on the 'fast' head node
        assert scheduled["ray_resources"]["slow"] > 0 and scheduled["hardware_spec"] == "cpu:1@slow"
        assert len(scheduled["pinned_cpus"]) == 1 and _meta(config)["hardware_label"] == "cpu:1"
        # The submission's exception was not retried: one attempt, one meta data file.
        assert [p.name for p in config.path.glob("meta_data_*.json")] == ["meta_data_0.json"]
        assert (config.path / "trial_result.json").exists()
    printed = console.file.getvalue()
    assert "trial 1: running" in printed and "trial 2: failed" in printed


def test_unrunnable_campaigns_are_refused_before_anything_runs(cluster, tmp_path, nadamw_point) -> None:
    from algoperf.runner.types import TrialConfig

    config = TrialConfig("mnist1d", "nadamw", nadamw_point, experiment_dir=tmp_path, max_steps=2)
    for spec in ("cpu:1@gpu-box", "cpu:2", "1xH100"):
        with pytest.raises(SchedulerError, match=f"no node of the Ray cluster can run a {spec} trial.*cpu:1@fast"):
            run_campaign([config], hardware=spec, console=_quiet(), live=False)
    lock = threading.Lock()
    with pytest.raises(SchedulerError, match="observer factory .* cannot be sent to Ray workers"):
        run_campaign([config], hardware="cpu:1", observer_factory=lambda _: lock, console=_quiet(), live=False)
    assert not tmp_path.joinpath("default").exists()


# NAdamW, 20 ms slower per step: the trial outlives its first checkpoint by a few seconds
# however fast the machine, so the killer always finds a live worker to kill.
STEADY = """
import time

from algoperf.submissions.nadamw.submission import data_selection, get_batch_size, init_optimizer_state
from algoperf.submissions.nadamw.submission import update_params as nadamw_update


def update_params(workload, current_param_container, current_params_types, model_state, hyperparameters,
                  batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state=None):
    time.sleep(0.02)
    return nadamw_update(workload, current_param_container, current_params_types, model_state, hyperparameters,
                         batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state)
"""


class Killer(threading.Thread):
    """Kills a trial's worker process (SIGKILL) once the trial has saved a checkpoint."""

    def __init__(self, config, timeout_s: float = 240.0):
        super().__init__(daemon=True)
        self.config, self.timeout_s = config, timeout_s
        self.killed: tuple[int, int] | None = None  # (pid, checkpoint step)

    def run(self) -> None:
        from algoperf.runner.checkpoint import latest_step

        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and self.killed is None:
            step = latest_step(self.config.path)
            meta = self.config.path / "meta_data_0.json"
            if step is not None and meta.exists():
                pid = json.loads(meta.read_text())["scheduler"]["pid"]
                os.kill(pid, signal.SIGKILL)
                self.killed = (pid, step)
            time.sleep(0.02)


@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes_to_the_same_result(cluster, write_submission, tmp_path,
                                                                nadamw_point) -> None:
    from algoperf.runner.types import TrialConfig

    steps = 150
    steady = write_submission(STEADY, name="steady")
    baseline = TrialConfig("mnist1d", str(steady), nadamw_point, seed=5, experiment_dir=tmp_path,
                           experiment_name="baseline", max_steps=steps)
    victim = replace(baseline, experiment_name="victim")
    killer = Killer(victim)
    killer.start()
    # One CPU per node: the two trials run side by side, one on each node.
    outcomes = run_campaign([baseline, victim], hardware="cpu:1", max_retries=2, console=_quiet(), live=False)
    killer.join(timeout=1)

    assert killer.killed is not None, "the trial finished before it could be killed"
    killed_pid, checkpoint_step = killer.killed
    assert [o.state for o in outcomes] == ["finished", "finished"]
    base, resumed = (o.result for o in outcomes)
    assert resumed["global_step"] == base["global_step"] == steps
    assert resumed["status"] == base["status"]

    from algoperf.runner.trial_log import read_evals

    # Evals follow a time schedule: which steps were evaluated may differ between the runs on
    # a busy machine. The final eval must agree; the best is the best of the trial's own rows.
    rows = read_evals(victim.path)
    assert resumed["best_validation"] == max(r["validation/accuracy"] for r in rows)
    last, last_base = rows[-1], read_evals(baseline.path)[-1]
    assert {k: v for k, v in last.items() if "/" in k} == {k: v for k, v in last_base.items() if "/" in k}
    assert last["preemption_count"] == 1
    got = _steps(victim)
    assert len(got) == len(set(got)) and got == sorted(got) and got[-1] == steps
    retry = _meta(victim, 1)
    assert retry["preemption_count"] == 1 and retry["resumed_from_step"] == checkpoint_step
    assert retry["scheduler"]["pid"] != killed_pid
    assert not (victim.path / "meta_data_2.json").exists()


@pytest.mark.slow
def test_rerun_after_the_driver_was_killed_skips_finished_trials(cluster, tmp_path) -> None:
    from algoperf.campaign.plan import plan_trials
    from algoperf.submission.loading import load_submission

    command = [sys.executable, "-m", "algoperf.cli", "run", "-s", "nadamw", "-w", "mnist1d", "--trials", "2",
               "--max-steps", "3", "--experiment-dir", str(tmp_path), "--executor", "ray", "--address", cluster.address,
               "--hardware", "cpu:1@fast", "--no-tracking"]
    configs = plan_trials(load_submission("nadamw"), ["mnist1d"], trials=2, experiment_dir=tmp_path, max_steps=3)
    results = [c.path / "trial_result.json" for c in configs]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not any(r.exists() for r in results) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(r.exists() for r in results), driver.stderr.read().decode() if driver.poll() is not None else "timed out"
        driver.send_signal(signal.SIGKILL)  # 'fast' has one CPU: the other trial is queued or just started
    finally:
        driver.kill()
        driver.wait()
    done = [i for i, r in enumerate(results) if r.exists()]
    assert len(done) == 1
    first, other = done[0], 1 - done[0]
    before = results[first].stat().st_mtime_ns

    outcomes = run_campaign(configs, hardware="cpu:1@fast", console=_quiet(), live=False)
    assert outcomes[first].state == "skipped" and outcomes[other].state == "finished"
    assert results[first].stat().st_mtime_ns == before
    assert [p.name for p in configs[first].path.glob("meta_data_*.json")] == ["meta_data_0.json"]
    assert outcomes[other].result["global_step"] == 3
    got = _steps(configs[other])
    assert len(got) == len(set(got)) and got[-1] == 3


def test_a_trial_waiting_on_the_progress_board_keeps_its_core(cluster) -> None:
    """A task blocked in ray.get lends its CPU to Ray, which then starts the next queued
    trial on the same core (it imports while the other trains, and is refused if its wait
    for the core outlasts pin_cores' limit). The trial's wait for the board must not."""
    from algoperf.campaign.ray_executor import _wait_holding_resources

    @ray.remote(num_cpus=0)
    class SlowBoard:
        def claim(self) -> None:
            time.sleep(1.0)

    def trial(board) -> tuple[float, float]:
        begin = time.time()
        _wait_holding_resources(board.claim.remote())
        return begin, time.time()

    board = SlowBoard.remote()
    task = ray.remote(num_cpus=1, max_calls=1, resources={"slow": 0.001})(trial)  # 'slow' has one CPU
    spans = sorted(ray.get([task.remote(board) for _ in range(2)]))
    assert spans[1][0] >= spans[0][1], f"the second trial started while the first held the core: {spans}"
