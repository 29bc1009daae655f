"""lru.kernels.ordering.after: values unchanged, dtypes kept, and a real data dependency on the
cotangent (what makes XLA schedule the work after it; the memory effect is checked in
tests/test_memory_scaling.py::test_recompute_states_keeps_less)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lru.kernels.ordering import after


def test_values_and_dtypes_unchanged():
    ct = jnp.asarray([[3.0, -2.0]])
    x, y = jnp.arange(4.0), jnp.asarray([1 + 2j], jnp.complex64)
    x2, y2 = after(ct, x, y)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert x2.dtype == x.dtype and y2.dtype == y.dtype


def test_depends_on_the_cotangent():
    """The result reads ct (a NaN there shows through), so no compiler can compute it first."""
    x = jnp.ones(3)
    (out,) = jax.jit(after)(jnp.asarray([jnp.nan, 1.0]), x)
    assert np.all(np.isnan(out))
    jaxpr = jax.make_jaxpr(after)(jnp.ones(2), x)
    ct_var = jaxpr.jaxpr.invars[0]
    assert any(v is ct_var for eqn in jaxpr.jaxpr.eqns for v in eqn.invars)
