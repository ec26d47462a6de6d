"""fastmri (U-Net) and variants: parameter counts, SSIM against scikit-image, preprocessing
against an independent FFT, `algoperf data prepare` from official-format tar.xz archives of
.h5 volumes, a train step and evaluation (SSIM by hand with scikit-image) through the real
pipeline, on small volumes (32 x W k-space, 16 x 16 targets)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from algoperf import param_utils, spec
from algoperf.workloads.fastmri import WORKLOADS, input_pipeline, metrics, prepare
from algoperf.workloads.fastmri.model import UNet
from tests.workload_checks import sgd_step_losses

ROOT = Path(__file__).resolve().parents[1]

# The spec sheet's counts (hand-derived there; ours agree exactly).
SHEET_PARAMS = {
    "fastmri": 7_756_097,
    "fastmri_model_size": 7_692_929,
    "fastmri_tanh": 7_756_097,
    "fastmri_layernorm": 7_761_985,
}


@pytest.mark.parametrize("name", sorted(SHEET_PARAMS))
def test_param_count_matches_sheet(name):
    workload = WORKLOADS[name]()
    params, _ = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == SHEET_PARAMS[name]
    assert params["Conv_0"]["kernel"].shape[-1] == 1 and "bias" in params["Conv_0"]
    assert workload.is_output_params("Conv_0")


def test_constants():
    base = WORKLOADS["fastmri"]
    assert (base.num_eval_train_examples, base.eval_batch_size, base.step_hint) == (3_584, 256, 18_094)
    assert WORKLOADS["fastmri_layernorm"].base_workload == "fastmri"


def test_ssim_matches_skimage():
    """Our port equals skimage's structural_similarity (7x7 uniform window, sample
    covariance, data_range = volume max) on the denormalised images, interior mean."""
    rng = np.random.default_rng(0)
    target = rng.normal(size=(2, 24, 20)).astype(np.float32)
    pred = (target + 0.5 * rng.normal(size=target.shape)).astype(np.float32)
    mean, std, vmax = np.array([0.3, 1.0], np.float32), np.array([2.0, 0.5], np.float32), np.array([9.0, 0.0], np.float32)
    ours = np.asarray(metrics.ssim(jnp.asarray(pred), jnp.asarray(target), mean, std, vmax))
    for k in range(2):
        x, y = pred[k] * std[k] + mean[k], target[k] * std[k] + mean[k]
        _, full = structural_similarity(
            y.astype(np.float64), x.astype(np.float64), data_range=vmax[k] or 1.0, full=True
        )
        np.testing.assert_allclose(ours[k], full[3:-3, 3:-3].mean(), rtol=1e-4, atol=1e-5)
    same = metrics.ssim(jnp.asarray(target), jnp.asarray(target), mean, std, vmax)
    np.testing.assert_allclose(same, 1.0, rtol=1e-5)


def _zero_filled(kspace: np.ndarray, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Independent route: numpy's orthonormal centred inverse FFT, centre crop, magnitude."""
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace * mask[None, :]), norm="ortho"))
    r0, c0 = (kspace.shape[0] - shape[0]) // 2, (kspace.shape[1] - shape[1]) // 2
    return np.abs(image[r0 : r0 + shape[0], c0 : c0 + shape[1]])


