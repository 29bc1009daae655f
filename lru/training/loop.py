"""``train(cfg) -> summary``: the training loop, callable from tests and from the Hydra app.

One jitted, functional step: the model is split once into ``(graphdef, params, rest)``;
the step is a pure function of that state (donated), the batch and the step number, from
which the dropout RNG is folded, so a run is a pure function of ``(config, seed)`` and a
resumed run repeats an uninterrupted one exactly. A step whose loss or gradients are not
finite leaves the state untouched, and so does every step after it (the step's ``guard``
remembers the first bad one on the device); the loop reads the guard every
:func:`nonfinite_check_every` steps and stops the run there, naming the bad step, with the
state before it; the last good checkpoint stays. SIGTERM/SIGINT save a checkpoint and stop
cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import shutil
import signal
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import tasks
from lru.ladder import rung_of
from tasks.base import majority_rate
from lru.training.batching import TrainBatches, eval_batches
from lru.training.checkpoints import Checkpoints, restore_newest
from lru.training.config import upgrade, validate
from lru.training.optim import OptimizerSettings, ParamGroup, make_optimizer
from lru.training.runfiles import MetricsLog, write_atomic, write_json
from lru.training import what_ran
from lru.training.runlock import RunFolderLocked, RunLock
from lru.training.stop_signals import StopSignals
from lru.training.registry import LAYERS, build_model, check_given
from lru.training.scoring import batch_metrics, example_scores
from lru.training.task_rules import check_model_fits_task
from lru.training.sharding import (check_divisible, data_sharding, is_writer, replicate,
                                   shard_batch, sync_processes)

#: Free space a run folder's disk must have before a run starts (checkpoints of the
#: mini-suite's models take a few MiB; the LRU paper's largest, about 100 MiB for 4 kept).
MIN_FREE_BYTES = 256 * 2**20


class NonFiniteError(RuntimeError):
    """The loss or the gradients stopped being finite."""


# --------------------------------------------------------------------------- building


def load_data(cfg: DictConfig) -> dict[str, tasks.Split]:
    """The train/val/test splits of ``cfg.task``, generating offline data first if configured."""
    t = cfg.task
    data_dir = Path(t.data_dir).expanduser()
    options = OmegaConf.to_container(t.options, resolve=True)
    if t.generate is not None and is_writer():  # one process generates, the others wait
        try:
            tasks.get_task(t.name).sources(data_dir, "train", tasks.resolve_options(t.name, **options))
        except tasks.DataNotFoundError:
            import importlib

            module = importlib.import_module(f"tasks.generate.{t.generate.generator}")
            module.generate(data_dir, **OmegaConf.to_container(t.generate.args, resolve=True))
    sync_processes("data generated")
    cache = Path(t.cache_dir).expanduser() if t.cache_dir else None
    try:
        return {s: tasks.load(t.name, s, data_dir, cache_dir=cache, **options) for s in tasks.SPLITS}
    except tasks.DataNotFoundError as e:
        raise tasks.DataNotFoundError(
            e.expected, hint=f"check a data folder with: python -m tasks check {t.name} "
                             f"--data-dir {data_dir}") from None


def task_meta(cfg: DictConfig) -> tasks.TaskMeta:
    """``cfg.task``'s :class:`tasks.TaskMeta`, from its options alone (no data read)."""
    options = OmegaConf.to_container(cfg.task.options, resolve=True)
    return tasks.get_task(cfg.task.name).meta(tasks.resolve_options(cfg.task.name, **options))


def optimizer_settings(cfg: DictConfig) -> OptimizerSettings:
    """``cfg.optimizer``, ``cfg.schedule`` and ``cfg.trainer.steps`` as :class:`OptimizerSettings`."""
    o, s = cfg.optimizer, cfg.schedule
    groups = tuple(ParamGroup(str(name), tuple(g.params), lr_factor=g.lr_factor,
                              weight_decay=g.weight_decay) for name, g in o.groups.items())
    return OptimizerSettings(
        lr=o.lr, weight_decay=o.weight_decay, recurrent_lr_factor=o.recurrent_lr_factor,
        b1=o.b1, b2=o.b2, grad_clip=o.grad_clip, steps=cfg.trainer.steps,
        warmup_steps=int(round(s.warmup_fraction * cfg.trainer.steps)), schedule=s.name,
        end_lr_ratio=s.end_lr_ratio, groups=groups)


# --------------------------------------------------------------------------- steps


