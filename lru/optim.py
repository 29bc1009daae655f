"""Optimiser: AdamW with the LRU paper's parameter groups, linear warmup then cosine decay.

The paper (Appendix D) trains the recurrent parameters -- the eigenvalue parameters
(``nu_log``, ``theta_log``; ``Lambda_re/Lambda_im``, ``nu/theta`` or ``A`` on earlier
rungs), ``gamma_log`` and ``B`` -- at ``lr * recurrent_lr_factor`` without weight decay, and
everything else at ``lr`` with weight decay. Each layer names its recurrent parameters in a
``RECURRENT_PARAMS`` class attribute; :func:`param_labels` reads them, so a new layer brings
its own grouping.
"""

from __future__ import annotations

import dataclasses

import jax
import optax
from flax import nnx

RECURRENT, BASE = "recurrent", "base"


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """Attributes mirror ``conf/optimizer`` and ``conf/schedule`` (see :mod:`lru.config`)."""

    lr: float
    weight_decay: float
    recurrent_lr_factor: float
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 0.0
    steps: int = 1000
    warmup_steps: int = 0
    schedule: str = "cosine"
    end_lr_ratio: float = 0.0


def param_labels(model: nnx.Module) -> nnx.State:
    """``"recurrent"`` or ``"base"`` for every ``nnx.Param`` of ``model``.

    Returns an ``nnx.State`` shaped like ``nnx.state(model, nnx.Param)`` with a label in
    place of each variable (a prefix of the parameter pytree, as ``optax.multi_transform``
    accepts).
    """
    recurrent_paths = set()
    for path, node in nnx.iter_graph(model):
        names = getattr(type(node), "RECURRENT_PARAMS", None)
        if isinstance(node, nnx.Module) and names:
            recurrent_paths.update(tuple(path) + (name,) for name in names)
    params = nnx.state(model, nnx.Param)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: RECURRENT if tuple(k.key for k in path) in recurrent_paths else BASE,
        params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def learning_rate(s: OptimizerSettings) -> optax.Schedule:
    """Linear warmup from 0 to ``lr`` over ``warmup_steps``, then cosine (or constant) decay."""
    if s.schedule == "constant":
        if s.warmup_steps == 0:
            return optax.constant_schedule(s.lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, s.lr, s.warmup_steps), optax.constant_schedule(s.lr)],
            [s.warmup_steps])
    if s.schedule != "cosine":
        raise ValueError(f"schedule.name: unknown {s.schedule!r}; choose one of ('cosine', 'constant')")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=s.lr, warmup_steps=s.warmup_steps,
        decay_steps=max(s.steps, s.warmup_steps + 1), end_value=s.lr * s.end_lr_ratio)


def make_optimizer(model: nnx.Module, s: OptimizerSettings) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax transformation for ``model``'s parameters and the base learning-rate schedule."""
    base_lr = learning_rate(s)

    def recurrent_lr(step):
        return base_lr(step) * s.recurrent_lr_factor

    groups = {
        RECURRENT: optax.adam(recurrent_lr, b1=s.b1, b2=s.b2),
        BASE: optax.adamw(base_lr, b1=s.b1, b2=s.b2, weight_decay=s.weight_decay),
    }
    tx = optax.multi_transform(groups, param_labels(model))
    if s.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(s.grad_clip), tx)
    return tx, base_lr
