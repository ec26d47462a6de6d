"""Criteo 1TB click logs as AlgoPerf's dataset setup leaves them: TSV day files.

Layout: ``<data_dir>/criteo1tb/day_{d}_{NN}`` (or directly in ``<data_dir>``): each of the
official days ``day_0 .. day_23`` cut into files of 5,000,000 lines with two-digit
suffixes and no extension (``split -a 2 -d -l 5000000``); gzipped pieces
(``day_{d}_{NN}.gz``) are read too. ``algoperf data prepare criteo1tb`` (``prepare.py``) writes
this layout from the official files.

A line holds 40 tab-separated fields: label, 13 integers, 26 categorical strings (8 hex
digits); any may be empty. Parsing follows the reference (``tf.io.decode_csv`` with
``na_value='-1'``, then ``tf.strings.to_hash_bucket_fast``):

* an empty field or the text ``-1`` takes the default: 0 for label and integers,
  ``'00000000'`` for categoricals;
* dense x -> log(max(x, 0) + 1) in float32;
* categorical column j (0..25): FarmHash Fingerprint64(text + str(j)) mod V_j, cast to
  float32 (ids above 2^24 round, as the reference's cast does), stored after the dense
  features: ``inputs`` [B, 39], ``targets`` [B].

Fingerprint64 of a string of 8 to 16 bytes is computed vectorised in numpy from its
first and last 8 bytes (FarmHash's ``HashLen0to16``, all arithmetic mod 2^64); the parser
uses it for 8-character fields (every real field, and the default: 9 or 10 bytes with the
index digits) and ``pyfarmhash`` for any other field. Both were checked against
TensorFlow's frozen values (Fingerprint64("Hello") = 15404698994557526151) and each other.
The parser splits a batch into chunks parsed on a thread pool (numpy releases the GIL).

Splits: train = days 0-22 (file order shuffled by the seed, lines read in order, no
example shuffle: the reference's own ordering), test = ``day_23_00 .. day_23_18``,
validation = ``day_23_19 .. day_23_35``. Files are streamed: a batch is the next
``batch_size`` lines, never a whole file.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import glob
import gzip
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from algoperf.spec import DataNotFoundError

NUM_DAYS = 24
NUM_DAY_23_FILES = 36
NUM_TEST_FILES = NUM_DAY_23_FILES // 2 + 1  # 19: day_23_00 .. day_23_18
VOCAB_SIZES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)
NUM_DENSE = 13
NUM_SPARSE = len(VOCAB_SIZES)
NUM_FIELDS = 1 + NUM_DENSE + NUM_SPARSE
SETUP_HINT = (
    "Download the Criteo 1TB click logs (day_0.gz ... day_23.gz) and run "
    "`algoperf data prepare criteo1tb --source FOLDER_WITH_DAYS --data-dir DIR` (or AlgoPerf's "
    "`dataset_setup.py --criteo1tb`), then pass --data-dir DIR (the folder holding "
    "criteo1tb/day_0_00 ... day_23_35)."
)

# --- FarmHash Fingerprint64 --------------------------------------------------------------
_K2 = np.uint64(0x9AE16A3B2F90404F)
_U47 = np.uint64(47)


def _rotate_right(x: np.ndarray, shift: int) -> np.ndarray:
    return (x >> np.uint64(shift)) | (x << np.uint64(64 - shift))


def fingerprint64_8_to_16(first8: np.ndarray, last8: np.ndarray, length: np.ndarray) -> np.ndarray:
    """FarmHash Fingerprint64 of byte strings of 8..16 bytes, vectorised (uint64, mod 2^64).

    ``first8``/``last8``: the string's first and last 8 bytes read as little-endian uint64
    (they overlap below 16 bytes). With k2 = 0x9ae16a3b2f90404f, m = k2 + 2 n,
    a = first8 + k2, b = last8, c = rotr(b, 37) m + a, d = (rotr(a, 25) + b) m; then
    x = (c ^ d) m, x ^= x >> 47, y = (d ^ x) m, y ^= y >> 47, hash = y m.
    """
    with np.errstate(over="ignore"):
        mul = _K2 + length.astype(np.uint64) * np.uint64(2)
        a = first8.astype(np.uint64) + _K2
        b = last8.astype(np.uint64)
        c = _rotate_right(b, 37) * mul + a
        d = (_rotate_right(a, 25) + b) * mul
        x = (c ^ d) * mul
        x ^= x >> _U47
        y = (d ^ x) * mul
        y ^= y >> _U47
        return y * mul


def fingerprint64(data: bytes) -> int:
    """FarmHash Fingerprint64 of any byte string (``pyfarmhash``), TF's ``to_hash_bucket_fast`` hash."""
    try:
        import farmhash
    except ImportError as e:  # only reached for categorical fields that are not 8 characters long
        raise ImportError("criteo1tb hashes unusual categorical fields with pyfarmhash: `pip install pyfarmhash`") from e
    return int(farmhash.fingerprint64(data))


