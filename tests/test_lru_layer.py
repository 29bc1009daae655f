"""Tests for ``lru.layers.LRU`` (every rung of the ablation ladder) and ``lru.ladder``.

Every forward is checked against a step-by-step loop written here straight from the paper's
equations and the layer's own parameters (no ``lru.scan``): numpy float64 for the values,
plain ``jnp`` arithmetic for autodiff-reference gradients. Initialisation is checked by
sampling (Kolmogorov-Smirnov tests with a control that must reject), Proposition 3 by
Monte Carlo. Seeds are fixed and shapes small and reused.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

import lru.layers.lru as lru_module
from lru.analysis import expected_state_norm, layer_eigenvalues
from lru.ladder import LADDER, RUNG_NAMES, Rung, get_rung
from lru.layers import LRU
from lru.layers.lru import NU_MIN, RADIUS_SQ_MIN, UNIT_DISK, gamma_log_init, sample_ring
from lru.models import Classifier

BATCH, TIME, D_MODEL, D_STATE = 2, 7, 3, 4
DENSE_RUNGS = ("rnn_relu", "rnn_tanh", "linear_dense")
DIAG_RUNGS = ("diag_complex", "exp", "stable_exp", "ring", "lru")
TWO_PI = 2 * np.pi


def params_of(layer: nnx.Module) -> dict[str, jax.Array]:
    """The layer's parameters as a flat ``{name: array}`` dict."""
    return {str(k): v[...] for k, v in nnx.state(layer, nnx.Param).items()}


def make_input(seed: int, shape=(BATCH, TIME, D_MODEL)) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


# --------------------------------------------------------------------------- reference


def ref_lambda(p, rung: str, xp):
    """lambda from the rung's parameterisation, written from the paper."""
    par = get_rung(rung).parameterization
    if par == "real_imag":
        return p["Lambda_re"] + 1j * p["Lambda_im"]
    if par == "exp":
        return xp.exp(-p["nu"] + 1j * p["theta"])
    assert par == "stable_exp"
    return xp.exp(-xp.exp(p["nu_log"]) + 1j * xp.exp(p["theta_log"]))


def ref_forward(p, u, rung: str, bidirectional: bool, xp, mask=None):
    """y_t = Re(C x_t) + D u_t with x_t from a Python loop over time (both directions)."""
    spec = get_rung(rung)
    batch, time, _ = u.shape
    if spec.transition == "dense":
        f = {"relu": lambda z: xp.maximum(z, 0.0), "tanh": xp.tanh, None: lambda z: z}[
            spec.activation]
        A, B, C = p["A"], p["B"], p["C"]
        bu = [u[:, t] @ B.T for t in range(time)]

        def step(x, t):
            return f(x @ A.T + bu[t])
    else:
        lam = ref_lambda(p, rung, xp)
        B = p["B_re"] + 1j * p["B_im"]
        if spec.gamma:
            B = B * xp.exp(p["gamma_log"])[:, None]
        C = p["C_re"] + 1j * p["C_im"]
        bu = [u[:, t] @ B.T for t in range(time)]

        def step(x, t):
            return lam * x + bu[t]

    if mask is not None:
        bu = [xp.where(mask[:, t, None], bu[t], 0) for t in range(time)]
    n = bu[0].shape[-1]

    def run(order):
        x = xp.zeros((batch, n), bu[0].dtype)
        out = [None] * time
        for t in order:
            x = step(x, t)
            out[t] = x
        return xp.stack(out, axis=1)

    xs = [run(range(time))]
    if bidirectional:
        xs.append(run(range(time - 1, -1, -1)))
    x = xp.concatenate(xs, axis=-1)
    y = x @ C.T
    if spec.transition == "diagonal":
        y = xp.real(y)
    return y + p["D"] * u


