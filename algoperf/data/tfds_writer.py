"""Write a dataset split as TFDS's ``GeneratorBasedBuilder`` does, without TensorFlow.

Used by ``algoperf data prepare`` for the TFDS-built datasets (wmt, ogbg). TFDS facts
(``tensorflow_datasets/core``: ``hashing.py``, ``shuffle.py``, ``utils/shard_utils.py``):

* Stored order. Every generated example has a key; records are sorted by
  ``int(md5(salt + key))`` (128 bits, big endian), the salt being the split name
  ('train', 'validation', 'test') and an int key written as its decimal string.
* Shards. With ``S`` = serialized bytes + 16 per record, TFDS picks the largest
  ``n`` in 512, 256, ..., 2 with ``S // 1 GiB <= n <= S // 64 MiB`` and
  ``n <= #records`` (1024 or a multiple of it for huge splits), else 1. Shard ``i`` holds
  the records ``[round(N i / n), round(N (i + 1) / n))`` of the sorted order, in files
  ``<name>-<split>.tfrecord-<i:05d>-of-<n:05d>``.

Records are staged in a temporary file (only their offsets and hashes stay in memory), so
a split larger than memory (WMT17 train: 5.9M pairs) is fine.
"""

from __future__ import annotations

import hashlib
import mmap
import tempfile
from array import array
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from algoperf.data import tfrecord

MIN_SHARD_BYTES = 64 << 20
MAX_SHARD_BYTES = 1024 << 20
RECORD_OVERHEAD = 16


def key_hash(salt: str, key: str | int) -> tuple[int, int]:
    """TFDS's ``Hasher(salt).hash_key(key)`` as (high, low) 64-bit halves."""
    digest = hashlib.md5(salt.encode() + str(key).encode()).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big")


def num_shards(total_bytes: int, num_records: int) -> int:
    """TFDS's shard count for ``num_records`` records of ``total_bytes`` serialized bytes."""
    size = total_bytes + RECORD_OVERHEAD * num_records
    most, least = size // MIN_SHARD_BYTES, size // MAX_SHARD_BYTES
    if least <= 1024 <= most and num_records >= 1024:
        return 1024
    if least > 1024:
        n = 2048
        while n < least or num_records < n:
            n += 1024
        return n
    for n in (512, 256, 128, 64, 32, 16, 8, 4, 2):
        if least <= n <= most and num_records >= n:
            return n
    return 1


def write_split(
    folder: str | Path, name: str, split: str, examples: Iterable[tuple[str | int, bytes]]
) -> list[Path]:
    """Write (key, serialized tf.train.Example) pairs as ``<name>-<split>`` shards of ``folder``.

    Existing shards of that split are replaced. Returns the files written, in order.
    Raises ValueError on a repeated key (TFDS refuses them too).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Compact arrays (8 bytes an entry): 5.9M Python ints would take ~0.7 GB.
    highs, lows, offsets = array("Q"), array("Q"), array("q", [0])
    with tempfile.TemporaryFile(dir=folder) as staging:
        for key, record in examples:
            high, low = key_hash(split, key)
            highs.append(high)
            lows.append(low)
            staging.write(record)
            offsets.append(offsets[-1] + len(record))
        count = len(highs)
        if count == 0:
            raise ValueError(f"no examples for the {split} split of {name}")
        high, low = np.frombuffer(highs, np.uint64), np.frombuffer(lows, np.uint64)
        order = np.lexsort((low, high))
        high, low = high[order], low[order]
        if np.any((high[1:] == high[:-1]) & (low[1:] == low[:-1])):
            raise ValueError(f"{name} {split}: two examples share a key")
        starts = np.frombuffer(offsets, np.int64)
        n = num_shards(int(starts[-1]), count)
        bounds = [round(count * i / n) for i in range(n + 1)]
        for old in folder.glob(f"{name}-{split}.tfrecord*"):
            old.unlink()
        staging.flush()
        files = []
        with mmap.mmap(staging.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for i in range(n):
                path = folder / f"{name}-{split}.tfrecord-{i:05d}-of-{n:05d}"
                rows = order[bounds[i] : bounds[i + 1]]
                tfrecord.write_records(path, (data[starts[j] : starts[j + 1]] for j in rows))
                files.append(path)
    return files