# --- parsing -----------------------------------------------------------------------------
_DIGIT_0, _MINUS = 48, 45
_NA = 0x312D  # the bytes b"-1" as a little-endian integer (decode_csv's na_value)
_ZEROS8 = np.frombuffer(b"00000000", "<u8")[0]  # the categorical default '00000000'
_SIZES = np.array(VOCAB_SIZES, np.uint64)
_CHUNK_LINES = 4096
# Column j's index digits as a little-endian integer and their count ('7' -> 0x37, '12' -> 0x3231).
_INDEX_WORD = np.array([int.from_bytes(str(j).encode(), "little") for j in range(NUM_SPARSE)], np.uint64)
_INDEX_LEN = np.array([len(str(j)) for j in range(NUM_SPARSE)], np.uint64)


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1), thread_name_prefix="criteo-parse")


def _words(buf: bytes) -> np.ndarray:
    """``w[i]`` = bytes ``buf[i : i + 8]`` as a little-endian uint64 (an overlapping view, no copy)."""
    return np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))


def _field_bounds(a: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths [lines, 40] of the fields of ``a`` (bytes ending in '\\n')."""
    seps = np.flatnonzero(a <= 10)  # tab (9) and newline (10); other control bytes fail below
    lines = int(np.count_nonzero(a[seps] == 10))
    ok = seps.size == lines * NUM_FIELDS
    if ok:
        kinds = a[seps].reshape(lines, NUM_FIELDS)
        ok = bool((kinds[:, -1] == 10).all() and (kinds[:, :-1] == 9).all())
    if not ok:
        for n, line in enumerate(a.tobytes().split(b"\n")[:-1]):
            fields = line.count(b"\t") + 1
            if fields != NUM_FIELDS:
                raise ValueError(
                    f"{source}: line {n + 1} of this batch has {fields} tab-separated fields, "
                    f"a Criteo line has {NUM_FIELDS}: {line[:80]!r}"
                )
        raise ValueError(f"{source}: malformed Criteo lines")
    ends = seps.reshape(lines, NUM_FIELDS)
    starts = np.empty_like(ends)
    starts[:, 1:] = ends[:, :-1] + 1
    starts[:, 0] = np.concatenate([[0], ends[:-1, -1] + 1])
    return starts, ends - starts


_ASCII_0 = np.uint64(0x3030303030303030)
_HIGH_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_SIX = np.uint64(0x0606060606060606)


def _swar_digits(word: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` (1..8) bytes of each little-endian ``word`` read as decimal digits.

    The digits are moved to the top bytes and the bottom bytes filled with '0', then
    pairs, quads and octets of digits are combined by multiply-shift (SWAR). Returns
    (values, all bytes were digits).
    """
    count = count.astype(np.uint64)
    with np.errstate(over="ignore"):
        keep = np.where(count >= 8, ~np.uint64(0), (np.uint64(1) << (np.uint64(8) * count)) - np.uint64(1))
        pad = np.uint64(8) * (np.uint64(8) - count)
        shifted = np.where(pad >= 64, 0, (word & keep) << np.minimum(pad, np.uint64(63)))
        x = shifted | np.where(count >= 8, 0, _ASCII_0 >> np.minimum(np.uint64(8) * count, np.uint64(63)))
        ok = ((x & _HIGH_NIBBLES) == _ASCII_0) & (((x + _SIX) & _HIGH_NIBBLES) == _ASCII_0)
        x = x - _ASCII_0
        x = (x * np.uint64(10) + (x >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
        x = (x * np.uint64(100) + (x >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
        x = (x * np.uint64(10000) + (x >> np.uint64(32))) & np.uint64(0x00000000FFFFFFFF)
    return x.astype(np.int64), ok


def _numbers(words: np.ndarray, buf: bytes, starts: np.ndarray, lens: np.ndarray, source: str) -> np.ndarray:
    """Fields as float32 numbers; empty and '-1' -> 0 (decode_csv's default and na_value).

    Integers of up to 16 characters (an optional '-' then digits: every real field) are
    converted vectorised (``_swar_digits``, the last 8 digits and the ones before them);
    anything else goes through float().
    """
    first = words[starts]
    negative = ((first & np.uint64(0xFF)) == _MINUS) & (lens > 1)
    # '-' -> '0': the sign's byte becomes a leading zero digit.
    first = np.where(negative, first + np.uint64(_DIGIT_0 - _MINUS), first)
    long = lens > 8
    high, high_ok = _swar_digits(first, np.where(long, lens - 8, np.maximum(lens, 1)))
    low, low_ok = _swar_digits(words[starts + np.maximum(lens - 8, 0)], np.full(lens.shape, 8))
    value = np.where(long, high * 100_000_000 + low, high)
    simple = (lens > 0) & (lens <= 16) & high_ok & (low_ok | ~long)
    out = np.where(negative, -value, value).astype(np.float32)  # one rounding, as strtof of the text
    missing = (lens == 0) | ((lens == 2) & ((words[starts] & np.uint64(0xFFFF)) == _NA))
    out[missing] = 0.0
    odd = ~simple & ~missing
    for r, c in zip(*np.nonzero(odd) if odd.any() else ((), ()), strict=True):  # e.g. '1.5', '1e3'
        text = buf[starts[r, c] : starts[r, c] + lens[r, c]]
        try:
            out[r, c] = np.float32(float(text))
        except ValueError:
            raise ValueError(f"{source}: field {c} is not a number: {text[:40]!r}") from None
    return out


def _bucket_ids(words: np.ndarray, buf: bytes, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """[lines, 26] Fingerprint64(text + str(j)) mod V_j; empty/'-1' text -> '00000000'.

    For 8-byte texts (every real field, and the default) s = text + digits of j has
    n = 8 + d bytes: its first 8 bytes are the text, its last 8 the text shifted by d
    bytes with the digits on top. Other lengths are hashed one by one (pyfarmhash).
    """
    first = words[starts]
    default = (lens == 0) | ((lens == 2) & ((first & np.uint64(0xFFFF)) == _NA))
    first = np.where(default, _ZEROS8, first)
    eight = default | (lens == 8)
    shift = np.uint64(8) * _INDEX_LEN
    last = (first >> shift) | (_INDEX_WORD << (np.uint64(64) - shift))
    ids = fingerprint64_8_to_16(first, last, np.uint64(8) + _INDEX_LEN) % _SIZES
    for r, c in zip(*np.nonzero(~eight) if not eight.all() else ((), ()), strict=True):  # not in real data
        text = buf[starts[r, c] : starts[r, c] + lens[r, c]]
        ids[r, c] = fingerprint64(text + str(c).encode()) % VOCAB_SIZES[c]
    return ids


def parse_block(data: bytes, source: str = "<lines>") -> dict[str, np.ndarray]:
    """Raw TSV lines (``data``, '\\n'-separated) -> {'inputs' [B, 39], 'targets' [B]} float32."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")  # TextLineDataset drops '\r\n' too
    if data and not data.endswith(b"\n"):
        data += b"\n"
    buf = data + bytes(16)  # 8-byte reads may run past the last field
    words = _words(buf)
    starts, lens = _field_bounds(np.frombuffer(data, np.uint8), source)
    inputs = np.empty((len(starts), NUM_DENSE + NUM_SPARSE), np.float32)
    targets = np.empty(len(starts), np.float32)

    def parse_rows(lo: int) -> None:
        rows = slice(lo, lo + _CHUNK_LINES)
        numbers = _numbers(words, buf, starts[rows, : 1 + NUM_DENSE], lens[rows, : 1 + NUM_DENSE], source)
        targets[rows] = numbers[:, 0]
        inputs[rows, :NUM_DENSE] = np.log(np.maximum(numbers[:, 1:], np.float32(0)) + np.float32(1))
        # Reference: int64 ids cast to float32 (ids above 2^24 round to a multiple of 2 or 4).
        inputs[rows, NUM_DENSE:] = _bucket_ids(words, buf, starts[rows, 1 + NUM_DENSE :], lens[rows, 1 + NUM_DENSE :])

    # Chunks keep the temporaries in cache; numpy releases the GIL inside its loops, so
    # threads parse chunks in parallel.
    chunks = range(0, len(starts), _CHUNK_LINES)
    if len(chunks) > 1:
        list(_pool().map(parse_rows, chunks))
    else:
        for lo in chunks:
            parse_rows(lo)
    return {"inputs": inputs, "targets": targets}


def parse_lines(lines: list[str | bytes], source: str = "<lines>") -> dict[str, np.ndarray]:
    """``parse_block`` of a list of lines (with or without their '\\n')."""
    raw = [ln.encode() if isinstance(ln, str) else ln for ln in lines]
    return parse_block(b"".join(ln if ln.endswith(b"\n") else ln + b"\n" for ln in raw), source)


# --- files and splits --------------------------------------------------------------------
PIECE_PATTERN = re.compile(r"day_(\d+)_(\d+)(\.gz)?$")  # a piece day_<d>_<NN>[.gz]


def _root(data_dir: str | Path | None) -> str:
    if not data_dir:
        raise DataNotFoundError(f"criteo1tb needs --data-dir. {SETUP_HINT}")
    for root in (os.path.join(data_dir, "criteo1tb"), str(data_dir)):
        if any(PIECE_PATTERN.match(os.path.basename(p)) for p in glob.glob(os.path.join(root, "day_*_*"))):
            return root
    raise DataNotFoundError(f"no Criteo day files (day_<d>_<NN>) under {data_dir!r}. {SETUP_HINT}")


def _piece(root: str, day: int, index: int) -> str | None:
    for name in (f"day_{day}_{index:02d}", f"day_{day}_{index:02d}.gz"):
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    return None


def split_files(data_dir: str | Path | None, split: str) -> list[str]:
    """The day files of ``split`` ('train', 'eval_train', 'validation', 'test')."""
    root = _root(data_dir)
    if split in ("train", "eval_train"):
        pieces = []
        for path in glob.glob(os.path.join(root, "day_*_*")):
            m = PIECE_PATTERN.match(os.path.basename(path))
            if m and int(m.group(1)) < NUM_DAYS - 1:
                pieces.append((int(m.group(1)), int(m.group(2)), path))
        files = [p for *_, p in sorted(pieces)]
        if not files:
            raise DataNotFoundError(f"no training day files (day_0_00 ... day_22_NN) in {root!r}. {SETUP_HINT}")
        return files
    if split == "test":
        wanted = range(NUM_TEST_FILES)
    elif split == "validation":
        wanted = range(NUM_TEST_FILES, NUM_DAY_23_FILES)
    else:
        raise ValueError(f"unknown criteo1tb split {split!r}")
    files = [_piece(root, NUM_DAYS - 1, i) for i in wanted]
    missing = [f"day_23_{i:02d}" for i, f in zip(wanted, files, strict=True) if f is None]
    if missing:
        raise DataNotFoundError(
            f"criteo1tb split {split!r} needs day_23_{wanted[0]:02d} .. day_23_{wanted[-1]:02d} in {root!r}; "
            f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}. {SETUP_HINT}"
        )
    return [f for f in files if f is not None]


def open_maybe_gz(path: str | Path) -> IO[bytes]:
    """``path`` opened for reading bytes, decompressed when it ends in ``.gz``."""
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


@functools.cache
def count_lines(path: str) -> int:
    """Lines in ``path`` (a last line without a newline counts), read in 16 MiB blocks and
    never parsed: what a seek pays instead of parsing the batches it skips."""
    count, last = 0, b"\n"
    with open_maybe_gz(path) as f:
        while block := f.read(1 << 24):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _locate(files: list[str], line: int) -> tuple[int, int] | None:
    """(file index, line in that file) of line ``line`` of ``files`` read one after another;
    None past their end. Counts the lines of the files up to it, no further."""
    for k, path in enumerate(files):
        lines = count_lines(path)
        if line < lines:
            return k, line
        line -= lines
    return None


def _pieces(
    files: list[str], batch_size: int, start: tuple[int, int] = (0, 0)
) -> Iterator[tuple[list[tuple[str, bytes]], int]]:
    """Consecutive lines of ``files`` (in order, from line ``start[1]`` of file ``start[0]``)
    in groups of ``batch_size``, streamed.

    Yields ([(file, its lines as bytes), ...], number of lines); a group spans file
    boundaries like the reference's ``flat_map(TextLineDataset).batch``; the last group
    may be short.
    """
    group: list[tuple[str, bytes]] = []
    count = 0
    first_file, skip = start
    for path in files[first_file:]:
        with open_maybe_gz(path) as f:
            collections.deque(itertools.islice(f, skip), maxlen=0)  # skipped unread-as-rows
            skip = 0
            while True:
                lines = list(itertools.islice(f, batch_size - count))
                if not lines:
                    break
                if not lines[-1].endswith(b"\n"):
                    lines[-1] += b"\n"
                group.append((path, b"".join(lines)))
                count += len(lines)
                if count == batch_size:
                    yield group, count
                    group, count = [], 0
    if count:
        yield group, count


class LineBatches:
    """Parsed batches of consecutive lines; the files in a seeded random order each epoch
    (drawn in turn from ``default_rng(shuffle_seed)``) if ``shuffle_seed`` is given.

    Every batch carries 'weights'; a short last batch (``drop_remainder=False``) is
    zero-padded to ``batch_size`` with weight 0 on the padding. ``seek(n)`` makes batch ``n``
    the next one: the lines before it are counted and skipped, never parsed.
    """

    def __init__(self, files: list[str], batch_size: int, shuffle_seed: int | None, repeat: bool,
                 drop_remainder: bool):
        self._files, self._batch_size, self._seed = list(files), batch_size, shuffle_seed
        self._repeat, self._drop_remainder = repeat, drop_remainder
        self.seek(0)

    def seek(self, n: int) -> None:
        """The next batch is batch ``n`` (0 = the first)."""
        self._batches = self._from(n)

    def __iter__(self) -> LineBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._batches)

    def _from(self, n: int) -> Iterator[dict[str, np.ndarray]]:
        b = self._batch_size
        rng = np.random.default_rng(self._seed)
        while True:
            order = list(self._files)
            if self._seed is not None:
                rng.shuffle(order)
            start = (0, 0)
            if n:
                # Batch n is in this epoch if its last line (its first, for a padded last batch) is.
                if _locate(order, (n + 1) * b - 1 if self._drop_remainder else n * b) is None:
                    total = sum(count_lines(f) for f in order)
                    per_epoch = total // b if self._drop_remainder else -(-total // b)
                    if not self._repeat or not per_epoch:
                        return
                    n -= per_epoch
                    continue
                start, n = _locate(order, n * b), 0
            produced = False
            for group, count in _pieces(order, b, start):
                if count < b and self._drop_remainder:
                    break
                produced = True
                yield _parsed(group, count, b)
            if not self._repeat:
                return
            if not produced:
                raise ValueError(f"the criteo1tb files {self._files[:2]}... hold fewer lines than one batch of {b}")


def _parsed(group: list[tuple[str, bytes]], count: int, batch_size: int) -> dict[str, np.ndarray]:
    parsed = [parse_block(data, path) for path, data in group]
    out = {k: np.concatenate([p[k] for p in parsed]) for k in ("inputs", "targets")}
    pad = batch_size - count
    if pad:
        out = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in out.items()}
    out["weights"] = np.concatenate([np.ones(count, np.float32), np.zeros(pad, np.float32)])
    return out


def batches(
    files: list[str],
    batch_size: int,
    shuffle_seed: int | None,
    repeat: bool,
    drop_remainder: bool,
) -> LineBatches:
    """``LineBatches`` of ``files`` (its docstring)."""
    return LineBatches(files, batch_size, shuffle_seed, repeat, drop_remainder)
