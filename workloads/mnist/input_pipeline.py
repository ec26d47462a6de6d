"""MNIST from the four standard IDX files (optionally gzipped).

Looked for in ``<data_dir>``, ``<data_dir>/MNIST`` (where ``algoperf data prepare mnist``,
``prepare.py``, puts them) and ``<data_dir>/MNIST/raw``. As in AlgoPerf, train = the first
50,000 training images, validation = the last 10,000, test = the 10,000 test images. IDX
format: a big-endian header (magic 0x00000803 for images, 0x00000801 for labels, then the
dimension sizes as uint32) followed by uint8 data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from algoperf.spec import DataNotFoundError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
NUM_TRAIN = 50_000
MEAN, STDDEV = 0.1307, 0.3081


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (plain or .gz) as a numpy array."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} values")
    return data.reshape(shape)


def find_files(data_dir: str | Path | None) -> dict[str, Path]:
    """Paths of the four IDX files, or DataNotFoundError saying how to get them."""
    if data_dir is None:
        raise DataNotFoundError(
            "the mnist workload reads the MNIST IDX files: pass --data-dir DIR "
            "(run `algoperf data prepare mnist --data-dir DIR` once to download them)"
        )
    root = Path(data_dir)
    found: dict[str, Path] = {}
    for key, name in FILES.items():
        for folder in (root, root / "MNIST", root / "MNIST" / "raw"):
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.exists():
                    found.setdefault(key, candidate)
    missing = [FILES[k] for k in FILES if k not in found]
    if missing:
        raise DataNotFoundError(
            f"MNIST files missing under {root} (looked in ., MNIST/, MNIST/raw/): {', '.join(missing)}; "
            "run `algoperf data prepare mnist --data-dir DIR` or copy them there"
        )
    return found


def load(data_dir: str | Path | None) -> dict[str, dict[str, np.ndarray]]:
    """Splits as {'inputs': (N, 28, 28, 1) float32 normalised, 'targets': (N,) int32}."""
    files = find_files(data_dir)
    arrays = {k: read_idx(p) for k, p in files.items()}

    def split(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        # Deliberate fix of AlgoPerf's G1 quirk: scale pixels to [0, 1] before normalising.
        inputs = (images.astype(np.float32) / 255.0 - MEAN) / STDDEV
        return {"inputs": inputs[..., None], "targets": labels.astype(np.int32)}

    n_train = min(NUM_TRAIN, len(arrays["train_labels"]) * 5 // 6)
    return {
        "train": split(arrays["train_images"][:n_train], arrays["train_labels"][:n_train]),
        "validation": split(arrays["train_images"][n_train:], arrays["train_labels"][n_train:]),
        "test": split(arrays["test_images"], arrays["test_labels"]),
    }
