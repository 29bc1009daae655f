"""Which models a task admits: the one check of a model config against its task's kind.

A *sequence* task has one label per example: the model pools its steps (``model.pooling``
``mean`` or ``last``). A *per-token* task (``TaskMeta.per_token``, :mod:`tasks.base`) scores
a prediction at every position, and the model must make the one at position ``i`` from steps
``<= i`` alone: its targets are later inputs (the tokens to copy, recall or continue), so a
model that reads ahead is handed the answer. Hence, for a per-token task:

* ``model.pooling=none``: the head at every step (mean or last pooling would predict one
  label per sequence);
* ``model.bidirectional=false``: a backward reader sees the future;
* ``model.norm=layer`` in the harness's residual blocks: BatchNorm in training mode
  normalises with statistics over all ``(b, t)`` steps, so later steps shift earlier ones
  (Hawk/Griffin's own blocks use RMSNorm, per step, and do not read ``model.norm``;
  :func:`lru.training.registry.ignored_settings` says which layers read it);
* a one-document task: two-document (``dual``) tasks compare pooled documents.

Every other part of the models is causal (the recurrences run forward, S4/S4D's FFT
convolutions pad to twice the length, Griffin's convolution and Griffin's and MQA's
attention look back only, dropout masks are drawn independently of the data); a layer's
own ``bidirectional`` cannot be set through ``model.layer_options``
(:func:`lru.training.registry.layer_options`), only through ``model.bidirectional``.
``tests/test_per_token.py`` checks the causality of every model these tasks use.
"""

from __future__ import annotations

from omegaconf import DictConfig

import tasks
from lru.models import PER_STEP
from lru.training.registry import ignored_settings


def check_model_fits_task(cfg: DictConfig, meta: tasks.TaskMeta) -> None:
    """Refuse a model config that cannot be trained on ``meta``'s task (see the module
    docstring for the rules and why).

    Raises:
      ValueError: naming every key that breaks a rule, its value, why, and the fix.
    """
    m, task = cfg.model, f"task {meta.name!r}"
    problems = []
    if not meta.per_token:
        if m.pooling == PER_STEP:
            problems.append(f"model.pooling={m.pooling!r} predicts at every step, but {task} "
                            f"has one label per sequence; use model.pooling=mean or last")
    else:
        if meta.dual:
            problems.append(f"{task} is per-token and has two documents (dual); per-token "
                            f"training reads one document per example")
        if m.pooling != PER_STEP:
            problems.append(f"model.pooling={m.pooling!r} predicts one label per sequence, but "
                            f"{task} scores every position; use model.pooling={PER_STEP}")
        if m.bidirectional:
            problems.append(f"model.bidirectional=true reads each sequence backwards too, so "
                            f"the prediction at a position would see the later tokens it must "
                            f"predict ({task} is per-token); use model.bidirectional=false")
        if m.norm == "batch" and "model.norm" not in ignored_settings(cfg):
            problems.append(f"model.norm='batch' takes training-mode statistics over all steps "
                            f"of the batch, mixing later steps into earlier ones ({task} is "
                            f"per-token, its models must be causal); use model.norm=layer")
    if problems:
        raise ValueError(f"model does not fit {task}:" + "".join(f"\n  - {p}" for p in problems))
