"""The TFRecord / tf.train.Example reader and writer, against known bytes."""

import struct

import numpy as np
import pytest

from algoperf.data import tfrecord


def test_masked_crc_of_the_standard_check_vector():
    # CRC-32C("123456789") = 0xE3069283 (RFC 3720); TFRecord masks it: rotate right 15, add 0xa282ead8.
    crc = 0xE3069283
    assert tfrecord.masked_crc(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_example_round_trip_of_every_feature_kind():
    rec = tfrecord.make_example({
        "image": b"\xff\xd8abc", "text": "Haus", "label": 917, "neg": [-3, 2], "f": 0.5,
        "matrix": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array([[1, 2], [3, 4]], np.int64),
    })
    parsed = tfrecord.parse_example(rec)
    assert parsed["image"] == [b"\xff\xd8abc"] and parsed["text"] == [b"Haus"]
    assert parsed["label"].tolist() == [917] and parsed["neg"].tolist() == [-3, 2]
    assert parsed["f"].dtype == np.float32 and parsed["f"].tolist() == [0.5]
    assert parsed["matrix"].tolist() == [0, 1, 2, 3, 4, 5] and parsed["ids"].tolist() == [1, 2, 3, 4]


def test_unpacked_fields_as_older_writers_emit_them():
    # Int64List {1: 7, 1: 300} and FloatList {1: 1.5} written one value per field (not packed).
    ints = b"\x08\x07" + b"\x08\xac\x02"
    floats = b"\x0d" + struct.pack("<f", 1.5)
    feature_i = b"\x1a" + bytes([len(ints)]) + ints
    feature_f = b"\x12" + bytes([len(floats)]) + floats

    def entry(key: bytes, feature: bytes) -> bytes:
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
        return b"\x0a" + bytes([len(body)]) + body

    features = entry(b"i", feature_i) + entry(b"f", feature_f)
    parsed = tfrecord.parse_example(b"\x0a" + bytes([len(features)]) + features)
    assert parsed["i"].tolist() == [7, 300] and parsed["f"].tolist() == [1.5]


def test_index_read_and_iterate_records(tmp_path):
    path = tmp_path / "x.tfrecord-00000-of-00001"
    tfrecord.write_records(path, [b"a", b"bcd"])
    index = tfrecord.index_records(path)
    assert [tfrecord.read_record(path, o, n) for o, n in index] == [b"a", b"bcd"]
    assert list(tfrecord.iter_records(path)) == [b"a", b"bcd"]
    examples = [tfrecord.make_example({"k": i}) for i in range(3)]
    tfrecord.write_records(path, examples)
    assert [e["k"].tolist() for e in tfrecord.read_examples([path, path])] == [[0], [1], [2]] * 2


def test_bad_and_truncated_files_raise_naming_the_file(tmp_path):
    (tmp_path / "bad").write_bytes(b"not a tfrecord file at all")
    with pytest.raises(tfrecord.TFRecordError, match="bad.*checksum"):
        tfrecord.index_records(tmp_path / "bad")
    path = tmp_path / "cut"
    tfrecord.write_records(path, [b"hello world"])
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(tfrecord.TFRecordError, match="cut.*runs past the end"):
        tfrecord.index_records(path)
    with pytest.raises(tfrecord.TFRecordError, match="cut.*truncated"):
        list(tfrecord.iter_records(path))


def test_a_flipped_data_byte_fails_its_checksum_on_every_read_path(tmp_path):
    path = tmp_path / "flipped"
    tfrecord.write_records(path, [tfrecord.make_example({"label": 3}), tfrecord.make_example({"label": 4})])
    raw = bytearray(path.read_bytes())
    (offset, length), _ = tfrecord.index_records(path)
    raw[offset + length - 1] ^= 0x01  # the label's last byte: still a valid Example, wrong value
    path.write_bytes(bytes(raw))
    with pytest.raises(tfrecord.TFRecordError, match=r"flipped: bad data checksum in the record at byte 0"):
        list(tfrecord.iter_records(path))
    with pytest.raises(tfrecord.TFRecordError, match="flipped: bad data checksum"):
        tfrecord.read_record(path, offset, length)


def test_written_examples_are_the_bytes_tensorflow_writes():
    # tf.train.Example(features={'a': Int64List([1, -1])}).SerializeToString(), field by field:
    # Example.features(1) > Features.feature(1) map entry {key(1): 'a', value(2): Feature}
    # > Feature.int64_list(3) > value(1), packed varints: 1, then -1 as a 10-byte varint.
    ints = b"\x0a\x0b" + b"\x01" + b"\xff" * 9 + b"\x01"
    feature = b"\x1a" + bytes([len(ints)]) + ints
    entry = b"\x0a\x01a" + b"\x12" + bytes([len(feature)]) + feature
    features = b"\x0a" + bytes([len(entry)]) + entry
    assert tfrecord.make_example({"a": [1, -1]}) == b"\x0a" + bytes([len(features)]) + features


def test_garbage_is_not_an_example():
    with pytest.raises(tfrecord.TFRecordError, match="not a tf.train.Example"):
        tfrecord.parse_example(b"\x0a\xff\xff")
