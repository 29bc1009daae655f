"""The Griffin/Hawk causal language model in its RecurrentGemma form, with presets.

Axis legend: ``b`` batch, ``t`` time, ``d`` width, ``v`` vocabulary.

Facts from the reference (google-deepmind/recurrentgemma: ``recurrentgemma/jax/griffin.py``,
``modules.py`` ``Embedder``, ``common.py`` ``Preset``/``GriffinConfig``)::

    x = E[tokens] * bf16(sqrt(d))          if embeddings_scale_by_sqrt_dim
    x = ResidualBlock_i(x)                 i = 0 .. n_layers - 1 (recurrent or attention)
    logits = RMSNorm(x) E^T                tied embedding E (v, d)
    logits = c tanh(logits / c)            if logits_soft_cap c > 0 (30 in RecurrentGemma)

``sqrt(d)`` is rounded to bfloat16 before the product, as the reference does "to match
training" (``sqrt(2560) = 50.596`` becomes 50.5). Hawk's blocks are all recurrent; Griffin's
repeat (recurrent, recurrent, attention); the MQA Transformer baseline's (the paper's §3)
are all attention, with a window covering the sequence (:func:`mqa_pattern`).

Presets (:data:`PRESETS`):

* the reference's four: ``recurrentgemma-2b``, ``recurrentgemma-9b``, and
  ``griffin-paper-7b``, ``hawk-paper-7b`` (its ``GRIFFIN_PAPER_7B`` / ``HAWK_PAPER_7B``, the
  paper's 7B shapes as the release configures them: one RG-LRU gate block per attention
  head, 32);
* the Griffin paper's sizes (De et al. 2024, arXiv 2402.19427; stored copy of the paper
  text): ``hawk-{100m,200m,400m,1b,3b,7b}`` and ``griffin-{100m,200m,400m,1b,3b,7b,14b}``.
  Widths, depth and heads are Appendix C, Table 2 (MLP expansion 3, head dimension 128,
  §2.3); the RG-LRU's input and recurrence gates have 16 diagonal blocks, as §4.1 states
  for every experiment of the paper (``num_gate_blocks=16``; the release's one block per
  head could not be built for most rows, where 6, 12, 24, 40 heads do not divide the RNN
  widths 1024, 2048, 4096, 8192). Local-attention window 1024 (§3), no embedding scaling
  and no logit cap (as the release's paper-7B presets). The ``1b`` models are Table 2's
  1.3B row (Table 1 calls them 1B); Hawk was not trained at 14B (§3.1).
  :data:`PAPER_SIZES` holds the published size of each; their non-embedding counts match
  it (``tests/test_griffin_lm.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lru.griffin.blocks import BLOCK_TYPES, ResidualBlock, RMSNorm

Array = jax.Array


def griffin_pattern(n_layers: int) -> tuple[str, ...]:
    """Griffin's temporal blocks: (recurrent, recurrent, attention) repeated, cut at ``n``."""
    return tuple(itertools.islice(itertools.cycle(("recurrent", "recurrent", "attention")),
                                  n_layers))


def hawk_pattern(n_layers: int) -> tuple[str, ...]:
    """Hawk's temporal blocks: all recurrent."""
    return ("recurrent",) * n_layers


def mqa_pattern(n_layers: int) -> tuple[str, ...]:
    """The MQA Transformer baseline's temporal blocks (the Griffin paper's §3): all attention.

    Global attention when the window covers the sequence (``attention_window_size`` at least
    the longest sequence; the cache then holds every key and value, as a Transformer's).
    """
    return ("attention",) * n_layers


