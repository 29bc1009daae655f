"""Multi-query associative recall, MQAR (Zoology, Arora et al. 2023, §3 and App.): key-value
pairs, then every key queried once; at each query, emit its value. Per-token; not an LRA task.

Layout, as ``multiquery_ar`` in ``zoology/data/multiquery_ar.py`` of
github.com/HazyResearch/zoology (one pass over the pairs, ``random_non_queries=True``): an
example of ``length`` steps with ``N`` pairs opens with ``k_1 v_1 k_2 v_2 .. k_N v_N``, ``N``
distinct keys and ``N`` distinct values from disjoint ranges. The rest of the sequence has
``(length - 2N) // 2`` query slots, at even offsets from step ``2N``; ``N`` of them, drawn
without replacement with probability proportional to ``(slot + 1) ** (power_a - 1)``
(Zoology's power law of the gap between a pair and its query; ``power_a = 0.01`` by default,
as Zoology, favouring early slots; ``power_a = 1`` is uniform), hold the keys in a random
order, so each key is queried exactly once; every other step is a filler drawn uniformly from
the whole vocabulary (a filler may repeat a key: an unscored step, as in Zoology). ``labels``
hold each query's value at the query's step and :data:`~tasks.base.IGNORE` elsewhere: the
target at a query is answerable from the steps up to it, the pairs being at the start.
Zoology needs ``length >= 4 N`` (2N steps of pairs, N slots for the queries); its
configurations are :data:`CONFIGURATIONS`.

Vocabulary: Zoology uses 8192 ids, keys ``1 .. 4095`` and values ``4096 .. 8191``. Here
:data:`VOCAB_SIZE` = 256 with the same split (:data:`KEY_IDS` ``1 .. 127``, :data:`VALUE_IDS`
``128 .. 255``; id 0, which Zoology leaves out of its keys, is padding), for the CPU: the
per-position output layer costs ``d x vocab``, which at 8192 and ``d = 128`` is the cost of 64
``d x d`` projections per step and would dominate a CPU step (at 256, two). 127 keys still
leave about 8 per pair at the largest configuration's 16 pairs; the price is that a filler
repeats one of the example's keys more often (16 / 255 of filler steps at 16 pairs, against
16 / 8191 in Zoology).

Files: ``<data_dir>/mqar/{train,val,test}.npz`` in the layout of :mod:`tasks.seq2seq`
(written by ``python -m tasks generate mqar``); the reader pads to the option ``max_length``
(default 64, the length of the default configuration) and refuses a smaller one than the
files'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from tasks.base import IGNORE
from tasks.seq2seq import check_layout, generate_hint, per_token_task, split_file as _split_file

NAME = "mqar"
FOLDER = "mqar"
#: Zoology's 8192 scaled to the CPU (see the module), split as Zoology's.
VOCAB_SIZE = 256
KEY_IDS = np.arange(1, VOCAB_SIZE // 2)
VALUE_IDS = np.arange(VOCAB_SIZE // 2, VOCAB_SIZE)
#: (length, pairs) of Zoology's training sets (experiments/mqar_example_configs/
#: original_mqar_configs.py, beside (256, 32) and (256, 64)).
CONFIGURATIONS = ((64, 4), (128, 8), (256, 16))
#: The default configuration: Zoology's first, the cheapest on a CPU.
DEFAULT_LENGTH, DEFAULT_N_PAIRS = CONFIGURATIONS[0]
#: Zoology's default power law of the query gaps (``MQARConfig.power_a``).
DEFAULT_POWER_A = 0.01


def split_file(data_dir: Path, split: str) -> Path:
    """``<data_dir>/mqar/<split>.npz``."""
    return _split_file(data_dir, FOLDER, split)


def check_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise a ValueError naming ``path`` unless ``arrays`` hold a valid split (see the module).

    Beyond :func:`tasks.seq2seq.check_layout`: every example has the same number ``N`` of
    scored positions and opens with ``N`` pairs of a key and a value (distinct keys, from
    their ranges); the scored positions come after the pairs and query every key once; each
    target is its key's value.
    """
    inputs, lengths, labels = check_layout(path, arrays, name=NAME, vocab_size=VOCAB_SIZE)

    def fail(message: str):
        raise ValueError(f"{path}: {message}; {generate_hint(NAME)}")

    scored = labels != IGNORE
    counts = scored.sum(axis=1)
    n = int(counts[0])
    if np.any(counts != n):
        fail(f"every example must have as many queries (scored positions) as the first, {n}")
    if lengths.min() < 3 * n:
        fail(f"an example with {n} queries needs at least {3 * n} steps ({2 * n} for the pairs)")
    keys, values = inputs[:, 0:2 * n:2], inputs[:, 1:2 * n:2]
    if np.any((keys < KEY_IDS[0]) | (keys > KEY_IDS[-1])) or \
            np.any((values < VALUE_IDS[0]) | (values > VALUE_IDS[-1])):
        fail(f"each example must open with {n} pairs: a key {KEY_IDS[0]}..{KEY_IDS[-1]}, then "
             f"a value {VALUE_IDS[0]}..{VALUE_IDS[-1]}")
    if np.any(np.diff(np.sort(keys, axis=1), axis=1) == 0):
        fail("the keys of an example must be distinct")
    rows = np.arange(len(inputs))[:, None]
    where = np.nonzero(scored)[1].reshape(len(inputs), n)  # row by row, n per row
    queries = inputs[rows, where]
    if np.any(where < 2 * n) or not np.array_equal(np.sort(queries, axis=1), np.sort(keys, axis=1)):
        fail("the scored positions must follow the pairs and query every key exactly once")
    value_of = np.zeros((len(inputs), VOCAB_SIZE), inputs.dtype)
    value_of[rows, keys] = values
    if not np.array_equal(labels[rows, where], value_of[rows, queries]):
        fail("the target at a query must be its key's value")


MQAR = per_token_task(
    name=NAME, folder=FOLDER, vocab_size=VOCAB_SIZE, default_max_length=DEFAULT_LENGTH,
    check=check_arrays,
    extra={"tokens": f"0 padding, {KEY_IDS[0]}..{KEY_IDS[-1]} keys, "
                     f"{VALUE_IDS[0]}..{VALUE_IDS[-1]} values; fillers: any of them",
           "scored": "each query (a key after the pairs): its value"})
TASKS = (MQAR,)
