"""The hidden-state norms that trained runs reach on their own task's data, beside their
accuracy: the quantity gamma normalisation controls (the LRU paper, Section 3.3 and
Proposition 3), measured where it matters instead of on white noise.

For each run under a folder, the model at initialisation (the run's seed) and after training
(its ``best`` checkpoint) is run on the first ``batch`` examples of the task's test split, and
:func:`lru.analysis.layer_state_norms` gives each recurrent layer's mean ``||x_t|| /
sqrt(n)``. A run without a checkpoint (checkpoints are not committed) is listed with its
accuracy and no trained norm.

    python -m ablations state-norms results/mini/runs/pathfinder_gamma --out norms.md
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

import tasks
from ablations.runs import load_runs
from ablations.stats import finished_runs
from lru.analysis import layer_state_norms
from lru.training.batching import make_batch
from lru.training.restore import load_config, load_model

#: The columns of :func:`measure`'s frame, in order.
COLUMNS = ("label", "seed", "test_accuracy", "layers", "init_mean", "init_max",
           "trained_mean", "trained_max", "run_dir")


def first_test_examples(run_dir: str | Path, batch: int) -> dict[str, np.ndarray]:
    """The first ``batch`` examples of the run's test split, as the trainer batches them.

    Raises:
      ValueError: the task pairs two documents per example (retrieval).
      tasks.DataNotFoundError: the run's data folder is missing (the message names it).
    """
    cfg = load_config(run_dir)
    options = OmegaConf.to_container(cfg.task.options, resolve=True)
    cache = Path(cfg.task.cache_dir).expanduser() if cfg.task.cache_dir else None
    split = tasks.load(cfg.task.name, "test", Path(cfg.task.data_dir).expanduser(),
                       cache_dir=cache, **options)
    if split.inputs2 is not None:
        raise ValueError(f"{run_dir}: task {cfg.task.name} pairs two documents; state norms "
                         f"are measured for single-sequence tasks only")
    return make_batch(split, np.arange(min(batch, len(split))))


def run_norms(run_dir: str | Path, which: str, data: dict[str, np.ndarray]) -> dict[str, float]:
    """Each recurrent layer's mean state norm for the run's ``which`` model on ``data``."""
    model = load_model(run_dir, which)
    return layer_state_norms(model, data["inputs"], data["lengths"])


def measure(runs_dir: str | Path, *, batch: int = 64) -> pd.DataFrame:
    """One row per finished seed under ``runs_dir``: :data:`COLUMNS`.

    The runs are those the tables count (:func:`ablations.stats.finished_runs`: finished
    with a test accuracy, one run per seed). ``init_*``/``trained_*`` are the mean and the
    largest over the run's recurrent layers of their mean state norm; ``trained_*`` are NaN
    where the run kept no ``best`` checkpoint.

    Raises:
      ValueError: one seed of a task and label finished twice (the message names the
        folders).
    """
    runs = finished_runs(load_runs(runs_dir))
    rows = []
    for run in runs.itertuples():
        data = first_test_examples(run.run_dir, batch)
        init = run_norms(run.run_dir, "init", data)
        try:
            trained = run_norms(run.run_dir, "best", data)
        except FileNotFoundError:
            trained = {}
        rows.append({"label": run.label, "seed": run.seed,
                     "test_accuracy": run.accuracy, "layers": len(init),
                     "init_mean": np.mean(list(init.values())) if init else np.nan,
                     "init_max": max(init.values(), default=np.nan),
                     "trained_mean": np.mean(list(trained.values())) if trained else np.nan,
                     "trained_max": max(trained.values(), default=np.nan),
                     "run_dir": run.run_dir})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_norms(frame: pd.DataFrame, fmt: str = "markdown") -> str:
    """``frame`` as markdown (one row per run, rounded) or CSV (every digit)."""
    if fmt == "csv":
        return frame.to_csv(index=False, float_format="%.6g")
    shown = frame.drop(columns=["run_dir"]).rename(columns={
        "test_accuracy": "test acc. (%)", "init_mean": "‖x‖ init (mean)",
        "init_max": "‖x‖ init (max)", "trained_mean": "‖x‖ trained (mean)",
        "trained_max": "‖x‖ trained (max)"})
    note = ("Mean hidden-state norm ‖x_t‖ / √n of each recurrent layer on the first test "
            "examples (mean over examples and valid steps), averaged (mean) and largest (max) "
            "over the layers; init = the run's untrained model, trained = its best checkpoint "
            "(— where the checkpoint is not kept).")
    shown = shown.astype(object).where(shown.notna(), None)  # NaN -> missingval
    return note + "\n\n" + shown.to_markdown(index=False, floatfmt=".2f", missingval="—") + "\n"
