"""HiPPO-LegS: the matrices by their definition, and the normal-plus-low-rank identities."""

import numpy as np
import pytest

from lru.layers.hippo import legs, legs_low_rank, legs_normal


@pytest.mark.parametrize("n", [1, 4, 9, 64])
def test_legs_and_its_normal_plus_low_rank_form(n):
    A, B = legs(n)
    for i in range(n):
        assert B[i] == pytest.approx(np.sqrt(2 * i + 1))
        for k in range(n):
            expected = (-np.sqrt((2 * i + 1) * (2 * k + 1)) if i > k else
                        -(i + 1.0) if i == k else 0.0)
            assert A[i, k] == pytest.approx(expected)
    P = legs_low_rank(n)
    skew = A + np.outer(P, P) + 0.5 * np.eye(n)
    np.testing.assert_allclose(skew, -skew.T, atol=1e-12)  # A + P P^T = skew - I/2
    lam, V = legs_normal(n)
    np.testing.assert_allclose(V.conj().T @ V, np.eye(n), atol=1e-10)  # unitary
    np.testing.assert_allclose(lam.real, -0.5, atol=1e-10)
    np.testing.assert_allclose(V @ np.diag(lam) @ V.conj().T, A + np.outer(P, P), atol=1e-9)
    Pt = V.conj().T @ P
    dplr = V @ (np.diag(lam) - np.outer(Pt, Pt.conj())) @ V.conj().T
    np.testing.assert_allclose(dplr, A, atol=1e-9)
    dense = np.linalg.eigvals(A + np.outer(P, P))  # an independent eigen-solver
    np.testing.assert_allclose(np.sort(lam.imag), np.sort(dense.imag), atol=1e-8)
    np.testing.assert_allclose(dense.real, -0.5, atol=1e-8)
    assert np.all(np.diff(lam.imag) <= 1e-12)  # sorted, conjugate pairs mirrored
    np.testing.assert_allclose(lam[: n // 2], np.conj(lam[::-1][: n // 2]), atol=1e-9)
