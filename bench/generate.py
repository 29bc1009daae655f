"""Decode memory and speed against generated length: Griffin, Hawk and an MQA Transformer (CPU).

Three language models of one small width (``lru.griffin.GriffinLM``, the same residual
blocks and MLPs, only the temporal blocks differ):

* ``griffin``: (recurrent, recurrent, attention) blocks, local attention window ``--window``;
* ``hawk``: recurrent blocks only;
* ``transformer``: multi-query attention blocks only (the MQA Transformer,
  :func:`lru.griffin.mqa_pattern`), with a full KV cache: its attention
  window is the whole sequence (prompt + generated tokens), so its cache holds every key and
  value, as a global-attention Transformer's does.

For each generated length (1k, 4k, 16k by default) and model, one run: a ``--prompt``-token
prompt is prefilled, then the tokens are decoded greedily one at a time in a jitted
``lax.scan`` (:meth:`GriffinLM.step`). Recorded per (model, length):

* ``cache_bytes``: the bytes of every cache array after the last step (the decode state that
  must live in memory between steps);
* ``step_temp_bytes``, ``step_argument_bytes``: XLA's memory analysis of one compiled decode
  step (its scratch buffers; its inputs: parameters, cache and token);
* ``tokens_per_s`` and ``ms_per_token``: the wall time of the decode loop after compilation
  (best of ``--repeats``), excluding the prefill.

Prints a table and writes JSON (atomically) to ``--out``::

    python bench/generate.py [--width 128 --layers 3 --window 512 --lengths 1024 4096 16384
                              --out results/bench/generate.json]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from lru.kernels.cpu_allocator import tune_cpu_allocator
from lru.griffin import (GriffinConfig, GriffinLM, count_params, griffin_pattern, hawk_pattern,
                         mqa_pattern)
from lru.training.runfiles import write_json

REPO = Path(__file__).resolve().parents[1]
MODELS = ("griffin", "hawk", "transformer")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=128, help="model width d (one head of 128)")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--window", type=int, default=512, help="Griffin's local attention window")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--prompt", type=int, default=16, help="prompt tokens before decoding")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "generate.json")
    return p.parse_args(argv)


def make_config(kind: str, args, total: int) -> GriffinConfig:
    pattern = {"griffin": griffin_pattern, "hawk": hawk_pattern,
               "transformer": mqa_pattern}[kind]
    return GriffinConfig(
        vocab_size=args.vocab, width=args.width, mlp_expanded_width=3 * args.width,
        num_heads=max(1, args.width // 128), block_types=pattern(args.layers),
        lru_width=args.width * 4 // 3 // 8 * 8 or args.width,
        attention_window_size=total if kind == "transformer" else args.window,
        embeddings_scale_by_sqrt_dim=True, logits_soft_cap=30.0)


def bench_one(kind: str, args, length: int) -> dict:
    config = make_config(kind, args, args.prompt + length)
    model = GriffinLM(config, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    prompt = jax.random.randint(jax.random.key(1), (args.batch, args.prompt), 0, args.vocab)

    @jax.jit
    def prefill(state, prompt):
        logits, caches = nnx.merge(graphdef, state).prefill(prompt)
        return jnp.argmax(logits[:, -1], -1).astype(jnp.int32), caches

    def one_step(state, token, pos, caches):
        logits, caches = nnx.merge(graphdef, state).step(token, pos, caches)
        return jnp.argmax(logits, -1).astype(jnp.int32), caches

    @jax.jit
    def decode(state, token, caches):
        def body(carry, _):
            token, pos, caches = carry
            token, caches = one_step(state, token, pos, caches)
            return (token, pos + 1, caches), token

        pos = jnp.full((args.batch,), args.prompt, jnp.int32)
        (_, _, caches), tokens = jax.lax.scan(body, (token, pos, caches), None, length=length)
        return tokens, caches

    token, caches = jax.block_until_ready(prefill(state, prompt))
    pos = jnp.full((args.batch,), args.prompt, jnp.int32)
    step_compiled = jax.jit(one_step).lower(state, token, pos, caches).compile()
    memory = step_compiled.memory_analysis()
    started = time.perf_counter()
    compiled = decode.lower(state, token, caches).compile()
    compile_s = time.perf_counter() - started
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        tokens, final = jax.block_until_ready(compiled(state, token, caches))
        times.append(time.perf_counter() - started)
    best = min(times)
    total_params, _ = count_params(config)
    return {
        "model": kind, "generated": length, "params": total_params,
        "cache_bytes": int(sum(x.nbytes for x in jax.tree.leaves(final))),
        "cache_bytes_after_prefill": int(sum(x.nbytes for x in jax.tree.leaves(caches))),
        "step_temp_bytes": int(memory.temp_size_in_bytes) if memory else None,
        "step_argument_bytes": int(memory.argument_size_in_bytes) if memory else None,
        "tokens_per_s": args.batch * length / best, "ms_per_token": 1e3 * best / length,
        "decode_s": times, "compile_s": compile_s,
        "attention_window": config.attention_window_size if "attention" in config.block_types
        else None,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    allocator_tuned = tune_cpu_allocator()
    rows = []
    for length in args.lengths:
        for kind in MODELS:
            row = bench_one(kind, args, length)
            rows.append(row)
            print(f"{kind:12s} {length:6d} tokens: cache {row['cache_bytes'] / 2**20:8.2f} MiB, "
                  f"step scratch {(row['step_temp_bytes'] or 0) / 2**20:7.2f} MiB, "
                  f"{row['tokens_per_s']:8.1f} tokens/s", flush=True)
    data = {
        "benchmark": "constant-memory generation (lru.griffin)",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "models": {kind: {k: v for k, v in vars(make_config(kind, args, 0)).items()
                          if k != "attention_window_size"} for kind in MODELS},
        "note": "transformer: attention_window = prompt + generated (a full KV cache); "
                "greedy decoding, wall time of the jitted decode loop after compilation",
        "jax_version": jax.__version__, "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "allocator_tuned": allocator_tuned, "results": rows,
    }
    write_json(args.out, data)
    print(f"wrote {args.out}")
    return data


if __name__ == "__main__":
    main()
