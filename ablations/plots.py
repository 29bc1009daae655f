"""The ablation suite's plots: each a function returning a :class:`matplotlib.figure.Figure`.

The figures are built with matplotlib's object API (``Figure`` directly, never ``pyplot``),
so nothing here touches a global backend or opens a window: a script saves them with
``fig.savefig(path)`` (Agg for PNG, matplotlib's PDF backend for PDF), a notebook displays
them with ``display(fig)`` or as a cell's last value.

* :func:`plot_eigenvalues`: every layer's eigenvalues at init and after training, with the
  unit circle and the run's initialisation ring.
* :func:`plot_rung_accuracy`: test accuracy per rung per task, mean and standard error over
  seeds, the paper's value marked: :func:`accuracy_data`, the numbers of the table's cells
  (the same rules, :mod:`ablations.stats` and :func:`ablations.reference.paper_cells`).
* :func:`plot_training_curves`: loss and accuracy against step from ``metrics.jsonl``.
* :func:`plot_rmin_rmax_heatmap`: accuracy over an ``r_min x r_max`` grid.
* :func:`plot_state_norms`: the hidden-state norm over time of every rung at initialisation
  (the signal-propagation argument of the paper's Section 3).
* :func:`plot_extrapolation`: accuracy against evaluation length of per-token runs, the
  training length marked (the Griffin paper's Fig. 6): :func:`extrapolation_lines`, from
  :func:`ablations.extrapolate.extrapolate`'s frame.

``python -m ablations plot KIND ... --out FILE.png|.pdf`` is :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pandas as pd
from flax import nnx
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Wedge
from omegaconf import DictConfig

from ablations.reference import paper_cells, paper_numbers
from ablations.runs import load_runs, run_label
from ablations.stats import (RUN_COLUMNS, SETTING, finished_runs, is_finished, seed_stats,
                             standard_error)
from ablations.table import LRA_TASKS, cell_stats
from lru.analysis import expected_state_norm, layer_eigenvalues
from lru.ladder import RUNG_NAMES, uses_ring
from lru.layers.lru import LRU
from lru.training.restore import load_config, load_model

#: Columns of an ``r_min x r_max`` grid (:func:`sweep_grid`, or the paper's grid).
GRID_COLUMNS = ("r_min", "r_max", "value")
#: File types :func:`main` writes.
FORMATS = (".png", ".pdf", ".svg")

_PAPER_STYLE = {"marker": "D", "color": "black", "markersize": 6, "linestyle": "none", "zorder": 5}


# --------------------------------------------------------------------------- helpers


def _ladder_rank(name: str) -> tuple[int, str]:
    """Sort key: rungs in ladder order, then everything else by name."""
    return (RUNG_NAMES.index(name), "") if name in RUNG_NAMES else (len(RUNG_NAMES), name)


def label_order(labels) -> list[str]:
    """Labels in display order: the ladder's rungs bottom to top, then other models by name."""
    return sorted(set(labels), key=_ladder_rank)


def task_order(task_names) -> list[str]:
    """Tasks in the LRA table's order, then any others by name."""
    return sorted(set(task_names), key=lambda t: (LRA_TASKS.index(t), "") if t in LRA_TASKS
                  else (len(LRA_TASKS), t))


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """A run's ``metrics.jsonl`` as a frame: one row per record (``step``, ``split``, ``loss``,
    ``accuracy``, ...); empty when the run logged nothing yet.

    An incomplete last line (a run still writing) is skipped; a malformed line elsewhere
    raises a ValueError naming the file and line.
    """
    path = Path(run_dir) / "metrics.jsonl"
    lines = [line for line in (path.read_text() if path.is_file() else "").splitlines()
             if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number} is not a JSON object: {line[:80]!r}") from None
    if not records:
        return pd.DataFrame(columns=["step", "split", "loss", "accuracy"])
    return pd.DataFrame.from_records(records)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the frame lacks columns {missing} (it has "
                         f"{list(frame.columns)}); pass {source}")


def _colors(n: int) -> list:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def _grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


# --------------------------------------------------------------------------- eigenvalues


def _ring(cfg: DictConfig) -> tuple[float, float, float] | None:
    """``(r_min, r_max, max_phase)`` of a run whose layers start on a ring
    (:func:`lru.ladder.uses_ring`), else None."""
    if not uses_ring(cfg.model.layer, cfg.ablation.rung):
        return None
    return float(cfg.model.r_min), float(cfg.model.r_max), float(cfg.model.max_phase)


