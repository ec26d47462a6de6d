"""WMT17 de-en from the TFDS files AlgoPerf's dataset setup writes, read without TensorFlow.

Layout (``datasets/dataset_setup.py --wmt``, or ``algoperf data prepare wmt``: ``prepare.py``)
under ``<data_dir>`` (or ``<data_dir>/wmt``):
``wmt17_translate/de-en/1.0.0/wmt17_translate-train.tfrecord-*`` (train, eval_train),
``wmt14_translate/de-en/1.0.0/wmt14_translate-{validation,test}.tfrecord-*`` and the
SentencePiece model ``wmt_sentencepiece_model``. Each record is a ``tf.train.Example``
with bytes features ``de`` (inputs) and ``en`` (targets).

As in the reference: both sides are tokenized with EOS appended (id 2; id 0 is padding
and <unk>); pairs longer than 256 tokens on either side are dropped on every split;
training reads every epoch in a fresh random order (the reference: TFDS file shuffling
and a 1024-example buffer; ``TrainBatches`` says why) and packs consecutive groups of 256
examples into rows of 256 tokens (``*_position`` restart at 0
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
        pair = tokenized_pair(example, tokenizer)
        if pair is not None:
            yield pair


def tokenized_pair(example: dict, tokenizer) -> tuple[np.ndarray, np.ndarray] | None:
    """(de, en) token ids of one Example; None when either side is over 256 tokens."""
    src, tgt = tokenize(tokenizer, example["de"][0]), tokenize(tokenizer, example["en"][0])
    return (src, tgt) if max(len(src), len(tgt)) <= MAX_LEN else None


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


def pack_group(group: list[tuple[np.ndarray, np.ndarray]], length: int = MAX_LEN) -> Iterator[dict]:
    """Greedy packing of one group of pairs, in order, into rows of ``length`` tokens."""
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


class TrainBatches:
    """Endless packed training batches that a resumed trial continues exactly.

    Epoch ``e`` reads the train records in the order ``default_rng([seed, e]).permutation``
    (random access through the record index: only headers are read to build it);
    consecutive groups of 256 kept pairs (an epoch's last group may be smaller) are packed
    into rows of 256 tokens; ``global_batch_size`` rows make a batch.

    Where a batch boundary falls depends on token lengths, so no batch count says where the
    stream is without tokenizing everything before it. Instead ``position()`` is small:
    the epoch, where the current pack group starts in that epoch's order, and how many of
    its rows were taken. ``restore(position)`` re-reads that one group and drops the rows
    taken (the runner keeps the position in its checkpoint: ``algoperf.runner.resume``).
    """

    def __init__(self, files: list[Path], tokenizer, global_batch_size: int, seed: int):
        self._files, self._tokenizer = files, tokenizer
        self._batch_size, self._seed = global_batch_size, seed
        index = [(k, offset, length) for k, path in enumerate(files) for offset, length in tfrecord.index_records(path)]
        if not index:
            raise spec.DataNotFoundError(f"the WMT train files {[str(f) for f in files[:2]]} hold no records: {_HOW}")
        self._index = np.asarray(index, np.int64)
        self.restore({"epoch": 0, "group_start": 0, "rows_taken": 0})

    def _pair(self, record: int) -> tuple[np.ndarray, np.ndarray] | None:
        k, offset, length = (int(v) for v in self._index[record])
        return tokenized_pair(tfrecord.parse_example(tfrecord.read_record(self._files[k], offset, length)), self._tokenizer)

    def _start_epoch(self, epoch: int) -> None:
        self._epoch, self._at = epoch, 0
        self._order = np.random.default_rng([self._seed, epoch]).permutation(len(self._index))

    def _read_group(self) -> None:
        """The next pack group: from the next record on, until 256 pairs are kept or the epoch ends."""
        if self._at == len(self._order):
            self._start_epoch(self._epoch + 1)
        self._group_start, pairs = self._at, []
        while len(pairs) < PACK_GROUP and self._at < len(self._order):
            pair = self._pair(int(self._order[self._at]))
            self._at += 1
            if pair is not None:
                pairs.append(pair)
        if not pairs and self._group_start == 0:
            raise ValueError(f"no WMT train pair is at most {MAX_LEN} tokens long on both sides")
        self._rows, self._rows_taken = list(pack_group(pairs))[::-1], 0

    def _row(self) -> dict:
        while not self._rows:
            self._read_group()
        self._rows_taken += 1
        return self._rows.pop()

    def position(self) -> dict[str, int]:
        """Where the stream is (JSON): what ``restore`` needs to continue from here."""
        return {"epoch": self._epoch, "group_start": self._group_start, "rows_taken": self._rows_taken}

    def restore(self, position: dict[str, int]) -> None:
        """Continue from ``position()``: one pack group re-read, its taken rows dropped."""
        self._start_epoch(int(position["epoch"]))
        self._at, self._group_start, self._rows, self._rows_taken = int(position["group_start"]), int(position["group_start"]), [], 0
        if position["rows_taken"]:
            self._read_group()
            del self._rows[len(self._rows) - int(position["rows_taken"]):]
            self._rows_taken = int(position["rows_taken"])

    def __iter__(self) -> TrainBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rows = [self._row() for _ in range(self._batch_size)]
        batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        batch["weights"] = (batch["targets"] > 0).astype(np.float32)
        return batch


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
