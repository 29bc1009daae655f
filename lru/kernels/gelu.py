"""GELU whose backward pass keeps only its input: ``jax.nn.gelu(z, approximate)``'s values,
either variant, with the derivative of that same variant.

    approximate=True:   gelu(z) = z / 2 * (1 + tanh(c (z + 0.044715 z^3))),  c = sqrt(2 / pi)
    approximate=False:  gelu(z) = z Phi(z),  gelu'(z) = Phi(z) + z phi(z)

Autodiff of ``jax.nn.gelu`` leaves XLA a ``tanh(...)`` array to keep for the backward pass
beside ``z`` (which the block keeps anyway: it is the mixer's output). Here the derivative
is computed from ``z`` in the backward pass instead, after the cotangent
(:func:`lru.kernels.ordering.after`): XLA:CPU otherwise computes a derivative that depends on ``z``
alone during the forward pass and keeps it, which is the array this function exists to
drop. One ``(b, t, d)`` array less per residual block (Path-X at the paper's batch: 24,076
-> 22,796 MiB planned), at the same speed. Values are ``jax.nn.gelu``'s; gradients equal its autodiff to float32
rounding (``tests/test_gelu.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf

from lru.kernels.ordering import after

Array = jax.Array

_C = float(np.sqrt(2.0 / np.pi))
_K = 0.044715


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def gelu(z: Array, approximate: bool = True) -> Array:
    """``jax.nn.gelu(z, approximate)``, any shape; the backward pass keeps ``z``."""
    return jax.nn.gelu(z, approximate=approximate)


def _gelu_fwd(z, approximate):
    return jax.nn.gelu(z, approximate=approximate), z


def _gelu_bwd(approximate, z, ct):
    (z,) = after(ct, z)
    if approximate:
        t = jnp.tanh(_C * (z + _K * z ** 3))
        d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _C * (1 + 3 * _K * z * z)
    else:  # Phi(z) + z phi(z)
        d = 0.5 * (1 + erf(z / np.sqrt(2.0))) + z * jnp.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return (ct * d,)


gelu.defvjp(_gelu_fwd, _gelu_bwd)
