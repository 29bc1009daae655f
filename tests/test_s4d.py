"""Tests for ``lru.layers.s4d.S4D``.

The convolution mode (Vandermonde kernel, FFT) is checked against the layer's recurrent
modes (``recurrent`` via ``lru.scan`` and a Python loop over ``step``), values and
gradients, and the bidirectional layer against a float64 numpy recurrence written here from
the equations. Initial eigenvalues are checked against their closed forms and, for LegS,
against ``numpy.linalg.eigvals`` of the dense HiPPO-LegS normal part built here from its
definition. Seeds are fixed and shapes small.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.layers.s4d import INITS, S4D, init_eigenvalues
from lru.training.optim import BASE, RECURRENT, param_labels

BATCH, TIME, D_MODEL, D_STATE = 2, 12, 3, 8


def params_of(layer: nnx.Module) -> dict[str, jax.Array]:
    return {str(k): v[...] for k, v in nnx.state(layer, nnx.Param).items()}


def make_input(seed: int, shape=(BATCH, TIME, D_MODEL)) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def random_layer(init: str, bidirectional: bool, seed: int = 0) -> S4D:
    """An S4D layer whose parameters are moved off their init to random values."""
    layer = S4D(D_MODEL, D_STATE, init=init, bidirectional=bidirectional, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed + 100)
    h, m = D_MODEL, D_STATE // 2
    # dt large enough that the kernel decays visibly within TIME steps
    layer.log_dt[...] = jnp.asarray(rng.uniform(np.log(0.05), np.log(0.5), h), jnp.float32)
    layer.log_A_real[...] = layer.log_A_real[...] + jnp.asarray(
        rng.normal(size=(h, m)) * 0.5, jnp.float32)
    layer.A_imag[...] = layer.A_imag[...] + jnp.asarray(rng.normal(size=(h, m)), jnp.float32)
    layer.C[...] = jnp.asarray(rng.normal(size=layer.C[...].shape), jnp.float32)
    layer.D[...] = jnp.asarray(rng.normal(size=h), jnp.float32)
    return layer


def ref_forward(p, u, bidirectional: bool, mask=None):
    """numpy float64 loop: x_t = dA x_{t-1} + dB u_t; z_t = dA z_{t+1} + dB u_{t+1}."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    u = np.asarray(u, np.float64)
    v = u if mask is None else np.where(np.asarray(mask)[..., None], u, 0.0)
    a = -np.exp(p["log_A_real"]) + 1j * p["A_imag"]  # (h, m)
    da = np.exp(np.exp(p["log_dt"])[:, None] * a)
    db = (da - 1) / a
    c = p["C"][..., 0] + 1j * p["C"][..., 1]  # (c, h, m)
    b, t, h = u.shape
    y = np.zeros((b, t, h))
    x = np.zeros((b, h, a.shape[1]), np.complex128)
    for s in range(t):
        x = da * x + db * v[:, s, :, None]
        y[:, s] = 2 * np.real(np.sum(c[0] * x, -1))
    if bidirectional:
        z = np.zeros_like(x)  # z_{T-1} = 0: nothing after the last step
        for s in range(t - 1, -1, -1):
            if s + 1 < t:
                z = da * z + db * v[:, s + 1, :, None]
            y[:, s] += 2 * np.real(np.sum(c[1] * z, -1))
    return y + p["D"] * u


def step_loop(layer: S4D, u: jax.Array) -> jax.Array:
    state = layer.init_state(u.shape[0])
    ys = []
    for s in range(u.shape[1]):
        state, y = layer.step(state, u[:, s])
        ys.append(y)
    return jnp.stack(ys, axis=1)


# --------------------------------------------------------------------------- 1. modes agree


