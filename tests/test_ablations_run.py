"""The ladder as a sweep (``python -m ablations run ladder``): the commands it plans for a
task, and one real tiny sweep through Hydra's basic launcher, tabulated."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ablations.__main__ import main
from ablations.runs import load_runs
from ablations.table import build_table, format_table
from lru.ladder import RUNG_NAMES

REPO = Path(__file__).resolve().parents[1]
RING_KEYS = ("model.r_min", "model.r_max", "model.max_phase")
DISK_RUNGS = ["rnn_relu", "rnn_tanh", "linear_dense", "diag_complex", "exp", "stable_exp"]
TWO_PI = 2 * math.pi

# Tiny jobs, in the style of tests/test_sweeps.py: paths relative to the sweep's working
# directory, small widths, 10 steps, no checkpoints.
TINY = ["task.data_dir=data", "task.cache_dir=cache", "task.options.max_length=16",
        "model.d_model=16", "model.d_state=16", "model.n_layers=2", "trainer.steps=10",
        "trainer.progress=false", "trainer.checkpoint=false"]


def dry_run(capsys, *args: str) -> dict[str, list[str]]:
    """The commands ``run ladder --dry-run`` prints, by sweep subfolder."""
    assert main(["run", "ladder", "--dry-run", *args]) == 0
    commands = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("$ "):
            argv = shlex.split(line[2:])
            assert argv[:4] == [sys.executable, "-m", "lru.train", "-m"]
            sweep_dir = next(a for a in argv if a.startswith("hydra.sweep.dir="))
            commands[Path(sweep_dir.split("=", 1)[1]).name] = argv[4:]
    return commands


def values(argv: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in argv)


def test_dry_run_plans_every_rung_and_baseline_with_the_ring_on_ring_rungs_only(tmp_path, capsys):
    out = tmp_path / "sweep"
    commands = dry_run(capsys, "--task", "listops_mini", "--seeds", "3", "--out", str(out))
    assert list(commands) == ["rungs_unit_disk", "rungs_ring", "baselines"]
    disk, ring, baselines = (values(commands[k]) for k in commands)

    assert disk["ablation"].split(",") == DISK_RUNGS
    assert ring["ablation"].split(",") == ["ring", "lru"]
    assert sorted(DISK_RUNGS + ["ring", "lru"]) == sorted(RUNG_NAMES)
    assert baselines["model"] == "s4d,s5" and "ablation" not in baselines
    for name, v in [("rungs_unit_disk", disk), ("rungs_ring", ring), ("baselines", baselines)]:
        assert v["seed"] == "0,1,2" and v["task"] == "listops_mini"
        assert v["hydra.sweep.dir"] == str(out / name)
        assert "hydra/launcher" not in v   # Hydra's basic launcher is the default
    # ListOps' ring (conf/experiment/lru/listops.yaml: the paper's Table 8), only where the
    # rung uses a ring
    paper = OmegaConf.load(REPO / "conf" / "experiment" / "lru" / "listops.yaml").model
    assert (float(ring["model.r_min"]), float(ring["model.r_max"])) == (paper.r_min, paper.r_max)
    assert (paper.r_min, paper.r_max) == (0.0, 0.99)
    assert float(ring["model.max_phase"]) == pytest.approx(TWO_PI)
    for key in RING_KEYS:
        assert key not in disk and key not in baselines
    assert not out.exists()   # a dry run runs nothing


def test_pathfinder_ring_experiment_launcher_and_default_folder(capsys):
    commands = dry_run(capsys, "--experiment", "mini/pathfinder", "--seeds", "1",
                       "--launcher", "joblib", "--baselines", "none", "--rungs", "lru,exp",
                       "--", "hydra.launcher.n_jobs=4")
    assert list(commands) == ["rungs_unit_disk", "rungs_ring"]
    disk, ring = values(commands["rungs_unit_disk"]), values(commands["rungs_ring"])
    assert disk["ablation"] == "exp" and ring["ablation"] == "lru"
    assert (float(ring["model.r_min"]), float(ring["model.r_max"])) == (0.9, 0.999)
    assert float(ring["model.max_phase"]) == pytest.approx(TWO_PI)
    for v in (disk, ring):
        assert v["+experiment"] == "mini/pathfinder" and "task" not in v
        assert v["hydra/launcher"] == "joblib" and v["hydra.launcher.n_jobs"] == "4"
        assert v["seed"] == "0"
        # the default sweep folder: results/multirun/ladder/<task config>/<time>/
        assert Path(v["hydra.sweep.dir"]).parts[:4] == (
            "results", "multirun", "ladder", "pathfinder_mini")


def test_the_ring_of_an_experiment_that_includes_another_comes_from_the_included_file(capsys):
    # synthetic/mqar sets no ring itself: its defaults list includes synthetic/_protocol,
    # which does, and no conf/experiment/lru/mqar.yaml exists to fall back on
    commands = dry_run(capsys, "--experiment", "synthetic/mqar", "--seeds", "1",
                       "--rungs", "lru", "--baselines", "none")
    ring = values(commands["rungs_ring"])
    protocol = OmegaConf.load(REPO / "conf/experiment/synthetic/_protocol.yaml").model
    assert (float(ring["model.r_min"]), float(ring["model.r_max"])) == (protocol.r_min,
                                                                        protocol.r_max)
    assert float(ring["model.max_phase"]) == pytest.approx(protocol.max_phase)
    # and Hydra, composing the experiment, agrees
    from ablations.ladder import compose_base

    assert compose_base(None, "synthetic/mqar").model.r_min == float(ring["model.r_min"])


def test_experiment_files_follow_hydras_order_own_keys_last_unless_self_is_placed(tmp_path,
                                                                                  monkeypatch):
    from ablations import ladder

    exp = tmp_path / "experiment"
    (exp / "sub").mkdir(parents=True)
    write = lambda name, text: (exp / f"{name}.yaml").write_text(text)  # noqa: E731
    write("sub/base", "# @package _global_\nmodel: {r_min: 0.1, r_max: 0.5}\n")
    write("sub/other", "# @package _global_\nmodel: {r_min: 0.2}\n")
    write("sub/task", "# @package _global_\ndefaults:\n  - sub/base\n  - /experiment/sub/other\n"
                      "  - override /task: mqar\nmodel: {max_phase: 3.0}\n")
    write("sub/first", "# @package _global_\ndefaults:\n  - _self_\n  - sub/other\n"
                       "model: {r_min: 0.9, r_max: 0.99, max_phase: 1.0}\n")
    monkeypatch.setattr(ladder, "CONF", tmp_path)
    assert ladder.experiment_files("sub/task") == [exp / "sub/task.yaml", exp / "sub/other.yaml",
                                                   exp / "sub/base.yaml"]
    # the own keys, then the later include (r_min 0.2 over 0.1), then the earlier (r_max)
    assert ladder.task_ring("mqar", "sub/task") == {"model.r_min": 0.2, "model.r_max": 0.5,
                                                    "model.max_phase": 3.0}
    # _self_ written first: the include after it wins
    assert ladder.task_ring("mqar", "sub/first") == {"model.r_min": 0.2, "model.r_max": 0.99,
                                                     "model.max_phase": 1.0}


def test_ring_overrides_go_to_the_ring_rungs_only(capsys):
    commands = dry_run(capsys, "--task", "pathfinder_mini", "--seeds", "2", "--baselines", "s5",
                       "--", "model.r_min=0.5,0.9", "trainer.steps=7")
    disk, ring, baselines = (values(commands[k]) for k in commands)
    assert ring["model.r_min"] == "0.5,0.9" and float(ring["model.r_max"]) == 0.999
    assert list(commands["rungs_ring"]).count("model.r_min=0.5,0.9") == 1
    assert "model.r_min" not in disk and "model.r_min" not in baselines
    assert disk["trainer.steps"] == ring["trainer.steps"] == baselines["trainer.steps"] == "7"
    assert baselines["model"] == "s5"


@pytest.mark.parametrize("args, message", [
    (["--task", "listops_mini", "--", "seed=4"], "use --seeds"),
    (["--task", "listops_mini", "--", "ablation=ring"], "use --rungs"),
    (["--task", "listops_mini", "--", "model=s5"], "use --baselines"),
    (["--task", "listops_mini", "--rungs", "lru,gru"], "unknown rung 'gru'"),
    (["--task", "listops_mini", "--baselines", "mamba"], "no conf/model/mamba.yaml"),
    (["--task", "listops_mini", "--seeds", "0"], "at least 1"),
    (["--task", "no_such_task"], "Could not find 'task/no_such_task'"),
    (["--experiment", "mini/s5_listops"], "the rungs need an LRU experiment"),
    (["--seeds", "2"], "give --task"),
    (["--task", "path256"], "no ring for task 'path256'"),
])
def test_bad_arguments_name_the_fix(args, message, capsys):
    assert main(["run", "ladder", "--dry-run", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_tiny_ladder_runs_through_the_basic_launcher_and_tabulates(tmp_path, monkeypatch, capfd):
    from tasks.generate.listops import generate

    generate(tmp_path / "data", n_train=300, n_val=50, n_test=50, max_depth=2, min_length=10,
             max_length=16, progress=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # Two rungs x one seed; the LRU rung also sweeps its ring so that its first job fails
    # (r_min > r_max) and the launcher must carry on to the second.
    status = main(["run", "ladder", "--task", "listops_mini", "--seeds", "1", "--rungs", "exp,lru",
                   "--baselines", "none", "--out", "sweep", "--", *TINY,
                   "model.r_min=0.95,0.0", "model.r_max=0.9"])
    output = capfd.readouterr()
    assert status == 0, output.out[-3000:] + output.err[-3000:]

    runs = load_runs(tmp_path / "sweep")
    assert runs[["label", "status"]].values.tolist() == [
        ["exp", "finished"], ["lru", "finished"], ["lru", "failed"]]
    ring = runs[["r_min", "r_max"]]
    assert ring.iloc[0].isna().all()   # no ring on the rung without ring init
    assert ring.iloc[1:].values.tolist() == [[0.0, 0.9], [0.95, 0.9]]
    assert runs["steps"].tolist()[:2] == [10, 10]
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert "r_min" in failed["reason"]
    failed_summary = json.loads((Path(failed["run_dir"]) / "summary.json").read_text())
    assert "model.r_min=0.95" in failed_summary["overrides"]
    assert not (Path(failed["run_dir"]) / ".hydra").exists()  # Hydra writes nothing there
    # the rung without ring init got no ring: its folder and config show the model's default
    exp_dir = Path(runs["run_dir"][0])
    assert exp_dir.parent.name == "rungs_unit_disk" and "r_min" not in exp_dir.name

    table = build_table(runs, "ladder")
    assert table.rows == list(RUNG_NAMES) and table.columns == ["listops"]
    text = format_table(table, "markdown")
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for label in ("exp", "lru"):   # the finished run of seed 0 supersedes the failed one
        accuracy = 100 * runs[(runs["label"] == label) & (runs["status"] == "finished")][
            "test_accuracy"].iloc[0]
        assert f"{accuracy:.1f} (n=1)" in lines[label]
    assert "—" in lines["ring"]


# A multirun's stand-in: says it is ready, then waits; on SIGTERM it records the signal and
# ends as lru.train's sweep does (128 + the signal's number).
_WAITER = """
import signal, sys, time
from pathlib import Path
def stop(signum, frame):
    Path(sys.argv[1], "got").write_text(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[1], "ready").write_text("")
