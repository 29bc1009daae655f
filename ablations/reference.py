"""The papers' own numbers, kept as CSV files under ``results/reference/``.

Each file holds one or more of the papers' tables, one row per printed cell, with the common
columns :data:`COLUMNS` (``paper, table, row, column, model, task, metric, value, note``; grid
files add their coordinates, e.g. ``r_min, r_max``). ``results/reference/SOURCES.md`` says
where each table was read. :func:`load` reads and validates one file; :func:`paper_numbers`
gives the numbers the ablation tables and plots put beside ours, and :func:`paper_cells`
matches them to our rows.

Files: ``lra`` (LRU paper Table 3, S4 paper Table 4, the S5 paper's own row, the S4D paper's
rows as quoted by a later paper), ``lru_ladder``
(LRU paper Tables 1, 2, 6, 7, 8), ``lru_rmin_rmax`` (Table 5), ``lru_speed`` (Table 4),
``lru_ring`` (Table 8's rings and phase range), ``lru_hparams`` (Table 9).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lru.ladder import RUNG_NAMES

#: Folder of the reference CSV files.
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "results" / "reference"

#: Columns every reference file has, in this order.
COLUMNS = ("paper", "table", "row", "column", "model", "task", "metric", "value", "note")

#: Papers the numbers come from.
PAPERS = ("lru", "s4", "s4d", "s5")

#: Harness task keys, in the LRA table's order.
TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")

#: Valid ``model`` keys: the harness's models and the ladder's rungs (blank is also allowed).
MODELS = tuple(dict.fromkeys(("lru", "s4", "s4d", "s5") + RUNG_NAMES))

#: Row of the LRU paper's Table 3 that :func:`paper_numbers` uses per model for ``"lra"``.
LRA_ROWS = {
    "lru": "LRU",
    "s4": "S4 (paper results)",
    "s4d": "S4D (our reprod.)",
    "s5": "S5 (our reprod.)",
}

#: ``(table, row)`` of the LRU paper that :func:`paper_numbers` uses per rung for ``"ladder"``.
LADDER_ROWS = {
    "rnn_relu": ("Table 6", "RNN-ReLU"),
    "rnn_tanh": ("Table 6", "RNN-Tanh"),
    "linear_dense": ("Table 7", "Dense A"),
    "diag_complex": ("Table 7", "Λ Real + Im"),
    "exp": ("Table 7", "Λ Exp"),
    "stable_exp": ("Table 7", "Λ Stable Exp"),
    "ring": ("Table 7", "+ Ring Init"),
    "lru": ("Table 8", "+γ Normalization (LRU)"),
}

#: Layouts :func:`paper_numbers` knows.
LAYOUTS = ("lra", "ladder")

#: Columns of :func:`paper_numbers`' frame, which :func:`paper_cells` reads.
NUMBER_COLUMNS = ("model", "task", "value", "source")


def load(name: str) -> pd.DataFrame:
    """Read and validate ``results/reference/<name>.csv``.

    Args:
      name: the file's name without ``.csv``, e.g. ``"lra"`` or ``"lru_ladder"``.

    Returns:
      One row per printed cell with the columns :data:`COLUMNS` (plus any grid columns).
      ``value`` is a float, NaN where the paper prints no number (✗, X or an empty cell);
      grid columns holding only numbers are floats; every other column is a string, blank
      where nothing applies.

    Raises:
      FileNotFoundError: the file does not exist (the message names its path).
      ValueError: a column is missing, a key is not a valid paper, model or task, a label is
        blank, a value is not a number, or a blank value has no note saying why.
    """
    path = REFERENCE_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no reference table {name!r}: {path} does not exist")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    _validate(frame, path)
    frame["value"] = pd.to_numeric(frame["value"].mask(frame["value"] == ""))
    for column in frame.columns.difference(COLUMNS):
        try:
            frame[column] = pd.to_numeric(frame[column])
        except ValueError:
            pass  # a label column such as ``setting`` stays text
    return frame


def _validate(frame: pd.DataFrame, path: Path) -> None:
    """Raise a ValueError naming ``path`` and the offending rows if ``frame`` is malformed."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; every reference file has {COLUMNS}")

    def bad(mask: pd.Series, what: str) -> None:
        if mask.any():
            lines = (frame.index[mask] + 2).tolist()  # +2: header line, 1-based
            raise ValueError(f"{path}: {what} on line(s) {lines}")

    bad(~frame["paper"].isin(PAPERS), f"paper not one of {PAPERS}")
    bad(~frame["model"].isin(MODELS + ("",)), f"model not blank or one of {MODELS}")
    bad(~frame["task"].isin(TASKS + ("",)), f"task not blank or one of {TASKS}")
    for column in ("table", "row", "column", "metric"):
        bad(frame[column] == "", f"blank {column!r}")
    value = frame["value"]
    bad((value != "") & pd.to_numeric(value, errors="coerce").isna(), "value is not a number")
    bad((value == "") & (frame["note"] == ""), "blank value without a note saying why")


