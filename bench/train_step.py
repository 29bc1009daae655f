"""Benchmark one training step of the LRU classifier: ours against the common per-example form,
and against the S4D and S5 classifiers run through the same harness path.

One step = forward, backward and the AdamW update (with the LRU paper's parameter groups), on
token inputs (vocabulary 16, 10 classes, every sequence full length) with the default model
config (``conf/model/lru.yaml``: pre-norm BatchNorm, full GLU, mean pooling), at batch 32 x
time 1024 x H 128 x N 128 x 4 layers by default. Up to four forms, measured in one run:

* **ours**: :func:`lru.training.loop.make_train_step` -- the jitted functional step the trainer runs,
  with the state donated, on the model :func:`lru.training.registry.build_model` builds (batched layers,
  ``scan_method: auto``: the in-place loop on CPU);
* **per-example**: the way public LRU code (e.g. the minimal-LRU repository) writes it -- a
  model of *one* sequence, where the LRU computes ``B_norm @ u_t`` with ``vmap`` over time,
  runs ``jax.lax.associative_scan`` with the affine binary operator over the
  ``(Lambda, B u)`` pairs and forms ``Re(C h_t) + D u_t`` with ``vmap`` again, then
  ``jax.vmap`` over the batch (BatchNorm reads batch statistics through the vmapped axis);
  the same optax AdamW groups, the whole step under ``jax.jit``. It lives here, as a baseline;
* **S4D** and **S5** (``baselines`` in the JSON): the config composed with ``model=s4d`` /
  ``model=s5`` (``conf/model/s4d.yaml``, ``conf/model/s5.yaml``: their layer options as conf/
  has them) with d_model, d_state and n_layers overridden to the benchmark's shape, built and
  stepped exactly as ours is (``build_model``, ``make_optimizer``, ``make_train_step``), so
  the only difference from ours is the sequence layer (``lru/layers/s4d.py``, ``s5.py``).
  ``--models`` picks which run (``lru``, the reference, always does).

The per-example model starts from the same parameters as ours, so the first step's loss and
gradient norm of both are reported side by side as a check that they compute one function.
Reported: median seconds per step (after compilation and warm-up; the forms' timed steps
alternate, one of each per round), the ratio of each form's median to ours, tokens/s.
Prints a table and writes JSON (atomically) to ``--out``::

    python bench/train_step.py [--batch 32 --time 1024 --d-model 128 --d-state 128
                                --layers 4 --repeats 5 --models lru,s4d,s5
                                --out results/bench/train_step.json]
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
import optax
from omegaconf import OmegaConf

from lru.kernels.cpu_allocator import tune_cpu_allocator
from lru.training.optim import BASE, RECURRENT, OptimizerSettings, learning_rate
from lru.training.runfiles import write_json

REPO = Path(__file__).resolve().parents[1]

VOCAB, CLASSES = 16, 10

#: Forms ``--models`` selects: the LRU (ours and per-example) and the baseline layers, each
#: composed as ``model=<name>`` (conf/model/<name>.yaml).
MODELS = ("lru", "s4d", "s5")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time one LRU classifier training step (forward, backward, AdamW): "
        "lru.training.loop.make_train_step against a per-example model with associative_scan, "
        "vmapped over the batch, in the same run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--time", type=int, default=1024, help="sequence length")
    p.add_argument("--d-model", type=int, default=128, help="model width H")
    p.add_argument("--d-state", type=int, default=128, help="LRU state size N")
    p.add_argument("--layers", type=int, default=4, help="residual blocks")
    p.add_argument("--norm", choices=("batch", "layer"), default=None,
                   help="normalisation (default: each conf/model/*.yaml's)")
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated forms to time, from " + ",".join(MODELS) + "; 'lru' "
                   "(ours and the per-example form, the reference of every ratio) always runs")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per form")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after compilation")
    p.add_argument("--seed", type=int, default=0, help="seed of parameters and batch")
    p.add_argument("--no-tune-allocator", action="store_true",
                   help="leave glibc's malloc as it is (see lru/kernels/cpu_allocator.py)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "train_step.json",
                   help="where to write the JSON results")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {','.join(MODELS)}")
    args.models = [m for m in MODELS if m == "lru" or m in models]
    return args


# --------------------------------------------------------------------------- ours


def compose_config(args, model: str = "lru"):
    """The app's config with ``model=<model>`` and the benchmark's sizes (model and optimizer
    as conf/ has them)."""
    from hydra import compose, initialize_config_dir

    from lru.training.config import register

    register()
    overrides = [f"model={model}"] if model != "lru" else []
    overrides += ["run_dir=unused", f"seed={args.seed}", f"model.d_model={args.d_model}",
                 f"model.d_state={args.d_state}", f"model.n_layers={args.layers}",
                 f"trainer.batch_size={args.batch}"]
    if args.norm:
        overrides.append(f"model.norm={args.norm}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def build_ours(cfg, time_len: int):
    """(step, state, model): the trainer's jitted step, its initial state, the model (of
    whichever layer ``cfg.model.layer`` names: the baselines are built the same way)."""
    import tasks
    from lru.training.loop import start_training

    meta = tasks.TaskMeta(name="listops", n_classes=CLASSES, max_length=time_len, vocab_size=VOCAB)
    run = start_training(cfg, meta)
    return run.step, run.state, run.model


# --------------------------------------------------------------------------- per-example


def _binary_operator(q_i, q_j):
    """Compose two affine maps h -> A h + b (element i before element j)."""
    a_i, b_i = q_i
    a_j, b_j = q_j
    return a_j * a_i, a_j * b_i + b_j


def lru_one_sequence(p, u):
    """The LRU on one sequence ``u: (t, d)`` in the per-example style -> ``(t, d)``."""
    lam = jnp.exp(-jnp.exp(p["nu_log"]) + 1j * jnp.exp(p["theta_log"]))
    b_norm = (p["B_re"] + 1j * p["B_im"]) * jnp.exp(p["gamma_log"])[:, None]
    c = p["C_re"] + 1j * p["C_im"]
    lam_elements = jnp.repeat(lam[None, :], u.shape[0], axis=0)
    bu_elements = jax.vmap(lambda u_t: b_norm @ u_t)(u)
    _, h = jax.lax.associative_scan(jax.vmap(_binary_operator), (lam_elements, bu_elements))
    return jax.vmap(lambda h_t, u_t: (c @ h_t).real + p["D"] * u_t)(h, u)


def norm_one_sequence(p, stats, x, kind: str, momentum: float = 0.9):
    """LayerNorm, or BatchNorm whose statistics span the vmapped ``"batch"`` axis (flax's
    epsilons and momentum)."""
    if kind == "layer":
        eps = 1e-6
        mean = x.mean(-1, keepdims=True)
        var = jnp.mean(jnp.square(x), -1, keepdims=True) - jnp.square(mean)
        return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"], stats
    eps = 1e-5
    mean = jax.lax.pmean(x.mean(0), "batch")
    var = jax.lax.pmean(jnp.square(x).mean(0), "batch") - jnp.square(mean)
    new_stats = {"mean": momentum * stats["mean"] + (1 - momentum) * mean,
                 "var": momentum * stats["var"] + (1 - momentum) * var}
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"], new_stats


def classifier_one_sequence(params, stats, tokens, norm: str):
    """Tokens ``(t,)`` -> logits ``(classes,)``: embed, pre-norm blocks, mean pool, head."""
    x = params["embed"][tokens]
    new_stats = []
    for layer, layer_stats in zip(params["layers"], stats):
        z, s = norm_one_sequence(layer["norm"], layer_stats, x, norm)
        new_stats.append(s)
        g = jax.nn.gelu(lru_one_sequence(layer["lru"], z))
        z = (g @ layer["W1"]["kernel"] + layer["W1"]["bias"]) * jax.nn.sigmoid(
            g @ layer["W2"]["kernel"] + layer["W2"]["bias"])
        x = x + z
    return x.mean(0) @ params["head"]["kernel"] + params["head"]["bias"], new_stats


def make_per_example_step(tx, norm: str):
    """``step(params, stats, opt_state, tokens, labels)``: the model vmapped over the batch."""
    batched = jax.vmap(lambda p, s, t: classifier_one_sequence(p, s, t, norm),
                       in_axes=(None, None, 0), out_axes=(0, None), axis_name="batch")

    def loss_fn(params, stats, tokens, labels):
        logits, new_stats = batched(params, stats, tokens)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, new_stats

    @jax.jit
    def step(params, stats, opt_state, tokens, labels):
        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, stats, tokens, labels)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_stats, opt_state,
                {"loss": loss, "grad_norm": optax.tree.norm(grads)})

    return step


def per_example_state(model, norm: str):
    """Our model's parameters (and BatchNorm statistics) in the per-example model's layout."""
    host = lambda v: jnp.array(np.asarray(v[...]))  # noqa: E731  (a copy: ours donates its own)
    lin = lambda m: {"kernel": host(m.kernel), "bias": host(m.bias)}  # noqa: E731
    layers, stats = [], []
    for block in model.backbone.blocks:
        mixer, inner = block.mixer, block.norm.norm
        layers.append({
            "norm": {"scale": host(inner.scale), "bias": host(inner.bias)},
            "lru": {k: host(getattr(mixer, k)) for k in
                    ("nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D")},
            "W1": lin(block.W1), "W2": lin(block.W2)})
        stats.append({"mean": host(inner.mean), "var": host(inner.var)} if norm == "batch" else {})
    params = {"embed": host(model.backbone.encoder.embed.embedding), "layers": layers,
              "head": lin(model.head)}
    return params, stats


def per_example_optimizer(params, s: OptimizerSettings):
    """The trainer's AdamW groups (lru.training.optim.make_optimizer) for the per-example layout."""
    recurrent = {"nu_log", "theta_log", "gamma_log", "B_re", "B_im"}
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: RECURRENT if getattr(path[-1], "key", None) in recurrent else BASE, params)
    base_lr = learning_rate(s)
    return optax.multi_transform({
        RECURRENT: optax.adam(lambda n: base_lr(n) * s.recurrent_lr_factor, b1=s.b1, b2=s.b2),
        BASE: optax.adamw(base_lr, b1=s.b1, b2=s.b2, weight_decay=s.weight_decay),
    }, labels)


