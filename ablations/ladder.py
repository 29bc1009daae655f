"""The ablation ladder as Hydra multiruns: every rung and the baselines, over seeds.

One ladder is up to three ``python -m lru.train -m ...`` multiruns, each into its own
subfolder of one sweep folder (each keeps its own ``multirun.yaml``):

* ``rungs_unit_disk/``: the rungs without ring init (``rnn_relu`` ... ``stable_exp``), which
  start on the unit disk and take no ring;
* ``rungs_ring/``: the rungs with ring init (``ring``, ``lru``: :func:`lru.ladder.uses_ring`)
  with the task's ring ``model.r_min``, ``model.r_max``, ``model.max_phase``;
* ``baselines/``: ``model=s4d,s5`` (the rungs do not apply to them).

The ring of a task follows the LRU paper's Table 8 through ``conf/experiment/lru/<task>.yaml``,
where ``<task>`` is the task's name (``task.name``). The CPU-sized tasks share their full
task's name and so its ring: ``listops_mini`` uses ListOps' ``[0, 0.99]`` with phases up to
``2 pi``, ``pathfinder_mini`` uses Pathfinder's ``[0.9, 0.999]``, ``2 pi`` (576 steps to
Pathfinder's 1024); ``--experiment mini/listops`` keeps that file's shorter-memory ``[0, 0.9]``, chosen
for sequences of at most 256 steps. An ``--experiment`` that sets a ring itself
keeps it; ring overrides given after ``--`` beat both and go to the ring rungs only.

Each job runs :func:`lru.training.loop.train`, which never raises: a failed job writes
``"status": "failed"`` into its ``summary.json`` and the launcher goes on with the next
(Hydra's basic launcher runs the jobs one after another in one process; joblib runs them in
separate processes).
"""

from __future__ import annotations

import dataclasses
import datetime
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import OmegaConf

import lru
from lru.ladder import RUNG_NAMES, get_rung, uses_ring
from lru.training.registry import RING_KEYS
from lru.training.stop_signals import StopSignals

CONF = Path(lru.__file__).resolve().parent.parent / "conf"
LAUNCHERS = ("basic", "joblib")
DEFAULT_BASELINES = ("s4d", "s5")

#: Overrides the ladder sets itself -> the option that sets them.
RESERVED = {
    "seed": "--seeds",
    "ablation": "--rungs", "ablation.rung": "--rungs",
    "model": "--baselines", "model.layer": "--baselines",
    "task": "--task", "experiment": "--experiment",
    "hydra.sweep.dir": "--out", "hydra/launcher": "--launcher",
}


@dataclasses.dataclass(frozen=True)
class Multirun:
    """One ``python -m lru.train -m`` call: a subfolder name and its overrides."""

    name: str
    overrides: tuple[str, ...]

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "lru.train", "-m", *self.overrides]


def override_key(override: str) -> str:
    """The key an override sets: ``+model.r_min=0.5`` -> ``model.r_min``."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def compose_base(task: str | None, experiment: str | None):
    """The composed config of ``task=TASK +experiment=EXPERIMENT``, with Hydra's part.

    Raises Hydra's error (naming the missing file and the options) for a wrong name.
    """
    from hydra import compose, initialize_config_dir

    from lru.training.config import register

    register()
    overrides = ([f"task={task}"] if task else []) + ([f"+experiment={experiment}"] if experiment else [])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def experiment_files(experiment: str) -> list[Path]:
    """The files an experiment's settings come from, the one that wins first.

    An experiment file may include other experiment files in its defaults list (e.g.
    ``synthetic/mqar`` includes ``synthetic/_protocol``, written relative to the experiment
    group or as ``/experiment/...``). Hydra merges the list in order with the file's own
    keys at ``_self_`` (last when not written), so a later entry beats an earlier one; the
    includes are followed recursively. Group overrides (``override /task: ...``) set no key.
    """
    path = CONF / "experiment" / f"{experiment}.yaml"
    entries = [e for e in OmegaConf.load(path).get("defaults", None) or [] if isinstance(e, str)]
    if "_self_" not in entries:
        entries.append("_self_")
    files: list[Path] = []
    for entry in reversed(entries):
        if entry == "_self_":
            files.append(path)
        elif not entry.startswith("/"):
            files += experiment_files(entry)
        elif entry.startswith("/experiment/"):
            files += experiment_files(entry[len("/experiment/"):])
    return files


def task_ring(task_name: str, experiment: str | None = None) -> dict[str, object]:
    """The ring rungs' ``model.r_min``, ``model.r_max``, ``model.max_phase`` for a task.

    Each key comes from the experiment when it sets it (its file or an experiment file it
    includes: :func:`experiment_files`), else from the LRU paper's settings for the task,
    ``conf/experiment/lru/<task_name>.yaml``.

    Raises:
      ValueError: neither sets a key; the message says how to give the ring.
    """
    paper = CONF / "experiment" / "lru" / f"{task_name}.yaml"
    sources = (experiment_files(experiment) if experiment else []) + [paper]
    configs = [OmegaConf.load(p) for p in sources if p.is_file()]
    ring = {}
    for key in RING_KEYS:
        values = [v for c in configs if (v := OmegaConf.select(c, key)) is not None]
        if not values:
            raise ValueError(
                f"no ring for task {task_name!r}: {paper} does not exist"
                + (f" and --experiment {experiment} sets no {key}" if experiment else "")
                + "; give it after --, e.g. -- model.r_min=0.9 model.r_max=0.999 "
                  "model.max_phase=6.283185307179586")
        ring[key] = values[0]
    return ring


def default_out(task_config: str) -> Path:
    """``results/multirun/ladder/<task config>/<date>_<time>``."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return Path("results") / "multirun" / "ladder" / task_config / stamp


