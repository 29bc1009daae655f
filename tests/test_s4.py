"""Tests for ``lru.layers.s4.S4``.

The Cauchy/Woodbury kernel is checked against a numpy float64 reference that materialises
the dense DPLR matrix from the layer's parameters, discretises it and powers it up; the
FFT convolution against the layer's step-by-step recurrent mode (values and gradients) and
against a direct ``np.convolve``; the initialisation against HiPPO-LegS. Seeds are fixed and
shapes small.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.layers.hippo import legs, legs_normal
from lru.layers.s4 import S4
from lru.training.optim import BASE, RECURRENT, param_labels

BATCH, TIME, D_MODEL, D_STATE = 2, 16, 3, 8


@pytest.fixture
def x64():
    """float64 for the duration of one test, restored afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def params_of(layer: nnx.Module) -> dict[str, jax.Array]:
    return {str(k): v[...] for k, v in nnx.state(layer, nnx.Param).items()}


def to_float64(layer: nnx.Module) -> nnx.Module:
    state = nnx.state(layer, nnx.Param)
    nnx.update(layer, jax.tree_util.tree_map(lambda v: v.astype(jnp.float64), state))
    return layer


def make_input(seed, shape=(BATCH, TIME, D_MODEL), dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


def full(x):
    return np.concatenate([x, np.conj(x)], axis=-1)


def ref_kernel(layer: S4, length: int, fold: int) -> np.ndarray:
    """``K[c, h, l] = Re(C A_bar^l B_bar)`` from the dense DPLR matrix, numpy float64.

    ``A = diag(Lambda) - P P^*`` (conjugate-symmetric full state), bilinear discretisation,
    ``C = C~ (I - A_bar^fold)^{-1}``; written from the paper, not from the layer's methods.
    """
    p = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
    lam = full(np.minimum(p["Lambda_re"], -1e-4) + 1j * p["Lambda_im"])
    P = full(p["P"][..., 0] + 1j * p["P"][..., 1])
    B = full(p["B"][..., 0] + 1j * p["B"][..., 1])
    Ct = full(p["C"][..., 0] + 1j * p["C"][..., 1])
    dt = np.exp(p["log_dt"])
    n = lam.shape[-1]
    K = np.zeros(Ct.shape[:2] + (length,))
    for h in range(lam.shape[0]):
        A = np.diag(lam[h]) - np.outer(P[h], P[h].conj())
        inv = np.linalg.inv(np.eye(n) - dt[h] / 2 * A)
        A_bar = inv @ (np.eye(n) + dt[h] / 2 * A)
        B_bar = inv @ (dt[h] * B[h])
        for c in range(Ct.shape[0]):
            C = Ct[c, h] @ np.linalg.inv(np.eye(n) - np.linalg.matrix_power(A_bar, fold))
            x = B_bar
            for l in range(length):
                K[c, h, l] = (C @ x).real
                assert abs((C @ x).imag) < 1e-9  # the full system is real
                x = A_bar @ x
    return K


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("bidirectional", [False, True])
def test_parameter_names_shapes_and_groups(bidirectional):
    layer = S4(D_MODEL, D_STATE, bidirectional=bidirectional, rngs=nnx.Rngs(0))
    d, m, k = D_MODEL, D_STATE // 2, 2 if bidirectional else 1
    shapes = {k_: tuple(v.shape) for k_, v in params_of(layer).items()}
    assert shapes == {"Lambda_re": (d, m), "Lambda_im": (d, m), "P": (d, m, 2),
                      "B": (d, m, 2), "C": (k, d, m, 2), "D": (d,), "log_dt": (d,)}
    for v in params_of(layer).values():
        assert v.dtype == jnp.float32
    assert S4.RECURRENT_PARAMS <= set(shapes)
    labels = {str(k_): v for k_, v in param_labels(layer).items()}
    assert {k_ for k_, v in labels.items() if v == RECURRENT} == set(S4.RECURRENT_PARAMS)
    assert {k_ for k_, v in labels.items() if v == BASE} == {"C", "D"}
    u = make_input(1)
    y = layer(u)
    assert y.shape == u.shape and y.dtype == jnp.float32
    assert layer.kernel(TIME).shape == (k, d, TIME)
    assert layer.eigenvalues().shape == (d, D_STATE)


def test_log_dt_init_range():
    layer = S4(512, 4, dt_min=0.01, dt_max=0.2, rngs=nnx.Rngs(3))
    log_dt = np.asarray(layer.log_dt[...])
    assert log_dt.min() >= np.log(0.01) - 1e-6 and log_dt.max() <= np.log(0.2) + 1e-6
    assert log_dt.min() < np.log(0.02) and log_dt.max() > np.log(0.1)  # spread over the range


# --------------------------------------------------------------------------- 1. the kernel


@pytest.mark.parametrize("length, l_max, bidirectional",
                         [(16, None, False), (31, None, True), (12, 32, False)])
def test_cauchy_woodbury_kernel_equals_dense(x64, length, l_max, bidirectional):
    """The key test: Algorithm 1's kernel == C A_bar^l B_bar of the dense DPLR system."""
    layer = to_float64(S4(D_MODEL, D_STATE, bidirectional=bidirectional, l_max=l_max,
                          rngs=nnx.Rngs(2)))
    fold = length if l_max is None else l_max
    want = ref_kernel(layer, length, fold)
    got = np.asarray(layer.kernel(length))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11 * np.abs(want).max())
    # a trained-looking (perturbed) system too: P, B, Lambda, dt all away from their init
    key = jax.random.key(9)
    state = nnx.state(layer, nnx.Param)
    leaves, tree = jax.tree_util.tree_flatten(state)
    keys = jax.random.split(key, len(leaves))
    leaves = [v + 0.3 * jax.random.normal(k_, v.shape, v.dtype) for v, k_ in zip(leaves, keys)]
    nnx.update(layer, jax.tree_util.tree_unflatten(tree, leaves))
    want = ref_kernel(layer, length, fold)
    np.testing.assert_allclose(np.asarray(layer.kernel(length)), want, rtol=1e-8,
                               atol=1e-10 * np.abs(want).max())


