"""Memory and throughput of the LRU training step against sequence length (1k to 16k).

The Path-X configuration (``+experiment=lru/pathx``: bidirectional, H 128, N 256) at lengths
1024 ... 16384, per scan method. For each length: the step's buffer memory as XLA plans it
(``compiled.memory_analysis()``: temporaries, and arguments = the training state plus the
batch), which is exact and independent of machine load, and the median wall time of a few
steps, as tokens/s. A recurrence with an O(L) backward (``lru.scan``'s custom VJP stores only
the states) keeps the temporaries linear in L: the 16k step should need at most 17x the 1k
step's. Writes JSON (atomically) to ``--out``::

    python bench/length_scaling.py [--batch 4 --layers 2 --lengths 1024,2048,4096,8192,16384
                                    --methods inplace,associative --repeats 2]

The paper's Path-X batch is 32 with 6 layers; the defaults are smaller so that a CPU run
takes minutes (temporaries scale linearly in batch and layers too).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import statistics
import time
from pathlib import Path

import jax

from lra_steps import compose, synthetic_batch  # bench/ sibling: the same config and batches

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Planned memory (XLA) and tokens/s of the LRU Path-X training step "
        "against sequence length, per scan method.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="batch size (paper: 32)")
    p.add_argument("--layers", type=int, default=2, help="residual blocks (paper: 6)")
    p.add_argument("--lengths", default="1024,2048,4096,8192,16384",
                   help="comma-separated sequence lengths")
    p.add_argument("--methods", default="auto", help="comma-separated model.scan_method values")
    p.add_argument("--repeats", type=int, default=2, help="timed steps per length (0: memory only)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="trainer.precision: bf16 = bfloat16 matmuls, float32 accumulation")
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "length_scaling.json",
                   help="where to write the JSON results")
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    return args


def measure(cfg, meta, batch_size: int, repeats: int) -> dict:
    """Planned memory (MiB) of one compiled training step, and its median time."""
    from lru.training.loop import start_training

    run = start_training(cfg, meta)
    step, state = run.step, run.state
    batch = synthetic_batch(meta, batch_size)
    memory = step.lower(state, batch, 0).compile().memory_analysis()
    out = {"temp_MiB": memory.temp_size_in_bytes / 2**20,
           "argument_MiB": memory.argument_size_in_bytes / 2**20,
           "output_MiB": memory.output_size_in_bytes / 2**20}
    if repeats:
        state, m = step(state, batch, 0)
        jax.block_until_ready(m)
        samples = []
        for i in range(repeats):
            t0 = time.perf_counter()
            state, m = step(state, batch, 1 + i)
            jax.block_until_ready(m)
            samples.append(time.perf_counter() - t0)
        out.update(step_s=statistics.median(samples),
                   tokens_per_s=batch_size * meta.max_length / statistics.median(samples))
    return out


def main(argv=None) -> dict:
    import tasks
    from lru.kernels.cpu_allocator import tune_cpu_allocator
    from lru.training.runfiles import write_json

    args = parse_args(argv)
    tune_cpu_allocator()
    ns = argparse.Namespace(batch=args.batch, layers=args.layers, precision=args.precision)
    data = {"benchmark": "LRU Path-X training step against sequence length",
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "jax_version": jax.__version__, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "python": platform.python_version(),
            "batch": args.batch, "layers": args.layers, "precision": args.precision,
            "results": {}}
    print(f"{'method':<12} {'length':>6} {'temp MiB':>9} {'x 1st':>6} {'step s':>7} {'tokens/s':>9}")
    for method in args.methods:
        cfg = compose("pathx", method, ns)
        meta = tasks.get_task("pathx").meta(tasks.resolve_options("pathx"))
        rows = {}
        for length in args.lengths:
            r = measure(cfg, dataclasses.replace(meta, max_length=length), args.batch, args.repeats)
            first = next(iter(rows.values()), r)
            r["temp_ratio_to_first"] = r["temp_MiB"] / first["temp_MiB"]
            rows[str(length)] = r
            print(f"{method:<12} {length:>6} {r['temp_MiB']:>9.1f} {r['temp_ratio_to_first']:>6.2f} "
                  f"{r.get('step_s', float('nan')):>7.2f} {r.get('tokens_per_s', float('nan')):>9.0f}",
                  flush=True)
        data["results"][method] = rows
        write_json(args.out, data)
    return data


if __name__ == "__main__":
    main()
