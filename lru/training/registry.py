"""The layer registry: which ``model.layer`` builds what, and the model a config describes.

Adding a layer: one file in :mod:`lru.layers`, one entry in :data:`LAYERS`, one YAML in
``conf/model/``. Its constructor's keyword arguments are its ``model.layer_options``
(checked against the signature, so a misspelt option names itself); the run settings it
accepts (:data:`LAYER_SETTINGS`, ``precision``, ``l_max``) are passed when it takes them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from typing import Any

from flax import nnx
from omegaconf import DictConfig, OmegaConf

import tasks
from lru.griffin.classifier import GriffinBackbone, GriffinClassifier, GriffinDualClassifier
from lru.ladder import uses_ring
from lru.layers import LRU, S4, S4D, S5, RGLRULayer
from lru.layers.lru import UNIT_DISK
from lru.models import Classifier, DualClassifier

#: Sequence layers selectable as ``model.layer``: mixers inside the harness's residual block,
#: or whole backbones with their own residual blocks (:data:`BACKBONES`).
LAYERS = {"lru": LRU, "rg_lru": RGLRULayer, "s4": S4, "s4d": S4D, "s5": S5,
          "hawk": GriffinBackbone, "griffin": GriffinBackbone, "mqa": GriffinBackbone}
#: ``model.layer`` values that are whole backbones (Hawk/Griffin/MQA, lru.griffin.classifier).
BACKBONES = ("hawk", "griffin", "mqa")
#: Arguments a backbone takes from the model config's own keys, not from layer_options.
BACKBONE_ARGS = {"self", "d_model", "d_state", "n_layers", "pattern", "scan_method",
                 "vocab_size", "d_input", "pooling", "dropout", "bidirectional", "rngs"}
#: Keys of the harness's residual block, which Hawk/Griffin's own blocks do not read.
HARNESS_BLOCK_KEYS = ("norm", "bn_momentum", "prenorm", "glu")
#: The LRU's ring settings (``model.*``), read by the rungs with ring initialisation.
RING_KEYS = ("model.r_min", "model.r_max", "model.max_phase")
#: Run settings handed to the layers whose constructors take them (config key -> argument).
LAYER_SETTINGS = {"model.scan_method": "scan_method", "trainer.recompute_states": "recompute_states"}


def make_mixer(cfg: DictConfig, meta: tasks.TaskMeta) -> functools.partial:
    """``mixer(rngs=...)`` building one sequence layer of ``cfg.model``.

    The LRU takes its rung (``cfg.ablation.rung``) and ring from ``cfg.model``; every layer
    that has them takes ``model.scan_method``, ``trainer.precision`` and
    ``trainer.recompute_states``; otherwise a layer takes ``cfg.model.layer_options`` as
    keyword arguments, checked against its constructor so that a misspelt option names
    itself. A layer whose kernel depends on a maximum length (S4's ``l_max``) gets the
    task's unless the options set it, so that padding never changes an output.
    """
    m = cfg.model
    layer = LAYERS[m.layer]
    options = layer_options(m, {"self", "d_model", "d_state", "bidirectional", "rngs",
                                "precision", "recompute_states"})
    accepted = set(inspect.signature(layer.__init__).parameters)
    if "precision" in accepted:  # the layer's own matmuls follow trainer.precision
        options["precision"] = cfg.trainer.precision
    if "recompute_states" in accepted:  # a memory setting of the run, like precision
        options["recompute_states"] = cfg.trainer.recompute_states
    if "l_max" in accepted and options.get("l_max") is None:
        options["l_max"] = meta.max_length
    if "scan_method" in accepted:  # layer_options may still name one for this layer alone
        options = {"scan_method": m.scan_method, **options}
    if m.layer == "lru":
        ring = (m.r_min, m.r_max, m.max_phase)
        if not uses_ring(m.layer, cfg.ablation.rung):
            ring = (0.0, 1.0, UNIT_DISK[2])  # rungs before 'ring' initialise on the unit disk
        options = {"r_min": ring[0], "r_max": ring[1], "max_phase": ring[2],
                   "rung": cfg.ablation.rung, **options}
    return functools.partial(layer, m.d_model, m.d_state, bidirectional=m.bidirectional,
                             **options)


def layer_options(m: DictConfig, fixed: set[str]) -> dict[str, Any]:
    """``m.layer_options`` as a dict, checked against ``LAYERS[m.layer]``'s constructor.

    ``fixed``: constructor arguments that come from elsewhere, never from the options.
    """
    options = OmegaConf.to_container(m.layer_options, resolve=True)
    allowed = sorted(set(inspect.signature(LAYERS[m.layer].__init__).parameters) - fixed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"model.layer_options: {unknown} are not options of "
                         f"model.layer={m.layer!r}; its options are {allowed}")
    return options


def global_window(window: int | None, meta: tasks.TaskMeta, length: int | None = None) -> int:
    """The attention window of ``model=mqa``, whose attention is global over the task.

    A query sees itself and the ``window`` tokens before it, and every batch is padded to at
    most the task's ``max_length`` (:func:`lru.training.batching.bucket_length`), so a window
    of ``max_length`` lets every token see all the tokens before it.

    Args:
      window: ``model.layer_options.attention_window``; None: ``length``.
      meta: the task's metadata.
      length: the longest sequence the model will read (default the task's ``max_length``;
        longer for a trained model evaluated at other lengths). A given ``window`` is kept
        as it is, checked against the task's ``max_length`` only: beyond it, a model trained
        with a window of its own attends locally.

    Raises:
      ValueError: a given window shorter than ``max_length``, naming the key.
    """
    if window is None:
        return meta.max_length if length is None else length
    if window < meta.max_length:
        raise ValueError(f"model.layer_options.attention_window={window} is shorter than the "
                         f"task's max_length={meta.max_length}: model=mqa is global attention, "
                         f"whose window must cover the sequence. Leave it null (it becomes "
                         f"max_length), set it to at least {meta.max_length}, or use "
                         f"model=griffin for local attention")
    return window


def build_backbone_model(cfg: DictConfig, meta: tasks.TaskMeta,
                         length: int | None = None) -> nnx.Module:
    """A Hawk, Griffin or MQA classifier (``model.layer`` in :data:`BACKBONES`).

    ``model.d_state`` is the RG-LRU's width (``D_RNN``); ``layer_options`` are the
    backbone's (heads, MLP expansion, attention window, ...); MQA's window covers the task's
    sequences, or ``length`` (:func:`global_window`).
    """
    m = cfg.model
    if cfg.trainer.precision != "fp32":
        raise ValueError(f"trainer.precision={cfg.trainer.precision!r} is not implemented for "
                         f"model.layer={m.layer!r} (its Griffin blocks compute in float32); use "
                         f"trainer.precision=fp32, or a layer that takes it (lru, s5)")
    options = layer_options(m, BACKBONE_ARGS)
    if m.layer == "mqa":
        options["attention_window"] = global_window(options.get("attention_window"), meta,
                                                    length)
    inputs = {"vocab_size": meta.vocab_size} if meta.vocab_size else {"d_input": meta.channels}
    cls = GriffinDualClassifier if meta.dual else GriffinClassifier
    return cls(m.d_model, m.d_state, m.n_layers, meta.n_classes, pattern=m.layer,
               scan_method=m.scan_method, pooling=m.pooling, dropout=m.dropout,
               bidirectional=m.bidirectional, rngs=nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1),
               **inputs, **options)


def build_model(cfg: DictConfig, meta: tasks.TaskMeta, *, length: int | None = None) -> nnx.Module:
    """The classifier ``cfg.model`` describes, with the rung ``cfg.ablation.rung`` (LRU).

    Args:
      cfg: the composed config.
      meta: the task's metadata.
      length: the longest sequence the model will read, when not the task's ``max_length``
        (a trained model evaluated at other lengths, :mod:`ablations.extrapolate`): MQA's
        automatic window follows it (:func:`global_window`). S4's ``l_max`` stays the
        task's, since its stored ``C~`` is folded at ``l_max``:
        :func:`lru.training.restore.load_model` refolds a model's S4 layers for longer
        sequences.
    """
    m = cfg.model
    if m.layer in BACKBONES:
        return build_backbone_model(cfg, meta, length)
    mixer = make_mixer(cfg, meta)
    inputs = {"vocab_size": meta.vocab_size} if meta.vocab_size else {"d_input": meta.channels}
    cls = DualClassifier if meta.dual else Classifier
    return cls(m.d_model, m.n_layers, meta.n_classes, mixer, pooling=m.pooling, norm=m.norm,
               bn_momentum=m.bn_momentum, prenorm=m.prenorm, glu=m.glu, dropout=m.dropout,
               precision=cfg.trainer.precision,
               rngs=nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1), **inputs)


def ignored_settings(cfg: DictConfig) -> dict[str, str]:
    """The settings of ``cfg`` that the chosen model (and rung) does not read, with why.

    Each is a dotted key (``model.r_min``) mapped to a sentence saying why it is unused.
    ``ablation.rung`` counts only for ``model.layer=lru``; the ring (:data:`RING_KEYS`) only
    for the rungs with ring initialisation (``ring`` and ``lru``); ``model.scan_method`` and
    ``trainer.recompute_states`` only for layers that take them; the harness's residual-block
    keys (:data:`HARNESS_BLOCK_KEYS`) not for Hawk, Griffin and MQA, whose blocks are
    Griffin's; ``model.d_state`` not for MQA, which has no recurrence.

    One protocol gives the same file settings to every model of a sweep, so a setting that a
    model does not read is refused only where it is given for the run (:func:`check_given`).
    """
    m = cfg.model
    ignored = {}
    if m.layer in BACKBONES:
        for key in HARNESS_BLOCK_KEYS:
            ignored[f"model.{key}"] = (f"model.layer={m.layer!r} has Griffin's residual blocks "
                                       f"(RMSNorm, GeGLU MLP), which do not read it")
    if m.layer == "mqa":
        ignored["model.d_state"] = ("model.layer='mqa' is all attention: it has no recurrence "
                                    "whose width d_state would set")
    if m.layer != "lru":
        ignored["ablation.rung"] = (f"the ladder's rungs are the LRU's, and "
                                    f"model.layer={m.layer!r} has none")
        for key in RING_KEYS:
            ignored[key] = (f"the ring is the LRU's; model.layer={m.layer!r} takes its own "
                            f"initialisation from model.layer_options")
    elif not uses_ring(m.layer, cfg.ablation.rung):
        for key in RING_KEYS:
            ignored[key] = (f"rung {cfg.ablation.rung!r} initialises on the unit disk; the ring "
                            f"settings apply from rung 'ring' on")
    accepted = set(inspect.signature(LAYERS[m.layer].__init__).parameters)
    for key, argument in LAYER_SETTINGS.items():
        if argument not in accepted:
            ignored[key] = f"model.layer={m.layer!r} has no {argument!r} option"
    return ignored


def check_given(cfg: DictConfig, overrides: Iterable[str]) -> None:
    """Refuse settings given explicitly (command line, sweep) that the run would not read.

    Args:
      cfg: the composed config.
      overrides: the job's overrides as Hydra gives them (``model.r_min=0.5``,
        ``+model.r_min=0.5``, or ``ablation=exp`` for the group, meaning ``ablation.rung``).

    Raises:
      ValueError: naming each such key, the model/rung and why (:func:`ignored_settings`).
    """
    ignored = ignored_settings(cfg)
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    keys = {"ablation.rung" if k == "ablation" else k for k in keys}
    unused = [f"{k} ({ignored[k]})" for k in sorted(keys) if k in ignored]
    if unused:
        raise ValueError(f"settings given that this run would ignore: {'; '.join(unused)}. "
                         f"Drop them (an ablation sweep passes ring settings to the ring rungs "
                         f"only: python -m ablations run ladder)")