def _forward(model, batch, dual: bool):
    if dual:
        return model(batch["inputs"], batch["lengths"], batch["inputs2"], batch["lengths2"])
    return model(batch["inputs"], batch["lengths"])


@dataclasses.dataclass
class Training:
    """What a training run steps: the model, its optimizer and the functional pieces.

    Attributes:
      model: the model, in train mode (the source of ``graphdef``).
      graphdef: ``nnx.split(model, nnx.Param, ...)[0]``.
      state: ``(params, rest, opt_state)``, the initial training state.
      tx: the optax transformation (:func:`lru.training.optim.make_optimizer`).
      lr_fn: the base learning-rate schedule.
      step: :func:`make_train_step`'s jitted ``step(state, batch, step_no)``.
    """

    model: nnx.Module
    graphdef: Any
    state: tuple
    tx: optax.GradientTransformation
    lr_fn: optax.Schedule
    step: Any


def start_training(cfg: DictConfig, meta: tasks.TaskMeta) -> Training:
    """Build ``cfg``'s model for ``meta``'s task, its optimizer, initial state and step."""
    model = build_model(cfg, meta)
    tx, lr_fn = make_optimizer(model, optimizer_settings(cfg))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return Training(model, graphdef, (params, rest, tx.init(params)), tx, lr_fn,
                    make_train_step(graphdef, tx, dual=meta.dual, seed=cfg.seed))


def no_fault() -> dict[str, jax.Array]:
    """The ``guard`` of a run with no non-finite step yet (:func:`make_train_step`)."""
    return {"step": jnp.int32(-1), "loss": jnp.float32(0), "grad_norm": jnp.float32(0)}


def make_train_step(graphdef, tx, *, dual: bool, seed: int):
    """``step(state, batch, step_no, guard=None) -> (state, metrics)``, jitted, ``state``
    donated.

    The loss, ``metrics["accuracy"]`` and ``metrics["sequence_accuracy"]`` are
    :func:`lru.training.scoring.batch_metrics`'s (over scored positions for a per-token task).
    ``guard`` (:func:`no_fault` when None) records the first step whose loss or gradients
    were not finite: its number (``-1`` if none), loss and gradient norm. From that step on
    every step leaves ``state`` as it was, so a loop that reads the guard only now and then
    (:func:`nonfinite_check_every`) still stops with the state before the bad step. The
    new guard is ``metrics["guard"]``; ``metrics["ok"]`` says whether this step updated.
    """
    base_key = jax.random.key(seed)

    def loss_fn(params, rest, batch, key):
        model = nnx.merge(graphdef, params, rest, copy=True)
        nnx.reseed(model, dropout=key)
        logits = _forward(model, batch, dual)
        with jax.named_scope("loss"):  # named scopes label profiles (bench/profile_step.py)
            scores = batch_metrics(logits, batch["labels"])
        return scores["loss"], (nnx.split(model, nnx.Param, ...)[2], scores)

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step(state, batch, step_no, guard=None):
        guard = no_fault() if guard is None else guard
        params, rest, opt_state = state
        key = jax.random.fold_in(base_key, step_no)
        (loss, (new_rest, scores)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, rest, batch, key)
        with jax.named_scope("optimizer"):
            grad_norm = optax.tree.norm(grads)
            finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
            first = (guard["step"] < 0) & ~finite
            guard = {"step": jnp.where(first, jnp.int32(step_no), guard["step"]),
                     "loss": jnp.where(first, loss, guard["loss"]),
                     "grad_norm": jnp.where(first, grad_norm, guard["grad_norm"])}
            ok = guard["step"] < 0
            updates, new_opt = tx.update(grads, opt_state, params)
            new_state = (optax.apply_updates(params, updates), new_rest, new_opt)
            # From a non-finite step on, the state stays as it was: the run stops cleanly.
            state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
        return state, {"loss": loss, "accuracy": scores["accuracy"],
                       "sequence_accuracy": scores["sequence_accuracy"], "grad_norm": grad_norm,
                       "ok": ok, "guard": guard}

    return step


def make_eval_step(graphdef, *, dual: bool):
    """``eval_step(params, rest, batch) -> {name: sum}``: the batch's
    :func:`lru.training.scoring.example_scores`, each summed over examples weighted by
    ``batch["weights"]`` (0 for an evaluation batch's padding copies)."""

    @jax.jit
    def eval_step(params, rest, batch):
        logits = _forward(nnx.merge(graphdef, params, rest), batch, dual)
        scores = example_scores(logits, batch["labels"])
        return {name: jnp.sum(value * batch["weights"]) for name, value in scores.items()}

    return eval_step


