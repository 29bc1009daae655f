"""ListOps (LRA): nested list operations on digits, 10 classes.

Official files: ``<data_dir>/listops-1000/basic_{train,val,test}.tsv``, tab-separated with the
header ``Source<TAB>Target``; a source reads like ``( ( ( [MAX 2 ) 9 ) ] )``.

Tokenisation (as LRA, keeping the closing bracket as a token): parentheses are dropped, every
other whitespace-separated token is looked up in :data:`VOCAB`; id 0 is padding. Sequences are
truncated to ``max_length`` (2000 by default, the LRA setting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tqdm import tqdm

from tasks.base import Task, TaskMeta, pad_sequences, require

#: Token vocabulary; the index is the token id (0 = padding).
VOCAB: tuple[str, ...] = ("<pad>", *map(str, range(10)), "[MIN", "[MAX", "[MED", "[SM", "]")
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
DROPPED = frozenset({"(", ")"})
FOLDER = "listops-1000"


def split_file(data_dir: Path, split: str) -> Path:
    """``<data_dir>/listops-1000/basic_<split>.tsv``."""
    return Path(data_dir) / FOLDER / f"basic_{split}.tsv"


def tokenize(source: str) -> np.ndarray:
    """Token ids of one ``Source`` string (parentheses dropped). Unknown tokens raise KeyError."""
    return np.array([TOKEN_ID[t] for t in source.split() if t not in DROPPED], np.int32)


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    """Sources and targets of one official ListOps file; a malformed line raises ValueError."""
    sources, targets = [], []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["Source", "Target"]:
            raise ValueError(f"{path}: expected the header 'Source<TAB>Target', got {header}")
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                source, target = fields
                targets.append(int(target))
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: expected 'Source<TAB>Target' with an integer target, "
                    f"got {line[:80]!r}"
                ) from None
            sources.append(source)
    return sources, targets


def _meta(options: Mapping[str, Any]) -> TaskMeta:
    return TaskMeta(name="listops", n_classes=10, max_length=int(options["max_length"]),
                    vocab_size=len(VOCAB), extra={"vocab": list(VOCAB)})


def _sources(data_dir: Path, split: str, options: Mapping[str, Any]) -> list[Path]:
    return [require(split_file(data_dir, split),
                    hint="or generate one offline: python -m tasks generate listops --out DIR")]


def _build(data_dir: Path, split: str, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    path = split_file(data_dir, split)
    sources, targets = read_tsv(path)
    seqs = []
    for i, s in enumerate(tqdm(sources, desc=f"listops {split}", unit="ex", leave=False)):
        try:
            seqs.append(tokenize(s))
        except KeyError as e:
            raise ValueError(f"{path}: example {i}: unknown token {e.args[0]!r}; the "
                             f"vocabulary is {VOCAB[1:]}") from None
    inputs, lengths = pad_sequences(seqs, int(options["max_length"]))
    return {"inputs": inputs, "lengths": lengths, "labels": np.asarray(targets, np.int32)}


LISTOPS = Task(name="listops", defaults={"max_length": 2000}, meta=_meta, sources=_sources,
               build=_build)
TASKS = (LISTOPS,)