time.sleep(120)
"""
_RUNNER = """
import sys
from ablations.ladder import Multirun, run_multiruns
class Command(Multirun):
    command = property(lambda self: list(self.overrides))
folder = sys.argv[1]
failed = run_multiruns([
    Command("first", (sys.executable, "-c", sys.argv[2], folder)),
    Command("second", (sys.executable, "-c", "import sys, pathlib; "
                       "pathlib.Path(sys.argv[1], 'second').write_text('')", folder))])
print("failed:", [m.name for m in failed])
"""


def test_a_signal_to_the_ladder_reaches_its_multirun_and_starts_no_other(tmp_path):
    import signal
    import subprocess
    import time

    runner = subprocess.Popen([sys.executable, "-c", _RUNNER, str(tmp_path), _WAITER],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    deadline = time.time() + 120
    while not (tmp_path / "ready").exists() and time.time() < deadline:
        time.sleep(0.05)
    runner.send_signal(signal.SIGTERM)  # to the runner only, not its process group
    out, _ = runner.communicate(timeout=120)
    assert (tmp_path / "got").read_text() == "SIGTERM"  # forwarded to the multirun
    assert not (tmp_path / "second").exists(), out  # and nothing started after it
    assert "stopped by SIGTERM" in out and "failed: ['first']" in out, out


# The runner, with a SIGTERM that arrives while its first multirun is being started.
_EARLY = """
import os, signal, subprocess
real_popen = subprocess.Popen
def popen(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return real_popen(*args, **kwargs)
subprocess.Popen = popen
""" + _RUNNER


def test_a_signal_while_a_multirun_starts_is_passed_on_and_starts_no_other(tmp_path):
    import subprocess

    runner = subprocess.run([sys.executable, "-c", _EARLY, str(tmp_path), _WAITER], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    out = runner.stdout + runner.stderr
    assert "stopped by SIGTERM" in out and "failed: ['first']" in out, out
    assert runner.returncode == 0, out  # the runner itself was not killed by it
    assert not (tmp_path / "second").exists(), out
