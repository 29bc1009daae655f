"""Tests for the ``text`` (IMDB), ``retrieval`` (AAN) and ``image`` (CIFAR-10) readers and the
pure-python TFRecord reader.

Tiny data sets are written in each official layout: the aclImdb folder, the LRA AAN tsv
files, the CIFAR-10 python pickles, and TFDS folders for ``imdb_reviews`` and ``cifar10``.
The TFRecord shards are written with an independent encoder: ``tf.train.Example`` messages
built by the ``google.protobuf`` package from a descriptor constructed here, framed with a
bitwise (table-free) CRC-32C. Expected tokens and pixels are computed here from what was
written. Seeds are fixed.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from PIL import Image

import tasks
from tasks import image, tfrecord
from tasks.base import DataNotFoundError

# ---------------------------------------------------------------------------------------
# independent TFRecord / tf.train.Example encoder


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return (length + struct.pack("<I", masked(crc32c_bitwise(length))) + record
            + struct.pack("<I", masked(crc32c_bitwise(record))))


def _example_classes():
    f = descriptor_pb2.FileDescriptorProto(name="lra_test_example.proto", package="lratest",
                                           syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL

    def message(name, fields, nested=(), oneof=None):
        m = f.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for fname, number, label, ftype, type_name in fields:
            fd = m.field.add(name=fname, number=number, label=label, type=ftype)
            if type_name:
                fd.type_name = type_name
            if oneof:
                fd.oneof_index = 0
        for n in nested:
            m.nested_type.add().CopyFrom(n)
        return m

    message("BytesList", [("value", 1, rep, T.TYPE_BYTES, None)])
    message("FloatList", [("value", 1, rep, T.TYPE_FLOAT, None)])
    message("Int64List", [("value", 1, rep, T.TYPE_INT64, None)])
    message("Feature", [("bytes_list", 1, opt, T.TYPE_MESSAGE, ".lratest.BytesList"),
                        ("float_list", 2, opt, T.TYPE_MESSAGE, ".lratest.FloatList"),
                        ("int64_list", 3, opt, T.TYPE_MESSAGE, ".lratest.Int64List")],
            oneof="kind")
    entry = descriptor_pb2.DescriptorProto(name="FeatureEntry")
    entry.field.add(name="key", number=1, label=opt, type=T.TYPE_STRING)
    entry.field.add(name="value", number=2, label=opt, type=T.TYPE_MESSAGE,
                    type_name=".lratest.Feature")
    entry.options.map_entry = True
    message("Features", [("feature", 1, rep, T.TYPE_MESSAGE, ".lratest.Features.FeatureEntry")],
            nested=[entry])
    message("Example", [("features", 1, opt, T.TYPE_MESSAGE, ".lratest.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("lratest.Example"))


Example = _example_classes()


def example(**features) -> bytes:
    """``name=b"..."`` / ``[bytes]`` -> bytes_list, ``int`` / ``[int]`` -> int64_list,
    ``float`` / ``[float]`` -> float_list."""
    ex = Example()
    for name, value in features.items():
        values = value if isinstance(value, list) else [value]
        feature = ex.features.feature[name]
        if all(isinstance(v, bytes) for v in values):
            feature.bytes_list.value.extend(values)
        elif all(isinstance(v, int) for v in values):
            feature.int64_list.value.extend(values)
        else:
            feature.float_list.value.extend(values)
    return ex.SerializeToString()


def write_tfrecord(path: Path, records: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(frame(r) for r in records))


def write_tfds(version_dir: Path, name: str, splits: dict[str, list[list[bytes]]]) -> None:
    """A prepared TFDS folder: ``dataset_info.json`` and ``<name>-<split>.tfrecord-*`` shards."""
    infos = []
    for split, shards in splits.items():
        for i, records in enumerate(shards):
            write_tfrecord(version_dir / f"{name}-{split}.tfrecord-{i:05d}-of-{len(shards):05d}",
                           records)
        infos.append({"name": split, "shardLengths": [str(len(s)) for s in shards],
                      "numBytes": "0"})
    info = {"name": name, "version": version_dir.name, "fileFormat": "tfrecord",
            "splits": infos}
    (version_dir / "dataset_info.json").write_text(json.dumps(info, indent=1))


def tokens(text: bytes, max_length: int) -> np.ndarray:
    out = np.zeros(max_length, np.int32)
    t = [b + 1 for b in text[:max_length]]
    out[: len(t)] = t
    return out


# ---------------------------------------------------------------------------------------
# TFRecord reader


def test_crc32c_matches_reference_and_bitwise():
    assert tfrecord.crc32c(b"123456789") == 0xE3069283 == crc32c_bitwise(b"123456789")
    data = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    assert tfrecord.crc32c(data) == crc32c_bitwise(data)
    assert tfrecord.masked_crc32c(data) == masked(crc32c_bitwise(data))
    assert tfrecord.crc32c(b"") == 0


def test_tfrecord_examples_roundtrip_and_corruption(tmp_path):
    records = [example(text=[b'a "quoted" \xc3\xa9 text', b""], label=[1, -5, -(2 ** 63), 2 ** 62],
                       score=[0.5, -1.25]),
               example(image=b"\x00\x01\x02", label=7),
               b""]  # an empty Example
    path = tmp_path / "x.tfrecord"
    write_tfrecord(path, records)
    assert list(tfrecord.read_records(path)) == records
    parsed = list(tfrecord.read_examples([path]))
    assert parsed[0] == {"text": [b'a "quoted" \xc3\xa9 text', b""],
                         "label": [1, -5, -(2 ** 63), 2 ** 62], "score": [0.5, -1.25]}
    assert parsed[1] == {"image": [b"\x00\x01\x02"], "label": [7]}
    assert parsed[2] == {}

    corrupt = bytearray(path.read_bytes())
    corrupt[20] ^= 0xFF  # inside the first record's data
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(corrupt))
    with pytest.raises(tfrecord.TFRecordError, match="bad data checksum"):
        list(tfrecord.read_records(bad))
    assert len(list(tfrecord.read_records(bad, verify=False))) == 3  # verification skipped
    bad.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(tfrecord.TFRecordError, match="truncated"):
        list(tfrecord.read_records(bad))


# ---------------------------------------------------------------------------------------
# text (IMDB)

IMDB = {  # split -> label name -> {file name: contents}
    "train": {
        "neg": {"10_2.txt": b"Awful.<br /><br />Truly \xe2\x80\x94 awful \"film\".\n",
                "2_1.txt": b"  Bad bad bad bad bad bad bad bad bad bad bad bad bad bad.  ",
                "0_3.txt": "Schlecht, \u00fcberhaupt nicht gut".encode()},
        "pos": {"1_9.txt": b"Great!", "0_10.txt": "Tr\u00e8s bien \U0001f600\n".encode()},
    },
    "test": {
        "neg": {"5_4.txt": b"Meh; it's 'ok' at best."},
        "pos": {"3_8.txt": b"Loved it\t-- would watch again.\r\n", "12_7.txt": b"Fine."},
    },
}


def write_aclimdb(root: Path) -> None:
    for split, by_label in IMDB.items():
        for label, files in by_label.items():
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for name, text in files.items():
                (folder / name).write_bytes(text)
    (root / "aclImdb" / "imdb.vocab").write_text("the\n")
    (root / "aclImdb" / "train" / "unsup").mkdir()  # present in the real archive, ignored


def imdb_expected(split: str) -> tuple[list[bytes], list[int]]:
    """What the reader must return: neg then pos, files sorted by name, texts stripped."""
    texts, labels = [], []
    for label, name in enumerate(("neg", "pos")):
        files = IMDB[split][name]
        for fname in sorted(files):
            texts.append(files[fname].strip())
            labels.append(label)
    return texts, labels


def check_tokens(split_obj, texts, labels, max_length, inputs="inputs", lengths="lengths"):
    arr, lens = getattr(split_obj, inputs), getattr(split_obj, lengths)
    assert arr.dtype == np.int32 and arr.shape == (len(texts), max_length)
    assert lens.dtype == np.int32 and split_obj.labels.dtype == np.int32
    np.testing.assert_array_equal(split_obj.labels, labels)
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(arr[i], tokens(text, max_length))
        assert lens[i] == min(len(text), max_length)


def test_text_aclimdb(tmp_path):
    write_aclimdb(tmp_path / "data")
    cache = tmp_path / "cache"
    train = tasks.load("text", "train", tmp_path / "data", cache_dir=cache, max_length=24)
    texts, labels = imdb_expected("train")
    assert texts[0] == "Schlecht, \u00fcberhaupt nicht gut".encode()  # 0_3 < 10_2 < 2_1
    assert len(train) == 5 and max(len(t) for t in texts) > 24  # truncation exercised
    check_tokens(train, texts, labels, 24)
    assert train.meta.vocab_size == 257 and train.meta.n_classes == 2
    assert train.meta.max_length == 24 and not train.meta.dual
    assert train.inputs.max() <= 256 and train.inputs[0, 10] == "\u00fc".encode()[0] + 1

    test_texts, test_labels = imdb_expected("test")
    for split in ("val", "test"):  # both read the IMDB test split
        s = tasks.load("text", split, tmp_path / "data", cache_dir=cache, max_length=24)
        check_tokens(s, test_texts, test_labels, 24)
    # the default length
    full = tasks.load("text", "test", tmp_path / "data", cache_dir=cache)
    check_tokens(full, test_texts, test_labels, 4096)


def imdb_tfds_records(split):
    texts, labels = imdb_expected(split)
    return [example(text=t, label=lab) for t, lab in zip(texts, labels)]


def test_text_tfds_and_auto(tmp_path):
    # TFDS only: train in two shards, in a reversed order to check shard order is kept
    texts, labels = imdb_expected("train")
    texts, labels = texts[::-1], labels[::-1]
    records = [example(text=t, label=lab) for t, lab in zip(texts, labels)]
    data = tmp_path / "tfds_only"
    version = data / "imdb_reviews" / "plain_text" / "1.0.0"
    write_tfds(version, "imdb_reviews", {"train": [records[:2], records[2:]],
                                         "test": [imdb_tfds_records("test")]})
    (data / "imdb_reviews" / "plain_text" / "0.9.0").mkdir()  # an older, empty version folder
    cache = tmp_path / "cache"
    for source in ("tfds", "auto"):
        train = tasks.load("text", "train", data, cache_dir=cache, max_length=40, source=source)
        check_tokens(train, texts, labels, 40)
        test_texts, test_labels = imdb_expected("test")
        for split in ("val", "test"):
            s = tasks.load("text", split, data, cache_dir=cache, max_length=40, source=source)
            check_tokens(s, test_texts, test_labels, 40)

    # both present: auto prefers aclImdb (whose train order differs from these shards)
    write_aclimdb(data)
    auto = tasks.load("text", "train", data, cache_dir=cache, max_length=40)
    check_tokens(auto, *imdb_expected("train"), 40)
    tfds = tasks.load("text", "train", data, cache_dir=cache, max_length=40, source="tfds")
    check_tokens(tfds, texts, labels, 40)

    # a missing shard is named
    (version / "imdb_reviews-train.tfrecord-00001-of-00002").unlink()
    with pytest.raises(DataNotFoundError) as err:
        tasks.load("text", "train", data, cache_dir=cache, source="tfds")
    assert str(version / "imdb_reviews-train.tfrecord-00001-of-00002") in str(err.value)


def test_text_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as err:
        tasks.load("text", "train", empty, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert str(empty / "aclImdb") in message
    assert str(empty / "imdb_reviews" / "plain_text") in message
    assert "Large Movie Review Dataset" in message and "tfds build imdb_reviews" in message
    with pytest.raises(DataNotFoundError, match=str(empty / "aclImdb" / "train" / "neg")):
        tasks.load("text", "train", empty, cache_dir=tmp_path / "cache", source="aclimdb")
    with pytest.raises(DataNotFoundError,
                       match=str(empty / "imdb_reviews" / "plain_text" / "1.0.0")):
        tasks.load("text", "test", empty, cache_dir=tmp_path / "cache", source="tfds")
    with pytest.raises(ValueError, match="no option"):
        tasks.load("text", "train", empty, cache_dir=tmp_path / "cache", color=True)
    with pytest.raises(ValueError, match="source"):
        tasks.load("text", "train", empty, cache_dir=tmp_path / "cache", source="csv")
    with pytest.raises(ValueError, match="max_length"):
        tasks.load("text", "train", empty, cache_dir=tmp_path / "cache", max_length=0)


# ---------------------------------------------------------------------------------------
# retrieval (AAN)

AAN = {  # file stem -> [(label as written, id1, id2, text1, text2)]
    "train": [("1.0", "P00-1001", "W99-0613", 'A "quoted" abstract \u2014 about parsing.',
               "Another doc with 'single' quotes and \u00e9\u00e8."),
              ("0", "P00-1002", "J93-2004", "x" * 50, '"'),
              ("0.0", "A", "B", "Short.", "Also short; \U0001f600."),
              ("1", "C", "D", "Tabs are field separators; this has none.", "y" * 7)],
    "eval": [("1", "E", "F", "Eval doc one", "Eval doc two \"unbalanced")],
    "test": [("0.0", "G", "H", "Test one", "Test two"),
             ("1.0", "I", "J", "", "Empty first document above")],
}


def write_aan(root: Path, *, extra_lines: dict[str, str] | None = None) -> None:
    folder = root / "tsv_data"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, rows in AAN.items():
        lines = ["\t".join(row) for row in rows]
        text = "\n".join(lines) + "\n" + (extra_lines or {}).get(stem, "")
        (folder / f"new_aan_pairs.{stem}.tsv").write_bytes(text.encode())


def test_retrieval(tmp_path):
    write_aan(tmp_path / "data")
    cache = tmp_path / "cache"
    for split, stem in (("train", "train"), ("val", "eval"), ("test", "test")):
        rows = AAN[stem]
        s = tasks.load("retrieval", split, tmp_path / "data", cache_dir=cache, max_length=20)
        assert len(s) == len(rows) and s.meta.dual and s.meta.vocab_size == 257
        labels = [int(float(r[0])) for r in rows]
        check_tokens(s, [r[3].encode() for r in rows], labels, 20)
        check_tokens(s, [r[4].encode() for r in rows], labels, 20, "inputs2", "lengths2")
        assert s.inputs2.dtype == np.int32 and s.lengths2.dtype == np.int32
    default = tasks.load("retrieval", "train", tmp_path / "data", cache_dir=cache)
    assert default.inputs.shape == (4, 4000) and default.meta.max_length == 4000
    assert default.lengths[1] == 50 and default.lengths2[1] == 1
    assert default.inputs2[1, 0] == ord('"') + 1


@pytest.mark.parametrize("bad, message", [
    ("1\tonly\tthree\n", r"new_aan_pairs\.test\.tsv:4: expected 5 tab-separated fields"),
    ("2.0\ta\tb\tc\td\n", r"new_aan_pairs\.test\.tsv:4: label must be 0 or 1"),
    ("yes\ta\tb\tc\td\n", r"new_aan_pairs\.test\.tsv:4: label"),
])
def test_retrieval_malformed(tmp_path, bad, message):
    write_aan(tmp_path / "data", extra_lines={"test": "\n" + bad})  # line 3 blank, 4 bad
    with pytest.raises(ValueError, match=message):
        tasks.load("retrieval", "test", tmp_path / "data", cache_dir=tmp_path / "cache")


def test_retrieval_missing_file(tmp_path):
    (tmp_path / "tsv_data").mkdir()
    with pytest.raises(DataNotFoundError) as err:
        tasks.load("retrieval", "val", tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "tsv_data" / "new_aan_pairs.eval.tsv") in str(err.value)
    with pytest.raises(ValueError, match="no option"):
        tasks.load("retrieval", "val", tmp_path, cache_dir=tmp_path / "cache", source="tfds")


# ---------------------------------------------------------------------------------------
# image (CIFAR-10)

#: sha256 of tf.image.rgb_to_grayscale (TensorFlow 2.21) over all 2**24 colours, in the
#: order r * 65536 + g * 256 + b, as uint8.
TF_GRAY_SHA256 = "824a76d81dad2c5a2cf1fa0b2c0a5afe7d871ec2970e4fa2809b53ddbecdca93"


def gray_expected(rgb: np.ndarray) -> np.ndarray:
    """TF's sequence in float32: x * float32(1/255), weighted sum, * 255.5, truncate."""
    x = rgb.astype(np.float32) * np.float32(1 / 255)
    s = (x[..., 0] * np.float32(0.2989) + x[..., 1] * np.float32(0.5870)) \
        + x[..., 2] * np.float32(0.1140)
    return np.trunc(s * np.float32(255.5)).astype(np.uint8)


