"""A run folder's soundness: one owner, checkpoints that survive damage, no setting silently
ignored, and a folder checked for writing before any work (issue 18)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lru.training.checkpoints
import lru.training.loop
from lru.training.loop import train
from lru.training.registry import ignored_settings
from lru.training.runlock import LOCK_NAME, RunFolderLocked, RunLock
from tests.test_train import _comparable, read_metrics
from tests.tiny import compose_cfg, tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def _cli(run_dir: Path, data_dir: Path, steps: int, *extra: str, multirun: bool = False):
    overrides = [o for o in tiny_overrides(data_dir, run_dir, steps) if not o.startswith("run_dir")]
    where = f"hydra.sweep.dir={run_dir}" if multirun else f"hydra.run.dir={run_dir}"
    return [sys.executable, "-m", "lru.train", *(["-m"] if multirun else []), where,
            *overrides, *extra]


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


# --------------------------------------------------------------------------- one owner


def test_a_held_folder_refuses_a_second_run_and_names_the_holder(tmp_path, data_dir):
    run = tmp_path / "run"
    assert train(compose_cfg(tiny_overrides(data_dir, run, steps=10)))["status"] == "finished"
    before = _files(run)
    with RunLock(run):
        # a sweep's job (in-process): reported as locked, the folder untouched
        summary = train(compose_cfg(tiny_overrides(data_dir, run, steps=20)))
        assert summary["status"] == "locked"
        assert str(run) in summary["reason"] and f"pid {os.getpid()}" in summary["reason"]
        assert socket.gethostname() in summary["reason"]
        # a single run from the command line: exit status 1, the holder named
        proc = subprocess.run(_cli(run, data_dir, 20), capture_output=True, text=True,
                              timeout=300, cwd=REPO)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"pid {os.getpid()}" in proc.stdout and "one writer" in proc.stdout
        assert _files(run) == before
    # released with its holder: the folder can be trained again
    assert train(compose_cfg(tiny_overrides(data_dir, run, steps=20)))["status"] == "finished"


def test_the_lock_dies_with_its_process(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from lru.training.runlock import RunLock\n"
                               f"with RunLock({str(run)!r}):\n"
                               "    print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderLocked, match=f"pid {holder.pid}"):
        RunLock(run).__enter__()
    holder.kill()  # no clean-up runs: the kernel releases the lock
    holder.wait(timeout=30)
    with RunLock(run):
        pass


def test_two_trainers_on_one_folder_leave_one_runs_record(tmp_path, data_dir):
    run = tmp_path / "run"
    # far more steps than it will take: the first trainer runs until the test stops it
    first = subprocess.Popen(_cli(run, data_dir, 100_000), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, cwd=REPO)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.05)
    second = subprocess.run(_cli(run, data_dir, 100_000), capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out
    assert second.returncode == 1 and f"pid {first.pid}" in second.stdout, second.stdout
    steps = [r["step"] for r in read_metrics(run) if r["split"] == "train"]
    assert steps and steps == sorted(set(steps)), steps
    assert json.loads((run / "summary.json").read_text())["status"] == "preempted"


def test_a_sweep_reports_a_locked_job_and_runs_the_others(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    locked = sweep / "seed0"
    with RunLock(locked):
        proc = subprocess.run(_cli(sweep, data_dir, 10, "seed=0,1", "hydra.sweep.subdir=seed${seed}",
                                   multirun=True),
                              capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"run refused: {locked} is in use" in proc.stdout
    assert not (locked / "summary.json").exists()
    assert json.loads((sweep / "seed1" / "summary.json").read_text())["status"] == "finished"


def test_a_signal_ends_the_sweep_after_preempting_its_job(tmp_path, data_dir):
    """SIGTERM to ``python -m lru.train -m``: the job being trained saves and stops, and the
    launcher starts no other job (rerunning the command resumes the sweep)."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(_cli(sweep, data_dir, 100_000, "seed=0,1,2",
                                 "hydra.sweep.subdir=seed${seed}", multirun=True),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    metrics = sweep / "seed0" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, out
    summary = json.loads((sweep / "seed0" / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["signal"] == "SIGTERM"
    assert (sweep / "seed0" / "checkpoints" / "latest").is_dir()
    assert not (sweep / "seed1").exists() and not (sweep / "seed2").exists(), out
    assert "sweep stopped by SIGTERM" in out and "were not started" in out, out


# --------------------------------------------------------------------------- checkpoints


#: The checkpoint tests' run: the tiny job, 40 steps, evaluated (and saved) every 10.
CHECKPOINTED = ["trainer.eval_every=10"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir) -> Path:
    """A finished :data:`CHECKPOINTED` run (latest steps 29 and 39 kept), trained once per
    test process; tests copy it (:func:`_copy_of`), never change it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert train(compose_cfg(tiny_overrides(data_dir, run, 40) + CHECKPOINTED))["status"] \
        == "finished"
    return run


def _copy_of(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _damage(step_dir: Path) -> None:
    """Overwrite every array file of an orbax step with bytes of the same length."""
    files = [p for p in (step_dir / "arrays").rglob("*") if p.is_file()]
    assert files
    for p in files:
        p.write_bytes(b"\x5a" * max(p.stat().st_size, 8))


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path, data_dir,
                                                                   finished_run):
    full, overrides = finished_run, CHECKPOINTED
    run = _copy_of(full, tmp_path / "run")
    (run / "summary.json").unlink()  # as if the run were cut short after its last save
    latest, best = run / "checkpoints" / "latest", run / "checkpoints" / "best"
    assert sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit()) == [29, 39]
    _damage(latest / "39")
    for step_dir in best.iterdir():  # the best checkpoints are newer than 29 or damaged too
        if step_dir.name.isdigit() and int(step_dir.name) > 29:
            _damage(step_dir)

    proc = subprocess.run(_cli(run, data_dir, 40, *overrides), capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr  # handled: no stray traceback
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["restored_from"] == {"checkpoint": "latest", "step": 29}
    skipped = {(s["checkpoint"], s["step"]) for s in summary["skipped_checkpoints"]}
    assert ("latest", 39) in skipped and all(s["reason"] for s in summary["skipped_checkpoints"])
    assert "does not restore" in proc.stderr
    # resumed from step 29, the run repeats the uninterrupted one exactly
    assert _comparable(read_metrics(run)) == _comparable(read_metrics(full))
    original = json.loads((full / "summary.json").read_text())
    for key in ("best_val_accuracy", "test_accuracy", "best_step", "steps"):
        assert summary[key] == original[key], key


def test_no_restorable_checkpoint_fails_listing_every_reason(tmp_path, data_dir, finished_run):
    run, overrides = _copy_of(finished_run, tmp_path / "run"), CHECKPOINTED
    (run / "summary.json").unlink()
    damaged = [d for name in ("latest", "best") for d in (run / "checkpoints" / name).iterdir()
               if d.name.isdigit()]
    for d in damaged:
        _damage(d)
    metrics = (run / "metrics.jsonl").read_bytes()
    proc = subprocess.run(_cli(run, data_dir, 40, *overrides), capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "no checkpoint restores" in summary["reason"]
    for d in damaged:
        assert f"{d.parent.name} step {d.name}:" in summary["reason"]
    assert (run / "metrics.jsonl").read_bytes() == metrics  # nothing trained


def test_a_failed_save_fails_the_run_and_leaves_the_previous_checkpoint(tmp_path, data_dir,
                                                                         monkeypatch,
                                                                         finished_run):
    full, overrides = finished_run, CHECKPOINTED

    real = lru.training.checkpoints.write_json

    def disk_full_at_step_19(path, data):
        if Path(path).name == "19.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    run = tmp_path / "run"
    monkeypatch.setattr(lru.training.checkpoints, "write_json", disk_full_at_step_19)
    summary = train(compose_cfg(tiny_overrides(data_dir, run, 40) + overrides))
    assert summary["status"] == "failed" and "No space left on device" in summary["reason"]
    monkeypatch.setattr(lru.training.checkpoints, "write_json", real)

    with pytest.warns(UserWarning, match="step 19 does not restore"):
        resumed = train(compose_cfg(tiny_overrides(data_dir, run, 40) + overrides))
    assert resumed["status"] == "finished", resumed.get("reason")
    assert resumed["restored_from"]["step"] == 9
    assert _comparable(read_metrics(run)) == _comparable(read_metrics(full))


def test_starting_over_removes_the_old_runs_checkpoints(tmp_path, data_dir, finished_run):
    run, overrides = _copy_of(finished_run, tmp_path / "run"), CHECKPOINTED
    again = train(compose_cfg(tiny_overrides(data_dir, run, 20) + overrides
                              + ["trainer.resume=false"]))
    assert again["status"] == "finished" and again["steps"] == 20
    for name in ("latest", "best"):
        saved = lru.training.checkpoints.Checkpoints(run / "checkpoints" / name)
        assert max(saved.steps()) <= 19, (name, saved.steps())  # no step of the first run
        saved.close()


# --------------------------------------------------------------------------- no silent setting


def test_a_ring_setting_given_to_a_unit_disk_rung_is_an_error(tmp_path, data_dir):
    proc = subprocess.run(_cli(tmp_path / "run", data_dir, 5, "ablation=exp", "model.r_min=0.5"),
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 1
    assert "model.r_min" in proc.stdout and "'exp'" in proc.stdout and "from rung 'ring' on" \
        in proc.stdout
    # the same keys on a rung that reads them run
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "ring", 5) + ["ablation=ring",
                                                                         "model.r_min=0.5"])
    assert train(cfg, overrides=["ablation=ring", "model.r_min=0.5"])["status"] == "finished"
    # set by a config file (an experiment), not given: no error
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "exp", 5) + ["ablation=exp",
                                                                        "model.r_min=0.5"])
    assert train(cfg, overrides=["ablation=exp"])["status"] == "finished"


@pytest.mark.parametrize("model, key, why", [
    ("s5", "ablation", "the ladder's rungs are the LRU's"),
    ("s5", "model.max_phase", "the ring is the LRU's"),
    ("s4d", "model.scan_method", "has no 'scan_method' option"),
    ("s4d", "trainer.recompute_states", "has no 'recompute_states' option"),
    ("hawk", "trainer.recompute_states", "has no 'recompute_states' option"),
])
def test_settings_another_model_ignores_are_errors(tmp_path, data_dir, model, key, why):
    cfg = compose_cfg(tiny_overrides(data_dir, tmp_path / "run", 5) + [f"model={model}"])
    summary = train(cfg, overrides=[f"model={model}", f"{key}=x"])
    assert summary["status"] == "failed"
    assert key.replace("ablation", "ablation.rung") in summary["reason"] and why in summary["reason"]


def test_ignored_settings_follow_the_ladder():
    for rung, ring in [("rnn_tanh", False), ("stable_exp", False), ("ring", True), ("lru", True)]:
        ignored = ignored_settings(compose_cfg(["run_dir=x", f"ablation={rung}"]))
        assert ("model.r_min" in ignored) is not ring, rung
        assert "ablation.rung" not in ignored


# --------------------------------------------------------------------------- writable first


def test_an_unwritable_run_folder_fails_before_data_or_compilation(tmp_path, data_dir,
                                                                    monkeypatch):
    def no_data(cfg):
        raise AssertionError("data loaded for an unwritable folder")

    monkeypatch.setattr(lru.training.loop, "load_data", no_data)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    summary = train(compose_cfg(tiny_overrides(data_dir, blocker / "run", 5)))
    assert summary["status"] == "failed"
    assert "not writable" in summary["reason"] and str(blocker / "run") in summary["reason"]


def test_a_full_disk_fails_before_data_or_compilation(tmp_path, data_dir, monkeypatch):
    def no_data(cfg):
        raise AssertionError("data loaded on a full disk")

    monkeypatch.setattr(lru.training.loop, "load_data", no_data)
    monkeypatch.setattr(lru.training.loop.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    summary = train(compose_cfg(tiny_overrides(data_dir, tmp_path / "run", 5)))
    assert summary["status"] == "failed" and "1 MiB free" in summary["reason"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