def paper_numbers(layout: str) -> pd.DataFrame:
    """The LRU paper's numbers for one of the ablation tables' layouts.

    ``"lra"`` gives, for ``lru, s4, s4d, s5``, the LRU paper's Table 3 row named in
    :data:`LRA_ROWS`: the LRU, S4 as quoted from the S4 paper, and S4D and S5 as reproduced by
    the LRU authors in their own pipeline (the setting closest to this harness, which also
    runs S4D and S5 in the LRU's pipeline). Table 3's quoted "S4D-LegS (paper results)" and
    "S5 (paper results)" rows, and the S4/S5 papers' own tables, are in ``load("lra")``.
    Table 3 prints no average, so none is given.

    ``"ladder"`` gives every rung of :data:`lru.ladder.RUNG_NAMES` on the six tasks, then the
    baselines a ladder sweep runs beside them (``s4, s4d, s5``) as ``"lra"`` gives them. Each rung
    appears in several of the paper's ablation tables with the same numbers; the appendix
    tables are used because they cover all six tasks: Table 6 for the nonlinear RNNs, Table 7
    (the main parameterisation ablation) for linear dense, diagonal complex, exp, stable exp
    and ring init, and Table 8 for the LRU (γ normalization). :data:`LADDER_ROWS` names the
    rows.

    The ``image`` task is the LRU paper's coloured sCIFAR. Cells the paper prints as ✗ (no
    better than chance) have value NaN and say so in ``source``.

    Args:
      layout: ``"lra"`` or ``"ladder"``.

    Returns:
      Columns ``model, task, value, source``: one row per model (or rung) and task, in model
      then :data:`TASKS` order; ``value`` is the test accuracy in percent and ``source`` reads
      like ``"LRU paper, Table 3, row 'S5 (our reprod.)'"``.

    Raises:
      ValueError: ``layout`` is not one of :data:`LAYOUTS`, or a reference file lacks a row or
        task that layout needs.
    """
    table3 = {model: ("Table 3", row) for model, row in LRA_ROWS.items()}
    if layout == "lra":
        sources = [(load("lra"), table3)]
    elif layout == "ladder":
        baselines = {model: pick for model, pick in table3.items() if model != "lru"}
        sources = [(load("lru_ladder"), LADDER_ROWS), (load("lra"), baselines)]
    else:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")

    parts = []
    for frame, model, (table, row) in ((f, m, pick) for f, picks in sources
                                       for m, pick in picks.items()):
        cells = frame[(frame["paper"] == "lru") & (frame["table"] == table) & (frame["row"] == row)]
        cells = cells.set_index("task").reindex(list(TASKS))
        if cells["metric"].isna().any():
            absent = cells.index[cells["metric"].isna()].tolist()
            raise ValueError(f"LRU paper {table}, row {row!r}: no cell for task(s) {absent} "
                             f"in {REFERENCE_DIR}")
        source = f"LRU paper, {table}, row '{row}'"
        parts.append(pd.DataFrame({
            "model": model,
            "task": list(TASKS),
            "value": cells["value"].to_numpy(dtype=float),
            "source": [source if pd.notna(v) else f"{source}, printed ✗ (no number)"
                       for v in cells["value"]],
        }))
    return pd.concat(parts, ignore_index=True)


def paper_cells(numbers: pd.DataFrame) -> pd.DataFrame:
    """The papers' number for each (label, task) of our tables and plots.

    A run's label (:func:`ablations.runs.run_label`) matches a ``model`` exactly, case
    included: both are the harness's own names (``"lru"``, ``"s5"``, a rung), so ``"LRU"``
    matches nothing. Where several rows give one (model, task), the first is used.

    Args:
      numbers: the papers' numbers with :data:`NUMBER_COLUMNS`, as :func:`paper_numbers`
        gives them.

    Returns:
      Columns ``value`` (percent; NaN where the paper prints no number) and ``source``,
      indexed by ``(label, task)``.

    Raises:
      ValueError: ``numbers`` lacks one of :data:`NUMBER_COLUMNS`.
    """
    missing = [c for c in NUMBER_COLUMNS if c not in numbers.columns]
    if missing:
        raise ValueError(f"the reference frame lacks columns {missing}; it needs "
                         f"{list(NUMBER_COLUMNS)} (as ablations.reference.paper_numbers gives)")
    first = numbers.drop_duplicates(["model", "task"], keep="first")
    return first.set_index(["model", "task"]).rename_axis(["label", "task"])[["value", "source"]]