def _expected_example(kspace: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    image = _zero_filled(kspace.astype(np.complex128), mask, target.shape)
    mean, std = image.mean(), image.std()
    return {"inputs": np.clip((image - mean) / std, -6, 6), "targets": np.clip((target - mean) / std, -6, 6),
            "mean": mean, "std": std}


def test_mask_and_preprocess():
    rng = np.random.default_rng(0)
    mask = input_pipeline.undersampling_mask(368, rng)
    n_low = int(368 * 0.08)  # 29 centre columns
    pad = (368 - n_low + 1) // 2  # 170
    assert mask[pad : pad + n_low].all() and pad == 170
    assert 0.15 < mask.mean() < 0.35  # about a quarter of the columns
    kspace = (rng.normal(size=(640, 368)) + 1j * rng.normal(size=(640, 368))).astype(np.complex64)
    target = rng.uniform(size=(320, 320)).astype(np.float32)
    ex = input_pipeline.preprocess_slice(kspace, target, 3.0, np.random.default_rng(1))
    expected = _expected_example(kspace, target, input_pipeline.undersampling_mask(368, np.random.default_rng(1)))
    assert ex["inputs"].shape == ex["targets"].shape == (320, 320)
    for key in ("inputs", "targets", "mean", "std"):
        np.testing.assert_allclose(ex[key], expected[key], rtol=2e-4, atol=2e-5)
    assert np.abs(ex["inputs"]).max() <= 6 and ex["volume_max"] == 3.0
    # The same mask seed gives the same example (fixed mask per example position).
    again = input_pipeline.preprocess_slice(kspace, target, 3.0, np.random.default_rng(1))
    np.testing.assert_array_equal(ex["inputs"], again["inputs"])


def test_loss_hand_computed_and_missing_data(tmp_path):
    workload = WORKLOADS["fastmri"]()
    target = jnp.zeros((2, 2, 2))
    pred = jnp.array([[[1.0, -1.0], [2.0, 0.0]], [[4.0, 4.0], [4.0, 4.0]]])
    out = workload.loss_fn(target, pred, jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(out["per_example"], [1.0, 0.0])
    assert float(out["summed"]) == 1.0 and float(out["n_valid_examples"]) == 1.0
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        workload._build_input_queue(jax.random.PRNGKey(0), "train", None, 8)
    with pytest.raises(spec.DataNotFoundError, match="knee_singlecoil"):
        workload._build_input_queue(jax.random.PRNGKey(0), "validation", str(tmp_path), 8)
    with pytest.raises(spec.DataNotFoundError, match="fastmri.med.nyu.edu"):
        prepare.prepare(tmp_path / "data")
    with pytest.raises(spec.DataNotFoundError, match="knee_singlecoil_train.tar.xz"):
        prepare.prepare(tmp_path / "data", tmp_path)
    (tmp_path / "notes.txt").write_text("not a volume")
    for name in prepare.ARCHIVES.values():
        with tarfile.open(tmp_path / name, "w:xz") as tar:
            tar.add(tmp_path / "notes.txt", "singlecoil_train/notes.txt")
    with pytest.raises(ValueError, match="holds no .h5 volumes"):
        prepare.prepare(tmp_path / "data", tmp_path)


def test_small_unet_train_step_lowers_loss():
    """One jitted SGD step of a 1-pool, 2-channel U-Net on 8 x 8 images lowers the L1 loss."""
    model = UNet(num_channels=2, num_pool_layers=1)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, 8)).astype(np.float32))
    y = jnp.tanh(x)
    params = param_utils.fast_init(model, jax.random.PRNGKey(0), x)["params"]

    def loss(p):
        return jnp.mean(jnp.abs(model.apply({"params": p}, x) - y))

    @jax.jit
    def step(p):
        value, grads = jax.value_and_grad(loss)(p)
        return jax.tree.map(lambda w, g: w - 0.05 * g, p, grads), value

    new_params, before = step(params)
    _, after = step(new_params)
    assert float(after) < float(before)


def test_channel_dropout_takes_effect():
    """Decision: dropout_rate reaches the blocks (the reference JAX U-Net ignores it)."""
    model = UNet(num_channels=4, num_pool_layers=1)
    x = jnp.ones((1, 8, 8))
    params = param_utils.fast_init(model, jax.random.PRNGKey(0), x)
    run = jax.jit(lambda rate: model.apply(params, x, train=True, dropout_rate=rate, rngs={"dropout": jax.random.PRNGKey(3)}))
    assert not np.allclose(run(0.5), run(0.0))
    np.testing.assert_allclose(run(0.0), jax.jit(model.apply)(params, x), rtol=1e-5, atol=1e-5)


# --- .h5 volumes, prepare, pipeline ---------------------------------------------------------
def _volume(rng: np.random.Generator, slices: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """k-space [slices, 32, width] of smooth complex images and their 16 x 16 magnitude crops."""
    rows = 32
    yy, xx = np.mgrid[:rows, :width]
    images = []
    for _ in range(slices):
        blobs = sum(
            rng.uniform(0.5, 2) * np.exp(-((yy - rng.uniform(8, 24)) ** 2 + (xx - rng.uniform(4, width - 4)) ** 2) / rng.uniform(4, 30))
            for _ in range(4)
        )
        images.append(blobs * np.exp(1j * rng.uniform(0, 0.3)))
    images = np.stack(images)
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(1, 2)), norm="ortho"), axes=(1, 2))
    r0, c0 = (rows - 16) // 2, (width - 16) // 2
    targets = np.abs(images[:, r0 : r0 + 16, c0 : c0 + 16])
    return kspace.astype(np.complex64), targets.astype(np.float32)


