"""lru.kernels.glu: gated_linear_unit's hand-written VJP against autodiff of the plain two-product
GLU, and residual_gated_linear_unit's compiled gate kernel (lru/kernels/native.py) against the XLA
form: values, every gradient, many row chunks, saturated and NaN gates, bf16, vmap, and the
residual block's choice of it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import nnx

from lru.kernels import native
from lru.blocks import ResidualBlock
from lru.kernels.glu import gated_linear_unit, residual_gated_linear_unit
from test_models import Identity  # tests/ is on sys.path (rootdir-less test modules)
from test_precision import dot_operand_dtypes

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


needs_kernels = pytest.mark.skipif(not native.available(), reason="no C++ compiler here")


def _residual_inputs(shape, seed=0):
    g, w, bias, cot = _inputs(shape, seed)
    u = jax.random.normal(jax.random.PRNGKey(seed + 100), shape + (D,))
    return u, g, w, bias, cot


def _residual_value_and_grads(method, u, g, w, bias, cot, precision="fp32"):
    f = lambda u, g, w, bias: residual_gated_linear_unit(u, g, w, bias, precision, method)  # noqa: E731
    return jax.value_and_grad(lambda *a: jnp.sum(f(*a) * cot), argnums=(0, 1, 2, 3))(
        u, g, w, bias)


@needs_kernels
@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 4), (3, 300)],
                         ids=["t", "bt", "bxt", "bt-many-chunks"])
def test_native_residual_glu_matches_the_xla_form(shape):
    """u + GLU(g): values and the gradients of u, g, [W1 | W2] and [b1 | b2] (the kernel's
    chunked dbias included: 900 rows are 4 chunks) equal the XLA form's."""
    u, g, w, bias, cot = _residual_inputs(shape)
    out = residual_gated_linear_unit(u, g, w, bias, method="native")
    np.testing.assert_allclose(out, u + plain_glu(g, w, bias), rtol=1e-5, atol=1e-5)
    (v, grads), (v_ref, grads_ref) = (
        _residual_value_and_grads("native", u, g, w, bias, cot),
        _residual_value_and_grads("xla", u, g, w, bias, cot))
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    for name, got, ref in zip(("du", "dg", "dw", "dbias"), grads, grads_ref):
        assert got.shape == ref.shape and got.dtype == ref.dtype, name
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, err_msg=name)


@needs_kernels
def test_native_gate_sigmoid_is_accurate_saturates_and_passes_nan():
    """The kernel's own exp: with a1 = 1, u = 0 the output is sigmoid(a2), checked against
    jax.nn.sigmoid from -100 to 100 (saturating to 0 and 1 without inf or NaN); a NaN input
    gives NaN."""
    a2 = jnp.concatenate([jnp.linspace(-100.0, 100.0, 4001), jnp.asarray([jnp.nan])])
    a = jnp.stack([jnp.ones_like(a2), a2], axis=-1)  # d = 1: [a1 | a2]
    out = native.gate_forward(a, jnp.zeros(2), jnp.zeros((a2.shape[0], 1)))[:, 0]
    ref = jax.nn.sigmoid(a2)
    np.testing.assert_allclose(out[:-1], ref[:-1], rtol=4e-7, atol=1e-37)
    assert np.isnan(out[-1])
    assert out[0] >= 0 and out[-2] == 1.0


@needs_kernels
def test_native_gate_is_deterministic():
    u, g, w, bias, cot = _residual_inputs((4, 600), seed=3)
    f = jax.jit(lambda *a: _residual_value_and_grads("native", *a))
    first = f(u, g, w, bias, cot)
    for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(f(u, g, w, bias, cot))):
        np.testing.assert_array_equal(x, y)


@needs_kernels
def test_native_residual_glu_bf16_matches_the_xla_form():
    u, g, w, bias, cot = _residual_inputs((4, 6), seed=4)
    (v, grads), (v_ref, grads_ref) = (
        _residual_value_and_grads("native", u, g, w, bias, cot, "bf16"),
        _residual_value_and_grads("xla", u, g, w, bias, cot, "bf16"))
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    for got, ref in zip(grads, grads_ref):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@needs_kernels
def test_native_residual_glu_under_vmap_equals_one_call_each():
    u, g, w, bias, cot = _residual_inputs((3, 5, 4), seed=5)
    f = lambda u, g: residual_gated_linear_unit(u, g, w, bias, method="native")  # noqa: E731
    got = jax.vmap(f)(u, g)
    for i in range(3):
        np.testing.assert_allclose(got[i], f(u[i], g[i]), rtol=1e-6, atol=1e-6)


def test_method_is_checked_and_auto_keeps_to_xla_outside_float32():
    u, g, w, bias, _ = _residual_inputs((2, 3))
    with pytest.raises(ValueError, match=r"method='fast' is not valid; choose one of \('auto', 'xla', 'native'\)"):
        residual_gated_linear_unit(u, g, w, bias, method="fast")
    with jax.enable_x64(True):
        u64, g64 = u.astype(jnp.float64), g.astype(jnp.float64)
        jaxpr = str(jax.make_jaxpr(lambda u, g: residual_gated_linear_unit(u, g, w, bias))(
            u64, g64))
        assert "lru_glu_gate" not in jaxpr
        with pytest.raises(ValueError, match="'native' runs in float32"):
            residual_gated_linear_unit(u64, g64, w, bias, method="native")


@needs_kernels
@pytest.mark.parametrize("dropout, train, fused", [(0.0, True, True), (0.1, True, False),
                                                   (0.1, False, True)])
def test_residual_block_fuses_the_skip_unless_dropout_is_active(dropout, train, fused):
    """A full-GLU block takes the kernel when its dropout is off (rate 0, or evaluation)
    and keeps u + drop(GLU(g)) while dropout is active."""
    block = ResidualBlock(D, Identity(), glu="full_glu", dropout=dropout,
                          rngs=nnx.Rngs(0))
    block.train() if train else block.eval()
    u = jax.random.normal(jax.random.PRNGKey(6), (2, 5, D))
    graph, state = nnx.split(block)
    jaxpr = str(jax.make_jaxpr(lambda s, u: nnx.merge(graph, s)(u))(state, u))
    assert ("lru_glu_gate_forward" in jaxpr) == fused
