"""CIFAR-10 from the official python-pickle batches (or AlgoPerf's TFDS shards), in memory.

Looked for under ``--data-dir`` in ``cifar-10-batches-py/`` and ``cifar10/cifar-10-batches-py/``
(the layout of the official ``cifar-10-python.tar.gz`` and of AlgoPerf's PyTorch setup),
then as TFDS shards ``[cifar10/]cifar10/3.0.2/cifar10-{train,test}.tfrecord-*`` (AlgoPerf's
JAX setup; PNG images decoded with PIL). Each pickle batch is a dict with ``b'data'``
(N x 3072 uint8, channel-major 3 x 32 x 32 per row) and ``b'labels'``. ``algoperf data
prepare cifar`` (``prepare.py``) extracts the official archive into ``<data_dir>/cifar10/``.

Splits as in AlgoPerf: train = the first 45,000 training images, validation = the last
5,000, test = the 10,000 test images. Train augmentation (JAX reference, G2): zero-pad to
36 x 36 (2 px per side), random 32 x 32 crop, random horizontal flip; then every split is
scaled to [0, 1] and normalised per channel.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from algoperf.array_workload import BatchQueue
from algoperf.data import tfrecord
from algoperf.data.epochs import EpochOrder, SeekableBatches
from algoperf.data.seeds import seed_from_rng
from algoperf.spec import DataNotFoundError

MEAN = (0.49139968, 0.48215827, 0.44653124)
STDDEV = (0.24703233, 0.24348505, 0.26158768)
NUM_TRAIN = 45_000
CROP_SIZE = 32
PADDING_SIZE = 4  # total: the reference pads to 32 + 4, i.e. 2 px per side
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"

Split = dict[str, np.ndarray]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A pickle batch as (N, 32, 32, 3) uint8 images and (N,) int32 labels."""
    with open(path, "rb") as f:
        try:
            batch = pickle.load(f, encoding="bytes")
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
            raise DataNotFoundError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataNotFoundError(f"{path} has no 'data'/'labels' entries: not a CIFAR-10 python batch")
    data = np.asarray(batch["data"], np.uint8)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(batch["labels"], np.int32)


def _read_tfds(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    import io

    from PIL import Image

    images, labels = [], []
    for f in files:
        for record in tfrecord.iter_records(f):
            example = tfrecord.parse_example(record)
            images.append(np.asarray(Image.open(io.BytesIO(example["image"][0])).convert("RGB"), np.uint8))
            labels.append(int(example["label"][0]))
    return np.stack(images), np.array(labels, np.int32)


def load(data_dir: str | Path | None) -> dict[str, Split]:
    """{'train', 'validation', 'test'} -> {'images' uint8 NHWC, 'targets' int32}."""
    if data_dir is None:
        raise DataNotFoundError(
            "the cifar workload reads CIFAR-10: pass --data-dir DIR holding cifar-10-batches-py/ "
            "(extract the official cifar-10-python.tar.gz there; see workloads/cifar/README.md)"
        )
    root = Path(data_dir)
    for folder in (root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py", root):
        if all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            parts = [read_batch(folder / name) for name in TRAIN_FILES]
            train_x, train_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            test_x, test_y = read_batch(folder / TEST_FILE)
            break
    else:
        for tfds_dir in (root / "cifar10" / "3.0.2", root / "cifar10" / "cifar10" / "3.0.2"):
            train_files = sorted(tfds_dir.glob("cifar10-train.tfrecord-*"))
            test_files = sorted(tfds_dir.glob("cifar10-test.tfrecord-*"))
            if train_files and test_files:
                train_x, train_y = _read_tfds(train_files)
                test_x, test_y = _read_tfds(test_files)
                break
        else:
            raise DataNotFoundError(
                f"CIFAR-10 not found under {root}: expected cifar-10-batches-py/ (data_batch_1..5, "
                "test_batch) or cifar10/[cifar10/]3.0.2/cifar10-*.tfrecord-*; extract the official "
                "cifar-10-python.tar.gz into --data-dir (see workloads/cifar/README.md)"
            )
    # Keep AlgoPerf's 45k/5k proportions on smaller files (tests), exact on the real ones.
    n_train = min(NUM_TRAIN, len(train_y) * 9 // 10)
    return {
        "train": {"images": train_x[:n_train], "targets": train_y[:n_train]},
        "validation": {"images": train_x[n_train:], "targets": train_y[n_train:]},
        "test": {"images": test_x, "targets": test_y},
    }


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> ((x / 255) - mean) / std, float32."""
    x = images.astype(np.float32) / 255.0
    return (x - np.asarray(MEAN, np.float32)) / np.asarray(STDDEV, np.float32)


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad 2 px per side, random 32 x 32 crop, random horizontal flip (uint8 in, out)."""
    pad = PADDING_SIZE // 2
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n = len(images)
    tops = rng.integers(0, 2 * pad + 1, n)
    lefts = rng.integers(0, 2 * pad + 1, n)
    flips = rng.random(n) < 0.5
    out = np.empty_like(images)
    for i in range(n):
        crop = padded[i, tops[i] : tops[i] + CROP_SIZE, lefts[i] : lefts[i] + CROP_SIZE]
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out


def train_batches(split: Split, kind: str, batch_size: int, seed: int) -> SeekableBatches:
    """Endless full batches, reshuffled every epoch (``algoperf.data.epochs``). kind 'train':
    augmented, batch ``b``'s crops and flips drawn from ``default_rng([seed, b])``;
    'eval_train': not augmented, with all-one 'weights'. Seekable: a resumed trial goes on at
    its next batch without making the ones before it."""
    images, targets = split["images"], split["targets"]
    order = EpochOrder(len(targets), batch_size, seed, what=f"the {len(targets)} training images")

    def make(idx: np.ndarray, b: int) -> dict[str, np.ndarray]:
        if kind == "train":
            return {"inputs": normalize(augment(images[idx], np.random.default_rng([seed, b]))), "targets": targets[idx]}
        return {"inputs": normalize(images[idx]), "targets": targets[idx], "weights": np.ones(len(idx), np.float32)}

    return SeekableBatches(order, make)


def eval_batches(split: Split, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless passes in stored order; each pass's last batch zero-padded with weight 0."""
    images, targets = split["images"], split["targets"]
    n = len(targets)
    while True:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            pad = batch_size - (stop - start)
            inputs = normalize(images[start:stop])
            labels = targets[start:stop]
            weights = np.ones(stop - start, np.float32)
            if pad:
                inputs = np.concatenate([inputs, np.zeros((pad, *inputs.shape[1:]), np.float32)])
                labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
                weights = np.concatenate([weights, np.zeros(pad, np.float32)])
            yield {"inputs": inputs, "targets": labels, "weights": weights}


def build_input_queue(
    splits: dict[str, Split], data_rng: Any, split: str, global_batch_size: int, num_batches: int | None = None
) -> BatchQueue:
    """Device batches of ``split`` ('train', 'eval_train', 'validation', 'test'); the train
    queue can ``seek``."""
    if split in ("train", "eval_train"):
        batches = train_batches(splits["train"], split, global_batch_size, seed_from_rng(data_rng))
    else:
        batches = eval_batches(splits[split], global_batch_size)
    return BatchQueue(batches, num_batches)
