"""The run loader and the tables (``ablations.runs``, ``ablations.table``) on synthetic run
folders: known means and standard errors, failed and summary-less runs, both layouts, every
format, and the papers' columns."""

from __future__ import annotations

import io
import json
import math
import statistics
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from ablations.__main__ import main
from ablations.runs import MISSING_SUMMARY, load_runs
from ablations.table import LRA_TASKS, build_table, format_table, significance
from lru.ladder import RUNG_NAMES

TASKS_OF = {"listops": "ListOps", "pathfinder": "Pathfinder"}


def write_run(root: Path, name: str, *, task: str, model: str = "lru", rung: str | None = "lru",
              seed: int = 0, status: str = "finished", test_accuracy: float | None = None,
              summary: bool = True, d_model: int = 32) -> Path:
    """A run folder as lru.training.loop.train leaves it: config.yaml and (unless not) summary.json."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        f"task: {{name: {task}}}\nseed: {seed}\nablation: {{rung: {rung or 'lru'}}}\n"
        f"model: {{layer: {model}, d_model: {d_model}, d_state: 64, n_layers: 4, "
        f"bidirectional: false, r_min: 0.4, r_max: 0.9, max_phase: 3.14}}\n"
        f"optimizer: {{lr: 0.003}}\ntrainer: {{batch_size: 32, steps: 100}}\n")
    if summary:
        record = {"task": task, "model": model, "rung": rung if model == "lru" else None,
                  "seed": seed, "run_dir": f"elsewhere/{name}", "status": status}
        if status == "finished":
            record.update(best_val_accuracy=test_accuracy, test_accuracy=test_accuracy,
                          best_step=99, majority_rate=0.1, steps=100, params=1000,
                          tokens_per_s=10.0, wall_time_s=1.0)
        else:
            record["reason"] = "NonFiniteError: non-finite loss at step 3"
        (folder / "summary.json").write_text(json.dumps(record))
    return folder


def stats(values: list[float]) -> tuple[float, float]:
    """Mean and standard error in percent, computed independently of the code under test."""
    percent = [100 * v for v in values]
    return statistics.fmean(percent), statistics.stdev(percent) / math.sqrt(len(percent))


LRU_LISTOPS = [0.55, 0.60, 0.62]
RING_LISTOPS = [0.50, 0.58]   # and seed 2 failed
S5_LISTOPS = [0.52]


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for seed, acc in enumerate(LRU_LISTOPS):
        write_run(root / "rungs_ring", f"lru{seed}", task="listops", rung="lru", seed=seed,
                  test_accuracy=acc)
    for seed, acc in enumerate(RING_LISTOPS):
        write_run(root / "rungs_ring", f"ring{seed}", task="listops", rung="ring", seed=seed,
                  test_accuracy=acc)
    write_run(root / "rungs_ring", "ring2", task="listops", rung="ring", seed=2, status="failed")
    write_run(root / "rungs_unit_disk", "exp0", task="listops", rung="exp", seed=0, summary=False)
    write_run(root / "rungs_unit_disk", "rnn_relu0", task="pathfinder", rung="rnn_relu",
              status="failed")
    write_run(root / "rungs_ring", "lru_pf0", task="pathfinder", rung="lru", test_accuracy=0.8)
    write_run(root / "baselines", "s5", task="listops", model="s5", rung=None,
              test_accuracy=S5_LISTOPS[0])
    # checkpoints and Hydra's own folder hold no runs
    (root / "rungs_ring" / "lru0" / "checkpoints" / "latest").mkdir(parents=True)
    (root / "rungs_ring" / "lru0" / ".hydra").mkdir()
    (root / "rungs_ring" / "lru0" / ".hydra" / "config.yaml").write_text("task: {name: listops}\n")
    return root


def cell(table, label: str, task: str) -> pd.Series:
    cells = table.cells
    return cells[(cells["label"] == label) & (cells["task"] == task)].iloc[0]


# --------------------------------------------------------------------------- load_runs


def test_load_runs_reads_every_run_with_its_label_and_config(runs_dir):
    runs = load_runs(runs_dir)
    assert len(runs) == 10
    assert runs["label"].value_counts().to_dict() == {
        "lru": 4, "ring": 3, "exp": 1, "rnn_relu": 1, "s5": 1}
    s5 = runs[runs["label"] == "s5"].iloc[0]
    assert s5["model"] == "s5" and pd.isna(s5["rung"]) and s5["test_accuracy"] == 0.52
    assert (runs["d_model"] == 32).all() and (runs["n_layers"] == 4).all()
    assert (runs["lr"] == 0.003).all() and (runs["planned_steps"] == 100).all()
    # run_dir is where the files are now, not where the summary says they were written
    assert Path(s5["run_dir"]) == runs_dir / "baselines" / "s5"
    # the ring only where one was used: rungs with ring init
    for label, row in runs.set_index("label").iterrows():
        if label in ("ring", "lru"):
            assert (row["r_min"], row["r_max"], row["max_phase"]) == (0.4, 0.9, 3.14)
        else:
            assert row[["r_min", "r_max", "max_phase"]].isna().all(), label


def test_a_run_without_summary_is_listed_as_missing(runs_dir):
    runs = load_runs(runs_dir)
    exp = runs[runs["label"] == "exp"].iloc[0]
    assert exp["status"] == MISSING_SUMMARY
    assert (exp["task"], exp["model"], exp["seed"]) == ("listops", "lru", 0)
    assert pd.isna(exp["test_accuracy"])


def test_a_run_with_only_hydras_config_is_listed_as_missing(tmp_path):
    folder = tmp_path / "job" / ".hydra"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        "task: {name: text}\nmodel: {layer: s4d}\nablation: {rung: lru}\nseed: 4\n"
        "run_dir: ${hydra:runtime.output_dir}\n")
    runs = load_runs(tmp_path)
    assert runs[["task", "label", "seed", "status"]].values.tolist() == [
        ["text", "s4d", 4, MISSING_SUMMARY]]


def test_an_unreadable_summary_names_the_file(tmp_path):
    folder = write_run(tmp_path, "run", task="listops", test_accuracy=0.5)
    (folder / "summary.json").write_text('{"task": "listops", "stat')
    with pytest.raises(ValueError, match=r"run/summary\.json.*cannot read"):
        load_runs(tmp_path)
    (folder / "summary.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=r"summary\.json: not a run summary"):
        load_runs(tmp_path)


def test_a_folder_without_runs_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs under"):
        load_runs(tmp_path)
    with pytest.raises(FileNotFoundError, match="no folder"):
        load_runs(tmp_path / "absent")


# --------------------------------------------------------------------------- statistics


def test_cells_hold_mean_and_standard_error_over_finished_seeds(runs_dir):
    table = build_table(load_runs(runs_dir), "ladder")
    mean, sem = stats(LRU_LISTOPS)
    lru = cell(table, "lru", "listops")
    assert lru["mean"] == pytest.approx(mean) and lru["sem"] == pytest.approx(sem)
    assert (lru["seeds"], lru["finished"], lru["failed"]) == (3, 3, 0)

    # the failed seed is counted, never averaged in as zero
    mean, sem = stats(RING_LISTOPS)
    ring = cell(table, "ring", "listops")
    assert ring["mean"] == pytest.approx(mean) and ring["sem"] == pytest.approx(sem)
    assert (ring["seeds"], ring["finished"], ring["failed"]) == (3, 2, 1)

    # one seed: a mean without standard error
    s5 = cell(table, "s5", "listops")
    assert s5["mean"] == pytest.approx(52.0) and pd.isna(s5["sem"])

    # no finished run: missing, not zero
    for label, task, status in [("exp", "listops", MISSING_SUMMARY),
                                ("rnn_relu", "pathfinder", "failed")]:
        c = cell(table, label, task)
        assert pd.isna(c["mean"]) and c["seeds"] == 1 and c["finished"] == 0 and c[status] == 1


def test_a_finished_rerun_supersedes_a_failed_seed_and_two_finished_are_an_error(tmp_path):
    write_run(tmp_path / "a", "lru0", task="listops", status="failed")
    write_run(tmp_path / "b", "lru0", task="listops", test_accuracy=0.5)
    c = cell(build_table(load_runs(tmp_path), "ladder"), "lru", "listops")
    assert (c["seeds"], c["finished"], c["failed"], c["mean"]) == (1, 1, 0, 50.0)

    write_run(tmp_path / "c", "lru0", task="listops", test_accuracy=0.6)
    with pytest.raises(ValueError, match=r"listops / lru seed 0 finished more than once"):
        build_table(load_runs(tmp_path), "ladder")


# --------------------------------------------------------------------------- layouts


def test_ladder_layout_lists_every_rung_then_the_baselines_by_tasks_present(runs_dir):
    table = build_table(load_runs(runs_dir), "ladder")
    assert table.rows == [*RUNG_NAMES, "s5"]
    assert table.columns == ["listops", "pathfinder"]
    assert len(table.cells) == len(table.rows) * 2
    absent = cell(table, "diag_complex", "listops")
    assert absent["seeds"] == 0 and pd.isna(absent["mean"])

    text = format_table(table, "markdown")
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    mean, sem = stats(LRU_LISTOPS)
    assert f"{mean:.1f} ± {sem:.1f} (n=3)" in lines["lru"]
    mean, sem = stats(RING_LISTOPS)
    assert f"{mean:.1f} ± {sem:.1f} (n=2/3; 1 failed)" in lines["ring"]
    assert "— (n=0/1; 1 missing summary)" in lines["exp"]
    assert "— (n=0/1; 1 failed)" in lines["rnn_relu"]
    assert "52.0 (n=1)" in lines["s5"]
    # no run: the cells show no number and the row is compared with nothing
    assert lines["diag_complex"].count("—") == 2
    assert pd.isna(cell(table, "diag_complex", "listops")["compared_with"])
    assert list(lines) == ["rung", *RUNG_NAMES, "s5"]


def test_lra_layout_has_the_six_tasks_and_an_average_over_all_six(tmp_path):
    per_task = {task: [0.5 + 0.05 * i, 0.6 + 0.05 * i] for i, task in enumerate(LRA_TASKS)}
    for task, accs in per_task.items():
        for seed, acc in enumerate(accs):
            write_run(tmp_path, f"lru-{task}-{seed}", task=task, seed=seed, test_accuracy=acc)
    write_run(tmp_path, "s4d", task="listops", model="s4d", rung=None, test_accuracy=0.4)
    write_run(tmp_path, "ring", task="image", rung="ring", test_accuracy=0.7)

    table = build_table(load_runs(tmp_path), "lra")
    assert table.rows == ["s4d", "ring", "lru"]
    assert table.columns == [*LRA_TASKS, "average"]
    means, sems = zip(*(stats(accs) for accs in per_task.values()))
    average = cell(table, "lru", "average")
    assert average["mean"] == pytest.approx(statistics.fmean(means))
    assert average["sem"] == pytest.approx(math.sqrt(sum(s * s for s in sems)) / 6)
    # rows without all six tasks have no average
    assert pd.isna(cell(table, "s4d", "average")["mean"])
    assert pd.isna(cell(table, "ring", "average")["mean"])
    header = format_table(table, "markdown").splitlines()[2]
    assert [h.strip() for h in header.split("|")[1:-1]] == [
        "model", "ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X", "Avg"]


# --------------------------------------------------------------------------- papers


REFERENCE = pd.DataFrame({
    "model": ["lru", "lru", "lru", "ring", "exp", "rnn_relu", "s4"],
    "task": ["listops", "listops", "pathfinder", "listops", "listops", "pathfinder", "listops"],
    "value": [60.2, 11.0, 95.1, 59.4, 60.5, float("nan"), 59.6],
    "source": ["LRU T3", "a second source, not used", "LRU T3", "LRU T7", "LRU T7", "LRU T6 (✗)",
               "S4 T4"],
})


def test_paper_columns_and_differences(runs_dir):
    table = build_table(load_runs(runs_dir), "ladder", REFERENCE)
    lru = cell(table, "lru", "listops")
    mean, _ = stats(LRU_LISTOPS)
    assert lru["paper"] == 60.2 and lru["source"] == "LRU T3"   # the first row per cell
    assert lru["difference"] == pytest.approx(mean - 60.2)
    pathfinder = cell(table, "lru", "pathfinder")
    assert pathfinder["difference"] == pytest.approx(80.0 - 95.1)
    # a paper value beside a cell with no finished run: no difference
    exp = cell(table, "exp", "listops")
    assert exp["paper"] == 60.5 and pd.isna(exp["difference"])
    # no paper row: no paper value
    assert pd.isna(cell(table, "ring", "pathfinder")["paper"])

    text = format_table(table, "markdown")
    header = next(line for line in text.splitlines() if line.startswith("| rung"))
    assert [h.strip() for h in header.split("|")[1:-1]] == [
        "rung", "ListOps", "ListOps paper", "ListOps Δ", "ListOps p",
        "Pathfinder", "Pathfinder paper", "Pathfinder Δ", "Pathfinder p"]
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| ")}
    assert lines["lru"][1:3] == ["60.2", f"{mean - 60.2:+.1f}"]
    assert lines["lru"][5:7] == ["95.1", "-15.1"]
    assert lines["ring"][1] == "59.4"
    assert lines["exp"][1:3] == ["60.5", "—"]
    assert lines["rnn_relu"][5] == "n/a"          # the paper prints no number there
    assert lines["s5"][1:3] == ["—", "—"]          # no paper value for s5
    assert "Paper values: LRU T6 (✗); LRU T7; LRU T3." in text    # sources, each once
    assert "not used" not in text


def test_lra_paper_average_is_the_mean_of_the_six_paper_values(tmp_path):
    for task in LRA_TASKS:
        write_run(tmp_path, task, task=task, test_accuracy=0.9)
    reference = pd.DataFrame({"model": ["lru"] * 6, "task": list(LRA_TASKS),
                              "value": [60.0, 90.0, 90.0, 89.0, 95.0, 94.0], "source": "T3"})
    average = cell(build_table(load_runs(tmp_path), "lra", reference), "lru", "average")
    assert average["paper"] == pytest.approx(86.333333)
    assert average["difference"] == pytest.approx(90.0 - 86.333333)


def test_a_reference_without_its_columns_is_an_error(runs_dir):
    with pytest.raises(ValueError, match=r"lacks columns \['source'\]"):
        build_table(load_runs(runs_dir), "ladder", REFERENCE.drop(columns="source"))


# --------------------------------------------------------------------------- formats


def test_latex_escapes_and_typesets_the_symbols(runs_dir):
    text = format_table(build_table(load_runs(runs_dir), "ladder", REFERENCE), "latex")
    # rung, then per task: ours, paper, Δ, p
    assert r"\begin{tabular}{lrrrrrrrr}" in text and r"\bottomrule" in text
    assert r"rnn\_relu" in text and r"$\pm$" in text and r"ListOps $\Delta$" in text
    assert "±" not in text.split(r"\begin{tabular}")[1]
    assert "—" not in text and "Δ" not in text
    assert text.startswith("% Test accuracy (%)") and "% paper: LRU T3" in text


def test_csv_holds_the_numbers_one_line_per_cell(runs_dir):
    table = build_table(load_runs(runs_dir), "ladder", REFERENCE)
    back = pd.read_csv(io.StringIO(format_table(table, "csv")))
    assert list(back.columns[:6]) == ["label", "task", "mean", "sem", "seeds", "finished"]
    assert {"failed", MISSING_SUMMARY, "paper", "difference", "source"} <= set(back.columns)
    assert len(back) == len(table.rows) * len(table.columns)
    row = back[(back["label"] == "ring") & (back["task"] == "listops")].iloc[0]
    mean, sem = stats(RING_LISTOPS)
    assert row["mean"] == pytest.approx(mean, abs=1e-4)
    assert row["sem"] == pytest.approx(sem, abs=1e-4)
    assert (row["seeds"], row["finished"], row["failed"], row["paper"]) == (3, 2, 1, 59.4)


def test_an_unknown_format_or_layout_is_an_error(runs_dir):
    runs = load_runs(runs_dir)
    with pytest.raises(ValueError, match="layout 'wide'"):
        build_table(runs, "wide")
    with pytest.raises(ValueError, match="format 'html'"):
        format_table(build_table(runs, "ladder"), "html")


# --------------------------------------------------------------------------- command line


def test_table_command_prints_and_writes_the_file(runs_dir, tmp_path, capsys, monkeypatch):
    reference = types.ModuleType("ablations.reference")
    reference.paper_numbers = lambda layout: REFERENCE if layout == "ladder" else None
    monkeypatch.setitem(sys.modules, "ablations.reference", reference)
    out = tmp_path / "tables" / "ladder.md"
    assert main(["table", str(runs_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    assert "| lru " in printed and "ListOps paper" in printed

    assert main(["table", str(runs_dir), "--format", "csv", "--no-paper"]) == 0
    assert "paper" not in capsys.readouterr().out

    assert main(["table", str(tmp_path / "nowhere")]) == 2
    assert "no folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- significance


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom, by integrating its density
    (trapezoid rule on a fine grid; independent of scipy)."""
    import numpy as np

    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    x = np.linspace(t, t + 4000.0, 4_000_001)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
    tail = (df ** (df / 2)) * math.exp(log_norm) / df * (t + 4000.0) ** -df  # beyond the grid
    return float(np.trapezoid(density, x)) + tail


