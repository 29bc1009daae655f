"""The complex time-invariant recurrence's kernels on real ``[Re | Im]`` storage, with their
adjoints: :func:`planar_walk` (the XLA loop of :mod:`lru.kernels.loops` or the Pallas
kernel) and :func:`planar_native` (the compiled CPU kernel). :func:`lru.scan.planar_recurrence`
is the entry point; ``tests/test_scan.py`` checks each against the complex reference.

Axis legend: ``b`` batch, ``t`` time, ``n`` state. ``a_re, a_im: (n,)``; ``b, x, g:
(b, t, 2n)`` holding ``[Re | Im]``; ``mask: (b, t)``.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from lru.kernels import native
from lru.kernels.loops import planar_loop
from lru.kernels.pallas_scan import pallas_planar

Array = jax.Array


#: The walks :func:`planar_walk` runs on ``[Re | Im]`` storage, by method name.
PLANAR_WALKS: dict[str, Callable[..., Array]] = {
    "inplace": planar_loop,
    "pallas": pallas_planar,
}


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def planar_walk(a_re: Array, a_im: Array, b: Array, reverse: bool, method: str) -> Array:
    """A walk of :data:`PLANAR_WALKS` (the XLA loop, or the Pallas kernel) with its adjoint
    (:func:`_planar_walk_bwd`), which runs the same walk."""
    return PLANAR_WALKS[method](a_re, a_im, b, reverse)


def _planar_walk_fwd(a_re, a_im, b, reverse, method):
    x = PLANAR_WALKS[method](a_re, a_im, b, reverse)
    return x, (a_re, a_im, x)


def _planar_walk_bwd(reverse, method, residuals, g):
    """The adjoint ``lam_t = g_t + conj(a) lam_next(t)``: the same walk with ``conj(a)``, run
    the other way over ``g`` (over its buffer, for the loop); then ``d a_re = sum Re(conj(lam)
    x_prev)`` and ``d a_im = sum Im(conj(lam) x_prev)`` (the real gradients of the 2 x 2
    rotation-scaling each complex multiply is) in one reduction over ``lam`` and ``x`` shifted
    by a step, which runs on every core (measured: 2% faster in the training step than
    summing them in the loop's carry)."""
    a_re, a_im, x = residuals
    n = x.shape[2] // 2
    lam = PLANAR_WALKS[method](a_re, -a_im, g, not reverse)
    # x_prev_t: the state a multiplied going forward (zero before the first step)
    edge = jnp.zeros_like(x[:, :1])
    x_prev = (jnp.concatenate([x[:, 1:], edge], axis=1) if reverse
              else jnp.concatenate([edge, x[:, :-1]], axis=1))
    l_re, l_im, x_re, x_im = lam[..., :n], lam[..., n:], x_prev[..., :n], x_prev[..., n:]
    return ((l_re * x_re + l_im * x_im).sum(axis=(0, 1)),
            (l_im * x_re - l_re * x_im).sum(axis=(0, 1)), lam)


planar_walk.defvjp(_planar_walk_fwd, _planar_walk_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def planar_native(a_re: Array, a_im: Array, b: Array, mask: Array, reverse: bool) -> Array:
    """The compiled kernel (:mod:`lru.kernels.native`), inputs masked inside it, with its fused
    adjoint (``db = mask * lam`` and ``da`` in the same pass as ``lam``)."""
    return native.planar_forward(a_re, a_im, b, mask, reverse)


def _planar_native_fwd(a_re, a_im, b, mask, reverse):
    x = native.planar_forward(a_re, a_im, b, mask, reverse)
    return x, (a_re, a_im, x, mask)


def _planar_native_bwd(reverse, residuals, g):
    a_re, a_im, x, mask = residuals
    db, da_re, da_im = native.planar_adjoint(a_re, a_im, x, g, mask, reverse)
    return da_re, da_im, db, None


planar_native.defvjp(_planar_native_fwd, _planar_native_bwd)
