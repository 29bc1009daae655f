"""The recurrences' XLA loops: in place along an axis, chunked, and on ``[Re | Im]`` storage.

Speed work for :mod:`lru.scan` (its methods ``inplace`` and ``chunked``, and the planar
walk of ``inplace``), each tested equal to :mod:`lru.scan`'s reference methods
(``sequential``, ``associative``) in ``tests/test_scan.py``. On XLA:CPU a ``fori_loop``
that slices time in place beats ``lax.scan`` (no time-major copies) and the log-depth
associative scan at every shape ``bench/scan.py`` measured (``docs/performance.md``).

Axis legend: ``b`` batch, ``t`` time, ``n`` state. Each kernel takes ``a: (n,)`` or
``(b, t, n)``, ``b: (b, t, n)``, ``h0: (b, n)``, all of one float32/complex64 (or wider)
dtype, and returns ``x: (b, t, n)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

#: Chunk length used by ``method="chunked"`` when none is given.
DEFAULT_CHUNK = 32



def inplace_along(a: Array, b: Array, h0: Array, reverse: bool, axis: int) -> Array:
    """Sequential loop that reads and writes slices of ``axis`` in place (no transposes).

    ``a`` is either broadcastable to a slice of ``b`` (time-invariant) or shaped like ``b``.
    ``h0`` has the shape of one slice of ``b`` (``axis`` kept with size 1). The states are
    written over ``b``'s own buffer (step ``t`` reads ``b_t`` and writes ``x_t`` to the same
    slice), so when ``b`` is dead afterwards, as it is inside the custom VJP, XLA aliases the
    two: no zero-filled output buffer, one array of traffic less.
    """
    length = b.shape[axis]
    varying = a.ndim == b.ndim

    def body(i, carry):
        h, out = carry
        t = length - 1 - i if reverse else i
        a_t = lax.dynamic_slice_in_dim(a, t, 1, axis=axis) if varying else a
        h = a_t * h + lax.dynamic_slice_in_dim(out, t, 1, axis=axis)
        return h, lax.dynamic_update_slice_in_dim(out, h, t, axis=axis)

    _, out = lax.fori_loop(0, length, body, (h0, b))
    return out


def inplace_adjoint(a: Array, x: Array, h0: Array, g: Array,
                     reverse: bool) -> tuple[Array, Array]:
    """The backward pass of a recurrence, fused into one in-place loop.

    Runs the adjoint ``lam_t = g_t + a_next(t) * lam_next(t)`` opposite to the forward
    direction, writing ``lam`` over ``g``'s buffer, and forms ``da_t = lam_t * x_prev(t)`` in
    the same step: summed in the loop's carry when ``a`` is time-invariant, written over
    ``x``'s buffer (slot ``t``, after slot ``t``'s last read) when it is input-dependent.
    Against the generic path (adjoint loop, then a shifted copy of ``x``, a product and a
    reduction) this reads ``g`` and ``x`` once and writes ``lam`` once.

    Args:
      a: ``(n,)`` or ``(b, t, n)``, as in the forward pass.
      x: forward states ``(b, t, n)``.
      h0: forward initial state ``(b, n)``.
      g: cotangent of ``x``, ``(b, t, n)``.
      reverse: the forward pass's direction.

    Returns:
      ``(lam, da)``: ``lam`` ``(b, t, n)`` (the cotangent of ``b``) and ``da`` shaped like
      ``a``.
    """
    length = x.shape[1]
    varying = a.ndim == 3
    first = h0[:, None]

    def body(i, carry):
        lam, da, lam_out = carry
        t = i if reverse else length - 1 - i  # the adjoint runs the other way
        nxt = t - 1 if reverse else t + 1  # the step processed just before t
        prev = t + 1 if reverse else t - 1  # the state a_t multiplied going forward
        if varying:  # lam is 0 on the first step, so the clamped a_next there is harmless
            a_next = lax.dynamic_slice_in_dim(a, jnp.clip(nxt, 0, length - 1), 1, axis=1)
        else:
            a_next = a
        lam = a_next * lam + lax.dynamic_slice_in_dim(lam_out, t, 1, axis=1)
        lam_out = lax.dynamic_update_slice_in_dim(lam_out, lam, t, axis=1)
        inside = (prev >= 0) & (prev < length)
        x_prev = jnp.where(
            inside, lax.dynamic_slice_in_dim(x, jnp.clip(prev, 0, length - 1), 1, axis=1), first)
        if varying:  # da: x's buffer, slot t overwritten
            da = lax.dynamic_update_slice_in_dim(da, lam * x_prev, t, axis=1)
        else:  # da: a running sum over time, (b, 1, n)
            da = da + lam * x_prev
        return lam, da, lam_out

    zero = jnp.zeros_like(first)
    _, da, lam = lax.fori_loop(0, length, body, (zero, x if varying else zero, g))
    return lam, (da if varying else da.sum(axis=(0, 1)))


def inplace(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
    """A ``fori_loop`` over time that slices axis 1 in place: fastest on CPU for wide steps."""
    return inplace_along(a, b, h0[:, None], reverse, axis=1)


def chunked(a: Array, b: Array, h0: Array, reverse: bool, chunk: int = DEFAULT_CHUNK) -> Array:
    """Two-level scan: all chunks scanned at once from zero, then carries across chunks.

    Time is cut into ``k`` chunks of ``c`` steps. (1) A loop of ``c`` steps scans every chunk
    from a zero state (each step is ``k`` times wider than a plain loop's); (2) a loop of ``k``
    steps carries the state across chunk boundaries; (3) one elementwise fix-up adds each
    chunk's incoming state times the cumulative decay. ``c + k`` sequential steps instead of
    ``t``, which pays off when one step of the plain loop is too narrow to fill the machine.
    """
    bsz, length, n = b.shape
    varying = a.ndim == 3
    c = max(1, min(chunk, length))
    k = -(-length // c)
    pad = k * c - length
    if pad:  # pad on the side processed last, so padding never feeds a real step
        widths = ((0, 0), (pad, 0) if reverse else (0, pad), (0, 0))
        b = jnp.pad(b, widths)
        if varying:
            a = jnp.pad(a, widths, constant_values=1)
    bc = b.reshape(bsz, k, c, n)
    if varying:
        ac = a.reshape(bsz, k, c, n)
        decay = lax.cumprod(ac, axis=2, reverse=reverse)  # prod of a over the chunk so far
    else:
        ac = a
        decay = lax.cumprod(jnp.broadcast_to(a, (c, n)), axis=0, reverse=reverse)[None, None]
    local = inplace_along(ac, bc, jnp.zeros((bsz, k, 1, n), b.dtype), reverse, axis=2)

    edge = 0 if reverse else c - 1  # last step of each chunk, in processing order
    total = decay[:, :, edge] if varying else jnp.broadcast_to(decay[0, 0, edge], (bsz, k, n))

    def carry_step(h, inp):
        total_k, end_k = inp
        return total_k * h + end_k, h  # emit the state entering chunk k

    _, h_in = lax.scan(
        carry_step,
        h0,
        (jnp.swapaxes(total, 0, 1), jnp.swapaxes(local[:, :, edge], 0, 1)),
        reverse=reverse,
    )
    x = local + decay * jnp.swapaxes(h_in, 0, 1)[:, :, None]
    x = x.reshape(bsz, k * c, n)
    return x[:, pad:] if reverse else x[:, :length]


def _rotate(re: Array, im: Array, a_re: Array, a_im: Array) -> tuple[Array, Array]:
    """``a * (re + i im)`` as its real and imaginary parts."""
    return a_re * re - a_im * im, a_im * re + a_re * im


#: Time steps per iteration of the planar loops: one slice read and one written per block
#: instead of per step (measured: 4.98 ms forward at 32 x 1024 x 2*128 against 6.70 ms one
#: step at a time; 8 is no better).
PLANAR_BLOCK = 4


def _walk_blocks(length: int, reverse: bool, block_fn, carry, block: int = PLANAR_BLOCK):
    """Call ``block_fn(start, size, carry) -> carry`` over time in processing order: blocks
    of ``block`` steps, then the ``length % block`` steps left over (the last ones going
    forwards, the first ones going backwards) one at a time."""
    n_blocks, rest = divmod(length, block)

    def blocks(j, carry):
        return block_fn(length - (j + 1) * block if reverse else j * block, block, carry)

    def singles(j, carry):
        return block_fn(rest - 1 - j if reverse else n_blocks * block + j, 1, carry)

    if n_blocks:
        carry = lax.fori_loop(0, n_blocks, blocks, carry)
    return lax.fori_loop(0, rest, singles, carry) if rest else carry


def planar_loop(a_re: Array, a_im: Array, b: Array, reverse: bool) -> Array:
    """The in-place loop of :func:`_inplace_along` on ``[Re | Im]`` storage, over ``b``'s buffer.

    The state is carried as two real halves; each iteration reads a block of
    :data:`PLANAR_BLOCK` steps, walks it, and writes ``[Re | Im]`` back with one update.
    """
    length, n = b.shape[1], b.shape[2] // 2

    def block_fn(start, size, carry):
        h_re, h_im, out = carry
        b_blk = lax.dynamic_slice_in_dim(out, start, size, axis=1)
        x_blk = [None] * size
        for s in (range(size - 1, -1, -1) if reverse else range(size)):
            h_re, h_im = _rotate(h_re, h_im, a_re, a_im)
            h_re, h_im = h_re + b_blk[:, s:s + 1, :n], h_im + b_blk[:, s:s + 1, n:]
            x_blk[s] = jnp.concatenate([h_re, h_im], -1)
        return h_re, h_im, lax.dynamic_update_slice_in_dim(out, jnp.concatenate(x_blk, 1),
                                                            start, axis=1)

    zero = jnp.zeros_like(b[:, :1, :n])
    return _walk_blocks(length, reverse, block_fn, (zero, zero, b))[2]
