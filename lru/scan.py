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
:func:`lru.kernels.loops.inplace_adjoint`). Complex cotangents follow JAX's convention (the plain
transpose, no conjugation), so gradients equal autodiff of a Python loop.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Literal

import jax
import jax.numpy as jnp
from jax import lax

from lru.choices import check_choice
from lru.kernels import loops, native, planar
from lru.kernels.pallas_scan import pallas_recurrence

Array = jax.Array
Method = Literal["auto", "sequential", "associative", "chunked", "inplace", "pallas", "native"]

#: The concrete methods, in the order benchmarks report them; each runs every case.
METHODS: tuple[str, ...] = ("sequential", "associative", "chunked", "inplace", "pallas")

#: Every method name: :data:`METHODS` and ``native``, the compiled CPU kernels of
#: :mod:`lru.kernels.native`, which run two cases: :func:`planar_recurrence` (the LRU's complex
#: time-invariant ``a``) and :func:`linear_recurrence` with a real float32 input-dependent
#: ``a`` (the RG-LRU). ``auto`` picks them there on a single CPU device.
ALL_METHODS: tuple[str, ...] = METHODS + ("native",)

#: Every value a ``scan_method`` setting takes: ``"auto"`` and :data:`ALL_METHODS`.
SCAN_METHODS: tuple[str, ...] = ("auto",) + ALL_METHODS


def check_method(method: str, key: str = "scan_method") -> str:
    """``method`` if it is one of :data:`SCAN_METHODS`, else a ValueError naming ``key``."""
    return check_choice(key, method, SCAN_METHODS)

# --------------------------------------------------------------------------- methods
# The reference methods are here; the fast ones (XLA loops, Pallas, native) are in
# lru.kernels, each tested equal to these in tests/test_scan.py. Each kernel takes a: (n,) or (b, t, n), b: (b, t, n), h0: (b, n), all of one float32 /
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


_KERNELS: dict[str, Callable[..., Array]] = {
    "sequential": _sequential,
    "associative": _associative,
    "chunked": loops.chunked,
    "inplace": loops.inplace,
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
        lam, da = loops.inplace_adjoint(a, x, h0, g, reverse)
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
    ``"auto"``: ``"native"`` where it runs and :func:`lru.kernels.native.runs_here` (which says why
    only there), else :func:`auto_method`'s choice. An unknown name raises a ValueError
    naming ``caller`` and the valid names."""
    if method == "auto":
        if native_refusal is None and native.runs_here():
            ran = "native"
        else:
            ran = auto_method(batch, time, n)
    else:
        ran = check_method(method, f"{caller}: method")
        if method == "native" and native_refusal is not None:
            raise ValueError(f"{caller}: method 'native' {native_refusal}")
    _note(caller, method, ran)
    return ran


# --------------------------------------------------------------------------- what ran

#: The open :func:`recording` lists; :func:`_note` appends to each. ``_inner`` counts the
#: calls made by another recurrence (planar_recurrence's complex path), which are not noted.
_RECORDS: list[list[dict]] = []
_inner = [0]


@contextlib.contextmanager
def recording():
    """Collect the method every recurrence call traced inside the block actually ran.

    Yields a list that fills, in call order (a model's forward pass: its layers in order),
    with ``{"call": "planar_recurrence", "requested": "auto", "ran": "native"}``; the
    dense rungs' :func:`dense_recurrence` appears with ``"ran": "scan"``. Tracing is enough:
    ``jax.eval_shape`` of a model's forward pass lists its layers' methods without running it.
    """
    calls: list[dict] = []
    _RECORDS.append(calls)
    try:
        yield calls
    finally:
        _RECORDS.remove(calls)


def _note(call: str, requested: str | None, ran: str) -> None:
    if not _inner[0]:
        for calls in _RECORDS:
            calls.append({"call": call, "requested": requested, "ran": ran})


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


def linear_method(method: str) -> str:
    """The :func:`linear_recurrence` method for a layer configured with a
    :func:`planar_recurrence` ``method``, on the layer's complex time-invariant reference
    path (e.g. its ``states()``), which ``"native"`` does not run: ``"auto"`` for
    ``"native"``, else ``method`` itself."""
    return "auto" if method == "native" else method


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
    (:mod:`lru.kernels.native`) walks each sequence in one pass over memory, forwards and
    backwards, masking its inputs as it goes, with a fused adjoint (:func:`lru.kernels.planar.planar_native`);
    with ``"inplace"`` (an XLA loop) and ``"pallas"`` (the chunked GPU kernel of
    :mod:`lru.kernels.pallas_scan`) the walk runs on the real storage, its adjoint too
    (:func:`lru.kernels.planar.planar_walk`). The other methods pack the halves into complex numbers and run
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
        return planar.planar_native(jnp.real(a), jnp.imag(a), b.astype(acc), mask,
                              reverse).astype(b.dtype)
    if mask is not None:
        b = jnp.where(mask[..., None], b, 0)
    if method in planar.PLANAR_WALKS:
        x = planar.planar_walk(jnp.real(a), jnp.imag(a), b.astype(acc), reverse, method)
    else:
        bc = lax.complex(b[..., :n].astype(acc), b[..., n:].astype(acc))
        _inner[0] += 1  # one call, noted above as planar_recurrence
        try:
            xc = linear_recurrence(a, bc, reverse=reverse, method=method)
        finally:
            _inner[0] -= 1
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
    _note("dense_recurrence", None, "scan")
    out_dtype = jnp.result_type(A.dtype, b.dtype)
    acc_dtype = jnp.result_type(out_dtype, jnp.float32)
    A_t = A.astype(acc_dtype).T
    h = jnp.zeros((b.shape[0], b.shape[2]), acc_dtype) if h0 is None else h0.astype(acc_dtype)

    def step(h, b_t):
        h = f(h @ A_t + b_t)
        return h, h

    _, x = lax.scan(step, h, jnp.swapaxes(b.astype(acc_dtype), 0, 1), reverse=reverse)
    return jnp.swapaxes(x, 0, 1).astype(out_dtype)
