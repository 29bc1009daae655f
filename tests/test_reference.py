"""The reference CSVs against the papers' table shapes, and ``ablations.reference``'s API."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest

from ablations import reference
from ablations.reference import COLUMNS, REFERENCE_DIR, TASKS, load, paper_numbers
from lru.ladder import RUNG_NAMES

FILES = ("lra", "lru_ladder", "lru_rmin_rmax", "lru_speed", "lru_ring", "lru_hparams")

# Column labels as the LRU paper prints them, in its order, and the harness task of each.
LRU_TASKS = ("sCIFAR", "ListOps", "Text", "Retrieval", "Pathfinder", "PathX")
LRU_TASK_KEY = dict(zip(LRU_TASKS, ("image", "listops", "text", "retrieval", "pathfinder",
                                    "pathx")))
SSM_ROWS = ("S4D (our reproduction)", "S5 (our reproduction)", "S4 (paper results)",
            "S4D-LegS (paper results)", "S5 (paper results)")

# Table shapes: (paper, table) -> (row labels as printed, column labels as printed).
LADDER_SHAPES = {
    "Table 1": (("RNN-ReLU", "RNN-Tanh", "RNN-Lin"), ("sCIFAR", "ListOps", "Text", "Retrieval")),
    "Table 2": (("Dense A", "Λ Real + Im", "Λ Exp", "Λ Stable Exp", "+ Ring Init"),
                ("sCIFAR", "ListOps", "Pathfinder")),
    "Table 6": (("RNN-Lin", "RNN-ReLU", "RNN-Tanh") + SSM_ROWS, LRU_TASKS),
    "Table 7": (("Dense A", "Λ Real + Im", "Λ Exp", "Λ Stable Exp", "+ Ring Init") + SSM_ROWS,
                LRU_TASKS),
    "Table 8": (("Linear Dense RNN", "Diagonal Complex RNN", "Stable Exp Param w/ Ring Init",
                 "+γ Normalization (LRU)") + SSM_ROWS, LRU_TASKS),
}
# Cells each ladder table prints as ✗.
LADDER_CROSSES = {"Table 1": 0, "Table 2": 2, "Table 6": 6, "Table 7": 7, "Table 8": 5}
LRA_SHAPES = {
    ("lru", "Table 3"): (("LRU", "S4D (our reprod.)", "S5 (our reprod.)", "S4 (paper results)",
                          "S4D-LegS (paper results)", "S5 (paper results)"), LRU_TASKS),
    ("s4", "Table 4"): (("Transformer", "Reformer", "BigBird", "Linear Trans.", "Performer",
                         "FNet", "Nystromformer", "Luna-256", "S4"),
                        ("ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X", "Avg")),
    # Only the S5 row of the S5 paper's table was found (see SOURCES.md).
    ("s5", "Table 1"): (("S5",), ("ListOps", "Text", "Retrieval", "Image", "Pathfinder",
                                  "Pathfinder-X", "Avg")),
    # The S4D paper's three rows, as a later paper quotes them (see SOURCES.md); no Avg printed.
    ("s4d", "LRA (quoted)"): (("S4D-LegS", "S4D-Inv", "S4D-Lin"),
                              ("ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X")),
}
SPEED_SHAPE = (("Tanh RNN", "LRU", "S4D (our reproduction)", "S5 (our reproduction)"), LRU_TASKS)
HPARAM_SHAPE = (("sCIFAR", "ListOps", "Text", "Retrieval", "PathFinder", "PathX"),
                ("Depth", "H", "N", "Iterations", "Batch size", "LR factor", "Weight Decay",
                 "Dropout"))

METRICS = {
    "test_accuracy": (0.0, 100.0), "test_accuracy_avg": (0.0, 100.0),
    "steps_per_s": (0.0, 1000.0), "r_min": (0.0, 1.0), "r_max": (0.0, 1.0),
    "max_phase": (0.0, 2 * np.pi + 1e-9), "depth": (1, 100), "model_dim_H": (1, 10_000),
    "state_dim_N": (1, 10_000), "iterations": (1, 10_000_000), "batch_size": (1, 10_000),
    "lr_factor": (0.0, 1.0), "weight_decay": (0.0, 1.0), "dropout": (0.0, 1.0),
}


@pytest.fixture(scope="module", params=FILES)
def table(request):
    return request.param, load(request.param)


def assert_shape(frame: pd.DataFrame, rows: tuple, columns: tuple) -> None:
    """``frame`` holds exactly one cell per (row, column) of the printed table."""
    assert len(frame) == len(rows) * len(columns)
    assert sorted(zip(frame["row"], frame["column"])) == sorted(itertools.product(rows, columns))


def cells(frame: pd.DataFrame, table: str, row: str) -> pd.Series:
    """Values of one printed row, indexed by column label."""
    sel = frame[(frame["table"] == table) & (frame["row"] == row)]
    return sel.set_index("column")["value"]


# --- every file --------------------------------------------------------------------------------

def test_columns_are_the_common_set(table):
    name, frame = table
    assert tuple(frame.columns[:len(COLUMNS)]) == COLUMNS
    extra = tuple(frame.columns[len(COLUMNS):])
    assert extra == (("setting", "r_min", "r_max") if name == "lru_rmin_rmax" else ())


def test_keys_are_valid(table):
    _, frame = table
    assert set(frame["paper"]) <= set(reference.PAPERS)
    assert set(frame["model"]) <= set(RUNG_NAMES) | {"s4", "s4d", "s5", ""}
    assert set(frame["task"]) <= set(TASKS) | {""}
    assert set(frame["metric"]) <= set(METRICS)


def test_values_in_range(table):
    _, frame = table
    for metric, group in frame.groupby("metric"):
        low, high = METRICS[metric]
        values = group["value"].dropna()
        assert ((values >= low) & (values <= high)).all(), metric


def test_blank_values_say_why(table):
    _, frame = table
    blank = frame[frame["value"].isna()]
    assert blank["note"].str.contains(r"✗|X printed|empty", regex=True).all()


def test_every_row_is_sourced(table):
    _, frame = table
    for column in ("paper", "table", "row", "column", "metric"):
        assert (frame[column] != "").all(), column
    headings = set(re.findall(r"^### (\w+), (.+)$",
                              (REFERENCE_DIR / "SOURCES.md").read_text(encoding="utf-8"),
                              flags=re.MULTILINE))
    assert set(zip(frame["paper"], frame["table"])) <= headings


def test_cells_are_unique(table):
    _, frame = table
    keys = ["paper", "table", "row", "column", "metric", "model"]
    if "setting" in frame.columns:
        keys.append("setting")
    assert not frame.duplicated(keys).any()


def test_load_names_a_missing_file():
    with pytest.raises(FileNotFoundError, match=re.escape(str(REFERENCE_DIR / "nope.csv"))):
        load("nope")


def test_load_rejects_malformed_files(tmp_path, monkeypatch):
    good = pd.read_csv(REFERENCE_DIR / "lra.csv", dtype=str, keep_default_na=False).head(3)
    monkeypatch.setattr(reference, "REFERENCE_DIR", tmp_path)
    cases = {
        "missing columns": good.drop(columns="note"),
        "task not blank or one of": good.assign(task="cifar"),
        "model not blank or one of": good.assign(model="gru"),
        "paper not one of": good.assign(paper="mamba"),
        "value is not a number": good.assign(value="sixty"),
        "blank 'row'": good.assign(row=""),
        "blank value without a note": good.assign(value="", note=""),
    }
    for i, (message, frame) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.csv"
        frame.to_csv(path, index=False)
        with pytest.raises(ValueError, match=re.escape(message)) as error:
            load(f"bad{i}")
        assert str(path) in str(error.value)


# --- row counts per table ----------------------------------------------------------------------

def test_ladder_tables_are_complete():
    frame = load("lru_ladder")
    assert set(frame["paper"]) == {"lru"}
    assert set(frame["table"]) == set(LADDER_SHAPES)
    for name, (rows, columns) in LADDER_SHAPES.items():
        part = frame[frame["table"] == name]
        assert_shape(part, rows, columns)
        assert part["value"].isna().sum() == LADDER_CROSSES[name], name
    assert len(frame) == 12 + 15 + 48 + 60 + 54


def test_ladder_models_and_tasks():
    frame = load("lru_ladder")
    assert (frame["task"] == frame["column"].map(LRU_TASK_KEY)).all()
    assert set(frame["model"]) == set(RUNG_NAMES) | {"s4", "s4d", "s5"}
    assert set(frame["metric"]) == {"test_accuracy"}


def test_lra_tables_are_complete():
    frame = load("lra")
    assert set(zip(frame["paper"], frame["table"])) == set(LRA_SHAPES)
    for (paper, name), (rows, columns) in LRA_SHAPES.items():
        assert_shape(frame[(frame["paper"] == paper) & (frame["table"] == name)], rows, columns)
    assert len(frame) == 36 + 63 + 7 + 18


def test_s4d_rows_agree_with_the_lru_papers_quote():
    """The quoted S4D rows: S4D-Lin's Path-X is the only blank, and S4D-LegS rounds (down, as
    the LRU paper prints) to the LRU paper's own quote of that row on the tasks both share."""
    frame = load("lra")
    s4d = frame[frame["paper"] == "s4d"]
    blank = s4d[s4d["value"].isna()]
    assert list(zip(blank["row"], blank["task"])) == [("S4D-Lin", "pathx")]
    legs = s4d[s4d["row"] == "S4D-LegS"].set_index("task")["value"]
    lru_quote = frame[(frame["paper"] == "lru") & (frame["row"] == "S4D-LegS (paper results)")]
    lru_quote = lru_quote.set_index("task")["value"]
    for task in ("listops", "text", "retrieval", "pathfinder", "pathx"):
        assert abs(legs[task] - lru_quote[task]) <= 0.05 + 1e-9, task
    # the LRU paper's "sCIFAR" column is coloured sCIFAR, not LRA's grayscale Image
    assert abs(legs["image"] - lru_quote["image"]) > 1


