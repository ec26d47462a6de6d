"""WMT17 de-en from the TFDS files AlgoPerf's dataset setup writes, read without TensorFlow.

Layout (``datasets/dataset_setup.py --wmt``, or ``algoperf data prepare wmt``: ``prepare.py``)
under ``<data_dir>`` (or ``<data_dir>/wmt``):
``wmt17_translate/de-en/1.0.0/wmt17_translate-train.tfrecord-*`` (train, eval_train),
``wmt14_translate/de-en/1.0.0/wmt14_translate-{validation,test}.tfrecord-*`` and the
SentencePiece model ``wmt_sentencepiece_model``. Each record is a ``tf.train.Example``
with bytes features ``de`` (inputs) and ``en`` (targets).

As in the reference: both sides are tokenized with EOS appended (id 2; id 0 is padding
and <unk>); pairs longer than 256 tokens on either side are dropped on every split;
training shuffles with a 1024-example buffer over the stored order, repeats, and packs
consecutive groups of 256 examples into rows of 256 tokens (``*_position`` restart at 0
per sub-sequence, ``*_segmentation`` 1, 2, ... and 0 on padding); eval batches are padded
to 256 tokens and to the full batch, with 'weights' 1 on real rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from algoperf import spec
from algoperf.data import tfrecord

MAX_LEN = 256
EOS_ID = 2
PACK_GROUP = 256
SHUFFLE_BUFFER = 1024
VOCAB_FILE = "wmt_sentencepiece_model"
_SOURCES = {
    "train": ("wmt17_translate", "train"),
    "eval_train": ("wmt17_translate", "train"),
    "validation": ("wmt14_translate", "validation"),
    "test": ("wmt14_translate", "test"),
}
_HOW = (
    "prepare it with `algoperf data prepare wmt --source FOLDER --data-dir DIR` (FOLDER: the "
    "statmt.org WMT17 de-en files) or AlgoPerf's `python datasets/dataset_setup.py --data_dir DIR "
    "--wmt`, and pass --data-dir DIR"
)


def _root(data_dir: str | None) -> Path:
    if not data_dir:
        raise spec.DataNotFoundError(f"the wmt workloads need --data-dir: {_HOW}")
    root = Path(data_dir)
    return root / "wmt" if (root / "wmt").is_dir() else root


def split_files(data_dir: str | None, split: str) -> list[Path]:
    """The TFRecord shards of ``split``; DataNotFoundError says what to do if missing."""
    dataset, tfds_split = _SOURCES[split]
    folder = _root(data_dir) / dataset / "de-en" / "1.0.0"
    files = sorted(folder.glob(f"{dataset}-{tfds_split}.tfrecord*"))
    if not files:
        raise spec.DataNotFoundError(f"no {dataset}-{tfds_split}.tfrecord* files in {folder}: {_HOW}")
    return files


def load_tokenizer(data_dir: str | None):
    """The SentencePiece processor of ``<data_dir>/wmt_sentencepiece_model``."""
    path = _root(data_dir) / VOCAB_FILE
    if not path.is_file():
        raise spec.DataNotFoundError(f"no SentencePiece model at {path}: {_HOW}")
    try:
        import sentencepiece
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise spec.DataNotFoundError(
            "the wmt workloads need the `sentencepiece` package: pip install sentencepiece"
        ) from e
    return sentencepiece.SentencePieceProcessor(model_file=str(path))


def tokenize(tokenizer, text: bytes | str) -> np.ndarray:
    """Ids of ``text`` with EOS appended (the reference's add_eos=True)."""
    text = text.decode("utf-8") if isinstance(text, bytes) else text
    return np.array(tokenizer.encode(text) + [EOS_ID], np.int32)


def detokenize(tokenizer, ids: np.ndarray) -> str:
    """Ids cut at the first EOS (inclusive; no EOS: only the first id, as the reference's
    argmax does), then decoded (EOS dropped)."""
    ids = np.asarray(ids)
    eos = np.flatnonzero(ids == EOS_ID)
    ids = ids[: eos[0] + 1] if eos.size else ids[:1]
    return tokenizer.decode([int(i) for i in ids if i != EOS_ID])


def pairs(data_dir: str | None, split: str, tokenizer) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Tokenized (de, en) pairs of ``split`` in stored order, length-filtered to 256."""
    for example in tfrecord.read_examples(split_files(data_dir, split)):
        src = tokenize(tokenizer, example["de"][0])
        tgt = tokenize(tokenizer, example["en"][0])
        if max(len(src), len(tgt)) <= MAX_LEN:
            yield src, tgt


def shuffle_buffer(items: Iterable, size: int, rng: np.random.Generator) -> Iterator:
    """tf.data-style buffered shuffle: fill ``size``, then emit a random slot and refill it."""
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


def pack(examples: Iterable[tuple[np.ndarray, np.ndarray]], length: int = MAX_LEN) -> Iterator[dict]:
    """Greedy packing of consecutive groups of 256 pairs into rows of ``length`` tokens."""
    group: list[tuple[np.ndarray, np.ndarray]] = []
    for example in examples:
        group.append(example)
        if len(group) == PACK_GROUP:
            yield from _pack_group(group, length)
            group = []
    if group:
        yield from _pack_group(group, length)


def _pack_group(group: list[tuple[np.ndarray, np.ndarray]], length: int) -> Iterator[dict]:
    row: list[tuple[np.ndarray, np.ndarray]] = []
    for src, tgt in group:
        if row and (
            sum(len(s) for s, _ in row) + len(src) > length
            or sum(len(t) for _, t in row) + len(tgt) > length
        ):
            yield _packed_row(row, length)
            row = []
        row.append((src, tgt))
    if row:
        yield _packed_row(row, length)


def _packed_row(row: list[tuple[np.ndarray, np.ndarray]], length: int) -> dict:
    out = {}
    for side, name in ((0, "inputs"), (1, "targets")):
        seqs = [pair[side] for pair in row]
        tokens = np.zeros(length, np.int32)
        position = np.zeros(length, np.int32)
        segmentation = np.zeros(length, np.int32)
        at = 0
        for k, seq in enumerate(seqs):
            tokens[at : at + len(seq)] = seq
            position[at : at + len(seq)] = np.arange(len(seq))
            segmentation[at : at + len(seq)] = k + 1
            at += len(seq)
        out[name], out[f"{name}_position"], out[f"{name}_segmentation"] = tokens, position, segmentation
    return out


def pad_row(seq: np.ndarray, length: int = MAX_LEN) -> np.ndarray:
    out = np.zeros(length, np.int32)
    out[: len(seq)] = seq
    return out


def train_batches(
    data_dir: str | None, tokenizer, global_batch_size: int, seed: int
) -> Iterator[dict[str, np.ndarray]]:
    """Endless packed training batches (stored order, 1024-buffer shuffle per epoch)."""
    rng = np.random.default_rng(seed)

    def repeated() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield from shuffle_buffer(pairs(data_dir, "train", tokenizer), SHUFFLE_BUFFER, rng)

    rows: list[dict] = []
    for row in pack(repeated()):
        rows.append(row)
        if len(rows) == global_batch_size:
            batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            batch["weights"] = (batch["targets"] > 0).astype(np.float32)
            yield batch
            rows = []


def eval_batches(
    examples: Iterable[tuple[np.ndarray, np.ndarray]], global_batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Rows padded to 256 tokens; the last batch padded to the full size with weight-0 rows.

    'weights' [B, 256] is ``row is real AND target > 0``.
    """
    rows: list[tuple[np.ndarray, np.ndarray]] = []

    def emit(rows: list) -> dict[str, np.ndarray]:
        inputs = np.zeros((global_batch_size, MAX_LEN), np.int32)
        targets = np.zeros((global_batch_size, MAX_LEN), np.int32)
        for i, (src, tgt) in enumerate(rows):
            inputs[i], targets[i] = pad_row(src), pad_row(tgt)
        return {"inputs": inputs, "targets": targets, "weights": (targets > 0).astype(np.float32)}

    for example in examples:
        rows.append(example)
        if len(rows) == global_batch_size:
            yield emit(rows)
            rows = []
    if rows:
        yield emit(rows)
