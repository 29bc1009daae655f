"""The diagonal recurrence as a Pallas (Triton) GPU kernel: ``method="pallas"`` of
:func:`lru.scan.linear_recurrence`.

One kernel instance (program) owns one batch row and a block of ``BLOCK_N`` state channels,
and walks the time axis in a loop, keeping its state in registers: each step reads ``b_t``
(and ``a_t`` when input-dependent) once and writes ``x_t`` once, so the kernel moves exactly
the bytes of the memory-traffic bound, with ``batch * n / BLOCK_N`` programs in flight to
hide the latency of the sequential dependency. Complex numbers travel as separate real and
imaginary planes (Triton has no complex type): ``x = a x + b`` becomes

    x_re <- a_re x_re - a_im x_im + b_re,    x_im <- a_re x_im + a_im x_re + b_im.

The backward pass needs no kernel of its own: :mod:`lru.scan`'s custom VJP runs the adjoint
recurrence through this same kernel in the opposite direction.

On a machine without a GPU the kernel runs in Pallas' interpreter (slow, for tests only), so
the method is available and tested everywhere.

Axis legend: ``b`` batch, ``t`` time, ``n`` state.
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


def _kernel(*refs, length: int, reverse: bool, varying: bool, is_complex: bool):
    """One program: batch row ``program_id(0)``, channels block ``program_id(1)``.

    ``refs`` holds, in order, the real planes then (complex only) the imaginary planes of
    ``a``, ``b`` and ``h0``, then the output planes of ``x``.
    """
    n_in = 6 if is_complex else 3
    ins, outs = refs[:n_in], refs[n_in:]
    if is_complex:
        ar_ref, ai_ref, br_ref, bi_ref, hr_ref, hi_ref = ins
        xr_ref, xi_ref = outs
    else:
        (ar_ref, br_ref, hr_ref), (xr_ref,) = ins, outs
    row = pl.program_id(0)
    cols = pl.ds(pl.program_id(1) * BLOCK_N, BLOCK_N)

    if not varying:
        a_re = ar_ref[cols]
        a_im = ai_ref[cols] if is_complex else None
    h = (hr_ref[row, cols], hi_ref[row, cols]) if is_complex else (hr_ref[row, cols],)

    def body(step, h):
        t = length - 1 - step if reverse else step
        ar = ar_ref[row, t, cols] if varying else a_re
        if is_complex:
            ai = ai_ref[row, t, cols] if varying else a_im
            h_re, h_im = h
            h = (ar * h_re - ai * h_im + br_ref[row, t, cols],
                 ar * h_im + ai * h_re + bi_ref[row, t, cols])
            xr_ref[row, t, cols] = h[0]
            xi_ref[row, t, cols] = h[1]
        else:
            h = (ar * h[0] + br_ref[row, t, cols],)
            xr_ref[row, t, cols] = h[0]
        return h

    lax.fori_loop(0, length, body, h)


def _compiler_params():
    """Triton settings on a GPU: one warp per program (32 channels, one per thread)."""
    from jax.experimental.pallas import triton as plt

    params = getattr(plt, "CompilerParams", None) or getattr(plt, "TritonCompilerParams")
    return params(num_warps=1, num_stages=1)


@functools.partial(jax.jit, static_argnames=("reverse",))
def pallas_recurrence(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
    """``x_t = a_t * x_{t-1} + b_t`` (or right to left) with the Pallas kernel.

    Args:
      a: ``(n,)`` or ``(b, t, n)``, float32 or complex64, the dtype of ``b``.
      b: ``(b, t, n)`` inputs.
      h0: ``(b, n)`` initial state.
      reverse: run right to left.

    Returns:
      ``x``: ``(b, t, n)``, the dtype of ``b``.
    """
    bsz, length, n = b.shape
    varying = a.ndim == 3
    is_complex = jnp.iscomplexobj(b)
    pad = -n % BLOCK_N
    if pad:  # zero channels: a = 0, b = 0 keep a zero state; sliced off below
        widths = ((0, 0),) * (a.ndim - 1) + ((0, pad),)
        a = jnp.pad(a, widths)
        b = jnp.pad(b, ((0, 0), (0, 0), (0, pad)))
        h0 = jnp.pad(h0, ((0, 0), (0, pad)))
    planes = (lambda z: (jnp.real(z), jnp.imag(z))) if is_complex else (lambda z: (z,))
    inputs = (*planes(a), *planes(b), *planes(h0))  # the order _kernel unpacks
    real_dtype = inputs[-1].dtype
    out_shape = [jax.ShapeDtypeStruct(b.shape, real_dtype)] * (2 if is_complex else 1)
    on_gpu = jax.default_backend() == "gpu"
    outs = pl.pallas_call(
        functools.partial(_kernel, length=length, reverse=reverse, varying=varying,
                          is_complex=is_complex),
        out_shape=out_shape,
        grid=(bsz, (n + pad) // BLOCK_N),
        interpret=not on_gpu,
        **({"compiler_params": _compiler_params()} if on_gpu else {}),
    )(*inputs)
    x = lax.complex(outs[0], outs[1]) if is_complex else outs[0]
    return x[..., :n] if pad else x
