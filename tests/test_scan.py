"""Tests for ``lru.scan`` against an independent reference: a plain Python loop over time.

The reference loops below take one Python step per time index using only ``jnp``
arithmetic and indexing, so autodiff through them gives the reference gradients (JAX's
complex convention included) that the shared custom VJP of
:func:`lru.scan.linear_recurrence` must reproduce.

Speed: XLA compiles one big module several times faster than many small ones, so the
cases of each group are computed together in a single ``jax.jit`` on first use
(:func:`batched`) and every parametrized test checks its own case. Shapes are small and
reused; seeds are fixed. The module runs on one pytest worker (``pytestmark``).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lru.kernels import pallas_scan
from lru.kernels.loops import DEFAULT_CHUNK, PLANAR_BLOCK, chunked
from lru.kernels.pallas_scan import pallas_recurrence
from lru.scan import (
    METHODS,
    ALL_METHODS,
    auto_method,
    dense_recurrence,
    linear_recurrence,
    planar_recurrence,
)

#: Every case on one pytest worker: the batched computations are shared within a process
#: (``functools.cache``), and split over two workers each would be compiled twice
#: (measured: 221 s of test time over two workers, 126 s in one).
pytestmark = pytest.mark.xdist_group("scan")

BATCH, TIME, N = 2, 37, 4  # TIME = 37: one full chunk of 32 plus a ragged tail of 5
assert TIME % DEFAULT_CHUNK != 0 and TIME > DEFAULT_CHUNK

# --------------------------------------------------------------------------- references


def _steps(time, reverse):
    """Time indices in processing order, as device scalars (a traced index compiles one
    step per shape, where a static ``b[:, t]`` would compile one per ``t``)."""
    order = range(time - 1, -1, -1) if reverse else range(time)
    return [jnp.int32(t) for t in order]


@jax.jit
def _linear_step(a, b, x, h, t):
    """One step of the reference loop: h = a_t * h + b_t, stored at x[:, t]."""
    h = a[:, t] * h + b[:, t]
    return x.at[:, t].set(h), h


def loop_recurrence(a, b, h0=None, reverse=False):
    """x_t = a_t * x_{t-1} + b_t (x_{t+1} when reverse), one Python step per time index.

    ``a`` is (n,) or rank 3 broadcastable to b; dtypes promote as jnp arithmetic does (so a
    bfloat16 input runs the loop in bfloat16).
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    batch, time, n = b.shape
    dtype = jnp.result_type(a, b, *([] if h0 is None else [h0]))
    h = jnp.zeros((batch, n), dtype) if h0 is None else jnp.asarray(h0)
    x = jnp.zeros((batch, time, n), dtype)
    # Every form of a, (n,) or anything broadcastable, becomes one a_t per step (autodiff
    # sums the broadcast back); one step signature per dtype then serves all of them.
    a = jnp.broadcast_to(a, b.shape)
    for t in _steps(time, reverse):
        x, h = _linear_step(a, b, x, h, t)
    return x


@functools.partial(jax.jit, static_argnums=0)
def _dense_step(activation, A, b, x, h, t):
    f = {None: lambda z: z, "relu": lambda z: jnp.maximum(z, 0.0), "tanh": jnp.tanh}[activation]
    h = f(h @ A.T + b[:, t])
    return x.at[:, t].set(h), h


def loop_dense(A, b, activation=None, h0=None, reverse=False):
    """x_t = f(A x_{t-1} + b_t), in row-vector form x_t = f(x_{t-1} @ A.T + b_t)."""
    batch, time, n = b.shape
    dtype = jnp.result_type(A, b)
    h = jnp.zeros((batch, n), dtype) if h0 is None else h0
    x = jnp.zeros((batch, time, n), dtype)
    for t in _steps(time, reverse):
        x, h = _dense_step(activation, A, b, x, h, t)
    return x


def project(x, w):
    """Real scalar loss sum(Re(x*w)) + sum(Im(x*w)); w is a fixed random weight."""
    y = x * w
    return jnp.sum(jnp.real(y)) + jnp.sum(jnp.imag(y))


def _values_and_grads(f, args, w):
    """``x = f(*args)`` and the gradients of ``project(x, w)`` w.r.t. every arg."""

    def loss(*args):
        x = f(*args)
        return project(x, w), x

    (_, x), grads = jax.value_and_grad(loss, argnums=tuple(range(len(args))), has_aux=True)(
        *args
    )
    return x, grads


def loop_values_and_grads(f, args, w):
    """The reference: eager autodiff through a Python loop."""
    return _values_and_grads(f, args, w)


def batched(cases):
    """``_values_and_grads`` of every ``(f, args, w)`` case, all in ONE jit compilation."""
    fs = [f for f, _, _ in cases]

    def run(argss, ws):
        return [_values_and_grads(f, args, w) for f, args, w in zip(fs, argss, ws)]

    return jax.jit(run)([args for _, args, _ in cases], [w for _, _, w in cases])


# --------------------------------------------------------------------------- inputs


