"""The diagonal recurrence as a chunked Pallas (Triton) GPU kernel: ``method="pallas"`` of
:func:`lru.scan.linear_recurrence`.

A sequential walk over time is latency-bound on a GPU when one warp owns a whole sequence:
each step waits for its load, and ``batch * n / 32`` warps are too few to keep the memory
system busy (the first version of this kernel, which did that, ran 8.6x the memory-traffic
bound at 32 x 16384 x 256, ``docs/performance.md``). This version cuts time into chunks of
``chunk`` steps and runs every chunk as its own program, in three launches:

1. **summaries**: every chunk walks from a zero state and writes only its final state
   ``e_k`` (and, for an input-dependent ``a``, its total decay ``P_k``, the product of its
   ``a_t``; for a time-invariant ``a`` that is ``a ** chunk``, computed outside);
2. **carries**: one walk over the chunks, ``s_k = P_k s_{k-1} + e_k`` from ``h0``, gives the
   state entering each chunk;
3. **outputs**: every chunk walks again from its true entering state and writes ``x``.

Passes 1 and 3 read ``b`` (and ``a``) each and only pass 3 writes ``x``: 1.5x the bytes of the
bound (read once, write once) for time-invariant ``a``, with ``batch * n / 32 * chunks``
programs in flight. Inside a walk the loop is unrolled by ``unroll`` with the group's loads
issued before its arithmetic, so each warp has ``unroll`` loads in flight instead of one.

Complex numbers travel as separate real and imaginary planes (Triton has no complex type):
``x = a x + b`` becomes

    x_re <- a_re x_re - a_im x_im + b_re,    x_im <- a_re x_im + a_im x_re + b_im.

The backward pass needs no kernel of its own: :mod:`lru.scan`'s custom VJP runs the adjoint
recurrence through this same kernel in the opposite direction.

On a machine without a GPU the kernel runs in Pallas' interpreter (slow, for tests only), so
the method is available and tested everywhere.

Axis legend: ``b`` batch, ``t`` time, ``n`` state, ``k`` chunk.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

Array = jax.Array

#: State channels per program: one per thread of a single warp.
BLOCK_N = 32
#: Steps per chunk: one program's walk. At 32 x 1024 x 128 that is 32 * 4 * 16 = 2,048
#: one-warp programs, and the carry walk over 16,384 / 64 = 256 chunks stays short.
CHUNK = 64
#: Steps per unrolled group: the loads a warp has in flight at once (8 per plane).
UNROLL = 8


def _cmul(x: tuple, y: tuple) -> tuple:
    """Product of two numbers held as planes: ``(re,)`` or ``(re, im)``."""
    if len(x) == 1:
        return (x[0] * y[0],)
    return (x[0] * y[0] - x[1] * y[1], x[0] * y[1] + x[1] * y[0])


def _walk_kernel(*refs, chunk: int, unroll: int, reverse: bool, varying: bool, planes: int,
                 planar_n: int, write_x: bool, write_summary: bool):
    """One program: chunk ``program_id(0)`` (the grid axis without CUDA's 65,535 limit),
    batch row ``program_id(1)``, channel block ``program_id(2)``; walks the chunk's
    ``chunk`` steps from its entering state.

    ``refs`` holds the planes (real, then imaginary when ``planes == 2``) of ``a`` (``(n,)``
    or ``(b, t, n)``), then ``b`` (``(b, t, n)`` per plane, or when ``planar_n`` is ``n`` one
    ``(b, t, 2n)`` array holding ``[Re | Im]``), then the planes of the entering states ``h``
    (``(b, k, n)``), then the outputs: ``x`` (laid out as ``b``) if ``write_x``, then the
    planes of the chunk's final state ``e`` and (when ``varying``) its decay ``P`` (each
    ``(b, k, n)``) if ``write_summary``.
    """
    a_refs = refs[:planes]
    n_b = 1 if planar_n else planes
    b_refs, h_refs = refs[planes:planes + n_b], refs[planes + n_b:2 * planes + n_b]
    outs = refs[2 * planes + n_b:]
    x_refs, summary = (outs[:n_b], outs[n_b:]) if write_x else ((), outs)
    # (array, column offset) of each plane of b and x
    offsets = (0, planar_n) if planar_n else (0,) * planes
    b_src = [(b_refs[min(i, n_b - 1)], off) for i, off in enumerate(offsets)]
    x_dst = [(x_refs[min(i, n_b - 1)], off) for i, off in enumerate(offsets)] if write_x else []
    k, row, col = pl.program_id(0), pl.program_id(1), pl.program_id(2) * BLOCK_N
    cols = pl.ds(col, BLOCK_N)
    start = k * chunk

    a_fixed = None if varying else tuple(r[cols] for r in a_refs)
    h = tuple(r[row, k, cols] for r in h_refs)
    one = tuple(jnp.full_like(p, 1.0 if i == 0 else 0.0) for i, p in enumerate(h))

    def group(i, carry):
        h, decay = carry
        ts = [start + (chunk - 1 - s if reverse else s) for s in
              (i * unroll + j for j in range(unroll))]
        bs = [tuple(r[row, t, pl.ds(col + off, BLOCK_N)] for r, off in b_src)
              for t in ts]  # the group's loads first, all in flight together
        as_ = [tuple(r[row, t, cols] for r in a_refs) for t in ts] if varying else None
        for j, t in enumerate(ts):
            a_t = as_[j] if varying else a_fixed
            h = tuple(p + q for p, q in zip(_cmul(a_t, h), bs[j]))
            if varying and write_summary:
                decay = _cmul(a_t, decay)
            for (r, off), p in zip(x_dst, h):
                r[row, t, pl.ds(col + off, BLOCK_N)] = p
        return h, decay

    h, decay = lax.fori_loop(0, chunk // unroll, group, (h, one))
    if write_summary:
        for r, p in zip(summary[:planes], h):
            r[row, k, cols] = p
        if varying:
            for r, p in zip(summary[planes:], decay):
                r[row, k, cols] = p


def _compiler_params():
    """Triton settings on a GPU: one warp per program (32 channels, one per thread)."""
    from jax.experimental.pallas import triton as plt

    params = getattr(plt, "CompilerParams", None) or getattr(plt, "TritonCompilerParams")
    return params(num_warps=1, num_stages=1)


def _walk(a: tuple, b: tuple, h: tuple, *, planar: bool, chunk: int, unroll: int,
          reverse: bool, interpret: bool, write_x: bool, write_summary: bool) -> list[Array]:
    """Launch :func:`_walk_kernel` over every (row, channel block, chunk).

    ``a`` and ``h`` are tuples of planes; ``b`` too, or with ``planar`` a 1-tuple holding a
    ``(b, t, 2n)`` ``[Re | Im]`` array. Time is a multiple of ``chunk`` (itself one of
    ``unroll``) and ``n`` one of :data:`BLOCK_N`. Returns the outputs the kernel writes.
    """
    planes = len(a)
    bsz, length, width = b[0].shape
    n = width // 2 if planar else width
    k = length // chunk
    varying = a[0].ndim == 3
    dtype = b[0].dtype
    out_shape = []
    if write_x:
        out_shape += [jax.ShapeDtypeStruct(b[0].shape, dtype)] * len(b)
    if write_summary:
        out_shape += [jax.ShapeDtypeStruct((bsz, k, n), dtype)] * planes * (1 + varying)
    return pl.pallas_call(
        functools.partial(_walk_kernel, chunk=chunk, unroll=unroll, reverse=reverse,
                          varying=varying, planes=planes, planar_n=n if planar else 0,
                          write_x=write_x, write_summary=write_summary),
        out_shape=out_shape,
        grid=(k, bsz, n // BLOCK_N),
        interpret=interpret,
        **({} if interpret else {"compiler_params": _compiler_params()}),
    )(*a, *b, *h)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _join(planes) -> Array:
    """One array from its planes: ``[re]`` or ``[re, im]``."""
    return lax.complex(*planes) if len(planes) == 2 else planes[0]


def _split(z: Array) -> tuple[Array, ...]:
    """The planes of an array: ``(re, im)`` if complex, else ``(z,)``."""
    return (jnp.real(z), jnp.imag(z)) if jnp.iscomplexobj(z) else (z,)


def _pad(x: Array, widths) -> Array:
    """``jnp.pad`` with zeros, skipped when every width is zero."""
    return jnp.pad(x, widths) if any(w for pair in widths for w in pair) else x


def _chunked_walks(a: tuple, b: tuple, h0: tuple, *, planar: bool, reverse: bool,
                   chunk: int, unroll: int, interpret: bool | None) -> tuple:
    """The three launches (summaries, carries, outputs) on padded planes; returns ``x``
    laid out as ``b``. Shapes as in :func:`_walk`; ``h0`` planes are ``(b, n)``."""
    bsz, length = b[0].shape[:2]
    k = length // chunk
    varying = a[0].ndim == 3
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    walk = functools.partial(_walk, unroll=unroll, reverse=reverse, interpret=interpret)
    if k == 1:
        h_in = tuple(p[:, None] for p in h0)
    else:
        zeros = tuple(jnp.zeros((bsz, k, p.shape[-1]), p.dtype) for p in h0)
        summary = walk(a, b, zeros, planar=planar, chunk=chunk, write_x=False,
                       write_summary=True)
        end = summary[:len(a)]
        decay = summary[len(a):] if varying else _split(_join(a) ** chunk)
        # Carries: s_k = P_k s_{k-1} + e_k from h0, one walk of k steps (padded, on the side
        # processed last, to a multiple of the unroll).
        k_pad = (-k % unroll, 0) if reverse else (0, -k % unroll)
        end = tuple(_pad(p, ((0, 0), k_pad, (0, 0))) for p in end)
        if varying:
            decay = tuple(_pad(p, ((0, 0), k_pad, (0, 0))) for p in decay)
        s = walk(decay, end, tuple(p[:, None] for p in h0), planar=False,
                 chunk=end[0].shape[1], write_x=True, write_summary=False)
        s = [p[:, k_pad[0]:k_pad[0] + k] for p in s]
        # The state entering a chunk is the carry after the chunk processed before it.
        h_in = tuple(jnp.concatenate([p[:, 1:], q[:, None]], axis=1) if reverse
                     else jnp.concatenate([q[:, None], p[:, :-1]], axis=1)
                     for p, q in zip(s, h0))
    return walk(a, b, h_in, planar=planar, chunk=chunk, write_x=True, write_summary=False)


def _layout(length: int, n: int, chunk: int, unroll: int, reverse: bool):
    """The chunk length actually used and the padding of time (on the side processed last,
    so it never feeds a real step) and of channels (zero channels keep a zero state)."""
    chunk = _round_up(min(chunk, _round_up(length, unroll)), unroll)
    pad_t = -length % chunk
    return chunk, ((pad_t, 0) if reverse else (0, pad_t)), -n % BLOCK_N


@functools.partial(jax.jit, static_argnames=("reverse", "chunk", "unroll", "interpret"))
def pallas_recurrence(a: Array, b: Array, h0: Array, reverse: bool, chunk: int = CHUNK,
                      unroll: int = UNROLL, interpret: bool | None = None) -> Array:
    """``x_t = a_t * x_{t-1} + b_t`` (or right to left) with the chunked Pallas kernel.

    Args:
      a: ``(n,)`` or ``(b, t, n)``, float32 or complex64, the dtype of ``b``.
      b: ``(b, t, n)`` inputs.
      h0: ``(b, n)`` initial state.
      reverse: run right to left.
      chunk: steps per program (rounded up to a multiple of ``unroll``; a sequence no longer
        than one chunk takes a single launch).
      unroll: steps per unrolled group inside a program.
      interpret: run in Pallas' interpreter; by default exactly when the backend is not a
        GPU. ``False`` on a CPU still lowers the kernel to Triton (``jax.export`` for
        ``cuda``), which is how the tests check it compiles there.

    Returns:
      ``x``: ``(b, t, n)``, the dtype of ``b``.
    """
    length, n = b.shape[1:]
    chunk, pad_t, pad_n = _layout(length, n, chunk, unroll, reverse)
    b = _pad(b, ((0, 0), pad_t, (0, pad_n)))
    a = _pad(a, ((0, 0), pad_t, (0, pad_n)) if a.ndim == 3 else ((0, pad_n),))
    h0 = _pad(h0, ((0, 0), (0, pad_n)))
    x = _join(_chunked_walks(_split(a), _split(b), _split(h0), planar=False, reverse=reverse,
                             chunk=chunk, unroll=unroll, interpret=interpret))
    return x[:, pad_t[0]:pad_t[0] + length, :n]


@functools.partial(jax.jit, static_argnames=("reverse", "chunk", "unroll", "interpret"))
def pallas_planar(a_re: Array, a_im: Array, b: Array, reverse: bool, chunk: int = CHUNK,
                  unroll: int = UNROLL, interpret: bool | None = None) -> Array:
    """The complex time-invariant recurrence on ``[Re | Im]`` storage, from a zero state
    (:func:`lru.scan.planar_recurrence`'s layout): no complex array is packed or unpacked.

    Args:
      a_re, a_im: ``(n,)`` float32, the decay's real and imaginary parts.
      b: ``(b, t, 2n)`` float32, ``[Re | Im]`` inputs.
      reverse: run right to left.
      chunk, unroll, interpret: as in :func:`pallas_recurrence`.

    Returns:
      ``x``: ``(b, t, 2n)``, ``[Re | Im]`` states.
    """
    bsz, length, width = b.shape
    n = width // 2
    chunk, pad_t, pad_n = _layout(length, n, chunk, unroll, reverse)
    if pad_n:  # each half padded (a copy; LRU state sizes are usually multiples of 32)
        b = jnp.concatenate([_pad(b[..., :n], ((0, 0), (0, 0), (0, pad_n))),
                             _pad(b[..., n:], ((0, 0), (0, 0), (0, pad_n)))], axis=-1)
    b = _pad(b, ((0, 0), pad_t, (0, 0)))
    a = (_pad(a_re, ((0, pad_n),)), _pad(a_im, ((0, pad_n),)))
    h0 = tuple(jnp.zeros((bsz, n + pad_n), b.dtype) for _ in range(2))
    (x,) = _chunked_walks(a, (b,), h0, planar=True, reverse=reverse, chunk=chunk,
                          unroll=unroll, interpret=interpret)
    x = x[:, pad_t[0]:pad_t[0] + length]
    return jnp.concatenate([x[..., :n], x[..., n + pad_n:2 * n + pad_n]], -1) if pad_n else x
