"""Where the time and the memory of the LRU training step go, by part of the model, at the LRA
paper's shapes (issue 8's profiles): ListOps (2000), sCIFAR (1024) and Path-X (16384).

For each task the ``+experiment=lru/<task>`` config is composed and stepped as
``bench/lra_steps.py`` does (the trainer's jitted step: forward, backward, AdamW; a
synthetic full-length batch), then:

* **time**: a few steps under ``jax.profiler``; every XLA operation's time is attributed to
  the part of the model that made it, read from the named scopes the library sets (``B``,
  ``recurrence``, ``C``, ``D`` inside the LRU/S5 layer; ``norm``, ``gelu``, ``glu`` in the
  residual block; ``encoder``, ``pool``, ``head``, ``loss``, ``optimizer``), forward and
  backward apart, and products (dots) apart from the rest. XLA:CPU runs the weight-gradient
  products asynchronously beside the next operations, so their cost lands partly on the
  operations they overlap (in every part's backward);
* **memory**: XLA's plan for the step (``compiled.memory_analysis()``: temporaries,
  arguments, outputs; exact, without running it) at the paper's batch size, and the
  forward results the backward reads (the activations kept across the step), by part, from
  the compiled HLO's top-level operations.

CPU-sized runs: ``--batch`` sets the batch that is *timed* (default: the paper's, or 8 for
Path-X, whose step at batch 32 plans ~40 GiB); memory is always planned at the paper's batch
too. Writes JSON (atomically) to ``--out``::

    python bench/profile_step.py [--tasks listops,image,pathx] [--steps 2]
                                 [--out results/bench/profile_step.json]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import glob
import gzip
import json
import platform
import re
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from lra_steps import compose, synthetic_batch, task_list  # noqa: E402

TASKS = ("listops", "image", "pathx")
#: The batch timed on this CPU where the paper's does not fit in memory.
CPU_BATCH = {"pathx": 8}
#: Scopes set in lru/layers/planar.py, lru/layers/lru.py, lru/blocks.py, lru/models.py and
#: lru/training/loop.py; the innermost one an operation sits in names its part ("mixer" is a
#: sequence layer's work outside the four labelled pieces).
PARTS = ("B", "recurrence", "C", "D", "mixer", "norm", "gelu", "glu", "encoder", "pool",
         "head", "loss", "optimizer")
_SHAPE = re.compile(r"(pred|s32|u32|f32|bf16|c64|f64|s8|u8)\[([\d,]*)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "f64": 8,
          "c64": 8}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Profile the LRU training step at the LRA paper's shapes: time and kept "
        "activations by part of the model (B, recurrence, C, norm, GLU, ...).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks from " +
                   ",".join(TASKS))
    p.add_argument("--batch", type=int, default=None,
                   help="timed batch (default: the paper's; Path-X: 8)")
    p.add_argument("--length", type=int, default=None, help="override the task's length")
    p.add_argument("--layers", type=int, default=None, help="override the number of layers")
    p.add_argument("--steps", type=int, default=2, help="profiled steps (after one warm-up)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "profile_step.json",
                   help="where to write the JSON results")
    args = p.parse_args(argv)
    args.tasks = task_list(p, args.tasks, TASKS)
    return args


def part_of(op_name: str) -> str:
    """The innermost known scope in an HLO ``op_name`` (``jit(step)/transpose(jvp(mixer/B))/
    dot_general`` -> ``B``), else ``other``."""
    scopes = [s for s in re.split(r"[/()]", op_name) if s in PARTS]
    return scopes[-1] if scopes else "other"


def nbytes(shape_text: str) -> int:
    """Bytes of every array in an HLO shape (tuples summed)."""
    return sum(_BYTES[t] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
               for t, dims in _SHAPE.findall(shape_text))


@dataclasses.dataclass
class Instruction:
    shape: str
    opcode: str
    operands: list[str]
    op_name: str
    calls: str | None


def entry_instructions(hlo: str) -> dict[str, Instruction]:
    """The top-level operations of the compiled module's entry computation, by name."""
    body = hlo[hlo.index("\nENTRY "):]
    body = body[:body.index("\n}\n")] if "\n}\n" in body else body
    out = {}
    for line in body.splitlines()[1:]:
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (.+?) ([\w\-]+)\((.*?)\)(?:, |$)", line)
        if not m:
            continue
        meta = re.search(r'op_name="([^"]*)"', line)
        calls = re.search(r"calls=%([\w.\-]+)", line)
        out[m.group(1)] = Instruction(m.group(2), m.group(3), re.findall(r"%([\w.\-]+)", m.group(4)),
                                      meta.group(1) if meta else "",
                                      calls.group(1) if calls else None)
    return out


