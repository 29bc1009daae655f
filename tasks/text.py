"""LRA ``text``: IMDB sentiment classification on UTF-8 bytes.

As LRA's ``text_classification/input_pipeline.py`` (``tfds.load('imdb_reviews')`` with
``ByteTextEncoder``): each byte ``b`` of a review becomes token ``b + 1`` (0 is padding, so
``vocab_size`` is 257), truncated to ``max_length`` (4096 in LRA). There is no validation
set: ``val`` and ``test`` both read the IMDB test split (25 000 reviews each, train too).
Labels: neg = 0, pos = 1.

Options:
  max_length: padded length (default 4096).
  source: ``"aclimdb"`` reads the original folder ``<data_dir>/aclImdb/{train,test}/{neg,pos}/
    *.txt`` (negatives then positives, files sorted by name; each review's bytes are stripped
    of leading/trailing whitespace, as the TFDS builder does). ``"tfds"`` reads a prepared
    TFDS folder ``<data_dir>/imdb_reviews/plain_text/<version>/`` (``dataset_info.json`` and
    ``imdb_reviews-{train,test}.tfrecord-*`` shards, read in shard order with
    :mod:`tasks.tfrecord`, no TensorFlow needed). ``"auto"`` (default) uses ``aclImdb`` if
    that folder exists, else ``imdb_reviews``.

The cache keys on the two ``neg``/``pos`` folders of the aclImdb split (their size and
modification time change when files are added or removed, not when one is edited in place)
or on the TFDS shards and ``dataset_info.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from tasks import tfrecord
from tasks.base import DataNotFoundError, Task, TaskMeta, require

NAME = "text"
VOCAB_SIZE = 257  # 256 byte values + padding
DEFAULTS = {"max_length": 4096, "source": "auto"}
SOURCES = ("auto", "aclimdb", "tfds")
TFDS_VERSION = "1.0.0"  # imdb_reviews/plain_text version when LRA and this reader were written

#: IMDB split each of our splits reads (LRA validates on the test split).
IMDB_SPLIT = {"train": "train", "val": "test", "test": "test"}

IMDB_SOURCE = (
    "the aclImdb_v1.tar.gz tarball from Stanford's Large Movie Review Dataset page "
    "(https://ai.stanford.edu/~amaas/data/sentiment/), unpacked into data_dir; or a TFDS build: "
    "`tfds build imdb_reviews --data_dir <data_dir>` (install the tfds extra: "
    "pip install -e \".[tfds]\")"
)


def check_max_length(options: Mapping[str, Any]) -> int:
    ml = options["max_length"]
    if isinstance(ml, bool) or not isinstance(ml, (int, np.integer)) or ml < 1:
        raise ValueError(f"max_length must be a positive int, got {ml!r}")
    return int(ml)


def check_source(options: Mapping[str, Any], choices: Sequence[str]) -> str:
    source = options["source"]
    if source not in choices:
        raise ValueError(f"source must be one of {tuple(choices)}, got {source!r}")
    return source


def encode_bytes(texts: Sequence[bytes], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte-level tokens: ``(e, max_length)`` int32 ids ``byte + 1`` (0 = padding), ``(e,)`` lengths."""
    inputs = np.zeros((len(texts), max_length), np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for i, text in enumerate(tqdm(texts, desc="bytes", unit="ex", leave=False)):
        fill_bytes(inputs, lengths, i, text)
    return inputs, lengths


def fill_bytes(inputs: np.ndarray, lengths: np.ndarray, i: int, text: bytes) -> None:
    """Write the byte tokens of ``text`` (truncated) into row ``i``."""
    text = bytes(text[: inputs.shape[1]])
    n = len(text)
    inputs[i, :n] = np.frombuffer(text, np.uint8)
    inputs[i, :n] += 1
    lengths[i] = n


def _meta(options: Mapping[str, Any]) -> TaskMeta:
    check_source(options, SOURCES)
    return TaskMeta(name=NAME, n_classes=2, max_length=check_max_length(options),
                    vocab_size=VOCAB_SIZE,
                    extra={"tokens": "utf-8 byte + 1, 0 = padding", "labels": ["neg", "pos"]})


def resolve_source(data_dir: Path, options: Mapping[str, Any]) -> str:
    """``"aclimdb"`` or ``"tfds"``: the reader ``options["source"]`` selects for ``data_dir``."""
    source = check_source(options, SOURCES)
    if source != "auto":
        return source
    if (data_dir / "aclImdb").exists():
        return "aclimdb"
    if (data_dir / "imdb_reviews").exists():
        return "tfds"
    raise DataNotFoundError(
        data_dir / "aclImdb", source=IMDB_SOURCE,
        hint=f"or a TFDS imdb_reviews folder: {data_dir / 'imdb_reviews' / 'plain_text'}"
             f"/<version>/ with dataset_info.json and imdb_reviews-{{train,test}}.tfrecord-* "
             "shards")


def _tfds_dir(data_dir: Path) -> Path:
    return tfrecord.tfds_version_dir(data_dir / "imdb_reviews" / "plain_text",
                                     default_version=TFDS_VERSION, source=IMDB_SOURCE)


def _sources(data_dir: Path, split: str, options: Mapping[str, Any]) -> list[Path]:
    check_max_length(options)
    imdb_split = IMDB_SPLIT[split]
    if resolve_source(data_dir, options) == "aclimdb":
        return [require(data_dir / "aclImdb" / imdb_split / label, source=IMDB_SOURCE)
                for label in ("neg", "pos")]
    version_dir = _tfds_dir(data_dir)
    shards = tfrecord.tfds_split_files(version_dir, "imdb_reviews", imdb_split, source=IMDB_SOURCE)
    return [version_dir / "dataset_info.json", *shards]


def read_aclimdb(data_dir: Path, imdb_split: str) -> tuple[list[bytes], list[int]]:
    """Reviews and labels of ``<data_dir>/aclImdb/<imdb_split>``: neg then pos, by file name."""
    texts, labels = [], []
    for label, name in enumerate(("neg", "pos")):
        folder = require(data_dir / "aclImdb" / imdb_split / name, source=IMDB_SOURCE)
        for path in sorted((p for p in folder.iterdir() if p.suffix == ".txt"),
                           key=lambda p: p.name):
            texts.append(path.read_bytes().strip())
            labels.append(label)
    return texts, labels


def read_tfds(data_dir: Path, imdb_split: str) -> tuple[list[bytes], list[int]]:
    """Reviews and labels of the TFDS ``imdb_reviews/plain_text`` split, in shard order."""
    return tfrecord.read_tfds_split(_tfds_dir(data_dir), "imdb_reviews", imdb_split, "text",
                                    source=IMDB_SOURCE)


def _build(data_dir: Path, split: str, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    max_length = check_max_length(options)
    reader = read_aclimdb if resolve_source(data_dir, options) == "aclimdb" else read_tfds
    texts, labels = reader(data_dir, IMDB_SPLIT[split])
    if labels and not set(labels) <= {0, 1}:
        raise ValueError(f"IMDB labels must be 0 or 1, found {sorted(set(labels))}")
    inputs, lengths = encode_bytes(texts, max_length)
    return {"inputs": inputs, "lengths": lengths, "labels": np.asarray(labels, np.int32)}


TASKS: tuple[Task, ...] = (
    Task(name=NAME, defaults=DEFAULTS, meta=_meta, sources=_sources, build=_build),
)