def plan_ladder(*, task: str | None, experiment: str | None, seeds: int,
                rungs: Sequence[str] = RUNG_NAMES, baselines: Sequence[str] = DEFAULT_BASELINES,
                launcher: str = "basic", out: str | Path | None = None,
                overrides: Sequence[str] = ()) -> tuple[Path, list[Multirun]]:
    """The multiruns of one ladder, and the sweep folder they write into.

    Args:
      task: a task config (``conf/task/<task>.yaml``, e.g. ``listops_mini``), or None to take
        the experiment's.
      experiment: an experiment config (``conf/experiment/<experiment>.yaml``, e.g.
        ``mini/listops``) to start from, or None.
      seeds: seeds ``0 .. seeds-1``, each a job per rung and baseline.
      rungs: rung names (:data:`lru.ladder.RUNG_NAMES`), run in ladder order.
      baselines: other models (``conf/model/<name>.yaml``), e.g. ``("s4d", "s5")``.
      launcher: ``"basic"`` (one job after another) or ``"joblib"`` (parallel processes).
      out: the sweep folder; default :func:`default_out`.
      overrides: further Hydra overrides for every job; ring keys among them go to the ring
        rungs only and replace the task's ring.

    Raises:
      ValueError: a bad name, number or override; the message names the fix.
    """
    if task is None and experiment is None:
        raise ValueError("give --task (a conf/task file, e.g. listops_mini) or --experiment "
                         "(a conf/experiment file, e.g. mini/listops)")
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1; got {seeds}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher {launcher!r} is not one of {LAUNCHERS}")
    for rung in rungs:
        get_rung(rung)
    models = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem not in ("lru", "schema"))
    for model in baselines:
        if model not in models:
            raise ValueError(f"baseline {model!r} has no conf/model/{model}.yaml; choose from {models}")
    ring_overrides, rest = [], []
    for override in overrides:
        key = override_key(override)
        if key in RESERVED:
            raise ValueError(f"{override!r}: the ladder sets {key} itself; use {RESERVED[key]}")
        (ring_overrides if key in RING_KEYS else rest).append(override)

    base = compose_base(task, experiment)
    if rungs and base.model.layer != "lru":
        raise ValueError(f"--experiment {experiment} trains model.layer={base.model.layer}; the "
                         f"rungs need an LRU experiment (e.g. mini/listops); baselines run "
                         f"through --baselines")
    out = Path(out) if out is not None else default_out(base.hydra.runtime.choices.task)
    common = ([f"task={task}"] if task else []) + \
        ([f"+experiment={experiment}"] if experiment else []) + \
        (["hydra/launcher=joblib"] if launcher == "joblib" else [])
    seed_list = "seed=" + ",".join(str(s) for s in range(seeds))

    def multirun(name: str, sweep: list[str]) -> Multirun:
        return Multirun(name, (f"hydra.sweep.dir={out / name}", *common, *sweep, seed_list))

    ordered = [r for r in RUNG_NAMES if r in rungs]
    ring = [r for r in ordered if uses_ring("lru", r)]
    disk = [r for r in ordered if r not in ring]
    runs = []
    if disk:
        runs.append(multirun("rungs_unit_disk", ["ablation=" + ",".join(disk), *rest]))
    if ring:
        given = {override_key(o) for o in ring_overrides}
        task_values = task_ring(base.task.name, experiment) if set(RING_KEYS) - given else {}
        defaults = [f"{k}={v}" for k, v in task_values.items() if k not in given]
        runs.append(multirun("rungs_ring", ["ablation=" + ",".join(ring), *defaults,
                                            *ring_overrides, *rest]))
    if baselines:
        runs.append(multirun("baselines", ["model=" + ",".join(baselines), *rest]))
    return out, runs


def run_multiruns(multiruns: Sequence[Multirun], *, dry_run: bool = False,
                  echo: Callable[[str], None] = print) -> list[Multirun]:
    """Print each multirun's command and, unless ``dry_run``, run it; return the failed ones.

    A multirun that exits non-zero (a bad override, a crash outside the training loop) does
    not stop the others; a failed *job* inside one is no failure here: it is recorded in its
    ``summary.json`` and the launcher carries on.
    """
    failed = []
    for m in multiruns:
        echo(f"$ {shlex.join(m.command)}")
        if dry_run:
            continue
        code, signum = _run_forwarding_signals(m.command)
        if code != 0:
            failed.append(m)
        if signum is not None:
            echo(f"stopped by {signal.Signals(signum).name}: the multiruns after {m.name} were "
                 f"not started; run the same command again to resume")
            break
    return failed


def _run_forwarding_signals(command: Sequence[str]) -> tuple[int, int | None]:
    """Run ``command``, passing SIGTERM and SIGINT on to it; ``(exit status, the signal this
    process received or the child ended by, else None)``.

    The child (``python -m lru.train -m``) preempts its job on either signal and ends its
    sweep with status 128 + the signal (:func:`lru.train.stop_sweep`).
    """
    child: subprocess.Popen | None = None
    passed_on: list[int] = []

    def forward(signum: int) -> None:
        if child is not None:
            child.send_signal(signum)
            passed_on.append(signum)

    # The handlers come first, so that no signal finds the child without them.
    with StopSignals(forward) as stop:
        if stop.received:  # stopped before the child was started: do not start it
            return 128 + stop.received, stop.received
        child = subprocess.Popen(command)
        if stop.received and not passed_on:  # arrived while the child was being started
            child.send_signal(stop.received)
        code = child.wait()
    if stop.received:
        return code, stop.received
    ended_by = -code if code < 0 else code - 128  # killed by it, or exited 128 + it
    return code, ended_by if ended_by in (signal.SIGTERM, signal.SIGINT) else None
