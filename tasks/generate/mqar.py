"""MQAR generator: key-value pairs, then each key queried once among fillers; deterministic
by seed (the layout and Zoology's rules: :mod:`tasks.mqar`).

A fixed set of examples, of :data:`tasks.seq2seq.DEFAULT_SIZES` by default (the module
says why).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.base import IGNORE
from tasks.generate.splits import write_splits
from tasks.mqar import (DEFAULT_LENGTH, DEFAULT_N_PAIRS, DEFAULT_POWER_A, KEY_IDS, VALUE_IDS,
                        VOCAB_SIZE, check_arrays, split_file)
from tasks.seq2seq import DEFAULT_SIZES, to_file


def check_options(length: int, n_pairs: int, power_a: float) -> None:
    """A ValueError naming the option unless ``1 <= n_pairs <= len(KEY_IDS)``,
    ``length >= 4 * n_pairs`` (Zoology's bound) and ``power_a > 0``."""
    if not 1 <= n_pairs <= len(KEY_IDS):
        raise ValueError(f"n_pairs must be 1..{len(KEY_IDS)} (distinct keys); got {n_pairs}")
    if length < 4 * n_pairs:
        raise ValueError(f"length must be at least 4 * n_pairs = {4 * n_pairs} (the pairs, "
                         f"and a query slot per key); got {length}")
    if not power_a > 0:
        raise ValueError(f"power_a must be positive; got {power_a}")


def _distinct(ids: np.ndarray, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, k)``: each row ``k`` distinct entries of ``ids``, uniformly, in random order."""
    return ids[np.argsort(rng.random((n, len(ids))), axis=1)[:, :k]].astype(np.int32)


def sample(n: int, *, length: int = DEFAULT_LENGTH, n_pairs: int = DEFAULT_N_PAIRS,
           power_a: float = DEFAULT_POWER_A, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` examples of ``length`` steps with ``n_pairs`` pairs, each key queried once.

    The query slots are drawn without replacement with probability proportional to
    ``(slot + 1) ** (power_a - 1)`` as Zoology's ``np.random.choice(replace=False, p=...)``:
    here, vectorised, as the ``n_pairs`` largest of log-weight plus Gumbel noise, which draws
    from that same distribution of successive sampling.

    Returns:
      ``{"inputs": (n, length) int32, "lengths": (n,) int32, "labels": (n, length) int32}``.

    Raises:
      ValueError: ``n_pairs`` not in ``1 .. len(KEY_IDS)``, ``length < 4 * n_pairs`` or
        ``power_a <= 0``.
    """
    check_options(length, n_pairs, power_a)
    rows = np.arange(n)[:, None]
    keys = _distinct(KEY_IDS, n, n_pairs, rng)
    values = _distinct(VALUE_IDS, n, n_pairs, rng)
    inputs = rng.integers(1, VOCAB_SIZE, (n, length), dtype=np.int32)  # the fillers
    inputs[:, 0:2 * n_pairs:2] = keys
    inputs[:, 1:2 * n_pairs:2] = values
    slots = (length - 2 * n_pairs) // 2
    scores = (power_a - 1) * np.log(np.arange(1, slots + 1)) + rng.gumbel(size=(n, slots))
    chosen = np.argpartition(-scores, n_pairs - 1, axis=1)[:, :n_pairs]
    where = 2 * n_pairs + 2 * chosen
    inputs[rows, where] = keys
    labels = np.full((n, length), IGNORE, np.int32)
    labels[rows, where] = values
    return {"inputs": inputs, "lengths": np.full(n, length, np.int32), "labels": labels}


def generate(out_dir: str | Path, *, n_train: int = DEFAULT_SIZES["train"],
             n_val: int = DEFAULT_SIZES["val"], n_test: int = DEFAULT_SIZES["test"],
             length: int = DEFAULT_LENGTH, n_pairs: int = DEFAULT_N_PAIRS,
             power_a: float = DEFAULT_POWER_A, seed: int = 0) -> Path:
    """Write ``<out_dir>/mqar/{train,val,test}.npz`` and return that folder.

    Args:
      out_dir: the data folder (the reader's ``data_dir``).
      n_train, n_val, n_test: examples per split, each at least 1.
      length: steps per example (Zoology's ``input_seq_len``).
      n_pairs: key-value pairs, hence queries, per example (``num_kv_pairs``).
      power_a: the power law of the query slots (``power_a``; 1 is uniform).
      seed: random seed; the same arguments always write the same files.

    Raises:
      ValueError: a count below 1, or an option out of range (:func:`check_options`).
    """
    check_options(length, n_pairs, power_a)
    return write_splits(out_dir, {"train": n_train, "val": n_val, "test": n_test}, seed=seed,
                        split_file=split_file, check=check_arrays,
                        draw=lambda n, rng: to_file(sample(n, length=length, n_pairs=n_pairs,
                                                           power_a=power_a, rng=rng)))
