"""Tests for ``lru.layers.rglru``: the RG-LRU and CG-LRU of Griffin against float64 NumPy
loops of the paper's equations (resets included), the bounded-derivative square root, the
ring initialisation, the block-diagonal gates, step-by-step decoding, and the ladder layer.

The references below are written from the equations with the layer's own parameters; they
share no code with the layer (no ``lru.scan``, no ``jax.nn``). Shapes are tiny, seeds fixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import linalg, stats

from lru.layers import RGLRU, RGLRULayer
from lru.layers.rglru import (MAX_SQRT_GRADIENT, BlockDiagonalLinear, base_decay,
                              ring_a_param, sqrt_bound_derivative)
from lru.scan import ALL_METHODS

BATCH, TIME, WIDTH, BLOCKS = 2, 9, 8, 2
#: Row 0: one document; row 1: documents starting at t = 0, 4 and 7.
SEGMENT_POS = np.array([np.arange(TIME), [0, 1, 2, 3, 0, 1, 2, 0, 1]])


def as64(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softplus(z):
    return np.log1p(np.exp(z))


def dense_block_diag(gate) -> tuple[np.ndarray, np.ndarray]:
    """A BlockDiagonalLinear's ``(W (d, n), bias (n,))`` as one dense matrix."""
    w, b = as64(gate.w[...]), as64(gate.b[...])
    return linalg.block_diag(*w), b.reshape(-1)


def reference_rglru(layer: RGLRU, x, segment_pos, h0=None):
    """The RG-LRU / CG-LRU by a float64 loop over time, straight from the equations."""
    x = as64(x)
    batch, time, _ = x.shape
    n = layer.n
    wa, ba = dense_block_diag(layer.a_gate)
    wx, bx = dense_block_diag(layer.input_gate)
    log_a = -softplus(as64(layer.a_param[...]))  # log of the base decay a
    theta = as64(layer.theta[...]) if layer.complex else 0.0
    h = np.zeros((batch, n), np.complex128) if h0 is None else np.asarray(h0, np.complex128)
    ys = []
    for t in range(time):
        r = sigmoid(x[:, t] @ wa + ba)
        i = sigmoid(x[:, t] @ wx + bx)
        xt = x[:, t, :n] + 1j * x[:, t, n:] if layer.complex else x[:, t]
        a_t = np.exp(layer.c * r * (log_a + 1j * theta))  # a^(c r_t), times e^(i c r_t theta)
        reset = (np.asarray(segment_pos)[:, t] == 0)[:, None]
        scale = np.where(reset, 1.0, np.sqrt(1.0 - np.abs(a_t) ** 2))
        h = np.where(reset, 0.0, a_t) * h + scale * (i * xt)
        ys.append(np.concatenate([h.real, h.imag], -1) if layer.complex else h.real)
    return np.stack(ys, 1), h


def make_x(seed=0, shape=(BATCH, TIME, WIDTH)):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


# --------------------------------------------------------------------------- equations


@pytest.mark.parametrize("complex_", [False, True])
def test_matches_float64_loop_with_resets_and_initial_state(complex_):
    layer = RGLRU(WIDTH, num_blocks=BLOCKS, complex=complex_, rngs=nnx.Rngs(0))
    x = make_x(1)
    n = layer.n
    h0 = np.asarray(jax.random.normal(jax.random.key(2), (BATCH, n)))
    h0 = h0 + 1j * h0[::-1] if complex_ else h0
    y, h_last = layer(x, jnp.asarray(SEGMENT_POS), h0=jnp.asarray(h0))
    y_ref, h_ref = reference_rglru(layer, x, SEGMENT_POS, h0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_last, h_ref if complex_ else h_ref.real, rtol=1e-5, atol=1e-6)
    assert h_last.dtype == (jnp.complex64 if complex_ else jnp.float32)
    # row 0 starts a document at t = 0 (no segment_pos given means exactly this)
    y_default, _ = layer(x[:1], h0=jnp.asarray(h0[:1]))
    np.testing.assert_allclose(y_default, y[:1], rtol=1e-6, atol=1e-7)