def _layer_name(path: str, index: int) -> str:
    numbers = [p for p in path.split("/") if p.isdigit()]
    return f"layer {numbers[0]}" if numbers else f"layer {index} ({path})"


def plot_eigenvalues(run_dir: str | Path, *, which: str = "best") -> Figure:
    """Every layer's eigenvalues in the complex plane, at init and after training.

    Three panels: the initial eigenvalues, the trained ones (both with the unit circle and,
    for rungs initialised on a ring, the ring ``r_min <= |lambda| <= r_max``,
    ``0 <= arg lambda <= max_phase`` from the run's config shaded), and the distribution of
    ``|lambda|`` before and after.

    Args:
      run_dir: a run directory (``config.yaml`` and ``checkpoints/``).
      which: the trained checkpoint, ``"best"`` or ``"latest"``.

    Returns:
      The figure.

    Raises:
      ValueError: the model has no layer with an ``eigenvalues()`` method.
      FileNotFoundError: no ``config.yaml`` or no checkpoint (see :func:`lru.training.restore.load_model`).
    """
    if which not in ("best", "latest"):
        raise ValueError(f"plot_eigenvalues: which={which!r}; choose 'best' or 'latest'")
    cfg = load_config(run_dir)
    before = layer_eigenvalues(load_model(run_dir, "init"))
    after = layer_eigenvalues(load_model(run_dir, which))
    if not before:
        raise ValueError(f"plot_eigenvalues: the model of {run_dir} ({cfg.model.layer}) has no "
                         f"recurrent layer with an eigenvalues() method to plot")
    ring = _ring(cfg)
    fig = Figure(figsize=(15, 5), layout="constrained")
    ax_init, ax_trained, ax_mod = fig.subplots(1, 3)
    colors = _colors(len(before))
    extent = 1.05 * max(1.0, *(np.abs(v).max() for v in (*before.values(), *after.values())))
    start_on = "" if ring is not None or cfg.model.layer != "lru" else " (on the unit disk)"
    for ax, values, title in ((ax_init, before, f"at initialisation{start_on}"),
                              (ax_trained, after, f"after training ({which} checkpoint)")):
        ax.add_patch(Circle((0, 0), 1.0, fill=False, color="black", linewidth=0.8))
        if ring is not None:
            r_min, r_max, max_phase = ring
            ax.add_patch(Wedge((0, 0), r_max, 0.0, np.degrees(min(max_phase, 2 * np.pi)),
                               width=r_max - r_min, color="tab:orange", alpha=0.2,
                               label=f"init ring: {r_min:g} ≤ |λ| ≤ {r_max:g}, "
                                     f"arg λ ≤ {max_phase:.3g}"))
        for i, ((path, lam), color) in enumerate(zip(values.items(), colors)):
            lam = np.ravel(lam)
            ax.scatter(lam.real, lam.imag, s=6, color=color, alpha=0.7,
                       label=_layer_name(path, i))
        ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal",
               xlabel="Re λ", ylabel="Im λ", title=title)
        ax.axhline(0, color="grey", linewidth=0.4)
        ax.axvline(0, color="grey", linewidth=0.4)
    ax_init.legend(loc="lower left", fontsize="small", markerscale=2)
    start = np.concatenate([np.abs(np.ravel(v)) for v in before.values()])
    end = np.concatenate([np.abs(np.ravel(v)) for v in after.values()])
    # Bins over the occupied range: a ring close to 1 keeps its detail.
    bins = np.linspace(min(start.min(), end.min()), max(1.0, start.max(), end.max()), 41)
    ax_mod.hist(start, bins=bins, histtype="step", linewidth=1.5, label="init")
    ax_mod.hist(end, bins=bins, histtype="step", linewidth=1.5, label=f"trained ({which})")
    ax_mod.axvline(1.0, color="black", linewidth=0.8)
    if ring is not None:
        for r in ring[:2]:
            ax_mod.axvline(r, color="tab:orange", linestyle="--", linewidth=1)
    ax_mod.set(xlabel="|λ|", ylabel="eigenvalues (all layers)", title="modulus")
    ax_mod.legend(fontsize="small")
    fig.suptitle(f"Eigenvalues: {cfg.task.name}, "
                 f"{run_label(cfg.model.layer, cfg.ablation.rung)}, seed {cfg.seed}")
    return fig


# --------------------------------------------------------------------------- accuracy