def _normal(rng, shape, dtype):
    """Standard normal (unit variance per real component); numpy, so no JAX compilations."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        z = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    else:
        z = rng.standard_normal(shape)
    return jnp.asarray(z.astype(dtype))


def _decay(rng, shape, dtype):
    """|a| in [0.6, 0.97] (memory reaches across many steps); random phase if complex,
    some negative entries if real."""
    mag = rng.uniform(0.6, 0.97, shape)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        a = mag * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
    else:
        a = mag * np.where(rng.random(shape) < 0.8, 1.0, -1.0)
    return jnp.asarray(a.astype(dtype))


def make_inputs(seed, *, time=TIME, dtype=jnp.float32, a_shape="invariant", a_dtype=None):
    """a, b (BATCH, time, N), h0 (BATCH, N) and a cotangent weight w shaped like x."""
    rng = np.random.default_rng(seed)
    a_dtype = dtype if a_dtype is None else a_dtype
    shape_a = {"invariant": (N,), "varying": (BATCH, time, N)}.get(a_shape, a_shape)
    a = _decay(rng, shape_a, a_dtype)
    b = _normal(rng, (BATCH, time, N), dtype)
    h0 = _normal(rng, (BATCH, N), dtype)
    w = _normal(rng, (BATCH, time, N), jnp.result_type(a_dtype, dtype))
    return a, b, h0, w


def assert_close(got, ref, tol=2e-5, name=""):
    """|got - ref| <= tol * |ref| + tol * max(1, max|ref|): float32 accuracy at ref's scale."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale, err_msg=name)


def assert_all_close(got, ref, names=("x", "da", "db", "dh0")):
    (x, grads), (x_ref, grads_ref) = got, ref
    assert x.dtype == x_ref.dtype, f"x: dtype {x.dtype} != {x_ref.dtype}"
    assert_close(x, x_ref, name=names[0])
    assert len(grads) == len(grads_ref)
    for name, g, r in zip(names[1:], grads, grads_ref):
        assert g.dtype == r.dtype, f"{name}: dtype {g.dtype} != {r.dtype}"
        assert_close(g, r, name=name)


def _linear(method, reverse, with_h0=True):
    if with_h0:
        return lambda a, b, h0: linear_recurrence(a, b, h0=h0, reverse=reverse, method=method)
    return lambda a, b: linear_recurrence(a, b, reverse=reverse, method=method)


def _loop(reverse, with_h0=True):
    if with_h0:
        return lambda a, b, h0: loop_recurrence(a, b, h0, reverse)
    return lambda a, b: loop_recurrence(a, b, None, reverse)


# --------------------------------------------------------------------------- the main grid

CONFIGS = list(
    itertools.product(
        [jnp.float32, jnp.complex64],
        ["invariant", "varying"],
        [False, True],  # reverse
        [False, True],  # with h0
    )
)


def _config_id(dtype, a_shape, reverse, with_h0):
    return (
        f"{jnp.dtype(dtype).name}-{a_shape}-{'rev' if reverse else 'fwd'}-"
        f"{'h0' if with_h0 else 'noh0'}"
    )


@functools.cache
def grid_case(config):
    """Inputs and loop reference of one configuration (shared by every method)."""
    dtype, a_shape, reverse, with_h0 = config
    a, b, h0, w = make_inputs(0, dtype=dtype, a_shape=a_shape)
    args = (a, b, h0) if with_h0 else (a, b)
    return args, w, loop_values_and_grads(_loop(reverse, with_h0), args, w)


@functools.cache
def grid_results(method):
    cases = []
    for config in CONFIGS:
        args, w, _ = grid_case(config)
        cases.append((_linear(method, config[2], config[3]), args, w))
    return dict(zip(CONFIGS, batched(cases)))


@pytest.mark.parametrize("config", CONFIGS, ids=[_config_id(*c) for c in CONFIGS])
@pytest.mark.parametrize("method", METHODS)
def test_values_and_grads_match_loop(method, config):
    args, _, ref = grid_case(config)
    x, grads = grid_results(method)[config]
    assert x.dtype == jnp.dtype(config[0])
    assert [g.dtype for g in grads] == [arg.dtype for arg in args]
    assert_all_close((x, grads), ref)


NATIVE = [c for c in CONFIGS if c[0] == jnp.float32 and c[1] == "varying"]


@functools.cache
def native_results():
    cases = [(_linear("native", c[2], c[3]), *grid_case(c)[:2]) for c in NATIVE]
    return dict(zip(NATIVE, batched(cases)))


@pytest.mark.parametrize("config", NATIVE, ids=[_config_id(*c) for c in NATIVE])
def test_native_values_and_grads_match_loop(config):
    """The compiled kernel for a real input-dependent a (RG-LRU): states and the gradients
    of a, b and h0 as the loop gives them, both directions."""
    assert len(NATIVE) == 4
    args, _, ref = grid_case(config)
    x, grads = native_results()[config]
    assert x.dtype == jnp.float32
    assert_all_close((x, grads), ref)


@pytest.mark.parametrize("method", ["sequential", "inplace"])
def test_eager_matches_loop(method):
    """Without jit (every primitive dispatched on its own) the answer is the same."""
    config = (jnp.complex64, "varying", True, True)
    args, w, ref = grid_case(config)
    assert_all_close(_values_and_grads(_linear(method, True), args, w), ref)


