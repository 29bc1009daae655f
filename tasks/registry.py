"""Every task reader, by name. A new task is one module with a ``TASKS`` tuple, listed here;
a task whose generator draws fresh examples at any length also lists its ``sample`` in
:data:`SAMPLERS`."""

from __future__ import annotations

from tasks import (image, induction_heads, listops, mqar, pathfinder, recall, retrieval,
                   selective_copy, text)
from tasks.generate import induction_heads as induction_heads_generator
from tasks.generate import mqar as mqar_generator
from tasks.generate import selective_copy as selective_copy_generator

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

#: The generators that draw fresh examples at any length, by task name: each
#: ``sample(n, *, length, <the generator's options>, rng) -> {"inputs", "lengths", "labels"}``
#: (the per-token tasks', for evaluating trained models at other lengths).
SAMPLERS = {
    "selective_copy": selective_copy_generator.sample,
    "induction_heads": induction_heads_generator.sample,
    "mqar": mqar_generator.sample,
}
