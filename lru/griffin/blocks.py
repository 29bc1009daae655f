"""Griffin's building blocks: RMSNorm, the causal Conv1D, the recurrent block, the gated MLP
and the residual block that holds a recurrent or an attention block.

Axis legend: ``b`` batch, ``t`` time, ``d`` width, ``r`` the recurrence's width (``D_RNN``,
``lru_width``), ``m`` the MLP's expanded width, ``k`` the convolution's temporal width.

Facts from the reference (google-deepmind/recurrentgemma, ``recurrentgemma/jax/layers.py``
and ``modules.py``), with parameter names as there (so that released checkpoints convert by
renaming, :mod:`lru.griffin.convert`):

* ``RMSNorm``: ``x / sqrt(mean(x^2) + 1e-6) * (1 + scale)``, ``scale`` initialised to 0;
* ``Conv1D``: depthwise causal convolution, ``y_t = b + sum_j w[j] x_{t-k+1+j}``, that reads
  nothing across a document start; ``w (k, r)`` ~ variance-scaling 0.01 (fan-in ``k``);
* ``RecurrentBlock``: ``linear_out(gelu(linear_y(x)) * RGLRU(Conv1D(linear_x(x))))``;
* ``MLPBlock`` (GeGLU): ``ffw_down(gelu(x W_0 + b_0) * (x W_1 + b_1))``, ``ffw_up.w (2, d, m)``,
  ``m = 3 d``;
* ``ResidualBlock``: ``r = x + temporal(RMSNorm(x))``, ``y = r + MLP(RMSNorm(r))``;
* GELU is the tanh approximation (``jax.nn.gelu``'s default, as the reference);
* the output layers of each block (``linear_out``, ``proj_final``, ``ffw_down``) are drawn
  with variance scale ``2 / n_layers``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lru.griffin.attention import LocalAttention
from lru.griffin.segments import document_starts, reverse_valid
from lru.layers.rglru import RGLRU

Array = jax.Array

#: The temporal-mixing block of a residual block, by name.
BLOCK_TYPES: tuple[str, ...] = ("recurrent", "attention")


def _fan_in(scale: float, **kwargs) -> jax.nn.initializers.Initializer:
    return jax.nn.initializers.variance_scaling(scale, "fan_in", "normal", **kwargs)


class RecurrentCache(NamedTuple):
    """Decoding state of one recurrent block.

    Attributes:
      rg_lru: ``(b, r)`` float32 (complex64 for the CG-LRU) state of the RG-LRU.
      conv1d: ``(b, k - 1, r)`` the convolution's last ``k - 1`` inputs (oldest first),
        zero where they precede the current document.
    """

    rg_lru: Array
    conv1d: Array


class RMSNorm(nnx.Module):
    """``x / sqrt(mean(x^2) + eps) * (1 + scale)`` over the last axis; ``scale`` starts at 0."""

    def __init__(self, width: int, *, eps: float = 1e-6):
        self.eps = eps
        self.scale = nnx.Param(jnp.zeros((width,), jnp.float32))

    def __call__(self, x: Array) -> Array:
        var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        return x * jax.lax.rsqrt(var + self.eps) * (1 + self.scale[...])


class Conv1D(nnx.Module):
    """Depthwise causal convolution over time that never reads across a document start.

    Args:
      width: channels ``r``.
      temporal_width: ``k`` (4 in Griffin).
      rngs: parameter RNG streams.
    """

    def __init__(self, width: int, temporal_width: int = 4, *, rngs: nnx.Rngs):
        if temporal_width < 1:
            raise ValueError(f"Conv1D: temporal_width must be >= 1; got {temporal_width}")
        self.temporal_width = temporal_width
        self.w = nnx.Param(_fan_in(0.01)(rngs.params(), (temporal_width, width), jnp.float32))
        self.b = nnx.Param(jnp.zeros((width,), jnp.float32))

    def __call__(self, x: Array, segment_pos: Array,
                 cache: Array | None = None) -> tuple[Array, Array]:
        """Convolve a sequence (no cache) or one new token (with the last ``k - 1`` inputs).

        Args:
          x: ``(b, t, r)``; ``t = 1`` with a cache.
          segment_pos: ``(b, t)``; a 0 starts a document, and inputs before it are not read.
          cache: ``(b, k - 1, r)`` previous inputs, or None.

        Returns:
          ``(y (b, t, r), cache (b, k - 1, r))``.
        """
        k, w = self.temporal_width, self.w[...]
        b, t, r = x.shape
        if cache is not None:
            if t != 1:
                raise ValueError(f"Conv1D: with a cache, give one token at a time (t = 1); "
                                 f"got t = {t}")
            cache = jnp.where((segment_pos[:, 0] == 0)[:, None, None], 0, cache)
            window = jnp.concatenate([cache.astype(x.dtype), x], axis=1)  # (b, k, r)
            y = jnp.einsum("bkr,kr->br", window, w)[:, None] + self.b[...]
            return y, window[:, 1:]
        starts = document_starts(segment_pos)[..., None]
        col = jnp.arange(t)[None, :, None]
        y = jnp.zeros_like(x) + self.b[...]
        for shift in range(min(k, t)):  # x_{t - shift} times w[k - 1 - shift]
            shifted = jnp.pad(x, [(0, 0), (shift, 0), (0, 0)])[:, :t]
            y = y + jnp.where(col - shift >= starts, shifted, 0) * w[k - 1 - shift]
        # the cache: the last k - 1 inputs, zero before the last token's document
        cols = np.arange(t - k + 1, t)
        last = jnp.pad(x, [(0, 0), (k - 1, 0), (0, 0)])[:, t:]  # x at cols, 0 where cols < 0
        keep = (cols >= 0)[None] & (cols[None] >= starts[:, -1])
        return y, jnp.where(keep[..., None], last, 0)


class RecurrentBlock(nnx.Module):
    """Griffin's recurrent block (Hawk's temporal mixer).

    Args:
      width: ``d``.
      lru_width: ``r``, the RG-LRU's width.
      num_heads: diagonal blocks of the RG-LRU's input and recurrence gates (the
        reference's name: it uses one block per attention head).
      conv1d_temporal_width: ``k``.
      final_w_init_variance_scale: variance scale of ``linear_out``.
      complex: use the CG-LRU (paper's App. B) instead of the RG-LRU.
      scan_method: the RG-LRU's :func:`lru.scan.linear_recurrence` method.
      rngs: parameter RNG streams.
    """

    def __init__(self, width: int, lru_width: int, num_heads: int, *,
                 conv1d_temporal_width: int = 4, final_w_init_variance_scale: float = 1.0,
                 complex: bool = False, scan_method: str = "auto", rngs: nnx.Rngs):
        init = _fan_in(1.0)
        self.linear_y = nnx.Linear(width, lru_width, kernel_init=init, rngs=rngs)
        self.linear_x = nnx.Linear(width, lru_width, kernel_init=init, rngs=rngs)
        self.linear_out = nnx.Linear(lru_width, width,
                                     kernel_init=_fan_in(final_w_init_variance_scale), rngs=rngs)
        self.conv_1d = Conv1D(lru_width, conv1d_temporal_width, rngs=rngs)
        self.rg_lru = RGLRU(lru_width, num_blocks=num_heads, complex=complex,
                            scan_method=scan_method, rngs=rngs)

    def __call__(self, x: Array, segment_pos: Array,
                 cache: RecurrentCache | None = None) -> tuple[Array, RecurrentCache]:
        """``x: (b, t, d)`` (``t = 1`` with a cache) -> ``(y (b, t, d), cache)``."""
        y = jax.nn.gelu(self.linear_y(x))
        z, conv_cache = self.conv_1d(self.linear_x(x), segment_pos,
                                     None if cache is None else cache.conv1d)
        z, h = self.rg_lru(z, segment_pos, None if cache is None else cache.rg_lru)
        return self.linear_out(z * y), RecurrentCache(rg_lru=h, conv1d=conv_cache)


class MLPBlock(nnx.Module):
    """GeGLU MLP: ``ffw_down(gelu(x W_0 + b_0) * (x W_1 + b_1))``.

    Parameters ``ffw_up.w (2, d, m)``, ``ffw_up.b (2, m)`` and ``ffw_down`` (a linear map
    ``m -> d``).
    """

    def __init__(self, width: int, expanded_width: int, *,
                 final_w_init_variance_scale: float = 1.0, rngs: nnx.Rngs):
        self.ffw_up = nnx.Dict(
            w=nnx.Param(_fan_in(1.0, in_axis=1)(rngs.params(), (2, width, expanded_width),
                                                jnp.float32)),
            b=nnx.Param(jnp.zeros((2, expanded_width), jnp.float32)))
        self.ffw_down = nnx.Linear(expanded_width, width,
                                   kernel_init=_fan_in(final_w_init_variance_scale), rngs=rngs)

    def __call__(self, x: Array) -> Array:
        # one (d, 2m) product [W_0 | W_1] with the halves side by side on the last axis: an
        # einsum producing (2, ..., m) had XLA:CPU sum its halves' gradients through two
        # padded (2, ..., m) arrays, 150 ms a layer at 32 x 1024 x 384 (docs/performance.md)
        w, b = self.ffw_up["w"][...], self.ffw_up["b"][...]
        m = w.shape[2]
        up = x @ jnp.moveaxis(w, 0, 1).reshape(w.shape[1], 2 * m) + b.reshape(2 * m)
        return self.ffw_down(jax.nn.gelu(up[..., :m]) * up[..., m:])


class ResidualBlock(nnx.Module):
    """``r = x + temporal(RMSNorm(x))``, ``y = r + MLP(RMSNorm(r))``.

    Args:
      width: ``d``.
      block_type: ``"recurrent"`` (``recurrent_block``) or ``"attention"``
        (``attention_block``).
      num_heads: attention heads, and diagonal blocks of the RG-LRU's gates unless
        ``num_gate_blocks`` is given.
      num_gate_blocks: diagonal blocks of the RG-LRU's input and recurrence gates (None:
        ``num_heads``, the reference's convention; the Griffin paper uses 16, its §4.1).
      mlp_expanded_width: ``m``.
      lru_width: ``r`` (default ``d``).
      attention_window: the local attention's window.
      conv1d_temporal_width: ``k``.
      final_w_init_variance_scale: variance scale of the blocks' output layers.
      complex: the CG-LRU in recurrent blocks.
      scan_method: the RG-LRU's scan method.
      dropout: rate of dropout on the temporal and MLP branches before each residual sum
        (one mask per example and channel, shared across time); 0 in Griffin.
      bidirectional: add a second temporal block (``<name>_reverse``) that reads each row's
        valid steps right to left; the two outputs are summed. For classification: it
        assumes one document per row and cannot decode token by token.
      rngs: RNG streams (``params``; ``dropout`` when ``dropout > 0``).
    """

    def __init__(self, width: int, block_type: str, *, num_heads: int,
                 num_gate_blocks: int | None = None,
                 mlp_expanded_width: int, lru_width: int | None = None,
                 attention_window: int = 2048, conv1d_temporal_width: int = 4,
                 final_w_init_variance_scale: float = 1.0, complex: bool = False,
                 scan_method: str = "auto", dropout: float = 0.0, bidirectional: bool = False,
                 rngs: nnx.Rngs):
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"ResidualBlock: unknown block_type {block_type!r}; choose one of "
                             f"{BLOCK_TYPES}")
        self.block_type, self.bidirectional = block_type, bidirectional

        def temporal():
            if block_type == "recurrent":
                return RecurrentBlock(width, lru_width or width, num_gate_blocks or num_heads,
                                      conv1d_temporal_width=conv1d_temporal_width,
                                      final_w_init_variance_scale=final_w_init_variance_scale,
                                      complex=complex, scan_method=scan_method, rngs=rngs)
            return LocalAttention(width, num_heads, attention_window,
                                  final_w_init_variance_scale=final_w_init_variance_scale,
                                  rngs=rngs)

        self.temporal_pre_norm = RMSNorm(width)
        setattr(self, self.temporal_name, temporal())
        if bidirectional:
            setattr(self, self.temporal_name + "_reverse", temporal())
        self.channel_pre_norm = RMSNorm(width)
        self.mlp_block = MLPBlock(width, mlp_expanded_width,
                                  final_w_init_variance_scale=final_w_init_variance_scale,
                                  rngs=rngs)
        self.drop = (nnx.Dropout(dropout, broadcast_dims=(1,), rngs=rngs) if dropout > 0
                     else None)

    @property
    def temporal_name(self) -> str:
        """``"recurrent_block"`` or ``"attention_block"`` (the reference's names)."""
        return f"{self.block_type}_block"

    def _drop(self, x: Array) -> Array:
        return x if self.drop is None else self.drop(x)

    def __call__(self, x: Array, segment_pos: Array, cache=None, *,
                 reverse_lengths: Array | None = None):
        """Apply the block to a sequence (no cache) or decode one token (with a cache).

        Args:
          x: ``(b, t, d)``.
          segment_pos: ``(b, t)`` positions in the documents.
          cache: the temporal block's cache (:class:`RecurrentCache` or
            :class:`lru.griffin.attention.AttentionCache`), or None.
          reverse_lengths: read by bidirectional blocks only: ``(b,)`` valid lengths of
            right-padded rows (None: no padding), so that the reverse direction reads each
            row's valid steps backwards and never meets its padding first.

        Returns:
          ``(y (b, t, d), cache)``.
        """
        if self.bidirectional and cache is not None:
            raise ValueError("ResidualBlock: a bidirectional block reads the future, so it "
                             "cannot decode token by token; call it on whole sequences")
        normed = self.temporal_pre_norm(x)
        mixed, cache = getattr(self, self.temporal_name)(normed, segment_pos, cache)
        if self.bidirectional:
            back, _ = getattr(self, self.temporal_name + "_reverse")(
                reverse_valid(normed, reverse_lengths), segment_pos)
            mixed = mixed + reverse_valid(back, reverse_lengths)
        residual = x + self._drop(mixed)
        return residual + self._drop(self.mlp_block(self.channel_pre_norm(residual))), cache
