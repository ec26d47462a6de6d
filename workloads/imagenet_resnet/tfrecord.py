"""TFRecord files of ``tf.train.Example`` protos, read and written without TensorFlow.

TFDS (which AlgoPerf's JAX dataset setup uses) stores each split as shards
``<name>-<split>.tfrecord-NNNNN-of-MMMMM``. A TFRecord file is a sequence of records::

    uint64 length (little endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32)``. ``data`` is a
serialized ``tf.train.Example``: Example{1: Features}, Features{1: map entry {1: key,
2: Feature}}, Feature{1: BytesList | 2: FloatList | 3: Int64List}, each list's field 1
repeated (floats and ints usually packed). This module decodes that protobuf wire
format by hand: only varints (wire type 0), fixed 64/32 bit (1, 5) and length-delimited
fields (2) occur.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bytewise; fine for headers and test files, slow for images."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class TFRecordError(ValueError):
    """A file that is not a well-formed TFRecord file."""


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
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Every record's data, in file order."""
    with open(path, "rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            f.read(4)
            yield data


def write_records(path: str | Path, records: list[bytes]) -> None:
    """Write ``records`` as a TFRecord file (with correct checksums)."""
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data)))


# --- protobuf wire format ---------------------------------------------------------------


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
    """(field number, wire type, value) of a serialized message; value bytes for type 2."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _feature_values(buf: bytes) -> list[bytes] | np.ndarray:
    for kind, _, body in _fields(buf):
        if kind == 1:  # BytesList
            return [v for _, _, v in _fields(body)]
        if kind == 2:  # FloatList: packed (wire 2) or one float per field (wire 5)
            parts = [np.frombuffer(v, "<f4") if w == 2 else np.array([v], "<u4").view("<f4") for _, w, v in _fields(body)]
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if kind == 3:  # Int64List: packed varints or one varint per field
            values: list[int] = []
            for _, w, v in _fields(body):
                if w == 2:
                    pos = 0
                    while pos < len(v):
                        x, pos = _varint(v, pos)
                        values.append(x)
                else:
                    values.append(v)
            # Varints of negative int64 come as 64-bit two's complement.
            return np.array([x - (1 << 64) if x >= 1 << 63 else x for x in values], np.int64)
    return []


def parse_example(data: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """A serialized tf.train.Example as {feature name: list of bytes | int64 / float32 array}."""
    out: dict[str, list[bytes] | np.ndarray] = {}
    for field, _, features in _fields(data):
        if field != 1:
            continue
        for entry_field, _, entry in _fields(features):
            if entry_field != 1:
                continue
            key, value = "", b""
            for f, _, v in _fields(entry):
                if f == 1:
                    key = v.decode()
                elif f == 2:
                    value = v
            out[key] = _feature_values(value)
    return out


def _len_delimited(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


def _encode_varint(x: int) -> bytes:
    x &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def make_example(features: dict[str, bytes | int | list[int] | float]) -> bytes:
    """Serialize a tf.train.Example: bytes -> BytesList, int(s) -> Int64List, float -> FloatList."""
    entries = b""
    for key, value in features.items():
        if isinstance(value, bytes):
            feature = _len_delimited(1, _len_delimited(1, value))
        elif isinstance(value, float):
            feature = _len_delimited(2, _len_delimited(1, struct.pack("<f", value)))
        else:
            ints = [value] if isinstance(value, int) else list(value)
            feature = _len_delimited(3, _len_delimited(1, b"".join(_encode_varint(int(v)) for v in ints)))
        entries += _len_delimited(1, _len_delimited(1, key.encode()) + _len_delimited(2, feature))
    return _len_delimited(1, entries)
