"""Optimiser: AdamW with parameter groups, linear warmup then cosine decay.

Two groups exist by default. The LRU paper (Appendix D) trains the recurrent parameters --
the eigenvalue parameters (``nu_log``, ``theta_log``; ``Lambda_re/Lambda_im``, ``nu/theta``
or ``A`` on earlier rungs), ``gamma_log`` and ``B`` -- at ``lr * recurrent_lr_factor``
without weight decay (group ``"recurrent"``), and everything else at ``lr`` with weight
decay (group ``"base"``). Each layer names its recurrent parameters in a
``RECURRENT_PARAMS`` class attribute; :func:`param_labels` reads them, so a new layer
brings its own grouping.

Named groups (:class:`ParamGroup`, ``optimizer.groups`` in the config) override that
default for the parameters they name, each with its own learning-rate factor and weight
decay, as the baselines' run settings need (S5's ``--opt_config`` variants, S4's per-
parameter learning rates). A group names parameters by their leaf name (``"B"``, every
parameter called ``B``) or by a dotted suffix of their path (``"mixer.B"``,
``"blocks.0.mixer.B"``). Every group shares the base schedule's shape.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import optax
from flax import nnx

RECURRENT, BASE = "recurrent", "base"


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """Parameters trained with their own learning-rate factor and weight decay.

    Attributes:
      name: the group's name (``optimizer.groups.<name>``); not ``"recurrent"`` or ``"base"``.
      params: parameter names, each a leaf name (``"log_step"``) or a dotted suffix of a
        parameter's path (``"mixer.B"``); every parameter a name matches joins the group.
      lr_factor: the group trains at ``lr * lr_factor`` (the base schedule, scaled).
      weight_decay: AdamW's decoupled weight decay for the group; ``None`` takes the
        optimizer's ``weight_decay``; ``0`` is plain Adam.
    """

    name: str
    params: tuple[str, ...]
    lr_factor: float = 1.0
    weight_decay: Optional[float] = None

    def __post_init__(self):
        key = f"optimizer.groups.{self.name}"
        if self.name in (RECURRENT, BASE):
            raise ValueError(f"optimizer.groups: the name {self.name!r} is reserved for a default "
                             f"group ({RECURRENT!r}, {BASE!r}); choose another")
        if isinstance(self.params, str) or not self.params:
            raise ValueError(f"{key}.params must be a non-empty list of parameter names; "
                             f"got {self.params!r}")
        for name in self.params:
            if not isinstance(name, str) or "" in name.split("."):
                raise ValueError(f"{key}.params: {name!r} is not a parameter name (a leaf name "
                                 f"such as 'B' or a dotted path suffix such as 'mixer.B')")
        if not self.lr_factor >= 0.0:
            raise ValueError(f"{key}.lr_factor must be >= 0; got {self.lr_factor}")
        if self.weight_decay is not None and not self.weight_decay >= 0.0:
            raise ValueError(f"{key}.weight_decay must be >= 0 or null (the optimizer's "
                             f"weight_decay); got {self.weight_decay}")


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """Attributes mirror ``conf/optimizer`` and ``conf/schedule`` (see :mod:`lru.training.config`)."""

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
    groups: tuple[ParamGroup, ...] = ()


def _is_param(x) -> bool:
    return isinstance(x, nnx.Variable)


def _path(keys) -> tuple:
    """A pytree key path of ``nnx.state`` as the tuple of its keys (strings and ints)."""
    return tuple(k.key for k in keys)


def _matches(path: tuple, name: str) -> bool:
    """Whether ``name`` (a leaf name or dotted suffix) names the parameter at ``path``."""
    suffix = tuple(name.split("."))
    return len(suffix) <= len(path) and tuple(str(k) for k in path[-len(suffix):]) == suffix


def _group_owners(paths: Sequence[tuple], groups: Sequence[ParamGroup]) -> dict[tuple, str]:
    """``{parameter path: group name}`` for every parameter a group names.

    Raises:
      ValueError: a group name appears twice; a name matches no parameter (the message
        lists the model's parameter names); or a parameter is named by two groups.
    """
    owners: dict[tuple, str] = {}
    seen = set()
    for group in groups:
        if group.name in seen:
            raise ValueError(f"optimizer.groups: the group {group.name!r} is given twice")
        seen.add(group.name)
        for name in group.params:
            hits = [p for p in paths if _matches(p, name)]
            if not hits:
                leaves = sorted({str(p[-1]) for p in paths})
                raise ValueError(
                    f"optimizer.groups.{group.name}.params: {name!r} matches no parameter of "
                    f"the model; give a parameter's name or a dotted suffix of its path. The "
                    f"model's parameter names are {leaves}")
            for p in hits:
                other = owners.setdefault(p, group.name)
                if other != group.name:
                    raise ValueError(
                        f"optimizer.groups: the parameter {'.'.join(map(str, p))} is in both "
                        f"{other!r} and {group.name!r}; a parameter may belong to one group")
    return owners


def param_labels(model: nnx.Module, groups: Sequence[ParamGroup] = ()) -> nnx.State:
    """The optimizer group of every ``nnx.Param`` of ``model``.

    A parameter named by one of ``groups`` gets that group's name; otherwise
    ``"recurrent"`` if its layer lists it in ``RECURRENT_PARAMS``, else ``"base"``.

    Returns:
      An ``nnx.State`` shaped like ``nnx.state(model, nnx.Param)`` with a label in place of
      each variable (a prefix of the parameter pytree, as ``optax.multi_transform``
      accepts).

    Raises:
      ValueError: see :func:`_group_owners`.
    """
    recurrent_paths = set()
    for path, node in nnx.iter_graph(model):
        names = getattr(type(node), "RECURRENT_PARAMS", None)
        if isinstance(node, nnx.Module) and names:
            recurrent_paths.update(tuple(path) + (name,) for name in names)
    params = nnx.state(model, nnx.Param)
    paths = [_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_param)[0]]
    owners = _group_owners(paths, groups)

    def label(keys, _):
        path = _path(keys)
        if path in owners:
            return owners[path]
        return RECURRENT if path in recurrent_paths else BASE

    return jax.tree_util.tree_map_with_path(label, params, is_leaf=_is_param)


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


def _scaled(schedule: optax.Schedule, factor: float) -> optax.Schedule:
    return lambda step: schedule(step) * factor


def make_optimizer(model: nnx.Module, s: OptimizerSettings) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax transformation for ``model``'s parameters and the base learning-rate schedule.

    ``"recurrent"``: Adam at ``lr * recurrent_lr_factor``; ``"base"``: AdamW at ``lr`` with
    ``weight_decay``; each of ``s.groups``: AdamW at ``lr * lr_factor`` with its weight decay.
    """
    base_lr = learning_rate(s)
    transforms = {
        RECURRENT: optax.adam(_scaled(base_lr, s.recurrent_lr_factor), b1=s.b1, b2=s.b2),
        BASE: optax.adamw(base_lr, b1=s.b1, b2=s.b2, weight_decay=s.weight_decay),
    }
    for g in s.groups:
        decay = s.weight_decay if g.weight_decay is None else g.weight_decay
        transforms[g.name] = optax.adamw(_scaled(base_lr, g.lr_factor), b1=s.b1, b2=s.b2,
                                         weight_decay=decay)
    tx = optax.multi_transform(transforms, param_labels(model, s.groups))
    if s.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(s.grad_clip), tx)
    return tx, base_lr
