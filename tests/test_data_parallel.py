"""A trial's step on 8 devices equals the step on 1 device with the same global batch.

Batches are split along the batch dimension, parameters replicated, batch-norm
statistics taken over the global batch (jax.sharding; see tests/data_parallel_check.py).
Runs on CPU with 8 host devices forced by XLA_FLAGS, in one subprocess for all workloads.
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


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dp") / "results.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "tests.data_parallel_check", str(out), *WORKLOADS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", WORKLOADS)
def test_eight_devices_give_the_one_device_step(results, name):
    r = results[name]
    assert "error" not in r, r.get("error")
    assert r["same_keys"] and len(r["keys"]) > 2
    assert abs(r["loss_1"] - r["loss_8"]) <= 1e-4 * max(1.0, abs(r["loss_1"]))
    assert r["worst_relative_difference"] < 1e-3, r
    # Batch-norm workloads carry running statistics; they must match too (global-batch moments).
    assert r["batch_norm_state"] == (name in BATCH_NORM)
