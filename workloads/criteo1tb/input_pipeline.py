"""Criteo 1TB click logs as AlgoPerf's dataset setup leaves them: TSV day files.

Files ``day_{d}_{NN}`` (no extension, 5,000,000 lines each) in ``<data_dir>`` or
``<data_dir>/criteo1tb``. A line holds 40 tab-separated fields: label, 13 integers, 26
categorical 8-hex-digit strings; any may be empty. Parsing follows the reference
(``tf.io.decode_csv`` + ``tf.strings.to_hash_bucket_fast``):

* empty fields and the text ``-1`` take the default (0 for label and integers,
  ``'00000000'`` for categoricals);
* dense x -> log(max(x, 0) + 1) in float32;
* categorical column i: FarmHash Fingerprint64(text + str(i)) mod V_i, then cast to
  float32 (ids above 2^24 round, exactly as in the reference) and stored after the dense
  features: ``inputs`` [B, 39].

Splits: train = days 0-22 (file order shuffled by the seed, lines read in order, no
example shuffle: the reference's own ordering), test = ``day_23_00 .. day_23_18``,
validation = ``day_23_19 .. day_23_35``.

FarmHash needs the ``pyfarmhash`` package (imported when the first line is hashed).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from algoperf.spec import DataNotFoundError

NUM_DAY_23_FILES = 36
NUM_TEST_FILES = NUM_DAY_23_FILES // 2 + 1  # 19: day_23_00 .. day_23_18
VOCAB_SIZES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)
NUM_DENSE = 13
NUM_FIELDS = 1 + NUM_DENSE + len(VOCAB_SIZES)
SETUP_HINT = (
    "Download and split the Criteo 1TB click logs with AlgoPerf's dataset setup "
    "(`python datasets/dataset_setup.py --data_dir=DIR --criteo1tb`), then pass "
    "--data-dir DIR/criteo1tb (the folder holding day_0_00 ... day_23_35)."
)


def fingerprint64() -> Callable[[bytes], int]:
    """FarmHash Fingerprint64 (TF's ``to_hash_bucket_fast`` hash) from ``pyfarmhash``."""
    try:
        import farmhash
    except ImportError as e:
        raise ImportError(
            "criteo1tb hashes categorical fields with FarmHash Fingerprint64: "
            "`pip install pyfarmhash` to read the TSV files"
        ) from e
    fn = getattr(farmhash, "fingerprint64", None) or farmhash.Fingerprint64
    return lambda b: int(fn(b))


def parse_lines(lines: Iterable[str | bytes], hash_fn: Callable[[bytes], int] | None = None) -> dict[str, np.ndarray]:
    """Raw TSV lines -> {'inputs': [B, 39] float32, 'targets': [B] float32}."""
    hash_fn = hash_fn or fingerprint64()
    rows = [ln.decode() if isinstance(ln, bytes) else ln for ln in lines]
    n = len(rows)
    targets = np.zeros(n, np.float32)
    dense = np.zeros((n, NUM_DENSE), np.float32)
    sparse = np.zeros((n, len(VOCAB_SIZES)), np.float32)
    for r, line in enumerate(rows):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != NUM_FIELDS:
            raise ValueError(f"a Criteo line has {NUM_FIELDS} tab-separated fields, got {len(fields)}: {line[:80]!r}")
        label = fields[0]
        targets[r] = 0.0 if label in ("", "-1") else float(label)
        for j in range(NUM_DENSE):
            v = fields[1 + j]
            dense[r, j] = 0.0 if v in ("", "-1") else float(v)
        for j, size in enumerate(VOCAB_SIZES):
            v = fields[1 + NUM_DENSE + j]
            text = "00000000" if v in ("", "-1") else v
            # Integer mod in Python, then one rounding to float32 like tf.cast(int64 -> float32).
            sparse[r, j] = np.float32(hash_fn((text + str(j)).encode()) % size)
    dense = np.log(np.maximum(dense, np.float32(0)) + np.float32(1)).astype(np.float32)
    return {"inputs": np.concatenate([dense, sparse], axis=1), "targets": targets}


def _root(data_dir: str | None) -> str:
    if not data_dir:
        raise DataNotFoundError(f"criteo1tb needs --data-dir. {SETUP_HINT}")
    for root in (os.path.join(data_dir, "criteo1tb"), data_dir):
        if glob.glob(os.path.join(root, "day_*_*")):
            return root
    raise DataNotFoundError(f"no Criteo day files (day_<d>_<NN>) under {data_dir!r}. {SETUP_HINT}")


def split_files(data_dir: str | None, split: str) -> list[str]:
    """The day files of ``split`` ('train', 'eval_train', 'validation', 'test')."""
    root = _root(data_dir)
    if split in ("train", "eval_train"):
        files = sorted(f for d in range(23) for f in glob.glob(os.path.join(root, f"day_{d}_*")))
    elif split == "test":
        files = [os.path.join(root, f"day_23_{i:02d}") for i in range(NUM_TEST_FILES)]
    elif split == "validation":
        files = [os.path.join(root, f"day_23_{i:02d}") for i in range(NUM_TEST_FILES, NUM_DAY_23_FILES)]
    else:
        raise ValueError(f"unknown criteo1tb split {split!r}")
    missing = [f for f in files if not os.path.exists(f)]
    if not files or missing:
        raise DataNotFoundError(f"criteo1tb split {split!r} is missing files ({missing[:3] or 'none found'}). {SETUP_HINT}")
    return files


def _lines(files: list[str]) -> Iterator[str]:
    for path in files:
        with open(path, encoding="utf-8") as f:
            yield from f


def batches(
    files: list[str],
    batch_size: int,
    shuffle_seed: int | None,
    repeat: bool,
    drop_remainder: bool,
    hash_fn: Callable[[bytes], int] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Parsed batches of consecutive lines; files in a seeded random order if ``shuffle_seed``.

    A short last batch (``drop_remainder=False``) is zero-padded to ``batch_size``
    with ``weights`` 0 on the padding; every batch carries 'weights'.
    """
    hash_fn = hash_fn or fingerprint64()
    rng = np.random.default_rng(shuffle_seed)
    while True:
        order = list(files)
        if shuffle_seed is not None:
            rng.shuffle(order)
        buf: list[str] = []
        for line in _lines(order):
            buf.append(line)
            if len(buf) == batch_size:
                out = parse_lines(buf, hash_fn)
                out["weights"] = np.ones(batch_size, np.float32)
                yield out
                buf = []
        if buf and not drop_remainder:
            out = parse_lines(buf, hash_fn)
            n = len(buf)
            pad = batch_size - n
            out = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in out.items()}
            out["weights"] = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
            yield out
        if not repeat:
            return
