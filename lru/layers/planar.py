"""A complex diagonal SSM's map ``u -> Re(C x)`` on real ``[Re | Im]`` storage (LRU, S5).

Axis legend: ``b`` batch, ``t`` time, ``d`` model width, ``n`` (complex) state, ``k``
directions (2 when bidirectional).

``B u`` is one real product producing ``[Re Bu | Im Bu]``, :func:`lru.scan.planar_recurrence`
runs the complex recurrence on those halves (once per direction), and
``Re(C x) = [Re x | Im x] [Re C | -Im C]^T`` is one real product reading them, so no complex
array is packed or unpacked, forwards or backwards.

With ``recompute=True`` the backward pass keeps only the map's inputs and computes ``B u``
and the states again (:func:`lru.kernels.ops.recompute`): the states are ``2n / d`` arrays
of the layer's input size per direction, the largest thing a training step keeps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lru.kernels import ops
from lru.scan import planar_recurrence

Array = jax.Array


def planar_readout(u: Array, w_in: Array, a: Array, c_re: Array, c_im: Array, *,
                   mask: Array | None, bidirectional: bool, method: str,
                   precision: str, recompute: bool = False) -> Array:
    """``Re(C x)`` for the states ``x_t = a x_{t-1} + B u_t`` (and ``x_t = a x_{t+1} + B u_t``
    read by the second half of ``C``'s columns when bidirectional).

    Args:
      u: ``(b, t, d)`` real inputs.
      w_in: ``(2n, d)``: ``[Re B; Im B]``.
      a: ``(n,)`` complex decay.
      c_re, c_im: ``(d, k n)``: the real and imaginary parts of ``C`` (forward columns, then
        backward).
      mask: optional ``(b, t)`` booleans; padding inputs count as zero.
      bidirectional: run both directions.
      method: :func:`lru.scan.planar_recurrence`'s method.
      precision: of both products (:mod:`lru.precision`).
      recompute: keep only the inputs for the backward pass and compute the states again
        there (the same gradients; one more ``B`` product and forward scan per direction).

    Returns:
      ``(b, t, d)``.
    """
    readout = functools.partial(_readout, bidirectional=bidirectional, method=method,
                                precision=precision)
    if recompute:
        return ops.recompute(readout, (u, w_in, a, c_re, c_im), (mask,))
    return readout(u, w_in, a, c_re, c_im, mask)


def _readout(u, w_in, a, c_re, c_im, mask, *, bidirectional, method, precision):
    """:func:`planar_readout`'s computation."""
    with jax.named_scope("B"):  # named scopes label the ops in profiles (bench/profile_step.py)
        bu = ops.project(u, w_in, precision)  # (b, t, 2n): [Re | Im]
    with jax.named_scope("recurrence"):
        xs = [planar_recurrence(a, bu, mask=mask, reverse=reverse, method=method)
              for reverse in ((False, True) if bidirectional else (False,))]
    with jax.named_scope("C"):
        # C's columns per direction as [Re C | -Im C], matching x's [Re | Im] halves: (d, 2n)
        # each. One product per direction, summed: concatenating the directions' states for
        # one product kept a third (b, t, 4n) copy of them for the backward (the Path-X
        # step's temporaries: 9.1 -> 6.1 GiB at batch 8; docs/performance.md).
        d, n = c_re.shape[0], a.shape[0]
        c = jnp.stack([c_re.reshape(d, len(xs), n), -c_im.reshape(d, len(xs), n)], axis=2)
        return sum(ops.project(x, c[:, i].reshape(d, 2 * n), precision)
                   for i, x in enumerate(xs))
