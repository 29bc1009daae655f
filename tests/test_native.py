"""The compiled CPU kernels (lru/kernels/native.py): their build cache, what happens where they
cannot be built, ``auto``'s choice, vmap, and the LRU layer on the planar scan kernel. The
scan kernels' values and gradients against the Python loop (both directions, masks, every
length) are in test_scan.py with the other methods; the GLU gate kernel's in test_glu.py."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.kernels import native
from lru.layers.lru import LRU
from lru.scan import planar_recurrence

B, T, N = 3, 21, 5


def _inputs(seed=0, batch=B):
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.uniform(0.8, 0.99, N) * np.exp(1j * rng.uniform(-np.pi, np.pi, N)),
                    jnp.complex64)
    b = jnp.asarray(rng.standard_normal((batch, T, 2 * N)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((batch, T, 2 * N)), jnp.float32)
    return a, b, w


@pytest.fixture
def fresh_load():
    """Forget the process's build/registration result before and after the test (after it,
    the next call loads the real kernel again, once monkeypatch has undone its changes)."""
    native._load.cache_clear()
    yield
    native._load.cache_clear()


def _uses_kernel(f, *args) -> bool:
    return "lru_planar_scan_forward" in str(jax.make_jaxpr(f)(*args))


def _one_source(monkeypatch, folder, text: str):
    """Make ``native._build`` compile one small file holding ``text`` instead of the kernels
    (whose compile takes seconds; every kernel test here loads the real library)."""
    source = folder / "source.cc"
    source.write_text(text)
    monkeypatch.setattr(native, "SOURCES", (source,))
    return source


def test_builds_here_and_reuses_the_cached_library(tmp_path, monkeypatch):
    """A fresh cache directory gets one library; building again finds it without compiling."""
    _one_source(monkeypatch, tmp_path, 'extern "C" int lru_test_symbol() { return 1; }\n')
    monkeypatch.setenv("LRU_NATIVE_CACHE", str(tmp_path / "cache"))
    built = native._build(native._compiler())
    libs = list((tmp_path / "cache").glob("lru_kernels-*.so"))
    assert libs == [built]
    assert len(libs) == 1
    stamp = libs[0].stat().st_mtime_ns
    monkeypatch.setattr(native.subprocess, "run", _no_compiles(native.subprocess.run))
    assert native._build(native._compiler()) == libs[0]
    assert libs[0].stat().st_mtime_ns == stamp


def _no_compiles(run):
    def guarded(cmd, *args, **kwargs):
        assert "-shared" not in cmd, "compiled although the library was cached"
        return run(cmd, *args, **kwargs)
    return guarded


def test_without_a_compiler_auto_falls_back_and_native_says_why(monkeypatch, fresh_load):
    def no_compiler():
        raise native.NativeUnavailable("no C++ compiler found (test)")

    monkeypatch.setattr(native, "_compiler", no_compiler)
    monkeypatch.setattr(native, "_registered", [])  # as in a process that never built it
    assert not native.available()
    a, b, _ = _inputs()
    auto = planar_recurrence(a, b)  # the XLA loop instead
    assert not _uses_kernel(lambda a, b: planar_recurrence(a, b), a, b)
    np.testing.assert_allclose(auto, planar_recurrence(a, b, method="sequential"),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(native.NativeUnavailable,
                       match="no C.. compiler found .test.*method='auto' or an XLA method"):
        planar_recurrence(a, b, method="native")


def test_a_failed_compile_reports_the_command_and_the_compiler_output(tmp_path, monkeypatch):
    broken = _one_source(monkeypatch, tmp_path, "this is not C++\n")
    monkeypatch.setenv("LRU_NATIVE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(native.NativeUnavailable, match="compiling .* failed") as info:
        native._build(native._compiler())
    assert str(broken) in str(info.value) and "error" in str(info.value)
    assert not list((tmp_path / "cache").glob("*.so"))  # no half-built library left behind


def test_switched_off_by_environment(monkeypatch, fresh_load):
    monkeypatch.setenv("LRU_NATIVE", "0")
    assert not native.available()
    with pytest.raises(native.NativeUnavailable, match="LRU_NATIVE=0"):
        native.require()


def test_auto_picks_the_kernel_on_cpu_for_float32_only():
    a, b, _ = _inputs()
    assert _uses_kernel(lambda a, b: planar_recurrence(a, b), a, b)
    with jax.enable_x64(True):
        b64 = b.astype(jnp.float64)
        assert not _uses_kernel(lambda a, b: planar_recurrence(a, b), a, b64)
        with pytest.raises(ValueError, match="'native' runs in float32"):
            planar_recurrence(a, b64, method="native")


def test_bfloat16_inputs_run_in_float32_and_come_back_bfloat16():
    a, b, _ = _inputs(1)
    x = planar_recurrence(a, b.astype(jnp.bfloat16), method="native")
    assert x.dtype == jnp.bfloat16
    ref = planar_recurrence(a, b.astype(jnp.bfloat16).astype(jnp.float32), method="sequential")
    np.testing.assert_allclose(np.asarray(x, np.float32), ref, rtol=2**-7, atol=2e-2)


@pytest.mark.parametrize("reverse", [False, True])
def test_vmap_over_decays_and_inputs_matches_one_call_each(reverse):
    """vmap hands the kernel a stack of decays (one group of rows each); values and the
    gradient of each decay equal separate calls."""
    a, b, w = _inputs(2)
    a_stack = jnp.stack([a, 0.9 * a, jnp.conj(a)])
    b_stack = jnp.stack([b, -b, 2 * b])
    mask = jnp.arange(T)[None, :] < jnp.asarray([T, 7, 1])[:, None]

    def loss(method):
        return lambda a, b: jnp.sum(planar_recurrence(a, b, mask=mask, reverse=reverse,
                                                      method=method) * w)

    got = jax.vmap(jax.value_and_grad(loss("native"), argnums=(0, 1)))(a_stack, b_stack)
    for i in range(3):
        val, (da, db) = jax.value_and_grad(loss("sequential"), argnums=(0, 1))(
            a_stack[i], b_stack[i])
        np.testing.assert_allclose(got[0][i], val, rtol=1e-5)
        np.testing.assert_allclose(got[1][0][i], da, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[1][1][i], db, rtol=1e-5, atol=1e-5)


def test_vmap_over_inputs_only_sums_the_decay_gradient_over_the_stack():
    a, b, w = _inputs(3)
    b_stack = jnp.stack([b, 0.5 * b])

    def loss(method):
        return lambda a, b: jnp.sum(jax.vmap(
            lambda b: planar_recurrence(a, b, method=method))(b) * w)

    got = jax.grad(loss("native"))(a, b_stack)
    ref = jax.grad(loss("sequential"))(a, b_stack)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_rows_split_over_threads_give_the_same_bits_as_one_row_at_a_time():
    """The rows run on several threads; each row's result (and the batch's d a, summed in
    row order) does not depend on which thread ran it."""
    a, b, w = _inputs(4, batch=16)
    f = jax.jit(jax.value_and_grad(
        lambda a, b: jnp.sum(planar_recurrence(a, b, method="native") * w), argnums=(0, 1)))
    first = f(a, b)
    for _ in range(3):
        again = f(a, b)
        for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
            np.testing.assert_array_equal(x, y)
    one = [jax.grad(lambda a, b: jnp.sum(planar_recurrence(a, b, method="native") * w[i]),
                    argnums=1)(a, b[i:i + 1]) for i in range(3)]
    np.testing.assert_array_equal(first[1][1][:3], jnp.concatenate(one))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lru_layer_on_the_kernel_equals_the_xla_loop(bidirectional):
    """The LRU layer (masked, one or both directions) gives the same outputs and parameter
    gradients with scan_method native as with inplace."""
    layer = LRU(6, N, bidirectional=bidirectional, rngs=nnx.Rngs(0))
    u = jnp.asarray(np.random.default_rng(5).standard_normal((B, T, 6)), jnp.float32)
    mask = jnp.arange(T)[None, :] < jnp.asarray([T, 11, 4])[:, None]
    graph, params = nnx.split(layer)

    def run(method):
        def loss(params):
            m = nnx.merge(graph, params)
            m.scan_method = method
            return jnp.sum(jnp.where(mask[..., None], m(u, mask), 0) ** 2)
        return jax.value_and_grad(loss)(params)

    (v1, g1), (v0, g0) = run("native"), run("inplace")
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    for x, y in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 0, 2 * N), (0, T, 2 * N)])
def test_empty_batch_or_time_gives_empty_states_and_zero_decay_gradient(shape):
    a, _, _ = _inputs()
    b = jnp.ones(shape)
    x, vjp = jax.vjp(lambda a, b: planar_recurrence(a, b, method="native"), a, b)
    da, db = vjp(jnp.ones(shape))
    assert x.shape == shape and db.shape == shape
    np.testing.assert_array_equal(da, np.zeros(N))


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LRU_NATIVE_CACHE", str(tmp_path / "here"))
    assert native.cache_dir() == tmp_path / "here"
    monkeypatch.delenv("LRU_NATIVE_CACHE")
    assert native.cache_dir() == (
        __import__("pathlib").Path(os.path.expanduser("~")) / ".cache" / "lru-harness" / "native")
