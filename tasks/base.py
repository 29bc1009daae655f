"""What every LRA task reader provides, and what ``tasks.load`` returns.

Axis legend: ``e`` examples, ``t`` time (padded length), ``c`` channels.

Two kinds of task: *sequence* tasks (every LRA task) have one label per example, ``(e,)``;
*per-token* tasks (``TaskMeta.per_token``, the synthetic sequence-to-sequence tasks) have a
target at every position, ``(e, t)``, equal to :data:`IGNORE` where the position is not
scored. Per-token targets are token ids (``n_classes == vocab_size``), so a per-position head
predicts the next answer token over the whole vocabulary.

A task is a :class:`Task`: its default options, its metadata, the source files a split is
read from (checked up front, so a missing file fails with the exact path), and ``build``,
which reads them into numpy arrays. ``tasks.load`` wraps ``build`` in the cache
(:mod:`tasks.cache`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: The target at a position a per-token task does not score (its loss and accuracy skip it).
IGNORE = -1

#: Where the official files come from, for error messages and the README.
LRA_RELEASE = (
    "the Long Range Arena release archive lra_release.gz (linked from the README of "
    "github.com/google-research/long-range-arena), unpacked; point data_dir at the "
    "lra_release folder that holds listops-1000/, tsv_data/, pathfinder32/, ..."
)


class DataNotFoundError(FileNotFoundError):
    """A data file or folder is missing: names the expected path, what is there, and the source."""

    def __init__(self, expected: Path, *, source: str = LRA_RELEASE, hint: str = ""):
        expected = Path(expected)
        parent = next((p for p in [expected, *expected.parents] if p.exists()), None)
        if parent is None:
            found = "nothing: none of its parent folders exists"
        elif parent == expected:
            found = f"{expected} exists but is not what was expected"
        else:
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in parent.iterdir())
            shown = ", ".join(entries[:12]) + (", ..." if len(entries) > 12 else "")
            found = f"{parent} holds: {shown or '(empty)'}"
        message = f"expected {expected}\n  found {found}\n  get it from {source}"
        if hint:
            message += f"\n  {hint}"
        super().__init__(message)
        self.expected = expected


@dataclasses.dataclass(frozen=True)
class TaskMeta:
    """Static facts about a task (with its options applied).

    Attributes:
      name: task name as ``tasks.load`` knows it.
      n_classes: number of labels.
      max_length: padded length ``t``.
      vocab_size: token vocabulary size including padding (id 0) for token tasks, else None.
      channels: input channels ``c`` for pixel tasks (uint8 values 0..255), else None.
      dual: True for two-document tasks (retrieval).
      per_token: True for per-token tasks: ``labels`` are ``(e, t)`` targets, :data:`IGNORE`
        where unscored, and a model must be causal (it predicts position ``i`` from steps
        ``<= i`` only).
      extra: task-specific facts (e.g. the vocabulary), JSON-serialisable.
    """

    name: str
    n_classes: int
    max_length: int
    vocab_size: int | None = None
    channels: int | None = None
    dual: bool = False
    per_token: bool = False
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a task, as numpy arrays (memory-mapped when they come from the cache).

    Attributes:
      inputs: ``(e, t)`` int32 token ids (0 = padding) or ``(e, t, c)`` uint8 pixels.
      lengths: ``(e,)`` int32 true lengths.
      labels: ``(e,)`` int32 class ids; for a per-token task ``(e, t)`` int32 targets,
        :data:`IGNORE` at unscored positions (and at padding).
      meta: the task's :class:`TaskMeta`.
      inputs2, lengths2: the second document of two-document tasks, else None.
    """

    inputs: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    meta: TaskMeta
    inputs2: np.ndarray | None = None
    lengths2: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (without the ``None`` ones)."""
        names = ("inputs", "lengths", "labels", "inputs2", "lengths2")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclasses.dataclass(frozen=True)
class Task:
    """A task reader.

    Attributes:
      name: task name.
      defaults: the options and their default values; ``tasks.load`` rejects any other key.
      meta: ``options -> TaskMeta``.
      sources: ``(data_dir, split, options) -> [paths]``: the files or folders the split is
        read from. Raises :class:`DataNotFoundError` naming the first one missing. Their
        sizes and modification times key the cache.
      build: ``(data_dir, split, options) -> {"inputs", "lengths", "labels"[, "inputs2",
        "lengths2"]}`` numpy arrays.
    """

    name: str
    defaults: Mapping[str, Any]
    meta: Callable[[Mapping[str, Any]], TaskMeta]
    sources: Callable[[Path, str, Mapping[str, Any]], list[Path]]
    build: Callable[[Path, str, Mapping[str, Any]], dict[str, np.ndarray]]


def require(path: Path, *, source: str = LRA_RELEASE, hint: str = "") -> Path:
    """``path`` if it exists, else :class:`DataNotFoundError` naming it."""
    if not Path(path).exists():
        raise DataNotFoundError(Path(path), source=source, hint=hint)
    return Path(path)


def pad_sequences(seqs: list[np.ndarray], max_length: int, dtype=np.int32) -> tuple[np.ndarray, np.ndarray]:
    """Truncate to ``max_length`` and right-pad with zeros: ``(e, t)`` array and ``(e,)`` lengths."""
    out = np.zeros((len(seqs), max_length) + seqs[0].shape[1:] if seqs else (0, max_length), dtype)
    lengths = np.zeros(len(seqs), np.int32)
    for i, s in enumerate(seqs):
        s = s[:max_length]
        out[i, : len(s)] = s
        lengths[i] = len(s)
    return out, lengths


def majority_rate(split: Split) -> float:
    """The accuracy of always predicting the most common label: over examples for a sequence
    task, over scored positions (targets other than IGNORE) for a per-token task."""
    labels = np.asarray(split.labels)
    labels = labels[labels != IGNORE]
    counts = np.bincount(labels, minlength=split.meta.n_classes)
    return float(counts.max() / max(labels.size, 1))
