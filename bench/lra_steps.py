"""Training steps per second of the LRU at the paper's LRA shapes, for comparison with the
LRU paper's Table 4 (steps/s on an A100).

For each task, the LRU experiment config (``+experiment=lru/<task>``: layers, H, N, batch
size, bidirectional, the task's full length) is composed, its model built with
:func:`lru.training.registry.build_model` and stepped with the trainer's own jitted step
(:func:`lru.training.loop.make_train_step`: forward, backward, AdamW, state donated) on a synthetic
batch at full length (random tokens or pixels; no data files needed). Per task and scan
method: compile time, median step time over ``--repeats`` steps after ``--warmup``,
steps/s, tokens/s and, on a GPU, peak device memory. The paper's figures, where
``results/reference/lru_speed.csv`` has them, are put beside ours with the ratio.
Results are written after every task (atomically) to ``--out``::

    python bench/lra_steps.py [--tasks image,listops,text,retrieval,pathfinder,pathx]
                              [--methods auto,associative,pallas] [--repeats 10]
                              [--out results/bench/lra_steps.json]

Shrink the shapes for a smoke test on a CPU with ``--batch``, ``--length``, ``--layers``.
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
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TASKS = ("image", "listops", "text", "retrieval", "pathfinder", "pathx")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Steps/s of the LRU training step at each LRA task's paper shape "
        "(conf/experiment/lru/<task>.yaml), per scan method, with the paper's Table 4 beside.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated LRA tasks")
    p.add_argument("--methods", default="auto", help="comma-separated model.scan_method values")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per task and method")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
    p.add_argument("--batch", type=int, default=None, help="override the paper's batch size")
    p.add_argument("--length", type=int, default=None, help="override the task's length")
    p.add_argument("--layers", type=int, default=None, help="override the number of layers")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="trainer.precision: bf16 = bfloat16 matmuls, float32 accumulation")
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "lra_steps.json",
                   help="where to write the JSON results")
    args = p.parse_args(argv)
    args.tasks = task_list(p, args.tasks, TASKS)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    return args


def task_list(parser: argparse.ArgumentParser, text: str, allowed) -> list[str]:
    """``--tasks``' comma-separated names, each checked against ``allowed`` (a parser error
    names the unknown ones and the choices)."""
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(allowed))
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; choose from {','.join(allowed)}")
    return tasks


def compose(task: str, method: str, args):
    """The composed ``+experiment=lru/<task>`` config with the benchmark's overrides."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from lru.training.config import register

    register()
    overrides = [f"+experiment=lru/{task}", "run_dir=unused", f"model.scan_method={method}"]
    if args.batch:
        overrides.append(f"trainer.batch_size={args.batch}")
    if args.layers:
        overrides.append(f"model.n_layers={args.layers}")
    if getattr(args, "precision", "fp32") != "fp32":
        overrides.append(f"trainer.precision={args.precision}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def synthetic_batch(meta, batch: int, seed: int = 0) -> dict:
    """A full-length batch of random tokens (or pixels) and labels for ``meta``'s task."""
    rng = np.random.default_rng(seed)
    t = meta.max_length

    def inputs():
        if meta.vocab_size:
            return rng.integers(1, meta.vocab_size, (batch, t), dtype=np.int32)
        # pixels as lru.training.batching.make_batch feeds them: float32 in [-1, 1]
        return rng.uniform(-1, 1, (batch, t, meta.channels)).astype(np.float32)

    out = {"inputs": inputs(), "lengths": np.full(batch, t, np.int32),
           "labels": rng.integers(0, meta.n_classes, batch, dtype=np.int32)}
    if meta.dual:
        out.update(inputs2=inputs(), lengths2=np.full(batch, t, np.int32))
    return out


def paper_steps_per_s() -> dict[str, float]:
    """The LRU's steps/s per task from the LRU paper's Table 4, where the reference CSV has it."""
    path = REPO / "results" / "reference" / "lru_speed.csv"
    if not path.exists():
        return {}
    import pandas as pd

    ref = pd.read_csv(path)
    rows = ref[(ref["model"] == "lru") & (ref["metric"] == "steps_per_s") & ref["value"].notna()]
    return {r.task: float(r.value) for r in rows.itertuples()}


def bench_task(task: str, method: str, args) -> dict:
    import tasks
    from lru.training.loop import start_training

    cfg = compose(task, method, args)
    reader = tasks.get_task(cfg.task.name)
    meta = reader.meta(tasks.resolve_options(cfg.task.name, **cfg.task.options))
    if args.length:
        meta = dataclasses.replace(meta, max_length=args.length)
    run = start_training(cfg, meta)
    step, state, params = run.step, run.state, run.state[0]
    batch = synthetic_batch(meta, cfg.trainer.batch_size)

    t0 = time.perf_counter()
    state, m = step(state, batch, 0)
    jax.block_until_ready((state, m))
    compile_s = time.perf_counter() - t0
    for i in range(args.warmup):
        state, m = step(state, batch, 1 + i)
    jax.block_until_ready((state, m))
    samples = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        state, m = step(state, batch, 1 + args.warmup + i)
        jax.block_until_ready((state, m))
        samples.append(time.perf_counter() - t0)
    step_s = statistics.median(samples)
    tokens = cfg.trainer.batch_size * meta.max_length * (2 if meta.dual else 1)
    out = {"method": method, "batch": cfg.trainer.batch_size, "length": meta.max_length,
           "n_layers": cfg.model.n_layers, "d_model": cfg.model.d_model,
           "d_state": cfg.model.d_state, "bidirectional": cfg.model.bidirectional,
           "params": int(sum(x.size for x in jax.tree.leaves(params))),
           "compile_and_first_step_s": compile_s, "step_s": step_s, "samples_s": samples,
           "steps_per_s": 1.0 / step_s, "tokens_per_s": tokens / step_s,
           "loss_finite": bool(np.isfinite(float(m["loss"])))}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_memory_GiB"] = stats["peak_bytes_in_use"] / 2**30
    return out


def main(argv=None) -> dict:
    from lru.training.runfiles import write_json

    args = parse_args(argv)
    paper = paper_steps_per_s()
    data = {"benchmark": "LRU training step (forward, backward, AdamW) at the LRA paper shapes",
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "jax_version": jax.__version__, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "python": platform.python_version(),
            "precision": args.precision, "paper": "LRU paper Table 4 (A100)", "results": {}}
    print(f"{'task':<11} {'method':<12} {'batch':>5} {'length':>6} {'step ms':>9} "
          f"{'steps/s':>8} {'paper':>6} {'ratio':>6} {'compile s':>9}")
    for task in args.tasks:
        for method in args.methods:
            try:
                r = bench_task(task, method, args)
            except Exception as e:  # one failing task must not lose the others' figures
                r = {"method": method, "error": f"{type(e).__name__}: {e}"}
            if task in paper and "steps_per_s" in r:
                r["paper_steps_per_s"] = paper[task]
                r["ratio_over_paper"] = r["steps_per_s"] / paper[task]
            data["results"].setdefault(task, {})[method] = r
            write_json(args.out, data)
            if "error" in r:
                print(f"{task:<11} {method:<12} failed: {r['error'][:200]}")
                continue
            print(f"{task:<11} {method:<12} {r['batch']:>5} {r['length']:>6} "
                  f"{1e3 * r['step_s']:>9.1f} {r['steps_per_s']:>8.2f} "
                  f"{r.get('paper_steps_per_s', float('nan')):>6.1f} "
                  f"{r.get('ratio_over_paper', float('nan')):>6.2f} "
                  f"{r['compile_and_first_step_s']:>9.1f}", flush=True)
    return data


if __name__ == "__main__":
    main()