def test_kernel_float32_close_to_float64(x64):
    layer = S4(D_MODEL, D_STATE, rngs=nnx.Rngs(4))
    got = np.asarray(layer.kernel(TIME))
    assert got.dtype == np.float32
    want = ref_kernel(layer, TIME, TIME)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_l_max_truncates_one_kernel():
    layer = S4(D_MODEL, D_STATE, l_max=32, rngs=nnx.Rngs(5))
    np.testing.assert_array_equal(np.asarray(layer.kernel(20)),
                                  np.asarray(layer.kernel(32))[..., :20])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_refold_keeps_the_system_at_a_longer_l_max(x64, bidirectional):
    """A layer folded at 16 (trained there) and refolded at 64 is the same system: the dense
    reference's kernel at the new fold, whose first 16 taps are the old ones."""
    layer = to_float64(S4(D_MODEL, D_STATE, bidirectional=bidirectional, l_max=16,
                          rngs=nnx.Rngs(12)))
    state = nnx.state(layer, nnx.Param)  # away from the init, as after training
    leaves, tree = jax.tree_util.tree_flatten(state)
    keys = jax.random.split(jax.random.key(13), len(leaves))
    nnx.update(layer, jax.tree_util.tree_unflatten(
        tree, [v + 0.2 * jax.random.normal(k_, v.shape, v.dtype) for v, k_ in zip(leaves, keys)]))
    before = np.asarray(layer.kernel(16))
    trained = jax.tree_util.tree_map(jnp.array, nnx.state(layer, nnx.Param))  # a copy
    want = ref_kernel(layer, 64, 16)  # C from the fold at 16, run 64 steps
    layer.refold(64)
    assert layer.l_max == 64
    got = np.asarray(layer.kernel(64))
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())
    np.testing.assert_allclose(got[..., :16], before, rtol=1e-7, atol=1e-9 * np.abs(before).max())
    # without the refold, the trained C~ read as folded at 64 is another system
    stale = to_float64(S4(D_MODEL, D_STATE, bidirectional=bidirectional, l_max=64,
                          rngs=nnx.Rngs(12)))
    nnx.update(stale, trained)
    assert np.abs(np.asarray(stale.kernel(16)) - before).max() > 1e-3 * np.abs(before).max()
    with pytest.raises(ValueError, match="no l_max"):
        S4(D_MODEL, D_STATE, rngs=nnx.Rngs(0)).refold(64)


# --------------------------------------------------------------------------- 2. modes


