"""LRA ``image``: CIFAR-10 classification as a sequence of 1024 pixels (row-major, 32 x 32).

As LRA's ``image/input_pipeline.py`` (``get_cifar10_datasets``):

* splits: ``train`` = ``tfds.load('cifar10', split='train[:90%]')``, ``val`` =
  ``'train[90%:]'``, ``test`` = ``'test'``: the first 45 000 / last 5 000 of the 50 000
  training images, and the 10 000 test images (:func:`split_slice`, with TFDS's percent
  rounding);
* pixels: ``tf.image.rgb_to_grayscale`` (:func:`rgb_to_grayscale`, reproduced exactly) for
  the LRA task, 1 channel. ``color=True`` keeps the three RGB channels instead (the LRU
  paper's sCIFAR).

Inputs are ``(e, 1024, c)`` uint8, lengths all 1024, labels 0..9.

Options:
  color: False (default, LRA's grayscale) or True (RGB).
  source: ``"pickles"`` reads the CIFAR-10 python version ``<data_dir>/cifar-10-batches-py/``
    (``data_batch_1`` .. ``data_batch_5`` in that order, then ``test_batch``); ``"tfds"``
    reads a prepared TFDS folder ``<data_dir>/cifar10/<version>/`` (``dataset_info.json`` and
    ``cifar10-{train,test}.tfrecord-*`` shards of PNG images, in shard order, via
    :mod:`tasks.tfrecord`); ``"auto"`` (default) uses the pickles if that folder exists,
    else ``cifar10``.

The TFDS shards hold the training images in TFDS's own (hashed) order, which is the order
LRA sliced; the pickles hold them in the original batch order. Both give a 45 000 / 5 000
split by the same rule, but from the pickles the 5 000 validation images are the second half
of ``data_batch_5``, not the same images LRA validated on. The test set is the same.

The pickles are Python pickles: only load files you trust (the official archive).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tqdm import tqdm

from tasks import tfrecord
from tasks.base import DataNotFoundError, Task, TaskMeta, require
from tasks.text import check_source

NAME = "image"
DEFAULTS = {"color": False, "source": "auto"}
SOURCES = ("auto", "pickles", "tfds")
TFDS_VERSION = "3.0.2"
SIDE = 32
LENGTH = SIDE * SIDE
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
#: LRA's split of the training images: ``train[:90%]`` / ``train[90%:]``.
TRAIN_PERCENT = 90

#: ``tf.image.rgb_to_grayscale``'s weights.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)

CIFAR_SOURCE = (
    "the CIFAR-10 python version, cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, unpacked into data_dir; or a TFDS build: "
    "`tfds build cifar10 --data_dir <data_dir>` (install the tfds extra: "
    "pip install -e \".[tfds]\")"
)


def _pct_to_abs_closest(percent: int, n: int) -> int:
    """TFDS's default ('closest') rounding of a percent slice boundary."""
    return int(round(percent * n / 100.0))


def split_slice(split: str, n: int) -> slice:
    """Which of the ``n`` examples of the underlying TFDS split ``split`` takes.

    ``train`` and ``val`` slice the ``n`` training images at ``round(0.9 n)`` (45 000 of
    50 000); ``test`` takes all ``n`` test images.
    """
    if split == "test":
        return slice(0, n)
    boundary = _pct_to_abs_closest(TRAIN_PERCENT, n)
    if split == "train":
        return slice(0, boundary)
    if split == "val":
        return slice(boundary, n)
    raise ValueError(f"unknown split {split!r}")