@dataclasses.dataclass(frozen=True)
class GriffinConfig:
    """A Griffin/Hawk language model (the reference's ``GriffinConfig``).

    Attributes:
      vocab_size: ``v``.
      width: ``d``.
      mlp_expanded_width: the GeGLU MLP's hidden width (``3 d`` in every preset).
      num_heads: attention heads (dividing ``d``), and diagonal blocks of the RG-LRU's
        gates unless ``num_gate_blocks`` is given.
      block_types: ``"recurrent"`` / ``"attention"`` per residual block.
      lru_width: the RG-LRU's width ``D_RNN`` (None: ``width``).
      attention_window_size: the local attention's window.
      embeddings_scale_by_sqrt_dim: multiply the embeddings by ``bf16(sqrt(d))``.
      logits_soft_cap: ``c`` of ``c tanh(logits / c)``; 0 disables it.
      conv1d_temporal_width: the recurrent block's convolution width (4).
      num_gate_blocks: diagonal blocks of the RG-LRU's input and recurrence gates, dividing
        ``lru_width``; None: ``num_heads`` (the reference's convention). The Griffin paper
        uses 16 in every model (its §4.1).
    """

    vocab_size: int
    width: int
    mlp_expanded_width: int
    num_heads: int
    block_types: tuple[str, ...]
    lru_width: int | None = None
    attention_window_size: int = 2048
    embeddings_scale_by_sqrt_dim: bool = True
    logits_soft_cap: float = 30.0
    conv1d_temporal_width: int = 4
    num_gate_blocks: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "block_types", tuple(self.block_types))
        bad = sorted(set(self.block_types) - set(BLOCK_TYPES))
        if bad or not self.block_types:
            raise ValueError(f"GriffinConfig: block_types must be a non-empty sequence of "
                             f"{BLOCK_TYPES}; got {self.block_types}")
        if self.num_heads < 1 or self.width % self.num_heads:
            raise ValueError(f"GriffinConfig: num_heads={self.num_heads} must divide width="
                             f"{self.width}")
        r = self.lru_width or self.width
        if self.num_gate_blocks is None and r % self.num_heads:
            raise ValueError(f"GriffinConfig: num_heads={self.num_heads} must divide lru_width="
                             f"{r}, since it also sets the RG-LRU gate blocks while "
                             f"num_gate_blocks is None; or set num_gate_blocks to a divisor "
                             f"of lru_width (the Griffin paper uses 16)")
        if self.num_gate_blocks is not None and (self.num_gate_blocks < 1
                                                 or r % self.num_gate_blocks):
            raise ValueError(f"GriffinConfig: num_gate_blocks={self.num_gate_blocks} must be a "
                             f"positive divisor of lru_width={r}")

    @property
    def num_layers(self) -> int:
        return len(self.block_types)

    @property
    def gate_blocks(self) -> int:
        """Diagonal blocks of the RG-LRU's gates: ``num_gate_blocks``, else ``num_heads``."""
        return self.num_gate_blocks or self.num_heads


def _preset(width, heads, lru_width, n_layers, pattern, *, scaled, window, cap,
            gate_blocks=None):
    def make(vocab_size: int = 256_000) -> GriffinConfig:
        return GriffinConfig(vocab_size=vocab_size, width=width, mlp_expanded_width=3 * width,
                             num_heads=heads, block_types=pattern(n_layers), lru_width=lru_width,
                             attention_window_size=window, embeddings_scale_by_sqrt_dim=scaled,
                             logits_soft_cap=cap, num_gate_blocks=gate_blocks)
    return make


class PaperSize(NamedTuple):
    """A model size as the Griffin paper prints it.

    Attributes:
      label: as printed (``"100M"``, ``"1B"``).
      params: the number the label states.
      tolerance: half a unit of the label's last significant digit: a count rounds to the
        label within it (``"100M"``: 50M; ``"14B"``: 0.5B).
      source: where the paper prints it.
    """

    label: str
    params: float
    tolerance: float
    source: str


#: The Griffin paper's (De et al. 2024, arXiv 2402.19427) model shapes, Appendix C, Table 2:
#: ``size -> (width D, RNN width D_RNN, depth N, attention heads)``; MLP expansion M = 3 in
#: every row, head dimension D / heads = 128 (§2.3). The paper's RG-LRU gates have 16
#: diagonal blocks in every experiment (§4.1: "W_x and W_a each have D_RNN^2/16 parameters").
PAPER_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "100m": (768, 1024, 12, 6),
    "200m": (1024, 1536, 12, 8),
    "400m": (1536, 2048, 12, 12),
    "1b": (2048, 2560, 24, 16),  # Table 2's "1.3B" row; Table 1 names these models 1B
    "3b": (3072, 4096, 24, 24),
    "7b": (4096, 5632, 32, 32),
    "14b": (5120, 8192, 40, 40),
}
#: The RG-LRU gate blocks of every model in the Griffin paper (§4.1).
PAPER_GATE_BLOCKS = 16

