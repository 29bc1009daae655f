"""The Linear Recurrent Unit (Orvieto et al. 2023) and every rung of its ablation ladder.

Axis legend: ``b`` batch, ``t`` time, ``d`` model width (``H`` in the paper), ``n`` state
(``N`` in the paper).

The LRU (the ``"lru"`` rung) computes, for an input ``u: (b, t, d)``::

    lambda = exp(-exp(nu_log) + i exp(theta_log))                       (n,)
    x_t    = lambda * x_{t-1} + (exp(gamma_log) * (B_re + i B_im)) u_t   (b, t, n)
    y_t    = Re((C_re + i C_im) x_t) + D * u_t                          (b, t, d)

with ``|lambda|^2`` drawn uniformly from ``[r_min^2, r_max^2]``, ``arg lambda`` from
``[0, max_phase]`` and ``gamma_log = log sqrt(1 - |lambda|^2)`` at initialisation
(Appendix A). The other rungs change only how ``lambda`` (or a dense ``A``) is
parameterised and initialised, and whether ``gamma`` is there; see :mod:`lru.ladder`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lru.ladder import get_rung
from lru.layers.planar import planar_readout
from lru.precision import check_precision, matmul
from lru.scan import bidirectional_recurrence, dense_recurrence, linear_method

Array = jax.Array

_F32 = np.finfo(np.float32)
#: Smallest nu = -log|lambda| allowed at init: exp(-nu) stays below 1 in float32 and
#: gamma_log = 0.5 log(1 - exp(-2 nu)) stays finite (about -7.6).
NU_MIN = float(_F32.eps)
#: Smallest |lambda|^2 allowed at init, so nu (and nu_log) stay finite when u = 0, r_min = 0.
RADIUS_SQ_MIN = float(_F32.tiny)

#: The unit disk as a ring: (r_min, r_max, max_phase) of the rungs without ring init.
UNIT_DISK = (0.0, 1.0, 2 * np.pi)


def sample_ring(
    key: Array, n: int, r_min: float, r_max: float, max_phase: float
) -> tuple[Array, Array]:
    """Eigenvalues uniform on the ring ``r_min <= |lambda| <= r_max``, ``0 <= arg <= max_phase``.

    Lemma 3.2 of the paper: ``|lambda|^2 = u1 (r_max^2 - r_min^2) + r_min^2`` and
    ``theta = max_phase u2`` with ``u1, u2 ~ U[0, 1)`` make the density uniform on the ring.

    Returns:
      ``(nu, theta)``, both ``(n,)`` float32, with ``lambda = exp(-nu + i theta)``;
      ``nu`` is clamped to ``[NU_MIN, -0.5 log RADIUS_SQ_MIN]`` so everything built from it
      (``log nu``, ``gamma``) is finite.
    """
    k_mod, k_phase = jax.random.split(key)
    u1 = jax.random.uniform(k_mod, (n,), jnp.float32)
    u2 = jax.random.uniform(k_phase, (n,), jnp.float32)
    radius_sq = jnp.maximum(u1 * (r_max**2 - r_min**2) + r_min**2, RADIUS_SQ_MIN)
    nu = jnp.maximum(-0.5 * jnp.log(radius_sq), NU_MIN)
    return nu, max_phase * u2


def gamma_log_init(nu: Array) -> Array:
    """``log sqrt(1 - |lambda|^2)`` for ``|lambda| = exp(-nu)``, via ``expm1`` (no cancellation)."""
    return 0.5 * jnp.log(-jnp.expm1(-2.0 * nu))


def _normal(key: Array, shape: tuple[int, ...], std: float) -> nnx.Param:
    return nnx.Param(jax.random.normal(key, shape, jnp.float32) * std)


class LRU(nnx.Module):
    """Linear Recurrent Unit, or any rung of its ablation ladder (``rung=``).

    Parameters (named as in the paper's code; ``n = d_state``, ``d = d_model``,
    ``k = 2 if bidirectional else 1``):

    * diagonal rungs: ``B_re``, ``B_im`` ``(n, d)`` ~ N(0, 1/(2d)); ``C_re``, ``C_im``
      ``(d, k n)`` ~ N(0, 1/n); and by parameterisation ``Lambda_re``, ``Lambda_im``
      (``"diag_complex"``), ``nu``, ``theta`` (``"exp"``) or ``nu_log``, ``theta_log``
      (``"stable_exp"``, ``"ring"``, ``"lru"``), all ``(n,)``; ``gamma_log`` ``(n,)`` for
      ``"lru"``.
    * dense rungs (``"rnn_relu"``, ``"rnn_tanh"``, ``"linear_dense"``): ``A`` ``(n, n)``
      Glorot-normal (variance 1/n, so its eigenvalues fill the unit disk); ``B`` ``(n, d)``
      ~ N(0, 1/d); ``C`` ``(d, k n)`` ~ N(0, 1/n). B and C match the LRU's scale.
    * all rungs: ``D`` ``(d,)`` ~ N(0, 1).

    Rungs without ring init (everything before ``"ring"``) draw their eigenvalues uniformly
    on the unit disk, as the eigenvalues of a Glorot matrix are; giving them a ring raises.

    A bidirectional layer runs the same ``lambda`` and ``B`` forwards and backwards and
    reads both states through ``C``'s two halves: ``y = Re(C [x_fwd; x_bwd]) + D u``.

    Args:
      d_model: input and output width ``d``.
      d_state: state size ``n``.
      r_min, r_max, max_phase: the ring of the initial eigenvalues (rungs with ring init).
      bidirectional: add a right-to-left recurrence.
      rung: a name from :data:`lru.ladder.RUNG_NAMES`; ``"lru"`` is the LRU itself.
      scan_method: for the diagonal rungs, a method of :func:`lru.scan.planar_recurrence`
        (``"auto"`` is the compiled kernel on CPU where it builds); :meth:`states`, the
        complex reference path, runs :func:`lru.scan.linear_recurrence` with it (``"auto"``
        in place of ``"native"``, which has no kernel for that case).
      precision: ``"fp32"``, or ``"bf16"`` for the ``B`` and ``C`` matmuls (bfloat16
        operands, float32 accumulation; the recurrence always runs in float32).
      recompute_states: keep only the layer's input for the backward pass and compute
        ``B u`` and the states again there (:func:`lru.layers.planar.planar_readout`; the
        same gradients for about one more ``B`` product and forward scan per step; diagonal
        rungs only).
      rngs: parameter RNG streams (uses ``rngs.params``).
    """

    #: Parameters the paper trains at ``lr * recurrent_lr_factor`` without weight decay
    #: (Appendix D: nu, theta, gamma and B); :mod:`lru.training.optim` reads this.
    RECURRENT_PARAMS = frozenset({"nu_log", "theta_log", "gamma_log", "B_re", "B_im",
                                  "nu", "theta", "Lambda_re", "Lambda_im", "A", "B"})

    def __init__(
        self,
        d_model: int,
        d_state: int,
        *,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 6.28,
        bidirectional: bool = False,
        rung: str = "lru",
        scan_method: str = "auto",
        precision: str = "fp32",
        recompute_states: bool = False,
        rngs: nnx.Rngs,
    ):
        spec = get_rung(rung)
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(f"LRU: need 0 <= r_min < r_max <= 1; got r_min={r_min}, r_max={r_max}")
        if not max_phase > 0.0:
            raise ValueError(f"LRU: max_phase must be > 0; got {max_phase}")
        # 6.28 (the paper code's default) and 2 pi both mean the whole disk.
        whole_disk = r_min == 0.0 and r_max == 1.0 and abs(max_phase - 2 * np.pi) < 0.01
        if not spec.ring_init and not whole_disk:
            raise ValueError(
                f"LRU: rung {rung!r} initialises on the unit disk; r_min/r_max/max_phase "
                f"apply from rung 'ring' on (got r_min={r_min}, r_max={r_max}, "
                f"max_phase={max_phase}). Leave them at their defaults or pick a ring rung."
            )
        self.d_model, self.d_state = d_model, d_state
        self.rung = rung
        self.bidirectional = bidirectional
        self.scan_method = scan_method
        self.recompute_states = recompute_states
        self.precision = check_precision(precision)
        d, n, k = d_model, d_state, 2 if bidirectional else 1

        if spec.transition == "dense":
            self.A = nnx.Param(jax.nn.initializers.glorot_normal()(rngs.params(), (n, n)))
            self.B = _normal(rngs.params(), (n, d), 1 / np.sqrt(d))
            self.C = _normal(rngs.params(), (d, k * n), 1 / np.sqrt(n))
        else:
            ring = (r_min, r_max, max_phase) if spec.ring_init else UNIT_DISK
            nu, theta = sample_ring(rngs.params(), n, *ring)
            if spec.parameterization == "real_imag":
                self.Lambda_re = nnx.Param(jnp.exp(-nu) * jnp.cos(theta))
                self.Lambda_im = nnx.Param(jnp.exp(-nu) * jnp.sin(theta))
            elif spec.parameterization == "exp":
                self.nu = nnx.Param(nu)
                self.theta = nnx.Param(theta)
            else:  # stable_exp
                self.nu_log = nnx.Param(jnp.log(nu))
                # theta = 0 has no log; the paper's init hits it with probability zero.
                self.theta_log = nnx.Param(jnp.log(jnp.maximum(theta, RADIUS_SQ_MIN)))
            if spec.gamma:
                self.gamma_log = nnx.Param(gamma_log_init(nu))
            self.B_re = _normal(rngs.params(), (n, d), 1 / np.sqrt(2 * d))
            self.B_im = _normal(rngs.params(), (n, d), 1 / np.sqrt(2 * d))
            self.C_re = _normal(rngs.params(), (d, k * n), 1 / np.sqrt(n))
            self.C_im = _normal(rngs.params(), (d, k * n), 1 / np.sqrt(n))
        self.D = _normal(rngs.params(), (d,), 1.0)

    # ------------------------------------------------------------------ the equations

    def eigenvalues(self) -> Array:
        """The recurrence's eigenvalues ``lambda``: ``(n,)`` complex64.

        Diagonal rungs return their ``Lambda`` exactly; dense rungs the eigenvalues of ``A``
        (computed on the host with numpy, for analysis and plots only).
        """
        spec = get_rung(self.rung)
        if spec.transition == "dense":
            return jnp.asarray(np.linalg.eigvals(np.asarray(self.A[...])).astype(np.complex64))
        if spec.parameterization == "real_imag":
            return jax.lax.complex(self.Lambda_re[...], self.Lambda_im[...])
        if spec.parameterization == "exp":
            return jnp.exp(jax.lax.complex(-self.nu[...], self.theta[...]))
        return jnp.exp(jax.lax.complex(-jnp.exp(self.nu_log[...]), jnp.exp(self.theta_log[...])))

    def _input_weights(self) -> Array:
        """``[B_re; B_im]`` (times ``gamma`` on the LRU rung): ``(2n, d)``, one real matmul's
        weights producing ``[Re Bu | Im Bu]``."""
        b_re, b_im = self.B_re[...], self.B_im[...]
        if get_rung(self.rung).gamma:
            gamma = jnp.exp(self.gamma_log[...])[:, None]
            b_re, b_im = b_re * gamma, b_im * gamma
        return jnp.concatenate([b_re, b_im])

    def states(self, u: Array, mask: Array | None = None) -> Array:
        """The hidden states ``x``: ``(b, t, k n)``, complex for diagonal rungs, real for dense.

        Args:
          u: inputs ``(b, t, d)``.
          mask: optional ``(b, t)`` validity mask; the recurrence's input is zeroed where it
            is False, so padding after a sequence never reaches its states (in either
            direction).
        """
        spec = get_rung(self.rung)
        if spec.transition == "dense":
            bu = matmul(u, self.B[...].T, self.precision)
        else:  # B u as one real matmul against [B_re; B_im] (one pass over u, a wider GEMM)
            bu = matmul(u, self._input_weights().T, self.precision)
            bu = jax.lax.complex(bu[..., : self.d_state], bu[..., self.d_state :])
        if mask is not None:
            bu = jnp.where(mask[..., None], bu, 0)
        if spec.transition == "diagonal":
            return bidirectional_recurrence(self.eigenvalues(), bu,
                                            bidirectional=self.bidirectional,
                                            method=linear_method(self.scan_method))
        directions = (False, True) if self.bidirectional else (False,)
        xs = [dense_recurrence(self.A[...], bu, activation=spec.activation, reverse=r)
              for r in directions]
        return xs[0] if len(xs) == 1 else jnp.concatenate(xs, axis=-1)

    def __call__(self, u: Array, mask: Array | None = None) -> Array:
        """Apply the layer.

        Diagonal rungs run on real ``[Re | Im]`` storage end to end: ``B u`` is one real
        matmul producing ``[Re Bu | Im Bu]``, :func:`lru.scan.planar_recurrence` runs the
        complex recurrence on those halves, and ``Re(C x) = [Re x | Im x] [C_re | -C_im]^T``
        is one real matmul reading them (:func:`lru.layers.planar.planar_readout`), so no
        complex array is packed or unpacked (the same function as ``Re(C states(u)) + D u``,
        which the tests check).

        Args:
          u: ``(b, t, d)`` float inputs.
          mask: optional ``(b, t)`` boolean validity mask (see :meth:`states`).

        Returns:
          ``y``: ``(b, t, d)``, ``Re(C x) + D * u``.
        """
        if get_rung(self.rung).transition == "dense":
            y = matmul(self.states(u, mask), self.C[...].T, self.precision)
            return y + self.D[...] * u
        y = planar_readout(u, self._input_weights(), self.eigenvalues(), self.C_re[...],
                           self.C_im[...], mask=mask, bidirectional=self.bidirectional,
                           method=self.scan_method, precision=self.precision,
                           recompute=self.recompute_states)
        with jax.named_scope("D"):
            return y + self.D[...] * u