def rgb_to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """``tf.image.rgb_to_grayscale`` on uint8 ``(..., 3)``: uint8 ``(..., 1)``.

    As TF: ``convert_image_dtype`` to float32 (``x * float32(1/255)``), the weighted sum in
    float32, then back to uint8 as ``convert_image_dtype`` does it without saturation:
    multiply by ``255.5`` and truncate toward zero.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"expected uint8 (..., 3), got {rgb.dtype} {rgb.shape}")
    flt = rgb.astype(np.float32) * np.float32(1.0 / 255)
    w = np.asarray(GRAY_WEIGHTS, np.float32)
    gray = flt[..., 0] * w[0] + flt[..., 1] * w[1] + flt[..., 2] * w[2]
    return (gray * np.float32(255.5)).astype(np.uint8)[..., None]


def check_color(options: Mapping[str, Any]) -> bool:
    color = options["color"]
    if not isinstance(color, (bool, np.bool_)):
        raise ValueError(f"color must be True or False, got {color!r}")
    return bool(color)


def _meta(options: Mapping[str, Any]) -> TaskMeta:
    check_source(options, SOURCES)
    return TaskMeta(name=NAME, n_classes=10, max_length=LENGTH,
                    channels=3 if check_color(options) else 1,
                    extra={"height": SIDE, "width": SIDE, "classes": list(CLASSES)})


def resolve_source(data_dir: Path, options: Mapping[str, Any]) -> str:
    """``"pickles"`` or ``"tfds"``: the reader ``options["source"]`` selects for ``data_dir``."""
    source = check_source(options, SOURCES)
    if source != "auto":
        return source
    if (data_dir / "cifar-10-batches-py").exists():
        return "pickles"
    if (data_dir / "cifar10").exists():
        return "tfds"
    raise DataNotFoundError(
        data_dir / "cifar-10-batches-py", source=CIFAR_SOURCE,
        hint=f"or a TFDS cifar10 folder: {data_dir / 'cifar10'}/<version>/ with "
             "dataset_info.json and cifar10-{train,test}.tfrecord-* shards")


def _tfds_dir(data_dir: Path) -> Path:
    return tfrecord.tfds_version_dir(data_dir / "cifar10", default_version=TFDS_VERSION,
                                     source=CIFAR_SOURCE)


def _tfds_split(split: str) -> str:
    return "test" if split == "test" else "train"


def _sources(data_dir: Path, split: str, options: Mapping[str, Any]) -> list[Path]:
    check_color(options)
    if resolve_source(data_dir, options) == "pickles":
        names = (TEST_BATCH,) if split == "test" else TRAIN_BATCHES
        return [require(data_dir / "cifar-10-batches-py" / n, source=CIFAR_SOURCE) for n in names]
    version_dir = _tfds_dir(data_dir)
    shards = tfrecord.tfds_split_files(version_dir, "cifar10", _tfds_split(split),
                                       source=CIFAR_SOURCE)
    return [version_dir / "dataset_info.json", *shards]


def read_pickle_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: ``(n, 1024, 3)`` uint8 RGB pixels and ``(n,)`` labels."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path}: not a CIFAR-10 batch (keys {sorted(map(str, batch))})")
    data = np.asarray(data, np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * LENGTH or len(labels) != len(data):
        raise ValueError(f"{path}: data {data.shape} and {len(labels)} labels; expected "
                         f"(n, {3 * LENGTH}) and n labels")
    # Each row: the R plane, then G, then B, each 32 x 32 row-major.
    pixels = data.reshape(-1, 3, LENGTH).transpose(0, 2, 1)
    return pixels, np.asarray(labels, np.int32)


def read_pickles(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """RGB pixels and labels of ``split`` from ``<data_dir>/cifar-10-batches-py``."""
    names = (TEST_BATCH,) if split == "test" else TRAIN_BATCHES
    parts = [read_pickle_batch(require(data_dir / "cifar-10-batches-py" / n, source=CIFAR_SOURCE))
             for n in names]
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    keep = split_slice(split, len(labels))
    return pixels[keep], labels[keep]


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        rgb = np.asarray(img.convert("RGB"), np.uint8)
    if rgb.shape != (SIDE, SIDE, 3):
        raise ValueError(f"expected a {SIDE}x{SIDE} image, got shape {rgb.shape}")
    return rgb.reshape(LENGTH, 3)


def read_tfds(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """RGB pixels and labels of ``split`` from the TFDS ``cifar10`` shards, in shard order."""
    version_dir = _tfds_dir(data_dir)
    tfds_split = _tfds_split(split)
    images, labels = tfrecord.read_tfds_split(version_dir, "cifar10", tfds_split, "image",
                                              source=CIFAR_SOURCE)
    keep = split_slice(split, len(labels))
    pixels = np.zeros((len(images[keep]), LENGTH, 3), np.uint8)
    for j, png in enumerate(tqdm(images[keep], desc=f"cifar10 {split}", unit="img", leave=False)):
        pixels[j] = _decode_png(png)
    return pixels, np.asarray(labels[keep], np.int32)


def _build(data_dir: Path, split: str, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    color = check_color(options)
    reader = read_pickles if resolve_source(data_dir, options) == "pickles" else read_tfds
    pixels, labels = reader(data_dir, split)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ValueError(f"CIFAR-10 labels must be 0..9, found {labels.min()}..{labels.max()}")
    inputs = pixels if color else rgb_to_grayscale(pixels)
    return {"inputs": np.ascontiguousarray(inputs),
            "lengths": np.full(len(labels), LENGTH, np.int32),
            "labels": labels.astype(np.int32)}


TASKS: tuple[Task, ...] = (
    Task(name=NAME, defaults=DEFAULTS, meta=_meta, sources=_sources, build=_build),
)