def computation_op_names(hlo: str) -> dict[str, str]:
    """Each called computation's root op_name (for fusions whose own line has none)."""
    out = {}
    for m in re.finditer(r"\n%([\w.\-]+) \(.*?\n((?:.*\n)*?)\}", hlo):
        root = [ln for ln in m.group(2).splitlines() if ln.strip().startswith("ROOT")]
        meta = re.search(r'op_name="([^"]*)"', root[0]) if root else None
        if meta:
            out[m.group(1)] = meta.group(1)
    return out


def direction(op_name: str) -> str:
    if "optimizer" in op_name.split("/"):
        return "update"
    return "backward" if "transpose(" in op_name else "forward"


def kept_activations(instrs: dict[str, Instruction], names: dict[str, str]) -> dict[str, int]:
    """Bytes of forward results that backward operations read, by part (each array once)."""
    def op_name(i: Instruction) -> str:
        return i.op_name or names.get(i.calls or "", "")

    def buffer(o: str) -> str:
        """The array an operand reads: a bitcast is a view of its operand's buffer."""
        while o in instrs and instrs[o].opcode == "bitcast" and instrs[o].operands:
            o = instrs[o].operands[0]
        return o

    kept = collections.Counter()
    seen = set()
    for ins in instrs.values():
        if direction(op_name(ins)) != "backward":
            continue
        for o in map(buffer, ins.operands):
            src = instrs.get(o)
            if src is None or o in seen:
                continue
            name = op_name(src)
            if src.opcode == "get-tuple-element" and src.operands:
                name = name or op_name(instrs.get(src.operands[0], src))
            if not name or direction(name) != "forward" or src.opcode == "parameter":
                continue
            seen.add(o)
            kept[part_of(name)] += nbytes(src.shape)
    return dict(kept)


def profile_times(run_steps, hlo: str, instrs: dict[str, Instruction]) -> dict:
    """Milliseconds per step by (part, direction, products or other), from a profiler trace."""
    names = computation_op_names(hlo)
    is_dot = {n: ("dot(" in hlo[hlo.find(f"\n%{i.calls} "):][:2000].split("\n}")[0]
                  if i.calls else i.opcode == "dot") for n, i in instrs.items()}
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            steps = run_steps()
        trace = json.load(gzip.open(glob.glob(f"{tmp}/**/perfetto_trace.json.gz",
                                              recursive=True)[0]))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    table = collections.defaultdict(float)
    for e in events:
        ins = instrs.get(e.get("name", "")) if e.get("ph") == "X" else None
        if ins is None:
            continue
        name = ins.op_name or names.get(ins.calls or "", "")
        kind = "products" if is_dot[e["name"]] else "other"
        table[(part_of(name), direction(name), kind)] += e["dur"] / 1e3 / steps
    return {"/".join(k): v for k, v in sorted(table.items())}


