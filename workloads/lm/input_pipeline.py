"""The LM's on-disk format: one flat token stream per split, cut into 1025-token windows.

Layout: ``<data_dir>/lm/`` (or ``<data_dir>`` itself) holding ``meta.json``
(``{"format": "algoperf-lm-tokens-v1", "dtype": "uint16"|"uint32", "vocab_size": V,
"eot_id": E, "seq_len": 1024}``) and ``train.bin`` / ``validation.bin``: the documents'
token ids, each document followed by ``eot_id``, concatenated, stored raw in ``dtype``
(little endian). Window i is tokens ``[1025 i, 1025 (i + 1))`` (the remainder is dropped);
inputs are its first 1024 tokens, targets its last 1024, as in the upstream pipeline.

``prepare`` (``algoperf data prepare lm``) writes this from a local corpus: text files or
parquet files with a 'text' column, tokenized with GPT-2's BPE (``tokenizer.py``), or
parquet files with an 'input_ids' column (already tokenized). Documents are split 90/10
into train/validation with a fixed seed, as upstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from algoperf import spec

from .tokenizer import ByteLevelBPE

FORMAT = "algoperf-lm-tokens-v1"
SEQ_LEN = 1024
GPT2_EOT = 50_256
GPT2_VOCAB = 50_257
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


def _text_documents(path: Path, per_file: bool) -> Iterator[str]:
    try:
        if per_file:
            yield path.read_text(encoding="utf-8")
            return
        with open(path, encoding="utf-8", newline="\n") as f:
            for line in f:
                yield line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from e


def _parquet_documents(path: Path) -> Iterator[str | list[int]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ValueError(
            f"reading {path} needs the `pyarrow` package (pip install pyarrow), or pass the corpus as .txt files"
        ) from e
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises its own error types
        raise ValueError(f"{path} is not a readable parquet file ({e})") from e
    if "text" in table.column_names:
        yield from (t for t in table.column("text").to_pylist() if t)
    elif "input_ids" in table.column_names:
        yield from table.column("input_ids").to_pylist()
    else:
        raise ValueError(f"{path} has neither a 'text' nor an 'input_ids' column")


def _documents(source: Path, per_file: bool, tokenizer: ByteLevelBPE | None) -> Iterator[list[int]]:
    """Token ids of every non-empty document of ``source`` (end-of-text not yet added)."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix in (".txt", ".parquet") and p.is_file())
        if not files:
            raise spec.DataNotFoundError(f"no .txt or .parquet files in {source}")
    elif source.is_file():
        files = [source]
    else:
        raise spec.DataNotFoundError(f"--source {source} does not exist: {_SOURCE}")
    for file in files:
        docs = _parquet_documents(file) if file.suffix == ".parquet" else _text_documents(file, per_file)
        for doc in docs:
            if isinstance(doc, str):
                if not doc:
                    continue
                if tokenizer is None:
                    raise ValueError(f"{file} holds text: pass --option tokenizer=PATH ({_TOKENIZER})")
                doc = tokenizer.encode(doc)
            if doc:
                yield doc


_SOURCE = (
    "pass a UTF-8 text file, a folder of .txt / .parquet files or a .parquet file with a 'text' "
    "(or pre-tokenized 'input_ids') column, e.g. FineWeb-Edu's sample-10BT parquet files "
    "(https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu)"
)
_TOKENIZER = (
    "GPT-2's tokenizer.json or a folder with its vocab.json and merges.txt, from "
    "https://huggingface.co/openai-community/gpt2"
)


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Write ``<data_dir>/lm/{train,validation}.bin`` and ``meta.json`` (format above) from a corpus.

    ``source``: a text file, a folder of ``.txt`` / ``.parquet`` files, or a ``.parquet``
    file (needs pyarrow) with a 'text' column (or an 'input_ids' column, already tokenized).
    Options: ``tokenizer`` (GPT-2's ``tokenizer.json`` or a folder with ``vocab.json`` +
    ``merges.txt``; needed for text; ``tokenizer.ByteLevelBPE``), ``documents`` ('lines':
    every non-empty line of a text file is a document (default); 'files': each text file is
    one), ``vocab_size`` and ``eot_id`` (default: the tokenizer's, else GPT-2's 50257 /
    50256), ``validation_fraction`` (0.1), ``seed`` (0). Each document gets ``eot_id``
    appended and goes to validation with probability ``validation_fraction`` (seeded).
    """
    known = {"tokenizer", "documents", "vocab_size", "eot_id", "validation_fraction", "seed"}
    if set(options) - known:
        raise ValueError(f"unknown lm option(s) {sorted(set(options) - known)}; known: {', '.join(sorted(known))}")
    if source is None:
        raise spec.DataNotFoundError(f"algoperf data prepare lm needs --source: {_SOURCE}")
    documents = options.get("documents", "lines")
    if documents not in ("lines", "files"):
        raise ValueError(f"--option documents={documents}: use 'lines' or 'files'")
    tokenizer = ByteLevelBPE.load(options["tokenizer"]) if "tokenizer" in options else None
    try:
        vocab_size = int(options.get("vocab_size", tokenizer.vocab_size if tokenizer else GPT2_VOCAB))
        default_eot = tokenizer.eot_id if tokenizer and tokenizer.eot_id is not None else GPT2_EOT
        eot_id = int(options.get("eot_id", default_eot))
        validation_fraction = float(options.get("validation_fraction", 0.1))
        seed = int(options.get("seed", 0))
    except ValueError as e:
        raise ValueError(f"lm options: vocab_size, eot_id and seed take integers, validation_fraction a number ({e})") from e
    if not 0 <= eot_id < vocab_size:
        raise ValueError(f"eot_id {eot_id} is outside the vocabulary [0, {vocab_size})")
    out = Path(data_dir) / "lm"
    out.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32).newbyteorder("<")
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "validation": 0}
    files = {name: open(out / f"{name}.bin.tmp", "wb") for name in counts}
    try:
        for ids in _documents(Path(source), documents == "files", tokenizer):
            arr = np.asarray([*ids, eot_id], np.int64)
            if arr.min() < 0 or arr.max() >= vocab_size:
                raise ValueError(f"token ids outside [0, {vocab_size}): pass the right --option vocab_size")
            name = "validation" if rng.random() < validation_fraction else "train"
            files[name].write(arr.astype(dtype).tobytes())
            counts[name] += len(arr)
    finally:
        for f in files.values():
            f.close()
    for name in counts:
        (out / f"{name}.bin.tmp").replace(out / f"{name}.bin")
    meta = {
        "format": FORMAT, "dtype": dtype.name, "vocab_size": vocab_size,
        "eot_id": eot_id, "seq_len": SEQ_LEN, "num_tokens": counts,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return out