def test_grayscale_matches_tensorflow():
    cube = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([cube >> 16, (cube >> 8) & 255, cube & 255], -1).astype(np.uint8)
    gray = image.rgb_to_grayscale(rgb)
    assert gray.shape == (1 << 24, 1) and gray.dtype == np.uint8
    assert hashlib.sha256(gray.tobytes()).hexdigest() == TF_GRAY_SHA256
    # the formula: floor of 255.5 * weighted mean (float64 differs by at most 1, rarely)
    f64 = np.floor((rgb @ np.array([0.2989, 0.5870, 0.1140])) / 255 * 255.5)
    assert np.abs(f64 - gray[:, 0]).max() <= 1 and (f64 != gray[:, 0]).mean() < 1e-4
    # values TensorFlow gives
    for colour, value in [((255, 255, 255), 255), ((0, 0, 0), 0), ((255, 0, 0), 76),
                          ((0, 255, 0), 149), ((0, 0, 255), 29), ((12, 200, 77), 130),
                          ((128, 128, 128), 128)]:
        assert image.rgb_to_grayscale(np.array(colour, np.uint8))[0] == value


def test_split_rule():
    assert image.split_slice("train", 50_000) == slice(0, 45_000)
    assert image.split_slice("val", 50_000) == slice(45_000, 50_000)
    assert image.split_slice("test", 10_000) == slice(0, 10_000)
    assert image.split_slice("train", 20) == slice(0, 18)
    assert image.split_slice("train", 15) == slice(0, 14)  # round(13.5), as TFDS rounds
    assert image.split_slice("val", 11) == slice(10, 11)   # round(9.9)
    with pytest.raises(ValueError):
        image.split_slice("dev", 10)


