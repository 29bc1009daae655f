"""S4: the structured state space sequence model (Gu, Goel and Re 2022), DPLR form.

Axis legend: ``b`` batch, ``t`` time (``L`` in the paper), ``d`` model width (``H``
channels), ``n`` state (``N`` in the paper), ``m = n // 2`` stored (half) state, ``k``
frequency.

Each of the ``H`` channels is its own single-input single-output SSM with a diagonal plus
low-rank (DPLR, rank 1) state matrix, written in the eigenbasis of HiPPO-LegS's normal part
(Sec. 3.3, Algorithm 1)::

    A     = diag(Lambda) - P P^*                                        (n, n)
    A_bar = (I - dt/2 A)^{-1} (I + dt/2 A),  B_bar = (I - dt/2 A)^{-1} dt B   (bilinear)
    K[l]  = C A_bar^l B_bar,  l < L                                     (the SSM kernel)
    y     = K * u + D u                                                 (causal convolution)

*Conjugate symmetry (the half convention).* Like the reference, only ``m = n / 2`` of the
``n`` eigenvalues are stored (those with ``Im >= 0``, from :func:`lru.layers.hippo.legs_normal`);
the full system is ``Lambda_full = [Lambda, conj(Lambda)]`` and likewise for ``P``, ``B`` and
``C``, which makes it similar to a real system (``K`` is real). ``d_state`` must be even.

*The kernel (Algorithm 1).* With ``C~ = C (I - A_bar^L)``, the truncated generating function
at the roots of unity ``z_k = exp(-2 pi i k / L)`` is
``K^(z) = 2/(1 + z) C~ [g(z) - A]^{-1} B`` with ``g(z) = (2/dt)(1 - z)/(1 + z)``; the Woodbury
identity turns the rank-1 correction into four Cauchy kernels, and ``K = ifft(K^)``. This
module writes the Cauchy kernels as ``r_ab(z) = sum_n a_n b_n / ((2/dt)(1 - z) - Lambda_n (1 + z))``
(``= k_ab / (1 + z)``), so ``K^ = 2 [r00 - (1 + z) r01 r10 / (1 + (1 + z) r11)]`` has no
``0/0`` at ``z = -1``; only ``k = 0 .. L/2`` are evaluated and ``irfft`` returns the real ``K``.

*C~ is the stored parameter* (``C``), as in the reference: the kernel never needs ``A_bar^L``.
The ``L`` it is folded at is ``l_max`` when given -- the kernel is then computed at ``l_max``
and truncated to the input length, as the reference does, so a sequence gives the same
outputs whatever it is padded to -- and otherwise the input length itself (then padding a
sequence changes its kernel). The recurrent mode undoes the fold,
``C = C~ (I - A_bar^L)^{-1}``, with the same ``L``.

*Bidirectional* (as the reference's ``FFTConv`` does it). A second ``C~`` (sharing
``Lambda``, ``P``, ``B``, ``dt``) gives a second kernel ``K_b``, applied right to left,
shifted by one step so that it excludes ``u_t``, and added: ``y_t = sum_{j>=0} K[j] u_{t-j}
+ sum_{j>=0} K_b[j] u_{t+1+j} + D u_t``. (The reference builds the length-``2L`` kernel
``[K, 0] + [0, flip(K_b)]``, whose circular convolution is exactly this; so does
:class:`lru.layers.s4d.S4D`.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lru.layers.hippo import legs, legs_low_rank, legs_normal

Array = jax.Array

#: ``Re(Lambda)`` is clipped to at most this in the forward (as in the Annotated S4) so the
#: continuous system stays stable, whatever the optimiser does to ``Lambda_re``.
MAX_LAMBDA_RE = -1e-4


def _complex(x: Array) -> Array:
    """``(..., 2)`` real (real, imaginary) -> ``(...)`` complex (the reference's ``_r2c``)."""
    return jax.lax.complex(x[..., 0], x[..., 1])


def _real_pair(z: np.ndarray) -> np.ndarray:
    """``(...)`` complex -> ``(..., 2)`` float32 (real, imaginary)."""
    return np.stack([z.real, z.imag], axis=-1).astype(np.float32)


def _full(x: Array) -> Array:
    """Half-convention ``(..., m)`` -> the conjugate-symmetric full ``(..., 2m)``."""
    return jnp.concatenate([x, jnp.conj(x)], axis=-1)


class S4(nnx.Module):
    """S4 layer: ``H = d_model`` independent DPLR SSMs applied by FFT convolution.

    Parameters (names as in the reference code; ``m = d_state // 2``, ``d = d_model``,
    ``k = 2 if bidirectional else 1``; complex arrays stored as ``(..., 2)`` float32 pairs
    (real, imaginary), the reference's ``_c2r`` convention):

    * ``Lambda_re``, ``Lambda_im`` ``(d, m)``: the diagonal part, HiPPO-LegS's normal
      eigenvalues (``Re = -1/2``) in every channel.
    * ``P`` ``(d, m, 2)``: the rank-1 term ``V^* P_legs``; ``A = diag(Lambda) - P P^*``.
    * ``B`` ``(d, m, 2)``: ``V^* B_legs``.
    * ``C`` ``(k, d, m, 2)``: ``C~ = C (I - A_bar^L)``, complex standard normal (the
      reference's ``randn(cfloat)``: variance 1/2 per part).
    * ``D`` ``(d,)`` ~ N(0, 1); ``log_dt`` ``(d,)`` ~ U[log dt_min, log dt_max].

    Args:
      d_model: input and output width ``d`` (the number of SSM channels ``H``).
      d_state: full state size ``n`` (even); ``n / 2`` eigenvalues are stored.
      dt_min, dt_max: range of the initial step sizes (log-uniform).
      bidirectional: add a right-to-left kernel (see the module docstring).
      l_max: the length ``C~`` is folded at; inputs may not be longer. ``None``: the input's
        own length.
      rngs: parameter RNG streams (uses ``rngs.params``).
    """

    #: Parameters the reference registers at the SSM learning rate with weight decay 0:
    #: ``dt``, ``A`` (``Lambda_re``, ``Lambda_im`` and ``P``) and ``B``. ``C`` (``C~``) and
    #: ``D`` train with everything else. :mod:`lru.training.optim` reads this.
    RECURRENT_PARAMS = frozenset({"Lambda_re", "Lambda_im", "P", "B", "log_dt"})

    def __init__(
        self,
        d_model: int,
        d_state: int,
        *,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        bidirectional: bool = False,
        l_max: int | None = None,
        rngs: nnx.Rngs,
    ):
        if not (isinstance(d_model, (int, np.integer)) and d_model >= 1):
            raise ValueError(f"S4: d_model must be a positive integer; got {d_model!r}")
        if not (isinstance(d_state, (int, np.integer)) and d_state >= 2 and d_state % 2 == 0):
            raise ValueError(f"S4: d_state must be a positive even integer (conjugate pairs); "
                             f"got {d_state!r}")
        if not 0.0 < dt_min <= dt_max:
            raise ValueError(f"S4: need 0 < dt_min <= dt_max; got dt_min={dt_min}, "
                             f"dt_max={dt_max}")
        if l_max is not None and not (isinstance(l_max, (int, np.integer)) and l_max >= 1):
            raise ValueError(f"S4: l_max must be None or a positive integer; got {l_max!r}")
        self.d_model, self.d_state = int(d_model), int(d_state)
        self.bidirectional = bidirectional
        self.l_max = None if l_max is None else int(l_max)
        d, m, k = self.d_model, self.d_state // 2, 2 if bidirectional else 1

        lam, V = legs_normal(self.d_state)
        _, b_legs = legs(self.d_state)
        p = V.conj().T @ legs_low_rank(self.d_state)
        b = V.conj().T @ b_legs
        self.Lambda_re = nnx.Param(jnp.asarray(np.tile(lam[:m].real, (d, 1)), jnp.float32))
        self.Lambda_im = nnx.Param(jnp.asarray(np.tile(lam[:m].imag, (d, 1)), jnp.float32))
        self.P = nnx.Param(jnp.asarray(np.tile(_real_pair(p[:m]), (d, 1, 1))))
        self.B = nnx.Param(jnp.asarray(np.tile(_real_pair(b[:m]), (d, 1, 1))))
        self.C = nnx.Param(jax.random.normal(rngs.params(), (k, d, m, 2), jnp.float32)
                           * float(np.sqrt(0.5)))
        self.D = nnx.Param(jax.random.normal(rngs.params(), (d,), jnp.float32))
        self.log_dt = nnx.Param(jax.random.uniform(
            rngs.params(), (d,), jnp.float32, np.log(dt_min), np.log(dt_max)))

    # ------------------------------------------------------------------ parameters

    def ssm(self) -> tuple[Array, Array, Array, Array, Array]:
        """The half-convention SSM: ``(Lambda (d, m), P (d, m), B (d, m), C~ (k, d, m), dt (d,))``."""
        lam_re = jnp.minimum(self.Lambda_re[...], MAX_LAMBDA_RE)
        lam = jax.lax.complex(lam_re, self.Lambda_im[...])
        return (lam, _complex(self.P[...]), _complex(self.B[...]), _complex(self.C[...]),
                jnp.exp(self.log_dt[...]))

    def _fold_length(self, length: int | None) -> int:
        """The ``L`` of ``C~ = C (I - A_bar^L)``; checks ``length`` against ``l_max``."""
        if length is None:
            if self.l_max is None:
                raise ValueError("S4: give the sequence length (the layer has no l_max)")
            return self.l_max
        if self.l_max is None:
            return int(length)
        if length > self.l_max:
            raise ValueError(f"S4: sequence length {length} exceeds l_max={self.l_max}")
        return self.l_max

    # ------------------------------------------------------------------ convolution mode

    def kernel(self, length: int) -> Array:
        """The SSM kernels ``K``: ``(k, d, length)`` real, via Cauchy + Woodbury + irfft.

        ``K[0]`` is the forward kernel, ``K[1]`` (bidirectional) the reverse one.
        """
        L = self._fold_length(length)
        lam, p, b, ct, dt = self.ssm()
        lam, p, b, ct = _full(lam), _full(p), _full(b), _full(ct)  # (d, n), (k, d, n)
        real = self.Lambda_re[...].dtype
        freq = jnp.arange(L // 2 + 1, dtype=real) * (2 * np.pi / L)
        z = jax.lax.complex(jnp.cos(freq), -jnp.sin(freq))  # (f,) roots of unity
        # 1 / ((2/dt)(1 - z) - Lambda (1 + z)): (d, f, n)
        inv = 1.0 / ((2.0 / dt)[:, None, None] * (1.0 - z)[None, :, None]
                     - lam[:, None, :] * (1.0 + z)[None, :, None])
        pc = jnp.conj(p)

        def cauchy(a, c):  # sum_n a_n c_n / (...) -> (..., d, f)
            return jnp.einsum("...dn,dfn->...df", a * c, inv)

        r00, r01 = cauchy(ct, b), cauchy(ct, p)  # (k, d, f)
        r10, r11 = cauchy(pc, b), cauchy(pc, p)  # (d, f)
        zp = 1.0 + z
        k_hat = 2.0 * (r00 - zp * r01 * r10 / (1.0 + zp * r11))
        return jnp.fft.irfft(k_hat, n=L, axis=-1)[..., :length]

    def __call__(self, u: Array, mask: Array | None = None) -> Array:
        """Apply the layer (FFT convolution of length ``2L``: linear, not circular).

        Args:
          u: ``(b, t, d)`` float inputs.
          mask: optional ``(b, t)`` boolean validity mask; the SSM's input is zeroed where it
            is False, so padding never reaches the valid steps (in either direction).
            The kernel itself depends on the padded length unless ``l_max`` is set (see
            the module docstring), so give ``l_max`` for outputs independent of padding.

        Returns:
          ``y``: ``(b, t, d)``, ``K * u (+ the shifted reverse K_b * u) + D u``.
        """
        length = u.shape[1]
        K = self.kernel(length)  # (k, d, t)
        x = u if mask is None else jnp.where(mask[..., None], u, 0)
        n_fft = 2 * length
        full = jnp.pad(K[0], ((0, 0), (0, length)))  # (d, 2t): causal part, lags 0 .. t-1
        if self.bidirectional:  # reverse part: lag -(j + 1) at index 2t - 1 - j
            full = full + jnp.pad(jnp.flip(K[1], axis=-1), ((0, 0), (length, 0)))
        kf = jnp.fft.rfft(full, n=n_fft, axis=-1).T  # (f, d)
        vf = jnp.fft.rfft(x, n=n_fft, axis=1)  # (b, f, d)
        y = jnp.fft.irfft(vf * kf, n=n_fft, axis=1)[:, :length]
        return y.astype(u.dtype) + self.D[...] * u

    # ------------------------------------------------------------------ recurrent mode

    def discrete(self, length: int | None = None) -> tuple[Array, Array, Array]:
        """The dense discretised system: ``A_bar (d, n, n)``, ``B_bar (d, n)``, ``C (k, d, n)``.

        ``C = C~ (I - A_bar^L)^{-1}`` undoes the fold, ``L`` as in :meth:`kernel`, so
        ``K[l] = Re(C A_bar^l B_bar)`` (real up to rounding). Complex, full ``n``.
        """
        L = self._fold_length(length)
        lam, p, b, ct, dt = self.ssm()
        lam, p, b, ct = _full(lam), _full(p), _full(b), _full(ct)
        n = lam.shape[-1]
        eye = jnp.eye(n, dtype=lam.dtype)
        A = jax.vmap(jnp.diag)(lam) - p[:, :, None] * jnp.conj(p)[:, None, :]  # (d, n, n)
        half = (0.5 * dt)[:, None, None] * A
        A_bar = jnp.linalg.solve(eye - half, eye + half)
        B_bar = jnp.linalg.solve(eye - half, (dt[:, None] * b)[..., None])[..., 0]
        fold = eye - jnp.linalg.matrix_power(A_bar, L)  # (d, n, n)
        # C fold = C~  <=>  fold^T C^T = C~^T
        C = jnp.linalg.solve(jnp.swapaxes(fold, -1, -2)[None], ct[..., None])[..., 0]
        return A_bar, B_bar, C

    def refold(self, l_max: int) -> None:
        """Fold ``C~`` at another length, the system unchanged: for longer sequences than
        the layer was trained on.

        ``C~ <- C (I - A_bar^l_max)`` with ``C = C~ (I - A_bar^L)^{-1}`` at the current
        ``L = self.l_max`` (:meth:`discrete`), as the reference's ``_setup_C`` does when it
        doubles its kernel's length; then ``self.l_max = l_max``. The kernel's first ``L``
        taps stay what they were. The fold keeps ``C~``'s conjugate pairs
        (``A_bar`` commutes with swapping them up to conjugation), so its first half is kept.

        Raises:
          ValueError: the layer has no ``l_max``, or ``l_max`` is not a positive integer.
        """
        if self.l_max is None:
            raise ValueError("S4: refold needs the length C~ is folded at (the layer has no "
                             "l_max)")
        if not (isinstance(l_max, (int, np.integer)) and l_max >= 1):
            raise ValueError(f"S4: l_max must be a positive integer; got {l_max!r}")
        A_bar, _, C = self.discrete()
        eye = jnp.eye(A_bar.shape[-1], dtype=A_bar.dtype)
        fold = eye - jnp.linalg.matrix_power(A_bar, int(l_max))  # (d, n, n)
        ct = jnp.einsum("kdn,dnm->kdm", C, fold)[..., :self.d_state // 2]
        self.C[...] = jnp.stack([ct.real, ct.imag], axis=-1).astype(self.C[...].dtype)
        self.l_max = int(l_max)

    def eigenvalues(self) -> Array:
        """The eigenvalues of ``A_bar``: ``(d, n)`` complex64 (numpy on the host, for analysis)."""
        lam, p, _, _, dt = self.ssm()
        lam, p = np.asarray(_full(lam), np.complex128), np.asarray(_full(p), np.complex128)
        dt = np.asarray(dt, np.float64)
        A = np.stack([np.diag(l) for l in lam]) - p[:, :, None] * p.conj()[:, None, :]
        eye = np.eye(A.shape[-1])
        half = 0.5 * dt[:, None, None] * A
        A_bar = np.linalg.solve(eye - half, eye + half)
        return jnp.asarray(np.linalg.eigvals(A_bar).astype(np.complex64))

    def init_state(self, batch: int) -> Array:
        """The zero state ``(batch, d, n)`` complex (full ``n``)."""
        dtype = jax.lax.complex(self.Lambda_re[...], self.Lambda_im[...]).dtype
        return jnp.zeros((batch, self.d_model, self.d_state), dtype)

    def step(self, state: Array, u_t: Array, length: int | None = None) -> tuple[Array, Array]:
        """One causal step: ``x_t = A_bar x_{t-1} + B_bar u_t``, ``y_t = Re(C x_t) + D u_t``.

        Args:
          state: ``(b, d, n)`` from :meth:`init_state` or a previous step.
          u_t: ``(b, d)`` input at this step.
          length: the ``L`` of the ``C~`` fold (default ``l_max``); see :meth:`discrete`.

        Returns:
          ``(state, y_t)`` with ``y_t`` ``(b, d)``.
        """
        if self.bidirectional:
            raise ValueError("S4: step() is causal; a bidirectional layer needs the whole "
                             "sequence (use recurrent() or __call__)")
        A_bar, B_bar, C = self.discrete(length)
        return self._step(A_bar, B_bar, C[0], state, u_t)

    def _step(self, A_bar, B_bar, C, state, u_t):
        state = jnp.einsum("dnm,bdm->bdn", A_bar, state) + B_bar * u_t[..., None]
        y = jnp.real(jnp.einsum("dn,bdn->bd", C, state))
        return state, y.astype(u_t.dtype) + self.D[...] * u_t

    def recurrent(self, u: Array, mask: Array | None = None) -> Array:
        """The layer run step by step (``lax.scan``) with the dense discretised matrices.

        Same arguments and result as :meth:`__call__`; slow (``O(t d n^2)``), for checks and
        generation. Bidirectional layers also scan right to left with the second ``C``:
        ``z_t = A_bar z_{t+1} + B_bar u_{t+1}`` from ``z_{t_max} = 0`` (there is no input
        after the last step), ``y_t += Re(C_b z_t)``, so the reverse path excludes ``u_t``.
        """
        length = u.shape[1]
        A_bar, B_bar, C = self.discrete(length)
        x = u if mask is None else jnp.where(mask[..., None], u, 0)
        xs = jnp.swapaxes(x, 0, 1)  # (t, b, d)

        def run(c, seq):
            def body(state, u_t):
                state, y = self._step(A_bar, B_bar, c, state, u_t)
                return state, y - self.D[...] * u_t  # the SSM part only

            return jax.lax.scan(body, self.init_state(u.shape[0]), seq)[1]

        y = run(C[0], xs)
        if self.bidirectional:
            shifted = jnp.concatenate([xs[1:], jnp.zeros_like(xs[:1])], axis=0)  # u_{t+1}
            y = y + jnp.flip(run(C[1], jnp.flip(shifted, axis=0)), axis=0)
        return jnp.swapaxes(y, 0, 1) + self.D[...] * u
