"""cifar (ResNet-18): architecture parity, constants, the pickle reader, augmentation, and
``algoperf data prepare cifar`` (through the CLI, from a small cifar-10-python.tar.gz) followed
by one train step and one eval through the real pipeline.

Full-size ResNet-18 is only built with ``jax.eval_shape``; computation uses the same module
class with 4 base filters.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.workloads.cifar import input_pipeline, prepare
from tests.workload_checks import assert_seeks_like_an_uninterrupted_stream


def write_cifar(root: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    """data_batch_1..5 and test_batch in cifar-10-batches-py/, as the official archive has them."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in (*input_pipeline.TRAIN_FILES, input_pipeline.TEST_FILE):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": []}, f)
        written[name] = data
    return written


def test_resnet18_parameter_count_matches_the_spec_sheet():
    w = registry.get_workload("cifar")
    params, state = jax.eval_shape(lambda: w.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == 11_173_962
    assert len(jax.tree.leaves(params)) == 62
    # G5 fixed: model_state is the real batch_stats (9,600 values), not a copy of the params.
    assert list(state) == ["batch_stats"] and param_utils.num_params(state) == 9_600
    assert params["Dense_0"]["kernel"].shape == (512, 10) and w.is_output_params("Dense_0")


def test_constants_are_algoperfs():
    w = registry.get_workload("cifar")
    assert (w.validation_target_value, w.test_target_value) == (0.85, 0.85)
    assert (w.max_allowed_runtime_sec, w.eval_period_time_sec, w.step_hint) == (3600, 600, 4883)
    assert (w.eval_batch_size, w.num_eval_train_examples) == (1024, 5120)
    assert (w.num_train_examples, w.num_validation_examples, w.num_test_examples) == (45_000, 5_000, 10_000)
    assert w.loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY and w.data_source == "download"


def test_pickle_reader_layout_and_splits(tmp_path):
    written = write_cifar(tmp_path)
    splits = input_pipeline.load(tmp_path)
    assert len(splits["train"]["targets"]) == 18 and len(splits["validation"]["targets"]) == 2  # 9:1 of 20
    assert splits["test"]["images"].shape == (4, 32, 32, 3)
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each 32x32 row-major.
    row = written["data_batch_1"][1]
    assert splits["train"]["images"][1, 2, 5].tolist() == [row[2 * 32 + 5], row[1024 + 2 * 32 + 5], row[2048 + 2 * 32 + 5]]
    # Validation is the tail of the training files (data_batch_5's last two rows).
    np.testing.assert_array_equal(splits["validation"]["images"][1], written["data_batch_5"][3].reshape(3, 32, 32).transpose(1, 2, 0))


def test_normalize_and_augment_by_hand():
    image = np.full((1, 32, 32, 3), 255, np.uint8)
    expected = (1.0 - np.array(input_pipeline.MEAN)) / np.array(input_pipeline.STDDEV)
    np.testing.assert_allclose(input_pipeline.normalize(image)[0, 0, 0], expected, rtol=1e-6)
    # Augmented images are 32x32 windows of the image zero-padded by 2 px (JAX reference, G2),
    # possibly mirrored: every crop keeps at least 30 of 32 rows of real pixels.
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (64, 32, 32, 3), dtype=np.uint8)
    out = input_pipeline.augment(images, np.random.default_rng(1))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    offsets = set()
    for i in range(64):
        matches = [(t, lf, fl) for t in range(5) for lf in range(5) for fl in (False, True)
                   if np.array_equal((padded[i, t:t + 32, lf:lf + 32][:, ::-1] if fl else padded[i, t:t + 32, lf:lf + 32]), out[i])]
        assert matches, f"example {i} is not a padded crop"
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets and flips vary per example


def test_a_resumed_train_stream_seeks_to_the_batches_an_uninterrupted_one_gives():
    """Resume (issue #24): batch b's order and augmentation come from (seed, b), so seek(n)
    makes no batch before n; every epoch (5 batches of 4 of 21 images) is a permutation."""
    rng = np.random.default_rng(0)
    split = {"images": rng.integers(0, 256, (21, 32, 32, 3), dtype=np.uint8), "targets": np.arange(21)}
    for kind in ("train", "eval_train"):
        assert_seeks_like_an_uninterrupted_stream(
            lambda kind=kind: input_pipeline.train_batches(split, kind, 4, seed=3), seeks=(0, 2, 5, 7), length=11)
    stream = input_pipeline.train_batches(split, "train", 4, seed=3)
    epoch = np.concatenate([next(stream)["targets"] for _ in range(5)])
    assert len(set(epoch.tolist())) == 20


