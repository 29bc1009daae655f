"""Sweeps through Hydra's launcher plugins (``conf/hydra/launcher/``): a local joblib sweep
in which one job fails while the other finishes, and the SLURM launcher's composed config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from lru.training.config import register
from lru.training.loop import load_data

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
register()

# Hydra validates conf/hydra/launcher/<name>.yaml against the plugin's ConfigStore schema of
# the same name and says so with a deprecation warning; the behaviour is what the files rely on.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:\s*'hydra/launcher/\w+' is validated against ConfigStore schema")

# Paths relative to the sweep's working directory keep each job's folder name
# (hydra.job.override_dirname: every override but hydra.*) short and flat.
TINY_SWEEP = [
    "task.data_dir=data", "task.cache_dir=cache", "task.options.max_length=16",
    "model.d_model=16", "model.d_state=16", "model.n_layers=2",
    "trainer.steps=10", "trainer.progress=false",
]


def compose_cfg(overrides: list[str], **kwargs):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides, **kwargs)


def test_joblib_sweep_runs_jobs_in_parallel_and_a_failed_job_does_not_stop_it(tmp_path):
    # Generate and preprocess the data once, so the parallel jobs only read it.
    cfg = compose_cfg([
        "run_dir=unused", f"task.data_dir={tmp_path / 'data'}", f"task.cache_dir={tmp_path / 'cache'}",
        "task.options.max_length=16", "task.generate.args.n_train=600",
        "task.generate.args.n_val=100", "task.generate.args.n_test=100",
        "task.generate.args.max_depth=2", "task.generate.args.max_length=16",
        "+task.generate.args.progress=false"])
    assert len(load_data(cfg)["train"]) == 600

    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "lru.train", "-m", "hydra/launcher=joblib",
           "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}", *TINY_SWEEP,
           "ablation.rung=lru,bogus"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summaries = {}
    for path in sweep_dir.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        summaries[summary["rung"]] = summary
        # each job's files in its own folder, named by its overrides
        assert f"ablation.rung={summary['rung']}" in path.parent.name
        assert Path(summary["run_dir"]).resolve() == path.parent.resolve()
        assert (path.parent / "config.yaml").exists()
    assert set(summaries) == {"lru", "bogus"}, sorted(sweep_dir.rglob("summary.json"))
    assert summaries["lru"]["status"] == "finished", summaries["lru"].get("reason")
    assert summaries["lru"]["steps"] == 10
    assert summaries["bogus"]["status"] == "failed"
    assert "ablation.rung" in summaries["bogus"]["reason"]
    assert "'bogus'" in summaries["bogus"]["reason"]
    # the joblib launcher ran them, two at a time
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr


def test_submitit_slurm_launcher_composes_with_one_gpu_per_job(tmp_path, monkeypatch):
    cfg = compose_cfg(["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.nodes == 1
    assert launcher.timeout_min > 0 and launcher.cpus_per_task > 0 and launcher.mem_gb > 0
    assert launcher.partition is None
    assert "max_num_timeout" in launcher  # a key only the plugin's schema brings
    # the plugin's schema checks the keys
    with pytest.raises(ConfigCompositionException, match="gpus_per_nod"):
        compose_cfg(["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_nod=2"],
                    return_hydra_config=True)

    # What submitit would submit: the launcher's parameters mapped as SlurmLauncher.launch
    # maps them, rendered as an sbatch script (a stub `srun` stands in for the cluster).
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    stub = tmp_path / "bin" / "srun"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    params = OmegaConf.to_container(launcher, resolve=False)
    params = {k: v for k, v in params.items()
              if k not in ("_target_", "submitit_folder", "max_num_timeout")}
    params["name"] = "lru"  # ${hydra.job.name} resolves only inside a run
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -m lru.train", "uid")
    assert "#SBATCH --gpus-per-node=1" in sbatch
    assert f"#SBATCH --time={launcher.timeout_min}" in sbatch
    assert f"#SBATCH --cpus-per-task={launcher.cpus_per_task}" in sbatch
    assert "--partition" not in sbatch
