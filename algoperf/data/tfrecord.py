"""TFRecord files of ``tf.train.Example`` protos, read and written without TensorFlow.

AlgoPerf's dataset setup stores TFDS splits (ImageNet, CIFAR-10, ogbg-molpcba, WMT) as
shards ``<name>-<split>.tfrecord-NNNNN-of-MMMMM``. A TFRecord file is a sequence of::

    uint64 length (little endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32)``. ``data`` is a
serialized ``tf.train.Example``: Example{1: Features}, Features{1: map entry {1: key,
2: Feature}}, Feature{1: BytesList | 2: FloatList | 3: Int64List}, each list's field 1
repeated (floats and ints usually packed). A TFDS ``Tensor`` feature is stored flattened
under its name, so the caller reshapes (e.g. ogbg's ``node_feat`` [n, 9]).

Only four protobuf wire types occur: varints (0), fixed 64 bit (1), length-delimited
(2) and fixed 32 bit (5); the decoder below handles exactly those. Checksums are
CRC-32C from ``google-crc32c`` (C code).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c
import numpy as np

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


def read_record(path: str | Path, offset: int, length: int) -> bytes:
    """The data of one record, from its ``index_records`` entry."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Every record's data, in file order (data checksums are not checked)."""
    with open(path, "rb") as f:
        while header := f.read(12):
            if len(header) < 12:
                raise TFRecordError(f"{path}: truncated record header (file cut short?)")
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                raise TFRecordError(f"{path}: truncated record (file cut short?)")
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


# --- tf.train.Example decoding ---------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a serialized message; fixed-width and
    length-delimited values stay bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire} in a tf.train.Example")
        yield field, wire, value


def _int64s(body: bytes) -> np.ndarray:
    values: list[int] = []
    for _, wire, v in _fields(body):
        if wire == 2:  # packed varints
            pos = 0
            while pos < len(v):
                x, pos = _varint(v, pos)
                values.append(x)
        else:
            values.append(v)
    # Negative int64s are 10-byte varints of their two's complement.
    return np.array(values, dtype=np.uint64).view(np.int64)


def _floats(body: bytes) -> np.ndarray:
    # Packed (one blob) or one 4-byte value per field: the bytes concatenate either way.
    return np.frombuffer(b"".join(v for _, _, v in _fields(body)), dtype="<f4").copy()


def parse_example(data: bytes) -> dict[str, Feature]:
    """A serialized tf.train.Example as {name: list of bytes | int64 array | float32 array}."""
    out: dict[str, Feature] = {}
    for field, _, features in _fields(data):
        if field != 1:
            continue
        for entry_field, _, entry in _fields(features):
            if entry_field != 1:
                continue
            name, value = "", b""
            for f, _, v in _fields(entry):
                if f == 1:
                    name = v.decode()
                elif f == 2:
                    value = v
            out[name] = np.zeros(0, np.float32)  # a feature with an empty list
            for kind, _, body in _fields(value):
                if kind == 1:
                    out[name] = [v for _, _, v in _fields(body)]
                elif kind == 2:
                    out[name] = _floats(body)
                elif kind == 3:
                    out[name] = _int64s(body)
    return out


# --- tf.train.Example encoding (tests write small files in the real format) ------------


def _encode_varint(x: int) -> bytes:
    x &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if not x:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _blob(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


def make_example(features: dict[str, bytes | str | int | float | list | np.ndarray]) -> bytes:
    """Serialize a tf.train.Example.

    bytes / str and lists of them -> BytesList; floats and float arrays -> FloatList;
    ints and int arrays -> Int64List (arrays are flattened, as TFDS stores tensors).
    """
    entries = b""
    for name, value in features.items():
        if isinstance(value, bytes | str):
            value = [value]
        if isinstance(value, list | tuple) and value and isinstance(value[0], bytes | str):
            items = [v.encode() if isinstance(v, str) else v for v in value]
            feature = _blob(1, b"".join(_blob(1, v) for v in items))
        else:
            arr = np.asarray(value).ravel()
            if np.issubdtype(arr.dtype, np.floating):
                feature = _blob(2, _blob(1, arr.astype("<f4").tobytes()))
            else:
                feature = _blob(3, _blob(1, b"".join(_encode_varint(int(v)) for v in arr)))
        entries += _blob(1, _blob(1, name.encode()) + _blob(2, feature))
    return _blob(1, entries)