def test_lra_blanks_and_averages():
    frame = load("lra")
    s4 = frame[frame["paper"] == "s4"]
    # Path-X is printed as X for the eight Transformer rows, and only there.
    assert set(s4.loc[s4["value"].isna(), "column"]) == {"Path-X"}
    assert s4["value"].isna().sum() == 8
    averages = frame[frame["column"] == "Avg"]
    assert (averages["metric"] == "test_accuracy_avg").all() and (averages["task"] == "").all()
    assert (frame.loc[frame["column"] != "Avg", "task"] != "").all()
    assert set(frame.loc[frame["paper"] == "s4", "model"]) == {"s4", ""}


def test_rmin_rmax_grid_is_complete():
    frame = load("lru_rmin_rmax")
    assert len(frame) == 27
    assert set(frame["table"]) == {"Table 5"}
    for setting, group in frame.groupby("setting"):
        assert sorted(zip(group["r_min"], group["r_max"])) == sorted(
            itertools.product((0.0, 0.5, 0.9), (0.9, 0.99, 0.999))), setting
    assert set(frame["setting"]) == {"(a) No stability", "(b) With stability",
                                     "(c) With γ normalization"}
    assert (frame["r_min"] <= frame["r_max"]).all()
    assert (frame["row"].astype(float) == frame["r_max"]).all()
    assert (frame["column"].astype(float) == frame["r_min"]).all()
    # §C.2: the best sCIFAR result, 89.0, is with γ normalization at r_min=0.9, r_max=0.999.
    best = frame.loc[frame["value"].idxmax()]
    assert (best["setting"], best["value"]) == ("(c) With γ normalization", 89.0)


