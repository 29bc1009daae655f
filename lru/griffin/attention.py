"""Griffin's local multi-query attention, with a ring-buffer cache for decoding.

Axis legend: ``b`` batch, ``t`` time (queries), ``s`` keys, ``d`` width, ``h`` query heads,
``e`` head dimension (``d / h``), ``w`` the attention window.

Facts from the reference (google-deepmind/recurrentgemma, ``recurrentgemma/jax/modules.py``:
``LocalAttentionBlock``, ``_apply_rope``, ``_compute_causal_mask``):

* multi-query: ``h`` query heads, one key head and one value head of dimension ``e``;
  projections ``proj_q (d, d)``, ``proj_k (d, e)``, ``proj_v (d, e)`` without bias, and
  ``proj_final (d, d)`` with bias;
* rotary embedding (max wavelength 10,000) on the first half of each head's dimensions of
  the queries and keys, at the token's position in its document (``segment_pos``);
* a query at column ``q`` sees the keys at columns ``k`` with ``q - w <= k <= q`` (the
  current token and the ``w`` before it) in the same document;
* logits ``q . k / sqrt(e)``, masked entries set to ``-2.3819763e38``, softmax in float32.

The parallel form runs blockwise: queries in blocks of ``w`` columns attend to their own
block and the one before, so memory is ``O(t w)``, not ``O(t^2)``. The cache keeps the
last ``w`` keys and values in a ring buffer (slot ``column % w``) with each slot's column,
so decoding one token costs ``O(w)`` whatever the number of tokens generated.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lru.griffin.segments import document_starts

Array = jax.Array

#: The reference's fill value for masked logits.
MIN_LOGIT = -2.3819763e38
MAX_WAVELENGTH = 10_000


class AttentionCache(NamedTuple):
    """Decoding state of one attention block (all shapes fixed by the window ``w``).

    Attributes:
      keys: ``(b, w, e)`` the last ``w`` keys (after RoPE), slot ``column % w``.
      values: ``(b, w, e)`` their values.
      positions: ``(b, w)`` int32 column of each slot's token; -1 for an empty slot.
      doc_start: ``(b,)`` int32 column where the current document started (-1: none seen).
      next_pos: ``(b,)`` int32 column of the next token.
    """

    keys: Array
    values: Array
    positions: Array
    doc_start: Array
    next_pos: Array


def apply_rope(x: Array, positions: Array, max_wavelength: int = MAX_WAVELENGTH) -> Array:
    """Rotary embedding on the first half of the last axis; the second half passes through.

    The rotated half is split into two quarters ``(x1, x2)`` turned by angles
    ``p / max_wavelength^(2j / (e/2))``: ``(x1 cos - x2 sin, x2 cos + x1 sin)``.

    Args:
      x: ``(b, t, ..., e)`` queries or keys, ``e`` divisible by 4.
      positions: ``(b, t)`` positions.
    """
    e = x.shape[-1]
    if e % 4:
        raise ValueError(f"apply_rope: the head dimension must be divisible by 4 (RoPE turns "
                         f"pairs within its first half); got {e}. Choose width / num_heads "
                         f"divisible by 4")
    half, quarter = e // 2, e // 4
    inv_freq = 1.0 / max_wavelength ** (2 * jnp.arange(quarter) / half)
    pos = positions.reshape(positions.shape + (1,) * (x.ndim - 2))
    angle = pos * inv_freq
    sin, cos = jnp.sin(angle).astype(x.dtype), jnp.cos(angle).astype(x.dtype)
    x1, x2, rest = x[..., :quarter], x[..., quarter:half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], axis=-1)


def _attend(q: Array, k: Array, v: Array, valid: Array) -> Array:
    """Softmax attention of ``q (b, n, t, h, e)`` over ``k, v (b, n, s, e)`` where ``valid
    (b, n, t, s)``; returns ``(b, n, t, h, e)``."""
    logits = jnp.einsum("bnthe,bnse->bnhts", q, k) * q.shape[-1] ** -0.5
    logits = jnp.where(valid[:, :, None], logits, MIN_LOGIT).astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bnhts,bnse->bnthe", probs, v)


def local_attention(q: Array, k: Array, v: Array, doc_start: Array, window: int) -> Array:
    """Causal sliding-window multi-query attention over a whole sequence, blockwise.

    Args:
      q: ``(b, t, h, e)`` queries; ``k``, ``v``: ``(b, t, e)``.
      doc_start: ``(b, t)`` column where each query's document starts
        (:func:`lru.griffin.segments.document_starts`).
      window: ``w``; a query sees itself and the ``w`` columns before it.

    Returns:
      ``(b, t, h, e)``.
    """
    b, t, h, e = q.shape
    block = min(window, t)
    nb = -(-t // block)
    pad = nb * block - t
    if pad:
        q, k, v = (jnp.pad(z, [(0, 0), (0, pad)] + [(0, 0)] * (z.ndim - 2)) for z in (q, k, v))
        doc_start = jnp.pad(doc_start, [(0, 0), (0, pad)])
    q = q.reshape(b, nb, block, h, e)
    k, v = k.reshape(b, nb, block, e), v.reshape(b, nb, block, e)
    q_pos = jnp.arange(nb * block).reshape(nb, block)
    k_pos = q_pos
    if nb > 1:  # each block also sees the block before it
        k = jnp.concatenate([jnp.pad(k[:, :-1], [(0, 0), (1, 0), (0, 0), (0, 0)]), k], axis=2)
        v = jnp.concatenate([jnp.pad(v[:, :-1], [(0, 0), (1, 0), (0, 0), (0, 0)]), v], axis=2)
        k_pos = jnp.concatenate([q_pos - block, q_pos], axis=1)
    qp, kp = q_pos[:, :, None], k_pos[:, None, :]
    valid = (kp >= 0) & (kp < t) & (kp <= qp) & (qp - kp <= window)
    valid = valid[None] & (kp[None] >= doc_start.reshape(b, nb, block)[..., None])
    out = _attend(q, k, v, valid)
    return out.reshape(b, nb * block, h, e)[:, :t]


class LocalAttention(nnx.Module):
    """Local multi-query attention block of Griffin.

    Args:
      width: ``d``.
      num_heads: ``h`` query heads (``d / h`` divisible by 4).
      window: ``w``, the attention window (a token sees itself and the ``w`` before it).
      final_w_init_variance_scale: variance scale of ``proj_final``'s initialisation.
      rngs: parameter RNG streams.
    """

    def __init__(self, width: int, num_heads: int, window: int, *,
                 final_w_init_variance_scale: float = 1.0, rngs: nnx.Rngs):
        if num_heads < 1 or width % num_heads:
            raise ValueError(f"LocalAttention: num_heads={num_heads} must divide width={width}")
        if window < 1:
            raise ValueError(f"LocalAttention: window must be >= 1; got {window}")
        self.num_heads, self.window, self.head_dim = num_heads, window, width // num_heads
        if self.head_dim % 4:
            raise ValueError(f"LocalAttention: the head dimension width / num_heads = "
                             f"{self.head_dim} must be divisible by 4 for RoPE; change "
                             f"width or num_heads")
        init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        final = jax.nn.initializers.variance_scaling(final_w_init_variance_scale, "fan_in",
                                                     "normal")
        e = self.head_dim
        self.proj_q = nnx.Linear(width, width, use_bias=False, kernel_init=init, rngs=rngs)
        self.proj_k = nnx.Linear(width, e, use_bias=False, kernel_init=init, rngs=rngs)
        self.proj_v = nnx.Linear(width, e, use_bias=False, kernel_init=init, rngs=rngs)
        self.proj_final = nnx.Linear(width, width, kernel_init=final, rngs=rngs)

    def __call__(self, x: Array, segment_pos: Array,
                 cache: AttentionCache | None = None) -> tuple[Array, AttentionCache]:
        """Attend over a sequence (no cache) or decode one token (with a cache).

        Args:
          x: ``(b, t, d)``; ``t = 1`` when decoding.
          segment_pos: ``(b, t)`` int positions in the documents (0 starts one).
          cache: the block's :class:`AttentionCache`, or None for a whole sequence from
            scratch.

        Returns:
          ``(y (b, t, d), cache)``: the output and the cache after these tokens.
        """
        b, t, _ = x.shape
        q = apply_rope(self.proj_q(x).reshape(b, t, self.num_heads, self.head_dim), segment_pos)
        k = apply_rope(self.proj_k(x), segment_pos)
        v = self.proj_v(x)
        if cache is None:
            starts = document_starts(segment_pos)
            out = local_attention(q, k, v, starts, self.window)
            new_cache = self._cache_from_prompt(k, v, starts[:, -1])
        else:
            if t != 1:
                raise ValueError(f"LocalAttention: with a cache, give one token at a time "
                                 f"(t = 1); got t = {t}. Run a prompt without a cache first")
            out, new_cache = self._decode(q, k, v, segment_pos[:, 0], cache)
        return self.proj_final(out.reshape(b, t, -1)), new_cache

    def _cache_from_prompt(self, k: Array, v: Array, doc_start: Array) -> AttentionCache:
        b, t, e = k.shape
        w = self.window
        cols = np.arange(max(t - w, 0), t)
        slots = cols % w
        keys = jnp.zeros((b, w, e), k.dtype).at[:, slots].set(k[:, cols])
        values = jnp.zeros((b, w, e), v.dtype).at[:, slots].set(v[:, cols])
        positions = jnp.full((b, w), -1, jnp.int32).at[:, slots].set(cols.astype(np.int32))
        return AttentionCache(keys, values, positions, doc_start.astype(jnp.int32),
                              jnp.full((b,), t, jnp.int32))

    def _decode(self, q: Array, k: Array, v: Array, segment_pos: Array,
                cache: AttentionCache) -> tuple[Array, AttentionCache]:
        """One token: attend to the cached window and itself, then write it into its slot."""
        now = cache.next_pos
        doc_start = jnp.where(segment_pos == 0, now, cache.doc_start)
        keys = jnp.concatenate([cache.keys, k], axis=1)
        values = jnp.concatenate([cache.values, v], axis=1)
        positions = jnp.concatenate([cache.positions, now[:, None]], axis=1)
        valid = ((positions >= 0) & (positions >= doc_start[:, None])
                 & (now[:, None] - positions <= self.window))
        out = _attend(q[:, None], keys[:, None], values[:, None], valid[:, None, None])[:, 0]
        rows, slot = jnp.arange(q.shape[0]), now % self.window
        new_cache = AttentionCache(
            keys=cache.keys.at[rows, slot].set(k[:, 0]),
            values=cache.values.at[rows, slot].set(v[:, 0]),
            positions=cache.positions.at[rows, slot].set(now),
            doc_start=doc_start, next_pos=now + 1)
        return out, new_cache
