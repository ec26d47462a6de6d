"""fastMRI single-coil knee volumes (``.h5``) as AlgoPerf's dataset setup leaves them.

Layout (``<data_dir>`` or ``<data_dir>/fastmri``): ``knee_singlecoil_train/*.h5`` (train,
eval_train; glob order, unsorted, as the reference) and ``knee_singlecoil_val/*.h5``
(sorted by name: the first 100 are validation, the other 99 test; the official test
archive is never used). Each file is one volume: ``kspace`` complex64 [slices, 640, W]
(W varies, e.g. 368 or 372), ``reconstruction_esc`` float32 [slices, 320, 320], attribute
``max`` (the volume maximum, 0.0 when absent). Every slice is an example. ``algoperf data
prepare fastmri`` (``prepare.py``) writes the layout from the official
``knee_singlecoil_{train,val}.tar.xz``.

Per slice (``preprocess_slice``), as the reference:

1. column mask: the ``int(0.08 W)`` centre columns, plus each column with probability
   p = (W/4 - n_low) / (W - n_low) (4x acceleration);
2. zero-filled image: ``fftshift(ifft2(ifftshift(mask * kspace))) * sqrt(rows * W)``
   (the orthonormal centred inverse FFT);
3. centre crop to the target's shape (rows from (rows - H) // 2, columns from
   (W - H') // 2), magnitude;
4. ``inputs = clip((img - mean) / std, -6, 6)`` and ``targets`` likewise with the same
   (population) mean and std; ``mean``, ``std``, ``volume_max`` are kept for SSIM.

Masks: the reference draws them with TF's stateless RNG, which numpy cannot reproduce; we
keep its structure: one fixed mask per training example position (seeded by the data
seed and the slice's index), one fixed seed (``EVAL_MASK_SEED``) for every eval slice.
"""

from __future__ import annotations

import concurrent.futures
import functools
import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from algoperf.data.epochs import EpochOrder, SeekableBatches
from algoperf.spec import DataNotFoundError

CENTER_FRACTION = 0.08
ACCELERATION = 4
NUM_VALIDATION_FILES = 100
EVAL_MASK_SEED = 0
TRAIN_DIR, VAL_DIR = "knee_singlecoil_train", "knee_singlecoil_val"
SETUP_HINT = (
    "Request fastMRI access at https://fastmri.med.nyu.edu/, download knee_singlecoil_train.tar.xz "
    "and knee_singlecoil_val.tar.xz into a folder and run `algoperf data prepare fastmri --source "
    "FOLDER --data-dir DIR` (or AlgoPerf's `dataset_setup.py --fastmri`), then pass --data-dir DIR "
    "(holding fastmri/knee_singlecoil_train/ and fastmri/knee_singlecoil_val/)."
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
    """One slice -> {'inputs', 'targets' [H, W'] (the target's shape), 'mean', 'std', 'volume_max'}."""
    rows, cols = kspace.shape
    height, width = target.shape
    masked = kspace * undersampling_mask(cols, rng)[None, :]
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(masked)))  # ifft2 normalises by 1/(rows cols)
    image = image * np.sqrt(rows * cols)  # -> orthonormal scaling
    r0, c0 = (rows - height) // 2, (cols - width) // 2
    image = np.abs(image[r0 : r0 + height, c0 : c0 + width]).astype(np.float32)
    mean, std = np.float32(image.mean(dtype=np.float64)), np.float32(image.std(dtype=np.float64))
    return {
        "inputs": np.clip((image - mean) / std, -6, 6).astype(np.float32),
        "targets": np.clip((target.astype(np.float32) - mean) / std, -6, 6).astype(np.float32),
        "mean": mean,
        "std": std,
        "volume_max": np.float32(volume_max),
    }


# --- files and splits --------------------------------------------------------------------
def root(data_dir: str | Path | None) -> str:
    """The folder holding knee_singlecoil_train/ and knee_singlecoil_val/ (``data_dir`` or its fastmri/)."""
    if not data_dir:
        raise DataNotFoundError(f"fastmri needs --data-dir. {SETUP_HINT}")
    for candidate in (os.path.join(data_dir, "fastmri"), str(data_dir)):
        if os.path.isdir(os.path.join(candidate, TRAIN_DIR)) or os.path.isdir(os.path.join(candidate, VAL_DIR)):
            return candidate
    raise DataNotFoundError(f"no {TRAIN_DIR}/ or {VAL_DIR}/ under {data_dir!r}. {SETUP_HINT}")


