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
repeat (recurrent, recurrent, attention).

Presets (:data:`PRESETS`): the reference's four (``recurrentgemma-2b``, ``recurrentgemma-9b``,
``griffin-7b``, ``hawk-7b``, the last two being the Griffin paper's 7B models as the release
configures them). The paper's other sizes (Table 2: 100M-14B) are not presets: their
attention-head counts (6, 12, 24, 40 for RNN widths 1024, 2048, 4096, 8192) do not divide
the RNN width, so the released block-diagonal gates (one block per head) cannot be built
with them, and the paper does not say how many gate blocks it used.
"""

from __future__ import annotations

import dataclasses
import itertools

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


@dataclasses.dataclass(frozen=True)
class GriffinConfig:
    """A Griffin/Hawk language model (the reference's ``GriffinConfig``).

    Attributes:
      vocab_size: ``v``.
      width: ``d``.
      mlp_expanded_width: the GeGLU MLP's hidden width (``3 d`` in every preset).
      num_heads: attention heads, and diagonal blocks of the RG-LRU's gates.
      block_types: ``"recurrent"`` / ``"attention"`` per residual block.
      lru_width: the RG-LRU's width ``D_RNN`` (None: ``width``).
      attention_window_size: the local attention's window.
      embeddings_scale_by_sqrt_dim: multiply the embeddings by ``bf16(sqrt(d))``.
      logits_soft_cap: ``c`` of ``c tanh(logits / c)``; 0 disables it.
      conv1d_temporal_width: the recurrent block's convolution width (4).
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

    def __post_init__(self):
        object.__setattr__(self, "block_types", tuple(self.block_types))
        bad = sorted(set(self.block_types) - set(BLOCK_TYPES))
        if bad or not self.block_types:
            raise ValueError(f"GriffinConfig: block_types must be a non-empty sequence of "
                             f"{BLOCK_TYPES}; got {self.block_types}")
        if self.width % self.num_heads or (self.lru_width or self.width) % self.num_heads:
            raise ValueError(f"GriffinConfig: num_heads={self.num_heads} must divide width="
                             f"{self.width} and lru_width={self.lru_width or self.width}")

    @property
    def num_layers(self) -> int:
        return len(self.block_types)


def _preset(width, heads, lru_width, n_layers, pattern, *, scaled, window, cap):
    def make(vocab_size: int = 256_000) -> GriffinConfig:
        return GriffinConfig(vocab_size=vocab_size, width=width, mlp_expanded_width=3 * width,
                             num_heads=heads, block_types=pattern(n_layers), lru_width=lru_width,
                             attention_window_size=window, embeddings_scale_by_sqrt_dim=scaled,
                             logits_soft_cap=cap)
    return make


#: ``name -> make(vocab_size=256_000) -> GriffinConfig``, the reference's ``Preset`` values.
PRESETS = {
    "recurrentgemma-2b": _preset(2560, 10, 2560, 26, griffin_pattern, scaled=True,
                                 window=2048, cap=30.0),
    "recurrentgemma-9b": _preset(4096, 16, 4096, 38, griffin_pattern, scaled=True,
                                 window=2048, cap=30.0),
    "griffin-7b": _preset(4096, 32, 5632, 32, griffin_pattern, scaled=False, window=1024,
                          cap=0.0),
    "hawk-7b": _preset(4096, 32, 5632, 32, hawk_pattern, scaled=False, window=1024, cap=0.0),
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
    9B preset's 8.6e9 parameters cost nothing).
    """
    abstract = nnx.eval_shape(lambda: GriffinLM(config, rngs=nnx.Rngs(0)))
    params = nnx.state(abstract, nnx.Param)
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    embedding = int(np.prod(abstract.embedder.input_embedding.shape))
    return total, total - embedding
