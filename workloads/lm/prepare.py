"""``algoperf data prepare lm``: a local text corpus into the LM's token files.

Reads text files or parquet files with a 'text' column, tokenized with GPT-2's BPE
(``tokenizer.py``), or parquet files with an 'input_ids' column (already tokenized).
Writes ``<data_dir>/lm/{train,validation}.bin`` and ``meta.json`` in the format
``input_pipeline``'s docstring describes. Documents are split 90/10 into
train/validation with a fixed seed, as upstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from algoperf import spec

from .input_pipeline import FORMAT, SEQ_LEN
from .tokenizer import ByteLevelBPE

GPT2_EOT = 50_256
GPT2_VOCAB = 50_257


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
    """Write ``<data_dir>/lm/{train,validation}.bin`` and ``meta.json`` from a corpus.

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
