"""Byte-level language-model data from CPython's own documentation text.

``pydoc_data.topics.topics`` ships with every CPython: a dict of ~79 help topics (about
465,000 characters of English prose with code examples). We encode each topic as UTF-8
bytes (vocabulary 256), join the topics of a split with a blank-line separator, and cut
the byte stream into windows of ``SEQ_LEN + 1`` bytes: ``inputs`` are a window's first
``SEQ_LEN`` bytes and ``targets`` its last ``SEQ_LEN`` (next-byte prediction).

The split is by topic and fixed: the sorted topic names are permuted with ``SPLIT_SEED``
and, walking that order, a topic goes to validation (then test) while that split holds
under ``HELD_OUT_FRACTION`` of all bytes and the topic itself is smaller than
``MAX_HELD_OUT_TOPIC_FRACTION`` of them (so no single huge topic dominates a held-out
split); every other topic is training text. Training windows start every
``TRAIN_STRIDE`` bytes (overlapping windows, a cheap augmentation of offsets);
validation and test windows do not overlap. Building the arrays takes well under a
second, so nothing is cached.

The text is the running interpreter's: another CPython version ships slightly different
documentation and so gives slightly different arrays (``text_fingerprint`` names them).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

SEQ_LEN = 64
TRAIN_STRIDE = 16
SPLIT_SEED = 0
HELD_OUT_FRACTION = 0.09
MAX_HELD_OUT_TOPIC_FRACTION = 0.04
SEPARATOR = b"\n\n\n"
VOCAB_SIZE = 256


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return dict(topics)


def split_topics(topics: dict[str, str], seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """Topic names of 'train', 'validation' and 'test' (a fixed function of ``topics``)."""
    names = sorted(topics)
    sizes = {n: len(topics[n].encode("utf-8")) for n in names}
    total = sum(sizes.values())
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    out: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    held = {"validation": 0, "test": 0}
    for name in order:
        dest = "train"
        if sizes[name] < MAX_HELD_OUT_TOPIC_FRACTION * total:
            for split in ("validation", "test"):
                if held[split] < HELD_OUT_FRACTION * total:
                    dest = split
                    break
        if dest != "train":
            held[dest] += sizes[name]
        out[dest].append(name)
    return {k: sorted(v) for k, v in out.items()}


def windows(data: np.ndarray, seq_len: int, stride: int) -> dict[str, np.ndarray]:
    """Next-token windows of a 1-D token stream: inputs = x[s:s+L], targets = x[s+1:s+L+1]."""
    starts = np.arange(0, len(data) - seq_len, stride)
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    chunks = data[idx].astype(np.int32)
    return {"inputs": chunks[:, :-1], "targets": chunks[:, 1:]}


@functools.cache
def _load_cached(seq_len: int) -> dict[str, dict[str, np.ndarray]]:
    topics = _topics()
    splits = {}
    for split, names in split_topics(topics).items():
        text = SEPARATOR.join(topics[n].encode("utf-8") for n in names)
        data = np.frombuffer(text, dtype=np.uint8)
        stride = TRAIN_STRIDE if split == "train" else seq_len
        splits[split] = windows(data, seq_len, stride)
        for arr in splits[split].values():
            arr.setflags(write=False)
    return splits


def load(seq_len: int = SEQ_LEN) -> dict[str, dict[str, np.ndarray]]:
    """Splits 'train', 'validation', 'test' as {'inputs', 'targets'}: (N, seq_len) int32 bytes."""
    return _load_cached(seq_len)


def text_fingerprint() -> str:
    """A short hash of the topic texts, to tell CPython versions' corpora apart."""
    topics = _topics()
    digest = hashlib.sha1()
    for name in sorted(topics):
        digest.update(name.encode() + b"\0" + topics[name].encode("utf-8") + b"\0")
    return digest.hexdigest()[:12]
