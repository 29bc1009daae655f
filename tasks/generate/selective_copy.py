"""Selective copying generator: data tokens among noise, then markers; deterministic by seed
(the layout: :mod:`tasks.selective_copy`).

A fixed set of examples, of :data:`tasks.seq2seq.DEFAULT_SIZES` by default (the module
says why).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.base import IGNORE
from tasks.generate.splits import write_splits
from tasks.selective_copy import (DATA_IDS, DEFAULT_LENGTH, DEFAULT_N_DATA, MARKER, NOISE,
                                  check_arrays, split_file)
from tasks.seq2seq import DEFAULT_SIZES, to_file


def check_options(length: int, n_data: int) -> None:
    """A ValueError naming the option unless ``1 <= n_data`` and ``2 * n_data <= length``."""
    if n_data < 1:
        raise ValueError(f"n_data must be at least 1; got {n_data}")
    if length < 2 * n_data:
        raise ValueError(f"length must be at least 2 * n_data = {2 * n_data} (the data tokens "
                         f"and their markers); got {length}")


def sample(n: int, *, length: int = DEFAULT_LENGTH, n_data: int = DEFAULT_N_DATA,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` examples of ``length`` steps, the last ``n_data`` of them markers.

    The data tokens sit at ``n_data`` distinct positions, uniformly drawn among the first
    ``length - n_data`` steps, and are drawn uniformly (with repetition) from
    :data:`~tasks.selective_copy.DATA_IDS`.

    Returns:
      ``{"inputs": (n, length) int32, "lengths": (n,) int32, "labels": (n, length) int32}``.

    Raises:
      ValueError: ``n_data < 1`` or ``length < 2 * n_data``.
    """
    check_options(length, n_data)
    prefix = length - n_data
    # n_data distinct positions: the smallest n_data of prefix uniform keys, in order
    keys = rng.random((n, prefix))
    positions = np.sort(np.argpartition(keys, n_data - 1, axis=1)[:, :n_data], axis=1)
    tokens = rng.choice(DATA_IDS, (n, n_data)).astype(np.int32)
    inputs = np.full((n, length), NOISE, np.int32)
    inputs[np.arange(n)[:, None], positions] = tokens
    inputs[:, prefix:] = MARKER
    labels = np.full((n, length), IGNORE, np.int32)
    labels[:, prefix:] = tokens
    return {"inputs": inputs, "lengths": np.full(n, length, np.int32), "labels": labels}


def generate(out_dir: str | Path, *, n_train: int = DEFAULT_SIZES["train"],
             n_val: int = DEFAULT_SIZES["val"], n_test: int = DEFAULT_SIZES["test"],
             length: int = DEFAULT_LENGTH, n_data: int = DEFAULT_N_DATA, seed: int = 0) -> Path:
    """Write ``<out_dir>/selective_copy/{train,val,test}.npz`` and return that folder.

    Args:
      out_dir: the data folder (the reader's ``data_dir``).
      n_train, n_val, n_test: examples per split, each at least 1.
      length: steps per example, the markers included.
      n_data: data tokens to copy (and markers).
      seed: random seed; the same arguments always write the same files.

    Raises:
      ValueError: a count below 1, ``n_data < 1`` or ``length < 2 * n_data``.
    """
    check_options(length, n_data)
    return write_splits(out_dir, {"train": n_train, "val": n_val, "test": n_test}, seed=seed,
                        split_file=split_file, check=check_arrays,
                        draw=lambda n, rng: to_file(sample(n, length=length, n_data=n_data,
                                                           rng=rng)))
