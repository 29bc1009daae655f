"""LRA data: readers for the official release files, offline generators, and a cache.

Training uses one function::

    split = tasks.load("listops", "train", data_dir="~/data/lra_release")
    split.inputs, split.lengths, split.labels, split.meta

Task names: see :data:`TASK_NAMES`. ``data_dir`` is the unpacked ``lra_release`` folder (the
one holding ``listops-1000/``, ``tsv_data/``, ``pathfinder32/``, ...). The first load of a
split preprocesses it into the cache (:mod:`tasks.cache`); later loads memory-map it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tasks.base import SPLITS, DataNotFoundError, Split, Task, TaskMeta
from tasks.cache import load_or_build
from tasks.registry import SAMPLERS, TASKS

TASK_NAMES: tuple[str, ...] = tuple(TASKS)

__all__ = ["load", "resolve_options", "sampler", "TASK_NAMES", "SPLITS", "Split", "TaskMeta", "Task",
           "DataNotFoundError"]


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; a ValueError lists the known names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {TASK_NAMES}") from None


def sampler(name: str) -> Callable[..., dict]:
    """The ``sample(n, *, length, ..., rng)`` of ``name``'s generator, which draws fresh
    examples at any length (:data:`tasks.registry.SAMPLERS`).

    Raises:
      ValueError: ``name`` has none; the message lists the tasks that have one.
    """
    get_task(name)
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"task {name!r} has no generator of fresh examples at any length; "
                         f"these do: {tuple(SAMPLERS)}") from None


def resolve_options(name: str, **options: Any) -> dict[str, Any]:
    """The task's default options updated by ``options``; unknown keys raise a ValueError."""
    task = get_task(name)
    unknown = sorted(set(options) - set(task.defaults))
    if unknown:
        raise ValueError(
            f"task {name!r} has no option(s) {unknown}; its options are "
            f"{dict(task.defaults)}"
        )
    return {**task.defaults, **options}


def load(name: str, split: str, data_dir: str | Path, *, cache_dir: str | Path | None = None,
         **options: Any) -> Split:
    """Load one split of an LRA task.

    Args:
      name: one of :data:`TASK_NAMES`.
      split: ``"train"``, ``"val"`` or ``"test"``.
      data_dir: the unpacked ``lra_release`` folder (or a generated one in the same layout).
      cache_dir: where preprocessed arrays live (default ``$LRU_DATA_CACHE`` or
        ``~/.cache/lru-harness``).
      **options: task options (e.g. ``max_length``); unknown keys are an error.

    Returns:
      A :class:`Split` of numpy arrays and the task's :class:`TaskMeta`.

    Raises:
      DataNotFoundError: a file is missing; the message names the exact path expected.
      ValueError: unknown task, split or option.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    opts = resolve_options(name, **options)
    task = get_task(name)
    data_dir = Path(data_dir).expanduser()
    arrays = load_or_build(task, data_dir, split, opts,
                           cache_dir=Path(cache_dir).expanduser() if cache_dir else None)
    return Split(meta=task.meta(opts), **arrays)