def evaluate(eval_step, params, rest, split: tasks.Split, batch_size: int,
             sharding=None) -> dict[str, float]:
    """``split``'s loss (mean over scored positions) and accuracy (fraction of scored
    positions right); for a per-token task also its ``sequence_accuracy`` (fraction of
    examples with every scored position right) (:mod:`lru.training.scoring`)."""
    totals: dict[str, float] = {}
    for batch in eval_batches(split, batch_size):
        if sharding is not None:
            batch = shard_batch(batch, sharding)
        for name, value in eval_step(params, rest, batch).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    scored = max(totals["scored"], 1.0)
    result = {"loss": totals["loss"] / scored, "accuracy": totals["correct"] / scored}
    if split.meta.per_token:
        result["sequence_accuracy"] = totals["all_correct"] / len(split)
    return result


# --------------------------------------------------------------------------- the loop


def nonfinite_check_every(cfg: DictConfig) -> int:
    """How often (in steps) the loop reads the step's non-finite guard from the device.

    Every step on the CPU, where the host waits for each step anyway (inline dispatch,
    :mod:`lru.kernels.cpu_allocator`); every ``trainer.log_every`` steps on accelerators,
    where reading it each step would make the host wait for the device and stop the two
    from overlapping. The guard keeps the state before the first bad step either way.
    """
    return 1 if jax.default_backend() == "cpu" else cfg.trainer.log_every


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train ``cfg`` (a composed ``conf/config.yaml``) and return its summary.

    Writes ``config.yaml``, ``metrics.jsonl``, ``summary.json`` and ``checkpoints/`` into
    ``cfg.run_dir``, holding the folder's lock (:class:`lru.training.runlock.RunLock`) throughout;
    in a multi-process run only process 0 writes run files. Never raises for a failed run:
    the summary's ``status`` is ``"finished"``, ``"preempted"``, ``"failed"`` (with
    ``reason``), or ``"locked"`` (another process owns the folder; nothing in it is
    touched and no summary is written).

    With ``trainer.resume`` (the default), a run folder that already holds a finished run of
    the same config (:func:`finished_summary`) is not trained again: its summary is returned
    and its files are left as they are, with or without checkpoints (committed run folders
    keep none), so rerunning a sweep skips its finished jobs. Otherwise training resumes
    from the newest checkpoint that restores (:func:`lru.training.checkpoints.restore_newest`).

    Args:
      cfg: the composed config.
      overrides: the job's overrides as Hydra gives them (``["ablation=exp",
        "model.r_min=0.5"]``), recorded in the summary; a key among them that the chosen
        model or rung would ignore fails the run (:func:`check_given`).
    """
    run_dir = Path(cfg.run_dir)
    summary: dict[str, Any] = {
        "task": cfg.task.name, "model": cfg.model.layer,
        "rung": rung_of(cfg.model.layer, cfg.ablation.rung),
        "seed": cfg.seed, "run_dir": str(run_dir), "overrides": list(overrides),
        "status": "running"}
    with contextlib.ExitStack() as owned:
        try:
            if is_writer():  # the other processes of a multi-process run write no run files
                owned.enter_context(RunLock(run_dir))
        except RunFolderLocked as e:
            print(f"run refused: {e}")
            return {**summary, "status": "locked", "reason": str(e)}
        except OSError as e:  # nothing can be written there, not even a summary
            print(f"run failed: {e}")
            return {**summary, "status": "failed", "reason": f"OSError: {e}"}
        return _train_owned(cfg, run_dir, summary, overrides)


def _train_owned(cfg: DictConfig, run_dir: Path, summary: dict, overrides: Sequence[str]) -> dict:
    """:func:`train` once the folder's lock is held."""
    done = finished_summary(cfg)
    if done is not None:
        print(f"{run_dir}: already finished with this config (test accuracy "
              f"{done.get('test_accuracy')}); trainer.resume=false trains it again")
        return done
    started = time.time()
    try:
        check_free_space(run_dir)
        if is_writer():
            write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        validate(cfg, LAYERS)
        check_given(cfg, overrides)
        check_model_fits_task(cfg, task_meta(cfg))
        summary.update(_train(cfg, run_dir, summary))
    except Exception as e:  # the run fails visibly, in its summary
        summary.update(status="failed", reason=f"{type(e).__name__}: {e}")
        summary["traceback"] = traceback.format_exc(limit=8)
    summary["wall_time_s"] = round(time.time() - started, 2)
    if is_writer():
        write_json(run_dir / "summary.json", summary)
    if summary["status"] == "failed":
        print(f"run failed: {summary['reason']}")
    return summary


