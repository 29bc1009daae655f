"""Hawk, Griffin and the MQA Transformer as Long Range Arena classifiers (``model=hawk`` /
``model=griffin`` / ``model=mqa``).

Axis legend: ``b`` batch, ``t`` time, ``d`` width (``model.d_model``), ``c`` classes.

The backbone is the language model's stack without its language-model ends: the harness's
:class:`lru.models.Encoder` (token embedding or a linear map of real inputs), Griffin
residual blocks (:class:`lru.griffin.blocks.ResidualBlock`; Hawk: all recurrent, Griffin:
recurrent, recurrent, attention), a final RMSNorm and the harness's masked pooling
(:func:`lru.models.pool`; ``"none"`` keeps every step, for a head at each position). The
heads are the harness's: :class:`GriffinClassifier` is :class:`lru.models.Classifier` and
:class:`GriffinDualClassifier` is :class:`lru.models.DualClassifier` (Retrieval) with this backbone in place of theirs.

Padding: rows are right-padded to a common length with their true ``lengths``. Every block
is causal, so padding after a row's end never reaches its valid steps, and the pooling
skips it. A bidirectional model adds, in every residual block, a second temporal block
that reads each row's valid steps backwards (padding stays at the end), so padding never
reaches it either. Each row is one document (positions ``0 .. t - 1``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lru.choices import check_choice
from lru.griffin.blocks import ResidualBlock, RMSNorm
from lru.griffin.model import griffin_pattern, hawk_pattern, mqa_pattern
from lru.blocks import length_mask
from lru.models import POOLINGS, Classifier, DualClassifier, Encoder, pool

Array = jax.Array

#: The block patterns of ``model.layer`` (MQA: all attention, global when its window covers
#: the sequence).
PATTERNS = {"hawk": hawk_pattern, "griffin": griffin_pattern, "mqa": mqa_pattern}


class GriffinBackbone(nnx.Module):
    """Encoder, Hawk/Griffin residual blocks, final RMSNorm, pooling: ``(b, t[, i]) -> (b, d)``
    (``(b, t, d)`` with ``pooling="none"``).

    Args:
      d_model: width ``d``.
      d_state: the RG-LRU's width ``D_RNN`` (``lru_width``); unread by MQA (no recurrence).
      n_layers: residual blocks.
      pattern: ``"hawk"``, ``"griffin"`` or ``"mqa"`` (:data:`PATTERNS`).
      num_heads: attention heads and RG-LRU gate blocks (dividing ``d`` and ``D_RNN``).
      mlp_expansion: the GeGLU MLP's expansion factor (3 in Griffin).
      attention_window: the attention's window (Griffin, MQA); MQA's attention is global
        when it is at least the sequence length (the harness sees to it,
        :func:`lru.training.registry.global_window`).
      conv1d_temporal_width: the recurrent block's convolution width (4).
      complex: the CG-LRU (Griffin paper's App. B) in place of the RG-LRU.
      scan_method: the RG-LRU's scan method.
      vocab_size / d_input: token or real inputs (:class:`lru.models.Encoder`).
      pooling: ``"mean"``, ``"last"`` or ``"none"`` (every step, after the final RMSNorm).
      dropout: dropout on each residual branch (0 in Griffin).
      bidirectional: add a right-to-left temporal block to every residual block.
      rngs: RNG streams.
    """

    def __init__(self, d_model: int, d_state: int, n_layers: int, *, pattern: str,
                 num_heads: int = 4, mlp_expansion: int = 3, attention_window: int = 128,
                 conv1d_temporal_width: int = 4, complex: bool = False,
                 scan_method: str = "auto", vocab_size: int | None = None,
                 d_input: int | None = None, pooling: str = "mean", dropout: float = 0.0,
                 bidirectional: bool = False, rngs: nnx.Rngs):
        check_choice("pattern", pattern, PATTERNS)
        check_choice("pooling", pooling, POOLINGS)
        kinds = PATTERNS[pattern](n_layers)
        if d_model % num_heads or ("recurrent" in kinds and d_state % num_heads):
            raise ValueError(f"GriffinBackbone: num_heads={num_heads} must divide d_model="
                             f"{d_model} and, with recurrent blocks, d_state={d_state} (the "
                             f"RNN width); set model.layer_options.num_heads to a common "
                             f"divisor")
        self.encoder = Encoder(d_model, vocab_size=vocab_size, d_input=d_input, rngs=rngs)
        self.blocks = nnx.List([
            ResidualBlock(d_model, kind, num_heads=num_heads,
                          mlp_expanded_width=mlp_expansion * d_model, lru_width=d_state,
                          attention_window=attention_window,
                          conv1d_temporal_width=conv1d_temporal_width,
                          final_w_init_variance_scale=2.0 / n_layers, complex=complex,
                          scan_method=scan_method, dropout=dropout,
                          bidirectional=bidirectional, rngs=rngs)
            for kind in kinds])
        self.final_norm = RMSNorm(d_model)
        self.pooling = pooling

    def __call__(self, inputs: Array, lengths: Array | None = None) -> Array:
        """``inputs (b, t)`` tokens or ``(b, t[, i])`` reals, ``lengths (b,)`` -> ``(b, d)``
        (``(b, t, d)`` with ``pooling="none"``)."""
        x = self.encoder(inputs)
        segment_pos = jnp.broadcast_to(jnp.arange(x.shape[1], dtype=jnp.int32), x.shape[:2])
        for block in self.blocks:
            x, _ = block(x, segment_pos, reverse_lengths=lengths)
        return pool(self.final_norm(x), length_mask(lengths, x.shape[1]), self.pooling)


class GriffinClassifier(Classifier):
    """:class:`lru.models.Classifier` on a :class:`GriffinBackbone`: ``(inputs, lengths) ->
    logits (b, c)`` (``(b, t, c)``, the head at every step, with ``pooling="none"``).
    Arguments as :class:`GriffinBackbone`, plus ``n_classes``."""

    def __init__(self, d_model: int, d_state: int, n_layers: int, n_classes: int, *,
                 rngs: nnx.Rngs, **backbone_kwargs):
        self.backbone = GriffinBackbone(d_model, d_state, n_layers, rngs=rngs, **backbone_kwargs)
        self.head = nnx.Linear(d_model, n_classes, rngs=rngs)


class GriffinDualClassifier(DualClassifier):
    """:class:`lru.models.DualClassifier` (LRA Retrieval) on a :class:`GriffinBackbone`:
    ``(inputs1, lengths1, inputs2, lengths2) -> logits (b, c)``."""

    def __init__(self, d_model: int, d_state: int, n_layers: int, n_classes: int, *,
                 rngs: nnx.Rngs, **backbone_kwargs):
        self.backbone = GriffinBackbone(d_model, d_state, n_layers, rngs=rngs, **backbone_kwargs)
        self.hidden = nnx.Linear(4 * d_model, d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, n_classes, rngs=rngs)
