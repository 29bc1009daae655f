"""Benchmark every ``linear_recurrence`` method against the memory-traffic bound (CPU).

For a time-invariant complex ``a`` (|a| ~ 0.99, random phases) and random complex ``b`` of
shape (batch, time, state), measures in one run:

* the machine's copy bandwidth: the fastest of many copies of warm complex64 arrays the size
  of ``b`` (bandwidth = 2 * nbytes / time), by ``np.copyto`` into a preallocated array (one
  core) and by a jitted ``x + 0`` (XLA, every core), measured before and after the methods
  and the highest figure kept (a copy of 32 MiB moves between ~22 and ~45 GB/s on the shared
  CPU machines; the best figure makes the bound the strictest);
* the memory-traffic bounds: forward = (read b + write x) = 2 arrays / bandwidth;
  forward + backward = those 2 plus the backward's 3 (read cotangent g, read x, write db)
  = 5 arrays / bandwidth;
* per method of ``lru.scan.METHODS``: the median wall time of the jitted forward and of the
  jitted forward + backward ``x, vjp = jax.vjp(f, a, b); vjp(g)``, and each one's ratio to
  its bound (1.0 would be a pure streaming kernel), in two settings: **kept** (``b`` and ``g``
  are arguments the caller keeps, so a method that writes over its input must copy it
  first) and **donated** (``b`` and ``g`` handed over with ``donate_argnums``, fresh copies
  made outside the timed call: the situation inside a layer, where ``b`` is the input
  projection's output and ``g`` the output projection's cotangent, both dead after the
  scan);
* the same for ``planar_recurrence`` on real ``[Re | Im]`` storage of the same bytes: on the
  CPU ``"planar_inplace"`` (the XLA loop) and ``"planar_native"`` (the compiled kernel of
  ``lru/kernels/native.py``, the path the LRU layer takes on CPU; left out where it cannot be
  built), on a GPU ``"planar_associative"`` (``auto``'s path there) and ``"planar_pallas"``
  (the chunked kernel of ``lru/kernels/pallas_scan.py``, on the real storage). ``b`` and ``g`` come
  in as ``(batch * time, 2 * state)`` arrays, the shape of the products that make them in a
  layer (the kernel writes over a buffer in place only when XLA sees it in the shape the
  handler takes: see ``native.planar_forward``);
* the same for the RG-LRU's case (``"input_dependent"`` in the JSON): a real float32 ``a``
  per step and channel, ``(batch, time, 2 * state)`` so that each array has the same bytes,
  with the same methods as the planar form (bounds: 3 arrays forward, 8 forward +
  backward);
* which method ``auto`` picks for the shape, for ``linear_recurrence`` (complex
  time-invariant ``a``) and for ``planar_recurrence``.

Prints a table and writes JSON (atomically) to ``--out``::

    python bench/scan.py [--batch 32 --time 1024 --state 128 --repeats 10
                          --out results/bench/scan.json]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lru.kernels import native
from lru.kernels.cpu_allocator import tune_cpu_allocator
from lru.training.runfiles import write_json
from lru.scan import METHODS, auto_method, linear_recurrence, planar_recurrence

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time every linear_recurrence method (forward, forward+backward) against "
        "the memory-traffic bound (the best of np.copyto and an XLA copy) measured in the same run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--time", type=int, default=1024, help="sequence length")
    p.add_argument("--state", type=int, default=128, help="state size n")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls after compilation")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--no-tune-allocator", action="store_true",
                   help="leave glibc's malloc as it is (to measure what lru.kernels.cpu_allocator buys)")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "results" / "bench" / "scan.json",
        help="where to write the JSON results",
    )
    return p.parse_args(argv)


def median_seconds(fn, repeats: int, warmup: int, setup=None) -> tuple[float, list[float]]:
    """Median wall time of ``fn(*setup())`` (``fn`` must block until its work is done);
    ``setup`` (default: no arguments) runs before the clock starts."""

    def once() -> float:
        args = setup() if setup is not None else ()
        t0 = time.perf_counter()
        fn(*args)
        return time.perf_counter() - t0

    for _ in range(warmup):
        once()
    samples = [once() for _ in range(repeats)]
    return statistics.median(samples), samples


def measure_bandwidth(shape, repeats: int) -> tuple[float, float]:
    """Copy bandwidth (bytes/s) on warm complex64 arrays of ``shape``, from the fastest of
    ``max(repeats, 30)`` copies of each kind: on an accelerator a jitted device-to-device
    copy (``x + 0`` into a fresh buffer); on the CPU the faster of that (which XLA runs on
    every core) and ``np.copyto`` (one core), so that kernels using every core are held to
    the strictest bound."""
    src = jnp.ones(shape, jnp.complex64)
    copy = jax.jit(lambda x: x + 0)
    jax.block_until_ready(copy(src))
    _, samples = median_seconds(lambda: jax.block_until_ready(copy(src)),
                                max(repeats, 30), warmup=3)
    if jax.default_backend() == "cpu":
        host_src = np.ones(shape, np.complex64)
        dst = np.zeros(shape, np.complex64)  # both written once: pages faulted in
        _, host = median_seconds(lambda: np.copyto(dst, host_src), max(repeats, 30), warmup=5)
        samples = samples + host
    t = min(samples)
    return 2 * src.nbytes / t, t


def timed_methods() -> tuple[str, ...]:
    """The methods worth timing on this backend: ``pallas`` only runs compiled on a GPU (on
    the CPU it runs in Pallas' interpreter, a correctness path, not a fast one)."""
    return tuple(m for m in METHODS if m != "pallas" or jax.default_backend() == "gpu")


def make_inputs(batch: int, length: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    mag = rng.uniform(0.985, 0.995, n)  # |a| ~ 0.99
    a = (mag * np.exp(1j * rng.uniform(-np.pi, np.pi, n))).astype(np.complex64)
    shape = (batch, length, n)
    b = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    g = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    return jnp.asarray(a), jnp.asarray(b), jnp.asarray(g)


def make_input_dependent(batch: int, length: int, width: int, seed: int):
    """The RG-LRU's case: real float32 ``a`` in [0.9, 0.999] per step and channel, ``b`` and a
    cotangent ``g``, all ``(batch, length, width)``."""
    rng = np.random.default_rng(seed + 1)
    shape = (batch, length, width)
    a = rng.uniform(0.9, 0.999, shape).astype(np.float32)
    b, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    return jnp.asarray(a), jnp.asarray(b), jnp.asarray(g)


def _fresh(args, donate: tuple[int, ...]) -> list:
    """``args`` with those in ``donate`` replaced by fresh device copies (a donated buffer is
    gone after the call), ready before the clock starts."""
    copy = jax.jit(lambda x: x + 0)
    return jax.block_until_ready([copy(x) if i in donate else x for i, x in enumerate(args)])


def _planar(z):
    """``[Re | Im]`` of ``z: (b, t, n)``, flattened to ``(b t, 2n)`` as a product makes it."""
    return jnp.concatenate([jnp.real(z), jnp.imag(z)], axis=-1).reshape(-1, 2 * z.shape[-1])


def planar_methods() -> list[str]:
    """The ``planar_recurrence`` (and RG-LRU) methods worth timing here: on the CPU the XLA
    loop and the compiled kernel (where it builds); on a GPU the log-depth scan ``auto``
    takes there and the chunked Pallas kernel (a loop would be one launch per step)."""
    if jax.default_backend() == "gpu":
        return ["associative", "pallas"]
    return ["inplace"] + (["native"] if native.available() else [])


def forms(methods, a, b, g) -> dict:
    """``name -> (f(a, b), b, g)``: each method of ``linear_recurrence`` on complex ``b``, and
    ``planar_<method>`` for :func:`planar_methods`, ``planar_recurrence`` on the same numbers
    as ``[Re | Im]`` halves."""
    out = {m: (lambda a, b, m=m: linear_recurrence(a, b, method=m), b, g) for m in methods}
    for m in planar_methods():
        out[f"planar_{m}"] = (
            lambda a, bp, m=m: planar_recurrence(
                a, bp.reshape(b.shape[:2] + (-1,)), method=m).reshape(bp.shape),
            _planar(b), _planar(g))
    return out


def bench_method(f, a, b, g, repeats: int, warmup: int) -> dict:
    def fwd_bwd(a, b, g):
        x, vjp = jax.vjp(f, a, b)
        return x, vjp(g)

    out = {}
    t0 = time.perf_counter()
    for setting, donate_fwd, donate_fb in (("", (), ()), ("donated_", (1,), (1, 2))):
        fwd = jax.jit(f, donate_argnums=donate_fwd)
        fb = jax.jit(fwd_bwd, donate_argnums=donate_fb)
        t_fwd, s_fwd = median_seconds(lambda *xs: jax.block_until_ready(fwd(*xs)), repeats,
                                      warmup, setup=lambda: _fresh((a, b), donate_fwd))
        t_fb, s_fb = median_seconds(lambda *xs: jax.block_until_ready(fb(*xs)), repeats,
                                    warmup, setup=lambda: _fresh((a, b, g), donate_fb))
        out.update({f"{setting}fwd_ms": 1e3 * t_fwd, f"{setting}fwd_bwd_ms": 1e3 * t_fb,
                    f"{setting}fwd_min_ms": 1e3 * min(s_fwd),
                    f"{setting}fwd_bwd_min_ms": 1e3 * min(s_fb)})
    out["compile_and_timing_s"] = time.perf_counter() - t0
    out["x"] = jax.jit(f)(a, b)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    allocator_tuned = False if args.no_tune_allocator else tune_cpu_allocator()
    shape = (args.batch, args.time, args.state)
    nbytes = int(np.prod(shape)) * np.dtype(np.complex64).itemsize

    bandwidth_before, _ = measure_bandwidth(shape, args.repeats)

    a, b, g = make_inputs(*shape, args.seed)
    auto = auto_method(*shape)
    planar_auto = "native" if native.runs_here() else auto  # what "auto" resolves to

    results, reference = {}, None
    methods = timed_methods()
    for name, (f, b_form, g_form) in forms(methods, a, b, g).items():
        results[name] = bench_method(f, a, b_form, g_form, args.repeats, args.warmup)
    # real input-dependent a (RG-LRU), width 2 * state: the same bytes per array
    a_r, b_r, g_r = make_input_dependent(args.batch, args.time, 2 * args.state, args.seed)
    dependent = {}
    for m in planar_methods():
        dependent[m] = bench_method(lambda a, b, m=m: linear_recurrence(a, b, method=m),
                                    a_r, b_r, g_r, args.repeats, args.warmup)
    bandwidth_after, _ = measure_bandwidth(shape, args.repeats)
    bandwidth = max(bandwidth_before, bandwidth_after)
    copy_s = 2 * nbytes / bandwidth
    bound_fwd = 2 * nbytes / bandwidth
    bound_fb = 5 * nbytes / bandwidth
    for method, r in results.items():
        x = np.asarray(r.pop("x"))
        if method.startswith("planar_"):
            x = (x[..., : args.state] + 1j * x[..., args.state:]).reshape(shape)
        if reference is None:
            reference = x
        # Sanity: every method computes the same recurrence.
        r["max_rel_diff_vs_" + methods[0]] = float(
            np.max(np.abs(x - reference)) / np.max(np.abs(reference))
        )
        for setting in ("", "donated_"):
            r[f"{setting}fwd_ratio"] = r[f"{setting}fwd_ms"] / (1e3 * bound_fwd)
            r[f"{setting}fwd_bwd_ratio"] = r[f"{setting}fwd_bwd_ms"] / (1e3 * bound_fb)

    # input-dependent bounds: fwd reads a, b and writes x (3 arrays); fwd+bwd adds the
    # adjoint's reads of a, x, g and writes of db, da (5 more)
    dep_ref = None
    for m, r in dependent.items():
        x = np.asarray(r.pop("x"))
        dep_ref = x if dep_ref is None else dep_ref
        r["max_rel_diff_vs_inplace"] = float(np.max(np.abs(x - dep_ref)) / np.max(np.abs(dep_ref)))
        for setting in ("", "donated_"):
            r[f"{setting}fwd_ratio"] = r[f"{setting}fwd_ms"] / (1e3 * 3 * nbytes / bandwidth)
            r[f"{setting}fwd_bwd_ratio"] = r[f"{setting}fwd_bwd_ms"] / (1e3 * 8 * nbytes / bandwidth)

    data = {
        "benchmark": "lru.scan.linear_recurrence",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "shape": {"batch": args.batch, "time": args.time, "state": args.state},
        "dtype": "complex64",
        "a": "time-invariant (state,), |a| in [0.985, 0.995], random phases",
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "allocator_tuned": allocator_tuned,
        "repeats": args.repeats,
        "array_bytes": nbytes,
        "bandwidth_GBps": bandwidth / 1e9,
        "bandwidth_before_after_GBps": [bandwidth_before / 1e9, bandwidth_after / 1e9],
        "copy_ms": 1e3 * copy_s,
        "bound_fwd_ms": 1e3 * bound_fwd,
        "bound_fwd_bwd_ms": 1e3 * bound_fb,
        "bound_note": "fwd: read b + write x (2 arrays); fwd+bwd: + read g, read x, write db "
        "(5 arrays); each / bandwidth",
        "settings_note": "fwd_* / fwd_bwd_*: b and g kept by the caller; donated_*: b and g "
        "donated (fresh copies made outside the timed call), as inside a layer",
        "auto_method": auto,
        "planar_auto_method": planar_auto,
        "methods": results,
        "input_dependent": {
            "case": f"real float32 a, b of ({args.batch}, {args.time}, {2 * args.state}), a in "
                    "[0.9, 0.999] (the RG-LRU's); bounds: fwd 3 arrays (read a, b, write x), "
                    "fwd+bwd 8 (+ read a, x, g, write db, da), each / bandwidth",
            "methods": dependent,
        },
    }
    write_json(args.out, data)

    print(
        f"linear_recurrence, {args.batch}x{args.time}x{args.state} complex64, "
        f"jax {jax.__version__} on {jax.default_backend()} ({os.cpu_count()} CPUs), "
        f"allocator tuned: {allocator_tuned}"
    )
    print(
        f"copy bandwidth {bandwidth / 1e9:.2f} GB/s ({nbytes / 2**20:.0f} MiB per array); "
        f"bound fwd {1e3 * bound_fwd:.2f} ms, fwd+bwd {1e3 * bound_fb:.2f} ms"
    )
    header = (f"{'method':<15} {'':>3}{'kept: fwd ms':>13} {'x bound':>8} {'fwd+bwd ms':>11} "
              f"{'x bound':>8} | {'donated: fwd':>12} {'x bound':>8} {'fwd+bwd':>8} {'x bound':>8}")
    print(header)
    print("-" * len(header))
    for method, r in results.items():
        mark = "  <- auto" if method in (auto, f"planar_{planar_auto}") else ""
        print(
            f"{method:<15} {'':>3}{r['fwd_ms']:>13.2f} {r['fwd_ratio']:>8.2f} "
            f"{r['fwd_bwd_ms']:>11.2f} {r['fwd_bwd_ratio']:>8.2f} | "
            f"{r['donated_fwd_ms']:>12.2f} {r['donated_fwd_ratio']:>8.2f} "
            f"{r['donated_fwd_bwd_ms']:>8.2f} {r['donated_fwd_bwd_ratio']:>8.2f}{mark}"
        )
    print(f"real input-dependent a (RG-LRU), {args.batch}x{args.time}x{2 * args.state} float32:")
    for method, r in dependent.items():
        print(
            f"{method:<15} {'':>3}{r['fwd_ms']:>13.2f} {r['fwd_ratio']:>8.2f} "
            f"{r['fwd_bwd_ms']:>11.2f} {r['fwd_bwd_ratio']:>8.2f} | "
            f"{r['donated_fwd_ms']:>12.2f} {r['donated_fwd_ratio']:>8.2f} "
            f"{r['donated_fwd_bwd_ms']:>8.2f} {r['donated_fwd_bwd_ratio']:>8.2f}"
        )
    print(f"auto: linear_recurrence -> {auto}, planar_recurrence -> {planar_auto}; wrote {os.path.relpath(args.out, Path.cwd())}")
    return data


if __name__ == "__main__":
    main()
