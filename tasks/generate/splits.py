"""Writing a generated task's splits: one seeded stream per split, checked, written atomically.

Each split draws from its own stream of ``seed`` (``numpy.random.SeedSequence(seed).spawn``,
in the order of :data:`tasks.base.SPLITS`), so changing one split's size leaves the others
as they were, and the same arguments always write the same bytes.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from tasks.base import SPLITS


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (compressed) through a temporary file and a rename, so an
    interrupted write leaves no half-written split behind."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def check_sizes(sizes: Mapping[str, int]) -> None:
    """A ValueError naming ``n_<split>`` unless every split has at least one example."""
    for split, n in sizes.items():
        if n < 1:
            raise ValueError(f"n_{split} must be at least 1; got {n}")


def write_splits(data_dir: str | Path, sizes: Mapping[str, int], *, seed: int,
                 split_file: Callable[[Path, str], Path],
                 draw: Callable[[int, np.random.Generator], dict[str, np.ndarray]],
                 check: Callable[[Path, Mapping[str, np.ndarray]], None]) -> Path:
    """Draw, check and write every split; returns the folder they are in.

    Args:
      data_dir: the data folder (the reader's ``data_dir``).
      sizes: examples per split, by split name.
      seed: random seed.
      split_file: ``(data_dir, split) -> path`` of the split's file.
      draw: ``(n, rng) -> arrays`` of ``n`` examples.
      check: the reader's ``(path, arrays)`` check, run before writing.
    """
    check_sizes(sizes)
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
    for split, stream in zip(SPLITS, streams):
        path = split_file(Path(data_dir), split)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = draw(sizes[split], np.random.default_rng(stream))
        check(path, arrays)
        write_npz(path, arrays)
    return split_file(Path(data_dir), SPLITS[0]).parent