def test_speed_table_is_complete():
    frame = load("lru_speed")
    assert_shape(frame, *SPEED_SHAPE)
    assert set(frame["metric"]) == {"steps_per_s"} and frame["value"].notna().all()
    assert set(frame["model"]) == {"rnn_tanh", "lru", "s4d", "s5"}


def test_ring_table_is_complete():
    frame = load("lru_ring")
    rings = frame[frame["metric"].isin(["r_min", "r_max"])]
    assert len(rings) == 2 * 6 * 2 and set(rings["model"]) == {"ring", "lru"}
    assert rings["value"].isna().sum() == 2  # the ring rung's PathX cell is empty
    phase = frame[frame["metric"] == "max_phase"]
    assert len(phase) == 6 and set(phase["model"]) == {"lru"}
    assert phase.set_index("task")["value"]["pathx"] == pytest.approx(np.pi / 10)
    for (model, task), group in rings.dropna(subset=["value"]).groupby(["model", "task"]):
        ring = group.set_index("metric")["value"]
        assert ring["r_min"] <= ring["r_max"], (model, task)


def test_hparams_table_is_complete():
    frame = load("lru_hparams")
    assert_shape(frame, *HPARAM_SHAPE)
    assert frame["value"].notna().all() and set(frame["model"]) == {"lru"}


# --- numbers that appear in several tables agree ------------------------------------------------

def test_ladder_tables_agree_where_they_overlap():
    frame = load("lru_ladder")
    same_rows = [("Table 1", "Table 6", r, r) for r in ("RNN-ReLU", "RNN-Tanh", "RNN-Lin")]
    same_rows += [("Table 2", "Table 7", r, r) for r in LADDER_SHAPES["Table 2"][0]]
    same_rows += [("Table 7", "Table 8", "Dense A", "Linear Dense RNN"),
                  ("Table 7", "Table 8", "Λ Real + Im", "Diagonal Complex RNN"),
                  ("Table 7", "Table 8", "+ Ring Init", "Stable Exp Param w/ Ring Init"),
                  ("Table 6", "Table 7", "RNN-Lin", "Dense A")]
    same_rows += [(a, b, r, r) for a, b in [("Table 6", "Table 7"), ("Table 7", "Table 8")]
                  for r in SSM_ROWS]
    for a, b, row_a, row_b in same_rows:
        x, y = cells(frame, a, row_a), cells(frame, b, row_b)
        shared = x.index.intersection(y.index)
        pd.testing.assert_series_equal(x[shared], y[shared], check_names=False)