@pytest.mark.parametrize("bidirectional", [False, True])
def test_convolution_equals_recurrence(x64, bidirectional):
    layer = to_float64(S4(D_MODEL, D_STATE, bidirectional=bidirectional, rngs=nnx.Rngs(6)))
    u = make_input(7, dtype=jnp.float64)
    w = make_input(8, dtype=jnp.float64)
    # each path in one compiled program (eager, every operation would be compiled apart)
    forward = nnx.jit(lambda m: (m(u), m.recurrent(u)))
    grads = nnx.jit(lambda m: (nnx.grad(lambda m: jnp.sum(w * m(u)))(m),
                               nnx.grad(lambda m: jnp.sum(w * m.recurrent(u)))(m)))
    np.testing.assert_allclose(*forward(layer), rtol=1e-9, atol=1e-10)

    conv, rec = grads(layer)
    conv = {str(k): v[...] for k, v in conv.items()}
    rec = {str(k): v[...] for k, v in rec.items()}
    assert set(conv) == set(rec) == set(params_of(layer))
    for k in conv:
        scale = float(jnp.max(jnp.abs(rec[k])))
        assert scale > 0, k  # not vacuous
        np.testing.assert_allclose(conv[k], rec[k], rtol=1e-7, atol=1e-9 * scale, err_msg=k)
    gu_conv, gu_rec = nnx.jit(lambda m: (jax.grad(lambda x: jnp.sum(w * m(x)))(u),
                                         jax.grad(lambda x: jnp.sum(w * m.recurrent(x)))(u)))(layer)
    np.testing.assert_allclose(gu_conv, gu_rec, rtol=1e-8, atol=1e-10)


def test_float32_convolution_close_to_recurrence():
    layer = S4(D_MODEL, D_STATE, bidirectional=True, rngs=nnx.Rngs(10))
    u = make_input(11)
    np.testing.assert_allclose(layer(u), layer.recurrent(u), rtol=1e-4, atol=1e-4)


