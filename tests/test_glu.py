"""lru.glu.gated_linear_unit: the hand-written VJP against autodiff of the plain two-product GLU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lru.glu import gated_linear_unit
from test_precision import dot_operand_dtypes  # tests/ is on sys.path (rootdir-less test modules)

D = 8


def plain_glu(g, w, bias):
    """``(g W1 + b1) * sigmoid(g W2 + b2)`` with two separate products (autodiff's way)."""
    w1, w2, b1, b2 = w[:, :D], w[:, D:], bias[:D], bias[D:]
    return (g @ w1 + b1) * jax.nn.sigmoid(g @ w2 + b2)


def _inputs(shape, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    g = jax.random.normal(k[0], shape + (D,))
    w = jax.random.normal(k[1], (D, 2 * D)) / np.sqrt(D)
    bias = jax.random.normal(k[2], (2 * D,))
    cot = jax.random.normal(k[3], shape + (D,))
    return g, w, bias, cot


def _value_and_grads(f, g, w, bias, cot):
    return jax.value_and_grad(lambda *a: jnp.sum(f(*a) * cot), argnums=(0, 1, 2))(g, w, bias)


@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 4)], ids=["t", "bt", "bxt"])
def test_values_and_grads_match_autodiff_of_the_plain_glu(shape):
    g, w, bias, cot = _inputs(shape)
    out = jax.jit(gated_linear_unit)(g, w, bias)
    np.testing.assert_allclose(out, plain_glu(g, w, bias), rtol=1e-5, atol=1e-6)
    (v, grads), (v_ref, grads_ref) = (
        _value_and_grads(jax.jit(gated_linear_unit), g, w, bias, cot),
        _value_and_grads(plain_glu, g, w, bias, cot))
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    for name, got, ref in zip(("dg", "dw", "dbias"), grads, grads_ref):
        assert got.shape == ref.shape and got.dtype == ref.dtype, name
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, err_msg=name)


def test_gradient_check_is_sensitive_to_the_gate_derivative():
    """Sanity: dropping the sigmoid's derivative (s instead of s (1 - s)) is caught."""
    g, w, bias, cot = _inputs((3, 7), seed=1)
    _, (dg, dw, _) = _value_and_grads(plain_glu, g, w, bias, cot)
    wrong = lambda g, w, bias: (g @ w[:, :D] + bias[:D]) * jnp.exp(
        jax.lax.stop_gradient(jnp.log(jax.nn.sigmoid(g @ w[:, D:] + bias[D:]))))
    _, (dg_wrong, dw_wrong, _) = _value_and_grads(wrong, g, w, bias, cot)
    assert np.abs(np.asarray(dw - dw_wrong)).max() > 1e-2
    _, (dg_ours, dw_ours, _) = _value_and_grads(gated_linear_unit, g, w, bias, cot)
    np.testing.assert_allclose(dw_ours, dw, rtol=1e-4, atol=1e-5)


def test_bf16_products_are_bf16_and_close():
    """bf16: the forward product and both backward products take bfloat16 operands and
    accumulate in float32; the result stays near the float32 GLU."""
    g, w, bias, cot = _inputs((4, 6), seed=2)
    f = lambda g, w, bias: gated_linear_unit(g, w, bias, "bf16")  # noqa: E731
    loss = lambda g, w, bias: jnp.sum(f(g, w, bias) * cot)  # noqa: E731
    dots = dot_operand_dtypes(jax.grad(loss, argnums=(0, 1, 2)), g, w, bias)
    assert len(dots) == 3, dots  # a = g [W1|W2]; dg = D [W1|W2]^T; d[W1|W2] = g^T D
    assert all(d == ("bfloat16", "bfloat16", "float32") for d in dots), dots
    (v, grads), (v_ref, grads_ref) = (_value_and_grads(f, g, w, bias, cot),
                                      _value_and_grads(plain_glu, g, w, bias, cot))
    assert all(x.dtype == jnp.float32 for x in (v, *grads))
    np.testing.assert_allclose(v, v_ref, rtol=3e-2, atol=3e-2)
    for got, ref in zip(grads, grads_ref):
        np.testing.assert_allclose(got, ref, rtol=5e-2, atol=5e-2)
        assert np.abs(np.asarray(got - ref)).max() > 0  # really rounded
