"""Tests for ``lru.layers.s5.S5`` (Smith et al. 2023).

The forward pass is checked against a Python loop over time written here from the paper's
equations and the layer's own parameters (numpy float64 for values, plain ``jnp`` for
autodiff-reference gradients) and against the layer's own recurrent mode; the
initial eigenvalues against an eigen-solve of the dense HiPPO-N matrix built here from its
formula. Seeds are fixed and shapes small.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.linalg import block_diag

from lru.layers.hippo import legs_normal
from lru.layers.s5 import S5

BATCH, TIME, D_MODEL, D_STATE = 2, 7, 3, 8


def params_of(layer: nnx.Module) -> dict[str, jax.Array]:
    return {str(k): v[...] for k, v in nnx.state(layer, nnx.Param).items()}


def make_input(seed: int, shape=(BATCH, TIME, D_MODEL)) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


# --------------------------------------------------------------------------- reference


def ref_forward(p, u, xp, *, discretization="zoh", conj_sym=True, bidirectional=False,
                clip_eigs=False, step_rescale=1.0, mask=None):
    """y_t = c Re(C~ x_t) + D u_t, x_t = Lambda_bar x_{t-1} + B_bar u_t, by a Python loop."""
    re = p["Lambda_re"]
    if clip_eigs:
        re = xp.minimum(re, -1e-4)
    lam = re + 1j * p["Lambda_im"]
    dt = step_rescale * xp.exp(p["log_step"][:, 0])
    B = p["B"][..., 0] + 1j * p["B"][..., 1]
    if discretization == "zoh":
        lam_bar = xp.exp(lam * dt)
        B_bar = ((lam_bar - 1) / lam)[:, None] * B
    else:
        lam_bar = (1 + dt / 2 * lam) / (1 - dt / 2 * lam)
        B_bar = (dt / (1 - dt / 2 * lam))[:, None] * B
    if "C1" in p:
        C = xp.concatenate([p["C1"][..., 0] + 1j * p["C1"][..., 1],
                            p["C2"][..., 0] + 1j * p["C2"][..., 1]], axis=1)
    else:
        C = p["C"][..., 0] + 1j * p["C"][..., 1]
    batch, time, _ = u.shape
    bu = [u[:, t] @ B_bar.T for t in range(time)]
    if mask is not None:
        bu = [xp.where(mask[:, t, None], bu[t], 0) for t in range(time)]

    def run(order):
        x = xp.zeros((batch, lam.shape[0]), bu[0].dtype)
        out = [None] * time
        for t in order:
            x = lam_bar * x + bu[t]
            out[t] = x
        return xp.stack(out, axis=1)

    xs = [run(range(time))]
    if bidirectional:
        xs.append(run(range(time - 1, -1, -1)))
    y = xp.real(xp.concatenate(xs, axis=-1) @ C.T)
    if conj_sym:
        y = 2 * y
    return y + p["D"] * u


def hippo_n_dense(n: int) -> np.ndarray:
    """A + P P^T of HiPPO-LegS, from the formulas (not from lru.layers.hippo)."""
    A = np.zeros((n, n))
    for i in range(n):
        for k in range(n):
            if i > k:
                A[i, k] = -np.sqrt(2 * i + 1) * np.sqrt(2 * k + 1)
            elif i == k:
                A[i, k] = -(i + 1)
    P = np.sqrt(np.arange(n) + 0.5)
    return A + np.outer(P, P)


def by_imag(z):
    return np.asarray(z)[np.argsort(np.imag(z), kind="stable")]


# --------------------------------------------------------------------------- 1. shapes


@pytest.mark.parametrize("C_init", ["trunc_standard_normal", "complex_normal"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("blocks", [1, 2])
@pytest.mark.parametrize("conj_sym", [True, False])
def test_parameter_names_and_shapes(conj_sym, blocks, bidirectional, C_init):
    layer = S5(D_MODEL, D_STATE, blocks=blocks, conj_sym=conj_sym, C_init=C_init,
               bidirectional=bidirectional, rngs=nnx.Rngs(0))
    d, n = D_MODEL, D_STATE // 2 if conj_sym else D_STATE
    expected = {"Lambda_re": (n,), "Lambda_im": (n,), "B": (n, d, 2), "D": (d,),
                "log_step": (n, 1)}
    if bidirectional and C_init != "complex_normal":
        expected.update(C1=(d, n, 2), C2=(d, n, 2))
    else:
        expected.update(C=(d, 2 * n if bidirectional else n, 2))
    params = params_of(layer)
    assert {k: tuple(v.shape) for k, v in params.items()} == expected
    assert all(v.dtype == jnp.float32 for v in params.values())
    assert S5.RECURRENT_PARAMS == {"Lambda_re", "Lambda_im", "B", "log_step"}
    u = jax.ShapeDtypeStruct((BATCH, TIME, d), jnp.float32)
    y = jax.eval_shape(lambda u: layer(u), u)
    assert y.shape == u.shape and y.dtype == jnp.float32
    x = jax.eval_shape(lambda u: layer.states(u), u)
    assert x.shape == (BATCH, TIME, 2 * n if bidirectional else n)
    assert x.dtype == jnp.complex64
    lam = layer.eigenvalues()
    assert lam.shape == (n,) and lam.dtype == jnp.complex64


# --------------------------------------------------------------------------- 2. equations

CASES = [(disc, cs) for disc in ("zoh", "bilinear") for cs in (True, False)]


@pytest.mark.parametrize("discretization, conj_sym", CASES)
def test_forward_and_gradients_match_loop(discretization, conj_sym):
    kw = dict(discretization=discretization, conj_sym=conj_sym)
    layer = S5(D_MODEL, D_STATE, blocks=2, step_rescale=1.5, rngs=nnx.Rngs(2), **kw)
    u, w = make_input(3), make_input(4)

    # values: against the float64 loop
    p64 = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
    want = ref_forward(p64, np.asarray(u, np.float64), np, step_rescale=1.5, **kw)
    # one program for the layer's three paths (each eager op would compile apart)
    def paths(m):
        state, ys = m.init_state(BATCH), []
        for t in range(TIME):
            state, y_t = m.step(state, u[:, t])
            ys.append(y_t)
        return m(u), jnp.stack(ys, axis=1), state, m.states(u)[:, -1]

    got, stepped, state, last = nnx.jit(paths)(layer)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    # values: against the layer's own recurrent mode, one step at a time
    assert state.shape == (BATCH, layer.n) and state.dtype == jnp.complex64
    np.testing.assert_allclose(stepped, got, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state, last, rtol=1e-5, atol=1e-6)

    # gradients w.r.t. every parameter: custom-VJP scan == autodiff of the loop
    def ref_loss(p):
        return jnp.sum(w * ref_forward(p, u, jnp, step_rescale=1.5, **kw))

    want_g = jax.jit(jax.grad(ref_loss))(params_of(layer))
    got_g = nnx.jit(nnx.grad(lambda m: jnp.sum(w * m(u))))(layer)
    got_g = {str(k): v[...] for k, v in got_g.items()}
    assert set(got_g) == set(want_g)
    for k in want_g:
        scale = float(jnp.max(jnp.abs(want_g[k])))
        assert scale > 0, k  # not vacuous
        np.testing.assert_allclose(got_g[k], want_g[k], rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=k)


@pytest.mark.parametrize("C_init", ["lecun_normal", "complex_normal"])
def test_bidirectional_matches_loop(C_init):
    layer = S5(D_MODEL, D_STATE, bidirectional=True, C_init=C_init, discretization="bilinear",
               rngs=nnx.Rngs(5))
    u = make_input(6)
    p64 = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
    want = ref_forward(p64, np.asarray(u, np.float64), np, discretization="bilinear",
                       bidirectional=True)
    np.testing.assert_allclose(layer(u), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.init_state(BATCH)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(jnp.zeros((BATCH, layer.n), jnp.complex64), u[:, 0])


# --------------------------------------------------------------------------- 3. init


@pytest.mark.parametrize("blocks", [1, 2])
@pytest.mark.parametrize("conj_sym", [True, False])
def test_initial_eigenvalues_and_steps(conj_sym, blocks):
    dt_min, dt_max = 0.01, 0.2
    layer = S5(D_MODEL, D_STATE, blocks=blocks, conj_sym=conj_sym, dt_min=dt_min,
               dt_max=dt_max, rngs=nnx.Rngs(7))
    lam = np.asarray(layer.continuous_eigenvalues(), np.complex128)
    block = D_STATE // blocks
    lam_block = legs_normal(block)[0]
    keep = block // 2 if conj_sym else block
    np.testing.assert_allclose(lam, np.tile(lam_block[:keep], blocks), rtol=1e-6, atol=1e-6)
    # an independent path: eigenvalues of the dense normal part of HiPPO-LegS
    dense = np.linalg.eigvals(hippo_n_dense(block))
    if blocks == 1:
        full = np.concatenate([lam, lam.conj()]) if conj_sym else lam
        np.testing.assert_allclose(by_imag(full), by_imag(dense), rtol=1e-5, atol=1e-5)
        if conj_sym:  # the kept half has no conjugate pair inside it
            assert np.all(lam.imag > 0)
    np.testing.assert_allclose(lam.real, -0.5, atol=1e-6)
    # the discrete eigenvalues are the ZOH map of these
    dt = np.exp(np.asarray(layer.log_step[...], np.float64)[:, 0])
    np.testing.assert_allclose(layer.eigenvalues(), np.exp(lam * dt), rtol=1e-5, atol=1e-6)
    log_step = np.asarray(layer.log_step[...])
    assert np.all(log_step >= np.log(dt_min) - 1e-6) and np.all(log_step <= np.log(dt_max) + 1e-6)
    assert np.unique(log_step).size == log_step.size  # drawn per state


@pytest.mark.parametrize("conj_sym", [True, False])
def test_B_is_projected_real_matrix(conj_sym):
    """B~ = V^{-1} B for a real lecun-normal B: mapping back by V recovers a real matrix."""
    d, P, blocks = 64, 8, 2
    layer = S5(d, P, blocks=blocks, conj_sym=conj_sym, rngs=nnx.Rngs(8))
    V_block = legs_normal(P // blocks)[1]
    keep = P // blocks // 2 if conj_sym else P // blocks
    V = block_diag(*([V_block[:, :keep]] * blocks))
    Bt = np.asarray(layer.B[...], np.float64)
    back = V @ (Bt[..., 0] + 1j * Bt[..., 1])
    if conj_sym:  # the dropped half are the conjugates: B = V B~ + conj(V B~)
        B = 2 * back.real
    else:
        np.testing.assert_allclose(back.imag, 0, atol=1e-6)
        B = back.real
    # lecun normal over fan_in = P (truncated normal, variance 1/P): a loose check
    assert 0.7 / np.sqrt(P) < B.std() < 1.3 / np.sqrt(P)
    if conj_sym:  # and it is B itself: V_full^* B has the conjugate-pair structure
        V_full = block_diag(*([V_block] * blocks))
        full = V_full.conj().T @ B
        kept = np.concatenate([full[j * (P // blocks):j * (P // blocks) + keep]
                               for j in range(blocks)])
        np.testing.assert_allclose(kept, Bt[..., 0] + 1j * Bt[..., 1], atol=1e-5)


# --------------------------------------------------------------------------- 4. padding


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_padding_matches_unpadded(discretization):
    layer = S5(D_MODEL, D_STATE, bidirectional=True, discretization=discretization,
               rngs=nnx.Rngs(9))
    lengths = [TIME, 4, 2]
    u = make_input(10, (len(lengths), TIME, D_MODEL))
    mask = jnp.arange(TIME)[None, :] < jnp.asarray(lengths)[:, None]
    got = np.asarray(layer(u, mask))
    for i, n in enumerate(lengths):
        alone = np.asarray(layer(u[i:i + 1, :n]))
        np.testing.assert_allclose(got[i, :n], alone[0], rtol=1e-5, atol=1e-5)
    # control: without the mask the padded steps leak into the backward states
    assert not np.allclose(np.asarray(layer(u))[1, :4], got[1, :4], atol=1e-3)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("scan_method,recompute", [("native", False), ("inplace", False),
                                                   ("native", True)])
def test_call_on_planar_storage_equals_the_complex_states_path(bidirectional, scan_method,
                                                                recompute):
    """``__call__`` (real [Re | Im] products around planar_recurrence) gives the outputs and
    parameter gradients of ``_readout(states(u, mask), u)`` (complex, linear_recurrence),
    also when its backward pass recomputes the states (``recompute_states``)."""
    layer = S5(D_MODEL, D_STATE, bidirectional=bidirectional, scan_method=scan_method,
               recompute_states=recompute, rngs=nnx.Rngs(12))
    u = make_input(13)
    mask = jnp.arange(TIME)[None, :] < jnp.asarray([TIME, 3])[:, None]
    graph, params = nnx.split(layer)

    def grads(apply):
        def loss(params):
            m = nnx.merge(graph, params)
            return jnp.sum(jnp.where(mask[..., None], apply(m), 0) ** 2)
        return jax.value_and_grad(loss)(params)

    (v1, g1) = grads(lambda m: m(u, mask))
    (v0, g0) = grads(lambda m: m._readout(m.states(u, mask), u))
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- 5. clip_eigs


def test_clip_eigs():
    u = make_input(11)
    for clip in (True, False):
        layer = S5(D_MODEL, D_STATE, clip_eigs=clip, rngs=nnx.Rngs(12))
        layer.Lambda_re[...] = jnp.full_like(layer.Lambda_re[...], 0.3).at[0].set(-2.0)
        lam = np.asarray(layer.continuous_eigenvalues())
        if clip:
            assert np.all(lam.real <= -1e-4)
            np.testing.assert_allclose(lam.real, [-2.0] + [-1e-4] * (lam.size - 1), rtol=1e-6)
            assert np.all(np.abs(np.asarray(layer.eigenvalues())) < 1)
        else:  # control: the raw parameter is used
            np.testing.assert_allclose(lam.real[1:], 0.3, rtol=1e-6)
        p64 = {k: np.asarray(v, np.float64) for k, v in params_of(layer).items()}
        want = ref_forward(p64, np.asarray(u, np.float64), np, clip_eigs=clip)
        np.testing.assert_allclose(layer(u), want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- 6. options


@pytest.mark.parametrize("kwargs, match", [
    (dict(discretization="euler"), r"discretization='euler' is not valid; choose one of \('zoh', 'bilinear'\)"),
    (dict(C_init="xavier"), r"C_init.*trunc_standard_normal.*lecun_normal.*complex_normal"),
    (dict(scan_method="fft"), r"scan_method.*auto.*sequential.*associative"),
    (dict(blocks=3), r"blocks.*divisor.*d_state=8"),
    (dict(blocks=0), r"blocks"),
    (dict(blocks=8), r"conj_sym.*even"),
    (dict(dt_min=0.2, dt_max=0.1), r"dt_min.*dt_max"),
    (dict(dt_min=0.0), r"dt_min"),
    (dict(step_rescale=0.0), r"step_rescale"),
])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S5(D_MODEL, D_STATE, rngs=nnx.Rngs(0), **kwargs)


def test_odd_blocks_fine_without_conj_sym():
    layer = S5(D_MODEL, D_STATE, blocks=8, conj_sym=False, rngs=nnx.Rngs(0))
    assert layer.eigenvalues().shape == (D_STATE,)
    np.testing.assert_allclose(layer.continuous_eigenvalues(), -0.5, atol=1e-7)
