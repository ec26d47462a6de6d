"""A trial's step on 8 devices equals the step on 1 device with the same global batch.

Batches are split along the batch dimension, parameters replicated, batch-norm
statistics taken over the global batch (jax.sharding; see tests/data_parallel_check.py).
Runs on CPU with 8 host devices forced by XLA_FLAGS, in a subprocess per workload.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ["cifar", "imagenet_resnet", "imagenet_vit", "wmt", "ogbg", "lm", "criteo1tb", "fastmri",
             "librispeech_conformer", "librispeech_deepspeech"]
BATCH_NORM = {"cifar", "imagenet_resnet", "librispeech_conformer", "librispeech_deepspeech"}
# The fast tier checks one batch-norm image model and one sequence model (each a subprocess
# compiling its model twice on 8 host devices: a minute or more on a busy core); the other
# workloads are the slow tier (make test-all).
FAST = {"cifar", "lm"}


def compare_in_a_subprocess(name: str, out: Path) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "tests.data_parallel_check", str(out), name],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())[name]


# One process per workload (not one for all): pytest-xdist can then spread them over its workers.
@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in WORKLOADS])
def test_eight_devices_give_the_one_device_step(name, tmp_path):
    r = compare_in_a_subprocess(name, tmp_path / "result.json")
    assert "error" not in r, r.get("error")
    assert r["same_keys"] and len(r["keys"]) > 2
    assert abs(r["loss_1"] - r["loss_8"]) <= 1e-4 * max(1.0, abs(r["loss_1"]))
    assert r["worst_relative_difference"] < 1e-3, r
    # Batch-norm workloads carry running statistics; they must match too (global-batch moments).
    assert r["batch_norm_state"] == (name in BATCH_NORM)