def test_reference_is_sensitive():
    """Sanity: the tolerances catch small mistakes (h0 ignored, a conjugated decay, the
    wrong direction, one dropped step, conjugated gradients)."""
    (a, b, h0), w, (x_ref, g_ref) = grid_case((jnp.complex64, "varying", False, True))
    wrong = [
        loop_recurrence(a, b, None, False),
        loop_recurrence(jnp.conj(a), b, h0, False),
        loop_recurrence(a, b, h0, True),
        loop_recurrence(a, b.at[:, 20].set(0), h0, False),
    ]
    for x_bad in wrong:
        with pytest.raises(AssertionError):
            assert_close(x_bad, x_ref)
    for g in g_ref:
        with pytest.raises(AssertionError):
            assert_close(jnp.conj(g), g)


# --------------------------------------------------------------------------- mixed dtypes

MIXED = [
    (method, a_shape, reverse)
    for method in METHODS
    for a_shape, reverse in [("invariant", False), ("varying", True)]
]


@functools.cache
def mixed_results():
    """Real a with complex b and h0; complex a with real b and h0."""
    cases, refs = [], []
    for method, a_shape, reverse in MIXED:
        for a_dtype, dtype in [(jnp.float32, jnp.complex64), (jnp.complex64, jnp.float32)]:
            a, b, h0, w = make_inputs(3, dtype=dtype, a_dtype=a_dtype, a_shape=a_shape)
            cases.append((_linear(method, reverse), (a, b, h0), w))
            refs.append(loop_values_and_grads(_loop(reverse), (a, b, h0), w))
    return cases, refs, batched(cases)


@pytest.mark.parametrize("method,a_shape,reverse", MIXED)
@pytest.mark.parametrize("real", ["a", "b"])
def test_mixed_real_complex(method, a_shape, reverse, real):
    cases, refs, results = mixed_results()
    i = 2 * MIXED.index((method, a_shape, reverse)) + (real == "b")
    (a, b, h0), got, ref = cases[i][1], results[i], refs[i]
    x, (da, db, dh0) = got
    assert x.dtype == jnp.complex64
    if real == "a":
        assert a.dtype == jnp.float32 and b.dtype == jnp.complex64
        assert da.dtype == jnp.float32, "the gradient of a real a must be real"
    else:
        assert a.dtype == jnp.complex64 and b.dtype == jnp.float32
        assert db.dtype == dh0.dtype == jnp.float32, "gradients of real b, h0 must be real"
    assert da.shape == a.shape
    assert_all_close(got, ref)


# bfloat16: a near 1, b = 0.01, 512 steps. A bfloat16 running sum (8-bit significand) stalls
# once the state reaches a few units, long before the float32 answer (~4-5).
BF16_TIME = 512
BF16_CASES = [
    (method, a_value, reverse)
    for method in METHODS
    for a_value, reverse in [(1.0, False), (1.0 - 2.0**-8, True)]  # exact in bf16 (0.999 is not)
]


def _bf16_inputs(a_value):
    a = jnp.full((N,), a_value, jnp.bfloat16)
    b = jnp.full((BATCH, BF16_TIME, N), 0.01, jnp.bfloat16)
    w = jnp.full((BATCH, BF16_TIME, N), 0.01, jnp.float32)  # small cotangents: same for the VJP
    return a, b, w


@functools.cache
def bf16_reference(a_value, reverse):
    """Loop on the same bf16 numbers, accumulated in float32 (the truth) and in bfloat16
    (the failure the implementation must avoid); values and loop-autodiff gradients."""
    a, b, w = _bf16_inputs(a_value)
    f = lambda a, b: loop_recurrence(a, b, None, reverse).astype(jnp.float32)
    f32 = loop_values_and_grads(f, (a.astype(jnp.float32), b.astype(jnp.float32)), w)
    bf16 = loop_values_and_grads(f, (a, b), w)
    return f32, bf16


@functools.cache
def bf16_results():
    cases = []
    for method, a_value, reverse in BF16_CASES:
        a, b, w = _bf16_inputs(a_value)
        f = lambda a, b, m=method, r=reverse: linear_recurrence(a, b, reverse=r, method=m)
        cases.append((f, (a, b), w))
    return batched(cases)


def _f32(x):
    return np.asarray(jnp.asarray(x).astype(jnp.float32))


@pytest.mark.parametrize("method,a_value,reverse", BF16_CASES)
def test_bfloat16_accumulates_in_float32(method, a_value, reverse):
    (x_ref, g_ref), (x_bf, g_bf) = bf16_reference(a_value, reverse)
    # The case discriminates: bfloat16 accumulation ends >20% off, in x and in db.
    end = 0 if reverse else -1  # the last step processed
    err = np.abs(_f32(x_bf)[:, end] - _f32(x_ref)[:, end]).min()
    assert err > 0.2 * np.abs(_f32(x_ref)).max()
    start = -1 if reverse else 0  # db at the first step sums the cotangents of every step
    err = np.abs(_f32(g_bf[1])[:, start] - _f32(g_ref[1])[:, start]).min()
    assert err > 0.2 * np.abs(_f32(g_ref[1])).max()

    x, (da, db) = bf16_results()[BF16_CASES.index((method, a_value, reverse))]
    assert x.dtype == da.dtype == db.dtype == jnp.bfloat16
    # bf16 keeps 8 significant bits: rounding a float32 result costs <= 2**-8 relative
    # (2**-6 for da, a long sum whose bf16 inputs and output are each rounded).
    np.testing.assert_allclose(_f32(x), _f32(x_ref), rtol=2**-7, atol=1e-3)
    np.testing.assert_allclose(_f32(db), _f32(g_ref[1]), rtol=2**-7, atol=1e-3)
    np.testing.assert_allclose(_f32(da), _f32(g_ref[0]), rtol=2**-6)


