"""GELU (tanh approximation, ``jax.nn.gelu``'s default) whose backward pass keeps only its
input.

    gelu(z) = z / 2 * (1 + tanh(c (z + 0.044715 z^3))),   c = sqrt(2 / pi)

Autodiff of ``jax.nn.gelu`` leaves XLA a ``tanh(...)`` array to keep for the backward pass
beside ``z`` (which the block keeps anyway: it is the mixer's output). Here the derivative
is computed from ``z`` in the backward pass instead, after the cotangent
(:func:`lru.ordering.after`): XLA:CPU otherwise computes a derivative that depends on ``z``
alone during the forward pass and keeps it, which is the array this function exists to
drop. One ``(b, t, d)`` array less per residual block (Path-X at the paper's batch: 24,076
-> 22,796 MiB planned), at the same speed. Values are ``jax.nn.gelu``'s; gradients equal its autodiff to float32
rounding (``tests/test_gelu.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lru.ordering import after

Array = jax.Array

_C = float(np.sqrt(2.0 / np.pi))
_K = 0.044715


@jax.custom_vjp
def gelu(z: Array) -> Array:
    """``jax.nn.gelu(z)`` (tanh approximation), any shape; the backward pass keeps ``z``."""
    return jax.nn.gelu(z)


def _gelu_fwd(z):
    return jax.nn.gelu(z), z


def _gelu_bwd(z, ct):
    (z,) = after(ct, z)
    t = jnp.tanh(_C * (z + _K * z ** 3))
    d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _C * (1 + 3 * _K * z * z)
    return (ct * d,)


gelu.defvjp(_gelu_fwd, _gelu_bwd)
