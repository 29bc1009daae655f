"""The full GLU ``(g W1 + b1) * sigmoid(g W2 + b2)`` as one product each way, with its own VJP.

Axis legend: ``d`` model width; leading axes (``b``, ``t``) are any.

Written the plain way, the GLU is two ``d x d`` products forwards and four backwards (two for
``dg``, summed, and two weight gradients), and XLA:CPU runs such narrow products side by side
at a fraction of the rate one ``d x 2d`` product reaches. Concatenating ``W1`` and ``W2``
under autodiff does not help by itself: the slices' gradients are padded and summed, and the
split and the concatenation are materialised. :func:`gated_linear_unit` writes the backward
by hand instead, so each direction is one wide product:

* forward:  ``a = g [W1 | W2] + [b1 | b2]`` (``(..., 2d)``), ``z = a_1 * sigmoid(a_2)``;
* backward: ``D = [dz * s | dz * a_1 * s (1 - s)]`` with ``s = sigmoid(a_2)`` (one elementwise
  pass), ``dg = D [W1 | W2]^T`` (contracting ``2d``), ``d[W1 | W2] = g^T D``,
  ``d[b1 | b2] = sum D``.

The residuals are ``g`` and ``a``, as autodiff of the plain form would keep.

:func:`residual_gated_linear_unit` adds the residual block's skip, ``u + GLU(g)``. On a
single CPU device its elementwise work runs in a compiled kernel (:mod:`lru.kernels.native`:
``u + a_1 * sigmoid(a_2)`` in one pass forwards, ``D`` and ``d[b1 | b2]`` in one pass
backwards), where XLA:CPU made two passes forwards and three backwards plus a reduction
for the bias: 2-4% of the LRU training step (``docs/performance.md``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lru.choices import check_choice
from lru.kernels import native
from lru.precision import matmul

Array = jax.Array

#: ``method`` values of :func:`residual_gated_linear_unit`.
GATE_METHODS: tuple[str, ...] = ("auto", "xla", "native")


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def gated_linear_unit(g: Array, w: Array, bias: Array, precision: str = "fp32") -> Array:
    """``(g @ w[:, :d] + bias[:d]) * sigmoid(g @ w[:, d:] + bias[d:])``.

    Args:
      g: ``(..., d)`` input.
      w: ``(d, 2d)``, ``[W1 | W2]`` (kernels in ``x @ W`` orientation, as ``nnx.Linear``'s).
      bias: ``(2d,)``, ``[b1 | b2]``.
      precision: ``"fp32"`` or ``"bf16"`` (:mod:`lru.precision`), for all three products.

    Returns:
      ``(..., d)``.
    """
    return _glu_forward(g, w, bias, precision)[0]


def _glu_forward(g, w, bias, precision):
    d = g.shape[-1]
    a = matmul(g, w, precision) + bias
    return a[..., :d] * jax.nn.sigmoid(a[..., d:]), a


def _glu_fwd(g, w, bias, precision):
    z, a = _glu_forward(g, w, bias, precision)
    return z, (g, w, a, bias)


def _glu_bwd(precision, residuals, dz):
    g, w, a, bias = residuals
    d = g.shape[-1]
    s = jax.nn.sigmoid(a[..., d:])
    da = jnp.concatenate([dz * s, dz * a[..., :d] * s * (1 - s)], axis=-1)  # (..., 2d)
    dg, dw = _product_grads(g, w, da, precision)
    return dg, dw, da.reshape(-1, 2 * d).sum(axis=0).astype(bias.dtype)


def _product_grads(g, w, da, precision):
    """``dg = D [W1 | W2]^T`` and ``d[W1 | W2] = g^T D`` (tokens flattened) for ``D = da``."""
    d = g.shape[-1]
    dg = matmul(da, w.T, precision).astype(g.dtype)
    dw = matmul(g.reshape(-1, d).T, da.reshape(-1, 2 * d), precision).astype(w.dtype)
    return dg, dw


gated_linear_unit.defvjp(_glu_fwd, _glu_bwd)


def residual_gated_linear_unit(u: Array, g: Array, w: Array, bias: Array,
                               precision: str = "fp32", method: str = "auto") -> Array:
    """``u + gated_linear_unit(g, w, bias)``: the full GLU and the skip around it.

    Args:
      u: ``(..., d)``, the block's input (the skip).
      g, w, bias, precision: as :func:`gated_linear_unit`.
      method: ``"xla"`` (``u +`` :func:`gated_linear_unit`), ``"native"`` (the gate and the
        skip in the compiled kernel; float32 ``u`` and ``g``), or ``"auto"``: ``"native"``
        where the kernels run (:func:`lru.kernels.native.runs_here`) and the inputs are float32.

    Returns:
      ``(..., d)``.
    """
    check_choice("residual_gated_linear_unit: method", method, GATE_METHODS)
    float32 = u.dtype == jnp.float32 and g.dtype == jnp.float32
    if method == "auto":
        method = "native" if float32 and native.runs_here() else "xla"
    if method == "xla":
        return u + gated_linear_unit(g, w, bias, precision)
    if not float32:
        raise ValueError(f"residual_gated_linear_unit: method 'native' runs in float32; got "
                         f"u {u.dtype} and g {g.dtype} (use method='auto' or 'xla')")
    return _native_residual_glu(u, g, w, bias, precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _native_residual_glu(u, g, w, bias, precision):
    return native.gate_forward(matmul(g, w, precision), bias, u)


def _native_fwd(u, g, w, bias, precision):
    a = matmul(g, w, precision)  # (..., 2d), before the bias: the kernels add it
    return native.gate_forward(a, bias, u), (g, w, a, bias)


def _native_bwd(precision, residuals, dout):
    g, w, a, bias = residuals
    da, dbias = native.gate_backward(a, bias, dout)
    dg, dw = _product_grads(g, w, da, precision)
    return dout, dg, dw, dbias.astype(bias.dtype)


_native_residual_glu.defvjp(_native_fwd, _native_bwd)