# --------------------------------------------------------------------------- odd lengths

# TIME = 37 (one chunk + 5) in both directions is in the main grid; add T = 1, T < chunk,
# and two chunks plus a ragged tail.
ODD = list(
    itertools.product([1, 5, 2 * DEFAULT_CHUNK + 3], ["invariant", "varying"], [False, True])
)


@functools.cache
def odd_results():
    cases, refs = [], []
    for time, a_shape, reverse in ODD:
        a, b, h0, w = make_inputs(5, time=time, dtype=jnp.complex64, a_shape=a_shape)
        cases.append((_linear("chunked", reverse), (a, b, h0), w))
        refs.append(loop_values_and_grads(_loop(reverse), (a, b, h0), w))
    return refs, batched(cases)


@pytest.mark.parametrize("time,a_shape,reverse", ODD)
def test_chunked_odd_lengths(time, a_shape, reverse):
    refs, results = odd_results()
    i = ODD.index((time, a_shape, reverse))
    assert results[i][0].shape == (BATCH, time, N)
    assert_all_close(results[i], refs[i])


SMALL_CHUNKS = list(itertools.product([1, 4, 13, 64], ["invariant", "varying"], [False, True]))


@functools.cache
def small_chunk_results():
    inputs = [make_inputs(6, dtype=jnp.complex64, a_shape=s)[:3] for _, s, _ in SMALL_CHUNKS]

    def run(inputs):
        return [
            chunked(a, b, h0, r, chunk=c)
            for (c, _, r), (a, b, h0) in zip(SMALL_CHUNKS, inputs)
        ]

    return inputs, jax.jit(run)(inputs)


@pytest.mark.parametrize("chunk,a_shape,reverse", SMALL_CHUNKS)
def test_chunked_kernel_small_chunks(chunk, a_shape, reverse):
    """The chunk kernel itself with chunk 1, many ragged chunks, and a chunk longer than T."""
    inputs, results = small_chunk_results()
    i = SMALL_CHUNKS.index((chunk, a_shape, reverse))
    a, b, h0 = inputs[i]
    assert_close(results[i], loop_recurrence(a, b, h0, reverse), name=f"chunk={chunk}")


PALLAS_CHUNKS = list(itertools.product([jnp.float32, jnp.complex64], ["invariant", "varying"],
                                       [False, True]))


@pytest.mark.parametrize("dtype,a_shape,reverse", PALLAS_CHUNKS)
def test_pallas_chunks_and_carries_match_loop(dtype, a_shape, reverse):
    """The chunked Pallas kernel over many chunks: TIME = 37 in chunks of 8 (four full, one
    ragged, padded on the side processed last), a carry walk over 5 chunks (padded to the
    unroll of 4), N = 4 channels padded to a block of 32, from a nonzero h0."""
    a, b, h0, _ = make_inputs(16, dtype=dtype, a_shape=a_shape)
    x = pallas_recurrence(a, b, h0, reverse, chunk=8, unroll=4)
    assert x.shape == b.shape and x.dtype == b.dtype
    assert_close(x, loop_recurrence(a, b, h0, reverse), name=f"{a_shape} reverse={reverse}")


PALLAS_LOWERED = ["complex-invariant", "real-varying", "planar"]


