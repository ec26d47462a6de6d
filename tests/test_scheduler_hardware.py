"""Hardware specs -> Ray resource requests, executor choice, node descriptions (no Ray started)."""

from __future__ import annotations

import pytest

from algoperf.campaign.cluster import SchedulerError, choose_executor, describe_node
from algoperf.hardware import HardwareSpec, HardwareSpecError, parse_hardware


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("cpu:2", HardwareSpec(cpus=2)),
        ("cpu:16@epyc", HardwareSpec(cpus=16, label="epyc")),
        ("1xH100", HardwareSpec(cpus=1, accelerators=1, accelerator_type="H100")),
        ("8xA100", HardwareSpec(cpus=8, accelerators=8, accelerator_type="A100")),
        ("8xA100-80G+cpu:64", HardwareSpec(cpus=64, accelerators=8, accelerator_type="A100-80G")),
        ("1xH100+cpu:8@dgx", HardwareSpec(cpus=8, accelerators=1, accelerator_type="H100", label="dgx")),
        (" 4xTPU-V5P ", HardwareSpec(cpus=4, accelerators=4, accelerator_type="TPU-V5P")),
        ("2xGPU", HardwareSpec(cpus=2, accelerators=2, accelerator_type=None)),
    ],
)
def test_parse_round_trips(text: str, spec: HardwareSpec) -> None:
    parsed = parse_hardware(text)
    assert parsed == spec
    assert parse_hardware(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["", "cpu", "cpu:0", "cpu:-1", "0xH100", "0.5xH100", "H100", "2x", "gpu:1", "cpu:2@", "1xH100+cpu:0", "2xcpu"])
def test_bad_specs_say_what_is_expected(text: str) -> None:
    with pytest.raises(HardwareSpecError, match="--hardware"):
        parse_hardware(text)


def test_cpu_trial_asks_for_cores_only_and_stays_off_gpus() -> None:
    spec = parse_hardware("cpu:3@fast")
    options = spec.ray_options()
    assert options["num_cpus"] == 3 and options["num_gpus"] == 0
    assert options["resources"] == {"fast": pytest.approx(0.001)}
    assert "accelerator_type" not in options
    env = options["runtime_env"]["env_vars"]
    assert env["JAX_PLATFORMS"] == "cpu"
    assert env["OMP_NUM_THREADS"] == "3"
    assert env["JAX_ENABLE_COMPILATION_CACHE"] == "false"
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in env
    assert spec.requirement() == {"CPU": 3.0, "fast": pytest.approx(0.001)}


def test_gpu_trial_asks_for_whole_gpus_of_one_type() -> None:
    spec = parse_hardware("2xH100+cpu:16")
    options = spec.ray_options()
    assert options["num_gpus"] == 2 and options["num_cpus"] == 16
    assert options["accelerator_type"] == "H100"
    env = options["runtime_env"]["env_vars"]
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    assert "JAX_PLATFORMS" not in env  # checked after start instead: a GPU trial must see GPUs
    assert spec.requirement()["GPU"] == 2.0 and "accelerator_type:H100" in spec.requirement()


def test_any_gpu_trial_names_no_accelerator_type() -> None:
    options = parse_hardware("1xgpu").ray_options()
    assert options["num_gpus"] == 1 and "accelerator_type" not in options
    assert parse_hardware("1xgpu").requirement() == {"CPU": 1.0, "GPU": 1.0}


def test_tpu_trial_asks_for_the_tpu_resource() -> None:
    options = parse_hardware("4xTPU-V5P").ray_options()
    assert options["resources"] == {"TPU": 4.0} and options["num_gpus"] == 0


def _hw(platform: str, count: int, cpus: int = 2) -> dict:
    return {"platform": platform, "device_count": count, "device_kind": platform, "cpu_count": cpus,
            "cpu_model": "x", "hostname": "node1"}


def test_mismatch_names_what_the_trial_got() -> None:
    assert parse_hardware("cpu:2").mismatch(_hw("cpu", 1), pinned=[0, 1]) is None
    assert "could not reserve 2 cores" in parse_hardware("cpu:2").mismatch(_hw("cpu", 1), pinned=None)
    problem = parse_hardware("1xH100").mismatch(_hw("cpu", 1), pinned=None)
    assert "install JAX with CUDA" in problem
    assert parse_hardware("2xH100").mismatch(_hw("gpu", 2), pinned=None) is None
    assert "1 gpu" in parse_hardware("2xH100").mismatch(_hw("gpu", 1), pinned=None)


