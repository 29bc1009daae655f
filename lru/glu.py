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
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lru.precision import matmul

Array = jax.Array


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
    dg = matmul(da, w.T, precision).astype(g.dtype)
    g2, da2 = g.reshape(-1, d), da.reshape(-1, 2 * d)
    dw = matmul(g2.T, da2, precision).astype(w.dtype)
    return dg, dw, da2.sum(axis=0).astype(bias.dtype)


gated_linear_unit.defvjp(_glu_fwd, _glu_bwd)