def test_reset_forgets_the_state_and_skips_the_rescaling():
    layer = RGLRU(WIDTH, num_blocks=BLOCKS, rngs=nnx.Rngs(3))
    x = make_x(4)
    seg = jnp.asarray(SEGMENT_POS)
    y, _ = layer(x, seg, h0=jnp.ones((BATCH, WIDTH)))
    # changing everything before the reset at t = 4 (row 1) changes nothing from t = 4 on
    x2 = x.at[1, :4].set(make_x(5)[1, :4])
    y2, _ = layer(x2, seg, h0=jnp.zeros((BATCH, WIDTH)))
    np.testing.assert_allclose(y2[1, 4:], y[1, 4:], rtol=1e-6)
    # at a reset, h_t = i_t x_t exactly (no sqrt(1 - a_t^2) factor)
    gate = jax.nn.sigmoid(layer.input_gate(x))
    np.testing.assert_allclose(y[1, 4], (gate * x)[1, 4], rtol=1e-6)


def test_scan_methods_agree_and_gradients_match_a_plain_loop():
    """The input-dependent ``a_t`` goes through every scan kernel and its custom VJP."""
    layer = RGLRU(WIDTH, num_blocks=BLOCKS, rngs=nnx.Rngs(6))
    x = make_x(7)
    seg = jnp.asarray(SEGMENT_POS)
    outs = {}
    for method in ("sequential", "associative", "chunked", "inplace", "native"):
        assert method in ALL_METHODS
        layer.scan_method = method
        outs[method] = layer(x, seg)[0]
    for y in outs.values():
        np.testing.assert_allclose(y, outs["sequential"], rtol=1e-5, atol=1e-6)

    graphdef, params = nnx.split(layer)

    def loss_scan(params, x):
        return jnp.sum(jnp.sin(nnx.merge(graphdef, params)(x, seg)[0]))

    def loss_loop(params, x):  # the same coefficients, recurrence by a Python loop
        a, b = nnx.merge(graphdef, params).coefficients(x, seg)
        h, ys = jnp.zeros((BATCH, WIDTH)), []
        for t in range(TIME):
            h = a[:, t] * h + b[:, t]
            ys.append(h)
        return jnp.sum(jnp.sin(jnp.stack(ys, 1)))

    g_scan = jax.grad(loss_scan, argnums=(0, 1))(params, x)
    g_loop = jax.grad(loss_loop, argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(g_scan), jax.tree.leaves(g_loop)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_step_by_step_equals_parallel():
    for complex_ in (False, True):
        layer = RGLRU(WIDTH, num_blocks=BLOCKS, complex=complex_, rngs=nnx.Rngs(8))
        x, seg = make_x(9), jnp.asarray(SEGMENT_POS)
        y, h_last = layer(x, seg)
        y_pre, h = layer(x[:, :3], seg[:, :3])
        steps = [y_pre]
        for t in range(3, TIME):
            y_t, h = layer(x[:, t:t + 1], seg[:, t:t + 1], h0=h)
            steps.append(y_t)
        np.testing.assert_allclose(jnp.concatenate(steps, 1), y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h, h_last, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the square root


def test_sqrt_bound_derivative_value_and_documented_gradient():
    m = MAX_SQRT_GRADIENT
    x = jnp.array([0.0, 1e-9, 1 / (4 * m**2), 1e-6, 0.01, 0.25, 1.0], jnp.float32)
    np.testing.assert_array_equal(sqrt_bound_derivative(x, m), jnp.sqrt(x))
    grad = jax.vmap(jax.grad(lambda v: sqrt_bound_derivative(v, m)))(x)
    expected = 1.0 / (2.0 * np.sqrt(np.maximum(as64(x), 1.0 / (4.0 * m**2))))
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    assert float(grad[0]) == pytest.approx(m) and float(grad.max()) <= m * (1 + 1e-6)
    # away from zero it is the true derivative of sqrt
    np.testing.assert_allclose(grad[3:], jax.vmap(jax.grad(jnp.sqrt))(x[3:]), rtol=1e-6)
    # a smaller bound caps earlier
    g = jax.grad(lambda v: sqrt_bound_derivative(v, 2.0))(jnp.float32(0.01))
    assert float(g) == pytest.approx(2.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gradients_stay_finite_when_the_decay_reaches_one(dtype):
    """a_param -> -inf puts a = 1 - tiny, so 1 - a_t^2 rounds to 0: an unbounded sqrt would
    give an infinite derivative there; the bounded one keeps every gradient finite."""
    layer = RGLRU(WIDTH, num_blocks=BLOCKS, rngs=nnx.Rngs(10))
    layer.a_param[...] = jnp.full((WIDTH,), -40.0)
    graphdef, params = nnx.split(layer)
    x = make_x(11).astype(dtype)

    def loss(params):
        return jnp.sum(nnx.merge(graphdef, params)(x)[0].astype(jnp.float32))

    grads = jax.grad(loss)(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    # the control: the same recurrence with jnp.sqrt has a non-finite gradient
    a_sq = jnp.exp(2 * -8.0 * 0.5 * jax.nn.softplus(jnp.float32(-40.0)))
    assert float(1 - a_sq) == 0.0
    assert not np.isfinite(float(jax.grad(lambda z: jnp.sqrt(1 - z))(a_sq)))


# --------------------------------------------------------------------------- initialisation


def test_ring_init_follows_the_released_code_by_default():
    n = 4000
    a = np.asarray(base_decay(ring_a_param(jax.random.key(0), n)), np.float64)
    assert a.min() >= 0.9 - 1e-6 and a.max() <= 0.999 + 1e-6
    # uniform by area: a^2 ~ U[0.9^2, 0.999^2]
    lo, hi = 0.9**2, 0.999**2
    assert stats.kstest(a**2, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
    # the paper's convention: a^c on the ring (c = 8), so a itself is closer to 1
    a_paper = np.asarray(base_decay(ring_a_param(jax.random.key(0), n, ring="a^c")), np.float64)
    ac = a_paper**8
    assert ac.min() >= 0.9 - 1e-5 and ac.max() <= 0.999 + 1e-5
    assert stats.kstest(ac**2, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
    assert a_paper.min() > 0.98  # control: the two conventions differ
    assert stats.kstest(a_paper**2, stats.uniform(lo, hi - lo).cdf).pvalue < 1e-3
    layer = RGLRU(16, complex=True, rngs=nnx.Rngs(0))
    assert layer.a_param.shape == (8,) and 0 <= float(layer.theta[...].min())
    assert float(layer.theta[...].max()) <= 2 * np.pi / 8


def test_block_diagonal_gates_are_dense_maps_with_zero_off_diagonal_blocks():
    for blocks, (d_in, d_out) in [(1, (6, 6)), (2, (8, 8)), (4, (8, 4)), (8, (8, 8))]:
        gate = BlockDiagonalLinear(d_in, d_out, blocks, rngs=nnx.Rngs(blocks))
        assert gate.w.shape == (blocks, d_in // blocks, d_out // blocks)
        x = make_x(12, (3, d_in))
        w, b = dense_block_diag(gate)
        np.testing.assert_allclose(gate(x), as64(x) @ w + b, rtol=1e-5, atol=1e-6)
    # the number of blocks is the layer's choice
    assert RGLRU(WIDTH, num_blocks=4, rngs=nnx.Rngs(0)).a_gate.w.shape == (4, 2, 2)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="must divide both"):
        RGLRU(WIDTH, num_blocks=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="width must be even"):
        RGLRU(7, complex=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="'a' or the paper"):
        RGLRU(WIDTH, ring="lambda", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="scan_method"):
        RGLRU(WIDTH, scan_method="fast", rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- ladder layer


@pytest.mark.parametrize("bidirectional", [False, True])
def test_ladder_layer_ignores_padding(bidirectional):
    layer = RGLRULayer(6, WIDTH, num_blocks=BLOCKS, bidirectional=bidirectional,
                       rngs=nnx.Rngs(13))
    u = make_x(14, (2, TIME, 6))
    lengths = np.array([TIME, 5])
    mask = jnp.arange(TIME)[None] < jnp.asarray(lengths)[:, None]
    y = layer(u.at[1, 5:].set(100.0), mask)
    y_alone = layer(u[1:, :5], jnp.ones((1, 5), bool))
    np.testing.assert_allclose(y[1, :5], y_alone[0], rtol=1e-5, atol=1e-5)
    assert y.shape == u.shape


def test_ladder_layer_forward_direction_is_the_rglru_in_the_lru_frame():
    layer = RGLRULayer(6, WIDTH, num_blocks=BLOCKS, rngs=nnx.Rngs(15))
    u = make_x(16, (2, TIME, 6))
    x = as64(u) @ as64(layer.B[...]).T
    h, _ = reference_rglru(layer.rg_lru, x, np.tile(np.arange(TIME), (2, 1)))
    expected = h @ as64(layer.C[...]).T + as64(layer.D[...]) * as64(u)
    np.testing.assert_allclose(layer(u), expected, rtol=1e-4, atol=1e-5)


def test_works_in_nnx_tree_mode_through_jit():
    layer = RGLRULayer(6, WIDTH, num_blocks=BLOCKS, complex=True, rngs=nnx.Rngs(0))
    u = make_x(17, (2, TIME, 6))
    eager = layer(u)
    with nnx.set_graph_mode(False):
        y = jax.jit(lambda m, v: m(v))(layer, u)
    np.testing.assert_allclose(y, eager, rtol=1e-5, atol=1e-5)