# --------------------------------------------------------------------------- 1. shapes


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("rung", RUNG_NAMES)
def test_parameter_names_and_shapes(rung, bidirectional):
    layer = LRU(D_MODEL, D_STATE, rung=rung, bidirectional=bidirectional, rngs=nnx.Rngs(0))
    shapes = {k: tuple(v.shape) for k, v in params_of(layer).items()}
    d, n, k = D_MODEL, D_STATE, 2 if bidirectional else 1
    if rung in DENSE_RUNGS:
        expected = {"A": (n, n), "B": (n, d), "C": (d, k * n), "D": (d,)}
    else:
        expected = {"B_re": (n, d), "B_im": (n, d), "C_re": (d, k * n), "C_im": (d, k * n),
                    "D": (d,)}
        if rung == "diag_complex":
            expected.update(Lambda_re=(n,), Lambda_im=(n,))
        elif rung == "exp":
            expected.update(nu=(n,), theta=(n,))
        else:
            expected.update(nu_log=(n,), theta_log=(n,))
        if rung == "lru":
            expected.update(gamma_log=(n,))
    assert shapes == expected
    for v in params_of(layer).values():
        assert v.dtype == jnp.float32
    # shapes of the forward (traced, not compiled; the values are checked below)
    u = jax.ShapeDtypeStruct((BATCH, TIME, d), jnp.float32)
    y = jax.eval_shape(lambda u: layer(u), u)
    assert y.shape == u.shape and y.dtype == jnp.float32
    x = jax.eval_shape(lambda u: layer.states(u), u)
    assert x.shape == (BATCH, TIME, k * n)
    assert x.dtype == (jnp.float32 if rung in DENSE_RUNGS else jnp.complex64)
    assert layer.eigenvalues().shape == (n,)


