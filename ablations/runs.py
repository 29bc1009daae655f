"""Every run under a folder as one pandas row: its ``summary.json`` plus config values.

A run is a folder that :func:`lru.training.loop.train` wrote into: it holds ``summary.json``, or at
least the ``config.yaml`` that ``train`` writes first (or, in folders from before Hydra
stopped writing into run folders, Hydra's ``.hydra/config.yaml``), when the job died before
it could write its summary. Such a run appears with the status
``"missing summary"``, so that tables can count it instead of silently dropping it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from lru.ladder import rung_of, uses_ring
from lru.training.registry import RING_KEYS

SUMMARY = "summary.json"
CONFIG = "config.yaml"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"

#: The status of a run whose folder has a config but no summary.json.
MISSING_SUMMARY = "missing summary"

#: Keys of the summary :func:`lru.training.loop.train` writes; every frame has these columns.
SUMMARY_COLUMNS = ("task", "model", "rung", "seed", "run_dir", "status", "reason",
                   "best_val_accuracy", "test_accuracy", "best_step", "majority_rate", "steps",
                   "params", "tokens_per_s", "wall_time_s")

#: Columns read from the run's config.yaml: column name -> config key.
CONFIG_COLUMNS = {
    "d_model": "model.d_model",
    "d_state": "model.d_state",
    "n_layers": "model.n_layers",
    "bidirectional": "model.bidirectional",
    "r_min": "model.r_min",
    "r_max": "model.r_max",
    "max_phase": "model.max_phase",
    "lr": "optimizer.lr",
    "batch_size": "trainer.batch_size",
    "planned_steps": "trainer.steps",
}

#: Config columns that describe the LRU's ring; left empty where no ring was used.
RING_COLUMNS = tuple(key.split(".", 1)[1] for key in RING_KEYS)

#: Folders inside a run that never hold another run.
_SKIP = {".hydra", "checkpoints", "tensorboard"}


def load_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run found anywhere under ``runs_dir``.

    Columns: the summary's keys (at least :data:`SUMMARY_COLUMNS`); ``label``, the row key of
    the tables and plots (:func:`run_label`); and :data:`CONFIG_COLUMNS` from the run's
    ``config.yaml``. ``run_dir`` is where the run's files are now (the summary records where
    they were written). The ring columns are empty for runs that used none
    (:func:`lru.ladder.uses_ring`: rungs before ``ring``, other models): those rungs start
    on the unit disk whatever the config says.

    Args:
      runs_dir: a sweep folder, a single run's folder, or any folder above them.

    Returns:
      The runs, sorted by task, label, seed and folder.

    Raises:
      FileNotFoundError: ``runs_dir`` does not exist or holds no run.
      ValueError: a ``summary.json`` or ``config.yaml`` cannot be read; the message names it.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}; give a sweep folder such as "
                                f"results/multirun/ladder/<task>/<time>")
    rows = [row for folder in _candidate_dirs(root) if (row := _read_run(folder)) is not None]
    if not rows:
        raise FileNotFoundError(
            f"no runs under {root}: no {SUMMARY} or run {CONFIG} in it or below; give the "
            f"folder a sweep wrote into (python -m ablations run ladder prints it)")
    frame = pd.DataFrame(rows)
    frame = frame.reindex(columns=list(dict.fromkeys([*SUMMARY_COLUMNS, *frame.columns])))
    return frame.sort_values(["task", "label", "seed", "run_dir"], ignore_index=True)


def run_label(layer: str, rung: str | None) -> str | None:
    """A run's row label in the tables and plots: its rung for the LRU, else its layer.

    Args:
      layer: the run's ``model.layer`` (the summary's ``model``): ``"lru"``, ``"s5"``, ...
      rung: its ``ablation.rung``; read only when ``layer`` is ``"lru"``.

    Returns:
      ``"ring"`` for the LRU on rung ``ring``, ``"s5"`` for S5.
    """
    return rung if layer == "lru" else layer


def _candidate_dirs(root: Path):
    for folder, subdirs, _ in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP)
        yield Path(folder)


def _read_run(folder: Path) -> dict[str, Any] | None:
    """The row of the run in ``folder``, or None when ``folder`` holds no run."""
    config_path = next((p for p in (folder / CONFIG, folder / HYDRA_CONFIG) if p.is_file()), None)
    config = _read_config(config_path) if config_path else None
    summary_path = folder / SUMMARY
    if summary_path.is_file():
        row = _read_summary(summary_path)
    elif config is not None and OmegaConf.select(config, "task.name") is not None:
        model = config.model.layer
        row = {"task": config.task.name, "model": model,
               "rung": rung_of(model, config.ablation.rung),
               "seed": config.seed, "status": MISSING_SUMMARY}
    else:
        return None
    row["run_dir"] = str(folder)
    row["label"] = run_label(row["model"], row["rung"])
    try:
        ring = uses_ring(row["model"], row["rung"])
    except ValueError:  # a job that failed on an unknown rung started on no ring
        ring = False
    for column, key in CONFIG_COLUMNS.items():
        value = OmegaConf.select(config, key) if config is not None else None
        row[column] = None if column in RING_COLUMNS and not ring else value
    return row


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read this summary ({e}); rerun that job with the same "
                         f"sweep folder to rewrite it, or delete the file to list the run as "
                         f"{MISSING_SUMMARY!r}") from None
    missing = [k for k in ("task", "model", "seed", "status") if k not in summary] \
        if isinstance(summary, dict) else ["(not a JSON object)"]
    if missing:
        raise ValueError(f"{path}: not a run summary (lacks {missing}); lru.training.loop.train writes "
                         f"these files: move anything else out of the runs folder")
    summary.setdefault("rung", None)
    return summary


def _read_config(path: Path):
    try:
        return OmegaConf.load(path)
    except Exception as e:  # yaml's and OmegaConf's errors have no common base
        raise ValueError(f"{path}: cannot read this config ({type(e).__name__}: {e}); fix or "
                         f"delete the file") from None