# --------------------------------------------------------------------------- timing


def make_runner(step, state, batch):
    """``run() -> {"loss", "grad_norm"}``: one blocking step of a make_train_step form, the
    (donated) state carried along."""
    holder, step_no = [state], [0]

    def run():
        new_state, m = step(holder[0], batch, step_no[0])
        jax.block_until_ready((new_state, m))
        holder[0] = new_state
        step_no[0] += 1
        return {"loss": m["loss"], "grad_norm": m["grad_norm"]}

    return run


def time_forms(forms: dict, repeats: int, warmup: int) -> dict:
    """Compile (first call) and warm up each form, then time them in turns, ``repeats`` rounds,
    so that a change in the machine's load hits all alike. Each ``forms[name]()`` blocks."""
    results = {}
    for name, run_step in forms.items():
        t0 = time.perf_counter()
        first = run_step()
        results[name] = {"compile_and_first_step_s": time.perf_counter() - t0,
                         "first_step": {k: float(v) for k, v in first.items()}, "samples_s": []}
        for _ in range(warmup):
            run_step()
    for _ in range(repeats):
        for name, run_step in forms.items():
            t0 = time.perf_counter()
            run_step()
            results[name]["samples_s"].append(time.perf_counter() - t0)
    for r in results.values():
        r["step_s"] = statistics.median(r["samples_s"])
        r["step_min_s"] = min(r["samples_s"])
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_at_start = os.getloadavg()[0]
    allocator_tuned = False if args.no_tune_allocator else tune_cpu_allocator()
    cfg = compose_config(args)
    from lru.training.loop import optimizer_settings
    from lru.scan import auto_method

    rng = np.random.default_rng(args.seed)
    tokens = jnp.asarray(rng.integers(1, VOCAB, (args.batch, args.time)), jnp.int32)
    labels = jnp.asarray(rng.integers(0, CLASSES, (args.batch,)), jnp.int32)
    lengths = jnp.full((args.batch,), args.time, jnp.int32)
    batch = {"inputs": tokens, "lengths": lengths, "labels": labels}

    step, state, model = build_ours(cfg, args.time)
    n_params = int(sum(x.size for x in jax.tree.leaves(state[0])))
    pe_params, pe_stats = per_example_state(model, cfg.model.norm)  # before ours donates
    pe_tx = per_example_optimizer(pe_params, optimizer_settings(cfg))
    pe_step = make_per_example_step(pe_tx, cfg.model.norm)
    pe_state = [pe_params, pe_stats, pe_tx.init(pe_params)]
    del model

    run_ours = make_runner(step, state, batch)

    def run_per_example():
        p, s, o, m = pe_step(*pe_state, tokens, labels)
        jax.block_until_ready((p, s, o, m))
        pe_state[:] = [p, s, o]
        return m

    forms = {"ours": run_ours, "per_example": run_per_example}
    baseline_info = {}
    for name in args.models:
        if name == "lru":
            continue
        b_cfg = compose_config(args, name)
        b_step, b_state, b_model = build_ours(b_cfg, args.time)
        del b_model
        forms[name] = make_runner(b_step, b_state, batch)
        baseline_info[name] = {
            "form": f"lru.training.loop.make_train_step with model={name} (conf/model/{name}.yaml)",
            "layer": b_cfg.model.layer,
            "model": {k: b_cfg.model[k] for k in ("norm", "prenorm", "glu", "pooling")},
            "layer_options": OmegaConf.to_container(b_cfg.model.layer_options, resolve=True),
            "params": int(sum(x.size for x in jax.tree.leaves(b_state[0])))}

    timed = time_forms(forms, args.repeats, args.warmup)
    ours, per_example = timed["ours"], timed["per_example"]
    tokens_per_step = args.batch * args.time
    for r in timed.values():
        r["tokens_per_s"] = tokens_per_step / r["step_s"]
    ratio = per_example["step_s"] / ours["step_s"]
    baselines = {}
    for name, info in baseline_info.items():
        r = timed[name]
        rounds = [b / o for b, o in zip(r["samples_s"], ours["samples_s"])]
        baselines[name] = {**info, **r, "ratio_over_ours": r["step_s"] / ours["step_s"],
                           "ratio_per_round": rounds,
                           "ratio_median_of_rounds": statistics.median(rounds)}
    paired = [p / o for p, o in zip(per_example["samples_s"], ours["samples_s"])]
    check = {k: abs(ours["first_step"][k] - per_example["first_step"][k])
             / max(abs(ours["first_step"][k]), 1e-12) for k in ("loss", "grad_norm")}

    data = {
        "benchmark": "one training step of the LRU classifier (forward, backward, AdamW)",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "shape": {"batch": args.batch, "time": args.time, "d_model": args.d_model,
                  "d_state": args.d_state, "layers": args.layers, "vocab": VOCAB,
                  "classes": CLASSES},
        "model": {k: cfg.model[k] for k in ("norm", "prenorm", "glu", "pooling", "r_min",
                                            "r_max", "scan_method")},
        "auto_method": auto_method(args.batch, args.time, args.d_state),
        "params": n_params,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": load_at_start,  # others' work on a shared machine
        "python": platform.python_version(),
        "allocator_tuned": allocator_tuned,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "ours": {"form": "lru.training.loop.make_train_step (batched layers, donated state)", **ours},
        "per_example": {"form": "per-example model with jax.lax.associative_scan, "
                                "jax.vmap over the batch, jax.jit", **per_example},
        "ratio_per_example_over_ours": ratio,
        "ratio_per_round": paired,  # per-example / ours, each round's adjacent steps
        "ratio_median_of_rounds": statistics.median(paired),
        "first_step_rel_diff": check,
        # Other sequence layers through the same path as ours; ratio_over_ours = their s/step
        # over ours (> 1: slower than the LRU).
        "models": args.models,
        "baselines": baselines,
    }
    write_json(args.out, data)

    print(f"LRU classifier training step, batch {args.batch} x time {args.time} x H "
          f"{args.d_model} x N {args.d_state} x {args.layers} layers ({n_params:,} params), "
          f"{cfg.model.norm} norm; jax {jax.__version__} on {jax.default_backend()} "
          f"({os.cpu_count()} CPUs, load {load_at_start:.1f} at start), allocator tuned: "
          f"{allocator_tuned}")
    header = (f"{'form':<34} {'s/step':>8} {'min s':>8} {'tokens/s':>10} {'compile s':>10} "
              f"{'loss@0':>8}")
    header = header + f" {'/ ours':>7}"
    rows = [("ours (make_train_step, auto scan)", ours),
            ("per-example + vmap (assoc. scan)", per_example)]
    rows += [(f"{name.upper()} (make_train_step, {b['params']:,} p)", b)
             for name, b in baselines.items()]
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(f"{name:<34} {r['step_s']:>8.3f} {r['step_min_s']:>8.3f} {r['tokens_per_s']:>10,.0f} "
              f"{r['compile_and_first_step_s']:>10.1f} {r['first_step']['loss']:>8.4f} "
              f"{r['step_s'] / ours['step_s']:>6.2f}x")
    print(f"per-example / ours: {ratio:.2f}x (median of rounds {statistics.median(paired):.2f}x, "
          f"range {min(paired):.2f}-{max(paired):.2f}); first step's loss and gradient norm agree to "
          f"{max(check.values()):.1e} (relative); wrote {os.path.relpath(args.out, Path.cwd())}")
    return data


if __name__ == "__main__":
    main()
