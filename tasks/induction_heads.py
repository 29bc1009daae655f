"""Induction heads (Mamba §4.1.2 and App. E.1; Griffin §6.2): after a special token, recall
the token that followed its first occurrence. Per-token; not an LRA task.

Layout, as ``generate_induction_head`` in ``src/dataloaders/synthetics.py`` of
github.com/HazyResearch/safari (the H3/Hyena synthetics, which Mamba's induction-heads runs
follow), with one trigger and an induction length of 1: random tokens drawn uniformly; at a
random position ``p`` the special token (safari's copy prefix ``=>``), followed by a token
``X``; the sequence ends with the special token, and the model must emit ``X`` there. Safari
counts 16 tokens: 14 ordinary ones, the copy prefix and a no-op token this task never uses.
Mamba and Griffin train at length 256.

Token ids (:data:`VOCAB_SIZE` = 16): 0 padding (in place of safari's unused no-op), 1 the
special token (:data:`TRIGGER`), ``2 .. 15`` the 14 ordinary tokens (:data:`TOKEN_IDS`).

An example of ``length`` steps: ``inputs[:length - 1]`` ordinary tokens except the trigger at
``p``, drawn uniformly from ``0 .. length - 4`` (safari's range: at least one ordinary token
separates ``X`` from the final trigger), ``X = inputs[p + 1]``; ``inputs[length - 1]`` the
trigger. ``labels`` hold ``X`` at the last step only and :data:`~tasks.base.IGNORE`
elsewhere. (Safari's ``input_seq_len`` counts the random tokens, one fewer than ``length``,
which counts every step the model reads.)

Files: ``<data_dir>/induction_heads/{train,val,test}.npz`` in the layout of
:mod:`tasks.seq2seq` (written by ``python -m tasks generate induction_heads``); the reader
pads to the option ``max_length`` (default 256) and refuses a smaller one than the files'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from tasks.base import IGNORE
from tasks.seq2seq import check_layout, generate_hint, per_token_task, split_file as _split_file

NAME = "induction_heads"
FOLDER = "induction_heads"
#: Padding (0), the special token and 14 ordinary tokens: safari's 16.
VOCAB_SIZE = 16
TRIGGER = 1
TOKEN_IDS = np.arange(2, 16)
#: Mamba App. E.1 and Griffin §6.2 train at length 256.
DEFAULT_LENGTH = 256
#: The shortest example: the trigger, X, one ordinary token, the final trigger.
MIN_LENGTH = 4


def split_file(data_dir: Path, split: str) -> Path:
    """``<data_dir>/induction_heads/<split>.npz``."""
    return _split_file(data_dir, FOLDER, split)


def check_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise a ValueError naming ``path`` unless ``arrays`` hold a valid split (see the module).

    Beyond :func:`tasks.seq2seq.check_layout`: each example holds the trigger twice, at its
    last step and earlier with an ordinary token after it; only the last step is scored,
    and its target is the token after the first trigger.
    """
    inputs, lengths, labels = check_layout(path, arrays, name=NAME, vocab_size=VOCAB_SIZE)

    def fail(message: str):
        raise ValueError(f"{path}: {message}; {generate_hint(NAME)}")

    rows, last = np.arange(len(inputs)), lengths - 1
    is_trigger = inputs == TRIGGER
    first = np.argmax(is_trigger, axis=1)
    if not (np.all(is_trigger.sum(axis=1) == 2) and np.all(is_trigger[rows, last])
            and np.all(first + 1 < last)):
        fail(f"each example must hold the trigger {TRIGGER} twice: at its last step, and "
             f"earlier with an ordinary token after it")
    scored = labels != IGNORE
    if not (np.all(scored.sum(axis=1) == 1) and np.all(scored[rows, last])):
        fail(f"only the last step of each example may be scored ({IGNORE} elsewhere)")
    if not np.array_equal(labels[rows, last], inputs[rows, first + 1]):
        fail("the target at the last step must be the token after the first trigger")


INDUCTION_HEADS = per_token_task(
    name=NAME, folder=FOLDER, vocab_size=VOCAB_SIZE, default_max_length=DEFAULT_LENGTH,
    check=check_arrays,
    extra={"tokens": f"0 padding, {TRIGGER} the special token, "
                     f"{TOKEN_IDS[0]}..{TOKEN_IDS[-1]} ordinary tokens",
           "scored": "the last step: the token after the first special token"})
TASKS = (INDUCTION_HEADS,)
