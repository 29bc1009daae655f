"""Document boundaries in packed and padded batches: where each token's document starts.

Axis legend: ``b`` batch, ``t`` time.

Griffin marks documents by ``segment_pos`` (b, t), each token's position in its document:
a 0 starts a new document, and nothing may flow across that boundary (the RG-LRU resets,
the convolution and the attention are masked). Left-padded prompts give their padding the
position -1, so the first real token (position 0) starts the row's document.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def document_starts(segment_pos: Array) -> Array:
    """``(b, t)`` int32: the column of the latest document start at or before each token.

    -1 where no start precedes the token in the row (a document continued from earlier,
    or left padding): such tokens see every earlier column of the row.
    """
    time = segment_pos.shape[-1]
    starts = jnp.where(segment_pos == 0, jnp.arange(time, dtype=jnp.int32), -1)
    return jax.lax.cummax(starts, axis=segment_pos.ndim - 1)


def left_padded_positions(lengths: Array, time: int) -> Array:
    """``segment_pos`` ``(b, t)`` of left-padded rows: -1 on padding, then 0, 1, ...

    Args:
      lengths: ``(b,)`` number of real tokens at the right end of each row (at least 1).
      time: the padded length ``t``.
    """
    positions = jnp.arange(time, dtype=jnp.int32)[None] - (time - jnp.asarray(lengths))[:, None]
    return jnp.maximum(positions, -1).astype(jnp.int32)


def reverse_valid(x: Array, lengths: Array | None) -> Array:
    """Reverse each row's first ``lengths[i]`` steps along axis 1; padding stays at the end.

    An involution: applying it twice restores ``x``. Without lengths the whole axis flips.
    """
    if lengths is None:
        return jnp.flip(x, axis=1)
    time = x.shape[1]
    t = jnp.arange(time)[None]
    lengths = jnp.asarray(lengths)[:, None]
    index = jnp.where(t < lengths, lengths - 1 - t, t)
    index = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1)