_M, _B = 1e6, 1e9
#: ``preset name -> PaperSize``: the published size of each paper preset, non-embedding
#: (the paper does not state its vocabulary). Table 2's "Model Size" column for 100M-400M;
#: Table 1's model names (Hawk 1B/3B/7B, Griffin 1B/3B/7B/14B) for the trained models, whose
#: "1B" is Table 2's 1.3B row; §3.1: every family from 100M to 7B, one Griffin at 14B.
PAPER_SIZES: dict[str, PaperSize] = {
    f"{family}-{size}": PaperSize(label, value, tol, source)
    for family in ("hawk", "griffin")
    for size, label, value, tol, source in (
        ("100m", "100M", 100 * _M, 50 * _M, "Table 2"),
        ("200m", "200M", 200 * _M, 50 * _M, "Table 2"),
        ("400m", "400M", 400 * _M, 50 * _M, "Table 2"),
        ("1b", "1B", 1 * _B, 0.5 * _B, "Table 1 (Table 2: 1.3B)"),
        ("3b", "3B", 3 * _B, 0.5 * _B, "Tables 1, 2"),
        ("7b", "7B", 7 * _B, 0.5 * _B, "Tables 1, 2"),
        ("14b", "14B", 14 * _B, 0.5 * _B, "Tables 1, 2"))
    if not (family == "hawk" and size == "14b")  # §3.1: only Griffin was trained at 14B
}


def _paper_preset(name: str):
    family, size = name.split("-")
    width, lru_width, depth, heads = PAPER_SHAPES[size]
    pattern = griffin_pattern if family == "griffin" else hawk_pattern
    return _preset(width, heads, lru_width, depth, pattern, scaled=False, window=1024, cap=0.0,
                   gate_blocks=PAPER_GATE_BLOCKS)


#: ``name -> make(vocab_size=256_000) -> GriffinConfig``: the reference's ``Preset`` values
#: (``griffin-paper-7b``, ``hawk-paper-7b`` are its ``GRIFFIN_PAPER_7B``, ``HAWK_PAPER_7B``),
#: then the Griffin paper's sizes (:data:`PAPER_SIZES`, 16 gate blocks).
PRESETS = {
    "recurrentgemma-2b": _preset(2560, 10, 2560, 26, griffin_pattern, scaled=True,
                                 window=2048, cap=30.0),
    "recurrentgemma-9b": _preset(4096, 16, 4096, 38, griffin_pattern, scaled=True,
                                 window=2048, cap=30.0),
    "griffin-paper-7b": _preset(4096, 32, 5632, 32, griffin_pattern, scaled=False,
                                window=1024, cap=0.0),
    "hawk-paper-7b": _preset(4096, 32, 5632, 32, hawk_pattern, scaled=False, window=1024,
                             cap=0.0),
    **{name: _paper_preset(name) for name in PAPER_SIZES},
}