def test_describe_node_in_spec_words() -> None:
    assert describe_node({"CPU": 8.0, "memory": 1e9, "node:10.0.0.1": 1.0}) == "cpu:8"
    assert describe_node({"CPU": 64.0, "GPU": 8.0, "accelerator_type:H100": 1.0, "dgx": 1000.0}) == "8xH100+cpu:64@dgx"


def test_choose_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert choose_executor("auto", address=None, hardware=None, num_trials=1) == "local"
    assert choose_executor("auto", address=None, hardware=None, num_trials=2) == "ray"
    assert choose_executor("auto", address="10.0.0.1:6379", hardware=None, num_trials=1) == "ray"
    assert choose_executor("auto", address=None, hardware="cpu:1", num_trials=1) == "ray"
    assert choose_executor("local", address=None, hardware=None, num_trials=9) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert choose_executor("auto", address=None, hardware=None, num_trials=1) == "ray"
    with pytest.raises(SchedulerError, match="--executor"):
        choose_executor("slurm", address=None, hardware=None, num_trials=1)
    with pytest.raises(SchedulerError, match="need --executor ray"):
        choose_executor("local", address=None, hardware="cpu:1", num_trials=1)
    with pytest.raises(HardwareSpecError):
        choose_executor("auto", address=None, hardware="1xH100+gpu:2", num_trials=1)


def test_cli_rejects_a_bad_hardware_spec_before_starting_ray(tmp_path) -> None:
    from typer.testing import CliRunner

    from algoperf.cli import app

    result = CliRunner().invoke(app, ["run", "-s", "nadamw", "-w", "mnist1d", "--hardware", "2xcpu",
                                      "--experiment-dir", str(tmp_path), "--no-tracking"])
    assert result.exit_code == 2
    assert "--hardware '2xcpu'" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing was run


def test_the_first_trial_fixes_the_campaign_kind() -> None:
    from algoperf.campaign.progress import ProgressBoard

    board = ProgressBoard()
    assert board.claim("a", "cpu:2 (Xeon)") is None
    assert board.claim("b", "cpu:2 (Xeon)") is None
    refusal = board.claim("c", "cpu:2 (EPYC)")
    assert "cpu:2 (Xeon)" in refusal and "--allow-mixed-hardware" in refusal
    assert ProgressBoard(kind="1xH100", allow_mixed=True).claim("a", "1xA100") is None
    assert ProgressBoard(kind="1xH100").claim("a", "1xA100") is not None  # an earlier run fixed it


def test_progress_board_keeps_the_best_validation_metric() -> None:
    from algoperf.campaign.progress import ProgressBoard

    board = ProgressBoard()
    board.report("t", {"target_key": "validation/loss", "higher_is_better": False})
    for step, loss in ((1, 2.0), (2, 0.5), (3, 0.7), (4, float("nan"))):
        board.report("t", {"global_step": step, "eval": {"validation/loss": loss}})
    entry = board.snapshot()["t"]
    assert entry["best"] == 0.5 and entry["global_step"] == 4


def _write_meta(path, hw: dict) -> None:
    import json

    path.mkdir(parents=True, exist_ok=True)
    (path / "meta_data_0.json").write_text(json.dumps({"hardware": hw}))


def test_local_campaign_refuses_to_mix_hardware(tmp_path) -> None:
    from algoperf.campaign.plan import (
        MixedHardwareError,
        check_hardware,
        recorded_hardware_kinds,
    )
    from algoperf.hardware import hardware_kind
    from algoperf.runner.types import TrialConfig

    configs = [TrialConfig("mnist1d", "nadamw", experiment_dir=tmp_path, trial_index=i) for i in (1, 2)]
    other = {"platform": "cpu", "cpu_count": 64, "cpu_model": "AMD EPYC 9654", "device_count": 1, "device_kind": "cpu"}
    _write_meta(configs[0].path, other)
    assert recorded_hardware_kinds(configs) == {"cpu:64 (AMD EPYC 9654)"}
    assert hardware_kind(other) == "cpu:64 (AMD EPYC 9654)"
    with pytest.raises(MixedHardwareError, match="cpu:64 \\(AMD EPYC 9654\\).*--allow-mixed-hardware"):
        check_hardware(configs, "cpu:2 (Intel Xeon)")
    check_hardware(configs, "cpu:2 (Intel Xeon)", allow_mixed=True)
    check_hardware(configs, "cpu:64 (AMD EPYC 9654)")


