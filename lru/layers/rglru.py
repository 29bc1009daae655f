"""The Real-Gated Linear Recurrent Unit (RG-LRU) of Griffin/Hawk (De et al. 2024).

"Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models" (arXiv 2402.19427), Sec. 2.4 and App. A-B. The computation follows the released
reference, google-deepmind/recurrentgemma (``recurrentgemma/jax/layers.py``: ``RGLRU``,
``BlockDiagonalLinear``, ``rnn_param_init``, ``sqrt_bound_derivative``, ``rnn_scan``),
which the RecurrentGemma checkpoints were trained with.

Axis legend: ``b`` batch, ``t`` time, ``d`` input width, ``n`` state (the RG-LRU's width
``D_RNN``; ``n = d`` for the real layer, ``n = d / 2`` complex channels for the CG-LRU),
``h`` diagonal blocks of the gates.

The real RG-LRU, for inputs ``x: (b, t, n)`` and segment positions ``s: (b, t)``::

    r_t = sigmoid(W_a x_t + b_a)                    recurrence gate, block-diagonal W_a
    i_t = sigmoid(W_x x_t + b_x)                    input gate, block-diagonal W_x
    log a_t = -c softplus(a_param) r_t              c = 8, computed in log space
    a_t = exp(log a_t),  a_t^2 = exp(2 log a_t)
    h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t x_t)   (b, t, n)
    y_t = h_t

The base decay is ``a = sigmoid(-a_param) = exp(-softplus(a_param))``, so ``a_t = a^(c r_t)``
as in the paper (whose ``Lambda`` is ``-a_param``). At a document start (``s_t == 0``) the
state is reset, ``h_t = i_t x_t``: ``a_t`` is zeroed and the input is *not* rescaled by
``sqrt(1 - a_t^2)``. The square root's derivative is bounded (:func:`sqrt_bound_derivative`)
so that ``a_t -> 1`` cannot produce an infinite gradient (NaNs in bfloat16 training).

Initialisation ("on a ring"): ``a^2`` is uniform on ``[r_min^2, r_max^2]`` with
``[r_min, r_max] = [0.9, 0.999]``. Convention: this module follows the **released code**,
which puts the *base* decay ``a`` on the ring (``ring="a"``, the default); the paper's
text (Sec. 2.4) puts ``a^c`` there, which ``ring="a^c"`` selects (``softplus(a_param)``
is then ``c`` times smaller, i.e. the decay ``a_t`` at ``r_t = 1`` lies on the ring).

The complex-gated variant (CG-LRU, App. B of the paper; ``complex=True``) reads the input
``x = [x1; x2]`` as ``x1 + i x2`` (``n = d / 2`` complex channels), adds a learnable phase
``theta``, and stacks ``[Re h; Im h]`` as its output::

    log a~_t = c r_t (-softplus(a_param) + i theta)     a~ = sigmoid(Lambda) e^(i theta)
    h~_t = a~_t h~_{t-1} + sqrt(1 - |a~_t|^2) (i_t x~_t),   y_t = [Re h~_t; Im h~_t]

with ``r_t``, ``i_t`` of width ``n`` (block-diagonal ``d -> n`` maps). The paper gives no
initialisation for ``theta``; here it is uniform on ``[0, max_phase / c]``, so that at a
fully open gate (``r_t = 1``) the phase per step is uniform on ``[0, max_phase]``, the
LRU's phase ring. The recurrence runs through :func:`lru.scan.linear_recurrence` with the
input-dependent ``a_t: (b, t, n)``, accumulated in float32 (complex64).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lru.scan import check_method, linear_recurrence

Array = jax.Array

#: ``c`` of ``a_t = a^(c r_t)`` (the paper and the reference use 8).
C_DEFAULT = 8.0
#: The reference's bound on the derivative of ``sqrt(1 - a_t^2)`` (``rnn_scan``'s caller).
MAX_SQRT_GRADIENT = 1000.0
#: Where the base decay's ring lies: the released code's ``a`` or the paper text's ``a^c``.
RING_CONVENTIONS: tuple[str, ...] = ("a", "a^c")


# --------------------------------------------------------------------------- pieces


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bound_derivative(x: Array, max_gradient: float) -> Array:
    """``sqrt(x)`` whose derivative is capped at ``max_gradient``.

    Forward: ``sqrt(x)``. Backward: ``d/dx = 1 / (2 sqrt(max(x, 1 / (4 M^2))))`` with
    ``M = max_gradient``, i.e. the true derivative ``1 / (2 sqrt(x))`` wherever that is at
    most ``M``, and ``M`` below ``x = 1 / (4 M^2)`` (including ``x = 0``).
    """
    del max_gradient
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_gradient):
    del max_gradient
    return jnp.sqrt(x), x


def _sqrt_bwd(max_gradient, x, g):
    floor = 1.0 / (4.0 * max_gradient**2)
    return (g * 0.5 * jax.lax.rsqrt(jnp.maximum(x, floor)),)


sqrt_bound_derivative.defvjp(_sqrt_fwd, _sqrt_bwd)


def ring_a_param(key: Array, n: int, r_min: float = 0.9, r_max: float = 0.999, *,
                 c: float = C_DEFAULT, ring: str = "a") -> Array:
    """``a_param: (n,)`` float32 whose base decay lies uniformly (by area) on a ring.

    ``a^2`` (``ring="a"``) or ``(a^c)^2`` (``ring="a^c"``) is drawn uniformly from
    ``[r_min^2, r_max^2]``; ``a_param = softplus^{-1}(-log a)`` (computed with ``expm1``, so
    radii near 1 keep their precision in float32).
    """
    if ring not in RING_CONVENTIONS:
        raise ValueError(f"RGLRU: unknown ring convention {ring!r}; choose one of "
                         f"{RING_CONVENTIONS} (the released code's 'a' or the paper text's 'a^c')")
    if not 0.0 < r_min < r_max < 1.0:
        raise ValueError(f"RGLRU: need 0 < r_min < r_max < 1; got r_min={r_min}, r_max={r_max}")
    u = jax.random.uniform(key, (n,), jnp.float32)
    neg_log_radius = -0.5 * jnp.log(u * (r_max**2 - r_min**2) + r_min**2)  # -log a (or a^c)
    if ring == "a^c":
        neg_log_radius = neg_log_radius / c
    return jnp.log(jnp.expm1(neg_log_radius))


def base_decay(a_param: Array) -> Array:
    """The base decay ``a = exp(-softplus(a_param)) = sigmoid(-a_param)``."""
    return jnp.exp(-jax.nn.softplus(a_param))


class BlockDiagonalLinear(nnx.Module):
    """``y = W x + b`` with ``W`` block-diagonal: ``h`` independent ``d/h -> n/h`` maps.

    Parameters ``w: (h, d/h, n/h)``, ``b: (h, n/h)`` (the reference's layout, whose maps are
    square, ``n = d``). ``w`` is drawn as the reference draws it, variance-scaling "fan_in"
    normal over the whole ``(h, d/h, n/h)`` array (fan-in ``d``); ``b`` is zero.

    Args:
      d_in: input width ``d``.
      d_out: output width ``n``.
      num_blocks: ``h``, dividing both widths.
      rngs: parameter RNG streams.
    """

    def __init__(self, d_in: int, d_out: int, num_blocks: int, *, rngs: nnx.Rngs):
        if num_blocks < 1 or d_in % num_blocks or d_out % num_blocks:
            raise ValueError(f"BlockDiagonalLinear: num_blocks={num_blocks} must divide both "
                             f"widths (in {d_in}, out {d_out}); pick a divisor")
        self.num_blocks = num_blocks
        init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        shape = (num_blocks, d_in // num_blocks, d_out // num_blocks)
        self.w = nnx.Param(init(rngs.params(), shape, jnp.float32))
        self.b = nnx.Param(jnp.zeros((num_blocks, d_out // num_blocks), jnp.float32))

    def __call__(self, x: Array) -> Array:
        """``x: (..., d) -> (..., n)``.

        One product per block on its slice of ``x``, outputs side by side: the same numbers
        as ``einsum("nhi,hij->nhj")``, whose weight gradient XLA:CPU formed through a
        transpose of ``x`` to ``(h, i, tokens)`` (backward 24 against 40 ms at 32768 tokens
        x 2 blocks of 88, docs/performance.md).
        """
        w, i = self.w[...], self.w.shape[1]
        y = jnp.concatenate([x[..., h * i:(h + 1) * i] @ w[h] for h in range(self.num_blocks)],
                            axis=-1)
        return y + self.b[...].reshape(-1)


def reset_mask(segment_pos: Array | None, shape: tuple[int, int]) -> Array:
    """``(b, t)`` bool, True at document starts (``segment_pos == 0``).

    Without ``segment_pos`` every row is one document starting at ``t = 0``.
    """
    if segment_pos is None:
        return jnp.broadcast_to(jnp.arange(shape[1]) == 0, shape)
    return jnp.asarray(segment_pos) == 0


# --------------------------------------------------------------------------- the layer


class RGLRU(nnx.Module):
    """The RG-LRU (or, with ``complex=True``, the CG-LRU) on ``width`` channels.

    Parameters (named as in the reference): ``a_param (n,)``; ``input_gate`` and ``a_gate``
    (:class:`BlockDiagonalLinear`, ``w (h, width/h, n/h)``, ``b (h, n/h)``); and, complex
    only, ``theta (n,)``. ``n = width`` (real) or ``width / 2`` (complex).

    Args:
      width: input and output width ``d``.
      num_blocks: ``h``, the number of diagonal blocks of both gates (the reference uses the
        model's number of heads).
      c: the exponent scale ``c`` (8).
      complex: the CG-LRU of the paper's App. B instead of the real RG-LRU.
      r_min, r_max: the ring of the base decay at initialisation (0.9, 0.999).
      ring: ``"a"`` (the released code: the base decay ``a`` on the ring) or ``"a^c"`` (the
        paper's text).
      max_phase: complex only; ``theta`` starts uniform on ``[0, max_phase / c]``.
      scan_method: method of :func:`lru.scan.linear_recurrence`.
      rngs: parameter RNG streams.
    """

    #: Trained like the LRU's eigenvalue parameters (:mod:`lru.training.optim`'s recurrent group).
    RECURRENT_PARAMS = frozenset({"a_param", "theta"})

    def __init__(self, width: int, *, num_blocks: int = 1, c: float = C_DEFAULT,
                 complex: bool = False, r_min: float = 0.9, r_max: float = 0.999,
                 ring: str = "a", max_phase: float = 2 * np.pi, scan_method: str = "auto",
                 rngs: nnx.Rngs):
        check_method(scan_method)
        if complex and width % 2:
            raise ValueError(f"RGLRU: complex=True reads the input's halves as real and "
                             f"imaginary parts, so width must be even; got {width}")
        if not c > 0:
            raise ValueError(f"RGLRU: c must be > 0; got {c}")
        self.width, self.c, self.complex, self.scan_method = width, float(c), complex, scan_method
        n = width // 2 if complex else width
        self.n = n
        self.a_param = nnx.Param(ring_a_param(rngs.params(), n, r_min, r_max, c=c, ring=ring))
        self.input_gate = BlockDiagonalLinear(width, n, num_blocks, rngs=rngs)
        self.a_gate = BlockDiagonalLinear(width, n, num_blocks, rngs=rngs)
        if complex:
            self.theta = nnx.Param(jax.random.uniform(
                rngs.params(), (n,), jnp.float32, 0.0, max_phase / c))

    def coefficients(self, x: Array, segment_pos: Array | None = None) -> tuple[Array, Array]:
        """The recurrence ``h_t = a_t h_{t-1} + b_t``'s ``a_t`` and ``b_t``, both ``(b, t, n)``.

        Real for the RG-LRU, complex for the CG-LRU; at document starts ``a_t = 0`` and
        ``b_t = i_t x_t`` (not rescaled).
        """
        reset = reset_mask(segment_pos, x.shape[:2])[..., None]
        gate_x = jax.nn.sigmoid(self.input_gate(x))
        gate_a = jax.nn.sigmoid(self.a_gate(x))
        log_a = -self.c * gate_a * jax.nn.softplus(self.a_param[...])
        a_squared = jnp.exp(2 * log_a)  # |a_t|^2 (the phase has modulus one)
        multiplier = jnp.where(reset, 1.0, sqrt_bound_derivative(1 - a_squared,
                                                                 MAX_SQRT_GRADIENT))
        if self.complex:
            a = jnp.exp(jax.lax.complex(log_a, self.c * gate_a * self.theta[...]))
            x = jax.lax.complex(x[..., : self.n], x[..., self.n:])
        else:
            a = jnp.exp(log_a)
        b = x * gate_x * multiplier.astype(gate_x.dtype)
        return jnp.where(reset, 0, a), b

    def __call__(self, x: Array, segment_pos: Array | None = None,
                 h0: Array | None = None) -> tuple[Array, Array]:
        """Apply the layer.

        Args:
          x: ``(b, t, width)``.
          segment_pos: ``(b, t)`` position of each token in its document (0 starts one);
            None: one document per row starting at ``t = 0``.
          h0: the state before the first step, ``(b, n)`` (float32, or complex64 for the
            CG-LRU); None is zeros.

        Returns:
          ``(y (b, t, width), h_last (b, n))``: the outputs and the final state (the cache
          for step-by-step decoding, always float32 / complex64).
        """
        a, b = self.coefficients(x, segment_pos)
        h = linear_recurrence(a, b, h0=h0, method=self.scan_method)
        h_last = h[:, -1].astype(jnp.complex64 if self.complex else jnp.float32)
        y = jnp.concatenate([jnp.real(h), jnp.imag(h)], axis=-1) if self.complex else h
        return y.astype(x.dtype), h_last


class RGLRULayer(nnx.Module):
    """The RG-LRU as a rung of the LRU's ladder: the LRU's frame around the RG-LRU.

    ``y = C RGLRU(B u) + D u`` for ``u: (b, t, d)``: ``B (n, d)`` ~ N(0, 1/d) maps the input
    to the RG-LRU's ``n = d_state`` channels, ``C (d, k n)`` ~ N(0, 1/n) reads its outputs
    (``k = 2`` when bidirectional) and ``D (d,)`` ~ N(0, 1) is the skip, as in the LRU, so
    that the two rungs differ only in the recurrence. Bidirectional: the same gates and
    decays run right to left too (:func:`linear_recurrence` with ``reverse=True``, without a
    reset), and ``C``'s second half reads that direction. Each row is one document starting
    at ``t = 0``.

    Args:
      d_model: ``d``.
      d_state: ``n``, the RG-LRU's width (even when ``complex``).
      num_blocks, c, complex, r_min, r_max, ring, max_phase, scan_method: as :class:`RGLRU`.
      bidirectional: add the right-to-left direction.
      rngs: parameter RNG streams.
    """

    RECURRENT_PARAMS = frozenset({"B"})

    def __init__(self, d_model: int, d_state: int, *, num_blocks: int = 1,
                 c: float = C_DEFAULT, complex: bool = False, r_min: float = 0.9,
                 r_max: float = 0.999, ring: str = "a", max_phase: float = 2 * np.pi,
                 bidirectional: bool = False, scan_method: str = "auto", rngs: nnx.Rngs):
        d, n, k = d_model, d_state, 2 if bidirectional else 1
        self.bidirectional = bidirectional
        self.rg_lru = RGLRU(n, num_blocks=num_blocks, c=c, complex=complex, r_min=r_min,
                            r_max=r_max, ring=ring, max_phase=max_phase,
                            scan_method=scan_method, rngs=rngs)
        self.B = nnx.Param(jax.random.normal(rngs.params(), (n, d), jnp.float32) / np.sqrt(d))
        self.C = nnx.Param(jax.random.normal(rngs.params(), (d, k * n), jnp.float32) / np.sqrt(n))
        self.D = nnx.Param(jax.random.normal(rngs.params(), (d,), jnp.float32))

    def __call__(self, u: Array, mask: Array | None = None) -> Array:
        """``u: (b, t, d)``, ``mask: (b, t)`` validity (the RG-LRU's input is zeroed where it
        is False, so padding never reaches a valid step's state) -> ``(b, t, d)``."""
        x = u @ self.B[...].T
        if mask is not None:
            x = jnp.where(mask[..., None], x, 0)
        y, _ = self.rg_lru(x)
        if self.bidirectional:
            # No reset in this direction: its state starts at zero beyond the last step and
            # stays zero through padding (where x, hence b, is zero).
            no_reset = jnp.ones(x.shape[:2], jnp.int32)
            a, b = self.rg_lru.coefficients(x, no_reset)
            h = linear_recurrence(a, b, reverse=True, method=self.rg_lru.scan_method)
            back = jnp.concatenate([jnp.real(h), jnp.imag(h)], -1) if self.rg_lru.complex else h
            y = jnp.concatenate([y, back.astype(y.dtype)], axis=-1)
        return y @ self.C[...].T + self.D[...] * u
