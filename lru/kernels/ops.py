"""The block's and the readout's fused operations: the library's one entry to them.

Each function computes the plain JAX expression it names; on a single CPU device, where it
was measured to pay (:func:`lru.kernels.backend.fused_pays`, ``docs/performance.md``), it
computes it through a hand-written VJP or compiled kernel of this room instead. Elsewhere
(GPUs, TPUs, a multi-device mesh) the plain form runs, until a measurement there says
otherwise. ``tests/test_ops.py`` checks each pair's values and gradients against each other.

Axis legend: ``d`` width, ``k`` input width, ``m`` output width; leading axes (``b``, ``t``)
are any.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from lru.kernels import batchnorm, glu, projection, recompute as recompute_kernel
from lru.kernels.backend import fused_pays
from lru.kernels.gelu import gelu as fused_gelu
from lru.precision import matmul

Array = jax.Array


def gelu(z: Array, approximate: bool = True) -> Array:
    """``jax.nn.gelu(z, approximate)``; fused: the derivative computed in the backward pass
    from ``z`` (:mod:`lru.kernels.gelu`), one ``(b, t, d)`` array less kept per block."""
    if fused_pays():
        return fused_gelu(z, approximate)
    return jax.nn.gelu(z, approximate=approximate)


def full_glu(g: Array, w1: Array, b1: Array, w2: Array, b2: Array, precision: str) -> Array:
    """``(g W1 + b1) * sigmoid(g W2 + b2)``: ``g (..., d)``, ``W1, W2 (d, d)`` (``x @ W``
    orientation, as ``nnx.Linear``'s kernels), ``b1, b2 (d,)``. Fused: one ``[W1 | W2]``
    product each way (:mod:`lru.kernels.glu`)."""
    if fused_pays():
        return glu.gated_linear_unit(g, jnp.concatenate([w1, w2], axis=1),
                                     jnp.concatenate([b1, b2]), precision)
    return (matmul(g, w1, precision) + b1) * jax.nn.sigmoid(matmul(g, w2, precision) + b2)


def residual_full_glu(u: Array, g: Array, w1: Array, b1: Array, w2: Array, b2: Array,
                      precision: str) -> Array:
    """``u + full_glu(g, ...)``: the skip around the full GLU, ``u (..., d)``. Fused: the
    gate and the skip in one compiled pass each way where the native kernels run
    (:func:`lru.kernels.glu.residual_gated_linear_unit`)."""
    if fused_pays():
        return glu.residual_gated_linear_unit(u, g, jnp.concatenate([w1, w2], axis=1),
                                              jnp.concatenate([b1, b2]), precision)
    return u + full_glu(g, w1, b1, w2, b2, precision)


def batch_norm(bn: nnx.BatchNorm, x: Array, mask: Array | None) -> Array:
    """``bn(x)`` in training mode with batch statistics over the valid positions ``mask``
    (``x (..., d)``, ``mask x.shape[:-1]`` or None), updating ``bn``'s running averages.
    Fused: :func:`lru.kernels.batchnorm.batch_norm_train`, the same function with a backward
    that keeps only ``x``."""
    if not fused_pays():
        return bn(x, mask=None if mask is None else mask[..., None])
    if mask is None:
        mask = jnp.ones(x.shape[:-1], bool)
    y, mean, var = batchnorm.batch_norm_train(x, mask, bn.scale[...], bn.bias[...], bn.epsilon)
    bn.mean[...] = jax.lax.stop_gradient(bn.momentum * bn.mean[...] + (1 - bn.momentum) * mean)
    bn.var[...] = jax.lax.stop_gradient(bn.momentum * bn.var[...] + (1 - bn.momentum) * var)
    return y


def project(x: Array, w: Array, precision: str) -> Array:
    """``x @ w.T``: ``x (..., k)``, ``w (m, k)`` -> ``(..., m)``. Fused: the weight gradient
    formed from the narrower side (:mod:`lru.kernels.projection`)."""
    if fused_pays():
        return projection.project(x, w, precision)
    return matmul(x, w.T, precision)


def recompute(fn: Callable, args: tuple, aux: tuple = ()):
    """``fn(*args, *aux)`` whose backward pass recomputes its intermediates from the saved
    inputs: ``jax.checkpoint``; fused: :func:`lru.kernels.recompute.recompute`, whose
    recomputations wait for their cotangents. ``aux`` holds arguments without gradients."""
    if fused_pays():
        return recompute_kernel.recompute(fn, tuple(args), tuple(aux))
    return jax.checkpoint(lambda a, x: fn(*a, *x))(tuple(args), tuple(aux))