def test_cli_local_run_refuses_a_campaign_begun_elsewhere(tmp_path) -> None:
    from typer.testing import CliRunner

    from algoperf.cli import app
    from algoperf.runner.types import TrialConfig

    config = TrialConfig("mnist1d", "nadamw", experiment_dir=tmp_path, experiment_name="c", trial_index=1)
    _write_meta(config.path, {"platform": "gpu", "device_count": 8, "device_kind": "NVIDIA H100", "cpu_count": 64})
    result = CliRunner().invoke(app, ["run", "-s", "nadamw", "-w", "mnist1d", "--executor", "local", "--max-steps", "1",
                                      "--experiment-dir", str(tmp_path), "--experiment-name", "c", "--no-tracking"])
    assert result.exit_code == 2, result.output
    assert "8xNVIDIA H100" in result.output and "--allow-mixed-hardware" in result.output
    assert not (config.path / "eval_measurements.csv").exists()


def test_progress_view_shows_counts_steps_time_and_best_metric() -> None:
    import io

    from rich.console import Console

    from algoperf.campaign.progress import render

    rows = [
        {"label": "mnist1d trial 1", "state": "running", "global_step": 812, "submission_time": 12.34, "budget": 60.0,
         "best": 0.8731, "target_key": "validation/accuracy", "target": 0.9, "host": "node1", "pid": 4242, "preemptions": 1},
        {"label": "mnist1d trial 2", "state": "queued", "budget": 60.0},
        {"label": "mnist1d trial 3", "state": "finished", "global_step": 2000, "submission_time": 30.0, "budget": 60.0},
    ]
    console = Console(file=io.StringIO(), width=200)
    console.print(render(rows, "3 trials on cpu:1"))
    text = console.file.getvalue()
    assert "queued: 1" in text and "running: 1" in text and "finished: 1" in text
    assert "812" in text and "12.3 / 60" in text and "0.8731" in text and "pid 4242 (resumed x1)" in text
    assert "mnist1d trial 2" not in text  # queued trials are counted, not listed


def test_built_in_submissions_travel_to_workers_by_name(tmp_path) -> None:
    """A laptop's path to a built-in submission (its checkout) means nothing in a worker's
    container; the name does. A user's own submission folder keeps its absolute path."""
    import shutil

    from algoperf.campaign.plan import plan_trials
    from algoperf.campaign.ray_executor import _portable_fields
    from algoperf.submission import load_submission

    def portable(submission) -> str:
        [config] = plan_trials(submission, ["mnist1d"], ruleset="external", studies=1, trials=1, seed=0,
                               experiment_dir=tmp_path / "exp", experiment_name="e", hyperparameters=None,
                               max_steps=1, data_dir=None, workload_kwargs=None, budget_factor=None)
        return _portable_fields(config)["submission"]

    built_in = load_submission("nadamw")
    assert portable(built_in) == "nadamw"
    own = tmp_path / "mine" / "nadamw"  # same folder name, not the installed one
    shutil.copytree(built_in.path.parent, own)
    assert portable(load_submission(own)) == str((own / "submission.py").resolve())


def test_the_embedded_ray_runs_trials_at_the_drivers_niceness(tmp_path) -> None:
    """Ray's default worker niceness (15) would let any other process starve a trial."""
    import os
    import subprocess
    import sys

    script = ("import os, ray\nfrom algoperf.campaign.cluster import connect\nconnect(num_cpus=1)\n"
              "worker = ray.get(ray.remote(lambda: (os.nice(0), os.environ.get('RAY_worker_niceness'))).remote())\n"
              "print(os.nice(0), *worker)\nray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_worker_niceness", "RAY_ADDRESS")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    driver, worker, setting = done.stdout.strip().splitlines()[-1].split()
    assert worker == driver  # not 15 above it (up to 19), as Ray's default would start it
    assert setting == "0"  # what Ray's raylet read (the niceness alone cannot tell under nice >= 5)
