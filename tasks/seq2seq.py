"""What the synthetic sequence-to-sequence tasks share: their files, the checks, the reader.

Axis legend: ``e`` examples, ``w`` the files' width, ``t`` the padded length.

The per-token tasks :mod:`tasks.selective_copy`, :mod:`tasks.induction_heads` and
:mod:`tasks.mqar` are generated offline (``python -m tasks generate NAME``,
:mod:`tasks.generate`) into ``<data_dir>/<folder>/{train,val,test}.npz``, numpy archives
holding

* ``inputs``: ``(e, w)`` token ids in ``1 .. vocab_size - 1``, right-padded with 0;
* ``lengths``: ``(e,)`` true lengths, ``1 <= length <= w``;
* ``labels``: ``(e, w)`` targets: at a scored position the token id the model must emit
  there, answerable from the inputs up to and including that position; :data:`IGNORE` at
  every other position and on padding.

The generators store them in :data:`FILE_DTYPES` (every vocabulary here is below 256 ids):
a quarter and a half of int32's bytes, and about ten times faster to compress. The reader
returns int32, padded to the option ``max_length`` with 0 (inputs) and :data:`IGNORE`
(labels). It never truncates: cutting a sequence would cut answers out of it, so a
``max_length`` below the files' longest example is a ValueError naming the option. Each task
adds its own checks of what the scored positions hold (its ``check``).

Mamba draws fresh examples at every step; here, as in Zoology and for recall, each task is
a fixed generated set: the harness's batches are a pure function of (seed, step) over a
split, which keeps a resumed run exact. The generators' default sizes
(:data:`DEFAULT_SIZES`) give 100,000 training examples, which last 3,125 steps of batch 32
(1,562 of batch 64) before any example repeats; the generators' ``sample`` draws fresh
examples at any length, for evaluating trained models at other lengths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from tasks.base import IGNORE, Task, TaskMeta, require
from tasks.text import check_max_length

ARRAYS = ("inputs", "lengths", "labels")
#: The generators' default examples per split (see the module).
DEFAULT_SIZES = {"train": 100_000, "val": 1000, "test": 1000}
#: The integer types of the arrays in the files (targets hold IGNORE, -1).
FILE_DTYPES = {"inputs": np.uint8, "lengths": np.int32, "labels": np.int16}
SOURCE = "this project's generators (the synthetic tasks are not part of LRA)"


def generate_hint(name: str) -> str:
    """The command that writes ``name``'s files."""
    return f"generate it offline: python -m tasks generate {name} --out DIR"


def split_file(data_dir: Path, folder: str, split: str) -> Path:
    """``<data_dir>/<folder>/<split>.npz``."""
    return Path(data_dir) / folder / f"{split}.npz"


