"""HiPPO-LegS and its normal-plus-low-rank form: the initialisations of S4, S4D and S5.

HiPPO-LegS (Gu et al. 2020), for ``n`` state dimensions (indices from 0)::

    A[i, k] = -sqrt(2i + 1) sqrt(2k + 1)   if i > k
            = -(i + 1)                       if i = k
            = 0                              if i < k
    B[i]    = sqrt(2i + 1)

Normal plus low rank (S4, Gu et al. 2022, Sec. 3.3): with ``P[i] = sqrt(i + 1/2)``,
``A + P P^T = S - I/2`` where ``S`` is skew-symmetric, so the *normal part*
``A_N = A + P P^T`` (S5's "HiPPO-N") diagonalises as ``V diag(Lambda) V^*`` with unitary
``V`` and ``Re(Lambda) = -1/2``; and ``A = V (diag(Lambda) - (V^* P)(V^* P)^*) V^*``.

Everything here is float64/complex128 numpy, computed once at initialisation.
"""

from __future__ import annotations

import numpy as np


def legs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegS ``(A (n, n), B (n,))``."""
    q = np.sqrt(2 * np.arange(n) + 1.0)
    A = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(n) + 1.0)
    return A, q.copy()


def legs_low_rank(n: int) -> np.ndarray:
    """``P`` with ``A + P P^T`` normal: ``P[i] = sqrt(i + 1/2)``."""
    return np.sqrt(np.arange(n) + 0.5)


def legs_normal(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of the normal part ``A + P P^T = V diag(Lambda) V^*``.

    Returns ``(Lambda (n,) complex128, V (n, n) complex128)``, eigenvalues sorted by
    imaginary part (descending), so that conjugate pairs sit symmetrically: for even ``n``
    the first ``n // 2`` have non-negative imaginary part.
    """
    A, _ = legs(n)
    P = legs_low_rank(n)
    S = A + np.outer(P, P)  # = skew - I/2
    skew = S + 0.5 * np.eye(n)
    # i * skew is Hermitian: its real eigenvalues w give skew's eigenvalues -i w.
    w, V = np.linalg.eigh(1j * skew)
    lam = -0.5 - 1j * w
    order = np.argsort(-lam.imag, kind="stable")
    return lam[order], V[:, order]
