"""A small pure-python reader of TFRecord files and ``tf.train.Example`` protos, so the
TFDS data folders (``imdb_reviews``, ``cifar10``) can be read without TensorFlow.

TFRecord framing, per record (all little-endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2**32) and crc32c the
CRC-32C (Castagnoli) checksum. :func:`read_records` verifies both checksums by default
(``verify=False`` skips them); a bad checksum or a truncated record raises
:class:`TFRecordError` naming the file and byte offset. The checksum is a table-driven
pure-python loop (about 10 MB/s): verifying the CIFAR-10 training shards takes some seconds,
once per cached build.

``tf.train.Example`` wire format (proto3)::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }   // entries: key = 1, value = 2
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

:func:`parse_example` accepts packed and unpacked repeated scalars and skips unknown fields.

The TFDS helpers (:func:`tfds_version_dir`, :func:`tfds_split_files`) locate a prepared
TFDS dataset ``<root>/<version>/`` with ``dataset_info.json`` and
``<name>-<split>.tfrecord-NNNNN-of-MMMMM`` shards.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Iterable, Iterator

from tasks.base import DataNotFoundError

__all__ = ["crc32c", "masked_crc32c", "read_records", "parse_example", "read_examples",
           "TFRecordError", "tfds_version_dir", "tfds_split_files", "tfds_split_length"]

_CRC32C_POLY = 0x82F63B78  # Castagnoli polynomial, bit-reversed


def _make_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CRC32C_POLY if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C_TABLE = _make_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data`` (continuing from ``crc``); ``crc32c(b"123456789") == 0xE3069283``."""
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordError(ValueError):
    """A TFRecord file is truncated or fails its checksum."""


def read_records(path: str | Path, *, verify: bool = True) -> Iterator[bytes]:
    """The records of one TFRecord file, in order. ``verify`` checks both CRCs of each."""
    path = Path(path)
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise TFRecordError(f"{path}: truncated record header at byte {offset}")
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if verify and masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(f"{path}: bad length checksum at byte {offset}")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise TFRecordError(f"{path}: truncated record at byte {offset} "
                                    f"(length {length})")
            if verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise TFRecordError(f"{path}: bad data checksum in the record at byte {offset}")
            yield data
            offset += 16 + length


