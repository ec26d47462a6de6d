"""The mnist workload reads the standard IDX files (tests write small ones)."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest

from algoperf import param_utils, registry
from algoperf.runner.trial import run_trial
from algoperf.runner.types import TrialConfig
from algoperf.spec import DataNotFoundError
from algoperf.workloads.mnist import input_pipeline


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


@pytest.fixture
def mnist_dir(tmp_path):
    """120 train and 24 test images: class k is a bright k-th row band (learnable)."""
    rng = np.random.default_rng(0)

    def images(labels):
        x = rng.integers(0, 40, size=(len(labels), 28, 28))
        for i, label in enumerate(labels):
            x[i, 2 + 2 * label : 4 + 2 * label, :] = 255
        return x

    train_labels, test_labels = rng.integers(0, 10, 120), rng.integers(0, 10, 24)
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    write_idx(folder / "train-images-idx3-ubyte", images(train_labels), compress=True)
    write_idx(folder / "train-labels-idx1-ubyte", train_labels, compress=True)
    write_idx(folder / "t10k-images-idx3-ubyte", images(test_labels), compress=False)
    write_idx(folder / "t10k-labels-idx1-ubyte", test_labels, compress=False)
    return tmp_path, train_labels, test_labels


def test_idx_files_are_read_and_split_like_algoperf(mnist_dir):
    data_dir, train_labels, test_labels = mnist_dir
    splits = input_pipeline.load(data_dir)
    assert splits["train"]["inputs"].shape == (100, 28, 28, 1)  # 5/6 train, 1/6 validation
    np.testing.assert_array_equal(splits["validation"]["targets"], train_labels[100:])
    np.testing.assert_array_equal(splits["test"]["targets"], test_labels)
    # Normalised with MNIST's statistics after scaling to [0, 1].
    assert splits["train"]["inputs"].max() == pytest.approx((1.0 - 0.1307) / 0.3081)


def test_a_corrupt_idx_file_is_named(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x09\x01garbage")
    with pytest.raises(ValueError, match="bad magic number"):
        input_pipeline.read_idx(bad)


def test_model_has_algoperf_parameter_count():
    workload = registry.get_workload("mnist")
    params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
    assert param_utils.num_params(params) == 101_770
    assert workload.is_output_params("Dense_1")


def test_trains_on_the_files(mnist_dir, tmp_path, nadamw_point):
    data_dir, _, _ = mnist_dir
    result = run_trial(TrialConfig(workload="mnist", submission="nadamw", hyperparameters=nadamw_point,
                                   experiment_dir=tmp_path / "exp", data_dir=str(data_dir), max_steps=60))
    assert result.status in ("reached_target", "missed") and result.error is None
    assert result.best_validation is not None and result.best_validation > 0.5


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        input_pipeline.load(None)
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte"):
        input_pipeline.load(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "run", "-s", "nadamw", "-w", "mnist", "--data-dir", str(tmp_path),
         "--experiment-dir", str(tmp_path / "exp")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1  # the trial failed with its reason; a campaign would go on
    text = " ".join(proc.stderr.split())
    assert "MNIST files missing" in text and "algoperf data prepare mnist" in text
    assert "Traceback" not in proc.stderr


def test_data_prepare_copies_idx_files_and_names_bad_input(mnist_dir, tmp_path):
    source = mnist_dir[0] / "MNIST" / "raw"
    cli = [sys.executable, "-m", "algoperf.cli", "data"]
    out = tmp_path / "prepared"
    proc = subprocess.run([*cli, "prepare", "mnist", "--source", str(source), "--data-dir", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert input_pipeline.load(out)["test"]["targets"].tolist() == mnist_dir[2].tolist()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([*cli, "prepare", "mnist", "--source", str(empty), "--data-dir", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "train-images-idx3-ubyte" in proc.stdout + proc.stderr
    proc = subprocess.run([*cli, "prepare", "mnist", "--source", str(source), "--option", "size=2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "mnist takes no --option" in proc.stdout + proc.stderr
    proc = subprocess.run([*cli, "prepare", "nosuch"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "preparable: mnist, cifar" in proc.stdout + proc.stderr
    listing = subprocess.run([*cli, "list"], capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "librispeech" in listing.stdout