def accuracy_data(runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The numbers :func:`plot_rung_accuracy` draws: per task and label, those of the table.

    The means and standard errors are :func:`ablations.stats.seed_stats`' (as in
    :func:`ablations.table.build_table`): finished seeds only, each once (two finished runs
    of one seed are an error), no standard error for one seed; the papers' values are
    :func:`ablations.reference.paper_cells`' (exact match of label and model).

    Args:
      runs: one row per run, as ``ablations.runs.load_runs`` returns, with columns
        :data:`ablations.stats.RUN_COLUMNS` (``test_accuracy`` a fraction, missing when the
        run did not finish).
      reference: the papers' numbers, as ``ablations.reference.paper_numbers("ladder")``
        returns (columns ``model, task, value, source``); None: no paper columns.

    Returns:
      One row per task (LRA order) and label (ladder order, then other models) of ``runs``,
      every label on every task (``seeds`` 0 where it has no run there): ``task``, ``label``, ``mean`` and ``sem`` (percent; NaN without a finished seed,
      ``sem`` NaN with one), ``seeds`` (seeds run), ``finished``, ``accuracies`` (a tuple:
      each finished seed's accuracy in percent, by seed), ``unfinished`` (the seeds that did
      not finish, counted by status as the table counts them: ``"2 failed, 1 preempted"``;
      empty if none) and, with ``reference``, ``paper``
      (NaN where the paper prints no number or has no row) and ``source`` (NaN where it has
      no row).

    Raises:
      ValueError: a frame lacks columns, ``runs`` is empty, or one seed of a task and label
        finished twice (the message names the folders).
    """
    _require_columns(runs, RUN_COLUMNS, "plot_rung_accuracy(runs)", "ablations.runs.load_runs(...)")
    if runs.empty:
        raise ValueError("plot_rung_accuracy: no runs to plot (the runs frame is empty)")
    grid = pd.MultiIndex.from_product([task_order(runs["task"]), label_order(runs["label"])],
                                      names=list(SETTING))
    data = cell_stats(runs).set_index(list(SETTING)).reindex(grid)
    statuses = [c for c in data.columns if c not in ("mean", "sem", "seeds", "finished")]
    counts = ["seeds", "finished", *statuses]
    data[counts] = data[counts].fillna(0).astype(int)
    data["unfinished"] = [", ".join(f"{int(row[s])} {s}" for s in statuses if row[s])
                          for _, row in data.iterrows()]
    per_seed = finished_runs(runs).sort_values("seed").groupby(list(SETTING))["accuracy"]
    accuracies = per_seed.agg(tuple)
    data["accuracies"] = [accuracies.get(key, ()) for key in data.index]
    data = data.reset_index()
    if reference is not None:
        papers = paper_cells(reference).rename(columns={"value": "paper"}).reset_index()
        data = data.merge(papers, on=["label", "task"], how="left")
    return data


def plot_rung_accuracy(runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> Figure:
    """Test accuracy per rung (or model) per task: mean and standard error over seeds.

    One panel per task; on each, a bar per label (ladder order, then baselines) at the mean
    test accuracy over the finished seeds with its standard error (none for one seed), each
    seed as a dot, and the paper's value as a black diamond (✗ where the paper prints a
    failure). A label that has runs but no finished one shows what became of them, as the
    table counts them (``3 failed``; never a zero bar). The numbers are
    :func:`accuracy_data`'s, the same as the table's.

    Args:
      runs, reference: as :func:`accuracy_data`.

    Returns:
      The figure.

    Raises:
      ValueError: as :func:`accuracy_data`.
    """
    data = accuracy_data(runs, reference)
    labels = label_order(data["label"])
    task_names = task_order(data["task"])
    rows, cols = _grid_shape(len(task_names))
    fig = Figure(figsize=(max(4.0, 0.55 * len(labels) + 1.5) * cols, 4.2 * rows),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    colors = dict(zip(labels, _colors(len(labels))))
    rng = np.random.default_rng(0)  # dot jitter only
    crosses = False
    for ax, task in zip(axes, task_names):
        for x, cell in enumerate(data[data["task"] == task].itertuples()):
            if cell.finished:
                ax.bar(x, cell.mean, yerr=None if np.isnan(cell.sem) else cell.sem, capsize=4,
                       color=colors[cell.label], alpha=0.6, edgecolor=colors[cell.label])
                ax.scatter(x + rng.uniform(-0.15, 0.15, cell.finished), cell.accuracies, s=10,
                           color="black", alpha=0.6, zorder=4)
            elif cell.seeds:  # no bar (never a zero): what became of its runs
                ax.text(x, 1, cell.unfinished, rotation=90, ha="center", va="bottom",
                        color="red", fontsize="small")
            if reference is not None and pd.notna(cell.paper):
                ax.plot([x], [cell.paper], **_PAPER_STYLE)
            elif reference is not None and pd.notna(cell.source):  # printed ✗: a failure
                ax.text(x, 95, "✗", ha="center", va="top", fontsize="large")
                crosses = True
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set(title=task, ylabel="test accuracy (%)", ylim=(0, 100))
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(task_names):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color="black", marker="o", linestyle="none", markersize=3,
                      label="one seed")]
    if reference is not None:
        handles.append(Line2D([], [], label="paper", **_PAPER_STYLE))
    if crosses:
        handles.append(Line2D([], [], marker="$✗$", color="black", linestyle="none",
                              label="paper: ✗ (failed)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    fig.suptitle("Test accuracy per rung: mean ± standard error over seeds")
    return fig


# --------------------------------------------------------------------------- training curves


def _runs_to_plot(runs: pd.DataFrame | Sequence[str | Path]) -> pd.DataFrame:
    """``(task, label, run_dir)`` rows from a runs frame or from run directories."""
    columns = ["task", "label", "run_dir"]
    if isinstance(runs, pd.DataFrame):
        _require_columns(runs, columns, "plot_training_curves(runs)",
                         "ablations.runs.load_runs(...) or a list of run directories")
        return runs[columns]
    rows = []
    for run_dir in runs:
        cfg = load_config(run_dir)
        rows.append({"task": cfg.task.name, "label": run_label(cfg.model.layer, cfg.ablation.rung),
                     "run_dir": str(run_dir)})
    return pd.DataFrame(rows, columns=columns)


def plot_training_curves(runs: pd.DataFrame | Sequence[str | Path], *,
                         by: str = "label") -> Figure:
    """Loss and accuracy against step, train and validation, one line per run.

    A row of two panels (loss, accuracy) per task; runs of one label share a colour (train:
    thin solid line, validation: dashed with markers).

    Args:
      runs: run directories, or a runs frame (``ablations.runs.load_runs``) with columns
        ``task``, ``label``, ``run_dir``.
      by: ``"label"`` (a colour per rung or model) or ``"run"`` (a colour per run, named by
        its folder: for comparing settings of one model, such as a protocol search).

    Returns:
      The figure.

    Raises:
      ValueError: no run has any logged metric.
    """
    if by not in ("label", "run"):
        raise ValueError(f"plot_training_curves: by={by!r}; choose 'label' or 'run'")
    frame = _runs_to_plot(runs)
    if by == "run":
        frame = frame.assign(label=[Path(d).name for d in frame["run_dir"]])
    task_names = task_order(frame["task"])
    labels = label_order(frame["label"])
    colors = dict(zip(labels, _colors(len(labels))))
    fig = Figure(figsize=(12, 3.8 * max(len(task_names), 1)), layout="constrained")
    axes = fig.subplots(max(len(task_names), 1), 2, squeeze=False)
    plotted = set()
    for (ax_loss, ax_acc), task in zip(axes, task_names):
        for row in frame[frame["task"] == task].itertuples():
            metrics = read_metrics(row.run_dir)
            for split, style in (("train", {"linewidth": 0.8, "alpha": 0.6}),
                                 ("val", {"linestyle": "--", "marker": "o", "markersize": 3})):
                part = metrics[metrics["split"] == split].sort_values("step")
                if part.empty:
                    continue
                plotted.add(row.label)
                for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
                    ax.plot(part["step"], part[key], color=colors[row.label], **style)
        ax_loss.set(title=f"{task}: loss", xlabel="step", ylabel="cross-entropy")
        ax_acc.set(title=f"{task}: accuracy", xlabel="step", ylabel="accuracy", ylim=(0, 1))
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
    if not plotted:
        raise ValueError("plot_training_curves: none of the runs has a metrics.jsonl with "
                         f"records ({len(frame)} run(s) given)")
    handles = [Line2D([], [], color=colors[label], label=label)
               for label in labels if label in plotted]
    handles += [Line2D([], [], color="grey", linewidth=0.8, label="train"),
                Line2D([], [], color="grey", linestyle="--", marker="o", markersize=3,
                       label="val")]
    fig.legend(handles=handles, fontsize="small", loc="outside right upper")
    return fig


# --------------------------------------------------------------------------- r_min x r_max


def sweep_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """The ``r_min x r_max`` grid of a sweep: mean test accuracy per task, label and ring.

    ``r_min`` and ``r_max`` come from each run's ``config.yaml`` (``model.r_min``,
    ``model.r_max``). Runs that did not finish are left out, and so are runs without a ring
    (:func:`lru.ladder.uses_ring`: rungs before ``ring``, other models), which ignore those
    keys. Each cell counts a seed once, as the table does (:mod:`ablations.stats`).

    Args:
      runs: a runs frame with columns :data:`ablations.stats.RUN_COLUMNS`.

    Returns:
      Columns ``task``, ``label``, ``r_min``, ``r_max``, ``value`` (mean test accuracy,
      percent) and ``n`` (finished seeds), one row per task, label and ring.

    Raises:
      ValueError: the frame lacks columns, or one seed of a task, label and ring finished
        twice (the message names the folders).
    """
    _require_columns(runs, RUN_COLUMNS, "sweep_grid(runs)",
                     "ablations.runs.load_runs(...) of a sweep over model.r_min/model.r_max")
    done = runs[is_finished(runs)]
    rings = [_ring(load_config(d)) for d in done["run_dir"]]
    ring = [r for r in rings if r is not None]
    ringed = done[np.array([r is not None for r in rings], dtype=bool)]
    ringed = ringed.assign(r_min=[r[0] for r in ring], r_max=[r[1] for r in ring])
    columns = [*SETTING, "r_min", "r_max"]
    grid = seed_stats(ringed, columns).reset_index()
    return grid.rename(columns={"mean": "value", "finished": "n"})[[*columns, "value", "n"]]


#: Columns that split a grid into separate heatmaps, when present.
_PANEL_COLUMNS = ("task", "label", "model", "setting")


def plot_rmin_rmax_heatmap(grid: pd.DataFrame) -> Figure:
    """Accuracy over an ``r_min x r_max`` grid, one heatmap per task (and label or setting).

    Args:
      grid: either a grid with columns ``r_min``, ``r_max``, ``value`` (percent) and
        optionally ``task``, ``label``, ``model``, ``setting`` (each distinct combination is
        one panel): :func:`sweep_grid`'s result, or the paper's Table 5
        (``ablations.reference.load("lru_rmin_rmax")``); or a runs frame of a sweep over
        ``model.r_min``/``model.r_max`` (columns ``task``, ``label``, ``status``,
        ``test_accuracy``, ``run_dir``), which goes through :func:`sweep_grid`. Repeated
        cells are averaged; cells without a value stay blank.

    Returns:
      The figure.
    """
    if not set(GRID_COLUMNS) <= set(grid.columns):
        if "run_dir" not in grid.columns:
            raise ValueError(f"plot_rmin_rmax_heatmap: need a grid with columns {GRID_COLUMNS} "
                             f"or a runs frame with run_dir; got columns {list(grid.columns)}")
        grid = sweep_grid(grid)
    grid = grid.dropna(subset=["value"])
    if grid.empty:
        raise ValueError("plot_rmin_rmax_heatmap: the grid is empty (no finished run with a "
                         "ring: rungs 'ring' and 'lru' read model.r_min/model.r_max)")
    by = [c for c in _PANEL_COLUMNS if c in grid.columns]
    panels = [(k if isinstance(k, tuple) else (k,), part)
              for k, part in (grid.groupby(by) if by else [((), grid)])]
    panels.sort(key=lambda kv: [_ladder_rank(str(k)) for k in kv[0]])
    rows, cols = _grid_shape(len(panels))
    fig = Figure(figsize=(4.8 * cols + 1, 4.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    # One colour scale for every panel, so that colours compare across them.
    low, high = float(np.nanmin(grid["value"])), float(np.nanmax(grid["value"]))
    middle = (low + high) / 2
    for ax, (key, part) in zip(axes, panels):
        table = part.pivot_table(index="r_min", columns="r_max", values="value", aggfunc="mean")
        values = table.to_numpy(float)
        image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", origin="lower",
                          aspect="auto", vmin=low, vmax=high)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize="small",
                        color="white" if v < middle else "black")
        ax.set_xticks(range(values.shape[1]), [f"{r:g}" for r in table.columns])
        ax.set_yticks(range(values.shape[0]), [f"{r:g}" for r in table.index])
        ax.set(xlabel="r_max", ylabel="r_min",
               title=" · ".join(str(k) for k in key if str(k)) or "accuracy")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=list(axes[:len(panels)]), label="test accuracy (%)")
    return fig


# --------------------------------------------------------------------------- state norms


def state_norms(rungs: Sequence[str] = RUNG_NAMES, *, length: int = 1024, batch: int = 8,
                d_model: int = 16, d_state: int = 64, r_min: float = 0.9,
                r_max: float = 0.999, max_phase: float = 2 * np.pi,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Hidden-state norm over time of each rung's freshly initialised layer.

    Each rung's :class:`lru.layers.lru.LRU` (``d_model``, ``d_state``; rungs with ring init
    on the ring ``r_min <= |lambda| <= r_max``, the others on the unit disk) runs on the same
    white-noise inputs ``u: (batch, length, d_model)`` of unit variance. ``B`` is scaled so
    that every component of ``B u_t`` has unit variance, so a state that neither explodes nor
    vanishes keeps a norm per component near 1.

    Returns:
      ``{rung: (length,) float array}``: the batch mean of ``||x_t|| / sqrt(n)`` at
      ``t = 1 .. length``, where ``n`` is the state size; ``inf``/``nan`` where it
      overflowed.
    """
    u = jax.random.normal(jax.random.key(seed), (batch, length, d_model), jnp.float32)
    norms = {}
    for rung in rungs:
        ring = ({"r_min": r_min, "r_max": r_max, "max_phase": max_phase}
                if uses_ring("lru", rung) else {})
        layer = LRU(d_model, d_state, rung=rung, rngs=nnx.Rngs(seed), **ring)
        x = layer.states(u)  # (b, t, n)
        norms[rung] = np.asarray(jnp.mean(jnp.linalg.norm(x, axis=-1), axis=0) / np.sqrt(d_state))
    return norms