def profile_task(task: str, args) -> dict:
    import tasks
    from lru.training.loop import start_training

    paper = compose(task, "auto", argparse.Namespace(batch=None, layers=args.layers))
    batch_size = args.batch or CPU_BATCH.get(task, paper.trainer.batch_size)
    cfg = compose(task, "auto", argparse.Namespace(batch=batch_size, layers=args.layers))
    reader = tasks.get_task(cfg.task.name)
    meta = reader.meta(tasks.resolve_options(cfg.task.name, **cfg.task.options))
    if args.length:
        meta = dataclasses.replace(meta, max_length=args.length)

    out = {"length": meta.max_length, "n_layers": cfg.model.n_layers,
           "d_model": cfg.model.d_model, "d_state": cfg.model.d_state,
           "bidirectional": cfg.model.bidirectional, "timed_batch": batch_size,
           "paper_batch": paper.trainer.batch_size, "memory_MiB": {}}
    for label, c in (("paper_batch", paper), ("timed_batch", cfg)):
        if label == "paper_batch" and paper.trainer.batch_size == batch_size:
            continue
        run = start_training(c, meta)
        lowered = run.step.lower(run.state, synthetic_batch(meta, c.trainer.batch_size), 0)
        ma = lowered.compile().memory_analysis()
        out["memory_MiB"][label] = {"temp": ma.temp_size_in_bytes / 2**20,
                                    "arguments": ma.argument_size_in_bytes / 2**20,
                                    "outputs": ma.output_size_in_bytes / 2**20}
    out["memory_MiB"].setdefault("paper_batch", out["memory_MiB"]["timed_batch"])

    run = start_training(cfg, meta)
    batch = synthetic_batch(meta, batch_size)
    step = run.step.lower(run.state, batch, 0).compile()  # the executable profiled
    hlo = step.as_text()
    instrs = entry_instructions(hlo)
    holder = {"state": step(run.state, batch, 0)[0]}  # warm-up

    def run_steps():
        s = holder["state"]
        for i in range(args.steps):
            s, metrics = step(s, batch, 1 + i)
            jax.block_until_ready(metrics)
        holder["state"] = s
        return args.steps

    out["ms_per_step"] = profile_times(run_steps, hlo, instrs)
    out["kept_MiB"] = {k: v / 2**20 for k, v in
                       kept_activations(instrs, computation_op_names(hlo)).items()}
    out["tokens_per_step"] = batch_size * meta.max_length * (2 if meta.dual else 1)
    return out


def summarise(r: dict) -> list[str]:
    """Printable lines: ms per step by part (forward, backward, of which products)."""
    parts = collections.defaultdict(lambda: collections.Counter())
    for key, ms in r["ms_per_step"].items():
        part, way, kind = key.split("/")
        parts[part][way] += ms
        if kind == "products":
            parts[part]["products"] += ms
    total = sum(sum(c[w] for w in ("forward", "backward", "update")) for c in parts.values())
    lines = [f"{'part':<11} {'fwd ms':>8} {'bwd ms':>8} {'update':>7} {'products':>9} "
             f"{'share':>6} {'kept MiB':>9}"]
    for part, c in sorted(parts.items(), key=lambda kv: -sum(kv[1].values())):
        own = c["forward"] + c["backward"] + c["update"]
        lines.append(f"{part:<11} {c['forward']:>8.1f} {c['backward']:>8.1f} {c['update']:>7.1f} "
                     f"{c['products']:>9.1f} {own / total:>6.1%} "
                     f"{r['kept_MiB'].get(part, 0.0):>9.1f}")
    lines.append(f"{'total':<11} {total:>8.1f} ms of operations per step")
    return lines


def main(argv=None) -> dict:
    from lru.kernels.cpu_allocator import tune_cpu_allocator
    from lru.training.runfiles import write_json

    args = parse_args(argv)
    tune_cpu_allocator()
    data = {"benchmark": "LRU training step by part at the LRA paper shapes",
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "jax_version": jax.__version__, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "python": platform.python_version(),
            "results": {}}
    for task in args.tasks:
        r = profile_task(task, args)
        data["results"][task] = r
        write_json(args.out, data)
        mem = r["memory_MiB"]
        print(f"\n{task}: batch {r['timed_batch']} (paper {r['paper_batch']}) x {r['length']}, "
              f"{r['n_layers']} layers, H {r['d_model']}, N {r['d_state']}"
              f"{', bidirectional' if r['bidirectional'] else ''}; planned temporaries "
              f"{mem['timed_batch']['temp']:.0f} MiB (paper batch: "
              f"{mem['paper_batch']['temp']:.0f} MiB)")
        print("\n".join(summarise(r)), flush=True)
    return data


if __name__ == "__main__":
    main()
