"""Sequence models around the layers: encoder -> residual blocks -> pooling -> head.

Axis legend: ``b`` batch, ``t`` time, ``d`` model width, ``c`` classes.

Inputs arrive padded to a common length with their true ``lengths``; the models turn
lengths into a mask that keeps padding out of every prediction (the recurrence's inputs,
BatchNorm's batch statistics and the pooling all skip padded steps).

Pooling ``"none"`` keeps every step: the head is then applied at each step and the model
returns ``(b, t, c)`` logits, one prediction per position (per-token tasks). The prediction
at step ``i`` reads steps ``<= i`` only when every layer is causal (no bidirectional layer,
no training-mode BatchNorm, whose batch statistics mix all steps); the harness checks that
(:mod:`lru.training.task_rules`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lru.choices import check_choice
from lru.blocks import MixerFactory, length_mask, stack_blocks
from lru.precision import dot_general

Array = jax.Array

#: The pooling that keeps every step ``(b, t, d)``, for a head at each position.
PER_STEP = "none"
#: ``mean`` and ``last`` pool ``(b, t, d) -> (b, d)``; :data:`PER_STEP` keeps ``(b, t, d)``.
POOLINGS: tuple[str, ...] = ("mean", "last", PER_STEP)


class Encoder(nnx.Module):
    """Token embedding (``vocab_size`` given) or a linear map of real inputs (``d_input``).

    Token inputs are integer ``(b, t)``; real inputs are ``(b, t, d_input)`` (a ``(b, t)``
    array of reals, e.g. grayscale pixels, is read as ``d_input = 1``).
    """

    def __init__(self, d_model: int, *, vocab_size: int | None = None,
                 d_input: int | None = None, precision: str = "fp32", rngs: nnx.Rngs):
        if (vocab_size is None) == (d_input is None):
            raise ValueError("Encoder: give exactly one of vocab_size (tokens) or d_input (reals)")
        self.tokens = vocab_size is not None
        if self.tokens:
            self.embed = nnx.Embed(vocab_size, d_model, rngs=rngs)
        else:
            self.embed = nnx.Linear(d_input, d_model, dot_general=dot_general(precision),
                                    rngs=rngs)

    def __call__(self, inputs: Array) -> Array:
        if self.tokens:
            return self.embed(inputs)
        x = jnp.asarray(inputs, jnp.float32)
        return self.embed(x[..., None] if x.ndim == 2 else x)


def pool(x: Array, mask: Array | None, how: str) -> Array:
    """Pool ``(b, t, d)`` over valid steps to ``(b, d)``: their mean, or the last one; or,
    for ``how="none"``, return ``x`` itself ``(b, t, d)`` (padded steps' features included:
    a per-token task scores none of them)."""
    check_choice("pooling", how, POOLINGS)
    if how == PER_STEP:
        return x
    if mask is None:
        return x.mean(axis=1) if how == "mean" else x[:, -1]
    if how == "mean":
        return jnp.sum(jnp.where(mask[..., None], x, 0), axis=1) / jnp.maximum(
            mask.sum(axis=1, keepdims=True), 1)
    last = jnp.maximum(mask.sum(axis=1) - 1, 0)
    return jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]


class SequenceEncoder(nnx.Module):
    """Encoder and residual blocks, then pooling: ``inputs (b, t[, d_in]) -> (b, d)``, or
    ``(b, t, d)`` with ``pooling="none"``.

    Args:
      d_model: width ``d`` of every block.
      n_layers: number of residual blocks.
      mixer: called as ``mixer(rngs=rngs)`` once per block (e.g. ``functools.partial(LRU,
        d_model, d_state, rung="lru")``).
      vocab_size / d_input: token or real inputs (see :class:`Encoder`).
      pooling: ``"mean"`` (over valid steps), ``"last"`` (the last valid step) or
        ``"none"`` (every step).
      precision: ``"fp32"``, or ``"bf16"`` matmuls with float32 accumulation
        (:mod:`lru.precision`) in the encoder and every block.
      **block_kwargs: ``norm``, ``bn_momentum``, ``prenorm``, ``glu``, ``dropout`` of
        :class:`lru.blocks.ResidualBlock`.
    """

    def __init__(self, d_model: int, n_layers: int, mixer: MixerFactory, *,
                 vocab_size: int | None = None, d_input: int | None = None,
                 pooling: str = "mean", precision: str = "fp32", rngs: nnx.Rngs,
                 **block_kwargs):
        check_choice("pooling", pooling, POOLINGS)
        self.encoder = Encoder(d_model, vocab_size=vocab_size, d_input=d_input,
                               precision=precision, rngs=rngs)
        self.blocks = stack_blocks(d_model, n_layers, mixer, rngs=rngs, precision=precision,
                                   **block_kwargs)
        self.pooling = pooling

    def sequence(self, inputs: Array, lengths: Array | None = None) -> tuple[Array, Array | None]:
        """Per-step features ``(b, t, d)`` and the ``(b, t)`` mask (None without lengths)."""
        with jax.named_scope("encoder"):  # named scopes label profiles (bench/profile_step.py)
            x = self.encoder(inputs)
        mask = length_mask(lengths, x.shape[1])
        for block in self.blocks:
            x = block(x, mask)
        return x, mask

    def __call__(self, inputs: Array, lengths: Array | None = None) -> Array:
        x, mask = self.sequence(inputs, lengths)
        with jax.named_scope("pool"):
            return pool(x, mask, self.pooling)


class Classifier(nnx.Module):
    """Sequence classifier: :class:`SequenceEncoder` then a linear head to ``c`` logits.

    ``model(inputs, lengths) -> logits (b, c)``, or ``(b, t, c)`` with ``pooling="none"``
    (the same head at every step); ``lengths`` ``(b,)`` gives each example's true length
    (None: all steps are valid). Arguments as :class:`SequenceEncoder`, plus ``n_classes``.
    """

    def __init__(self, d_model: int, n_layers: int, n_classes: int, mixer: MixerFactory, *,
                 precision: str = "fp32", rngs: nnx.Rngs, **encoder_kwargs):
        self.backbone = SequenceEncoder(d_model, n_layers, mixer, precision=precision, rngs=rngs,
                                        **encoder_kwargs)
        self.head = nnx.Linear(d_model, n_classes, dot_general=dot_general(precision), rngs=rngs)

    def __call__(self, inputs: Array, lengths: Array | None = None) -> Array:
        x = self.backbone(inputs, lengths)
        with jax.named_scope("head"):
            return self.head(x)


def _pad_time(x: Array, time: int) -> Array:
    widths = [(0, 0)] * x.ndim
    widths[1] = (0, time - x.shape[1])
    return jnp.pad(x, widths)


class DualClassifier(nnx.Module):
    """Two-document classifier for LRA Retrieval (Tay et al. 2021; S4/S5's head).

    Both documents go through the same :class:`SequenceEncoder`; the pooled features
    ``u``, ``v`` are combined as ``[u, v, u * v, u - v]`` ``(b, 4d)`` and classified by an
    MLP (linear ``4d -> d``, GELU, linear ``d -> c``).

    ``model(inputs1, lengths1, inputs2, lengths2) -> logits (b, c)``.
    """

    def __init__(self, d_model: int, n_layers: int, n_classes: int, mixer: MixerFactory, *,
                 precision: str = "fp32", rngs: nnx.Rngs, **encoder_kwargs):
        self.backbone = SequenceEncoder(d_model, n_layers, mixer, precision=precision, rngs=rngs,
                                        **encoder_kwargs)
        self.hidden = nnx.Linear(4 * d_model, d_model, dot_general=dot_general(precision),
                                 rngs=rngs)
        self.head = nnx.Linear(d_model, n_classes, dot_general=dot_general(precision), rngs=rngs)

    def __call__(self, inputs1: Array, lengths1: Array | None, inputs2: Array,
                 lengths2: Array | None) -> Array:
        # One pass over both documents (as S5 does), so BatchNorm sees them as one batch.
        batch, t1, t2 = inputs1.shape[0], inputs1.shape[1], inputs2.shape[1]
        time = max(t1, t2)
        lengths1 = jnp.full((batch,), t1) if lengths1 is None else lengths1
        lengths2 = jnp.full((batch,), t2) if lengths2 is None else lengths2
        docs = jnp.concatenate([_pad_time(inputs1, time), _pad_time(inputs2, time)], axis=0)
        pooled = self.backbone(docs, jnp.concatenate([lengths1, lengths2], axis=0))
        u, v = pooled[:batch], pooled[batch:]
        features = jnp.concatenate([u, v, u * v, u - v], axis=-1)
        return self.head(jax.nn.gelu(self.hidden(features)))