# --------------------------------------------------------------------------- 2. equations


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("rung", RUNG_NAMES)
def test_forward_matches_loop(rung, bidirectional):
    layer = LRU(D_MODEL, D_STATE, rung=rung, bidirectional=bidirectional, rngs=nnx.Rngs(2))
    u = make_input(3)
    p64 = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
    want = ref_forward(p64, np.asarray(u, np.float64), rung, bidirectional, np)
    got = np.asarray(layer(u))
    assert got.shape == u.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the eigenvalues it reports are the lambda of the equations (dense: A's spectrum)
    if rung not in DENSE_RUNGS:
        np.testing.assert_allclose(np.asarray(layer.eigenvalues()), ref_lambda(p64, rung, np),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scan_method", ["inplace", "associative"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_call_on_planar_storage_equals_complex_states_path(bidirectional, scan_method):
    """__call__ (real [Re | Im] storage, lru.scan.planar_recurrence) == Re(C states(u)) + D u
    (complex states through lru.scan.linear_recurrence), with a mask, for either method."""
    layer = LRU(D_MODEL, D_STATE, bidirectional=bidirectional, scan_method=scan_method,
                rngs=nnx.Rngs(7))
    u = make_input(8)
    mask = jnp.arange(TIME)[None, :] < jnp.array([TIME, 5])[:, None]
    p = params_of(layer)
    x = layer.states(u, mask)
    want = jnp.real(x @ (p["C_re"] + 1j * p["C_im"]).T) + p["D"] * u
    np.testing.assert_allclose(np.asarray(layer(u, mask)), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rung", ["rnn_tanh", "lru"])
def test_forward_with_mask_matches_loop(rung):
    """Masked steps feed nothing to the recurrence in either direction."""
    layer = LRU(D_MODEL, D_STATE, rung=rung, bidirectional=True, rngs=nnx.Rngs(4))
    u = make_input(5)
    mask = np.arange(TIME)[None, :] < np.array([TIME, 4])[:, None]
    p64 = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
    want = ref_forward(p64, np.asarray(u, np.float64), rung, True, np, mask=mask)
    got = np.asarray(layer(u, jnp.asarray(mask)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # and the valid steps equal those of the unpadded example on its own
    alone = np.asarray(layer(u[1:, :4]))
    np.testing.assert_allclose(got[1, :4], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rung, bidirectional", [(r, False) for r in RUNG_NAMES]
                         + [("rnn_tanh", True), ("lru", True)])
def test_gradients_match_loop(rung, bidirectional):
    """d/dparams of <w, y> through the layer (custom VJP) == autodiff of the Python loop."""
    layer = LRU(D_MODEL, D_STATE, rung=rung, bidirectional=bidirectional, rngs=nnx.Rngs(6))
    u = make_input(7)
    w = make_input(8)

    def ref_loss(p):
        return jnp.sum(w * ref_forward(p, u, rung, bidirectional, jnp))

    want = jax.jit(jax.grad(ref_loss))(params_of(layer))
    got = nnx.jit(nnx.grad(lambda m: jnp.sum(w * m(u))))(layer)
    got = {str(k): v[...] for k, v in got.items()}
    assert set(got) == set(want)
    for k in want:
        assert np.all(np.isfinite(got[k])), k
        scale = float(jnp.max(jnp.abs(want[k]))) + 1e-3
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)
        assert float(jnp.max(jnp.abs(want[k]))) > 0, k  # the check is not vacuous
    if rung != "lru":
        return
    # input gradient too
    gu = nnx.jit(lambda m, x: jax.grad(lambda x: jnp.sum(w * m(x)))(x))(layer, u)
    gu_ref = jax.jit(jax.grad(lambda x: jnp.sum(w * ref_forward(params_of(layer), x, rung,
                                                                bidirectional, jnp))))(u)
    np.testing.assert_allclose(gu, gu_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scan_method", ["native", "inplace"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recompute_states_same_values_and_gradients(bidirectional, scan_method):
    """``recompute_states``: the backward pass computes B u and the states again from the
    saved input, and every gradient (parameters and input, through a mask) equals both the
    stored-states layer's and autodiff of the Python loop's."""
    u, w = make_input(9), make_input(10)
    mask = jnp.arange(TIME)[None, :] < jnp.array([TIME, 5])[:, None]
    grads = {}
    for recompute in (False, True):
        layer = LRU(D_MODEL, D_STATE, bidirectional=bidirectional, scan_method=scan_method,
                    recompute_states=recompute, rngs=nnx.Rngs(6))
        loss = lambda m, x: jnp.sum(w * m(x, mask))
        gp, gu = nnx.grad(loss, argnums=(0, 1))(layer, u)
        grads[recompute] = ({str(k): v[...] for k, v in gp.items()}, gu, layer(u, mask))
    p = params_of(layer)
    ref = jax.grad(lambda p, x: jnp.sum(w * ref_forward(p, x, "lru", bidirectional, jnp,
                                                        mask=mask)), argnums=(0, 1))(p, u)
    (gp0, gu0, y0), (gp1, gu1, y1) = grads[False], grads[True]
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gu1, gu0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gu1, ref[1], rtol=1e-4, atol=1e-5)
    for k in ref[0]:
        scale = float(jnp.max(jnp.abs(ref[0][k]))) + 1e-3
        np.testing.assert_allclose(gp1[k], gp0[k], rtol=1e-5, atol=1e-6 * scale, err_msg=k)
        np.testing.assert_allclose(gp1[k], ref[0][k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)


def test_recompute_states_with_bf16_products():
    """With bfloat16 products (trainer.precision=bf16) the recomputed backward pass gives
    the stored-states layer's gradients (the same bf16 products, in the same order)."""
    u, w = make_input(11), make_input(12)
    grads = []
    for recompute in (False, True):
        layer = LRU(D_MODEL, D_STATE, bidirectional=True, precision="bf16",
                    recompute_states=recompute, rngs=nnx.Rngs(6))
        gp, gu = nnx.grad(lambda m, x: jnp.sum(w * m(x)), argnums=(0, 1))(layer, u)
        grads.append(({str(k): v[...] for k, v in gp.items()}, gu))
    np.testing.assert_allclose(grads[1][1], grads[0][1], rtol=1e-5, atol=1e-6)
    for k, g in grads[0][0].items():
        np.testing.assert_allclose(grads[1][0][k], g, rtol=1e-5, atol=1e-6, err_msg=k)


# --------------------------------------------------------------------------- 3. init stats

BIG_N = 20000


def _ks_uniform(x, lo, hi):
    return stats.kstest(np.asarray(x, np.float64), stats.uniform(loc=lo, scale=hi - lo).cdf)


def test_sample_ring_is_uniform_on_the_ring():
    r_min, r_max, max_phase = 0.4, 0.9, 3.14
    nu, theta = sample_ring(jax.random.key(10), BIG_N, r_min, r_max, max_phase)
    assert nu.shape == theta.shape == (BIG_N,)
    assert nu.dtype == theta.dtype == jnp.float32
    mod_sq = np.exp(-2 * np.asarray(nu, np.float64))
    theta = np.asarray(theta, np.float64)
    assert mod_sq.min() >= r_min**2 - 1e-6 and mod_sq.max() <= r_max**2 + 1e-6
    assert theta.min() >= 0 and theta.max() <= max_phase
    assert _ks_uniform(mod_sq, r_min**2, r_max**2).pvalue > 0.01
    assert _ks_uniform(theta, 0, max_phase).pvalue > 0.01
    # power: the same test rejects a wrong law (|lambda| itself uniform, or the wrong range)
    assert _ks_uniform(np.sqrt(mod_sq), r_min, r_max).pvalue < 1e-6
    assert _ks_uniform(mod_sq, r_min**2, r_max**2 * 1.05).pvalue < 1e-6
    assert _ks_uniform(theta, 0, TWO_PI).pvalue < 1e-6


@pytest.mark.parametrize("rung", ["ring", "lru"])
def test_ring_rung_init_statistics(rung):
    r_min, r_max, max_phase = 0.4, 0.9, 3.14
    layer = LRU(1, BIG_N, r_min=r_min, r_max=r_max, max_phase=max_phase, rung=rung,
                rngs=nnx.Rngs(11))
    nu = np.exp(np.asarray(layer.nu_log[...], np.float64))
    theta = np.exp(np.asarray(layer.theta_log[...], np.float64))
    mod_sq = np.exp(-2 * nu)
    assert _ks_uniform(mod_sq, r_min**2, r_max**2).pvalue > 0.01
    assert _ks_uniform(theta, 0, max_phase).pvalue > 0.01
    assert _ks_uniform(np.sqrt(mod_sq), r_min, r_max).pvalue < 1e-6
    lam = np.asarray(layer.eigenvalues()).astype(np.complex128)
    np.testing.assert_allclose(np.abs(lam) ** 2, mod_sq, rtol=1e-5)
    np.testing.assert_allclose(np.angle(lam), theta, atol=1e-5)  # theta < pi: no wrap
    if rung == "lru":
        # gamma_log = log sqrt(1 - |lambda|^2), from the layer's own lambda in float64
        want = np.log(np.sqrt(1 - np.abs(lam) ** 2))
        np.testing.assert_allclose(np.asarray(layer.gamma_log[...], np.float64), want,
                                   rtol=1e-5, atol=1e-5)
        want_exact = 0.5 * np.log(-np.expm1(-2 * nu))
        np.testing.assert_allclose(np.asarray(layer.gamma_log[...], np.float64), want_exact,
                                   rtol=1e-5, atol=1e-6)
    else:
        assert not hasattr(layer, "gamma_log")
    # B ~ N(0, 1/(2d)) each part, C ~ N(0, 1/n)
    for name, var in [("B_re", 0.5), ("B_im", 0.5), ("C_re", 1 / BIG_N), ("C_im", 1 / BIG_N)]:
        v = np.asarray(getattr(layer, name)[...], np.float64)
        assert abs(v.var() / var - 1) < 0.05, name
        assert abs(v.mean()) < 5 * np.sqrt(var / v.size), name


@pytest.mark.parametrize("rung", ["diag_complex", "exp", "stable_exp"])
def test_pre_ring_rungs_init_on_unit_disk(rung):
    layer = LRU(1, BIG_N, rung=rung, rngs=nnx.Rngs(12))
    lam = np.asarray(layer.eigenvalues()).astype(np.complex128)
    mod_sq = np.abs(lam) ** 2
    phase = np.mod(np.angle(lam), TWO_PI)
    assert np.all(mod_sq < 1)
    assert _ks_uniform(mod_sq, 0, 1).pvalue > 0.01
    assert _ks_uniform(phase, 0, TWO_PI).pvalue > 0.01
    # power: the radius itself is not uniform, nor does the phase stop at 6.28 - 1
    assert _ks_uniform(np.sqrt(mod_sq), 0, 1).pvalue < 1e-6
    assert _ks_uniform(phase, 0, TWO_PI - 1).pvalue < 1e-6


def test_dense_rung_init_statistics():
    n, d = 300, 8
    layer = LRU(d, n, rung="rnn_tanh", rngs=nnx.Rngs(13))
    A = np.asarray(layer.A[...], np.float64)
    B = np.asarray(layer.B[...], np.float64)
    C = np.asarray(layer.C[...], np.float64)
    # sample variances within ~6 standard errors (sqrt(2 / size)) of their targets
    assert abs(A.var() * n - 1) < 0.03
    assert abs(A.mean()) < 5 / n**1.5
    assert abs(B.var() * d - 1) < 0.15
    assert abs(C.var() * n - 1) < 0.15
    # circular law: the spectrum fills the unit disk, |lambda|^2 roughly uniform on [0, 1]
    eig = np.linalg.eigvals(A)
    assert 0.9 < np.abs(eig).max() < 1.1
    assert abs(np.mean(np.abs(eig) ** 2) - 0.5) < 0.05
    assert abs(np.mean(np.abs(eig) ** 2 < 0.25) - 0.25) < 0.06


# --------------------------------------------------------------------------- 4. Prop. 3


@pytest.fixture(scope="module")
def white_noise():
    return make_input(20, (64, 150, 32))


def test_proposition_3_state_norm(white_noise):
    r_min, r_max, time = 0.4, 0.95, white_noise.shape[1]
    layer = LRU(32, 2048, r_min=r_min, r_max=r_max, rung="ring", rngs=nnx.Rngs(21))
    x_last = layer.states(white_noise)[:, -1]
    mc = float(jnp.mean(jnp.sum(jnp.abs(x_last) ** 2, axis=-1)))
    bu_sq = float(jnp.sum(layer.B_re[...] ** 2 + layer.B_im[...] ** 2))
    want = expected_state_norm(r_min, r_max, bu_sq)
    assert abs(mc / want - 1) < 0.05, (mc, want)
    # and the finite-sample value for these very eigenvalues (sum of geometric series)
    mod_sq = np.abs(np.asarray(layer.eigenvalues(), np.complex128)) ** 2
    rows = np.sum(np.asarray(layer.B_re[...], np.float64) ** 2
                  + np.asarray(layer.B_im[...], np.float64) ** 2, axis=1)
    exact = np.sum(rows * (1 - mod_sq**time) / (1 - mod_sq))
    assert abs(mc / exact - 1) < 0.05, (mc, exact)
    # the state norm really is inflated relative to E||Bu||^2 (what gamma removes)
    assert mc / bu_sq > 2


def test_gamma_normalises_state_norm(white_noise):
    layer = LRU(32, 2048, r_min=0.4, r_max=0.95, rung="lru", rngs=nnx.Rngs(21))
    x_last = layer.states(white_noise)[:, -1]
    mc = float(jnp.mean(jnp.sum(jnp.abs(x_last) ** 2, axis=-1)))
    bu_sq = float(jnp.sum(layer.B_re[...] ** 2 + layer.B_im[...] ** 2))
    assert abs(mc / bu_sq - 1) < 0.1, (mc, bu_sq)


def test_expected_state_norm_formula():
    # closed form vs numerical integral of 1/(1-s) over s = |lambda|^2 ~ U[r_min^2, r_max^2]
    from scipy.integrate import quad

    for r_min, r_max in [(0.0, 0.5), (0.4, 0.95), (0.9, 0.999)]:
        lo, hi = r_min**2, r_max**2
        integral = quad(lambda s: 1 / (1 - s), lo, hi)[0] / (hi - lo)
        assert expected_state_norm(r_min, r_max, 3.0) == pytest.approx(3.0 * integral, rel=1e-9)
    with pytest.raises(ValueError):
        expected_state_norm(0.5, 1.0, 1.0)
    with pytest.raises(ValueError):
        expected_state_norm(0.6, 0.5, 1.0)


# --------------------------------------------------------------------------- 5. edges


def test_gamma_log_init_accuracy():
    nu = np.array([NU_MIN, 1e-7, 1e-5, 1e-3, 0.1, 1.0, 10.0, 43.0])
    got = np.asarray(gamma_log_init(jnp.asarray(nu, jnp.float32)), np.float64)
    nu32 = np.asarray(np.float32(nu), np.float64)  # the float32 inputs it actually saw
    want = 0.5 * np.log(-np.expm1(-2 * nu32))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # at nu = 1e-7 the naive float32 1 - exp(-2 nu) is off by ~20%: expm1 matters
    naive = 0.5 * np.log(np.float64(1 - np.exp(np.float32(-2e-7))))
    assert abs(naive - want[1]) > 1e-2
    assert np.isfinite(float(gamma_log_init(jnp.float32(NU_MIN))))


def _assert_layer_finite(layer, u, grad=True):
    for k, v in params_of(layer).items():
        assert np.all(np.isfinite(v)), k
    lam = layer.eigenvalues()
    assert np.all(np.isfinite(np.asarray(lam)))
    modulus = jnp.exp(-jnp.exp(layer.nu_log[...]))  # |lambda| as the layer parameterises it
    assert modulus.dtype == jnp.float32 and bool(jnp.all(modulus < 1))
    assert np.all(np.abs(np.asarray(lam, np.complex128)) < 1 + 1e-6)
    y = layer(u)
    assert np.all(np.isfinite(y))
    if not grad:
        return
    grads = nnx.grad(lambda m: jnp.sum(m(u) ** 2))(layer)
    for k, g in grads.items():
        assert np.all(np.isfinite(g[...])), k


def test_full_unit_disk_ring_is_finite():
    layer = LRU(1, 50000, r_min=0.0, r_max=1.0, rung="lru", rngs=nnx.Rngs(30))
    _assert_layer_finite(layer, make_input(31, (1, 5, 1)), grad=False)
    lam = np.asarray(layer.eigenvalues(), np.complex128)
    assert np.abs(lam).max() > 0.9999 and np.abs(lam).min() < 0.01  # reached both ends


def test_clamps_at_forced_extremes(monkeypatch):
    """u1 = 0 (|lambda| = 0, nu = inf unclamped) and u1 -> 1 (nu -> 0), theta = 0."""
    extremes = jnp.array([0.0, 1e-38, 0.5, np.nextafter(np.float32(1), np.float32(0))],
                         jnp.float32)
    assert extremes.shape == (D_STATE,)
    original = jax.random.uniform

    def fake_uniform(key, shape=(), dtype=jnp.float32, *args, **kwargs):
        if tuple(shape) == extremes.shape:
            return extremes.astype(dtype)
        return original(key, shape, dtype, *args, **kwargs)

    monkeypatch.setattr(lru_module.jax.random, "uniform", fake_uniform)
    nu, theta = sample_ring(jax.random.key(0), D_STATE, 0.0, 1.0, 6.28)
    assert np.asarray(theta)[0] == 0.0  # the patch took effect
    nu = np.asarray(nu)
    assert np.all(np.isfinite(nu)) and np.all(nu >= NU_MIN)
    np.testing.assert_allclose(nu[0], -0.5 * np.log(RADIUS_SQ_MIN), rtol=1e-6)
    assert nu[3] == np.float32(NU_MIN)
    assert np.float32(np.exp(-np.float32(NU_MIN))) < 1
    layer = LRU(D_MODEL, D_STATE, r_min=0.0, r_max=1.0, rung="lru", rngs=nnx.Rngs(0))
    monkeypatch.undo()
    assert np.all(np.isfinite(np.asarray(layer.theta_log[...])))
    _assert_layer_finite(layer, make_input(31))  # forward and gradient


# --------------------------------------------------------------------------- 6. errors


def test_unknown_rung_raises_listing_names():
    with pytest.raises(ValueError) as err:
        LRU(D_MODEL, D_STATE, rung="lstm", rngs=nnx.Rngs(0))
    assert "lstm" in str(err.value)
    for name in RUNG_NAMES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="lstm"):
        get_rung("lstm")


@pytest.mark.parametrize("r_min, r_max", [(0.5, 0.5), (0.9, 0.5), (0.0, 1.01), (-0.1, 0.9)])
def test_bad_ring_raises(r_min, r_max):
    with pytest.raises(ValueError, match="r_min"):
        LRU(D_MODEL, D_STATE, r_min=r_min, r_max=r_max, rung="lru", rngs=nnx.Rngs(0))


def test_bad_max_phase_raises():
    with pytest.raises(ValueError, match="max_phase"):
        LRU(D_MODEL, D_STATE, max_phase=0.0, rung="lru", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("rung", ["rnn_relu", "diag_complex", "stable_exp"])
def test_ring_given_to_non_ring_rung_raises(rung):
    with pytest.raises(ValueError, match=rung):
        LRU(D_MODEL, D_STATE, r_min=0.5, rung=rung, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=rung):
        LRU(D_MODEL, D_STATE, max_phase=3.14, rung=rung, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("max_phase", [6.28, 2 * np.pi])
def test_whole_disk_accepted_by_non_ring_rung(max_phase):
    # 6.28 (the paper code's default) and 2 pi both name the unit disk these rungs use.
    layer = LRU(D_MODEL, D_STATE, r_min=0.0, r_max=1.0, max_phase=max_phase, rung="exp",
                rngs=nnx.Rngs(0))
    assert layer.eigenvalues().shape == (D_STATE,)


# --------------------------------------------------------------------------- 7. ladder


def test_ladder_table():
    assert RUNG_NAMES == ("rnn_relu", "rnn_tanh", "linear_dense", "diag_complex", "exp",
                          "stable_exp", "ring", "lru")
    assert tuple(r.name for r in LADDER) == RUNG_NAMES
    for name in RUNG_NAMES:
        rung = get_rung(name)
        assert isinstance(rung, Rung) and rung.name == name
    assert [n for n in RUNG_NAMES if get_rung(n).gamma] == ["lru"]
    assert [n for n in RUNG_NAMES if get_rung(n).ring_init] == ["ring", "lru"]
    assert [n for n in RUNG_NAMES if get_rung(n).transition == "dense"] == list(DENSE_RUNGS)
    assert [get_rung(n).activation for n in DENSE_RUNGS] == ["relu", "tanh", None]
    assert [get_rung(n).parameterization for n in DIAG_RUNGS] == [
        "real_imag", "exp", "stable_exp", "stable_exp", "stable_exp"]
    # neighbouring rungs differ in exactly one respect past the dense block (one change a time)
    for prev, nxt in zip(DIAG_RUNGS, DIAG_RUNGS[1:]):
        a, b = dataclasses.asdict(get_rung(prev)), dataclasses.asdict(get_rung(nxt))
        changed = {k for k in a if a[k] != b[k]} - {"name", "label"}
        assert len(changed) == 1, (prev, nxt, changed)
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_rung("lru").gamma = False
    assert UNIT_DISK == (0.0, 1.0, TWO_PI)


# --------------------------------------------------------------------------- 8. analysis


@pytest.mark.parametrize("rung, bidirectional", [("lru", True), ("exp", False),
                                                 ("rnn_relu", True)])
def test_layer_eigenvalues(rung, bidirectional):
    model = Classifier(D_MODEL, 2, 2, functools.partial(LRU, D_MODEL, D_STATE, rung=rung,
                                                        bidirectional=bidirectional),
                       d_input=1, rngs=nnx.Rngs(40))
    found = layer_eigenvalues(model)
    layers = [block.mixer for block in model.backbone.blocks]
    assert sorted(found) == ["backbone/blocks/0/mixer", "backbone/blocks/1/mixer"]
    for key, layer in zip(sorted(found), layers):
        eig = found[key]
        assert isinstance(eig, np.ndarray) and eig.shape == (D_STATE,)
        assert np.iscomplexobj(eig)
        np.testing.assert_array_equal(eig, np.asarray(layer.eigenvalues()))
        if rung in DENSE_RUNGS:
            A = np.asarray(layer.A[...], np.float64)
            # an independent check of "the eigenvalues of A": each one makes A - lambda I
            # singular, and together they sum to the trace and multiply to the determinant
            for lam in eig:
                smin = np.linalg.svd(A - lam * np.eye(D_STATE), compute_uv=False)[-1]
                assert smin < 1e-5
            assert np.sum(eig).real == pytest.approx(np.trace(A), abs=1e-5)
            assert np.prod(eig.astype(np.complex128)).real == pytest.approx(
                np.linalg.det(A), abs=1e-5)
        else:
            p64 = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
            np.testing.assert_allclose(eig, ref_lambda(p64, rung, np), rtol=1e-6, atol=1e-6)
