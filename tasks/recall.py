"""Recall: carry the first token across the whole sequence. 8 classes. Not an LRA task.

A small synthetic classification task in the LRA format (token ids, true lengths, one label
per sequence), made so that CPU-sized runs of the LRU ablation ladder show the signal
propagation story of the LRU paper's Section 3: each sequence starts with a *key*, one of
:data:`N_CLASSES` key tokens, and continues with distractor tokens from a separate range;
the label is the key. Chance is ``1 / N_CLASSES`` (the generator balances the classes).

The task needs memory only if the model reads the sequence at its *last* step
(``model.pooling=last``): there the key is present only through the recurrence's state,
with weight about ``|lambda|^length``, so eigenvalues must sit close to the unit circle
from the start (or get there while training) for any signal to arrive. With mean pooling
the key's own step is part of the pool, with weight ``1 / length`` and no memory needed;
measured on this task, every diagonal rung then solves it within 400 steps.

Token ids (:data:`VOCAB_SIZE` in all): 0 padding, ``1 .. N_CLASSES`` the keys (label ``k``
is token ``k + 1``), ``N_CLASSES + 1 .. VOCAB_SIZE - 1`` the distractors
(:data:`DISTRACTOR_IDS`). The generator draws the distractors from the first
``n_distractors`` of them; with one, every step after the key is the same filler token.

Files (written by ``python -m tasks generate recall``, :mod:`tasks.generate.recall`):
``<data_dir>/recall/{train,val,test}.npz``, numpy archives holding

* ``inputs``: ``(e, w)`` int32 token ids, right-padded with 0 to the width ``w``;
* ``lengths``: ``(e,)`` int32 true lengths, ``1 <= length <= w``;
* ``labels``: ``(e,)`` int32 class ids ``0 .. N_CLASSES - 1``.

The reader truncates or pads to the option ``max_length`` (default 512); truncation keeps
the key, which is the first token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tasks.base import Task, TaskMeta, require

NAME = "recall"
FOLDER = "recall"
N_CLASSES = 8
#: Padding, the keys and the distractors.
VOCAB_SIZE = 24
KEY_IDS = np.arange(1, N_CLASSES + 1)
DISTRACTOR_IDS = np.arange(N_CLASSES + 1, VOCAB_SIZE)
ARRAYS = ("inputs", "lengths", "labels")
SOURCE = "this project's generator (recall is a synthetic task, not part of LRA)"
GENERATE_HINT = "generate it offline: python -m tasks generate recall --out DIR"


def split_file(data_dir: Path, split: str) -> Path:
    """``<data_dir>/recall/<split>.npz``."""
    return Path(data_dir) / FOLDER / f"{split}.npz"


def check_max_length(options: Mapping[str, Any]) -> int:
    """The option ``max_length`` as an int; a ValueError unless it is a positive integer."""
    value = options["max_length"]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"recall: max_length must be a positive int, got {value!r}")
    return int(value)


def check_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise a ValueError naming ``path`` unless ``arrays`` hold a valid split (see the module).

    Checks the names and shapes, lengths in ``[1, w]``, tokens in ``1 .. VOCAB_SIZE - 1``
    within each length and 0 after it, and labels in ``0 .. N_CLASSES - 1``.
    """
    missing = [n for n in ARRAYS if n not in arrays]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}; a recall split holds {ARRAYS}; "
                         f"{GENERATE_HINT}")
    inputs, lengths, labels = (np.asarray(arrays[n]) for n in ARRAYS)
    if inputs.ndim != 2 or lengths.shape != (len(inputs),) or labels.shape != (len(inputs),):
        raise ValueError(f"{path}: expected inputs (e, w), lengths (e,), labels (e,); got "
                         f"{inputs.shape}, {lengths.shape}, {labels.shape}")
    if len(inputs) and not (1 <= lengths.min() and lengths.max() <= inputs.shape[1]):
        raise ValueError(f"{path}: lengths must lie in [1, {inputs.shape[1]}], found "
                         f"{lengths.min()}..{lengths.max()}")
    valid = np.arange(inputs.shape[1]) < lengths[:, None]
    tokens = inputs[valid]
    if np.any(inputs[~valid] != 0) or np.any((tokens < 1) | (tokens >= VOCAB_SIZE)):
        raise ValueError(f"{path}: tokens must be 1..{VOCAB_SIZE - 1} within each length and "
                         f"0 (padding) after it")
    if len(labels) and not (0 <= labels.min() and labels.max() < N_CLASSES):
        raise ValueError(f"{path}: labels must be 0..{N_CLASSES - 1}, found "
                         f"{labels.min()}..{labels.max()}")


def _meta(options: Mapping[str, Any]) -> TaskMeta:
    return TaskMeta(name=NAME, n_classes=N_CLASSES, max_length=check_max_length(options),
                    vocab_size=VOCAB_SIZE,
                    extra={"tokens": f"0 padding, 1..{N_CLASSES} keys (label + 1), "
                                     f"{N_CLASSES + 1}..{VOCAB_SIZE - 1} distractors",
                           "label": "the key, the first token"})


def _sources(data_dir: Path, split: str, options: Mapping[str, Any]) -> list[Path]:
    check_max_length(options)
    return [require(split_file(data_dir, split), source=SOURCE, hint=GENERATE_HINT)]


def _build(data_dir: Path, split: str, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    path = split_file(data_dir, split)
    with np.load(path) as archive:
        arrays = {n: archive[n] for n in archive.files}
    check_arrays(path, arrays)
    max_length = check_max_length(options)
    inputs = np.zeros((len(arrays["inputs"]), max_length), np.int32)
    width = min(max_length, arrays["inputs"].shape[1])
    inputs[:, :width] = arrays["inputs"][:, :width]
    return {"inputs": inputs,
            "lengths": np.minimum(arrays["lengths"], max_length).astype(np.int32),
            "labels": arrays["labels"].astype(np.int32)}


RECALL = Task(name=NAME, defaults={"max_length": 512}, meta=_meta, sources=_sources,
              build=_build)
TASKS = (RECALL,)