def check_free_space(run_dir: Path) -> None:
    """Refuse to start on a disk with less than :data:`MIN_FREE_BYTES` free.

    Raises:
      OSError: naming the folder, the free space and the floor.
    """
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise OSError(f"the disk of run_dir {run_dir} has {free / 2**20:.0f} MiB free, under "
                      f"the {MIN_FREE_BYTES / 2**20:.0f} MiB a run needs for its checkpoints; "
                      f"free space or choose another run_dir=")


def finished_summary(cfg: DictConfig) -> dict[str, Any] | None:
    """The summary in ``cfg.run_dir`` if it records a finished run of this very config
    (``config.yaml``, brought up to the current schema by :func:`lru.training.config.upgrade`, equal
    to ``cfg`` in every key but ``run_dir``, which moves with the folder, and
    ``distributed``, which changes how the run is spread, not its result) and
    ``cfg.trainer.resume`` is on; else None."""
    run_dir = Path(cfg.run_dir)
    if not cfg.trainer.resume or not (run_dir / "summary.json").is_file() \
            or not (run_dir / "config.yaml").is_file():
        return None
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        written = OmegaConf.to_container(upgrade(OmegaConf.load(run_dir / "config.yaml")),
                                         resolve=True)
    except Exception:  # an unreadable file is no finished run: train as usual
        return None
    if not isinstance(summary, dict) or summary.get("status") != "finished":
        return None
    current = OmegaConf.to_container(cfg, resolve=True)
    for config in (written, current):  # where the run lives and how many processes ran it
        config.pop("run_dir", None)
        config.pop("distributed", None)
    return summary if written == current else None


def _check_finite(guard: dict, step: int, check_every: int, run_dir: Path,
                  summary: dict) -> None:
    """Record in ``summary["steps"]`` the steps done through ``step``; raise a
    :class:`NonFiniteError` naming the first non-finite step the guard recorded (the state
    is the one before it, and ``steps`` counts the steps before it)."""
    bad = int(guard["step"])
    summary["steps"] = step + 1 if bad < 0 else bad
    if bad < 0:
        return
    read = f"; found at step {step} (checked every {check_every} steps)" if bad != step else ""
    raise NonFiniteError(
        f"non-finite loss or gradients at step {bad} (loss={float(guard['loss'])}, "
        f"grad_norm={float(guard['grad_norm'])}){read}; the state before it is kept and the "
        f"last good checkpoint is in {run_dir / 'checkpoints' / 'latest'}")


