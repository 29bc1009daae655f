"""Benchmark every ``linear_recurrence`` method against the memory-traffic bound (CPU).

For a time-invariant complex ``a`` (|a| ~ 0.99, random phases) and random complex ``b`` of
shape (batch, time, state), measures in one run:

* the machine's copy bandwidth: median time of ``np.copyto(dst, src)`` on warm,
  preallocated complex64 arrays the size of ``b``; bandwidth = 2 * nbytes / time;
* the memory-traffic bounds: forward = (read b + write x) = 2 arrays / bandwidth;
  forward + backward = those 2 plus the backward's 3 (read cotangent g, read x, write db)
  = 5 arrays / bandwidth;
* per method of ``lru.scan.METHODS``: the median wall time of the jitted forward and of the
  jitted forward + backward ``x, vjp = jax.vjp(f, a, b); vjp(g)``, and each one's ratio to
  its bound (1.0 would be a pure streaming kernel);
* which method ``auto_method`` picks for the shape.

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

from lru.cpu_allocator import tune_cpu_allocator
from lru.runfiles import write_json
from lru.scan import METHODS, auto_method, linear_recurrence

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time every linear_recurrence method (forward, forward+backward) against "
        "the memory-traffic bound measured with np.copyto in the same run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--time", type=int, default=1024, help="sequence length")
    p.add_argument("--state", type=int, default=128, help="state size n")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls after compilation")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--no-tune-allocator", action="store_true",
                   help="leave glibc's malloc as it is (to measure what lru.cpu_allocator buys)")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "results" / "bench" / "scan.json",
        help="where to write the JSON results",
    )
    return p.parse_args(argv)


def median_seconds(fn, repeats: int, warmup: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` (which must block until its work is done)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def measure_bandwidth(shape, repeats: int) -> tuple[float, float]:
    """Copy bandwidth (bytes/s) on warm complex64 arrays of ``shape``: ``np.copyto`` on the
    CPU; on an accelerator, a jitted device-to-device copy (``x + 0`` into a fresh buffer)."""
    if jax.default_backend() != "cpu":
        src = jnp.ones(shape, jnp.complex64)
        copy = jax.jit(lambda x: x + 0)
        jax.block_until_ready(copy(src))
        t, _ = median_seconds(lambda: jax.block_until_ready(copy(src)), max(repeats, 20), warmup=3)
        return 2 * src.nbytes / t, t
    src = np.ones(shape, np.complex64)
    dst = np.zeros(shape, np.complex64)  # both written once: pages faulted in
    t, _ = median_seconds(lambda: np.copyto(dst, src), max(repeats, 20), warmup=3)
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


def bench_method(method: str, a, b, g, repeats: int, warmup: int) -> dict:
    f = lambda a, b: linear_recurrence(a, b, method=method)  # noqa: E731
    fwd = jax.jit(f)

    @jax.jit
    def fwd_bwd(a, b, g):
        x, vjp = jax.vjp(f, a, b)
        return x, vjp(g)

    t0 = time.perf_counter()
    x = jax.block_until_ready(fwd(a, b))
    jax.block_until_ready(fwd_bwd(a, b, g))
    compile_s = time.perf_counter() - t0
    t_fwd, s_fwd = median_seconds(lambda: jax.block_until_ready(fwd(a, b)), repeats, warmup)
    t_fb, s_fb = median_seconds(lambda: jax.block_until_ready(fwd_bwd(a, b, g)), repeats, warmup)
    return {
        "x": x,
        "fwd_ms": 1e3 * t_fwd,
        "fwd_bwd_ms": 1e3 * t_fb,
        "fwd_min_ms": 1e3 * min(s_fwd),
        "fwd_bwd_min_ms": 1e3 * min(s_fb),
        "compile_and_first_call_s": compile_s,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    allocator_tuned = False if args.no_tune_allocator else tune_cpu_allocator()
    shape = (args.batch, args.time, args.state)
    nbytes = int(np.prod(shape)) * np.dtype(np.complex64).itemsize

    bandwidth, copy_s = measure_bandwidth(shape, args.repeats)
    bound_fwd = 2 * nbytes / bandwidth
    bound_fb = 5 * nbytes / bandwidth

    a, b, g = make_inputs(*shape, args.seed)
    auto = auto_method(*shape)

    results, reference = {}, None
    methods = timed_methods()
    for method in methods:
        r = bench_method(method, a, b, g, args.repeats, args.warmup)
        x = np.asarray(r.pop("x"))
        if reference is None:
            reference = x
        # Sanity: every method computes the same recurrence.
        r["max_rel_diff_vs_" + methods[0]] = float(
            np.max(np.abs(x - reference)) / np.max(np.abs(reference))
        )
        r["fwd_ratio"] = r["fwd_ms"] / (1e3 * bound_fwd)
        r["fwd_bwd_ratio"] = r["fwd_bwd_ms"] / (1e3 * bound_fb)
        results[method] = r

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
        "copy_ms": 1e3 * copy_s,
        "bound_fwd_ms": 1e3 * bound_fwd,
        "bound_fwd_bwd_ms": 1e3 * bound_fb,
        "bound_note": "fwd: read b + write x (2 arrays); fwd+bwd: + read g, read x, write db "
        "(5 arrays); each / bandwidth",
        "auto_method": auto,
        "methods": results,
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
    header = f"{'method':<12} {'fwd ms':>9} {'x bound':>8} {'fwd+bwd ms':>11} {'x bound':>8}"
    print(header)
    print("-" * len(header))
    for method, r in results.items():
        mark = "  <- auto" if method == auto else ""
        print(
            f"{method:<12} {r['fwd_ms']:>9.2f} {r['fwd_ratio']:>8.2f} "
            f"{r['fwd_bwd_ms']:>11.2f} {r['fwd_bwd_ratio']:>8.2f}{mark}"
        )
    print(f"auto_method -> {auto}; wrote {os.path.relpath(args.out, Path.cwd())}")
    return data


if __name__ == "__main__":
    main()