def test_step_by_step_equals_call(x64):
    layer = to_float64(S4(D_MODEL, D_STATE, l_max=TIME, rngs=nnx.Rngs(12)))
    u = make_input(13, dtype=jnp.float64)
    state = layer.init_state(BATCH)
    assert state.shape == (BATCH, D_MODEL, D_STATE)
    ys = []
    for t in range(TIME):
        state, y = layer.step(state, u[:, t])
        ys.append(y)
    np.testing.assert_allclose(jnp.stack(ys, axis=1), layer(u), rtol=1e-9, atol=1e-10)
    # without l_max the fold length is given explicitly
    free = to_float64(S4(D_MODEL, D_STATE, rngs=nnx.Rngs(12)))
    state, y0 = free.step(free.init_state(BATCH), u[:, 0], length=TIME)
    np.testing.assert_allclose(y0, free(u)[:, 0], rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------- 3. init


def test_initial_state_matrix_is_hippo_legs(x64):
    """V' (Lambda' - P' P'^*) V'^* == HiPPO-LegS A and V' B' == its B, V' = [V_half, conj V_half]."""
    layer = S4(D_MODEL, D_STATE, rngs=nnx.Rngs(14))
    p = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
    A_legs, B_legs = legs(D_STATE)
    _, V = legs_normal(D_STATE)
    Vf = np.concatenate([V[:, : D_STATE // 2], V[:, : D_STATE // 2].conj()], axis=1)
    np.testing.assert_allclose(Vf.conj().T @ Vf, np.eye(D_STATE), atol=1e-10)  # unitary
    for h in range(D_MODEL):
        lam = full(p["Lambda_re"][h] + 1j * p["Lambda_im"][h])
        P = full(p["P"][h, :, 0] + 1j * p["P"][h, :, 1])
        B = full(p["B"][h, :, 0] + 1j * p["B"][h, :, 1])
        A = Vf @ (np.diag(lam) - np.outer(P, P.conj())) @ Vf.conj().T
        np.testing.assert_allclose(A, A_legs, atol=1e-5 * np.abs(A_legs).max())
        np.testing.assert_allclose(Vf @ B, B_legs, atol=1e-5 * np.abs(B_legs).max())
        np.testing.assert_allclose(lam.real, -0.5, atol=1e-7)
    # the discrete eigenvalues: legs A is triangular with diagonal -1..-N, bilinear-mapped
    dt = np.exp(p["log_dt"])[:, None]
    mu = -np.arange(1.0, D_STATE + 1)
    want = np.sort((1 + dt / 2 * mu) / (1 - dt / 2 * mu), axis=-1)
    # (LegS is far from normal, so its spectrum moves ~1e-4 under the float32 rounding of
    # the parameters; the eigenvalues are ~1e-2 apart, so 1e-3 still tells them apart)
    got = np.asarray(layer.eigenvalues(), np.complex128)
    np.testing.assert_allclose(np.sort(got.real, axis=-1), want, atol=1e-3)
    np.testing.assert_allclose(got.imag, 0.0, atol=1e-3)


# --------------------------------------------------------------------------- 4. causality


def test_fft_convolution_is_causal_and_linear(x64):
    layer = to_float64(S4(D_MODEL, D_STATE, rngs=nnx.Rngs(15)))
    u = make_input(16, dtype=jnp.float64)
    t0 = 9
    bumped = u.at[:, t0].add(1.0)
    diff = np.asarray(layer(bumped) - layer(u))
    np.testing.assert_allclose(diff[:, :t0], 0.0, atol=1e-14)  # FFT rounding only
    assert np.all(np.abs(diff[:, t0:]) > 1e-6)
    # the impulse response is the kernel (plus D at lag 0)
    K = np.asarray(layer.kernel(TIME))[0]
    want = K.T[: TIME - t0] + np.eye(TIME - t0, 1) * np.asarray(layer.D[...])
    np.testing.assert_allclose(diff[0, t0:], want, rtol=1e-10, atol=1e-12)
    # == the direct linear (not circular) convolution with the kernel
    D = np.asarray(layer.D[...])
    un = np.asarray(u)
    want = np.stack([np.stack([np.convolve(un[b, :, h], K[h])[:TIME] for h in range(D_MODEL)],
                              axis=-1) for b in range(BATCH)]) + D * un
    np.testing.assert_allclose(np.asarray(layer(u)), want, rtol=1e-10, atol=1e-12)
    # the reverse kernel of a bidirectional layer looks only strictly right (the reference's
    # one-step shift): y_t = sum_j K0[j] u_{t-j} + sum_j K1[j] u_{t+1+j} + D u_t, written as
    # direct sums
    bi = to_float64(S4(D_MODEL, D_STATE, bidirectional=True, rngs=nnx.Rngs(15)))
    K2 = np.asarray(bi.kernel(TIME))
    D2 = np.asarray(bi.D[...])
    want_bi = np.zeros_like(un)
    for t in range(TIME):
        for j in range(t + 1):
            want_bi[:, t] += K2[0, :, j] * un[:, t - j]
        for j in range(TIME - 1 - t):
            want_bi[:, t] += K2[1, :, j] * un[:, t + 1 + j]
    want_bi += D2 * un
    np.testing.assert_allclose(np.asarray(bi(u)), want_bi, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(bi.recurrent(u)), want_bi, rtol=1e-9, atol=1e-10)
    # its impulse response: K0 at and after t0, K0[0] + D (no reverse term) at t0, and the
    # shifted reverse kernel K1[t0 - 1 - t] before it
    diff_bi = np.asarray(bi(bumped) - bi(u))[0]
    want = np.zeros((TIME, D_MODEL))
    want[t0:] = K2[0].T[: TIME - t0]
    want[t0] += D2
    want[:t0] = K2[1].T[:t0][::-1]
    np.testing.assert_allclose(diff_bi, want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- 5. padding


def test_masked_padded_bidirectional_batch_equals_examples_alone():
    lengths = (TIME, 11, 5)
    layer = S4(D_MODEL, D_STATE, bidirectional=True, l_max=TIME, rngs=nnx.Rngs(17))
    u = make_input(18, (len(lengths), TIME, D_MODEL))
    mask = np.arange(TIME)[None, :] < np.array(lengths)[:, None]
    garbage = jnp.where(mask[..., None], u, 1e3)  # padding never leaks into valid steps
    got = np.asarray(layer(garbage, jnp.asarray(mask)))
    got_rec = np.asarray(layer.recurrent(garbage, jnp.asarray(mask)))
    for i, n in enumerate(lengths):
        alone = np.asarray(layer(u[i:i + 1, :n]))[0]
        np.testing.assert_allclose(got[i, :n], alone, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_rec[i, :n], alone, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- 6. errors


@pytest.mark.parametrize("kwargs", [
    dict(d_state=7), dict(d_state=0), dict(d_state=8.0), dict(d_model=0),
    dict(dt_min=0.0), dict(dt_min=-0.1), dict(dt_min=0.2, dt_max=0.1),
    dict(l_max=0), dict(l_max=4.5),
])
def test_bad_options_raise(kwargs):
    args = dict(d_model=D_MODEL, d_state=D_STATE) | kwargs
    with pytest.raises(ValueError):
        S4(args.pop("d_model"), args.pop("d_state"), rngs=nnx.Rngs(0), **args)


def test_bad_calls_raise():
    layer = S4(D_MODEL, D_STATE, l_max=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="l_max"):
        layer(make_input(0, (1, 9, D_MODEL)))
    free = S4(D_MODEL, D_STATE, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="length"):
        free.step(free.init_state(1), jnp.zeros((1, D_MODEL)))
    bi = S4(D_MODEL, D_STATE, bidirectional=True, l_max=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="bidirectional"):
        bi.step(bi.init_state(1), jnp.zeros((1, D_MODEL)))