def welch_by_hand(a: list[float], b: list[float]) -> float:
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = abs(statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2 * student_t_sf(t, df)


def test_welch_p_value_equals_the_hand_computation():
    # equal sizes and variances: t = 3 / sqrt(2/3) = 3.674, 4 degrees of freedom, whose CDF
    # has a closed form: F(t) = 1/2 + (3/4) u (1 - u^2 / 3) with u = t / sqrt(t^2 + 4)
    t = 3 / math.sqrt(2 / 3)
    u = t / math.sqrt(t * t + 4)
    closed_form = 2 * (0.5 - 0.75 * u * (1 - u * u / 3))
    assert closed_form == pytest.approx(0.02131, abs=1e-5)
    assert significance([1, 2, 3], [4, 5, 6]) == pytest.approx(closed_form, rel=1e-9)
    # unequal sizes and variances: Welch-Satterthwaite's fractional degrees of freedom
    a, b = [43.9, 61.2, 52.0], [58.8, 60.1, 59.5, 60.4]
    assert significance(a, b) == pytest.approx(welch_by_hand(a, b), rel=1e-6)
    assert significance(a, b) == pytest.approx(significance(b, a))


def test_welch_is_undefined_without_two_seeds_or_any_variance():
    assert math.isnan(significance([50.0], [60.0, 61.0]))
    assert math.isnan(significance([], [60.0, 61.0]))
    assert math.isnan(significance([12.6, 12.6, 12.6], [12.6, 12.6]))
    # one side without variance is still a defined test
    assert significance([100.0, 100.0, 100.0], [87.2, 75.4, 100.0]) == pytest.approx(
        welch_by_hand([100.0, 100.0, 100.0], [87.2, 75.4, 100.0]), rel=1e-6)


def test_a_sweep_of_some_rungs_compares_each_with_the_nearest_rung_above_that_ran(tmp_path):
    # python -m ablations run ladder --rungs rnn_tanh,diag_complex,lru on two tasks, where
    # diag_complex did not run on the second: there lru is compared with rnn_tanh
    accuracies = {("rnn_tanh", "mqar"): [0.01, 0.02, 0.015],
                  ("diag_complex", "mqar"): [0.15, 0.18, 0.16],
                  ("lru", "mqar"): [0.20, 0.23, 0.19],
                  ("rnn_tanh", "copy"): [0.10, 0.12, 0.11],
                  ("lru", "copy"): [0.50, 0.40, 0.45]}
    for (rung, task), values in accuracies.items():
        for seed, acc in enumerate(values):
            write_run(tmp_path, f"{rung}-{task}-{seed}", task=task, rung=rung, seed=seed,
                      test_accuracy=acc)
    table = build_table(load_runs(tmp_path), "ladder")
    pct = {key: [100 * v for v in values] for key, values in accuracies.items()}
    expected = {("diag_complex", "mqar"): "rnn_tanh", ("lru", "mqar"): "diag_complex",
                ("lru", "copy"): "rnn_tanh"}
    for (label, task), other in expected.items():
        got = cell(table, label, task)
        assert got["compared_with"] == other
        assert got["p_value"] == pytest.approx(
            welch_by_hand(pct[label, task], pct[other, task]), rel=1e-5)
    assert pd.isna(cell(table, "rnn_tanh", "mqar")["compared_with"])      # the first that ran
    assert pd.isna(cell(table, "diag_complex", "copy")["compared_with"])  # did not run there
    assert pd.isna(cell(table, "stable_exp", "mqar")["compared_with"])    # not in the sweep


@pytest.fixture
def ladder_dir(tmp_path) -> Path:
    """Known answers: exp is far above diag_complex (p < 0.001), stable_exp equals exp in
    distribution (p = 1), ring has one seed (undefined), lru is one noisy seed-set, s5 is
    compared with lru."""
    root = tmp_path / "sweep"
    accuracies = {"diag_complex": [0.50, 0.51, 0.52], "exp": [0.70, 0.71, 0.72],
                  "stable_exp": [0.72, 0.70, 0.71], "ring": [0.75],
                  "lru": [0.60, 0.80, 0.70], "s5": [0.90, 0.91, 0.92]}
    for label, values in accuracies.items():
        for seed, acc in enumerate(values):
            model, rung = ("s5", None) if label == "s5" else ("lru", label)
            write_run(root, f"{label}{seed}", task="pathfinder", model=model, rung=rung,
                      seed=seed, test_accuracy=acc)
    return root


def test_ladder_table_marks_each_rung_against_the_one_above(ladder_dir):
    table = build_table(load_runs(ladder_dir), "ladder")
    exp = cell(table, "exp", "pathfinder")
    assert exp["compared_with"] == "diag_complex" and exp["significant"]
    assert exp["p_value"] == pytest.approx(welch_by_hand([50, 51, 52], [70, 71, 72]), rel=1e-6)
    stable = cell(table, "stable_exp", "pathfinder")
    assert stable["p_value"] == pytest.approx(1.0) and not stable["significant"]
    assert math.isnan(cell(table, "ring", "pathfinder")["p_value"])
    assert math.isnan(cell(table, "lru", "pathfinder")["p_value"])  # ring above has one seed
    s5 = cell(table, "s5", "pathfinder")
    assert s5["compared_with"] == "lru"
    assert s5["p_value"] == pytest.approx(welch_by_hand([90, 91, 92], [60, 80, 70]), rel=1e-6)
    assert s5["significant"] == (s5["p_value"] < 0.05)
    assert pd.isna(cell(table, "rnn_relu", "pathfinder")["compared_with"])

    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
             for line in format_table(table, "markdown").splitlines() if line.startswith("| ")}
    assert lines["rung"] == ["rung", "Pathfinder", "Pathfinder p"]
    assert lines["exp"][2] == "<0.001 *"
    assert lines["stable_exp"][2] == "1.000"
    assert lines["ring"][2] == "—"
    assert lines["rnn_relu"][2] == ""          # the first rung is compared with nothing
    assert lines["rnn_tanh"][2] == ""          # no run: compared with nothing
    assert lines["diag_complex"][2] == ""      # the first rung that ran
    assert lines["s5"][2] == f"{s5['p_value']:.3f}" + (" *" if s5["significant"] else "")
    assert "Welch's two-sided t-test" in format_table(table, "markdown")

    latex = format_table(table, "latex")
    assert "$<$0.001 *" in latex and "Pathfinder p" in latex
    back = pd.read_csv(io.StringIO(format_table(table, "csv")))
    row = back[(back["label"] == "exp") & (back["task"] == "pathfinder")].iloc[0]
    assert row["compared_with"] == "diag_complex" and bool(row["significant"])
    assert row["p_value"] == pytest.approx(exp["p_value"], abs=1e-4)


def test_lra_layout_has_no_significance_column(ladder_dir):
    table = build_table(load_runs(ladder_dir), "lra")
    assert "p_value" not in table.cells.columns
    assert " p |" not in format_table(table, "markdown")