def _write_h5(path: Path, kspace: np.ndarray, targets: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_esc", data=targets)
        f.attrs["max"] = float(targets.max())
        f.attrs["acquisition"] = "CORPD_FBK"


def _write_archives(folder: Path, rng: np.random.Generator) -> None:
    """The official archives' structure: singlecoil_train/*.h5 (3 volumes, 8 slices) and
    singlecoil_val/*.h5 (102 one-slice volumes: validation = the first 100 by name)."""
    volumes = folder / "volumes"
    for split, shapes in (("train", [(3, 20), (2, 24), (3, 20)]), ("val", [(1, 20)] * 102)):
        (volumes / split).mkdir(parents=True)
        with tarfile.open(folder / f"knee_singlecoil_{split}.tar.xz", "w:xz", preset=0) as tar:
            for k, (slices, width) in enumerate(shapes):
                name = f"file{1001000 + 7 * k}.h5"
                _write_h5(volumes / split / name, *_volume(rng, slices, width))
                tar.add(volumes / split / name, f"singlecoil_{split}/{name}")


class _TinyFastMri(WORKLOADS["fastmri"]):
    num_channels = 2
    num_pool_layers = 2
    image_size = 16


def test_prepare_cli_then_train_step_and_eval(tmp_path):
    _write_archives(tmp_path / "download", np.random.default_rng(0))
    data_dir = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "data", "prepare", "fastmri", "--data-dir", str(data_dir),
         "--source", str(tmp_path / "download")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    train_dir, val_dir = data_dir / "fastmri" / "knee_singlecoil_train", data_dir / "fastmri" / "knee_singlecoil_val"
    assert len(list(train_dir.glob("*.h5"))) == 3 and len(list(val_dir.glob("*.h5"))) == 102
    for path in train_dir.glob("*.h5"):
        assert path.read_bytes() == (tmp_path / "download" / "volumes" / "train" / path.name).read_bytes()

    workload = _TinyFastMri()
    params, _ = workload.init_model_fn(jax.random.PRNGKey(1))
    # Train: 8 slices, batches of 4; each epoch covers every slice once with the same
    # (per-example) masks, in a new order.
    train = workload._build_input_queue(jax.random.PRNGKey(0), "train", str(data_dir), 4)
    epochs = [[np.asarray(next(train)["inputs"]) for _ in range(2)] for _ in range(2)]
    rows = [[x.tobytes() for batch in epoch for x in batch] for epoch in epochs]
    assert len(set(rows[0])) == 8 and set(rows[0]) == set(rows[1]) and rows[0] != rows[1]
    resumed = workload._build_input_queue(jax.random.PRNGKey(0), "train", str(data_dir), 4)
    resumed.seek(3)  # a resumed trial (issue #24): batch 3 without reading batches 0-2
    np.testing.assert_array_equal(np.asarray(next(resumed)["inputs"]), epochs[1][1])

    batch = next(train)
    assert "weights" not in batch and batch["inputs"].shape == (4, 16, 16)

    before, after = sgd_step_losses(workload, params, batch, 0.05)
    assert after < before

    # Eval: validation = the first 100 val volumes by name (12 batches of 8 and a padded
    # one), test = the other 2; one fixed mask for every eval slice. SSIM by scikit-image
    # with data_range = the volume max, on the denormalised images; L1 on the normalised.
    val_files = sorted(val_dir.glob("*.h5"))
    mask = input_pipeline.undersampling_mask(20, np.random.default_rng(input_pipeline.EVAL_MASK_SEED))
    predict = jax.jit(lambda p, x: workload.model_fn(p, {"inputs": x}, None, spec.ForwardPassMode.EVAL, None, False)[0])
    for split, files in (("validation", val_files[:100]), ("test", val_files[100:])):
        result = workload._eval_model_on_split(split, len(files), 8, params, None, None, str(data_dir))
        examples, maxima = [], []
        for path in files:
            with h5py.File(path, "r") as f:
                examples.append(_expected_example(f["kspace"][0], f["reconstruction_esc"][0], mask))
                maxima.append(f.attrs["max"])
        preds = np.asarray(predict(params, np.stack([ex["inputs"] for ex in examples]).astype(np.float32)), np.float64)
        ssims = [
            structural_similarity(ex["targets"] * ex["std"] + ex["mean"], pred * ex["std"] + ex["mean"], data_range=vmax)
            for ex, pred, vmax in zip(examples, preds, maxima, strict=True)
        ]
        l1s = [np.mean(np.abs(pred - ex["targets"])) for ex, pred in zip(examples, preds, strict=True)]
        np.testing.assert_allclose(result["ssim"], np.mean(ssims), rtol=2e-4)
        np.testing.assert_allclose(result["loss"], np.mean(l1s), rtol=2e-4)
        assert 0.0 < result["ssim"] < 1.0


# --- data parallel (tests/data_parallel_check.py) --------------------------------------------
def data_parallel_case() -> tuple[spec.Workload, dict[str, np.ndarray]]:
    """A 4-channel, 2-pool U-Net on 16 x 16 slices; a global batch of 16 preprocessed slices."""
    rng = np.random.default_rng(5)
    kspace, targets = _volume(rng, 16, 20)
    examples = [input_pipeline.preprocess_slice(k, t, float(targets.max()), np.random.default_rng(i))
                for i, (k, t) in enumerate(zip(kspace, targets, strict=True))]
    batch = {key: np.stack([e[key] for e in examples]) for key in examples[0]}

    class Small(_TinyFastMri):
        num_channels = 4

    return Small(), batch
