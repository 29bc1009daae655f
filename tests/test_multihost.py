"""Multi-process data parallelism for real: two processes on this machine (CPU collectives
over gloo, the coordinator on 127.0.0.1) train exactly as one process on two devices, write
one set of run files, and resume (issue 18)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.spawn import xla_flags
from tests.tiny import compose_cfg, tiny_overrides

REPO = Path(__file__).resolve().parents[1]
STEPS = 6
EXTRA = [f"trainer.steps={STEPS}", "trainer.log_every=1", "trainer.eval_every=3",
         "trainer.batch_size=8"]


def _command(run_dir: Path, data_dir: Path, *extra: str) -> list[str]:
    overrides = [o for o in tiny_overrides(data_dir, run_dir) if not o.startswith("run_dir")]
    return [sys.executable, "-m", "lru.train", f"hydra.run.dir={run_dir}", *overrides, *EXTRA,
            *extra]


def _env(devices: int, **extra: str) -> dict[str, str]:
    return {**os.environ, "XLA_FLAGS": xla_flags(f"--xla_force_host_platform_device_count={devices}"),
            "JAX_PLATFORMS": "cpu", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(run_dir: Path, data_dir: Path) -> None:
    port = _free_port()
    procs = [subprocess.Popen(
        _command(run_dir, data_dir, f"distributed.coordinator_address=127.0.0.1:{port}",
                 "distributed.num_processes=2", f"distributed.process_id={i}"),
        env=_env(1), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"process {i}:\n{out[-4000:]}"


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _losses(records, split="train"):
    return [(r["step"], r["loss"]) for r in records if r["split"] == split]


def test_two_processes_equal_one_process_on_two_devices_and_resume(tmp_path, data_dir):
    single = tmp_path / "single"
    proc = subprocess.run(_command(single, data_dir), env=_env(2), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    multi = tmp_path / "multi"
    _two_processes(multi, data_dir)
    one, two = _metrics(single), _metrics(multi)
    # one set of run files, written by process 0: each record once
    assert [(r["step"], r["split"]) for r in two] == [(r["step"], r["split"]) for r in one]
    assert sorted(p.name for p in multi.iterdir()) == sorted(p.name for p in single.iterdir())
    for split in ("train", "val", "test"):
        steps_one, losses_one = zip(*_losses(one, split))
        steps_two, losses_two = zip(*_losses(two, split))
        assert steps_two == steps_one
        np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5, atol=1e-6)
    summary = json.loads((multi / "summary.json").read_text())
    reference = json.loads((single / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == STEPS
    assert summary["test_accuracy"] == pytest.approx(reference["test_accuracy"], abs=1e-6)

    # preempted after the step-2 checkpoint: the two processes resume from it
    shutil.rmtree(multi / "checkpoints" / "latest" / str(STEPS - 1))
    shutil.rmtree(multi / "checkpoints" / "best", ignore_errors=True)
    (multi / "summary.json").unlink()
    _two_processes(multi, data_dir)
    resumed = json.loads((multi / "summary.json").read_text())
    assert resumed["status"] == "finished"
    assert resumed["restored_from"] == {"checkpoint": "latest", "step": 2}
    again = _metrics(multi)
    assert [(r["step"], r["split"]) for r in again] == [(r["step"], r["split"]) for r in two]
    np.testing.assert_allclose([l for _, l in _losses(again)], [l for _, l in _losses(two)],
                               rtol=1e-5, atol=1e-6)


def test_a_partial_multi_process_setting_names_the_missing_keys(tmp_path, data_dir):
    proc = subprocess.run(_command(tmp_path / "run", data_dir, "distributed.num_processes=2"),
                          env=_env(1), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "distributed.coordinator_address" in proc.stderr + proc.stdout
    assert "distributed.process_id" in proc.stderr + proc.stdout


def test_environment_variables_fill_the_distributed_keys(monkeypatch):
    monkeypatch.setenv("LRU_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("LRU_NUM_PROCESSES", "2")
    monkeypatch.setenv("LRU_PROCESS_ID", "1")
    d = compose_cfg(["run_dir=x"]).distributed
    assert (d.coordinator_address, d.num_processes, d.process_id) == ("10.0.0.1:1234", 2, 1)
    monkeypatch.delenv("LRU_NUM_PROCESSES")
    assert compose_cfg(["run_dir=x", "distributed.process_id=0"]).distributed.num_processes is None
