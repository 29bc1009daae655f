"""The training harness: config composition and validation, the loop's run files, learning,
NaN handling, exact resume after SIGTERM, and the optimizer's parameter groups."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from lru.training.checkpoints import Checkpoints
from lru.training.config import register
from lru.layers import LRU
from lru.training.loop import train
from lru.models import Classifier
from lru.training.optim import BASE, RECURRENT, OptimizerSettings, make_optimizer, param_labels
from tests.tiny import compose_cfg, tiny_overrides

REPO = Path(__file__).resolve().parents[1]
register()


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_default_config_composes_with_every_rung():
    for rung in ("rnn_relu", "rnn_tanh", "linear_dense", "diag_complex", "exp",
                 "stable_exp", "ring", "lru"):
        cfg = compose_cfg([f"ablation={rung}", "run_dir=x"])
        assert cfg.ablation.rung == rung
    cfg = compose_cfg(["run_dir=x"])
    assert cfg.task.name == "listops" and cfg.model.layer == "lru" and cfg.ablation.rung == "lru"


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigCompositionException, match="d_modell"):
        compose_cfg(["run_dir=x", "model.d_modell=3"])
    with pytest.raises(ConfigCompositionException, match="steps"):
        compose_cfg(["run_dir=x", "trainer.steps=many"])


def test_bad_value_fails_the_run_naming_key_and_choices(tmp_path, data_dir):
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "run") + ["ablation.rung=lruu"])
    summary = train(cfg)
    assert summary["status"] == "failed"
    assert "ablation.rung" in summary["reason"] and "stable_exp" in summary["reason"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_missing_data_names_the_path_and_check_command(tmp_path):
    cfg = compose_cfg([f"run_dir={tmp_path / 'run'}", "task=listops",
                       f"task.data_dir={tmp_path / 'lra'}"])
    summary = train(cfg)
    assert summary["status"] == "failed"
    assert str(tmp_path / "lra" / "listops-1000" / "basic_train.tsv") in summary["reason"]
    assert "python -m tasks check listops" in summary["reason"]


@pytest.fixture
def made_steps(monkeypatch) -> list:
    """The jitted training steps the runs of a test make, in order (to count programs)."""
    import lru.training.loop as loop

    made, make = [], loop.make_train_step

    def recording(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(loop, "make_train_step", recording)
    return made


def test_short_run_learns_and_writes_its_files(tmp_path, data_dir, capsys, made_steps):
    run = tmp_path / "run"
    cfg = compose_cfg(tiny_overrides(data_dir, run, steps=200) + ["trainer.eval_every=100"])
    summary = train(cfg)
    assert summary["status"] == "finished", summary.get("reason")
    # every batch has one shape here, so one compiled step: the initial state lives on the
    # data mesh as the step's outputs do (else step 1 compiles the program again)
    assert made_steps[-1]._cache_size() == 1
    # what ran: said in the summary and the first log lines
    ran = json.loads((run / "summary.json").read_text())["ran"]
    assert (ran["backend"], ran["devices"], ran["processes"], ran["precision"]) == ("cpu", 1, 1, "fp32")
    assert ran["fused_ops"] is True and ran["native_kernels"] is True
    assert ran["native_kernels_unavailable"] is None
    # one recurrence per layer (2), in order, auto resolved to the compiled kernel
    assert ran["scan"] == [{"call": "planar_recurrence", "requested": "auto", "ran": "native"}] * 2
    out = capsys.readouterr().out
    assert "ran on cpu x1" in out and "planar_recurrence auto -> native (x2)" in out
    assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoints"} <= {
        p.name for p in run.iterdir()}
    on_disk = json.loads((run / "summary.json").read_text())
    for key in ("task", "model", "rung", "seed", "best_val_accuracy", "test_accuracy",
                "majority_rate", "steps", "wall_time_s", "params", "tokens_per_s", "status"):
        assert key in on_disk, key
    assert on_disk["steps"] == 200 and on_disk["params"] > 0
    assert OmegaConf.load(run / "config.yaml").trainer.steps == 200
    records = read_metrics(run)
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert [r["step"] for r in records if r["split"] == "val"] == [99, 199]
    # learning: well above the majority-class rate on held-out data
    assert summary["test_accuracy"] > summary["majority_rate"] + 0.1, summary


def test_nan_stops_the_run_naming_the_step_and_keeps_the_checkpoint(tmp_path, data_dir,
                                                                    made_steps):
    run = tmp_path / "run"
    assert train(compose_cfg(tiny_overrides(data_dir, run, steps=20)))["status"] == "finished"
    saved = Checkpoints(run / "checkpoints" / "latest")
    assert saved.latest_step() == 19
    saved.close()
    best = Checkpoints(run / "checkpoints" / "best")
    assert best.latest_step() == 19  # the only evaluation so far is the best
    best.close()
    # resume the same run for more steps with an absurd learning rate
    cfg = compose_cfg(tiny_overrides(data_dir, run, steps=60) + ["optimizer.lr=1e30",
                                                                 "schedule.warmup_fraction=0"])
    summary = train(cfg)
    assert summary["status"] == "failed"
    assert "non-finite" in summary["reason"] and "at step" in summary["reason"]
    assert made_steps[-1]._cache_size() == 1  # the restored state, too, is where steps put it
    ckpt = Checkpoints(run / "checkpoints" / "latest")
    assert ckpt.latest_step() == 19  # the last good checkpoint, untouched
    model_cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "other", steps=20))
    from lru.training.loop import load_data
    from lru.training.registry import build_model

    meta = load_data(model_cfg)["train"].meta
    model = build_model(model_cfg, meta)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, _ = make_optimizer(model, OptimizerSettings(lr=1e-3, weight_decay=0.0,
                                                    recurrent_lr_factor=1.0))
    (p, r, o), extra = ckpt.restore((params, rest, tx.init(params)))
    assert extra["next_step"] == 20
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(p))
    ckpt.close()


def _cli(run_dir: Path, data_dir: Path, steps: int, *extra: str) -> list[str]:
    overrides = [o for o in tiny_overrides(data_dir, run_dir, steps) if not o.startswith("run_dir")]
    return [sys.executable, "-m", "lru.train", f"hydra.run.dir={run_dir}", *overrides, *extra]


def _comparable(records):
    return [{k: r[k] for k in ("step", "split", "loss", "accuracy") if k in r} for r in records]


def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, data_dir):
    steps, every = 120, ["trainer.eval_every=40"]  # 3 evaluations and their checkpoints
    full = tmp_path / "full"  # uninterrupted, in this process
    assert train(compose_cfg(tiny_overrides(data_dir, full, steps) + every))["status"] == "finished"

    cut = tmp_path / "cut"
    proc = subprocess.Popen(_cli(cut, data_dir, steps, *every), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics = cut / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    first = json.loads((cut / "summary.json").read_text())
    assert first["status"] == "preempted", first
    assert first["steps"] < steps

    subprocess.run(_cli(cut, data_dir, steps, *every), check=True, capture_output=True,
                   timeout=600)
    resumed = json.loads((cut / "summary.json").read_text())
    uninterrupted = json.loads((full / "summary.json").read_text())
    assert resumed["status"] == "finished"
    assert _comparable(read_metrics(cut)) == _comparable(read_metrics(full))
    for key in ("best_val_accuracy", "test_accuracy", "best_step", "steps"):
        assert resumed[key] == uninterrupted[key], key


def test_a_finished_run_of_the_same_config_is_not_trained_again(tmp_path, data_dir, capsys):
    import shutil

    run = tmp_path / "run"
    first = train(compose_cfg(tiny_overrides(data_dir, run, steps=20)))
    assert first["status"] == "finished"
    shutil.rmtree(run / "checkpoints")  # as a committed run folder: no checkpoints
    files = {name: (run / name).read_bytes() for name in ("config.yaml", "metrics.jsonl",
                                                           "summary.json")}
    assert train(compose_cfg(tiny_overrides(data_dir, run, steps=20))) == first
    assert "already finished" in capsys.readouterr().out
    assert {name: (run / name).read_bytes() for name in files} == files
    assert not (run / "checkpoints").exists()

    # the folder moved elsewhere (another clone): still the same run
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    assert train(compose_cfg(tiny_overrides(data_dir, moved, steps=20))) == first

    # another config in the folder trains (here from scratch: no checkpoint is left)
    longer = train(compose_cfg(tiny_overrides(data_dir, moved, steps=30)))
    assert longer["status"] == "finished" and longer["steps"] == 30
    assert max(r["step"] for r in read_metrics(moved)) == 29
    # and so does trainer.resume=false
    again = train(compose_cfg(tiny_overrides(data_dir, run, steps=20) + ["trainer.resume=false"]))
    assert again["status"] == "finished" and (run / "checkpoints").is_dir()


def test_parameter_groups_follow_the_paper():
    model = Classifier(8, 1, 3, functools.partial(LRU, 8, 4), vocab_size=5, rngs=nnx.Rngs(0))
    labels = dict(nnx.to_flat_state(param_labels(model)))
    recurrent = {k[-1] for k, v in labels.items() if v == RECURRENT}
    assert recurrent == {"nu_log", "theta_log", "gamma_log", "B_re", "B_im"}
    assert {k[-1] for k, v in labels.items() if v == BASE} >= {"C_re", "C_im", "D", "kernel"}

    s = OptimizerSettings(lr=0.1, weight_decay=0.5, recurrent_lr_factor=0.25, steps=10,
                          warmup_steps=0, schedule="constant")
    tx, lr = make_optimizer(model, s)
    params = nnx.state(model, nnx.Param)
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.3), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    flat_u, flat_p = dict(nnx.to_flat_state(updates)), dict(nnx.to_flat_state(params))
    for path, label in labels.items():
        u, p = flat_u[path][...], flat_p[path][...]
        if label == RECURRENT:  # Adam's first step is -lr * sign(g); no decay
            np.testing.assert_allclose(u, -0.1 * 0.25 * np.ones_like(u), rtol=1e-4)
        else:  # AdamW: -lr * (sign(g) + wd * p)
            np.testing.assert_allclose(u, -0.1 * (1.0 + 0.5 * p), rtol=1e-4, atol=1e-6)


def test_tensorboard_mirrors_the_metrics(tmp_path, data_dir):
    from tensorboardX.proto import event_pb2

    from tasks.tfrecord import read_records

    run = tmp_path / "run"
    summary = train(compose_cfg(tiny_overrides(data_dir, run, steps=20)
                                 + ["trainer.tensorboard=true", "trainer.checkpoint=false"]))
    assert summary["status"] == "finished"
    scalars = {}
    for path in (run / "tensorboard").glob("events.out.tfevents.*"):
        for record in read_records(path):
            event = event_pb2.Event.FromString(record)
            for v in event.summary.value:
                scalars[(v.tag, event.step)] = v.simple_value
    for r in read_metrics(run):
        assert scalars[(f"{r['split']}/loss", r["step"])] == pytest.approx(r["loss"], rel=1e-6)


MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_trains_two_steps(model, tmp_path, data_dir):
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "run", steps=2)
                      + [f"model={model}", "model.d_model=8", "model.d_state=8",
                         "model.n_layers=1", "trainer.eval_every=2", "trainer.checkpoint=false"])
    summary = train(cfg)
    assert summary["status"] == "finished", summary.get("reason")
    assert summary["model"] == model
    assert (summary["rung"] is None) == (model != "lru")


def test_misspelt_layer_option_names_itself(tmp_path, data_dir):
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "run", steps=2)
                      + ["model=s5", "+model.layer_options.blockz=2"])
    summary = train(cfg)
    assert summary["status"] == "failed"
    assert "blockz" in summary["reason"] and "blocks" in summary["reason"]


@pytest.mark.parametrize("model", ["s5", "s4d", "s4"])
def test_baselines_learn_in_a_short_run(model, tmp_path, data_dir):
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "run", steps=200)
                      + [f"model={model}", "model.d_model=16", "model.d_state=16",
                         "model.n_layers=2", "trainer.eval_every=100", "trainer.checkpoint=false"])
    summary = train(cfg)
    assert summary["status"] == "finished", summary.get("reason")
    assert summary["test_accuracy"] > summary["majority_rate"] + 0.1, summary


@pytest.mark.parametrize("layer", ["lru", "s5", "rg_lru"])
def test_model_scan_method_reaches_every_layer_that_has_one(layer):
    import tasks
    from lru.training.registry import make_mixer

    cfg = compose_cfg(["run_dir=unused", f"model={layer}", "model.scan_method=sequential",
                       "model.d_model=8", "model.d_state=8"])
    meta = tasks.TaskMeta(name="listops", n_classes=10, max_length=16, vocab_size=16)
    assert make_mixer(cfg, meta).keywords["scan_method"] == "sequential"


def test_without_native_kernels_the_run_warns_and_says_so(tmp_path, data_dir, monkeypatch):
    from lru.kernels import native

    monkeypatch.setattr(native, "_load", lambda: "no C++ compiler found (test)")
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "run", steps=2)
                      + ["model.n_layers=1", "trainer.checkpoint=false"])
    with pytest.warns(UserWarning, match="compiled CPU kernels .* unavailable: no C\\+\\+ compiler"):
        summary = train(cfg)
    assert summary["status"] == "finished", summary.get("reason")
    assert summary["ran"]["native_kernels"] is False
    assert summary["ran"]["native_kernels_unavailable"] == "no C++ compiler found (test)"
    assert summary["ran"]["scan"] == [{"call": "planar_recurrence", "requested": "auto",
                                       "ran": "inplace"}]


def _poison_step(monkeypatch, bad_step: int):
    """Make the loss of training step ``bad_step`` NaN: batches carry a per-example factor
    (NaN at that step), and the forward pass multiplies the logits by it."""
    import lru.training.loop as loop

    real_batches, real_forward = loop.TrainBatches, loop._forward

    class PoisonedBatches(real_batches):
        def __call__(self, step):
            batch = super().__call__(step)
            n = len(batch["labels"])
            batch["poison"] = np.full(n, np.nan if step == bad_step else 1.0, np.float32)
            return batch

    def forward(model, batch, dual):
        logits = real_forward(model, batch, dual)
        return logits * batch["poison"][:, None] if "poison" in batch else logits

    monkeypatch.setattr(loop, "TrainBatches", PoisonedBatches)
    monkeypatch.setattr(loop, "_forward", forward)
    return loop


def test_nan_read_at_intervals_stops_at_the_next_check_with_the_state_before_it(
        tmp_path, data_dir, monkeypatch):
    """The accelerator path (the guard read every log_every=10 steps): NaN at step 13 stops
    the run at step 19, naming step 13; no checkpoint or log record is written after it."""
    loop = _poison_step(monkeypatch, 13)
    monkeypatch.setattr(loop, "nonfinite_check_every", lambda cfg: cfg.trainer.log_every)
    run = tmp_path / "run"
    summary = train(compose_cfg(tiny_overrides(data_dir, run, steps=40) + ["trainer.eval_every=10"]))
    assert summary["status"] == "failed" and summary["steps"] == 13
    assert "at step 13" in summary["reason"] and "found at step 19 (checked every 10" in summary["reason"]
    assert max(r["step"] for r in read_metrics(run)) == 9
    ckpt = Checkpoints(run / "checkpoints" / "latest")
    assert ckpt.latest_step() == 9
    ckpt.close()


def test_the_step_keeps_the_state_before_the_first_bad_step(tmp_path, data_dir, monkeypatch):
    """Steps 0-9 with NaN at step 6 end in the state that steps 0-5 reach."""
    loop = _poison_step(monkeypatch, 6)
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "run", steps=10))
    data = loop.load_data(cfg)
    batches = loop.TrainBatches(data["train"], cfg.trainer.batch_size, seed=cfg.seed)

    def run(n):
        training = loop.start_training(cfg, data["train"].meta)
        state, guard = training.state, loop.no_fault()
        for step in range(n):
            state, m = training.step(state, batches(step), step, guard)
            guard = m["guard"]
        return state, guard

    poisoned, guard = run(10)
    clean, clean_guard = run(6)
    assert int(guard["step"]) == 6 and not np.isfinite(float(guard["loss"]))
    assert int(clean_guard["step"]) == -1
    def values(x):
        return np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(
            x.dtype, jax.dtypes.prng_key) else x)

    for a, b in zip(jax.tree.leaves(poisoned), jax.tree.leaves(clean)):
        np.testing.assert_array_equal(values(a), values(b))
