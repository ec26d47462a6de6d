"""fastMRI single-coil knee volumes (``.h5``) as AlgoPerf's dataset setup leaves them.

``<data_dir>/knee_singlecoil_train/*.h5`` (train, eval_train) and
``<data_dir>/knee_singlecoil_val/*.h5`` (first 100 by name: validation; the other 99:
test). Each file: ``kspace`` complex64 [slices, 640, W], ``reconstruction_esc`` float32
[slices, 320, 320], attribute ``max``. Reading needs ``h5py`` (imported lazily).

Per slice (``preprocess_slice``): 4x undersampling with an 8% fully sampled centre,
zero-filled centred inverse FFT (orthonormal), centre crop 320 x 320, magnitude,
instance normalisation of input and target with the input's mean and std, clip to +-6.

Masks: the reference draws them with TF's stateless RNG, which numpy cannot reproduce;
we keep its structure (one fixed mask per training example position across epochs, one
fixed seed for every eval slice) with numpy's generator.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import numpy as np

from algoperf.spec import DataNotFoundError

CENTER_FRACTION = 0.08
ACCELERATION = 4
CROP = 320
NUM_VALIDATION_FILES = 100
SETUP_HINT = (
    "Download and extract fastMRI knee single-coil with AlgoPerf's dataset setup "
    "(`python datasets/dataset_setup.py --data_dir=DIR --fastmri ...`), then pass --data-dir "
    "pointing at the folder holding knee_singlecoil_train/ and knee_singlecoil_val/."
)


def undersampling_mask(num_cols: int, rng: np.random.Generator) -> np.ndarray:
    """[W] float32 column mask: centre block of int(0.08 W) ones, others kept with prob p.

    p = (W / 4 - n_low) / (W - n_low) so that about a quarter of the columns are sampled.
    """
    n_low = int(np.float32(num_cols) * np.float32(CENTER_FRACTION))
    pad = (num_cols - n_low + 1) // 2
    centre = np.zeros(num_cols, np.float32)
    centre[pad : pad + n_low] = 1.0
    prob = (num_cols / ACCELERATION - n_low) / (num_cols - n_low)
    accel = (rng.uniform(size=num_cols) < prob).astype(np.float32)
    return np.maximum(centre, accel)


def preprocess_slice(
    kspace: np.ndarray, target: np.ndarray, volume_max: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One slice -> {'inputs', 'targets' [320, 320], 'mean', 'std', 'volume_max'} float32."""
    rows, cols = kspace.shape
    masked = kspace * undersampling_mask(cols, rng)[None, :]
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(masked)))  # ifft2 normalises by 1/(HW)
    image = image * np.sqrt(rows * cols)  # -> orthonormal scaling
    r0, c0 = (rows - CROP) // 2, (cols - CROP) // 2
    image = np.abs(image[r0 : r0 + CROP, c0 : c0 + CROP]).astype(np.float32)
    mean, std = image.mean(dtype=np.float64), image.std(dtype=np.float64)
    mean, std = np.float32(mean), np.float32(std)
    return {
        "inputs": np.clip((image - mean) / std, -6, 6).astype(np.float32),
        "targets": np.clip((target.astype(np.float32) - mean) / std, -6, 6).astype(np.float32),
        "mean": mean,
        "std": std,
        "volume_max": np.float32(volume_max),
    }


def split_files(data_dir: str | None, split: str) -> list[str]:
    if not data_dir:
        raise DataNotFoundError(f"fastmri needs --data-dir. {SETUP_HINT}")
    if split in ("train", "eval_train"):
        # Glob order, unsorted, as in the reference.
        files = glob.glob(os.path.join(data_dir, "knee_singlecoil_train", "*.h5"))
    elif split in ("validation", "test"):
        val = sorted(glob.glob(os.path.join(data_dir, "knee_singlecoil_val", "*.h5")))
        files = val[:NUM_VALIDATION_FILES] if split == "validation" else val[NUM_VALIDATION_FILES:]
    else:
        raise ValueError(f"unknown fastmri split {split!r}")
    if not files:
        raise DataNotFoundError(f"no fastMRI .h5 files for split {split!r} under {data_dir!r}. {SETUP_HINT}")
    return files


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("fastmri reads .h5 volumes with h5py: `pip install h5py`") from e
    return h5py


def slice_index(files: list[str]) -> list[tuple[str, int]]:
    """(file, slice) for every slice of ``files``, in file order."""
    h5py = _h5py()
    out = []
    for path in files:
        with h5py.File(path, "r") as f:
            out += [(path, i) for i in range(f["kspace"].shape[0])]
    return out


def read_slice(path: str, i: int) -> tuple[np.ndarray, np.ndarray, float]:
    with _h5py().File(path, "r") as f:
        return f["kspace"][i], f["reconstruction_esc"][i], float(f.attrs.get("max", 0.0))


def _stack(examples: list[dict[str, np.ndarray]], size: int) -> dict[str, np.ndarray]:
    n = len(examples)
    out = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    out["weights"] = np.ones(n, np.float32)
    if n < size:
        out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) for k, v in out.items()}
    return out


def batches(
    index: list[tuple[str, int]],
    batch_size: int,
    seed: int | None,
    repeat: bool,
    drop_remainder: bool,
) -> Iterator[dict[str, np.ndarray]]:
    """Preprocessed batches. With a ``seed``: shuffled each epoch and each example's mask
    seeded by (seed, its position in ``index``); without: in order, one fixed mask seed."""
    order_rng = np.random.default_rng(seed)
    while True:
        order = order_rng.permutation(len(index)) if seed is not None else np.arange(len(index))
        buf = []
        for pos in order:
            kspace, target, vmax = read_slice(*index[pos])
            mask_rng = np.random.default_rng([seed, int(pos)] if seed is not None else 0)
            buf.append(preprocess_slice(kspace, target, vmax, mask_rng))
            if len(buf) == batch_size:
                yield _stack(buf, batch_size)
                buf = []
        if buf and not drop_remainder:
            yield _stack(buf, batch_size)
        if not repeat:
            return
