"""Preprocessing cache: build a split's arrays once, memory-map them afterwards.

A cache entry is a folder ``<root>/<task>-<split>-<digest>/`` holding one ``.npy`` per array
and ``key.json``. The digest hashes everything that changes the arrays: the task, the split,
every option (length, difficulty, resolution, colour, ...), a format version, and the path,
size and modification time of each source file. A changed option or a replaced file
therefore reads a different entry; a stale one is never read.

Entries are written to a temporary folder and renamed into place, so an interrupted build
leaves no half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tasks.base import Task

#: Bump when the arrays a reader produces change meaning, to retire old entries.
FORMAT_VERSION = 1


def default_cache_root() -> Path:
    """``$LRU_DATA_CACHE`` if set, else ``~/.cache/lru-harness``."""
    env = os.environ.get("LRU_DATA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lru-harness"


def cache_key(task: Task, split: str, options: Mapping[str, Any], sources: list[Path]) -> dict:
    """The JSON-able description that names a cache entry."""
    files = []
    for p in sources:
        st = Path(p).stat()
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return {
        "task": task.name,
        "split": split,
        "options": {k: options[k] for k in sorted(options)},
        "format": FORMAT_VERSION,
        "sources": files,
    }


def entry_dir(root: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(root) / f"{key['task']}-{key['split']}-{digest}"


def load_or_build(
    task: Task,
    data_dir: Path,
    split: str,
    options: Mapping[str, Any],
    *,
    cache_dir: Path | None = None,
) -> dict[str, np.ndarray]:
    """The split's arrays: memory-mapped from the cache, or built by ``task.build`` and cached.

    ``cache_dir`` defaults to :func:`default_cache_root`.
    """
    sources = task.sources(Path(data_dir), split, options)
    key = cache_key(task, split, options, sources)
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    entry = entry_dir(root, key)
    if (entry / "key.json").exists():
        names = json.loads((entry / "key.json").read_text())["arrays"]
        return {n: np.load(entry / f"{n}.npy", mmap_mode="r") for n in names}

    arrays = task.build(Path(data_dir), split, options)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr))
        (tmp / "key.json").write_text(json.dumps({**key, "arrays": sorted(arrays)}, indent=1))
        try:
            os.rename(tmp, entry)
        except OSError:  # another process finished the same entry first: keep theirs
            if not (entry / "key.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {n: np.load(entry / f"{n}.npy", mmap_mode="r") for n in sorted(arrays)}