N_PER_BATCH, N_TEST = 4, 3


def cifar_images(seed: int, n: int) -> tuple[np.ndarray, list[int]]:
    """``(n, 32, 32, 3)`` uint8 RGB images and labels."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, n).tolist())


def write_cifar_pickles(root: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for i in range(1, 6):
        imgs, labels = cifar_images(i, N_PER_BATCH)
        # each row: the R plane, then G, then B, each 32 x 32 row-major
        data = imgs.transpose(0, 3, 1, 2).reshape(N_PER_BATCH, 3072)
        batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels,
                 b"data": data, b"filenames": [f"img_{i}_{j}.png".encode()
                                               for j in range(N_PER_BATCH)]}
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f, protocol=2)
        train_images.append(imgs)
        train_labels += labels
    imgs, labels = cifar_images(99, N_TEST)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": labels,
                     b"data": imgs.transpose(0, 3, 1, 2).reshape(N_TEST, 3072),
                     b"filenames": [b"t.png"] * N_TEST}, f, protocol=2)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": []}))
    return np.concatenate(train_images), train_labels, imgs, labels


def check_pixels(s, imgs, labels, color):
    n = len(labels)
    channels = 3 if color else 1
    assert s.inputs.dtype == np.uint8 and s.inputs.shape == (n, 1024, channels)
    assert s.meta.channels == channels and s.meta.max_length == 1024 and s.meta.n_classes == 10
    np.testing.assert_array_equal(s.labels, labels)
    assert s.labels.dtype == np.int32 and s.lengths.dtype == np.int32
    np.testing.assert_array_equal(s.lengths, np.full(n, 1024))
    seq = imgs.reshape(n, 1024, 3)  # row-major pixel order
    if color:
        np.testing.assert_array_equal(s.inputs, seq)
    else:
        np.testing.assert_array_equal(s.inputs[..., 0], gray_expected(seq))


def test_image_pickles(tmp_path):
    train_imgs, train_labels, test_imgs, test_labels = write_cifar_pickles(tmp_path / "data")
    n = 5 * N_PER_BATCH
    cut = round(0.9 * n)  # 18 of 20
    cache = tmp_path / "cache"
    for color in (False, True):
        for source in ("auto", "pickles"):
            kw = dict(cache_dir=cache, color=color, source=source)
            train = tasks.load("image", "train", tmp_path / "data", **kw)
            check_pixels(train, train_imgs[:cut], train_labels[:cut], color)
            val = tasks.load("image", "val", tmp_path / "data", **kw)
            check_pixels(val, train_imgs[cut:], train_labels[cut:], color)
            test = tasks.load("image", "test", tmp_path / "data", **kw)
            check_pixels(test, test_imgs, test_labels, color)
    # one pixel by hand: pickle row layout -> (time, channel)
    data = pickle.loads((tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    rgb = tasks.load("image", "train", tmp_path / "data", cache_dir=cache, color=True)
    t = 5 * 32 + 7  # row 5, column 7
    assert list(rgb.inputs[0, t]) == [data[b"data"][0, c * 1024 + t] for c in range(3)]


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_image_tfds(tmp_path):
    train_imgs, train_labels = cifar_images(7, 10)
    test_imgs, test_labels = cifar_images(8, 3)
    rec = lambda imgs, labels, split: [  # noqa: E731
        example(image=png(im), label=lab, id=f"{split}_{i:05d}".encode())
        for i, (im, lab) in enumerate(zip(imgs, labels))]
    train_records = rec(train_imgs, train_labels, "train")
    data = tmp_path / "data"
    write_tfds(data / "cifar10" / "3.0.2", "cifar10",
               {"train": [train_records[:6], train_records[6:]],
                "test": [rec(test_imgs, test_labels, "test")]})
    cache = tmp_path / "cache"
    for color in (False, True):
        for source in ("auto", "tfds"):
            kw = dict(cache_dir=cache, color=color, source=source)
            check_pixels(tasks.load("image", "train", data, **kw),
                         train_imgs[:9], train_labels[:9], color)
            check_pixels(tasks.load("image", "val", data, **kw),
                         train_imgs[9:], train_labels[9:], color)
            check_pixels(tasks.load("image", "test", data, **kw), test_imgs, test_labels, color)

    # dataset_info.json that disagrees with the shards
    info_path = data / "cifar10" / "3.0.2" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["splits"][1]["shardLengths"] = ["4"]
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="lists 4 test examples, the shards hold 3"):
        tasks.load("image", "test", data, cache_dir=cache, source="tfds")


def test_image_errors(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        tasks.load("image", "train", tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    assert str(tmp_path / "cifar10") in str(err.value)
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataNotFoundError) as err:
        tasks.load("image", "test", tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in str(err.value)
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "cifar10" / "3.0.2")):
        tasks.load("image", "test", tmp_path, cache_dir=tmp_path / "cache", source="tfds")
    with pytest.raises(ValueError, match="no option"):
        tasks.load("image", "train", tmp_path, cache_dir=tmp_path / "cache", max_length=10)
    with pytest.raises(ValueError, match="color"):
        tasks.load("image", "train", tmp_path, cache_dir=tmp_path / "cache", color="rgb")
    with pytest.raises(ValueError, match="source"):
        tasks.load("image", "train", tmp_path, cache_dir=tmp_path / "cache", source="png")