# ---------------------------------------------------------------------------------------
# protobuf wire format

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)``: varints and fixed values as int, LEN as bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise ValueError("truncated fixed64")
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("truncated length-delimited field")
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            if pos + 4 > end:
                raise ValueError("truncated fixed32")
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _signed64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _parse_feature(buf: bytes) -> list:
    values: list = []
    for number, wire, value in _fields(buf):
        if wire != 2 or number not in (1, 2, 3):
            continue
        values = []  # oneof: the last kind set wins
        for n, w, v in _fields(value):
            if n != 1:
                continue
            if number == 1 and w == 2:                    # BytesList
                values.append(bytes(v))
            elif number == 2 and w == 2:                  # FloatList, packed
                values.extend(struct.unpack(f"<{len(v) // 4}f", v[: len(v) // 4 * 4]))
            elif number == 2 and w == 5:                  # FloatList, unpacked
                values.append(struct.unpack("<f", v)[0])
            elif number == 3 and w == 2:                  # Int64List, packed
                pos = 0
                while pos < len(v):
                    x, pos = _varint(v, pos)
                    values.append(_signed64(x))
            elif number == 3 and w == 0:                  # Int64List, unpacked
                values.append(_signed64(v))
    return values


def parse_example(data: bytes) -> dict[str, list]:
    """A serialized ``tf.train.Example`` as ``{name: [values]}`` (bytes, floats or ints)."""
    out: dict[str, list] = {}
    for number, wire, features in _fields(data):
        if number != 1 or wire != 2:
            continue
        for n, w, entry in _fields(features):
            if n != 1 or w != 2:
                continue
            key, value = "", []
            for en, ew, ev in _fields(entry):
                if en == 1 and ew == 2:
                    key = bytes(ev).decode("utf-8")
                elif en == 2 and ew == 2:
                    value = _parse_feature(ev)
            out[key] = value
    return out


def read_examples(paths: Iterable[str | Path], *, verify: bool = True) -> Iterator[dict[str, list]]:
    """Parsed ``tf.train.Example`` records of the files, in order."""
    for path in paths:
        for i, record in enumerate(read_records(path, verify=verify)):
            try:
                yield parse_example(record)
            except ValueError as e:
                raise TFRecordError(f"{path}: record {i} is not a tf.train.Example: {e}") from None


# ---------------------------------------------------------------------------------------
# TFDS data folders

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def tfds_version_dir(root: Path, *, default_version: str, source: str, hint: str = "") -> Path:
    """The newest ``<root>/<x.y.z>/`` holding ``dataset_info.json`` (TFDS's prepared layout).

    Raises DataNotFoundError naming ``<root>/<default_version>/dataset_info.json`` otherwise.
    """
    root = Path(root)
    candidates = []
    if root.is_dir():
        candidates = [p for p in root.iterdir()
                      if _VERSION.match(p.name) and (p / "dataset_info.json").is_file()]
    if not candidates:
        raise DataNotFoundError(root / default_version / "dataset_info.json", source=source,
                                hint=hint or f"(any version folder under {root} will do)")
    return max(candidates, key=lambda p: tuple(int(x) for x in p.name.split(".")))


def tfds_split_files(version_dir: Path, name: str, split: str, *, source: str) -> list[Path]:
    """The TFRecord shards ``<name>-<split>.tfrecord-NNNNN-of-MMMMM`` in shard order.

    Raises DataNotFoundError naming the first missing shard (or the first expected one).
    """
    version_dir = Path(version_dir)
    pattern = re.compile(rf"^{re.escape(name)}-{re.escape(split)}\.tfrecord-(\d{{5}})-of-(\d{{5}})$")
    shards = {}
    total = None
    for p in version_dir.iterdir():
        m = pattern.match(p.name)
        if m:
            shards[int(m.group(1))] = p
            total = int(m.group(2))
    if total is None:
        raise DataNotFoundError(version_dir / f"{name}-{split}.tfrecord-00000-of-00001",
                                source=source,
                                hint=f"(TFRecord shards {name}-{split}.tfrecord-*; a TFDS build "
                                     "in another file format, e.g. array_record, is not read)")
    for i in range(total):
        if i not in shards:
            raise DataNotFoundError(version_dir / f"{name}-{split}.tfrecord-{i:05d}-of-{total:05d}",
                                    source=source)
    return [shards[i] for i in range(total)]


def tfds_split_length(version_dir: Path, split: str) -> int | None:
    """The number of examples ``dataset_info.json`` records for ``split`` (None if absent)."""
    info = json.loads((Path(version_dir) / "dataset_info.json").read_text())
    for s in info.get("splits", []):
        if s.get("name") == split and "shardLengths" in s:
            return sum(int(n) for n in s["shardLengths"])
    return None


def read_tfds_split(version_dir: Path, name: str, split: str, feature: str, *,
                    source: str) -> tuple[list, list[int]]:
    """``feature`` and ``label`` of every example of a TFDS split, in shard order.

    Each example must hold exactly one of each; the count must match ``dataset_info.json``
    when it records one. Raises ValueError naming the folder otherwise.
    """
    shards = tfds_split_files(version_dir, name, split, source=source)
    values, labels = [], []
    for i, ex in enumerate(read_examples(shards)):
        if len(ex.get(feature, ())) != 1 or len(ex.get("label", ())) != 1:
            raise ValueError(f"{version_dir}: {split} example {i} lacks a single {feature!r} "
                             f"and 'label' feature (has {sorted(ex)})")
        values.append(ex[feature][0])
        labels.append(int(ex["label"][0]))
    expected = tfds_split_length(version_dir, split)
    if expected is not None and expected != len(labels):
        raise ValueError(f"{version_dir}: dataset_info.json lists {expected} {split} "
                         f"examples, the shards hold {len(labels)}")
    return values, labels
