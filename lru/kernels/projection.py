"""``x @ w.T`` for a weight kept as ``(out, in)``, with a backward that XLA:CPU runs well.

Axis legend: ``b`` batch, ``t`` time; ``k`` input width, ``m`` output width.

The weight gradient of a projection over ``b * t`` tokens, ``dy^T x``, contracts the token
axis, and XLA:CPU's product wants that axis minor in its left operand: it transposes one
``(b t, .)`` activation first. Under plain autodiff XLA picks the operand from the output's
orientation (folding the final transpose into the product), which for the LRU's ``B``
(``k = d`` in, ``m = 2n`` out) means transposing the wide ``dy`` (``2n`` columns).
:func:`project` forms the gradient from the narrower side instead -- ``(x^T dy)^T`` when
``k <= m`` (the transpose of the small ``(k, m)`` result kept apart from the product by an
optimisation barrier, so XLA cannot fold it back), ``dy^T x`` otherwise -- and measured in
the LRU training step this removes a 32 MiB transpose per layer (docs/performance.md).
"""

from __future__ import annotations

import functools

import jax
from jax import lax

from lru.precision import check_precision, matmul

Array = jax.Array


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def project(x: Array, w: Array, precision: str = "fp32") -> Array:
    """``x @ w.T``: ``x (..., k)``, ``w (m, k)`` -> ``(..., m)``, at ``precision``
    (:mod:`lru.precision`: ``"fp32"``, or ``"bf16"`` operands with float32 accumulation, in
    the backward products too)."""
    return matmul(x, w.T, check_precision(precision))


def _project_fwd(x, w, precision):
    return project(x, w, precision), (x, w)


def _project_bwd(precision, residuals, dy):
    x, w = residuals
    m, k = w.shape
    dx = matmul(dy, w, precision).astype(x.dtype)
    x2, dy2 = x.reshape(-1, k), dy.reshape(-1, m)
    if k <= m:  # transpose x (k wide) for the product, then the small (k, m) result
        dw = lax.optimization_barrier(matmul(x2.T, dy2, precision)).T
    else:  # transpose dy (m wide)
        dw = matmul(dy2.T, x2, precision)
    return dx, dw.astype(w.dtype)


project.defvjp(_project_fwd, _project_bwd)