@pytest.mark.parametrize("case", PALLAS_LOWERED)
def test_pallas_kernel_lowers_to_triton_for_a_gpu(case):
    """On any machine: the kernel's Pallas -> Triton lowering for a CUDA target (where an
    operation Triton lacks would fail), through ``jax.export``. A sequence of 300 steps in
    chunks of 64 takes three launches (summaries, carries, outputs); one chunk takes one."""
    from jax import export

    def triton_calls(fn, *args):
        exported = export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=[
            export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(*args)
        return exported.mlir_module().count("stablehlo.custom_call @__gpu$xla.gpu.triton")

    for time, launches in [(300, 3), (64, 1)]:
        b_shape = (2, time, 64 if case == "planar" else 32)
        if case == "planar":
            fn = functools.partial(pallas_scan.pallas_planar, reverse=True, interpret=False)
            args = (jnp.zeros(32), jnp.zeros(32), jnp.zeros(b_shape))
        else:
            dtype = jnp.complex64 if case.startswith("complex") else jnp.float32
            a = jnp.zeros(b_shape if case.endswith("varying") else (32,), dtype)
            fn = functools.partial(pallas_recurrence, reverse=False, interpret=False)
            args = (a, jnp.zeros(b_shape, dtype), jnp.zeros((2, 32), dtype))
        assert triton_calls(fn, *args) == launches, (case, time)


PALLAS_LONG = 150  # over two default chunks (64) and a ragged third


@functools.cache
def pallas_long_results():
    cases = []
    for a_shape, reverse in itertools.product(["invariant", "varying"], [False, True]):
        args = make_inputs(17, time=PALLAS_LONG, dtype=jnp.complex64, a_shape=a_shape)
        cases.append((_linear("pallas", reverse), args[:3], args[3]))
    for reverse in (False, True):
        a, bc, _, wc = make_inputs(18, time=PALLAS_LONG, dtype=jnp.complex64)
        f = lambda a, b, r=reverse: planar_recurrence(a, b, reverse=r, method="pallas")
        cases.append((f, (a, _to_planar(bc)), _to_planar(wc)))
    return batched(cases)


@pytest.mark.parametrize("case", range(6))
def test_pallas_default_chunks_values_and_grads(case):
    """With its default chunk and unroll, through the custom VJP (whose adjoint walks the
    chunks the other way): linear_recurrence with time-invariant and input-dependent a, and
    planar_recurrence on [Re | Im] storage, both directions, against the Python loop."""
    assert PALLAS_LONG > 2 * pallas_scan.CHUNK
    shapes = list(itertools.product(["invariant", "varying"], [False, True]))
    got = pallas_long_results()[case]
    if case < 4:
        a_shape, reverse = shapes[case]
        args = make_inputs(17, time=PALLAS_LONG, dtype=jnp.complex64, a_shape=a_shape)
        ref = loop_values_and_grads(_loop(reverse), args[:3], args[3])
        assert_all_close(got, ref)
    else:
        a, bc, _, wc = make_inputs(18, time=PALLAS_LONG, dtype=jnp.complex64)
        ref = loop_values_and_grads(_loop_planar(case == 5), (a, _to_planar(bc)),
                                    _to_planar(wc))
        assert_all_close(got, ref, names=("x", "da", "db"))


# --------------------------------------------------------------------------- auto


def test_auto_method_choice():
    for shape in [(1, 1, 1), (BATCH, TIME, N), (32, 1024, 128), (8, 16384, 256)]:
        assert auto_method(*shape) in METHODS
        for backend in ("cpu", "gpu", "tpu"):
            assert auto_method(*shape, backend=backend) in METHODS
        assert auto_method(*shape, backend="cpu") == "inplace"
    if jax.default_backend() == "cpu":
        assert auto_method(BATCH, TIME, N) == "inplace"


AUTO = [(jnp.complex64, s, r, True) for s in ("invariant", "varying") for r in (False, True)]


@functools.cache
def auto_results():
    return batched([(_linear("auto", c[2]), grid_case(c)[0], grid_case(c)[1]) for c in AUTO])


@pytest.mark.parametrize("config", AUTO, ids=[_config_id(*c) for c in AUTO])
def test_auto_matches_loop(config):
    assert_all_close(auto_results()[AUTO.index(config)], grid_case(config)[2])


# --------------------------------------------------------------------------- transformations


@pytest.mark.parametrize("method,a_shape", list(zip(METHODS, ["invariant", "varying"] * 2)))
def test_jit(method, a_shape):
    """jax.jit of the forward alone and of jax.grad alone."""
    config = (jnp.complex64, a_shape, True, True)
    (a, b, h0), w, (x_ref, g_ref) = grid_case(config)
    f = _linear(method, True)
    assert_close(jax.jit(f)(a, b, h0), x_ref, name="x")
    g = jax.jit(jax.grad(lambda *args: project(f(*args), w), argnums=(0, 1, 2)))(a, b, h0)
    for name, gg, rr in zip(("da", "db", "dh0"), g, g_ref):
        assert_close(gg, rr, name=name)


VMAP = list(itertools.product(METHODS, ["invariant", "varying"]))
LEAD = 3


@functools.cache
def vmap_results():
    """vmap over an extra leading axis: values and per-example gradients."""
    inputs = []
    for method, a_shape in VMAP:
        per = [make_inputs(10 + i, dtype=jnp.complex64, a_shape=a_shape) for i in range(LEAD)]
        inputs.append(tuple(jnp.stack(parts) for parts in zip(*per)))

    def run(inputs):
        out = []
        for (method, _), (a, b, h0, w) in zip(VMAP, inputs):
            f = _linear(method, False)
            grad_f = jax.grad(lambda a, b, h0, w: project(f(a, b, h0), w), argnums=(0, 1, 2))
            out.append((jax.vmap(f)(a, b, h0), jax.vmap(grad_f)(a, b, h0, w)))
        return out

    return inputs, jax.jit(run)(inputs)


@pytest.mark.parametrize("method,a_shape", VMAP)
def test_vmap(method, a_shape):
    inputs, results = vmap_results()
    i = VMAP.index((method, a_shape))
    (a, b, h0, w), (x, g) = inputs[i], results[i]
    assert x.shape == (LEAD, BATCH, TIME, N)
    assert [gg.shape for gg in g] == [a.shape, b.shape, h0.shape]
    for k in range(LEAD):
        ref = loop_values_and_grads(_loop(False), (a[k], b[k], h0[k]), w[k])
        assert_all_close((x[k], [gg[k] for gg in g]), ref)


BROADCAST_SHAPES = [(BATCH, TIME, 1), (1, TIME, N), (1, 1, N), (BATCH, 1, 1)]
# Every shape in both directions, each method twice (the broadcast happens before dispatch).
BROADCAST = [
    (METHODS[(i + r) % len(METHODS)], shape, bool(r))
    for r in (0, 1)
    for i, shape in enumerate(BROADCAST_SHAPES)
]


@functools.cache
def broadcast_results():
    cases, refs = [], []
    for method, a_shape, reverse in BROADCAST:
        a, b, h0, w = make_inputs(20, dtype=jnp.complex64, a_shape=a_shape)
        cases.append((_linear(method, reverse), (a, b, h0), w))
        refs.append(loop_values_and_grads(_loop(reverse), (a, b, h0), w))
    return refs, batched(cases)


@pytest.mark.parametrize("method,a_shape,reverse", BROADCAST)
def test_broadcasting_input_dependent_a(method, a_shape, reverse):
    refs, results = broadcast_results()
    i = BROADCAST.index((method, a_shape, reverse))
    x, g = results[i]
    assert x.shape == (BATCH, TIME, N)
    assert g[0].shape == a_shape
    assert_all_close(results[i], refs[i])


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_value_error():
    a, b, h0, _ = make_inputs(0)
    with pytest.raises(ValueError, match=r"b must be \(batch, time, n\); got shape \(37, 4\)"):
        linear_recurrence(a, b[0])
    with pytest.raises(ValueError, match=r"b must be \(batch, time, n\)"):
        linear_recurrence(a, b[None])
    with pytest.raises(ValueError, match=r"a of shape \(3,\) must have n=4 entries"):
        linear_recurrence(a[:3], b)
    with pytest.raises(ValueError, match=r"a must be \(n,\).*got shape \(37, 4\)"):
        linear_recurrence(jnp.ones((TIME, N)), b)
    with pytest.raises(ValueError, match=r"a must be \(n,\).*got shape \(\)"):
        linear_recurrence(jnp.float32(0.5), b)
    with pytest.raises(ValueError, match=r"a of shape \(2, 36, 4\) does not broadcast"):
        linear_recurrence(jnp.ones((BATCH, TIME - 1, N)), b)
    with pytest.raises(ValueError, match=r"h0 must be \(batch, n\) = \(2, 4\); got \(2, 3\)"):
        linear_recurrence(a, b, h0=h0[:, :3])
    with pytest.raises(ValueError, match=r"h0 must be \(batch, n\)"):
        linear_recurrence(a, b, h0=h0[0])
    with pytest.raises(ValueError, match=r"h0 must be \(batch, n\)"):
        linear_recurrence(a, b, h0=h0[:1])
    with pytest.raises(ValueError, match=r"method='blelloch' is not valid") as info:
        linear_recurrence(a, b, method="blelloch")
    for m in METHODS + ("auto",):
        assert repr(m) in str(info.value)


def test_bad_inputs_raise_under_jit():
    a, b, _, _ = make_inputs(0)
    with pytest.raises(ValueError, match="must have n=4 entries"):
        jax.jit(lambda a, b: linear_recurrence(a, b))(a[:3], b)


@pytest.mark.parametrize(
    "a_shape,b_shape",
    [((2, 37, 4), (1, 37, 4)), ((2, 37, 4), (2, 1, 4))],
    ids=["a(2,37,4)-b(1,37,4)", "a(2,37,4)-b(2,1,4)"],
)
def test_input_dependent_a_larger_than_b_is_named(a_shape, b_shape):
    """a must broadcast *to* b; one that is larger than b is rejected by the same check (and
    message) as any other non-broadcasting a, not by an anonymous error further down."""
    with pytest.raises(ValueError, match=r"linear_recurrence: input-dependent a of shape"):
        linear_recurrence(jnp.full(a_shape, 0.5), jnp.ones(b_shape))


# --------------------------------------------------------------------------- dense recurrence

DENSE = list(itertools.product([None, "relu", "tanh"], [False, True]))


def _dense_inputs():
    rng = np.random.default_rng(30)
    A = _normal(rng, (N, N), jnp.float32) * (0.9 / np.sqrt(N))
    shapes = [(BATCH, TIME, N), (BATCH, N), (BATCH, TIME, N)]
    b, h0, w = (_normal(rng, shape, jnp.float32) for shape in shapes)
    return A, b, h0, w


@functools.cache
def dense_results():
    A, b, h0, w = _dense_inputs()
    cases = []
    for activation, reverse in DENSE:
        f = lambda A, b, h0, act=activation, r=reverse: dense_recurrence(
            A, b, activation=act, h0=h0, reverse=r
        )
        cases.append((f, (A, b, h0), w))
        g = lambda A, b, act=activation, r=reverse: dense_recurrence(
            A, b, activation=act, reverse=r
        )
        cases.append((g, (A, b), w))
    return batched(cases)


@pytest.mark.parametrize(
    "activation,reverse", DENSE, ids=[f"{a}-{'rev' if r else 'fwd'}" for a, r in DENSE]
)
def test_dense_matches_loop(activation, reverse):
    A, b, h0, w = _dense_inputs()
    assert not np.allclose(A, A.T)  # so that x A vs A x would show
    i = DENSE.index((activation, reverse))
    with_h0, without_h0 = dense_results()[2 * i], dense_results()[2 * i + 1]
    f_ref = lambda A, b, h0: loop_dense(A, b, activation, h0, reverse)
    assert_all_close(
        with_h0, loop_values_and_grads(f_ref, (A, b, h0), w), names=("x", "dA", "db", "dh0")
    )
    x_ref = loop_dense(A, b, activation, None, reverse)  # no h0: zeros
    assert_close(without_h0[0], x_ref, name="x (no h0)")


def test_dense_transpose_convention():
    """x_t = A x_{t-1}: with the shift A[1, 0] = 1, state flows from component 0 to 1."""
    A = jnp.zeros((2, 2)).at[1, 0].set(1.0)
    b = jnp.zeros((1, 3, 2)).at[0, 0, 0].set(1.0)
    np.testing.assert_allclose(np.asarray(dense_recurrence(A, b)[0]), [[1, 0], [0, 1], [0, 0]])
    np.testing.assert_allclose(
        np.asarray(dense_recurrence(A, b[:, ::-1], reverse=True)[0]), [[0, 0], [0, 1], [1, 0]]
    )


def test_dense_bad_inputs_raise_value_error():
    A = jnp.eye(N)
    b = jnp.ones((BATCH, TIME, N))
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*'relu'.*'tanh'"):
        dense_recurrence(A, b, activation="gelu")
    with pytest.raises(ValueError, match=r"A must be \(n, n\)"):
        dense_recurrence(jnp.ones((N, N + 1)), b)
    with pytest.raises(ValueError, match=r"A must be \(n, n\)"):
        dense_recurrence(jnp.ones((N,)), b)
    with pytest.raises(ValueError, match=r"b \(batch, time, n\)"):
        dense_recurrence(A, b[0])
    with pytest.raises(ValueError, match=r"b \(batch, time, n\)"):
        dense_recurrence(jnp.eye(N + 1), b)


@pytest.mark.parametrize(
    "bad_h0_shape",
    [(BATCH, N + 1), (BATCH + 1, N), (N,), (1, N)],
    ids=lambda shape: "h0" + str(shape).replace(" ", ""),
)
def test_dense_bad_h0_raises_value_error(bad_h0_shape):
    """The docstring documents h0 as (batch, n); a wrongly shaped h0 must be rejected with a
    ValueError naming h0 (as linear_recurrence does), not fail deep inside lax.scan."""
    A = jnp.eye(N)
    b = jnp.ones((BATCH, TIME, N))
    with pytest.raises(ValueError, match="h0"):
        dense_recurrence(A, b, h0=jnp.ones(bad_h0_shape))


def test_bidirectional_recurrence_concatenates_both_directions():
    from lru.scan import bidirectional_recurrence

    key_a, key_b = jax.random.split(jax.random.key(7))
    a = 0.9 * jnp.exp(1j * jax.random.uniform(key_a, (N,))).astype(jnp.complex64)
    b = jax.random.normal(key_b, (BATCH, TIME, N)).astype(jnp.complex64)
    fwd, bwd = loop_recurrence(a, b, None, False), loop_recurrence(a, b, None, True)
    one = bidirectional_recurrence(a, b, bidirectional=False)
    both = bidirectional_recurrence(a, b, bidirectional=True)
    np.testing.assert_allclose(one, fwd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both, jnp.concatenate([fwd, bwd], -1), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- planar layout


def _to_planar(z):
    return jnp.concatenate([jnp.real(z), jnp.imag(z)], axis=-1)


def _loop_planar(reverse):
    """The reference for planar_recurrence: pack the halves, run the Python loop, unpack."""
    def f(a, b):
        n = a.shape[0]
        return _to_planar(loop_recurrence(a, jax.lax.complex(b[..., :n], b[..., n:]),
                                          reverse=reverse))
    return f


PLANAR = list(itertools.product(ALL_METHODS, [False, True]))


@functools.cache
def planar_results():
    cases = []
    for method, reverse in PLANAR:
        a, bc, _, wc = make_inputs(11, dtype=jnp.complex64)
        f = lambda a, b, m=method, r=reverse: planar_recurrence(a, b, reverse=r, method=m)
        cases.append((f, (a, _to_planar(bc)), _to_planar(wc)))
    return batched(cases)


@pytest.mark.parametrize("method,reverse", PLANAR)
def test_planar_values_and_grads_match_loop(method, reverse):
    """[Re | Im] storage: states, d(complex a) and d(b) as the complex Python loop gives them
    (the in-place method runs its own real kernel and adjoint; the others pack and unpack)."""
    a, bc, _, wc = make_inputs(11, dtype=jnp.complex64)
    b, w = _to_planar(bc), _to_planar(wc)
    ref = loop_values_and_grads(_loop_planar(reverse), (a, b), w)
    got = planar_results()[PLANAR.index((method, reverse))]
    assert got[0].shape == (BATCH, TIME, 2 * N) and got[0].dtype == jnp.float32
    assert_all_close(got, ref, names=("x", "da", "db"))


PLANAR_ODD = list(itertools.product(["inplace", "native"], [1, 3, 4, 5, 9], [False, True]))


@functools.cache
def planar_odd_results():
    cases = []
    for method, time, reverse in PLANAR_ODD:
        a, bc, _, wc = make_inputs(14, time=time, dtype=jnp.complex64)
        f = lambda a, b, m=method, r=reverse: planar_recurrence(a, b, reverse=r, method=m)
        cases.append((f, (a, _to_planar(bc)), _to_planar(wc)))
    return batched(cases)


@pytest.mark.parametrize("method,time,reverse", PLANAR_ODD)
def test_planar_inplace_blocks_and_leftover_steps(method, time, reverse):
    """The in-place planar loops walk blocks of PLANAR_BLOCK steps plus the leftover ones:
    shorter than a block, exactly one, one and a bit, two and a bit, either direction (and
    the native kernel, which has no blocks, the first and last steps at every length)."""
    assert PLANAR_BLOCK == 4  # the lengths above straddle it
    a, bc, _, wc = make_inputs(14, time=time, dtype=jnp.complex64)
    ref = loop_values_and_grads(_loop_planar(reverse), (a, _to_planar(bc)), _to_planar(wc))
    assert_all_close(planar_odd_results()[PLANAR_ODD.index((method, time, reverse))], ref,
                     names=("x", "da", "db"))


PLANAR_MASKED = list(itertools.product(ALL_METHODS, [False, True]))
LENGTHS = (TIME, 9)  # one full sequence, one padded after step 9


@functools.cache
def planar_masked_results():
    mask = jnp.arange(TIME)[None, :] < jnp.asarray(LENGTHS)[:, None]
    cases = []
    for method, reverse in PLANAR_MASKED:
        a, bc, _, wc = make_inputs(15, dtype=jnp.complex64)
        f = lambda a, b, m=method, r=reverse: planar_recurrence(a, b, mask=mask, reverse=r,
                                                                method=m)
        cases.append((f, (a, _to_planar(bc)), _to_planar(wc)))
    return batched(cases)


@pytest.mark.parametrize("method,reverse", PLANAR_MASKED)
def test_planar_mask_zeroes_padding_inputs_and_their_gradients(method, reverse):
    """``mask``: the states equal the loop's on inputs zeroed where the mask is False (so
    padding never reaches a state, even running right to left), and d(b) is zero there."""
    assert BATCH == len(LENGTHS)
    mask = jnp.arange(TIME)[None, :] < jnp.asarray(LENGTHS)[:, None]
    a, bc, _, wc = make_inputs(15, dtype=jnp.complex64)
    loop = _loop_planar(reverse)
    ref = loop_values_and_grads(lambda a, b: loop(a, jnp.where(mask[..., None], b, 0)),
                                (a, _to_planar(bc)), _to_planar(wc))
    got = planar_masked_results()[PLANAR_MASKED.index((method, reverse))]
    assert_all_close(got, ref, names=("x", "da", "db"))
    db = got[1][1]
    assert float(jnp.abs(db[1, LENGTHS[1]:]).max()) == 0.0
    assert float(jnp.abs(db[1, :LENGTHS[1]]).max()) > 0.0


def test_planar_halves_and_conjugation_matter():
    """The halves' order matters: reading [Im | Re] as [Re | Im] (or conjugating a) fails."""
    a, bc, _, _ = make_inputs(12, dtype=jnp.complex64)
    x = planar_recurrence(a, _to_planar(bc), method="inplace")
    ref = _to_planar(linear_recurrence(a, bc, method="sequential"))
    assert_close(x, ref)
    bad = _to_planar(linear_recurrence(jnp.conj(a), bc, method="sequential"))
    assert np.abs(np.asarray(x - bad)).max() > 1e-2


def test_planar_bfloat16_returns_bfloat16_and_accumulates_in_float32():
    a, bc, _, _ = make_inputs(13, dtype=jnp.complex64)
    b = _to_planar(bc).astype(jnp.bfloat16)
    x = planar_recurrence(a, b, method="inplace")
    assert x.dtype == jnp.bfloat16
    ref = planar_recurrence(a, b.astype(jnp.float32), method="sequential")
    np.testing.assert_allclose(np.asarray(x.astype(jnp.float32)), np.asarray(ref),
                               rtol=2**-7, atol=1e-2)


@pytest.mark.parametrize("a_shape,b_shape", [((N,), (BATCH, TIME, N)),
                                             ((N, 1), (BATCH, TIME, 2 * N)),
                                             ((N,), (TIME, 2 * N))])
def test_planar_bad_shapes_raise_value_error(a_shape, b_shape):
    a = jnp.full(a_shape, 0.5 + 0.1j, jnp.complex64)
    with pytest.raises(ValueError, match=r"planar_recurrence: a must be \(n,\) and b "
                                         r"\(batch, time, 2n\)"):
        planar_recurrence(a, jnp.zeros(b_shape))


def test_planar_rejects_complex_b_and_unknown_method():
    a = jnp.full((N,), 0.5 + 0.1j, jnp.complex64)
    with pytest.raises(ValueError, match="got a complex b"):
        planar_recurrence(a, jnp.zeros((BATCH, TIME, 2 * N), jnp.complex64))
    with pytest.raises(ValueError, match="method='fast' is not valid"):
        planar_recurrence(a, jnp.zeros((BATCH, TIME, 2 * N)), method="fast")
    with pytest.raises(ValueError, match=r"mask must be \(batch, time\)"):
        planar_recurrence(a, jnp.zeros((BATCH, TIME, 2 * N)), mask=jnp.ones((TIME,), bool))


@pytest.mark.parametrize("dtype,a_shape", [(jnp.complex64, "varying"),
                                           (jnp.float32, "invariant")])
def test_native_linear_recurrence_refuses_the_cases_it_does_not_run(dtype, a_shape):
    """linear_recurrence's native kernel is for a real float32 input-dependent a; the error
    for anything else names that and planar_recurrence."""
    a, b, _, _ = make_inputs(16, dtype=dtype, a_shape=a_shape)
    with pytest.raises(ValueError, match="'native' runs a real float32 input-dependent a.*"
                                         "planar_recurrence"):
        linear_recurrence(a, b, method="native")