def _train(cfg: DictConfig, run_dir: Path, summary: dict) -> dict[str, Any]:
    check_divisible(cfg.trainer.batch_size, "trainer.batch_size")
    check_divisible(cfg.trainer.eval_batch_size, "trainer.eval_batch_size")
    sharding = data_sharding()
    data = load_data(cfg)
    meta = data["train"].meta
    run = start_training(cfg, meta)
    model, lr_fn, train_step = run.model, run.lr_fn, run.step
    state = replicate(run.state, sharding)
    params = state[0]
    model.eval()
    eval_graphdef = nnx.split(model, nnx.Param, ...)[0]
    model.train()
    summary.update(params=int(sum(x.size for x in jax.tree.leaves(params))),
                   majority_rate=majority_rate(data["test"]), majority_rate_val=majority_rate(data["val"]))
    if meta.per_token:  # accuracies and majority rates count scored positions, not examples
        summary["accuracy_over"] = "scored positions"
    batches = TrainBatches(data["train"], cfg.trainer.batch_size, seed=cfg.seed,
                           bucket=cfg.trainer.bucket)
    graphdef = run.graphdef
    summary["ran"] = what_ran.describe(  # step 0's batch: its shapes stand for every step's
        lambda p, r, b: _forward(nnx.merge(graphdef, p, r, copy=True), b, meta.dual),
        params, state[1], batches(0), precision=cfg.trainer.precision)
    for line in what_ran.log_lines(summary["ran"]):
        print(line)

    # Everything opened here (checkpoint managers, the metrics log, the progress bar) is
    # closed however the run ends, so a handled failure leaves no stray threads behind.
    with contextlib.ExitStack() as cleanup:
        ckpt = best_ckpt = None
        if cfg.trainer.checkpoint:
            ckpt = cleanup.enter_context(Checkpoints(run_dir / "checkpoints" / "latest"))
            best_ckpt = cleanup.enter_context(Checkpoints(run_dir / "checkpoints" / "best"))
        start, best = 0, {"val_accuracy": -1.0, "test_accuracy": None, "step": None}
        if ckpt is not None and not cfg.trainer.resume:  # starting over: old steps go too,
            for c in (ckpt, best_ckpt):                   # or a later resume would mix runs
                for step in c.steps():
                    c.delete(step)
        if ckpt is not None and cfg.trainer.resume:
            resumed = restore_newest(state, {"latest": ckpt, "best": best_ckpt})
            if resumed is not None:
                state, extra, record = resumed
                start, best = extra["next_step"], extra["best"]
                summary.update(record)
                for s in record["skipped_checkpoints"]:
                    warnings.warn(f"checkpoint {s['checkpoint']} step {s['step']} does not restore "
                                  f"({s['reason']}); resuming from {record['restored_from']}")
        metrics = cleanup.enter_context(MetricsLog(
            run_dir / "metrics.jsonl", keep_through_step=start - 1 if start else None,
            tensorboard_dir=run_dir / "tensorboard" if cfg.trainer.tensorboard else None,
            active=is_writer()))

        eval_step = make_eval_step(eval_graphdef, dual=meta.dual)
        steps = cfg.trainer.steps
        status, tokens, window_start = "finished", 0, time.time()
        desc = "/".join(str(x) for x in (cfg.task.name, summary["model"], summary["rung"]) if x)
        bar = cleanup.enter_context(tqdm(range(start, steps), initial=start, total=steps, desc=desc,
                                         disable=not cfg.trainer.progress, dynamic_ncols=True))
        check_every, guard = nonfinite_check_every(cfg), replicate(no_fault(), sharding)
        with StopSignals() as stop:
            for step in bar:
                batch = batches(step)
                state, m = train_step(state, shard_batch(batch, sharding), step, guard)
                guard = m["guard"]
                last = step + 1 == steps
                # check_every divides log_every, so every logged step is checked too
                if ((step + 1) % check_every == 0 or (step + 1) % cfg.trainer.eval_every == 0
                        or last or stop.received is not None):
                    _check_finite(guard, step, check_every, run_dir, summary)
                tokens += int(batch["lengths"].sum()) + int(batch.get("lengths2", np.zeros(1)).sum())
                if (step + 1) % cfg.trainer.log_every == 0 or step + 1 == steps:
                    elapsed = time.time() - window_start
                    record = {"step": step, "split": "train", "loss": float(m["loss"]),
                              "accuracy": float(m["accuracy"]), "grad_norm": float(m["grad_norm"]),
                              "lr": float(lr_fn(step)), "tokens_per_s": tokens / max(elapsed, 1e-9)}
                    if meta.per_token:
                        record["sequence_accuracy"] = float(m["sequence_accuracy"])
                    metrics.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}",
                                    lr=f"{record['lr']:.1e}", tok_s=f"{record['tokens_per_s']:.0f}")
                    summary["tokens_per_s"] = round(record["tokens_per_s"], 1)
                    tokens, window_start = 0, time.time()
                if (step + 1) % cfg.trainer.eval_every == 0 or last:
                    params, rest, _ = state
                    results = {s: evaluate(eval_step, params, rest, data[s],
                                           cfg.trainer.eval_batch_size, sharding)
                               for s in ("val", "test")}
                    for s, r in results.items():
                        metrics.write({"step": step, "split": s, **r})
                    if results["val"]["accuracy"] > best["val_accuracy"]:
                        best = {"val_accuracy": results["val"]["accuracy"],
                                "test_accuracy": results["test"]["accuracy"], "step": step}
                        if meta.per_token:
                            best["test_sequence_accuracy"] = results["test"]["sequence_accuracy"]
                        if best_ckpt is not None:
                            best_ckpt.save(step, state, {"next_step": step + 1, "best": best})
                    if ckpt is not None:
                        ckpt.save(step, state, {"next_step": step + 1, "best": best})
                    window_start = time.time()
                if stop.received is not None and not last:
                    if ckpt is not None:
                        ckpt.save(step, state, {"next_step": step + 1, "best": best})
                    status = "preempted"
                    break
    return {"status": status, "steps": summary.get("steps", start),
            "best_val_accuracy": best["val_accuracy"], "test_accuracy": best["test_accuracy"],
            "best_step": best["step"],
            **({"test_sequence_accuracy": best.get("test_sequence_accuracy")}
               if meta.per_token else {}),
            **({"signal": signal.Signals(stop.received).name} if stop.received else {})}
