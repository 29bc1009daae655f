"""Selective copying (Mamba §4.1, Fig. 2 and App. E.1; Griffin §6.2): copy the data tokens
scattered among noise, in order, at the markers. Per-token; not an LRA task.

Layout, as the selective variant of the copying task the Mamba paper uses
(``torch_copying_data(L, M, A, variable=True)`` in ``src/dataloaders/datasets/copying.py``
of github.com/state-spaces/s4, by Mamba's first author): an alphabet of ``A = 16`` tokens,
0 the noise token, ``1 .. A - 2`` the 14 data tokens and ``A - 1`` the marker. An example's
first ``L + M`` steps hold ``M`` data tokens, drawn uniformly with repetition, at ``M``
distinct random positions in increasing order, and noise everywhere else; its last ``M``
steps are markers, and at the ``j``-th marker the model must emit the ``j``-th data token.
Mamba App. E.1: 16 tokens in the vocabulary, the noise token included, and 16 data tokens
to copy, at length 4096; Griffin §6.2 trains it at length 1024.

Token ids (:data:`VOCAB_SIZE` = the papers' 16 plus padding): 0 padding, 1 noise
(:data:`NOISE`), ``2 .. 15`` the data tokens (:data:`DATA_IDS`, the reference's ``1 .. 14``
shifted up by one to free 0 for padding), 16 the marker (:data:`MARKER`).

An example of ``length`` steps with ``n_data`` data tokens: ``inputs[:length - n_data]`` is
noise and data, ``inputs[length - n_data:]`` the markers; ``labels`` hold the data tokens in
order at the markers and :data:`~tasks.base.IGNORE` everywhere else. The target at marker
``j`` is answerable from the steps up to it: every data token precedes the first marker.

Length: the generator's default is 256, scaled from Griffin's 1024 for the CPU (a training
step costs in proportion to the length; 256 is the length of the other two synthetic
tasks). The 240 steps before the markers still hold 15 noise tokens per data token, and
:func:`tasks.generate.selective_copy.sample` draws the same task at any length (to 4096,
Mamba's, and beyond) for extrapolation.

Files: ``<data_dir>/selective_copy/{train,val,test}.npz`` in the layout of
:mod:`tasks.seq2seq` (written by ``python -m tasks generate selective_copy``); the reader
pads to the option ``max_length`` (default 256) and refuses a smaller one than the files'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from tasks.base import IGNORE
from tasks.seq2seq import check_layout, generate_hint, per_token_task, split_file as _split_file

NAME = "selective_copy"
FOLDER = "selective_copy"
#: Padding (0), noise, 14 data tokens and the marker: the papers' 16 plus padding.
VOCAB_SIZE = 17
NOISE = 1
DATA_IDS = np.arange(2, 16)
MARKER = 16
#: Griffin §6.2's length, scaled for the CPU (see the module).
DEFAULT_LENGTH = 256
#: Mamba App. E.1 and Griffin §6.2: 16 data tokens.
DEFAULT_N_DATA = 16


def split_file(data_dir: Path, split: str) -> Path:
    """``<data_dir>/selective_copy/<split>.npz``."""
    return _split_file(data_dir, FOLDER, split)


def check_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise a ValueError naming ``path`` unless ``arrays`` hold a valid split (see the module).

    Beyond :func:`tasks.seq2seq.check_layout`: each example ends in markers and holds nothing
    but noise and data tokens before them, as many data tokens as markers; the scored
    positions are exactly the markers, and their targets are the data tokens in order.
    """
    inputs, lengths, labels = check_layout(path, arrays, name=NAME, vocab_size=VOCAB_SIZE)

    def fail(message: str):
        raise ValueError(f"{path}: {message}; {generate_hint(NAME)}")

    valid = np.arange(inputs.shape[1]) < lengths[:, None]
    is_marker = inputs == MARKER
    is_data = valid & (inputs >= DATA_IDS[0]) & (inputs <= DATA_IDS[-1])
    n_markers = is_marker.sum(axis=1)
    tail = np.arange(inputs.shape[1]) >= (lengths - n_markers)[:, None]
    if not np.array_equal(is_marker, valid & tail):
        fail("the markers must be the last steps of each example, and nowhere else")
    if not np.array_equal(is_data.sum(axis=1), n_markers):
        fail("each example needs as many data tokens as markers")
    if not np.array_equal(labels != IGNORE, is_marker):
        fail(f"the targets must sit at the markers and nowhere else ({IGNORE} elsewhere)")
    # both masks read row by row, and each row has as many of one as of the other
    if not np.array_equal(labels[is_marker], inputs[is_data]):
        fail("the targets at the markers must be the example's data tokens, in order")


SELECTIVE_COPY = per_token_task(
    name=NAME, folder=FOLDER, vocab_size=VOCAB_SIZE, default_max_length=DEFAULT_LENGTH,
    check=check_arrays,
    extra={"tokens": f"0 padding, {NOISE} noise, {DATA_IDS[0]}..{DATA_IDS[-1]} data, "
                     f"{MARKER} marker",
           "scored": "at each marker, the next data token in order"})
TASKS = (SELECTIVE_COPY,)
