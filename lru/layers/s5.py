"""S5: the simplified state space layer of Smith, Warrington and Linderman (ICLR 2023).

Axis legend: ``b`` batch, ``t`` time, ``d`` model width (``H`` in the paper), ``n`` the
state size the layer actually carries (``P`` in the paper, or ``P/2`` with conjugate
symmetry), ``P = d_state``, ``J = blocks``.

One multi-input multi-output, diagonalised linear SSM per layer. For ``u: (b, t, d)``::

    Lambda     = Lambda_re + i Lambda_im                                 (n,)
    Delta      = step_rescale * exp(log_step[:, 0])                      (n,)
    ZOH:       Lambda_bar = exp(Lambda Delta)
               B_bar      = ((Lambda_bar - 1) / Lambda) B~               (n, d)
    bilinear:  Lambda_bar = (1 + Delta/2 Lambda) / (1 - Delta/2 Lambda)
               B_bar      = Delta / (1 - Delta/2 Lambda) B~
    x_t        = Lambda_bar * x_{t-1} + B_bar u_t                        (b, t, n)
    y_t        = c Re(C~ x_t) + D * u_t,  c = 2 with conj_sym, else 1    (b, t, d)

Initialisation (Section 4 and Appendix B of the paper, and its reference code
``lindermanlab/S5``, ``s5/ssm.py`` and ``s5/ssm_init.py``): ``A`` is block-diagonal with
``J`` copies of HiPPO-N of size ``P/J`` (the normal part of HiPPO-LegS,
:func:`lru.layers.hippo.legs_normal`), diagonalised as ``V diag(Lambda) V^*`` with ``V``
block-diagonal too. With ``conj_sym`` each block keeps only the first half of its
eigenvalues (those with ``Im >= 0`` in ``legs_normal``'s order; the reference code keeps
the conjugate half, which gives the same model class) and the matching columns of ``V``;
the dropped half are the complex conjugates, hence the ``2 Re`` in the output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy.linalg import block_diag

from lru.layers.hippo import legs_normal
from lru.layers.planar import planar_readout
from lru.precision import check_precision, matmul
from lru.choices import check_choice
from lru.scan import bidirectional_recurrence, check_method, linear_method

Array = jax.Array

DISCRETIZATIONS = ("zoh", "bilinear")
C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")
#: Lambda_re is clipped to at most this in the forward pass when ``clip_eigs=True``.
CLIP_EIGS_MAX = -1e-4


def _to_re_im(z: np.ndarray) -> jax.Array:
    """A complex array as float32 with a trailing ``(re, im)`` axis, as S5 stores it."""
    return jnp.asarray(np.stack([z.real, z.imag], axis=-1), jnp.float32)


def _complex(p: Array) -> Array:
    """Inverse of :func:`_to_re_im`: ``p[..., 0] + i p[..., 1]``."""
    return jax.lax.complex(p[..., 0], p[..., 1])


class S5(nnx.Module):
    """S5 layer (Smith et al. 2023), parameterised and initialised as its reference code.

    Parameters (S5's names; ``n = d_state // 2`` with ``conj_sym``, else ``d_state``):

    * ``Lambda_re``, ``Lambda_im`` ``(n,)``: the continuous-time eigenvalues, ``J`` copies
      of HiPPO-N's (the kept half per block with ``conj_sym``).
    * ``B`` ``(n, d, 2)``: ``B~ = V^{-1} B = B[..., 0] + i B[..., 1]``, with ``B (P, d)``
      drawn lecun-normal (truncated normal, variance ``1/P``) and ``V^{-1} = V^*``
      restricted to the kept eigenvectors.
    * ``C`` ``(d, n, 2)``: ``C~ = C[..., 0] + i C[..., 1]``. ``C_init="trunc_standard_normal"``
      draws a complex ``C (d, P)`` whose re/im entries are truncated normal with variance
      ``1/P`` (S5 applies ``lecun_normal`` to each row); ``"lecun_normal"`` the same with
      variance ``1/(P d)`` (lecun over the whole ``(d, P, 2)`` array); both are then
      projected, ``C~ = C V``. ``"complex_normal"`` draws ``C~`` directly, re and im
      ~ N(0, 1/2), without ``V``.
    * bidirectional: with the real inits, ``C1`` and ``C2`` ``(d, n, 2)`` (forward and
      backward readouts, each drawn and projected as ``C``); with ``"complex_normal"`` one
      ``C`` ``(d, 2n, 2)`` whose first ``n`` columns read the forward states. Exactly S5's
      convention: the same ``Lambda_bar`` and ``B_bar`` run left-to-right and right-to-left
      and ``y = c Re(C~_fwd x_fwd + C~_bwd x_bwd) + D u`` (the two readouts summed).
    * ``D`` ``(d,)`` ~ N(0, 1).
    * ``log_step`` ``(n, 1)``: log of the per-state step ``Delta``, uniform in
      ``[log dt_min, log dt_max]``.

    Args:
      d_model: input and output width ``d`` (``H``).
      d_state: state size ``P`` (before halving by ``conj_sym``).
      blocks: number ``J`` of HiPPO-N blocks on the diagonal of ``A``; must divide
        ``d_state`` (and ``d_state / blocks`` must be even with ``conj_sym``).
      conj_sym: keep one eigenvalue of each conjugate pair and read out ``2 Re(C~ x)``.
      dt_min, dt_max: range of the initial step ``Delta``.
      discretization: ``"zoh"`` (zero-order hold) or ``"bilinear"``.
      C_init: ``"trunc_standard_normal"``, ``"lecun_normal"`` or ``"complex_normal"``.
      clip_eigs: clip ``Lambda_re`` to ``<= -1e-4`` in the forward pass (stable).
      bidirectional: add a right-to-left scan read out by its own ``C``.
      step_rescale: multiplies ``Delta`` (e.g. evaluating at another sampling rate).
      scan_method: method of :func:`lru.scan.planar_recurrence` (``__call__``; ``"auto"``
        is the compiled kernel on CPU where it builds) and of
        :func:`lru.scan.linear_recurrence` (:meth:`states`, with ``"auto"`` in place of
        ``"native"``, which has no kernel for that complex case).
      precision: ``"fp32"``, or ``"bf16"`` for the ``B`` and ``C`` matmuls (bfloat16 operands,
        float32 accumulation; the recurrence runs in float32).
      recompute_states: keep only the layer's input for the backward pass and compute
        ``B u`` and the states again there (:func:`lru.layers.planar.planar_readout`; the
        same gradients for about one more ``B`` product and forward scan per step).
      rngs: parameter RNG streams (uses ``rngs.params``).
    """

    #: The parameters S5 trains at its ``ssm_lr`` with Adam and no weight decay under its
    #: default ``--opt_config=standard`` (``s5/train_helpers.py``, ``create_train_state``):
    #: ``B``, ``Lambda_re``, ``Lambda_im``, ``log_step``. ``C``/``C1``/``C2`` and ``D`` train
    #: at the base learning rate with weight decay. The label list there also names
    #: ``norm``, but S5's ``map_nested_fn`` labels leaves and the norm's leaves are ``scale``
    #: and ``bias``, so the block's norm trains at the base learning rate with weight decay
    #: there as here. S5's other ``--opt_config`` variants and ``--dt_global`` (which leaves
    #: this layer unchanged and moves ``log_step`` to the base learning rate with weight
    #: decay) are optimizer groups of the experiment configs (``optimizer.groups``).
    #: :mod:`lru.training.optim` reads this.
    RECURRENT_PARAMS = frozenset({"Lambda_re", "Lambda_im", "B", "log_step"})

    def __init__(
        self,
        d_model: int,
        d_state: int,
        *,
        blocks: int = 1,
        conj_sym: bool = True,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        discretization: str = "zoh",
        C_init: str = "trunc_standard_normal",
        clip_eigs: bool = False,
        bidirectional: bool = False,
        step_rescale: float = 1.0,
        scan_method: str = "auto",
        precision: str = "fp32",
        recompute_states: bool = False,
        rngs: nnx.Rngs,
    ):
        self.precision = check_precision(precision)
        check_choice("discretization", discretization, DISCRETIZATIONS)
        check_choice("C_init", C_init, C_INITS)
        check_method(scan_method)
        if d_model < 1 or d_state < 1:
            raise ValueError(f"S5: d_model and d_state must be >= 1; got {d_model}, {d_state}")
        if blocks < 1 or d_state % blocks:
            raise ValueError(
                f"S5: blocks must be a positive divisor of d_state={d_state}; got {blocks}")
        block = d_state // blocks
        if conj_sym and block % 2:
            raise ValueError(
                f"S5: conj_sym needs an even block size d_state / blocks; got "
                f"{d_state} / {blocks} = {block}")
        if not 0.0 < dt_min <= dt_max:
            raise ValueError(f"S5: need 0 < dt_min <= dt_max; got dt_min={dt_min}, "
                             f"dt_max={dt_max}")
        if not step_rescale > 0.0:
            raise ValueError(f"S5: step_rescale must be > 0; got {step_rescale}")

        self.d_model, self.d_state, self.blocks = d_model, d_state, blocks
        self.conj_sym, self.clip_eigs, self.bidirectional = conj_sym, clip_eigs, bidirectional
        self.discretization, self.C_init = discretization, C_init
        self.step_rescale, self.scan_method = step_rescale, scan_method
        self.recompute_states = recompute_states
        d, P = d_model, d_state

        # A = blockdiag(V_j diag(Lambda_j) V_j^*), the same HiPPO-N block J times.
        lam, V = legs_normal(block)
        keep = block // 2 if conj_sym else block
        lam, V = lam[:keep], V[:, :keep]
        Lambda = np.tile(lam, blocks)  # (n,)
        V = block_diag(*([V] * blocks))  # (P, n)
        Vinv = V.conj().T  # (n, P); V^{-1} = V^* as V is unitary
        n = Lambda.shape[0]
        self.n = n
        self.Lambda_re = nnx.Param(jnp.asarray(Lambda.real, jnp.float32))
        self.Lambda_im = nnx.Param(jnp.asarray(Lambda.imag, jnp.float32))

        lecun = jax.nn.initializers.lecun_normal()
        B = np.asarray(lecun(rngs.params(), (P, d), jnp.float32), np.float64)
        self.B = nnx.Param(_to_re_im(Vinv @ B))

        k = 2 if bidirectional else 1
        if C_init == "complex_normal":
            C = jax.random.normal(rngs.params(), (d, k * n, 2), jnp.float32) * np.sqrt(0.5)
            self.C = nnx.Param(C)
        else:
            if C_init == "trunc_standard_normal":  # lecun per row: variance 1/P
                init = jax.nn.initializers.lecun_normal(batch_axis=0)
            else:  # lecun over (d, P, 2): variance 1/(P d)
                init = lecun

            def draw_projected():
                C = np.asarray(init(rngs.params(), (d, P, 2), jnp.float32), np.float64)
                return nnx.Param(_to_re_im((C[..., 0] + 1j * C[..., 1]) @ V))

            if bidirectional:
                self.C1 = draw_projected()
                self.C2 = draw_projected()
            else:
                self.C = draw_projected()

        self.D = nnx.Param(jax.random.normal(rngs.params(), (d,), jnp.float32))
        self.log_step = nnx.Param(
            jax.random.uniform(rngs.params(), (n, 1), jnp.float32,
                               minval=np.log(dt_min), maxval=np.log(dt_max)))

    # ------------------------------------------------------------------ the equations

    def continuous_eigenvalues(self) -> Array:
        """``Lambda = Lambda_re + i Lambda_im``: ``(n,)`` complex64 (clipped if ``clip_eigs``)."""
        re = self.Lambda_re[...]
        if self.clip_eigs:
            re = jnp.minimum(re, CLIP_EIGS_MAX)
        return jax.lax.complex(re, self.Lambda_im[...])

    def discretize(self) -> tuple[Array, Array]:
        """``(Lambda_bar (n,), B_bar (n, d))``, both complex64, by ZOH or bilinear."""
        lam = self.continuous_eigenvalues()
        step = self.step_rescale * jnp.exp(self.log_step[...][:, 0])
        B_tilde = _complex(self.B[...])
        if self.discretization == "zoh":
            lam_bar = jnp.exp(lam * step)
            B_bar = ((lam_bar - 1.0) / lam)[:, None] * B_tilde
        else:  # bilinear
            inv = 1.0 / (1.0 - (step / 2.0) * lam)
            lam_bar = inv * (1.0 + (step / 2.0) * lam)
            B_bar = (inv * step)[:, None] * B_tilde
        return lam_bar, B_bar

    def eigenvalues(self) -> Array:
        """The recurrence's (discrete) eigenvalues ``Lambda_bar``: ``(n,)`` complex64."""
        return self.discretize()[0]

    def output_matrix(self) -> Array:
        """``C~``: ``(d, n)`` complex64, or ``(d, 2n)`` (forward | backward) if bidirectional."""
        if self.bidirectional and self.C_init != "complex_normal":
            return jnp.concatenate([_complex(self.C1[...]), _complex(self.C2[...])], axis=-1)
        return _complex(self.C[...])

    def _input(self, B_bar: Array, u: Array) -> Array:
        """``B_bar u`` for real ``u (..., d)``: ``(..., n)`` complex, as one real matmul."""
        n = B_bar.shape[0]
        bu = matmul(u, jnp.concatenate([jnp.real(B_bar), jnp.imag(B_bar)]).T, self.precision)
        return jax.lax.complex(bu[..., :n], bu[..., n:])

    def _readout(self, x: Array, u: Array) -> Array:
        """``c Re(C~ x) + D u`` with ``c = 2`` under ``conj_sym``."""
        C = self.output_matrix()
        y = matmul(jnp.concatenate([jnp.real(x), jnp.imag(x)], axis=-1),
                   jnp.concatenate([jnp.real(C), -jnp.imag(C)], axis=1).T, self.precision)
        if self.conj_sym:
            y = 2.0 * y
        return y + self.D[...] * u

    def states(self, u: Array, mask: Array | None = None) -> Array:
        """The hidden states ``x``: ``(b, t, n)`` complex, or ``(b, t, 2n)`` (fwd | bwd).

        Args:
          u: inputs ``(b, t, d)``.
          mask: optional ``(b, t)`` validity mask; ``B_bar u`` is zeroed where it is False,
            so padding never reaches the states of valid steps (in either direction).
        """
        lam_bar, B_bar = self.discretize()
        bu = self._input(B_bar, u)
        if mask is not None:
            bu = jnp.where(mask[..., None], bu, 0)
        return bidirectional_recurrence(lam_bar, bu, bidirectional=self.bidirectional,
                                        method=linear_method(self.scan_method))

    def __call__(self, u: Array, mask: Array | None = None) -> Array:
        """Apply the layer.

        Args:
          u: ``(b, t, d)`` float inputs.
          mask: optional ``(b, t)`` boolean validity mask (see :meth:`states`).

        The same function as ``_readout(states(u, mask), u)``, computed on real
        ``[Re | Im]`` storage end to end, as the LRU's ``__call__``
        (:func:`lru.layers.planar.planar_readout`).

        Returns:
          ``y``: ``(b, t, d)``, ``c Re(C~ x) + D * u``.
        """
        lam_bar, B_bar = self.discretize()
        C = self.output_matrix()
        y = planar_readout(u, jnp.concatenate([jnp.real(B_bar), jnp.imag(B_bar)]), lam_bar,
                           jnp.real(C), jnp.imag(C), mask=mask, bidirectional=self.bidirectional,
                           method=self.scan_method, precision=self.precision,
                           recompute=self.recompute_states)
        if self.conj_sym:
            y = 2.0 * y
        return y + self.D[...] * u

    # ------------------------------------------------------------------ recurrent mode

    def _check_recurrent(self) -> None:
        if self.bidirectional:
            raise ValueError(
                "S5: step-by-step (recurrent) mode needs bidirectional=False; a "
                "bidirectional layer reads the future, so use __call__ on whole sequences")

    def init_state(self, batch: int) -> Array:
        """The zero state ``(batch, n)`` complex64 for :meth:`step`."""
        self._check_recurrent()
        return jnp.zeros((batch, self.n), jnp.complex64)

    def step(self, state: Array, u_t: Array) -> tuple[Array, Array]:
        """One step of the discretised system (unidirectional layers only).

        Args:
          state: ``x_{t-1}`` ``(b, n)`` complex.
          u_t: ``(b, d)`` inputs at step ``t``.

        Returns:
          ``(x_t (b, n), y_t (b, d))`` with ``x_t = Lambda_bar x_{t-1} + B_bar u_t``.
        """
        self._check_recurrent()
        lam_bar, B_bar = self.discretize()
        state = lam_bar * state + self._input(B_bar, u_t)
        return state, self._readout(state, u_t)
