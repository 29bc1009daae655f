"""lru.kernels.gelu.gelu: jax.nn.gelu's values, and gradients equal to its autodiff, over the range
GELU meets (and far beyond it, where the tanh saturates), in float32 and bfloat16."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lru.kernels.gelu import gelu

Z = np.concatenate([np.linspace(-12, 12, 2001), [-1e10, -1e4, -50.0, 0.0, 50.0, 1e4, 1e10]])


def _derivative64(z: np.ndarray) -> np.ndarray:
    """GELU's derivative in float64 (its limits, 0 and 1, where z^3 overflows)."""
    t = np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3))
    with np.errstate(all="ignore"):
        d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * z * z)
    return np.where(np.isfinite(d), d, (z > 0).astype(np.float64))


@pytest.mark.parametrize("dtype,atol", [(jnp.float32, 5e-6), (jnp.bfloat16, 2e-2)])
def test_values_and_gradients_equal_jax_gelu(dtype, atol):
    """Values: jax.nn.gelu's exactly. Gradients: as close to float64 as jax.nn.gelu's own
    autodiff, or within ``atol`` (1 - tanh^2 cancels in the tail in any form: float32 errs
    by up to 3.5e-6 there, bfloat16 by a few hundredths)."""
    z = jnp.asarray(Z, dtype)
    np.testing.assert_array_equal(np.asarray(gelu(z), np.float32),
                                  np.asarray(jax.nn.gelu(z), np.float32))
    w = jnp.asarray(np.random.default_rng(0).standard_normal(Z.shape), dtype)
    got = jax.grad(lambda z: jnp.sum(w * gelu(z)).astype(jnp.float32))(z)
    want = jax.grad(lambda z: jnp.sum(w * jax.nn.gelu(z)).astype(jnp.float32))(z)
    assert got.dtype == want.dtype == dtype
    ref = np.asarray(w, np.float64) * _derivative64(np.asarray(z, np.float64))
    err, err_jax = (float(np.max(np.abs(np.asarray(g, np.float64) - ref))) for g in (got, want))
    assert np.all(np.isfinite(np.asarray(got, np.float32)))
    assert err <= max(atol, 1.05 * err_jax), (err, err_jax)


def test_gradient_is_not_the_identity_or_a_constant():
    """The derivative has GELU's shape: 0.5 at 0, ~1 far right, ~0 far left, and its dip
    below 0 near z = -1.5 (checked against a central difference in float64)."""
    z = np.array([-8.0, -1.5, 0.0, 1.0, 8.0])
    got = np.asarray(jax.vmap(jax.grad(gelu))(jnp.asarray(z, jnp.float32)))
    f = lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    h = 1e-6
    np.testing.assert_allclose(got, (f(z + h) - f(z - h)) / (2 * h), rtol=1e-5, atol=1e-6)
    assert got[1] < 0 and abs(got[2] - 0.5) < 1e-6


def test_under_jit_and_vmap():
    z = jnp.linspace(-3, 3, 24).reshape(2, 3, 4)
    g = jax.jit(jax.vmap(jax.grad(lambda v: jnp.sum(gelu(v)))))(z)
    np.testing.assert_allclose(g, jax.vmap(jax.grad(lambda v: jnp.sum(jax.nn.gelu(v))))(z),
                               rtol=1e-6, atol=1e-6)