def to_file(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` cast to :data:`FILE_DTYPES`; a ValueError if a value does not fit its type."""
    out = {}
    for name, dtype in FILE_DTYPES.items():
        array, limits = np.asarray(arrays[name]), np.iinfo(dtype)
        if array.size and (array.min() < limits.min or array.max() > limits.max):
            raise ValueError(f"{name} holds {array.min()}..{array.max()}, outside the "
                             f"{np.dtype(dtype).name} the files store it in")
        out[name] = array.astype(dtype)
    return out


def check_layout(path: Path, arrays: Mapping[str, np.ndarray], *, name: str,
                 vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The checks every per-token split passes (see the module); returns its three arrays.

    Checks the names and shapes, lengths in ``[1, w]``, tokens in ``1 .. vocab_size - 1``
    within each length and 0 after it, targets in ``1 .. vocab_size - 1`` or
    :data:`IGNORE`, :data:`IGNORE` on padding, and at least one scored position per example.

    Raises:
      ValueError: naming ``path`` and the generate command.
    """
    def fail(message: str):
        raise ValueError(f"{path}: {message}; {generate_hint(name)}")

    missing = [n for n in ARRAYS if n not in arrays]
    if missing:
        fail(f"missing arrays {missing}; a {name} split holds {ARRAYS}")
    inputs, lengths, labels = (np.asarray(arrays[n]) for n in ARRAYS)
    if inputs.ndim != 2 or lengths.shape != inputs.shape[:1] or labels.shape != inputs.shape:
        fail(f"expected inputs (e, w), lengths (e,), labels (e, w); got {inputs.shape}, "
             f"{lengths.shape}, {labels.shape}")
    if not all(np.issubdtype(a.dtype, np.integer) for a in (inputs, lengths, labels)):
        fail(f"arrays must hold integers; got {inputs.dtype}, {lengths.dtype}, {labels.dtype}")
    if len(inputs) == 0:
        fail("the split holds no examples")
    if not (1 <= lengths.min() and lengths.max() <= inputs.shape[1]):
        fail(f"lengths must lie in [1, {inputs.shape[1]}], found {lengths.min()}..{lengths.max()}")
    valid = np.arange(inputs.shape[1]) < lengths[:, None]
    tokens = inputs[valid]
    if np.any(inputs[~valid] != 0) or np.any((tokens < 1) | (tokens >= vocab_size)):
        fail(f"tokens must be 1..{vocab_size - 1} within each length and 0 (padding) after it")
    scored = labels != IGNORE
    targets = labels[scored]
    if np.any((targets < 1) | (targets >= vocab_size)):
        fail(f"targets must be token ids 1..{vocab_size - 1} or {IGNORE} (not scored), found "
             f"{targets.min()}..{targets.max()}")
    if np.any(scored & ~valid):
        fail(f"targets on padding must be {IGNORE}")
    if not scored.any(axis=1).all():
        fail(f"every example needs a scored position; example {np.argmin(scored.any(axis=1))} "
             f"has none")
    return inputs, lengths, labels


def per_token_task(*, name: str, folder: str, vocab_size: int, default_max_length: int,
                   check: Callable[[Path, Mapping[str, np.ndarray]], None],
                   extra: Mapping[str, Any]) -> Task:
    """The :class:`~tasks.base.Task` that reads a per-token task's files (see the module).

    Args:
      name: the task's name.
      folder: its folder under ``data_dir``.
      vocab_size: token ids ``0 .. vocab_size - 1``, padding (0) included; also
        ``n_classes``, since targets are token ids.
      default_max_length: the option ``max_length``'s default.
      check: ``(path, arrays) -> None``, raising a ValueError naming ``path`` unless the
        arrays hold a valid split of the task.
      extra: :attr:`TaskMeta.extra` (the vocabulary and what is scored, in words).
    """
    def meta(options: Mapping[str, Any]) -> TaskMeta:
        return TaskMeta(name=name, n_classes=vocab_size, max_length=check_max_length(options),
                        vocab_size=vocab_size, per_token=True, extra=dict(extra))

    def sources(data_dir: Path, split: str, options: Mapping[str, Any]) -> list[Path]:
        check_max_length(options)
        return [require(split_file(data_dir, folder, split), source=SOURCE,
                        hint=generate_hint(name))]

    def build(data_dir: Path, split: str, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        path = split_file(data_dir, folder, split)
        with np.load(path) as archive:
            arrays = {n: archive[n] for n in archive.files}
        check(path, arrays)
        max_length = check_max_length(options)
        longest = int(arrays["lengths"].max())
        if max_length < longest:
            raise ValueError(f"{name}: max_length={max_length} would cut examples of {path} "
                             f"(up to {longest} long) and the answers in them; set the task "
                             f"option max_length to at least {longest}")
        e, width = len(arrays["inputs"]), min(max_length, arrays["inputs"].shape[1])
        inputs = np.zeros((e, max_length), np.int32)
        labels = np.full((e, max_length), IGNORE, np.int32)
        inputs[:, :width] = arrays["inputs"][:, :width]  # beyond `longest`: padding only
        labels[:, :width] = arrays["labels"][:, :width]
        return {"inputs": inputs, "lengths": arrays["lengths"].astype(np.int32), "labels": labels}

    return Task(name=name, defaults={"max_length": default_max_length}, meta=meta,
                sources=sources, build=build)