def plot_state_norms(rungs: Sequence[str] = RUNG_NAMES, *, length: int = 1024,
                     batch: int = 8, d_model: int = 16, d_state: int = 64, r_min: float = 0.9,
                     r_max: float = 0.999, max_phase: float = 2 * np.pi,
                     seed: int = 0) -> Figure:
    """Hidden-state norm over time for each rung at initialisation (paper, Section 3).

    Plots :func:`state_norms` on log-log axes: without gamma normalisation, eigenvalues near
    the unit circle inflate the state (by ``1 / sqrt(1 - |lambda|^2)`` per mode; dense
    linear recurrences with an eigenvalue outside the circle explode), while the LRU's gamma
    keeps it at the input's scale. Dotted lines mark Proposition 3's stationary norm on the
    ring without gamma (:func:`lru.analysis.expected_state_norm`) and with it (1).

    Args: as :func:`state_norms`.

    Returns:
      The figure.
    """
    norms = state_norms(rungs, length=length, batch=batch, d_model=d_model, d_state=d_state,
                        r_min=r_min, r_max=r_max, max_phase=max_phase, seed=seed)
    # Rungs with the same initial eigenvalues (diag_complex, exp, stable_exp) share a curve.
    curves: dict[str, np.ndarray] = {}
    for rung, curve in norms.items():
        same = next((k for k, c in curves.items()
                     if np.allclose(c, curve, rtol=1e-4, equal_nan=True)), None)
        if same is None:
            curves[rung] = curve
        else:
            curves[f"{same} = {rung}"] = curves.pop(same)
    t = np.arange(1, length + 1)
    fig = Figure(figsize=(14, 5), layout="constrained")
    ax_all, ax_zoom = fig.subplots(1, 2)
    for (name, curve), color in zip(curves.items(), _colors(len(curves))):
        finite = np.isfinite(curve) & (curve > 0)
        label = name if finite.all() else f"{name} (overflows at t={t[~finite][0]})"
        for ax in (ax_all, ax_zoom):
            ax.plot(t[finite], curve[finite], color=color, label=label)
    if any(uses_ring("lru", r) for r in norms) and r_max < 1.0:
        ring = math.sqrt(expected_state_norm(r_min, r_max, 1.0))
        for ax in (ax_all, ax_zoom):
            ax.axhline(ring, color="grey", linestyle=":",
                       label=f"Prop. 3: ring without γ ({ring:.2g})")
            ax.axhline(1.0, color="black", linestyle=":", label="input scale (ring with γ)")
    for ax in (ax_all, ax_zoom):
        ax.set(xscale="log", yscale="log", xlabel="time step t", ylabel="mean ‖x_t‖ / √n")
        ax.grid(which="both", alpha=0.3)
    ax_all.set_title("all rungs")
    ax_zoom.set(ylim=(0.1, 20), title="zoom on the bounded ones")
    ax_all.legend(fontsize="small", loc="upper left")
    fig.suptitle(f"Hidden-state norm at initialisation: unit-variance inputs, n = {d_state}, "
                 f"ring {r_min:g} ≤ |λ| ≤ {r_max:g} (other rungs: the unit disk)")
    return fig