@pytest.mark.parametrize("init", INITS)
def test_convolution_equals_recurrence(init):
    layer = random_layer(init, bidirectional=False)
    u = make_input(1)
    # each path in one compiled program (eager, every operation would be compiled apart)
    conv, recurrent, stepped = nnx.jit(lambda m: (m(u), m.recurrent(u), step_loop(m, u)))(layer)
    want = ref_forward(params_of(layer), u, False)
    scale = np.abs(want).max()
    np.testing.assert_allclose(conv, want, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(recurrent, conv, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(stepped, conv, rtol=1e-4, atol=1e-5 * scale)

    # gradients w.r.t. every parameter (and the input), through each path
    w = make_input(2)
    paths = {
        "conv": lambda m, x: m(x),
        "recurrent": lambda m, x: m.recurrent(x),
        "step": step_loop,
    }
    grads, input_grads = {}, {}
    for name, f in paths.items():
        g, gu = nnx.jit(nnx.grad(lambda m, x: jnp.sum(w * f(m, x)), argnums=(0, 1)))(layer, u)
        grads[name] = {str(k): v[...] for k, v in g.items()}
        input_grads[name] = gu
    assert sorted(grads["conv"]) == ["A_imag", "C", "D", "log_A_real", "log_dt"]
    for name in ("recurrent", "step"):
        for k, want_g in grads["conv"].items():
            tol = 1e-4 * float(jnp.max(jnp.abs(want_g)))
            np.testing.assert_allclose(grads[name][k], want_g, rtol=1e-3, atol=tol,
                                       err_msg=f"{name} {k}")
            assert float(jnp.max(jnp.abs(want_g))) > 0, k  # not vacuous
        np.testing.assert_allclose(input_grads[name], input_grads["conv"], rtol=1e-3,
                                   atol=1e-4 * float(jnp.max(jnp.abs(input_grads["conv"]))))


@pytest.mark.parametrize("init", INITS)
def test_bidirectional_convolution_equals_reverse_recurrence(init):
    layer = random_layer(init, bidirectional=True, seed=3)
    u, w = make_input(4), make_input(5)
    # one program: both forms' values and gradients (each eager op would compile apart)
    conv, rec, g_conv, g_rec = nnx.jit(lambda m: (
        m(u), m.recurrent(u), nnx.grad(lambda m: jnp.sum(w * m(u)))(m),
        nnx.grad(lambda m: jnp.sum(w * m.recurrent(u)))(m)))(layer)
    want = ref_forward(params_of(layer), u, True)
    scale = np.abs(want).max()
    np.testing.assert_allclose(conv, want, rtol=1e-4, atol=1e-5 * scale)
    # the reverse kernel really contributes (differs from the forward-only reference)
    fwd_only = ref_forward(params_of(layer), u, False)
    assert np.abs(want - fwd_only).max() > 0.1 * scale
    np.testing.assert_allclose(rec, conv, rtol=1e-4, atol=1e-5 * scale)
    for k, g in g_conv.items():
        tol = 1e-4 * float(jnp.max(jnp.abs(g[...])))
        np.testing.assert_allclose(g_rec[k][...], g[...], rtol=1e-3, atol=tol, err_msg=str(k))


def test_kernel_is_the_vandermonde_sum():
    layer = random_layer("inv", bidirectional=True, seed=6)
    p = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
    a = -np.exp(p["log_A_real"]) + 1j * p["A_imag"]
    da = np.exp(np.exp(p["log_dt"])[:, None] * a)
    db = (da - 1) / a
    c = p["C"][..., 0] + 1j * p["C"][..., 1]
    want = np.stack([
        2 * np.real(np.einsum("chn,hn->ch", c, db * da**ell)) for ell in range(TIME)
    ], axis=-1)
    got = layer.kernel(TIME)
    assert got.shape == (2, D_MODEL, TIME)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(layer.eigenvalues(), da.reshape(-1), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- 2. init


def dense_legs_normal(n: int) -> np.ndarray:
    """A + P P^T from the HiPPO-LegS definition, independently of lru.layers.hippo."""
    A = np.zeros((n, n))
    for i in range(n):
        for k in range(n):
            if i > k:
                A[i, k] = -np.sqrt(2 * i + 1) * np.sqrt(2 * k + 1)
            elif i == k:
                A[i, k] = -(i + 1)
    P = np.array([np.sqrt(i + 0.5) for i in range(n)])
    return A + np.outer(P, P)


@pytest.mark.parametrize("init", INITS)
def test_init_eigenvalues(init):
    n, m, h = D_STATE, D_STATE // 2, 5
    layer = S4D(h, n, init=init, dt_min=0.01, dt_max=0.2, rngs=nnx.Rngs(7))
    idx = np.arange(m)
    if init == "inv":
        want = -0.5 + 1j * n / np.pi * (n / (2 * idx + 1) - 1)
    elif init == "lin":
        want = -0.5 + 1j * np.pi * idx
    else:
        eig = np.linalg.eigvals(dense_legs_normal(n))
        upper = eig[eig.imag >= 0]
        assert upper.size == m  # even n: exactly N/2 in the upper half-plane
        want = upper[np.argsort(-upper.imag)]
        np.testing.assert_allclose(want.real, -0.5, atol=1e-8)
    np.testing.assert_allclose(init_eigenvalues(init, n), want, rtol=1e-7, atol=1e-7)
    got = np.asarray(layer.continuous_eigenvalues(), np.complex128)
    assert got.shape == (h, m)
    # the layer stores them in float32, in this order, the same modes for every channel
    np.testing.assert_allclose(got, np.broadcast_to(want, (h, m)), rtol=1e-6, atol=1e-6)
    # dt ~ log-uniform in [dt_min, dt_max]; dA = exp(dt Lambda) flattened
    dt = np.exp(np.asarray(layer.log_dt[...], np.float64))
    assert np.all(dt >= 0.01 * (1 - 1e-6)) and np.all(dt <= 0.2 * (1 + 1e-6))
    np.testing.assert_allclose(layer.eigenvalues(), np.exp(dt[:, None] * got).reshape(-1),
                               rtol=1e-5, atol=1e-6)
    assert not hasattr(layer, "B")  # B = 1 is fixed, not a parameter
    assert layer.C[...].shape == (1, h, m, 2) and layer.D[...].shape == (h,)


def test_init_scales():
    h, n = 400, 64
    layer = S4D(h, n, init="lin", dt_min=0.001, dt_max=0.1, rngs=nnx.Rngs(8))
    log_dt = np.asarray(layer.log_dt[...], np.float64)
    lo, hi = np.log(0.001), np.log(0.1)
    assert log_dt.min() >= lo - 1e-6 and log_dt.max() <= hi + 1e-6
    assert abs(log_dt.mean() - (lo + hi) / 2) < 0.2  # uniform: sd of the mean ~0.07
    c = np.asarray(layer.C[...], np.float64)
    assert c.shape == (1, h, n // 2, 2)
    # C ~ CN(0, 1): E|C|^2 = 1, each part variance 1/2
    assert abs(np.mean(np.sum(c**2, -1)) - 1) < 0.05
    assert abs(c[..., 0].var() - 0.5) < 0.03 and abs(c[..., 1].var() - 0.5) < 0.03
    assert abs(np.asarray(layer.D[...]).var() - 1) < 0.3


def test_recurrent_params_are_the_ssm_parameters():
    layer = S4D(D_MODEL, D_STATE, bidirectional=True, rngs=nnx.Rngs(9))
    labels = {str(k): v for k, v in param_labels(layer).items()}
    assert labels == {"log_dt": RECURRENT, "log_A_real": RECURRENT, "A_imag": RECURRENT,
                      "C": BASE, "D": BASE}


# --------------------------------------------------------------------------- 3. causality


@pytest.mark.parametrize("init", INITS)
def test_convolution_is_causal(init):
    layer = random_layer(init, bidirectional=False, seed=10)
    u = make_input(11)
    y = layer(u)
    for t in (1, TIME // 2, TIME - 1):
        u2 = u.at[:, t:].set(make_input(12 + t, (BATCH, TIME - t, D_MODEL)) * 5)
        y2 = layer(u2)
        scale = float(jnp.max(jnp.abs(y)))
        np.testing.assert_allclose(y2[:, :t], y[:, :t], atol=1e-5 * scale, rtol=0)
        assert float(jnp.max(jnp.abs(y2[:, t] - y[:, t]))) > 1e-2  # t itself changes
    # a bidirectional layer does see the future (the check above has power)
    bi = random_layer(init, bidirectional=True, seed=10)
    u2 = u.at[:, TIME // 2:].add(1.0)
    assert float(jnp.max(jnp.abs(bi(u2)[:, :TIME // 2] - bi(u)[:, :TIME // 2]))) > 1e-3


# --------------------------------------------------------------------------- 4. padding


@pytest.mark.parametrize("bidirectional", [True, False])
def test_masked_padding_matches_unpadded(bidirectional):
    layer = random_layer("legs", bidirectional=bidirectional, seed=13)
    lengths, padded = (5, TIME), TIME  # batch shape (BATCH, TIME, D_MODEL)
    examples = [make_input(14 + i, (1, n, D_MODEL)) for i, n in enumerate(lengths)]
    garbage = make_input(20, (len(lengths), padded, D_MODEL)) * 10
    batch = jnp.concatenate([
        jnp.concatenate([x, garbage[i : i + 1, x.shape[1]:]], axis=1)
        for i, x in enumerate(examples)], axis=0)
    mask = jnp.arange(padded)[None, :] < jnp.asarray(lengths)[:, None]
    y = layer(batch, mask)
    y_rec = layer.recurrent(batch, mask)
    for i, (x, n) in enumerate(zip(examples, lengths)):
        want = layer(x)[0]
        scale = float(jnp.max(jnp.abs(want)))
        np.testing.assert_allclose(y[i, :n], want, rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(y_rec[i, :n], want, rtol=1e-4, atol=1e-5 * scale)
    if bidirectional:  # without the mask the garbage leaks back into valid steps
        leak = layer(batch)[0, :lengths[0]] - layer(examples[0])[0]
        assert float(jnp.max(jnp.abs(leak))) > 1e-2


# --------------------------------------------------------------------------- 5. errors


def test_bad_init_raises_listing_choices():
    with pytest.raises(ValueError) as err:
        S4D(D_MODEL, D_STATE, init="legt", rngs=nnx.Rngs(0))
    msg = str(err.value)
    assert "init" in msg and "legt" in msg
    for name in INITS:
        assert repr(name) in msg
    with pytest.raises(ValueError, match="init"):
        init_eigenvalues("fourier", D_STATE)


@pytest.mark.parametrize("d_state", [7, 0, -2, 4.0])
def test_bad_d_state_raises(d_state):
    with pytest.raises(ValueError, match="d_state.*even"):
        S4D(D_MODEL, d_state, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("dt_min, dt_max", [(0.0, 0.1), (-0.1, 0.1), (0.2, 0.1)])
def test_bad_dt_range_raises(dt_min, dt_max):
    with pytest.raises(ValueError, match="dt_min <= dt_max"):
        S4D(D_MODEL, D_STATE, dt_min=dt_min, dt_max=dt_max, rngs=nnx.Rngs(0))


def test_bad_d_model_and_bidirectional_raise():
    with pytest.raises(ValueError, match="d_model"):
        S4D(0, D_STATE, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"bidirectional.*\(True, False\)"):
        S4D(D_MODEL, D_STATE, bidirectional="yes", rngs=nnx.Rngs(0))


def test_step_on_bidirectional_raises():
    layer = S4D(D_MODEL, D_STATE, bidirectional=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(layer.init_state(BATCH), make_input(0)[:, 0])
