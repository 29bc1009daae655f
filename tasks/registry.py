"""Every task reader, by name. A new task is one module with a ``TASKS`` tuple, listed here."""

from __future__ import annotations

from tasks import image, listops, pathfinder, recall, retrieval, text

_READERS = (
    listops,
    pathfinder,
    text,
    retrieval,
    image,
    recall,
)

TASKS = {task.name: task for module in _READERS for task in module.TASKS}
