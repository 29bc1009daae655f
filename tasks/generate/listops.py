"""ListOps generator: LRA's algorithm, deterministic by seed, writing the official layout.

A tree is a value (a digit) or an operator applied to 2..``max_args`` subtrees. Below
``max_depth`` a node is an operator with probability 0.25 (LRA's ``VALUE_P``); at
``max_depth`` it is a value. Operators: ``[MIN``, ``[MAX``, ``[MED`` (``int(median)``), ``[SM``
(sum mod 10). A tree's length counts its digits, operators and closing ``]`` -- exactly its
tokens once parentheses are dropped. Trees are kept when ``min_length < length <
max_length`` (strict, as LRA), duplicates removed, and printed in LRA's left-nested binary
parenthesised form, e.g. ``( ( ( [MAX 2 ) 9 ) ] )``.

Unlike LRA (whose split order depends on Python's set ordering), the same seed always
writes the same files.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import Union

import numpy as np
from tqdm import tqdm

from tasks.listops import FOLDER

MIN, MAX, MED, SUM_MOD, END = "[MIN", "[MAX", "[MED", "[SM", "]"
OPERATORS = (MIN, MAX, MED, SUM_MOD)
VALUE_P = 0.25

Tree = Union[int, tuple]


def generate_tree(rng: random.Random, depth: int, max_depth: int, max_args: int) -> tuple[Tree, int]:
    """A random tree and its token count (LRA's ``generate_tree``)."""
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        return rng.choice(range(10)), 1
    length = 2
    children = []
    for _ in range(rng.randint(2, max_args)):
        child, child_len = generate_tree(rng, depth + 1, max_depth, max_args)
        children.append(child)
        length += child_len
    tree: Tree = (rng.choice(OPERATORS), children[0])
    for child in children[1:]:
        tree = (tree, child)
    return (tree, END), length


def to_string(tree: Tree) -> str:
    """LRA's printed form: every pair in parentheses."""
    if isinstance(tree, tuple):
        return f"( {to_string(tree[0])} {to_string(tree[1])} )"
    return str(tree)


def to_value(tree: Tree) -> int:
    """The tree's value."""

    def walk(t):  # returns a digit, or (operator, arguments so far) while unsaturated
        if not isinstance(t, tuple):
            return t
        left, right = walk(t[0]), walk(t[1])
        if left in OPERATORS:
            return left, [right]
        if right == END:
            op, args = left
            if op == MIN:
                return min(args)
            if op == MAX:
                return max(args)
            if op == MED:
                return int(np.median(args))
            return sum(args) % 10
        return left[0], left[1] + [right]

    return int(walk(tree))


def sample(n: int, *, max_depth: int = 10, max_args: int = 10, min_length: int = 500,
           max_length: int = 2000, seed: int = 0, progress: bool = True) -> list[tuple[str, int]]:
    """``n`` distinct ``(source, target)`` pairs with ``min_length < length < max_length``."""
    if not 0 <= min_length < max_length - 1:
        raise ValueError(f"need 0 <= min_length < max_length - 1; got {min_length}, {max_length}")
    rng = random.Random(seed)
    found: dict[str, int] = {}
    with tqdm(total=n, desc="listops", unit="tree", disable=not progress) as bar:
        while len(found) < n:
            tree, length = generate_tree(rng, 1, max_depth, max_args)
            if min_length < length < max_length:
                source = to_string(tree)
                if source not in found:
                    found[source] = to_value(tree)
                    bar.update(1)
    return list(found.items())


def _write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["Source", "Target"])
        writer.writerows(rows)
    os.replace(tmp, path)


def generate(out_dir: str | Path, *, n_train: int = 96_000, n_val: int = 2_000,
             n_test: int = 2_000, max_depth: int = 10, max_args: int = 10,
             min_length: int = 500, max_length: int = 2000, seed: int = 0,
             progress: bool = True) -> Path:
    """Write ``<out_dir>/listops-1000/basic_{train,val,test}.tsv`` and return that folder.

    The defaults are LRA's (96k/2k/2k, depth 10, up to 10 arguments, lengths 500-2000).
    Files are written atomically; the splits are disjoint.
    """
    rows = sample(n_train + n_val + n_test, max_depth=max_depth, max_args=max_args,
                  min_length=min_length, max_length=max_length, seed=seed, progress=progress)
    folder = Path(out_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    cuts = {"train": (0, n_train), "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n_train + n_val + n_test)}
    for split, (lo, hi) in cuts.items():
        _write_tsv(folder / f"basic_{split}.tsv", rows[lo:hi])
    return folder
