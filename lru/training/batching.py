"""Batches from a :class:`tasks.Split`: bucketed by length, deterministic by (seed, step).

Axis legend: ``b`` batch, ``t`` time, ``c`` channels.

Training batches are drawn epoch by epoch from a permutation seeded by ``(seed, epoch)``;
within pools of ``pool`` batches, examples are sorted by length before being cut into
batches, and the batches are shuffled again, so each batch holds sequences of similar length
and is padded only to the next bucket (a power of two, at least ``min_time``, at most the
task's ``max_length``). Batch ``k`` is a pure function of ``(seed, k)``: a resumed run sees
exactly the batches an uninterrupted one would.

Pixels are scaled from uint8 to ``[-1, 1]``. A per-token task's ``(e, t)`` targets are cut to
the batch's length like its inputs (the steps cut are padding, whose targets are IGNORE).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from tasks import Split


def bucket_length(longest: int, max_length: int, min_time: int = 16) -> int:
    """The padded length for a batch whose longest sequence is ``longest``."""
    return min(max_length, max(min_time, 1 << max(0, math.ceil(math.log2(max(longest, 1))))))


class TrainBatches:
    """Deterministic, length-bucketed training batches of one split.

    Args:
      split: the data.
      batch_size: examples per batch (the last, incomplete batch of an epoch is dropped).
      seed: data-order seed.
      bucket: sort by length within pools (True) or keep a plain shuffle.
      pool: batches per sorting pool.
    """

    def __init__(self, split: Split, batch_size: int, *, seed: int, bucket: bool = True,
                 pool: int = 50):
        if len(split) < batch_size:
            raise ValueError(f"trainer.batch_size={batch_size} exceeds the {len(split)} "
                             f"training examples")
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.bucket, self.pool = bucket, pool
        self.steps_per_epoch = len(split) // batch_size
        self._cache: tuple[int, list[np.ndarray]] | None = None
        lengths = np.asarray(split.lengths)
        if split.lengths2 is not None:
            lengths = np.maximum(lengths, np.asarray(split.lengths2))
        self._lengths = lengths

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The index arrays of every batch of ``epoch``, in order."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.split))[: self.steps_per_epoch * self.batch_size]
        if self.bucket:
            chunks = []
            span = self.pool * self.batch_size
            for i in range(0, len(order), span):
                pool = order[i:i + span]
                pool = pool[np.argsort(self._lengths[pool], kind="stable")]
                chunks.extend(pool[j:j + self.batch_size] for j in range(0, len(pool), self.batch_size))
            batches = [chunks[i] for i in rng.permutation(len(chunks))]
        else:
            batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        self._cache = (epoch, batches)
        return batches

    def indices(self, step: int) -> np.ndarray:
        """Example indices of training batch ``step`` (0-based, across epochs)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        return self.epoch(epoch)[k]

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        return make_batch(self.split, self.indices(step))


def eval_batches(split: Split, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Every example once, sorted by length, in batches of ``batch_size``.

    The last batch is padded with copies of its first example and carries ``weights`` of 0
    for them, so every batch has the same size and every example counts exactly once.
    """
    lengths = np.asarray(split.lengths)
    if split.lengths2 is not None:
        lengths = np.maximum(lengths, np.asarray(split.lengths2))
    order = np.argsort(lengths, kind="stable")
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        weights = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            weights[len(idx):] = 0
            idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[0])])
        yield {**make_batch(split, idx), "weights": weights}


def make_batch(split: Split, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Arrays of the examples ``idx``, padded to their bucket length (per-token targets too)."""
    docs = [("inputs", "lengths")]
    if split.inputs2 is not None:
        docs.append(("inputs2", "lengths2"))
    longest = max(int(np.max(np.asarray(getattr(split, l))[idx])) for _, l in docs)
    time = bucket_length(longest, split.meta.max_length)
    labels = np.asarray(split.labels[idx], np.int32)
    out = {"labels": labels[:, :time] if split.meta.per_token else labels}
    for x_name, l_name in docs:
        x = np.asarray(getattr(split, x_name)[idx][:, :time])
        if split.meta.channels is not None:
            x = x.astype(np.float32) / 127.5 - 1.0
        out[x_name] = x
        out[l_name] = np.asarray(getattr(split, l_name)[idx], np.int32)
    return out
