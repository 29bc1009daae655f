"""Linear recurrences: the core that every recurrent layer of the suite ends in.

Two pure functions, each with interchangeable methods chosen by name:

* :func:`linear_recurrence` -- the diagonal recurrence ``x_t = a_t * x_{t-1} + b_t``
  (LRU, S5, RG-LRU, ...), real or complex, time-invariant or input-dependent ``a``.
* :func:`planar_recurrence` -- the complex time-invariant case on real storage: ``b`` and
  ``x`` hold ``[Re | Im]`` in two halves of their last axis, the layout the LRU's real
  ``B``/``C`` matmuls produce and consume, so no complex array is ever packed or unpacked.
* :func:`dense_recurrence` -- ``x_t = f(A x_{t-1} + b_t)`` with a dense matrix ``A`` and an
  optional nonlinearity ``f`` (the dense rungs of the LRU ablation ladder).

Axis legend: ``b`` batch, ``t`` time, ``n`` state.

Every method of :func:`linear_recurrence` shares one custom VJP: the adjoint of a linear
recurrence is the same recurrence run in the opposite direction,

    lam_t = g_t + a_{t+1} * lam_{t+1},   db_t = lam_t,   da_t = lam_t * x_{t-1},

so the backward pass stores only ``x`` (O(T) memory, whatever the method) and runs on the
same fast kernel as the forward pass (for ``inplace``, one fused loop that also forms ``da``:
:func:`_inplace_adjoint`). Complex cotangents follow JAX's convention (the plain
transpose, no conjugation), so gradients equal autodiff of a Python loop.
"""

from __future__ import annotations

import functools
from typing import Callable, Literal

import jax
import jax.numpy as jnp
from jax import lax

from lru import native
from lru.pallas_scan import pallas_planar, pallas_recurrence

Array = jax.Array
Method = Literal["auto", "sequential", "associative", "chunked", "inplace", "pallas", "native"]

#: The concrete methods, in the order benchmarks report them; each runs every case.
METHODS: tuple[str, ...] = ("sequential", "associative", "chunked", "inplace", "pallas")

#: Every method name: :data:`METHODS` and ``native``, the compiled CPU kernels of
#: :mod:`lru.native`, which run two cases: :func:`planar_recurrence` (the LRU's complex
#: time-invariant ``a``) and :func:`linear_recurrence` with a real float32 input-dependent
#: ``a`` (the RG-LRU). ``auto`` picks them there on a single CPU device.
ALL_METHODS: tuple[str, ...] = METHODS + ("native",)

#: Chunk length used by ``method="chunked"`` when none is given.
DEFAULT_CHUNK = 32


# --------------------------------------------------------------------------- kernels
# Each kernel takes a: (n,) or (b, t, n), b: (b, t, n), h0: (b, n), all of one float32 /
# complex64 (or wider) dtype, and returns x: (b, t, n). They never see other dtypes.


