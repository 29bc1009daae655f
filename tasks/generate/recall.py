"""Recall generator: a key, then distractors; deterministic by seed (see :mod:`tasks.recall`).

Each example: a length drawn uniformly from ``[min_length, max_length]``; the first token is
the key ``label + 1``; every other token is drawn uniformly from the first ``n_distractors``
distractor ids (:data:`tasks.recall.DISTRACTOR_IDS`). With ``n_distractors=1`` (the default)
they are all one filler token and the key is the sequence's only information: a clean test
of carrying a signal across ``length`` steps. More distractors add noise that a recurrence
with long memory accumulates in its state (with 15 and last-step pooling, no rung of the
ladder learned within 400 steps at lengths 256-512).

Each split's labels are balanced: ``n // N_CLASSES`` of each class plus one each for
``n % N_CLASSES`` classes, in random order. Each split draws from its own stream of ``seed``
(:mod:`tasks.generate.splits`), so changing one split's size leaves the others as they were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.generate.splits import write_splits
from tasks.recall import DISTRACTOR_IDS, KEY_IDS, N_CLASSES, check_arrays, split_file


def sample(n: int, *, min_length: int, max_length: int, n_distractors: int,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` examples as the arrays of one split file.

    Returns:
      ``{"inputs": (n, max_length) int32, "lengths": (n,) int32, "labels": (n,) int32}``.
    """
    labels = rng.permutation(np.arange(n) % N_CLASSES).astype(np.int32)
    lengths = rng.integers(min_length, max_length + 1, n).astype(np.int32)
    inputs = rng.choice(DISTRACTOR_IDS[:n_distractors], (n, max_length)).astype(np.int32)
    inputs[:, 0] = KEY_IDS[labels]
    inputs[np.arange(max_length) >= lengths[:, None]] = 0
    return {"inputs": inputs, "lengths": lengths, "labels": labels}


def generate(out_dir: str | Path, *, n_train: int = 4000, n_val: int = 500, n_test: int = 500,
             min_length: int = 256, max_length: int = 512, n_distractors: int = 1,
             seed: int = 0) -> Path:
    """Write ``<out_dir>/recall/{train,val,test}.npz`` and return that folder.

    Args:
      out_dir: the data folder (the reader's ``data_dir``).
      n_train, n_val, n_test: examples per split, each at least 1.
      min_length, max_length: the sequence lengths' range, inclusive (the key counts).
      n_distractors: how many distinct distractor tokens fill the steps after the key,
        ``1 .. len(DISTRACTOR_IDS)``.
      seed: random seed; the same arguments always write the same files.

    Raises:
      ValueError: a count below 1, ``not 1 <= min_length <= max_length``, or
        ``n_distractors`` out of range.
    """
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length; got {min_length}, {max_length}")
    if not 1 <= n_distractors <= len(DISTRACTOR_IDS):
        raise ValueError(f"n_distractors must be 1..{len(DISTRACTOR_IDS)}; got {n_distractors}")
    return write_splits(
        out_dir, {"train": n_train, "val": n_val, "test": n_test}, seed=seed,
        split_file=split_file, check=check_arrays,
        draw=lambda n, rng: sample(n, min_length=min_length, max_length=max_length,
                                   n_distractors=n_distractors, rng=rng))
