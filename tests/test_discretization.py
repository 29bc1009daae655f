"""Discretisation of the baselines against dense linear algebra (float64 numpy/scipy).

ZOH: Van Loan's block exponential ``expm([[A, B], [0, 0]] dt) = [[A_bar, B_bar], [0, I]]``
gives ``A_bar = e^{A dt}`` and ``B_bar = int_0^dt e^{A s} ds B`` without any inverse of A.
Bilinear: ``A_bar = (I - dt/2 A)^{-1} (I + dt/2 A)``, ``B_bar = (I - dt/2 A)^{-1} dt B``.
The layers compute both in the diagonal (eigen) basis; here they are computed densely in the
original basis and mapped back.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.linalg import expm

from lru.layers import S4, S4D, S5
from lru.layers.hippo import legs_normal


def van_loan_zoh(A: np.ndarray, B: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    n, m = A.shape[0], B.shape[1]
    M = np.zeros((n + m, n + m), complex)
    M[:n, :n], M[:n, n:] = A * dt, B * dt
    E = expm(M)
    return E[:n, :n], E[:n, n:]


def bilinear(A: np.ndarray, B: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    eye = np.eye(A.shape[0])
    inv = np.linalg.inv(eye - dt / 2 * A)
    return inv @ (eye + dt / 2 * A), inv @ (dt * B)


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_s5_discretisation_equals_the_dense_system(discretization):
    P, H, dt = 6, 3, 0.05
    layer = S5(H, P, conj_sym=False, discretization=discretization, rngs=nnx.Rngs(0))
    layer.log_step[...] = jnp.full_like(layer.log_step[...], np.log(dt))  # one shared step
    lam_bar, B_bar = (np.asarray(x, np.complex128) for x in layer.discretize())
    lam, V = legs_normal(P)  # A = V diag(lam) V^*, B = V B~ in the original basis
    A = V @ np.diag(lam) @ V.conj().T
    B_tilde = np.asarray(layer.B[...][..., 0] + 1j * layer.B[...][..., 1], np.complex128)
    A_bar, B_dense = (van_loan_zoh if discretization == "zoh" else bilinear)(A, V @ B_tilde, dt)
    np.testing.assert_allclose(V.conj().T @ A_bar @ V, np.diag(lam_bar), atol=2e-6)
    np.testing.assert_allclose(V.conj().T @ B_dense, B_bar, rtol=1e-4, atol=2e-6)


def test_s4d_zoh_equals_the_matrix_exponential():
    H, N = 3, 8
    layer = S4D(H, N, init="inv", rngs=nnx.Rngs(1))
    _, dA, dB = (np.asarray(x, np.complex128) for x in layer.discretize())
    a = np.asarray(layer.continuous_eigenvalues(), np.complex128)
    dt = np.exp(np.asarray(layer.log_dt[...], np.float64))
    for h in range(H):
        A_bar, B_bar = van_loan_zoh(np.diag(a[h]), np.ones((N // 2, 1)), dt[h])  # B = 1
        np.testing.assert_allclose(np.diag(A_bar), dA[h], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(A_bar - np.diag(np.diag(A_bar)), 0, atol=1e-12)
        np.testing.assert_allclose(B_bar[:, 0], dB[h], rtol=1e-4, atol=1e-6)


def test_s4_bilinear_equals_the_dense_inverse():
    H, N = 2, 6
    layer = S4(H, N, l_max=16, rngs=nnx.Rngs(2))
    A_bar, B_bar, _ = (np.asarray(x, np.complex128) for x in layer.discrete())
    lam, p, b, _, dt = (np.asarray(x) for x in layer.ssm())
    full = lambda x: np.concatenate([x, np.conj(x)], axis=-1)  # conjugate-symmetric halves
    lam, p, b = full(lam), full(p), full(b)
    for h in range(H):
        A = np.diag(lam[h]) - np.outer(p[h], p[h].conj())  # DPLR
        A_ref, B_ref = bilinear(A, b[h][:, None], float(dt[h]))
        np.testing.assert_allclose(A_bar[h], A_ref, atol=2e-5)
        np.testing.assert_allclose(B_bar[h], B_ref[:, 0], atol=2e-6)