def split_files(data_dir: str | Path | None, split: str) -> list[str]:
    """The volumes of ``split`` ('train', 'eval_train', 'validation', 'test')."""
    base = root(data_dir)
    if split in ("train", "eval_train"):
        files = glob.glob(os.path.join(base, TRAIN_DIR, "*.h5"))  # glob order, as the reference
    elif split in ("validation", "test"):
        val = sorted(glob.glob(os.path.join(base, VAL_DIR, "*.h5")))
        files = val[:NUM_VALIDATION_FILES] if split == "validation" else val[NUM_VALIDATION_FILES:]
    else:
        raise ValueError(f"unknown fastmri split {split!r}")
    if not files:
        folder = TRAIN_DIR if split in ("train", "eval_train") else VAL_DIR
        more = f" (test = the val files after the first {NUM_VALIDATION_FILES})" if split == "test" else ""
        raise DataNotFoundError(f"no .h5 volumes for split {split!r} in {os.path.join(base, folder)}{more}. {SETUP_HINT}")
    return files


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:
        raise ImportError("fastmri reads .h5 volumes with h5py: `pip install h5py`") from e
    return h5py


def _check_volume(f: Any, path: str) -> int:
    if "kspace" not in f or "reconstruction_esc" not in f:
        raise ValueError(f"{path} is not a fastMRI single-coil volume (needs 'kspace' and 'reconstruction_esc')")
    n = f["kspace"].shape[0]
    if f["reconstruction_esc"].shape[0] != n:
        raise ValueError(f"{path}: kspace has {n} slices but reconstruction_esc {f['reconstruction_esc'].shape[0]}")
    return n


def slice_index(files: list[str]) -> list[tuple[str, int]]:
    """(file, slice) for every slice of ``files``, in file order."""
    h5py = _h5py()
    out = []
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                out += [(path, i) for i in range(_check_volume(f, path))]
        except OSError as e:
            raise ValueError(f"cannot read {path} ({e}): re-extract it from the fastMRI archive") from e
    return out


def read_slice(path: str, i: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(kspace [rows, W] complex64, reconstruction_esc [H, W'] float32, volume max) of slice ``i``."""
    with _h5py().File(path, "r") as f:
        return f["kspace"][i], f["reconstruction_esc"][i], float(f.attrs.get("max", 0.0))


def _stack(examples: list[dict[str, np.ndarray]], size: int) -> dict[str, np.ndarray]:
    n = len(examples)
    out = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    out["weights"] = np.ones(n, np.float32)
    if n < size:
        out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) for k, v in out.items()}
    return out


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    # numpy's FFTs and elementwise loops release the GIL: a batch's slices are prepared in parallel.
    return concurrent.futures.ThreadPoolExecutor(min(16, os.cpu_count() or 1), thread_name_prefix="fastmri")


def _example(index: list[tuple[str, int]], pos: int, seed: int | None) -> dict[str, np.ndarray]:
    """Slice ``pos`` of ``index``, its mask seeded by (seed, pos), or ``EVAL_MASK_SEED`` without a seed."""
    kspace, target, vmax = read_slice(*index[pos])
    mask_rng = np.random.default_rng([seed, pos] if seed is not None else EVAL_MASK_SEED)
    return preprocess_slice(kspace, target, vmax, mask_rng)


def batches(
    index: list[tuple[str, int]],
    batch_size: int,
    seed: int | None,
    repeat: bool,
    drop_remainder: bool,
    shuffle: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Preprocessed batches, read slice by slice from the volumes (never a whole split).

    With a ``seed``: each example's mask is seeded by (seed, its position in ``index``),
    so a slice keeps its mask across epochs, and the order is reshuffled every epoch
    (unless ``shuffle`` is False); without: in order, every slice with the mask seed
    ``EVAL_MASK_SEED``. Every batch has 'weights'; a short last batch
    (``drop_remainder=False``) is zero-padded with weight 0.
    """
    order_rng = np.random.default_rng(seed)

    def example(pos: int) -> dict[str, np.ndarray]:
        return _example(index, pos, seed)

    while True:
        order = order_rng.permutation(len(index)) if seed is not None and shuffle else np.arange(len(index))
        stop = len(order) - len(order) % batch_size if drop_remainder else len(order)
        if stop == 0 and repeat:
            raise ValueError(f"fastmri: {len(index)} slices are fewer than one batch of {batch_size}")
        for lo in range(0, stop, batch_size):
            yield _stack(list(_pool().map(example, (int(p) for p in order[lo : min(lo + batch_size, stop)]))), batch_size)
        if not repeat:
            return


def train_batches(index: list[tuple[str, int]], batch_size: int, seed: int) -> SeekableBatches:
    """The train stream: full batches, reshuffled every epoch, seekable (``algoperf.data.epochs``).

    Each slice's mask is seeded by (seed, its position in ``index``), as in ``batches``;
    a resumed trial seeks to its next batch without reading the ones before it.
    """
    order = EpochOrder(len(index), batch_size, seed, what=f"fastmri's {len(index)} training slices")

    def make(positions: np.ndarray, b: int) -> dict[str, np.ndarray]:
        del b
        return _stack(list(_pool().map(lambda pos: _example(index, int(pos), seed), positions)), batch_size)

    return SeekableBatches(order, make)
