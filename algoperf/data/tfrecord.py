"""TFRecord files of ``tf.train.Example`` protos, read and written without TensorFlow.

AlgoPerf's dataset setup stores TFDS splits (ImageNet, CIFAR-10, ogbg-molpcba, WMT) as
shards ``<name>-<split>.tfrecord-NNNNN-of-MMMMM``. A TFRecord file is a sequence of::

    uint64 length (little endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32)``. ``data`` is a
serialized ``tf.train.Example``: Example{1: Features}, Features{1: map entry {1: key,
2: Feature}}, Feature{1: BytesList | 2: FloatList | 3: Int64List}, each list's field 1
repeated (floats and ints usually packed). A TFDS ``Tensor`` feature is stored flattened
under its name, so the caller reshapes (e.g. ogbg's ``node_feat`` [n, 9]).

Examples are parsed and written by protobuf's C parser with TensorFlow's schema
(:mod:`algoperf.data.example_proto`): 3-4x faster than the pure-Python decoder it replaced,
with the same arrays. Both checksums of every record are verified on reading (CRC-32C
from ``google-crc32c``, C code; about 5% of the parse time), so a corrupt shard fails with
its path and offset instead of feeding wrong bytes to training.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c
import numpy as np
from google.protobuf.message import DecodeError

from algoperf.data.example_proto import Example

Feature = np.ndarray | list[bytes]
_MASK_DELTA = 0xA282EAD8


class TFRecordError(ValueError):
    """A file that is not a well-formed TFRecord file."""


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --- records ---------------------------------------------------------------------------


def index_records(path: str | Path, check_headers: bool = True) -> list[tuple[int, int]]:
    """(offset of data, length) of every record of ``path``, reading only the headers."""
    out: list[tuple[int, int]] = []
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        pos = 0
        while pos < size:
            f.seek(pos)
            header = f.read(12)
            if len(header) < 12:
                raise TFRecordError(f"{path}: truncated record header at byte {pos}")
            (length,) = struct.unpack("<Q", header[:8])
            if check_headers and struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
                raise TFRecordError(f"{path}: bad length checksum at byte {pos} (not a TFRecord file?)")
            if pos + 12 + length + 4 > size:
                raise TFRecordError(f"{path}: record at byte {pos} runs past the end of the file")
            out.append((pos + 12, length))
            pos += 12 + length + 4
    return out


def _check(path: str | Path, pos: int, data: bytes, crc: bytes) -> None:
    if len(crc) < 4:
        raise TFRecordError(f"{path}: truncated record at byte {pos} (file cut short?)")
    if struct.unpack("<I", crc)[0] != masked_crc(data):
        raise TFRecordError(f"{path}: bad data checksum in the record at byte {pos}: the file is corrupt; "
                            "prepare the dataset again (algoperf data prepare)")


def read_record(path: str | Path, offset: int, length: int) -> bytes:
    """The data of one record, from its ``index_records`` entry, its checksum verified."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
        crc = f.read(4)
    if len(data) < length:
        raise TFRecordError(f"{path}: truncated record at byte {offset - 12} (file cut short?)")
    _check(path, offset - 12, data, crc)
    return data


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Every record's data, in file order, both checksums verified."""
    with open(path, "rb") as f:
        pos = 0
        while header := f.read(12):
            if len(header) < 12:
                raise TFRecordError(f"{path}: truncated record header at byte {pos} (file cut short?)")
            if struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
                raise TFRecordError(f"{path}: bad length checksum at byte {pos} (not a TFRecord file?)")
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length:
                raise TFRecordError(f"{path}: truncated record at byte {pos} (file cut short?)")
            _check(path, pos, data, f.read(4))
            pos += 12 + length + 4
            yield data


def read_examples(paths: Iterable[str | Path]) -> Iterator[dict[str, Feature]]:
    """Parsed Examples of the files ``paths``, in order."""
    for path in paths:
        for record in iter_records(path):
            yield parse_example(record)


def write_records(path: str | Path, records: Iterable[bytes]) -> None:
    """Write ``records`` as a TFRecord file with correct checksums."""
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data)))


# --- tf.train.Example ------------------------------------------------------------------


def parse_example(data: bytes) -> dict[str, Feature]:
    """A serialized tf.train.Example as {name: list of bytes | int64 array | float32 array}.

    A feature with no list (or an empty one) is an empty float32 array.
    """
    try:
        example = Example.FromString(data)
    except DecodeError as e:
        raise TFRecordError(f"not a tf.train.Example ({e})") from None
    out: dict[str, Feature] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            out[name] = list(feature.bytes_list.value)
        elif kind == "float_list":
            out[name] = np.array(feature.float_list.value, np.float32)
        elif kind == "int64_list":
            out[name] = np.array(feature.int64_list.value, np.int64)
        else:
            out[name] = np.zeros(0, np.float32)
    return out


def make_example(features: dict[str, bytes | str | int | float | list | np.ndarray]) -> bytes:
    """Serialize a tf.train.Example (deterministically: the same features give the same bytes).

    bytes / str and lists of them -> BytesList; floats and float arrays -> FloatList;
    ints and int arrays -> Int64List (arrays are flattened, as TFDS stores tensors).
    """
    example = Example()
    for name, value in features.items():
        feature = example.features.feature[name]
        if isinstance(value, bytes | str):
            value = [value]
        if isinstance(value, list | tuple) and value and isinstance(value[0], bytes | str):
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in value)
            continue
        arr = np.asarray(value).ravel()
        kind = feature.float_list if np.issubdtype(arr.dtype, np.floating) else feature.int64_list
        kind.SetInParent()  # an empty list is still a list of its kind
        kind.value.extend(arr.astype(np.float32 if kind is feature.float_list else np.int64).tolist())
    return example.SerializeToString(deterministic=True)