def _sequential(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
    """``jax.lax.scan`` over a time-major copy of the inputs (the textbook formulation)."""
    varying = a.ndim == 3
    xs = (jnp.swapaxes(a, 0, 1) if varying else None, jnp.swapaxes(b, 0, 1))

    def step(h, inp):
        a_t, b_t = inp
        h = (a_t if varying else a) * h + b_t
        return h, h

    _, x = lax.scan(step, h0, xs, reverse=reverse)
    return jnp.swapaxes(x, 0, 1)


def _associative(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
    """``jax.lax.associative_scan`` with the affine-map composition (Blelloch scan)."""
    a_full = jnp.broadcast_to(a, b.shape)
    first = -1 if reverse else 0  # the step that sees h0
    b = b.at[:, first].add(a_full[:, first] * h0)

    def compose(earlier, later):
        a_e, b_e = earlier
        a_l, b_l = later
        return a_l * a_e, a_l * b_e + b_l

    _, x = lax.associative_scan(compose, (a_full, b), reverse=reverse, axis=1)
    return x


def _inplace_along(a: Array, b: Array, h0: Array, reverse: bool, axis: int) -> Array:
    """Sequential loop that reads and writes slices of ``axis`` in place (no transposes).

    ``a`` is either broadcastable to a slice of ``b`` (time-invariant) or shaped like ``b``.
    ``h0`` has the shape of one slice of ``b`` (``axis`` kept with size 1). The states are
    written over ``b``'s own buffer (step ``t`` reads ``b_t`` and writes ``x_t`` to the same
    slice), so when ``b`` is dead afterwards, as it is inside the custom VJP, XLA aliases the
    two: no zero-filled output buffer, one array of traffic less.
    """
    length = b.shape[axis]
    varying = a.ndim == b.ndim

    def body(i, carry):
        h, out = carry
        t = length - 1 - i if reverse else i
        a_t = lax.dynamic_slice_in_dim(a, t, 1, axis=axis) if varying else a
        h = a_t * h + lax.dynamic_slice_in_dim(out, t, 1, axis=axis)
        return h, lax.dynamic_update_slice_in_dim(out, h, t, axis=axis)

    _, out = lax.fori_loop(0, length, body, (h0, b))
    return out


def _inplace_adjoint(a: Array, x: Array, h0: Array, g: Array,
                     reverse: bool) -> tuple[Array, Array]:
    """The backward pass of a recurrence, fused into one in-place loop.

    Runs the adjoint ``lam_t = g_t + a_next(t) * lam_next(t)`` opposite to the forward
    direction, writing ``lam`` over ``g``'s buffer, and forms ``da_t = lam_t * x_prev(t)`` in
    the same step: summed in the loop's carry when ``a`` is time-invariant, written over
    ``x``'s buffer (slot ``t``, after slot ``t``'s last read) when it is input-dependent.
    Against the generic path (adjoint loop, then a shifted copy of ``x``, a product and a
    reduction) this reads ``g`` and ``x`` once and writes ``lam`` once.

    Args:
      a: ``(n,)`` or ``(b, t, n)``, as in the forward pass.
      x: forward states ``(b, t, n)``.
      h0: forward initial state ``(b, n)``.
      g: cotangent of ``x``, ``(b, t, n)``.
      reverse: the forward pass's direction.

    Returns:
      ``(lam, da)``: ``lam`` ``(b, t, n)`` (the cotangent of ``b``) and ``da`` shaped like
      ``a``.
    """
    length = x.shape[1]
    varying = a.ndim == 3
    first = h0[:, None]

    def body(i, carry):
        lam, da, lam_out = carry
        t = i if reverse else length - 1 - i  # the adjoint runs the other way
        nxt = t - 1 if reverse else t + 1  # the step processed just before t
        prev = t + 1 if reverse else t - 1  # the state a_t multiplied going forward
        if varying:  # lam is 0 on the first step, so the clamped a_next there is harmless
            a_next = lax.dynamic_slice_in_dim(a, jnp.clip(nxt, 0, length - 1), 1, axis=1)
        else:
            a_next = a
        lam = a_next * lam + lax.dynamic_slice_in_dim(lam_out, t, 1, axis=1)
        lam_out = lax.dynamic_update_slice_in_dim(lam_out, lam, t, axis=1)
        inside = (prev >= 0) & (prev < length)
        x_prev = jnp.where(
            inside, lax.dynamic_slice_in_dim(x, jnp.clip(prev, 0, length - 1), 1, axis=1), first)
        if varying:  # da: x's buffer, slot t overwritten
            da = lax.dynamic_update_slice_in_dim(da, lam * x_prev, t, axis=1)
        else:  # da: a running sum over time, (b, 1, n)
            da = da + lam * x_prev
        return lam, da, lam_out

    zero = jnp.zeros_like(first)
    _, da, lam = lax.fori_loop(0, length, body, (zero, x if varying else zero, g))
    return lam, (da if varying else da.sum(axis=(0, 1)))


def _inplace(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
    """A ``fori_loop`` over time that slices axis 1 in place: fastest on CPU for wide steps."""
    return _inplace_along(a, b, h0[:, None], reverse, axis=1)


def _chunked(a: Array, b: Array, h0: Array, reverse: bool, chunk: int = DEFAULT_CHUNK) -> Array:
    """Two-level scan: all chunks scanned at once from zero, then carries across chunks.

    Time is cut into ``k`` chunks of ``c`` steps. (1) A loop of ``c`` steps scans every chunk
    from a zero state (each step is ``k`` times wider than a plain loop's); (2) a loop of ``k``
    steps carries the state across chunk boundaries; (3) one elementwise fix-up adds each
    chunk's incoming state times the cumulative decay. ``c + k`` sequential steps instead of
    ``t``, which pays off when one step of the plain loop is too narrow to fill the machine.
    """
    bsz, length, n = b.shape
    varying = a.ndim == 3
    c = max(1, min(chunk, length))
    k = -(-length // c)
    pad = k * c - length
    if pad:  # pad on the side processed last, so padding never feeds a real step
        widths = ((0, 0), (pad, 0) if reverse else (0, pad), (0, 0))
        b = jnp.pad(b, widths)
        if varying:
            a = jnp.pad(a, widths, constant_values=1)
    bc = b.reshape(bsz, k, c, n)
    if varying:
        ac = a.reshape(bsz, k, c, n)
        decay = lax.cumprod(ac, axis=2, reverse=reverse)  # prod of a over the chunk so far
    else:
        ac = a
        decay = lax.cumprod(jnp.broadcast_to(a, (c, n)), axis=0, reverse=reverse)[None, None]
    local = _inplace_along(ac, bc, jnp.zeros((bsz, k, 1, n), b.dtype), reverse, axis=2)

    edge = 0 if reverse else c - 1  # last step of each chunk, in processing order
    total = decay[:, :, edge] if varying else jnp.broadcast_to(decay[0, 0, edge], (bsz, k, n))

    def carry_step(h, inp):
        total_k, end_k = inp
        return total_k * h + end_k, h  # emit the state entering chunk k

    _, h_in = lax.scan(
        carry_step,
        h0,
        (jnp.swapaxes(total, 0, 1), jnp.swapaxes(local[:, :, edge], 0, 1)),
        reverse=reverse,
    )
    x = local + decay * jnp.swapaxes(h_in, 0, 1)[:, :, None]
    x = x.reshape(bsz, k * c, n)
    return x[:, pad:] if reverse else x[:, :length]


_KERNELS: dict[str, Callable[..., Array]] = {
    "sequential": _sequential,
    "associative": _associative,
    "chunked": _chunked,
    "inplace": _inplace,
    "pallas": pallas_recurrence,
    "native": native.diag_forward,  # real float32 input-dependent a only
}


# --------------------------------------------------------------------------- autodiff


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _recurrence(a: Array, b: Array, h0: Array, reverse: bool, method: str) -> Array:
    return _KERNELS[method](a, b, h0, reverse)


def _recurrence_fwd(a, b, h0, reverse, method):
    x = _recurrence(a, b, h0, reverse, method)
    return x, (a, x, h0)


def _recurrence_bwd(reverse, method, residuals, g):
    a, x, h0 = residuals
    varying = a.ndim == 3
    first = -1 if reverse else 0
    a_first = a[:, first] if varying else a
    if method == "inplace":
        lam, da = _inplace_adjoint(a, x, h0, g, reverse)
        return da, lam, a_first * lam[:, first]
    if method == "native":  # one fused pass: db, da and dh0
        db, da, dh0 = native.diag_adjoint(a, x, h0, g, reverse)
        return da, db, dh0
    # Adjoint recurrence, run the other way: lam_t = g_t + a_next(t) * lam_next(t).
    if varying:
        if reverse:  # next(t) = t - 1
            a_adj = jnp.concatenate([jnp.zeros_like(a[:, :1]), a[:, :-1]], axis=1)
        else:  # next(t) = t + 1
            a_adj = jnp.concatenate([a[:, 1:], jnp.zeros_like(a[:, :1])], axis=1)
    else:
        a_adj = a
    lam = _KERNELS[method](a_adj, g, jnp.zeros_like(h0), not reverse)
    # x_prev_t: the state that a_t multiplied in the forward pass.
    if reverse:
        x_prev = jnp.concatenate([x[:, 1:], h0[:, None]], axis=1)
    else:
        x_prev = jnp.concatenate([h0[:, None], x[:, :-1]], axis=1)
    da = lam * x_prev
    if not varying:
        da = da.sum(axis=(0, 1))
    return da, lam, a_first * lam[:, first]


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


# --------------------------------------------------------------------------- public API


def auto_method(batch: int, time: int, n: int, *, backend: str | None = None) -> str:
    """The method ``method="auto"`` picks for a shape on a backend.

    On CPU the in-place loop was the fastest or tied at every shape ``bench/scan.py`` tried
    (a while-loop step costs XLA:CPU well under a microsecond, so fewer, wider steps do not
    pay for ``chunked``'s extra pass, and ``associative`` does O(log t) passes over memory).
    On accelerators, where each loop step is a kernel launch, the log-depth
    ``associative`` scan is the default. ``batch``, ``time`` and ``n`` are part of the
    signature so that shape-dependent choices (a Pallas kernel, say) slot in here.
    """
    del batch, time, n  # no shape dependence measured yet (docs/performance.md)
    backend = backend or jax.default_backend()
    return "inplace" if backend == "cpu" else "associative"


def _resolve_method(caller: str, method: str, batch: int, time: int, n: int,
                    native_refusal: str | None) -> str:
    """``method``, checked. ``native_refusal`` is None when the case is one the native
    kernels run, else why not (the end of the error for an explicit ``"native"``). For
    ``"auto"``: ``"native"`` where it runs and :func:`lru.native.runs_here` (which says why
    only there), else :func:`auto_method`'s choice. An unknown name raises a ValueError
    naming ``caller`` and the valid names."""
    if method == "auto":
        if native_refusal is None and native.runs_here():
            return "native"
        return auto_method(batch, time, n)
    if method not in ALL_METHODS:
        raise ValueError(
            f"{caller}: unknown method {method!r}; choose one of {('auto',) + ALL_METHODS}"
        )
    if method == "native" and native_refusal is not None:
        raise ValueError(f"{caller}: method 'native' {native_refusal}")
    return method


def _check_inputs(a: Array, b: Array, h0: Array | None) -> None:
    if b.ndim != 3:
        raise ValueError(f"linear_recurrence: b must be (batch, time, n); got shape {b.shape}")
    if a.ndim == 1:
        if a.shape[0] != b.shape[2]:
            raise ValueError(
                f"linear_recurrence: a of shape {a.shape} must have n={b.shape[2]} entries "
                f"to match b of shape {b.shape}"
            )
    elif a.ndim == 3:
        try:
            fits = jnp.broadcast_shapes(a.shape, b.shape) == b.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"linear_recurrence: input-dependent a of shape {a.shape} does not "
                f"broadcast to b's shape {b.shape}"
            )
    else:
        raise ValueError(
            f"linear_recurrence: a must be (n,) (time-invariant) or (batch, time, n) "
            f"(input-dependent); got shape {a.shape}"
        )
    if h0 is not None and h0.shape != (b.shape[0], b.shape[2]):
        raise ValueError(
            f"linear_recurrence: h0 must be (batch, n) = {(b.shape[0], b.shape[2])}; "
            f"got {h0.shape}"
        )


def linear_recurrence(
    a: Array,
    b: Array,
    *,
    h0: Array | None = None,
    reverse: bool = False,
    method: Method = "auto",
) -> Array:
    """Diagonal linear recurrence ``x_t = a_t * x_{t-1} + b_t`` over the time axis.

    Args:
      a: decay, ``(n,)`` when time-invariant (LRU, S5) or ``(b, t, n)`` (anything that
        broadcasts to it) when input-dependent (RG-LRU). Real or complex.
      b: inputs ``(b, t, n)``, real or complex.
      h0: initial state ``(b, n)``; zeros when ``None``. With ``reverse=True`` it is the
        state beyond the last step.
      reverse: run right to left, ``x_t = a_t * x_{t+1} + b_t`` (bidirectional layers).
      method: one of :data:`ALL_METHODS` (``"native"`` for a real float32 input-dependent
        ``a`` only), or ``"auto"``: ``"native"`` where it applies on a single CPU device,
        else :func:`auto_method`'s choice.

    Returns:
      ``x`` of shape ``(b, t, n)`` in the promoted dtype of the inputs. The recurrence
      itself always runs in at least float32 (complex64), so bfloat16 inputs accumulate in
      float32 and only the result is cast back.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    _check_inputs(a, b, h0)
    dtypes = [a.dtype, b.dtype] + ([jnp.asarray(h0).dtype] if h0 is not None else [])
    out_dtype = jnp.result_type(*dtypes)
    acc_dtype = jnp.result_type(out_dtype, jnp.float32)
    refusal = None if a.ndim == 3 and acc_dtype == jnp.float32 else (
        f"runs a real float32 input-dependent a (b, t, n) only; got a {a.shape} of the "
        f"{acc_dtype} case (planar_recurrence runs the complex time-invariant one natively; "
        f"use 'auto' or 'inplace' here)")
    method = _resolve_method("linear_recurrence", method, b.shape[0], b.shape[1], b.shape[2],
                             refusal)
    a = a.astype(acc_dtype)
    if a.ndim == 3:
        a = jnp.broadcast_to(a, b.shape)
    b = b.astype(acc_dtype)
    h0 = jnp.zeros((b.shape[0], b.shape[2]), acc_dtype) if h0 is None else h0.astype(acc_dtype)
    return _recurrence(a, b, h0, reverse, method).astype(out_dtype)


def bidirectional_recurrence(
    a: Array, b: Array, *, bidirectional: bool, method: Method = "auto"
) -> Array:
    """The forward states of :func:`linear_recurrence`, or ``[forward, backward]``.

    Args:
      a: decay, as for :func:`linear_recurrence`.
      b: inputs ``(b, t, n)``.
      bidirectional: also run right to left, with the same ``a`` and ``b``.
      method: as for :func:`linear_recurrence`.

    Returns:
      ``(b, t, n)``, or ``(b, t, 2n)`` (forward states, then backward) when bidirectional.
    """
    x = linear_recurrence(a, b, method=method)
    if not bidirectional:
        return x
    return jnp.concatenate([x, linear_recurrence(a, b, reverse=True, method=method)], axis=-1)


# --------------------------------------------------------------------------- planar layout


def _rotate(re: Array, im: Array, a_re: Array, a_im: Array) -> tuple[Array, Array]:
    """``a * (re + i im)`` as its real and imaginary parts."""
    return a_re * re - a_im * im, a_im * re + a_re * im


#: Time steps per iteration of the planar loops: one slice read and one written per block
#: instead of per step (measured: 4.98 ms forward at 32 x 1024 x 2*128 against 6.70 ms one
#: step at a time; 8 is no better).
PLANAR_BLOCK = 4


def _walk_blocks(length: int, reverse: bool, block_fn, carry, block: int = PLANAR_BLOCK):
    """Call ``block_fn(start, size, carry) -> carry`` over time in processing order: blocks
    of ``block`` steps, then the ``length % block`` steps left over (the last ones going
    forwards, the first ones going backwards) one at a time."""
    n_blocks, rest = divmod(length, block)

    def blocks(j, carry):
        return block_fn(length - (j + 1) * block if reverse else j * block, block, carry)

    def singles(j, carry):
        return block_fn(rest - 1 - j if reverse else n_blocks * block + j, 1, carry)

    if n_blocks:
        carry = lax.fori_loop(0, n_blocks, blocks, carry)
    return lax.fori_loop(0, rest, singles, carry) if rest else carry


def linear_method(method: str) -> str:
    """The :func:`linear_recurrence` method for a layer configured with a
    :func:`planar_recurrence` ``method``, on the layer's complex time-invariant reference
    path (e.g. its ``states()``), which ``"native"`` does not run: ``"auto"`` for
    ``"native"``, else ``method`` itself."""
    return "auto" if method == "native" else method


def _planar_loop(a_re: Array, a_im: Array, b: Array, reverse: bool) -> Array:
    """The in-place loop of :func:`_inplace_along` on ``[Re | Im]`` storage, over ``b``'s buffer.

    The state is carried as two real halves; each iteration reads a block of
    :data:`PLANAR_BLOCK` steps, walks it, and writes ``[Re | Im]`` back with one update.
    """
    length, n = b.shape[1], b.shape[2] // 2

    def block_fn(start, size, carry):
        h_re, h_im, out = carry
        b_blk = lax.dynamic_slice_in_dim(out, start, size, axis=1)
        x_blk = [None] * size
        for s in (range(size - 1, -1, -1) if reverse else range(size)):
            h_re, h_im = _rotate(h_re, h_im, a_re, a_im)
            h_re, h_im = h_re + b_blk[:, s:s + 1, :n], h_im + b_blk[:, s:s + 1, n:]
            x_blk[s] = jnp.concatenate([h_re, h_im], -1)
        return h_re, h_im, lax.dynamic_update_slice_in_dim(out, jnp.concatenate(x_blk, 1),
                                                            start, axis=1)

    zero = jnp.zeros_like(b[:, :1, :n])
    return _walk_blocks(length, reverse, block_fn, (zero, zero, b))[2]


#: The walks :func:`_planar_walk` runs on ``[Re | Im]`` storage, by method name.
_PLANAR_WALKS: dict[str, Callable[..., Array]] = {
    "inplace": _planar_loop,
    "pallas": pallas_planar,
}


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _planar_walk(a_re: Array, a_im: Array, b: Array, reverse: bool, method: str) -> Array:
    """A walk of :data:`_PLANAR_WALKS` (the XLA loop, or the Pallas kernel) with its adjoint
    (:func:`_planar_walk_bwd`), which runs the same walk."""
    return _PLANAR_WALKS[method](a_re, a_im, b, reverse)


def _planar_walk_fwd(a_re, a_im, b, reverse, method):
    x = _PLANAR_WALKS[method](a_re, a_im, b, reverse)
    return x, (a_re, a_im, x)


def _planar_walk_bwd(reverse, method, residuals, g):
    """The adjoint ``lam_t = g_t + conj(a) lam_next(t)``: the same walk with ``conj(a)``, run
    the other way over ``g`` (over its buffer, for the loop); then ``d a_re = sum Re(conj(lam)
    x_prev)`` and ``d a_im = sum Im(conj(lam) x_prev)`` (the real gradients of the 2 x 2
    rotation-scaling each complex multiply is) in one reduction over ``lam`` and ``x`` shifted
    by a step, which runs on every core (measured: 2% faster in the training step than
    summing them in the loop's carry)."""
    a_re, a_im, x = residuals
    n = x.shape[2] // 2
    lam = _PLANAR_WALKS[method](a_re, -a_im, g, not reverse)
    # x_prev_t: the state a multiplied going forward (zero before the first step)
    edge = jnp.zeros_like(x[:, :1])
    x_prev = (jnp.concatenate([x[:, 1:], edge], axis=1) if reverse
              else jnp.concatenate([edge, x[:, :-1]], axis=1))
    l_re, l_im, x_re, x_im = lam[..., :n], lam[..., n:], x_prev[..., :n], x_prev[..., n:]
    return ((l_re * x_re + l_im * x_im).sum(axis=(0, 1)),
            (l_im * x_re - l_re * x_im).sum(axis=(0, 1)), lam)


_planar_walk.defvjp(_planar_walk_fwd, _planar_walk_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _planar_native(a_re: Array, a_im: Array, b: Array, mask: Array, reverse: bool) -> Array:
    """The compiled kernel (:mod:`lru.native`), inputs masked inside it, with its fused
    adjoint (``db = mask * lam`` and ``da`` in the same pass as ``lam``)."""
    return native.planar_forward(a_re, a_im, b, mask, reverse)


def _planar_native_fwd(a_re, a_im, b, mask, reverse):
    x = native.planar_forward(a_re, a_im, b, mask, reverse)
    return x, (a_re, a_im, x, mask)


def _planar_native_bwd(reverse, residuals, g):
    a_re, a_im, x, mask = residuals
    db, da_re, da_im = native.planar_adjoint(a_re, a_im, x, g, mask, reverse)
    return da_re, da_im, db, None


_planar_native.defvjp(_planar_native_fwd, _planar_native_bwd)


def planar_recurrence(
    a: Array, b: Array, *, mask: Array | None = None, reverse: bool = False,
    method: Method = "auto"
) -> Array:
    """:func:`linear_recurrence` for a complex time-invariant ``a`` on real ``[Re | Im]`` storage.

    ``b[..., :n]`` and ``b[..., n:]`` are the real and imaginary parts of the complex inputs,
    and the states come back the same way, so a layer whose input map is one real matmul
    producing ``[Re Bu | Im Bu]`` and whose output map is one real matmul reading
    ``[Re x | Im x]`` (the LRU) never packs or unpacks a complex array, forwards or backwards.
    With ``method="native"`` (``auto`` on CPU, where the kernel builds) a compiled kernel
    (:mod:`lru.native`) walks each sequence in one pass over memory, forwards and
    backwards, masking its inputs as it goes, with a fused adjoint (:func:`_planar_native`);
    with ``"inplace"`` (an XLA loop) and ``"pallas"`` (the chunked GPU kernel of
    :mod:`lru.pallas_scan`) the walk runs on the real storage, its adjoint too
    (:func:`_planar_walk`). The other methods pack the halves into complex numbers and run
    :func:`linear_recurrence`.

    Args:
      a: ``(n,)`` complex decay.
      b: ``(b, t, 2n)`` real inputs, ``[Re | Im]``.
      mask: optional ``(b, t)`` booleans; inputs where it is False count as zero (padding
        never reaches the states, in either direction). Their cotangents are zero.
      reverse: run right to left.
      method: one of :data:`ALL_METHODS`, or ``"auto"``.

    Returns:
      ``x``: ``(b, t, 2n)``, ``[Re x | Im x]``, in ``b``'s dtype (accumulated in at least
      float32).
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim != 1 or b.ndim != 3 or b.shape[2] != 2 * a.shape[0]:
        raise ValueError(
            f"planar_recurrence: a must be (n,) and b (batch, time, 2n) with [Re | Im] halves; "
            f"got a {a.shape}, b {b.shape}"
        )
    if mask is not None and jnp.shape(mask) != b.shape[:2]:
        raise ValueError(f"planar_recurrence: mask must be (batch, time) = {b.shape[:2]}; "
                         f"got {jnp.shape(mask)}")
    if jnp.iscomplexobj(b):
        raise ValueError("planar_recurrence: b holds real [Re | Im] halves; got a complex b "
                         "(use linear_recurrence for complex arrays)")
    acc = jnp.result_type(b.dtype, jnp.float32)
    refusal = None if acc == jnp.float32 else (
        f"runs in float32; got b of {b.dtype} (use method='inplace' for wider types)")
    method = _resolve_method("planar_recurrence", method, b.shape[0], b.shape[1], a.shape[0],
                             refusal)
    a = a.astype(jnp.result_type(acc, jnp.complex64))
    n = a.shape[0]
    if method == "native":
        mask = jnp.ones(b.shape[:2], bool) if mask is None else jnp.asarray(mask, bool)
        return _planar_native(jnp.real(a), jnp.imag(a), b.astype(acc), mask,
                              reverse).astype(b.dtype)
    if mask is not None:
        b = jnp.where(mask[..., None], b, 0)
    if method in _PLANAR_WALKS:
        x = _planar_walk(jnp.real(a), jnp.imag(a), b.astype(acc), reverse, method)
    else:
        bc = lax.complex(b[..., :n].astype(acc), b[..., n:].astype(acc))
        xc = linear_recurrence(a, bc, reverse=reverse, method=method)
        x = jnp.concatenate([jnp.real(xc), jnp.imag(xc)], axis=-1)
    return x.astype(b.dtype)


def dense_recurrence(
    A: Array,
    b: Array,
    *,
    activation: Literal["relu", "tanh"] | None = None,
    h0: Array | None = None,
    reverse: bool = False,
) -> Array:
    """Dense recurrence ``x_t = f(A x_{t-1} + b_t)`` (``f`` the identity when ``activation`` is None).

    Args:
      A: transition matrix ``(n, n)``.
      b: inputs ``(b, t, n)``.
      activation: ``"relu"``, ``"tanh"`` or ``None`` (linear).
      h0: initial state ``(b, n)``; zeros when ``None``.
      reverse: run right to left.

    Returns:
      ``x`` of shape ``(b, t, n)``, accumulated in at least float32 and cast back to the
      promoted input dtype.
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1] or b.ndim != 3 or b.shape[2] != A.shape[0]:
        raise ValueError(
            f"dense_recurrence: A must be (n, n) and b (batch, time, n); got A {A.shape}, "
            f"b {b.shape}"
        )
    if h0 is not None and h0.shape != (b.shape[0], b.shape[2]):
        raise ValueError(
            f"dense_recurrence: h0 must be (batch, n) = {(b.shape[0], b.shape[2])}; got {h0.shape}"
        )
    funcs = {None: lambda z: z, "relu": jax.nn.relu, "tanh": jnp.tanh}
    if activation not in funcs:
        raise ValueError(
            f"dense_recurrence: unknown activation {activation!r}; choose one of "
            f"{tuple(funcs)}"
        )
    f = funcs[activation]
    out_dtype = jnp.result_type(A.dtype, b.dtype)
    acc_dtype = jnp.result_type(out_dtype, jnp.float32)
    A_t = A.astype(acc_dtype).T
    h = jnp.zeros((b.shape[0], b.shape[2]), acc_dtype) if h0 is None else h0.astype(acc_dtype)

    def step(h, b_t):
        h = f(h @ A_t + b_t)
        return h, h

    _, x = lax.scan(step, h, jnp.swapaxes(b.astype(acc_dtype), 0, 1), reverse=reverse)
    return jnp.swapaxes(x, 0, 1).astype(out_dtype)