def test_missing_or_bad_data_gives_a_clear_error(tmp_path):
    w = registry.get_workload("cifar")
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        w._build_input_queue(jax.random.PRNGKey(0), "train", None, 8)
    with pytest.raises(spec.DataNotFoundError, match="cifar-10-batches-py"):
        w._build_input_queue(jax.random.PRNGKey(0), "train", str(tmp_path), 8)
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(spec.DataNotFoundError, match="not a CIFAR-10 python batch"):
        input_pipeline.load(tmp_path)


def write_archive(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """cifar-10-python.tar.gz as distributed: the batches under cifar-10-batches-py/."""
    written = write_cifar(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, written


def test_prepare_rejects_bad_sources(tmp_path):
    with pytest.raises(spec.DataNotFoundError, match="cifar-10-python.tar.gz"):
        prepare.prepare(tmp_path / "d", tmp_path / "missing")
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(spec.DataNotFoundError, match="not a readable .tar.gz"):
        prepare.prepare(tmp_path / "d", tmp_path)  # a folder holding the archive
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(Path(__file__), arcname="readme.txt")
    with pytest.raises(spec.DataNotFoundError, match="no cifar-10-batches-py"):
        prepare.prepare(tmp_path / "d2", other)
    with pytest.raises(TypeError, match="no --option"):
        prepare.prepare(tmp_path / "d", bad, size="1")


@pytest.mark.slow  # compiles a (small) ResNet: 10-60 s on 2 busy cores
def test_prepare_through_the_cli_then_train_step_and_eval(tmp_path):
    archive, written = write_archive(tmp_path)
    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "data", "prepare", "cifar", "--data-dir", str(data), "--source", str(archive)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = data / "cifar10" / "cifar-10-batches-py"  # AlgoPerf's PyTorch layout
    with open(folder / "data_batch_3", "rb") as f:
        np.testing.assert_array_equal(pickle.load(f, encoding="bytes")[b"data"], written["data_batch_3"])

    w = registry.get_workload("cifar")
    # The model's own classes, two stages of one block (an identity and a strided one): compiling is the cost.
    w._model = w.model.clone(num_filters=4, stage_sizes=(1, 1))
    w.num_validation_examples = 2
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    queue = w._build_input_queue(jax.random.PRNGKey(1), "train", str(data), 4)
    batch = next(queue)
    assert batch["inputs"].shape == (4, 32, 32, 3) and "weights" not in batch

    @jax.jit
    def step(p, s, b):
        def loss(q):
            logits, s2 = w.model_fn(q, b, s, spec.ForwardPassMode.TRAIN, None, True)
            out = w.loss_fn(b["targets"], logits)
            return out["summed"] / out["n_valid_examples"], s2

        (value, s2), grads = jax.value_and_grad(loss, has_aux=True)(p)
        return value, jax.tree.map(lambda a, g: a - 0.2 * g, p, grads), s2

    l0, p1, s1 = step(params, state, batch)
    l1, _, _ = step(p1, s1, batch)
    assert float(l1) < float(l0)
    assert not np.allclose(s1["batch_stats"]["BatchNorm_init"]["mean"], 0.0)

    metrics = w._eval_model_on_split("validation", 2, 4, p1, s1, jax.random.PRNGKey(2), str(data))
    splits = input_pipeline.load(data)
    x = input_pipeline.normalize(splits["validation"]["images"])
    y = splits["validation"]["targets"]
    forward = jax.jit(w.model_fn, static_argnums=(3, 5))
    logits, _ = forward(p1, {"inputs": jnp.asarray(np.concatenate([x, x]))}, s1, spec.ForwardPassMode.EVAL, None, False)
    logits = logits[:2]  # same batch shape as the padded eval batch; padding does not leak (running stats)
    assert metrics["accuracy"] == pytest.approx(float(np.mean(np.argmax(logits, -1) == y)))
    assert metrics["loss"] == pytest.approx(float(w.loss_fn(jnp.asarray(y), logits)["summed"]) / 2, rel=1e-4)


# --- data parallel (tests/data_parallel_check.py) --------------------------------------------


def data_parallel_case() -> tuple[spec.Workload, dict[str, np.ndarray]]:
    """ResNet-18's classes with 4 base filters and two stages of one block (an identity and a
    strided, projected one: compiling is the cost); a global batch of 16 CIFAR-shaped inputs.
    Its batch_stats (the BN moments of the global batch) are compared as well."""
    w = registry.get_workload("cifar")
    w._model = w.model.clone(num_filters=4, stage_sizes=(1, 1))
    rng = np.random.default_rng(0)
    inputs = (rng.normal(size=(16, 32, 32, 3)) * 2 + 1).astype(np.float32)
    return w, {"inputs": inputs, "targets": rng.integers(0, 10, 16).astype(np.int32)}
