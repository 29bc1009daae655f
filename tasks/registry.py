"""Every task reader, by name. A new task is one module with a ``TASKS`` tuple, listed here."""

from __future__ import annotations

from tasks import listops
from tasks import image, retrieval, text

_READERS = (
    listops,
    text,
    retrieval,
    image,
)

TASKS = {task.name: task for module in _READERS for task in module.TASKS}
