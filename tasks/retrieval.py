"""LRA ``retrieval``: ACL Anthology Network (AAN) citation matching on UTF-8 bytes.

Files: ``<data_dir>/tsv_data/new_aan_pairs.{train,eval,test}.tsv`` from the LRA release
(``val`` reads ``eval``). Each line holds five tab-separated fields, no header::

    label  id1  id2  text1  text2

The label is 0 or 1, written as an integer or a float (``"1"``, ``"0.0"``). As LRA's
``matching/input_pipeline.py`` (``make_csv_dataset`` with ``use_quote_delim=False``), quotes
are ordinary characters: lines are split on tabs only. Both documents become byte tokens
``b + 1`` (0 = padding, ``vocab_size`` 257), each truncated to ``max_length`` (4000 in LRA).
Blank lines are skipped; any other line without exactly five fields, or with another label,
raises a ValueError naming the file and line number.

Outputs ``inputs``/``lengths`` (document 1), ``inputs2``/``lengths2`` (document 2), ``labels``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from tqdm import tqdm

from tasks.base import LRA_RELEASE, Task, TaskMeta, require
from tasks.text import VOCAB_SIZE, check_max_length, fill_bytes

NAME = "retrieval"
DEFAULTS = {"max_length": 4000}
#: File stem each split reads.
FILE_SPLIT = {"train": "train", "val": "eval", "test": "test"}


def tsv_path(data_dir: Path, split: str) -> Path:
    return Path(data_dir) / "tsv_data" / f"new_aan_pairs.{FILE_SPLIT[split]}.tsv"


def _meta(options: Mapping[str, Any]) -> TaskMeta:
    return TaskMeta(name=NAME, n_classes=2, max_length=check_max_length(options),
                    vocab_size=VOCAB_SIZE, dual=True,
                    extra={"tokens": "utf-8 byte + 1, 0 = padding"})


def _sources(data_dir: Path, split: str, options: Mapping[str, Any]) -> list[Path]:
    check_max_length(options)
    return [require(tsv_path(data_dir, split), source=LRA_RELEASE)]


def _parse_label(field: bytes, path: Path, lineno: int) -> int:
    text = field.decode("ascii", "replace").strip()
    try:
        value = float(text)
    except ValueError:
        value = None
    if value not in (0.0, 1.0):
        raise ValueError(f"{path}:{lineno}: label must be 0 or 1 (integer or float), got {text!r}")
    return int(value)


def iter_pairs(path: Path) -> Iterator[tuple[int, bytes, bytes]]:
    """``(label, text1, text2)`` per non-blank line of an AAN tsv file."""
    path = Path(path)
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            fields = line.split(b"\t")
            if len(fields) != 5:
                raise ValueError(f"{path}:{lineno}: expected 5 tab-separated fields "
                                 f"(label id1 id2 text1 text2), got {len(fields)}")
            yield _parse_label(fields[0], path, lineno), fields[3], fields[4]


def read_pairs(path: Path, max_length: int) -> dict[str, np.ndarray]:
    """The arrays of one tsv file (two passes: count, then fill, to keep memory at the output)."""
    count = sum(1 for _ in iter_pairs(path))
    inputs = np.zeros((count, max_length), np.int32)
    inputs2 = np.zeros((count, max_length), np.int32)
    lengths = np.zeros(count, np.int32)
    lengths2 = np.zeros(count, np.int32)
    labels = np.zeros(count, np.int32)
    for i, (label, text1, text2) in enumerate(tqdm(iter_pairs(path), total=count, desc=path.name,
                                                   unit="pair", leave=False)):
        labels[i] = label
        fill_bytes(inputs, lengths, i, text1)
        fill_bytes(inputs2, lengths2, i, text2)
    return {"inputs": inputs, "lengths": lengths, "labels": labels,
            "inputs2": inputs2, "lengths2": lengths2}


def _build(data_dir: Path, split: str, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return read_pairs(require(tsv_path(data_dir, split)), check_max_length(options))


TASKS: tuple[Task, ...] = (
    Task(name=NAME, defaults=DEFAULTS, meta=_meta, sources=_sources, build=_build),
)
