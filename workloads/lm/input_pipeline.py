"""The LM's on-disk format: one flat token stream per split, cut into 1025-token windows.

Layout: ``<data_dir>/lm/`` (or ``<data_dir>`` itself) holding ``meta.json``
(``{"format": "algoperf-lm-tokens-v1", "dtype": "uint16"|"uint32", "vocab_size": V,
"eot_id": E, "seq_len": 1024}``) and ``train.bin`` / ``validation.bin``: the documents'
token ids, each document followed by ``eot_id``, concatenated, stored raw in ``dtype``
(little endian). Window i is tokens ``[1025 i, 1025 (i + 1))`` (the remainder is dropped);
inputs are its first 1024 tokens, targets its last 1024, as in the upstream pipeline.

``algoperf data prepare lm`` (``prepare.py``) writes this from a local corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from algoperf import spec
from algoperf.data.epochs import EpochOrder, SeekableBatches

FORMAT = "algoperf-lm-tokens-v1"
SEQ_LEN = 1024
_HOW = "create it with `algoperf data prepare lm --source CORPUS --data-dir DIR` and pass --data-dir DIR"


def _root(data_dir: str | None) -> Path:
    if not data_dir:
        raise spec.DataNotFoundError(f"the lm workload needs --data-dir: {_HOW}")
    root = Path(data_dir)
    return root / "lm" if (root / "lm" / "meta.json").is_file() else root


def load_meta(data_dir: str | None) -> dict:
    path = _root(data_dir) / "meta.json"
    if not path.is_file():
        raise spec.DataNotFoundError(f"no LM token data (meta.json) in {path.parent}: {_HOW}")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise spec.DataNotFoundError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}: {_HOW}")
    return meta


def windows(data_dir: str | None, split: str, seq_len: int = SEQ_LEN) -> np.ndarray:
    """The split's tokens as a read-only [num_windows, seq_len + 1] view (memory-mapped)."""
    meta = load_meta(data_dir)
    name = "train" if split in ("train", "eval_train") else "validation"
    path = _root(data_dir) / f"{name}.bin"
    if not path.is_file():
        raise spec.DataNotFoundError(f"no {path}: {_HOW}")
    tokens = np.memmap(path, dtype=np.dtype(meta["dtype"]).newbyteorder("<"), mode="r")
    n = len(tokens) // (seq_len + 1)
    if n == 0:
        raise spec.DataNotFoundError(f"{path} holds fewer than {seq_len + 1} tokens: {_HOW}")
    return tokens[: n * (seq_len + 1)].reshape(n, seq_len + 1)


def _batch(rows: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Inputs/targets [size, L] and 'weights' (0 on padding rows)."""
    rows = np.asarray(rows, np.int32)
    out = np.zeros((size, rows.shape[1]), np.int32)
    out[: len(rows)] = rows
    weights = np.zeros((size, rows.shape[1] - 1), np.float32)
    weights[: len(rows)] = 1.0
    return {"inputs": out[:, :-1], "targets": out[:, 1:], "weights": weights}


def train_batches(data: np.ndarray, batch_size: int, seed: int) -> SeekableBatches:
    """Endless batches of whole windows, reshuffled every epoch (``algoperf.data.epochs``);
    seekable, so a resumed trial goes on at its next batch."""
    order = EpochOrder(len(data), batch_size, seed, what=f"the {len(data)} training windows")
    return SeekableBatches(order, lambda idx, b: _batch(data[np.sort(idx)], batch_size))


def eval_batches(data: np.ndarray, batch_size: int, num_examples: int) -> Iterator[dict[str, np.ndarray]]:
    """The first ``num_examples`` windows in order; the last batch padded (weight 0)."""
    n = min(num_examples, len(data))
    for start in range(0, n, batch_size):
        yield _batch(data[start : min(start + batch_size, n)], batch_size)
