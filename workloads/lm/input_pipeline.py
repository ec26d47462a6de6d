"""The LM's on-disk format: one flat token stream per split, cut into 1025-token windows.

Layout: ``<data_dir>/lm/`` (or ``<data_dir>`` itself) holding ``meta.json``
(``{"format": "algoperf-lm-tokens-v1", "dtype": "uint16"|"uint32", "vocab_size": V,
"eot_id": E, "seq_len": 1024}``) and ``train.bin`` / ``validation.bin``: the documents'
token ids, each document followed by ``eot_id``, concatenated, stored raw in ``dtype``
(little endian). Window i is tokens ``[1025 i, 1025 (i + 1))`` (the remainder is dropped);
inputs are its first 1024 tokens, targets its last 1024, as in the upstream pipeline.

``prepare`` writes this from a local corpus: a parquet file (or folder of them) with an
``input_ids`` column (already tokenized), or with a ``text`` column plus a
``tokenizer.json`` for the Hugging Face ``tokenizers`` package (GPT-2's for parity).
Documents are split 90/10 into train/validation with a fixed seed, as upstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from algoperf import spec

FORMAT = "algoperf-lm-tokens-v1"
SEQ_LEN = 1024
GPT2_EOT = 50_256
GPT2_VOCAB = 50_257
_HOW = "create it with `algoperf.workloads.lm.input_pipeline.prepare(corpus, DIR/lm)` and pass --data-dir DIR"


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


def train_batches(data: np.ndarray, batch_size: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless batches of whole windows, a fresh permutation every epoch."""
    if batch_size > len(data):
        raise ValueError(f"batch size {batch_size} is larger than the {len(data)} training windows")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(data))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield _batch(data[np.sort(order[start : start + batch_size])], batch_size)


def eval_batches(data: np.ndarray, batch_size: int, num_examples: int) -> Iterator[dict[str, np.ndarray]]:
    """The first ``num_examples`` windows in order; the last batch padded (weight 0)."""
    n = min(num_examples, len(data))
    for start in range(0, n, batch_size):
        yield _batch(data[start : min(start + batch_size, n)], batch_size)


def _documents(corpus: Path, tokenizer_json: Path | None) -> Iterator[list[int]]:
    import pyarrow.parquet as pq

    files = sorted(corpus.glob("*.parquet")) if corpus.is_dir() else [corpus]
    if not files:
        raise spec.DataNotFoundError(f"no .parquet files in {corpus}")
    tokenizer = None
    for file in files:
        table = pq.read_table(file)
        if "input_ids" in table.column_names:
            yield from table.column("input_ids").to_pylist()
        elif "text" in table.column_names:
            if tokenizer is None:
                if tokenizer_json is None:
                    raise ValueError(f"{file} has a 'text' column: pass tokenizer_json (GPT-2's tokenizer.json)")
                from tokenizers import Tokenizer  # optional dependency, only for raw text

                tokenizer = Tokenizer.from_file(str(tokenizer_json))
            for text in table.column("text").to_pylist():
                if text:
                    yield tokenizer.encode(text).ids
        else:
            raise ValueError(f"{file} has neither an 'input_ids' nor a 'text' column")


def prepare(
    corpus: str | Path,
    out_dir: str | Path,
    tokenizer_json: str | Path | None = None,
    vocab_size: int = GPT2_VOCAB,
    eot_id: int = GPT2_EOT,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> dict:
    """Write ``train.bin``, ``validation.bin`` and ``meta.json`` to ``out_dir``.

    Each non-empty document gets ``eot_id`` appended; a document goes to validation with
    probability ``validation_fraction`` (seeded). Returns the meta with token counts.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if vocab_size <= 2**16 else np.uint32
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "validation": 0}
    files = {name: open(out / f"{name}.bin.tmp", "wb") for name in counts}
    try:
        for ids in _documents(Path(corpus), Path(tokenizer_json) if tokenizer_json else None):
            if not ids:
                continue
            arr = np.asarray(list(ids) + [eot_id], np.int64)
            if arr.min() < 0 or arr.max() >= vocab_size:
                raise ValueError(f"token ids outside [0, {vocab_size}): pass the right vocab_size")
            name = "validation" if rng.random() < validation_fraction else "train"
            files[name].write(arr.astype(np.dtype(dtype).newbyteorder("<")).tobytes())
            counts[name] += len(arr)
    finally:
        for f in files.values():
            f.close()
    for name in counts:
        (out / f"{name}.bin.tmp").replace(out / f"{name}.bin")
    meta = {
        "format": FORMAT, "dtype": np.dtype(dtype).name, "vocab_size": vocab_size,
        "eot_id": eot_id, "seq_len": SEQ_LEN, "num_tokens": counts,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta
