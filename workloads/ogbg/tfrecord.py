"""Read (and, for tests, write) TFRecord files of ``tf.train.Example`` without TensorFlow.

TFDS stores its splits as TFRecord shards: each record is
``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``
(little endian), and ``data`` is a serialized ``tf.train.Example``. An Example is the
protobuf ``Example{features: Features{feature: map<string, Feature>}}`` with
``Feature{bytes_list=1 | float_list=2 | int64_list=3}``, each list a repeated field 1
(floats and ints usually packed). A TFDS ``Tensor`` feature is stored flattened under its
name, so the caller reshapes (e.g. ``node_feat`` [n, 9]).

The protobuf wire format is decoded by hand here: a varint key ``(field << 3) | wire_type``
then a varint (type 0), 8 bytes (type 1), a length-prefixed blob (type 2) or 4 bytes (5).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

Feature = np.ndarray | list[bytes]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of one protobuf message; blobs stay bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in a tf.train.Example")
        yield field, wire, value


def _int64s(buf: bytes) -> np.ndarray:
    out = []
    for _, wire, value in _fields(buf):
        if wire == 2:  # packed varints
            pos = 0
            while pos < len(value):
                v, pos = _varint(value, pos)
                out.append(v)
        else:
            out.append(value)
    arr = np.array(out, dtype=np.uint64)
    return arr.view(np.int64)  # two's complement: negative int64s are 10-byte varints


def _floats(buf: bytes) -> np.ndarray:
    chunks = [value for _, _, value in _fields(buf)]  # packed blob(s) or single 4-byte values
    return np.frombuffer(b"".join(chunks), dtype="<f4").copy()


def parse_example(data: bytes) -> dict[str, Feature]:
    """A serialized ``tf.train.Example`` as {name: float32/int64 array or list of bytes}."""
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
            for kind, _, payload in _fields(value):
                if kind == 1:
                    out[name] = [v for _, _, v in _fields(payload)]
                elif kind == 2:
                    out[name] = _floats(payload)
                elif kind == 3:
                    out[name] = _int64s(payload)
            out.setdefault(name, np.zeros(0, np.float32))
    return out


def read_records(path: str | Path) -> Iterator[bytes]:
    """The raw records of one TFRecord file (CRCs are not checked)."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise ValueError(f"{path}: truncated TFRecord header")
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                raise ValueError(f"{path}: truncated TFRecord (file cut short?)")
            yield data


def read_examples(paths: list[Path]) -> Iterator[dict[str, Feature]]:
    """Parsed Examples of ``paths`` in order."""
    for path in paths:
        for record in read_records(path):
            yield parse_example(record)


# --- writing (tests build small files in the real format) ---------------------------
def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated right by 15 bits plus 0xa282ead8."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _encode_varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _blob(field: int, payload: bytes) -> bytes:
    return _encode_varint((field << 3) | 2) + _encode_varint(len(payload)) + payload


def serialize_example(features: dict[str, Feature]) -> bytes:
    """A ``tf.train.Example``: float arrays -> float_list, int arrays -> int64_list,
    lists of bytes/str -> bytes_list (values flattened)."""
    entries = b""
    for name, value in features.items():
        if isinstance(value, list | tuple):
            items = [v.encode() if isinstance(v, str) else v for v in value]
            feature = _blob(1, b"".join(_blob(1, v) for v in items))
        else:
            arr = np.asarray(value).ravel()
            if np.issubdtype(arr.dtype, np.floating):
                feature = _blob(2, _blob(1, arr.astype("<f4").tobytes()))
            else:
                packed = b"".join(_encode_varint(int(v)) for v in arr)
                feature = _blob(3, _blob(1, packed))
        entries += _blob(1, _blob(1, name.encode()) + _blob(2, feature))
    return _blob(1, entries)


def write_records(path: str | Path, records: list[bytes]) -> None:
    """A TFRecord file of ``records`` with valid checksums."""
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc32c(length)))
            f.write(data + struct.pack("<I", masked_crc32c(data)))