def test_lru_table_3_matches_table_8():
    lra, ladder = load("lra"), load("lru_ladder")
    t3 = lra[(lra["paper"] == "lru") & (lra["table"] == "Table 3")]
    pd.testing.assert_series_equal(cells(t3, "Table 3", "LRU"),
                                   cells(ladder, "Table 8", "+γ Normalization (LRU)")[list(
                                       LRU_TASKS)], check_names=False)
    for short, long in [("S4D (our reprod.)", "S4D (our reproduction)"),
                        ("S5 (our reprod.)", "S5 (our reproduction)"),
                        ("S4 (paper results)", "S4 (paper results)")]:
        pd.testing.assert_series_equal(cells(t3, "Table 3", short)[list(LRU_TASKS)],
                                       cells(ladder, "Table 8", long)[list(LRU_TASKS)],
                                       check_names=False)


def test_quoted_rows_round_the_original_papers():
    """The LRU paper's quoted S4 and S5 rows are the S4/S5 papers' numbers to one decimal
    (sCIFAR aside: the LRU paper's is coloured, LRA's Image is grayscale)."""
    frame = load("lra")
    by_task = {(p, t): frame[(frame["paper"] == p) & (frame["table"] == t)] for p, t in LRA_SHAPES}
    lru = by_task[("lru", "Table 3")]
    for quoted, (paper, table, row) in [("S4 (paper results)", ("s4", "Table 4", "S4")),
                                        ("S5 (paper results)", ("s5", "Table 1", "S5"))]:
        mine = lru[lru["row"] == quoted].set_index("task")["value"]
        theirs = by_task[(paper, table)]
        theirs = theirs[(theirs["row"] == row) & (theirs["task"] != "")].set_index("task")["value"]
        for task in ("listops", "text", "retrieval", "pathfinder", "pathx"):
            assert abs(mine[task] - theirs[task]) <= 0.05 + 1e-9, (quoted, task)


# --- paper_numbers -----------------------------------------------------------------------------

def test_paper_numbers_lra():
    frame = paper_numbers("lra")
    assert list(frame.columns) == ["model", "task", "value", "source"]
    assert len(frame) == 4 * 6
    assert list(frame["model"].unique()) == ["lru", "s4", "s4d", "s5"]
    assert not frame.duplicated(["model", "task"]).any()
    assert set(frame["task"]) == set(TASKS) and frame["value"].notna().all()
    assert frame["source"].str.startswith("LRU paper, Table 3, row '").all()
    value = frame.set_index(["model", "task"])["value"]
    source = frame.set_index(["model", "task"])["source"]
    assert value["lru", "pathx"] == 94.2 and value["s5", "image"] == 88.8
    assert source["s5", "image"] == "LRU paper, Table 3, row 'S5 (our reprod.)'"


def test_paper_numbers_ladder():
    frame = paper_numbers("ladder")
    assert list(frame.columns) == ["model", "task", "value", "source"]
    baselines = ["s4", "s4d", "s5"]  # beside the rungs, as the "lra" layout gives them
    assert len(frame) == (len(RUNG_NAMES) + len(baselines)) * len(TASKS)
    assert list(frame["model"].unique()) == [*RUNG_NAMES, *baselines]
    assert not frame.duplicated(["model", "task"]).any()
    value = frame.set_index(["model", "task"])["value"]
    assert value["lru", "pathx"] == 94.2 and value["exp", "pathfinder"] == 65.4
    assert value["stable_exp", "pathfinder"] == 93.5 and value["rnn_tanh", "listops"] == 43.9
    assert value["s4d", "listops"] == 60.2 and value["s5", "pathfinder"] == paper_numbers(
        "lra").set_index(["model", "task"])["value"]["s5", "pathfinder"]
    assert frame.set_index(["model", "task"])["source"]["s4d", "listops"] == (
        "LRU paper, Table 3, row 'S4D (our reprod.)'")
    crosses = frame[frame["value"].isna()]
    assert crosses["source"].str.endswith("printed ✗ (no number)").all()
    # Only the LRU solves PathX; no nonlinear or Re+Im rung solves Pathfinder.
    assert set(crosses.loc[crosses["task"] == "pathx", "model"]) == set(RUNG_NAMES) - {"lru"}
    assert set(crosses.loc[crosses["task"] == "pathfinder", "model"]) == {
        "rnn_relu", "rnn_tanh", "linear_dense", "diag_complex"}


def test_paper_numbers_rejects_an_unknown_layout():
    with pytest.raises(ValueError, match="unknown layout 'speed'"):
        paper_numbers("speed")