# --------------------------------------------------------------------------- extrapolation

#: Columns of an extrapolation frame that :func:`extrapolation_lines` reads.
EXTRAPOLATION_COLUMNS = ("run", "task", "model", "rung", "seed", "train_length", "length",
                         "accuracy")


def extrapolation_lines(frame: pd.DataFrame) -> pd.DataFrame:
    """The lines :func:`plot_extrapolation` draws: accuracy per line and length.

    A line is a label (:func:`ablations.runs.run_label`: the rung for the LRU, else the
    model) of one task trained at one length, its points the mean over its runs' seeds with
    the standard error (:func:`ablations.stats.standard_error`; none for one seed). Where two
    runs of one label, task and training length share a seed, they differ in something else,
    so every run is its own line, named by its folder.

    Args:
      frame: :func:`ablations.extrapolate.extrapolate`'s frame (or its CSV read back), with
        columns :data:`EXTRAPOLATION_COLUMNS`.

    Returns:
      One row per task, line, training length and length: ``task``, ``line``,
      ``train_length``, ``length``, ``mean`` and ``sem`` (fractions), ``seeds`` (runs
      averaged).

    Raises:
      ValueError: the frame lacks columns or is empty.
    """
    _require_columns(frame, EXTRAPOLATION_COLUMNS, "plot_extrapolation(frame)",
                     "ablations.extrapolate.extrapolate(...)'s frame")
    if frame.empty:
        raise ValueError("plot_extrapolation: no rows to plot (the frame is empty)")
    frame = frame.assign(line=[run_label(m, r) for m, r in zip(frame["model"], frame["rung"])])
    runs = frame.drop_duplicates("run")
    if runs.duplicated(["task", "line", "train_length", "seed"]).any():
        frame = frame.assign(line=frame["run"].astype(str))
    accuracy = frame.groupby(["task", "line", "train_length", "length"])["accuracy"]
    return pd.DataFrame({"mean": accuracy.mean(), "sem": accuracy.agg(standard_error),
                         "seeds": accuracy.size()}).reset_index()


