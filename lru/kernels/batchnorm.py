"""Training-mode BatchNorm over valid positions, with a hand-written backward.

Axis legend: ``b`` batch, ``t`` time, ``d`` channels.

The same function as Flax's ``nnx.BatchNorm`` with a mask in training mode (statistics over
the positions ``mask`` marks, the variance as ``E[x^2] - E[x]^2`` clipped at zero, Flax's
``use_fast_variance``; every position normalised with them), so :class:`lru.blocks.MaskedNorm`
keeps ``nnx.BatchNorm``'s parameters and running averages and evaluates with Flax.

Written out because of what XLA:CPU makes of Flax's form in the LRU training step: the
masked means become separate ``select`` passes before each reduction, the normalised output
is computed twice (once per shape its consumers read it in), and autodiff keeps
``x - mean`` as an extra activation. Here the forward is one reduction pass and one
normalisation pass, and the backward keeps only ``x`` (one reduction pass over ``dy`` and
``x``, one pass for ``dx``): 2-3% of the step and 48 MiB of its temporaries
(``docs/performance.md``). ``tests/test_batchnorm.py`` checks values, gradients and the
statistics against ``nnx.BatchNorm``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def batch_norm_train(x: Array, mask: Array, scale: Array, bias: Array,
                     epsilon: float) -> tuple[Array, Array, Array]:
    """Normalise ``x`` with the statistics of its valid positions.

    Args:
      x: ``(..., d)`` float inputs (every axis but the last is reduced over).
      mask: ``x.shape[:-1]`` booleans, True where a position counts for the statistics.
      scale, bias: ``(d,)``.
      epsilon: added to the variance.

    Returns:
      ``(y, mean, var)``: ``y = (x - mean) / sqrt(var + epsilon) * scale + bias`` at every
      position (``x.shape``), and the batch ``mean`` and ``var`` (``(d,)``) for the running
      averages. With no valid position both statistics are 0.
    """
    return _forward(x, mask, scale, bias, epsilon)[0]


def _count(mask: Array, dtype) -> Array:
    return jnp.maximum(jnp.sum(mask, dtype=dtype), 1)


def _forward(x, mask, scale, bias, epsilon):
    axes = tuple(range(x.ndim - 1))
    valid = mask[..., None]
    n = _count(mask, x.dtype)
    mean = jnp.sum(jnp.where(valid, x, 0), axes) / n
    var = jnp.maximum(jnp.sum(jnp.where(valid, jnp.square(x), 0), axes) / n - jnp.square(mean), 0)
    rstd = jax.lax.rsqrt(var + epsilon)
    k = rstd * scale
    y = x * k + (bias - mean * k)
    return (y, mean, var), (x, mask, mean, rstd, scale)


def _backward(epsilon, residuals, cotangents):
    del epsilon
    x, mask, mean, rstd, scale = residuals
    dy, dmean_out, dvar_out = cotangents
    axes = tuple(range(x.ndim - 1))
    n = _count(mask, x.dtype)
    k = rstd * scale
    sum_dy = jnp.sum(dy, axes)
    sum_dy_centred = jnp.sum(dy * x, axes) - mean * sum_dy  # sum dy (x - mean)
    # var = E[x^2] - mean^2 over valid positions; y reads mean and rstd = (var + eps)^-1/2
    dvar = -0.5 * rstd ** 3 * scale * sum_dy_centred + dvar_out
    dmean = -k * sum_dy + dmean_out - 2 * mean * dvar
    dx = dy * k + jnp.where(mask[..., None], (dmean + 2 * dvar * x) / n, 0)
    return dx, None, rstd * sum_dy_centred, sum_dy


batch_norm_train.defvjp(_forward, _backward)
