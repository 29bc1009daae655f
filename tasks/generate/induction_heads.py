"""Induction heads generator: random tokens, a trigger and its follower, the trigger again;
deterministic by seed (the layout: :mod:`tasks.induction_heads`).

A fixed set of examples, of :data:`tasks.seq2seq.DEFAULT_SIZES` by default (the module
says why).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.base import IGNORE
from tasks.generate.splits import write_splits
from tasks.induction_heads import (DEFAULT_LENGTH, MIN_LENGTH, TOKEN_IDS, TRIGGER, check_arrays,
                                   split_file)
from tasks.seq2seq import DEFAULT_SIZES, to_file


def check_options(length: int) -> None:
    """A ValueError naming ``length`` unless it is at least :data:`MIN_LENGTH`."""
    if length < MIN_LENGTH:
        raise ValueError(f"length must be at least {MIN_LENGTH} (the trigger, the token after "
                         f"it, one more token and the final trigger); got {length}")


def sample(n: int, *, length: int = DEFAULT_LENGTH,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` examples of ``length`` steps; the answer is scored at the last step.

    Returns:
      ``{"inputs": (n, length) int32, "lengths": (n,) int32, "labels": (n, length) int32}``.

    Raises:
      ValueError: ``length < MIN_LENGTH``.
    """
    check_options(length)
    rows = np.arange(n)
    inputs = rng.choice(TOKEN_IDS, (n, length)).astype(np.int32)
    first = rng.integers(0, length - 3, n)  # 0 .. length - 4
    inputs[rows, first] = TRIGGER
    inputs[:, -1] = TRIGGER
    labels = np.full((n, length), IGNORE, np.int32)
    labels[:, -1] = inputs[rows, first + 1]
    return {"inputs": inputs, "lengths": np.full(n, length, np.int32), "labels": labels}


def generate(out_dir: str | Path, *, n_train: int = DEFAULT_SIZES["train"],
             n_val: int = DEFAULT_SIZES["val"], n_test: int = DEFAULT_SIZES["test"],
             length: int = DEFAULT_LENGTH, seed: int = 0) -> Path:
    """Write ``<out_dir>/induction_heads/{train,val,test}.npz`` and return that folder.

    Args:
      out_dir: the data folder (the reader's ``data_dir``).
      n_train, n_val, n_test: examples per split, each at least 1.
      length: steps per example, the final trigger included.
      seed: random seed; the same arguments always write the same files.

    Raises:
      ValueError: a count below 1 or ``length < MIN_LENGTH``.
    """
    check_options(length)
    return write_splits(out_dir, {"train": n_train, "val": n_val, "test": n_test}, seed=seed,
                        split_file=split_file, check=check_arrays,
                        draw=lambda n, rng: to_file(sample(n, length=length, rng=rng)))