def plot_extrapolation(frame: pd.DataFrame) -> Figure:
    """Accuracy against evaluation length (log2 axis), one line per label (or run), the
    training length a dashed vertical line: the Griffin paper's Fig. 6.

    One panel per task; each line is :func:`extrapolation_lines`' mean, with a band of one
    standard error where several seeds were averaged.

    Args:
      frame: as :func:`extrapolation_lines`.

    Returns:
      The figure.

    Raises:
      ValueError: as :func:`extrapolation_lines`.
    """
    data = extrapolation_lines(frame)
    task_names = task_order(data["task"])
    lines = list(data.groupby(["line", "train_length"]).groups)
    lines.sort(key=lambda key: (_ladder_rank(key[0]), key[1]))
    colors = dict(zip(lines, _colors(len(lines))))
    rows, cols = _grid_shape(len(task_names), max_cols=2)
    fig = Figure(figsize=(6.5 * cols, 4.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, task in zip(axes, task_names):
        part = data[data["task"] == task]
        several_lengths = part["train_length"].nunique() > 1
        for (line, train_length), points in part.groupby(["line", "train_length"]):
            points = points.sort_values("length")
            seeds = int(points["seeds"].max())
            label = line + (f", trained at {train_length}" if several_lengths else "")
            label += f" ({seeds} seeds)" if seeds > 1 else ""
            color = colors[(line, train_length)]
            ax.plot(points["length"], points["mean"], marker="o", color=color, label=label)
            band = points["sem"].notna()
            if band.any():
                ax.fill_between(points["length"][band], (points["mean"] - points["sem"])[band],
                                (points["mean"] + points["sem"])[band], color=color, alpha=0.2)
        for train_length in sorted(part["train_length"].unique()):
            ax.axvline(train_length, color="grey", linestyle="--", linewidth=1)
            ax.text(train_length, 0.02, f"trained at {train_length} ", color="grey",
                    fontsize="small", va="bottom", rotation=90, ha="right")
        lengths = sorted(part["length"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [str(int(x)) for x in lengths])
        ax.minorticks_off()
        ax.set(title=task, xlabel="evaluation length", ylabel="accuracy (scored positions)",
               ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    for ax in axes[len(task_names):]:
        ax.set_visible(False)
    if (data["seeds"] > 1).any():
        fig.suptitle("Accuracy against length: mean ± standard error over seeds")
    else:
        fig.suptitle("Accuracy against length")
    return fig


# --------------------------------------------------------------------------- command line

_EPILOG = """\
examples:
  python -m ablations plot eigenvalues results/runs/listops/lru-lru/seed0 --out eig.png
  python -m ablations plot accuracy results/mini/runs --out accuracy.pdf
  python -m ablations plot curves results/mini/runs --out curves.png
  python -m ablations plot curves RUN_DIR1 RUN_DIR2 --out curves.png
  python -m ablations plot heatmap results/multirun/2026-11-29_12-00-00 --out grid.png
  python -m ablations plot state-norms --r-min 0.9 --r-max 0.999 --out norms.png
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ablations plot",
        description="Plot the ablation suite's results into an image (PNG, PDF or SVG, by "
                    "the --out file's extension).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sub = kinds.add_parser(name, help=help, description=help)
        sub.add_argument("--out", required=True, type=Path,
                         help=f"image file to write; extension one of {', '.join(FORMATS)}")
        sub.add_argument("--dpi", type=int, default=150, help="resolution of PNGs (default 150)")
        return sub

    sub = add("eigenvalues", "every layer's eigenvalues at init and after training, with the ring")
    sub.add_argument("run_dir", type=Path, help="a run directory (config.yaml, checkpoints/)")
    sub.add_argument("--which", choices=("best", "latest"), default="best",
                     help="trained checkpoint to show (default best)")
    sub = add("accuracy", "test accuracy per rung per task, mean ± standard error over seeds")
    sub.add_argument("runs_dir", type=Path,
                     help="a folder of run directories (searched recursively)")
    sub.add_argument("--no-reference", action="store_true", help="leave out the paper's values")
    sub = add("curves", "loss and accuracy against step, train and validation")
    sub.add_argument("paths", type=Path, nargs="+",
                     help="run directories, or folders of them (searched recursively)")
    sub.add_argument("--by", choices=("label", "run"), default="label",
                     help="a colour per rung/model (default) or per run, named by its folder")
    sub = add("heatmap", "accuracy over the r_min x r_max grid of a sweep")
    sub.add_argument("runs_dir", type=Path,
                     help="a folder of runs of a sweep over model.r_min/model.r_max")
    sub = add("state-norms", "hidden-state norm over time for each rung at initialisation")
    sub.add_argument("--rungs", nargs="+", choices=RUNG_NAMES, default=list(RUNG_NAMES),
                     metavar="RUNG", help=f"rungs to show (default all: {' '.join(RUNG_NAMES)})")
    sub.add_argument("--length", type=int, default=1024, help="time steps (default 1024)")
    sub.add_argument("--d-state", type=int, default=64, help="state size n (default 64)")
    sub.add_argument("--r-min", type=float, default=0.9, help="ring's r_min (default 0.9)")
    sub.add_argument("--r-max", type=float, default=0.999, help="ring's r_max (default 0.999)")
    sub.add_argument("--seed", type=int, default=0, help="init and input seed (default 0)")
    return parser


def _figure(args: argparse.Namespace) -> Figure:
    if args.kind == "eigenvalues":
        return plot_eigenvalues(args.run_dir, which=args.which)
    if args.kind == "accuracy":
        reference = None if args.no_reference else paper_numbers("ladder")
        return plot_rung_accuracy(load_runs(args.runs_dir), reference)
    if args.kind == "curves":
        run_dirs = [p for p in args.paths if (p / "config.yaml").is_file()]
        frames = [_runs_to_plot(run_dirs)] + [load_runs(p) for p in args.paths
                                              if p not in run_dirs]
        return plot_training_curves(pd.concat(frames, ignore_index=True), by=args.by)
    if args.kind == "heatmap":
        return plot_rmin_rmax_heatmap(load_runs(args.runs_dir))
    return plot_state_norms(args.rungs, length=args.length, d_state=args.d_state,
                            r_min=args.r_min, r_max=args.r_max, seed=args.seed)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ablations plot KIND ... --out FILE``; returns the exit status.

    Args:
      argv: the arguments after ``plot`` (default: ``sys.argv[1:]``).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.out.suffix.lower() not in FORMATS:
        parser.error(f"--out {args.out}: the extension must be one of {', '.join(FORMATS)}")
    try:
        fig = _figure(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")
    return 0
