"""Every task reader, by name. A new task is one module with a ``TASKS`` tuple, listed here."""

from __future__ import annotations

from tasks import (image, induction_heads, listops, mqar, pathfinder, recall, retrieval,
                   selective_copy, text)

_READERS = (
    listops,
    pathfinder,
    text,
    retrieval,
    image,
    recall,
    selective_copy,
    induction_heads,
    mqar,
)

TASKS = {task.name: task for module in _READERS for task in module.TASKS}
