"""S4D: the diagonal structured state space layer of Gu et al. 2022.

"On the Parameterization and Initialization of Diagonal State Space Models" (S4D); the
facts below follow the reference code (state-spaces/s4: ``models/s4/s4d.py`` and
``SSMKernelDiag`` in ``src/models/sequence/kernels/ssm.py``).

Axis legend: ``b`` batch, ``t`` time (length ``L``), ``h`` channel (``d_model``, ``H`` in
the paper), ``n`` complex mode (``N/2`` of them, ``N = d_state``), ``c`` kernel channel
(2 when bidirectional, else 1).

Each of the ``H`` channels is an independent single-input single-output SSM with a
diagonal complex ``A`` of ``N/2`` modes; the other ``N/2`` are their complex conjugates and
are never stored, so every output is ``2 Re(...)`` of a sum over the stored modes::

    A      = -exp(log_A_real) + i A_imag                      (h, n)
    dt     = exp(log_dt)                                      (h,)
    dA     = exp(dt A),   dB = (dA - 1) / A * B,   B = 1      (h, n)   zero-order hold
    K[h, l] = 2 Re(sum_n C[h, n] dB[h, n] dA[h, n]^l)         (h, L)   Vandermonde product
    y      = K * u + D u                                      (b, t, h) causal convolution

The convolution runs by FFT with both signals zero-padded to ``2L``, so it is linear
(causal), not circular. The same output comes from the recurrence
``x_t = dA x_{t-1} + dB u_t``, ``y_t = 2 Re(C x_t) + D u_t`` (:meth:`S4D.step`,
:meth:`S4D.recurrent`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lru.layers.hippo import legs_normal
from lru.scan import linear_recurrence

Array = jax.Array

#: The initialisations of ``A`` (Sec. 4 of the paper), by name.
INITS: tuple[str, ...] = ("legs", "inv", "lin")


def init_eigenvalues(init: str, d_state: int) -> np.ndarray:
    """The ``N/2`` stored continuous-time eigenvalues ``Lambda`` of an S4D initialisation.

    * ``"legs"`` (S4D-LegS): the eigenvalues of HiPPO-LegS's normal part with non-negative
      imaginary part (:func:`lru.layers.hippo.legs_normal`); their real part is ``-1/2``.
    * ``"inv"`` (S4D-Inv): ``Lambda_n = -1/2 + i N/pi (N/(2n+1) - 1)``.
    * ``"lin"`` (S4D-Lin): ``Lambda_n = -1/2 + i pi n``.

    Args:
      init: one of :data:`INITS`.
      d_state: the state size ``N`` (even).

    Returns:
      ``(N/2,)`` complex128, with ``n = 0 .. N/2 - 1``.
    """
    if init not in INITS:
        raise ValueError(f"S4D: unknown init {init!r}; choose one of {INITS}")
    n = np.arange(d_state // 2, dtype=np.float64)
    if init == "legs":
        lam, _ = legs_normal(d_state)
        return lam[: d_state // 2].astype(np.complex128)
    if init == "inv":
        return -0.5 + 1j * (d_state / np.pi) * (d_state / (2 * n + 1) - 1)
    return -0.5 + 1j * np.pi * n


class S4D(nnx.Module):
    """S4D layer: ``d_model`` diagonal SSMs of ``d_state`` (``N``) states, one per channel.

    Parameters (named as in the reference's ``models/s4/s4d.py``; ``H = d_model``,
    ``M = N/2``, ``c = 2 if bidirectional else 1``):

    * ``log_dt`` ``(H,)``: ``log dt`` ~ U[log dt_min, log dt_max].
    * ``log_A_real`` ``(H, M)``: ``log(-Re A)``, so ``Re A < 0`` always (``log 1/2`` at init).
    * ``A_imag`` ``(H, M)``: ``Im A`` (non-negative at init; the conjugates are implicit).
    * ``C`` ``(c, H, M, 2)``: the complex ``C`` as a trailing ``(re, im)`` axis (the
      reference's ``view_as_real``) behind the reference's leading kernel-channel axis;
      ~ CN(0, 1) (``torch.randn`` of a complex dtype: each part N(0, 1/2)).
    * ``D`` ``(H,)`` ~ N(0, 1): the skip connection.

    ``B`` is fixed at 1 and is not a parameter, as in the reference's S4D
    (``models/s4/s4d.py`` folds it into ``C``). The reference's full ``SSMKernelDiag``
    also initialises ``B`` to ones for these inits (``B_init="constant"``) but trains it;
    that variant is not implemented here.

    Bidirectional (as the reference's ``FFTConv`` does it): ``C`` gets a second kernel
    channel (``c = 2``) while ``log_dt``, ``A`` (and ``B``) are shared. Kernel ``K_0`` is
    applied causally and ``K_1`` in reverse time, shifted by one step, and the two are
    added: ``y_t = sum_{j>=0} K_0[j] u_{t-j} + sum_{j>=0} K_1[j] u_{t+1+j} + D u_t``.
    (The reference builds the length-``2L`` kernel ``[K_0, 0] + [0, flip(K_1)]``, whose
    circular convolution is exactly this.)

    Args:
      d_model: input and output width ``H``.
      d_state: state size ``N`` (even; ``N/2`` complex modes are stored).
      init: ``"legs"``, ``"inv"`` or ``"lin"`` (see :func:`init_eigenvalues`).
      dt_min, dt_max: the range of the initial step sizes, ``0 < dt_min <= dt_max``.
      bidirectional: add the reverse-time kernel.
      rngs: parameter RNG streams (uses ``rngs.params``).
    """

    #: The SSM parameters the reference registers with their own learning rate and zero
    #: weight decay (``Kernel.register(name, tensor, lr, wd=0.0)``: dt and A; B too in the
    #: full kernel, but B is fixed here). ``C`` and ``D`` are ordinary parameters (the
    #: reference gives ``C`` the global lr and weight decay). :mod:`lru.training.optim` reads this.
    RECURRENT_PARAMS = frozenset({"log_dt", "log_A_real", "A_imag"})

    def __init__(
        self,
        d_model: int,
        d_state: int,
        *,
        init: str = "legs",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        bidirectional: bool = False,
        rngs: nnx.Rngs,
    ):
        if init not in INITS:
            raise ValueError(f"S4D: unknown init {init!r}; choose one of {INITS}")
        if not (isinstance(d_state, (int, np.integer)) and d_state >= 2 and d_state % 2 == 0):
            raise ValueError(
                f"S4D: d_state must be an even integer >= 2 (N/2 complex modes are stored "
                f"with their conjugates implicit); got d_state={d_state!r}")
        if not (isinstance(d_model, (int, np.integer)) and d_model >= 1):
            raise ValueError(f"S4D: d_model must be a positive integer; got d_model={d_model!r}")
        if not 0.0 < dt_min <= dt_max:
            raise ValueError(
                f"S4D: need 0 < dt_min <= dt_max; got dt_min={dt_min}, dt_max={dt_max}")
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise ValueError(
                f"S4D: bidirectional must be one of (True, False); got {bidirectional!r}")
        self.d_model, self.d_state = int(d_model), int(d_state)
        self.init = init
        self.bidirectional = bool(bidirectional)
        h, m, c = self.d_model, self.d_state // 2, 2 if bidirectional else 1

        lam = init_eigenvalues(init, self.d_state)
        self.log_dt = nnx.Param(
            jax.random.uniform(rngs.params(), (h,), jnp.float32)
            * (np.log(dt_max) - np.log(dt_min)) + np.log(dt_min))
        self.log_A_real = nnx.Param(
            jnp.broadcast_to(jnp.asarray(np.log(-lam.real), jnp.float32), (h, m)))
        self.A_imag = nnx.Param(
            jnp.broadcast_to(jnp.asarray(lam.imag, jnp.float32), (h, m)))
        self.C = nnx.Param(
            jax.random.normal(rngs.params(), (c, h, m, 2), jnp.float32) * np.sqrt(0.5))
        self.D = nnx.Param(jax.random.normal(rngs.params(), (h,), jnp.float32))

    # ------------------------------------------------------------------ parameters

    def continuous_eigenvalues(self) -> Array:
        """The continuous-time ``A = -exp(log_A_real) + i A_imag``: ``(H, N/2)`` complex64."""
        return jax.lax.complex(-jnp.exp(self.log_A_real[...]), self.A_imag[...])

    def _C(self) -> Array:
        """``C`` as complex ``(c, H, N/2)``."""
        c = self.C[...]
        return jax.lax.complex(c[..., 0], c[..., 1])

    def discretize(self) -> tuple[Array, Array, Array]:
        """Zero-order hold: ``(dtA, dA, dB)``, each ``(H, N/2)`` complex64.

        ``dtA = dt A``, ``dA = exp(dt A)``, ``dB = (dA - 1) / A`` (``B = 1``).
        """
        a = self.continuous_eigenvalues()
        dta = jnp.exp(self.log_dt[...])[:, None] * a
        da = jnp.exp(dta)
        return dta, da, (da - 1.0) / a

    def eigenvalues(self) -> Array:
        """The discrete eigenvalues ``dA = exp(dt A)``, flattened: ``(H * N/2,)`` complex64."""
        return self.discretize()[1].reshape(-1)

    # ------------------------------------------------------------------ convolution mode

    def kernel(self, length: int) -> Array:
        """The SSM kernels ``K[c, h, l] = 2 Re(sum_n C[c,h,n] dB[h,n] dA[h,n]^l)``: ``(c, H, L)``.

        Computed as the reference does: a Vandermonde matrix ``exp(dtA * l)`` ``(H, N/2, L)``
        contracted with ``C dB``.
        """
        dta, _, db = self.discretize()
        vandermonde = jnp.exp(dta[:, :, None] * jnp.arange(length, dtype=jnp.float32))
        return 2.0 * jnp.real(jnp.einsum("chn,hnl->chl", self._C() * db, vandermonde))

    def __call__(self, u: Array, mask: Array | None = None) -> Array:
        """Apply the layer in convolution mode.

        Args:
          u: ``(b, t, H)`` float inputs.
          mask: optional ``(b, t)`` boolean validity mask; the convolution's input is zeroed
            where it is False, so padding never reaches the outputs at valid steps (in
            either direction).

        Returns:
          ``y``: ``(b, t, H)``, ``K * u + D u``.
        """
        length = u.shape[1]
        v = u if mask is None else jnp.where(mask[..., None], u, 0)
        k = self.kernel(length)  # (c, h, L)
        full = jnp.pad(k[0], ((0, 0), (0, length)))  # (h, 2L): causal part
        if self.bidirectional:  # reverse part: lag -(j + 1) at index 2L - 1 - j
            full = full + jnp.pad(k[1][:, ::-1], ((0, 0), (length, 0)))
        k_f = jnp.fft.rfft(full, n=2 * length, axis=-1).T  # (L + 1, h)
        v_f = jnp.fft.rfft(v.astype(jnp.float32), n=2 * length, axis=1)  # (b, L + 1, h)
        y = jnp.fft.irfft(v_f * k_f, n=2 * length, axis=1)[:, :length]
        return (y + self.D[...] * u).astype(u.dtype)

    # ------------------------------------------------------------------ recurrent mode

    def init_state(self, batch: int) -> Array:
        """A zero state for :meth:`step`: ``(batch, H, N/2)`` complex64."""
        return jnp.zeros((batch, self.d_model, self.d_state // 2), jnp.complex64)

    def step(self, state: Array, u_t: Array) -> tuple[Array, Array]:
        """One step of the recurrence (unidirectional layers only).

        ``x_t = dA x_{t-1} + dB u_t``, ``y_t = 2 Re(sum_n C_n x_t,n) + D u_t``.

        Args:
          state: ``(b, H, N/2)`` complex, ``x_{t-1}`` (:meth:`init_state` at the start).
          u_t: ``(b, H)`` inputs at step ``t``.

        Returns:
          ``(x_t, y_t)`` with ``y_t`` ``(b, H)``.
        """
        if self.bidirectional:
            raise ValueError(
                "S4D.step: a bidirectional layer has no step-by-step mode (its output at t "
                "depends on future inputs); use __call__ or recurrent()")
        _, da, db = self.discretize()
        x = da * state + db * u_t[..., None]
        y = 2.0 * jnp.real(jnp.einsum("hn,bhn->bh", self._C()[0], x)) + self.D[...] * u_t
        return x, y

    def recurrent(self, u: Array, mask: Array | None = None) -> Array:
        """The same output as :meth:`__call__`, by :func:`lru.scan.linear_recurrence`.

        The forward kernel is the recurrence ``x_t = dA x_{t-1} + dB u_t``; the reverse
        kernel of a bidirectional layer is ``z_t = dA z_{t+1} + dB u_{t+1}`` run right to left
        from ``z_{L-1} = 0`` (there is no ``u_L``), read through ``C``'s second channel.

        Args:
          u: ``(b, t, H)`` inputs.
          mask: as in :meth:`__call__`.

        Returns:
          ``y``: ``(b, t, H)``.
        """
        b, length, h = u.shape
        m = self.d_state // 2
        v = u if mask is None else jnp.where(mask[..., None], u, 0)
        _, da, db = self.discretize()
        c = self._C()
        bu = (db * v.astype(jnp.float32)[..., None]).reshape(b, length, h * m)
        x = linear_recurrence(da.reshape(-1), bu).reshape(b, length, h, m)
        y = 2.0 * jnp.real(jnp.einsum("hn,bthn->bth", c[0], x))
        if self.bidirectional:
            shifted = jnp.concatenate([bu[:, 1:], jnp.zeros_like(bu[:, :1])], axis=1)
            z = linear_recurrence(da.reshape(-1), shifted, reverse=True)
            y = y + 2.0 * jnp.real(jnp.einsum("hn,bthn->bth", c[1], z.reshape(b, length, h, m)))
        return (y + self.D[...] * u).astype(u.dtype)