def preset(name: str, vocab_size: int = 256_000) -> GriffinConfig:
    """The configuration of a named preset (:data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {tuple(PRESETS)}")
    return PRESETS[name](vocab_size)


class Embedder(nnx.Module):
    """The tied embedding ``input_embedding (v, d)``: encodes tokens, decodes activations."""

    def __init__(self, vocab_size: int, width: int, *, scale_by_sqrt_dim: bool,
                 rngs: nnx.Rngs):
        self.scale_by_sqrt_dim = scale_by_sqrt_dim
        init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=1,
                                                    out_axis=0)
        self.input_embedding = nnx.Param(init(rngs.params(), (vocab_size, width), jnp.float32))

    def encode(self, tokens: Array) -> Array:
        """``tokens (b, t)`` int -> ``(b, t, d)``, scaled by ``bf16(sqrt(d))`` if configured."""
        x = self.input_embedding[...][tokens]
        if self.scale_by_sqrt_dim:
            x = x * jnp.asarray(np.sqrt(x.shape[-1]), jnp.bfloat16).astype(x.dtype)
        return x

    def decode(self, x: Array) -> Array:
        """``(b, t, d) -> (b, t, v)`` logits against the same table."""
        return x @ self.input_embedding[...].T


class GriffinLM(nnx.Module):
    """A Griffin/Hawk causal language model (RecurrentGemma's form).

    ``model(tokens, segment_pos)`` gives the logits of a whole sequence; ``prefill`` also
    returns the per-block caches, and ``step`` decodes one token from them in constant
    memory (:mod:`lru.griffin.sampling`). Submodules carry the reference's names
    (``embedder``, ``blocks[i]``, ``final_norm``).

    Args:
      config: the :class:`GriffinConfig`.
      scan_method: the RG-LRU's :func:`lru.scan.linear_recurrence` method.
      rngs: parameter RNG streams.
    """

    def __init__(self, config: GriffinConfig, *, scan_method: str = "auto", rngs: nnx.Rngs):
        self.config = config
        c = config
        self.embedder = Embedder(c.vocab_size, c.width,
                                 scale_by_sqrt_dim=c.embeddings_scale_by_sqrt_dim, rngs=rngs)
        self.blocks = nnx.List([
            ResidualBlock(c.width, kind, num_heads=c.num_heads,
                          num_gate_blocks=c.num_gate_blocks,
                          mlp_expanded_width=c.mlp_expanded_width, lru_width=c.lru_width,
                          attention_window=c.attention_window_size,
                          conv1d_temporal_width=c.conv1d_temporal_width,
                          final_w_init_variance_scale=2.0 / c.num_layers,
                          scan_method=scan_method, rngs=rngs)
            for kind in c.block_types])
        self.final_norm = RMSNorm(c.width)

    def _run(self, tokens: Array, segment_pos: Array, caches) -> tuple[Array, list]:
        x = self.embedder.encode(tokens)
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, cache = block(x, segment_pos, None if caches is None else caches[i])
            new_caches.append(cache)
        logits = self.embedder.decode(self.final_norm(x))
        cap = self.config.logits_soft_cap
        if cap:
            logits = jnp.tanh(logits / cap) * cap
        return logits, new_caches

    def __call__(self, tokens: Array, segment_pos: Array | None = None) -> Array:
        """Logits of whole sequences.

        Args:
          tokens: ``(b, t)`` int token ids.
          segment_pos: ``(b, t)`` each token's position in its document (a 0 starts one;
            -1 marks left padding); None: ``0 .. t - 1`` in every row.

        Returns:
          ``(b, t, v)`` float32 logits.
        """
        return self.prefill(tokens, segment_pos)[0]

    def prefill(self, tokens: Array, segment_pos: Array | None = None) -> tuple[Array, list]:
        """Logits of whole sequences and each block's cache after them.

        Returns:
          ``(logits (b, t, v), caches)``: one :class:`lru.griffin.blocks.RecurrentCache` or
          :class:`lru.griffin.attention.AttentionCache` per block.
        """
        if segment_pos is None:
            segment_pos = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32),
                                           tokens.shape)
        return self._run(tokens, segment_pos, None)

    def step(self, tokens: Array, segment_pos: Array, caches: list) -> tuple[Array, list]:
        """Decode one token per row from the caches.

        Args:
          tokens: ``(b,)`` int the current tokens.
          segment_pos: ``(b,)`` their positions in their documents.
          caches: from :meth:`prefill` or a previous :meth:`step`.

        Returns:
          ``(logits (b, v), caches)``; the caches keep their shapes (constant memory).
        """
        logits, caches = self._run(tokens[:, None], segment_pos[:, None], caches)
        return logits[:, 0], caches


def count_params(config: GriffinConfig) -> tuple[int, int]:
    """``(total, without the embedding)`` parameter counts, from shapes only.

    The model is built under :func:`flax.nnx.eval_shape`, so no weight is allocated (the
    9B preset's 8.6e9 parameters cost nothing), with one residual block of each type the
    config uses: blocks of one type have the same shapes, so each type's count is multiplied
    by how many blocks have it (building all 40 blocks of a 14B model abstractly takes
    seconds; one of each, a fraction).
    """
    kinds = tuple(dict.fromkeys(config.block_types))
    one_each = dataclasses.replace(config, block_types=kinds)
    abstract = nnx.eval_shape(lambda: GriffinLM(one_each, rngs=nnx.Rngs(0)))

    def size(module) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))

    per_kind = {kind: size(block) for kind, block in zip(kinds, abstract.blocks)}
    shared = size(abstract) - sum(per_kind.values())  # embedding and final norm
    total = shared + sum(per_kind[kind] for kind in config.block_types)
    embedding = int(np.prod(abstract.embedder.input_embedding.shape))
    return total, total - embedding
