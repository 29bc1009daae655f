"""The official RecurrentGemma Flax parameters <-> this suite's :class:`GriffinLM`.

The official tree (google-deepmind/recurrentgemma, Flax linen; saved by its
``save_parameters`` as ``{"params": tree}`` with orbax's ``PyTreeCheckpointer``) nests dicts
of arrays::

    embedder/input_embedding                                  (v, d)
    blocks.{i}/temporal_pre_norm/scale, channel_pre_norm/scale (d,)
    blocks.{i}/recurrent_block/linear_{x,y}/{kernel (d, r), bias (r,)}
                              /linear_out/{kernel (r, d), bias (d,)}
                              /conv_1d/{w (k, r), b (r,)}
                              /rg_lru/a_param (r,)
                              /rg_lru/{input_gate,a_gate}/{w (g, r/g, r/g), b (g, r/g)}
    blocks.{i}/attention_block/proj_{q (d, d), k (d, e), v (d, e)}/kernel
                              /proj_final/{kernel (d, d), bias (d,)}
    blocks.{i}/mlp_block/ffw_up/{w (2, d, m), b (2, 1, 1, m)}
                        /ffw_down/{kernel (m, d), bias (d,)}
    final_norm/scale                                          (d,)

This suite's modules carry the same names (``blocks.{i}`` becomes ``blocks[i]``); the only
layout change is ``ffw_up/b``, stored here as ``(2, m)``. The configuration is read from the
shapes; what the tree cannot hold (attention window, embedding scaling, logit cap) comes
from a named preset (:data:`lru.griffin.model.PRESETS`) or keyword arguments, which win.
The gates' block count ``g`` gives ``num_gate_blocks`` and the attention's key width ``e``
gives ``num_heads = d / e``; they differ in the Griffin paper's models (``g = 16``) and agree
in the release's (``g = num_heads``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lru.griffin.model import GriffinConfig, GriffinLM, preset as make_preset

Array = jax.Array

#: The hyperparameters an official tree does not hold.
NOT_IN_TREE: tuple[str, ...] = ("attention_window_size", "embeddings_scale_by_sqrt_dim",
                                "logits_soft_cap")


def _unwrap(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """The parameter tree, whether given bare or as Flax variables ``{"params": tree}``."""
    return params["params"] if "params" in params else params


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def _shape(tree: Mapping[str, Any], *keys: str) -> tuple[int, ...]:
    """The shape of ``tree[k0][k1]...``; a missing entry raises naming its path."""
    node = tree
    for i, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"from_recurrentgemma: {'/'.join(keys[:i + 1])} is missing; the "
                             f"tree does not have the official RecurrentGemma layout")
        node = node[key]
    return tuple(int(n) for n in np.shape(node))


def _block_ids(tree: Mapping[str, Any]) -> list[int]:
    ids = sorted(int(k.split(".", 1)[1]) for k in tree if k.startswith("blocks."))
    if ids != list(range(len(ids))) or not ids:
        raise ValueError(f"from_recurrentgemma: expected blocks.0 .. blocks.N-1 in the tree; "
                         f"got {sorted(k for k in tree if k.startswith('blocks'))}")
    return ids


def _tree_shapes(tree: Mapping[str, Any], ids: list[int], width: int) -> dict[str, Any]:
    """Block types, gate blocks, attention heads, RNN and convolution widths of a tree.

    The gate blocks are None without a recurrent block, the heads without an attention one.
    """
    block_types, gate_blocks, heads, lru_width, conv_width = [], set(), set(), None, 4
    for i in ids:
        block = tree[f"blocks.{i}"]
        if "recurrent_block" in block:
            block_types.append("recurrent")
            g, per_block, _ = _shape(tree, f"blocks.{i}", "recurrent_block", "rg_lru", "a_gate",
                                     "w")
            gate_blocks.add(g)
            lru_width = g * per_block
            conv_width = _shape(tree, f"blocks.{i}", "recurrent_block", "conv_1d", "w")[0]
        elif "attention_block" in block:
            block_types.append("attention")
            head_dim = _shape(tree, f"blocks.{i}", "attention_block", "proj_k", "kernel")[1]
            heads.add(width // head_dim)
        else:
            raise ValueError(f"from_recurrentgemma: blocks.{i} has neither recurrent_block nor "
                             f"attention_block; its keys are {sorted(block)}")
    for what, found in (("RG-LRU gate block counts", gate_blocks),
                        ("attention head counts", heads)):
        if len(found) > 1:
            raise ValueError(f"from_recurrentgemma: the blocks have different {what} "
                             f"({sorted(found)}); a GriffinConfig has one for all blocks")
    return dict(block_types=tuple(block_types), lru_width=lru_width,
                conv1d_temporal_width=conv_width, gate_blocks=min(gate_blocks, default=None),
                num_heads=min(heads, default=None))


def _heads_and_gates(width: int, heads: int | None, gates: int | None,
                     reference: GriffinConfig | None) -> tuple[int, int | None]:
    """``(num_heads, num_gate_blocks)``; what the tree lacks comes from the preset.

    A tree without attention blocks (Hawk) holds no head count: the preset's, else the gate
    blocks (the reference's convention) when they divide the width, else 1. One without
    recurrent blocks holds no gate blocks: the preset's, else ``num_heads``.
    """
    if heads is None:
        heads = (reference.num_heads if reference is not None
                 else gates if width % gates == 0 else 1)
    if gates is None:
        gates = reference.gate_blocks if reference is not None else heads
    return heads, None if gates == heads else gates


def config_from_params(params: Mapping[str, Any], preset: str | None = None, *,
                       attention_window_size: int | None = None,
                       embeddings_scale_by_sqrt_dim: bool | None = None,
                       logits_soft_cap: float | None = None) -> GriffinConfig:
    """The :class:`GriffinConfig` of an official parameter tree.

    Widths, attention heads, RG-LRU gate blocks, block types and the convolution width come
    from the shapes (``num_gate_blocks`` is set only where it differs from ``num_heads``).
    The rest comes from ``preset`` (a name of :data:`lru.griffin.model.PRESETS`) unless
    given as a keyword; with a preset, the shapes must agree with it.

    Raises:
      ValueError: a needed hyperparameter is neither in the preset nor given (the message
        names the keyword); the shapes contradict the preset or each other.
    """
    tree = _unwrap(params)
    vocab_size, width = _shape(tree, "embedder", "input_embedding")
    ids = _block_ids(tree)
    mlp = _shape(tree, "blocks.0", "mlp_block", "ffw_up", "w")[-1]
    shapes = _tree_shapes(tree, ids, width)
    block_types = shapes["block_types"]
    reference = None if preset is None else make_preset(preset, vocab_size)
    heads, gates = _heads_and_gates(width, shapes["num_heads"], shapes["gate_blocks"],
                                    reference)
    inferred = dict(vocab_size=vocab_size, width=width, mlp_expanded_width=mlp,
                    num_heads=heads, block_types=block_types, lru_width=shapes["lru_width"],
                    conv1d_temporal_width=shapes["conv1d_temporal_width"],
                    num_gate_blocks=gates)
    given = dict(attention_window_size=attention_window_size,
                 embeddings_scale_by_sqrt_dim=embeddings_scale_by_sqrt_dim,
                 logits_soft_cap=logits_soft_cap)
    defaults: dict[str, Any] = {}
    if reference is not None:
        _check_against_preset(inferred, reference, preset)
        defaults = {k: getattr(reference, k) for k in NOT_IN_TREE}
        # equal in effect (or absent from the tree): spelled as the preset does, so the
        # configurations compare equal
        inferred.update(num_gate_blocks=reference.num_gate_blocks,
                        lru_width=reference.lru_width)
    needed = [k for k in NOT_IN_TREE
              if not (k == "attention_window_size" and "attention" not in block_types)]
    missing = [k for k in needed if given[k] is None and k not in defaults]
    if missing:
        raise ValueError(f"from_recurrentgemma: {missing} are not in the parameter tree; give "
                         f"preset= (one of the names in lru.griffin.PRESETS) or the keyword "
                         f"arguments {missing}")
    hyper = {k: given[k] if given[k] is not None else defaults.get(k) for k in NOT_IN_TREE}
    hyper = {k: v for k, v in hyper.items() if v is not None}
    return GriffinConfig(**inferred, **hyper)


def _check_against_preset(inferred: dict[str, Any], reference: GriffinConfig,
                          preset: str) -> None:
    """Raise naming the first field where the tree's shapes and the preset differ.

    ``num_gate_blocks`` is compared by its effective value (None means ``num_heads``), and
    an ``lru_width`` the tree does not hold (no recurrent block) matches any.
    """
    for key, value in inferred.items():
        expected = getattr(reference, key)
        if key == "num_gate_blocks":
            value, expected = value or inferred["num_heads"], reference.gate_blocks
        elif key == "lru_width":
            if value is None:
                continue
            expected = expected or reference.width
        if value != expected:
            raise ValueError(f"from_recurrentgemma: the parameters do not match preset "
                             f"{preset!r}: {key} is {value} in the tree but {expected} in the "
                             f"preset")


def _to_model_path(key: tuple[str, ...]) -> tuple:
    if key[0].startswith("blocks."):
        return ("blocks", int(key[0].split(".", 1)[1])) + key[1:]
    return key


def _to_official_key(path: tuple) -> tuple[str, ...]:
    if path[0] == "blocks":
        return (f"blocks.{path[1]}",) + tuple(str(p) for p in path[2:])
    return tuple(str(p) for p in path)


def from_recurrentgemma(params: Mapping[str, Any], preset: str | None = None, *,
                        attention_window_size: int | None = None,
                        embeddings_scale_by_sqrt_dim: bool | None = None,
                        logits_soft_cap: float | None = None,
                        scan_method: str = "auto") -> GriffinLM:
    """This suite's :class:`GriffinLM` holding an official RecurrentGemma parameter tree.

    ``model(tokens, segment_pos)`` then gives the reference's logits. The arrays are used
    as given (no copy, their dtype kept); no random weights are drawn on the way.

    Args:
      params: the official tree, bare or as ``{"params": tree}``.
      preset, attention_window_size, embeddings_scale_by_sqrt_dim, logits_soft_cap: the
        hyperparameters the tree does not hold (:func:`config_from_params`).
      scan_method: the RG-LRU's scan method.
    """
    config = config_from_params(params, preset, attention_window_size=attention_window_size,
                                embeddings_scale_by_sqrt_dim=embeddings_scale_by_sqrt_dim,
                                logits_soft_cap=logits_soft_cap)
    abstract = nnx.eval_shape(lambda: GriffinLM(config, scan_method=scan_method,
                                                rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    given = {_to_model_path(k): v for k, v in _flatten(_unwrap(params)).items()}
    expected = dict(nnx.to_flat_state(state))
    unknown = sorted("/".join(_to_official_key(p)) for p in set(given) - set(expected))
    absent = sorted("/".join(_to_official_key(p)) for p in set(expected) - set(given))
    if unknown or absent:
        raise ValueError(f"from_recurrentgemma: the tree does not have the official layout; "
                         f"unexpected {unknown}, missing {absent}")
    filled = []
    for path, variable in expected.items():
        value = jnp.asarray(given[path])
        if path[-2:] == ("ffw_up", "b"):
            value = value.reshape(value.shape[0], -1)  # (2, 1, 1, m) -> (2, m)
        if value.shape != variable.shape:
            raise ValueError(f"from_recurrentgemma: {'/'.join(_to_official_key(path))} has shape "
                             f"{value.shape}; the inferred configuration needs {variable.shape}")
        filled.append((path, variable.replace(value)))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def to_recurrentgemma(model: GriffinLM) -> dict[str, Any]:
    """The official parameter tree (bare, without the ``"params"`` wrapper) of a model."""
    tree: dict[str, Any] = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = variable[...]
        if path[-2:] == ("ffw_up", "b"):
            value = value.reshape(value.shape[0], 1, 1, -1)
        node = tree
        key = _to_official_key(path)
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return tree


def load_recurrentgemma_checkpoint(path: str | Path, preset: str | None = None,
                                   **kwargs) -> GriffinLM:
    """Load an official RecurrentGemma orbax checkpoint directory into a :class:`GriffinLM`.

    The directory is what the release ships (e.g. ``2b/`` of the Kaggle download), written
    by orbax's ``PyTreeCheckpointer`` as ``{"params": tree}``. Keyword arguments are those
    of :func:`from_recurrentgemma` (pass ``preset="recurrentgemma-2b"`` or the three
    hyperparameters).
    """
    import orbax.checkpoint as ocp

    path = Path(path).expanduser().absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"load_recurrentgemma_checkpoint: {path} is not a directory; "
                                f"give the checkpoint folder of the RecurrentGemma release "
                                f"(the one holding its orbax files, e.g. '2b/')")
    restored = ocp.PyTreeCheckpointer().restore(path)
    return from_recurrentgemma(restored, preset, **kwargs)
