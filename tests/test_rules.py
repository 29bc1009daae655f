"""One rule, one place: the run label, ring use, which seeds count, the standard error and the
papers' numbers are each decided once, and the table, the plots, the sweeps, the state-norm
table and the trainer agree on them, checked on the same runs."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from matplotlib.container import BarContainer

from ablations import plots
from ablations.ladder import plan_ladder
from ablations.runs import load_runs, run_label
from ablations.state_norms import measure
from ablations.table import build_table, format_table
from lru.training.config import register
from lru.ladder import RUNG_NAMES, uses_ring
from lru.training.registry import RING_KEYS, build_model, check_given, ignored_settings
from lru.training.loop import task_meta
from test_ablations_table import write_run  # tests/ is on sys.path (rootdir-less test modules)

REPO = Path(__file__).resolve().parents[1]
MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))
register()

# --------------------------------------------------------------------------- ring use


def test_uses_ring_is_true_for_the_ring_rungs_of_the_lru_only():
    assert [r for r in RUNG_NAMES if uses_ring("lru", r)] == ["ring", "lru"]
    for layer in ("s4", "s4d", "s5", "rg_lru", "hawk", "griffin"):
        for rung in (*RUNG_NAMES, None, "no such rung"):
            assert not uses_ring(layer, rung), (layer, rung)
    for rung in ("no such rung", None):
        with pytest.raises(ValueError, match="unknown rung.*rnn_relu"):
            uses_ring("lru", rung)


def test_the_trainer_ignores_the_ring_exactly_where_uses_ring_is_false():
    assert "lru" in MODELS and "s5" in MODELS
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for model in MODELS:
            for rung in RUNG_NAMES:
                cfg = compose(config_name="config",
                              overrides=[f"model={model}", f"ablation={rung}", "run_dir=unused"])
                ignored = ignored_settings(cfg)
                used = [key not in ignored for key in RING_KEYS]
                assert used == [uses_ring(cfg.model.layer, rung)] * 3, (model, rung)


def test_a_protocol_shared_by_every_model_builds_the_backbones_and_refuses_only_given_keys():
    """One experiment file sets the harness block's norm for every model of a sweep (e.g. layer
    norm for a per-token task); Hawk/Griffin/MQA do not read it, so it is refused only when
    given for the run (model.d_state likewise for MQA, which has no recurrence)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for model in ("hawk", "griffin", "mqa"):
            cfg = compose(config_name="config", overrides=[
                f"model={model}", "model.norm=layer", "model.glu=half_glu1", "run_dir=unused"])
            build_model(cfg, task_meta(cfg))  # the file's settings are not read, not refused
            ignored = ignored_settings(cfg)
            assert {"model.norm", "model.glu", "model.prenorm", "model.bn_momentum"} <= set(ignored)
            assert ("model.d_state" in ignored) == (model == "mqa")
            with pytest.raises(ValueError, match=f"model.norm .*model.layer='{model}'"):
                check_given(cfg, ["model.norm=layer"])
            check_given(cfg, [f"model={model}"])
        cfg = compose(config_name="config", overrides=["model=lru", "run_dir=unused"])
        assert not {"model.norm", "model.d_state"} & set(ignored_settings(cfg))


def test_the_sweep_gives_the_ring_to_the_ring_rungs_only():
    _, multiruns = plan_ladder(task="listops_mini", experiment=None, seeds=1, baselines=())
    by_name = {m.name: dict(o.split("=", 1) for o in m.overrides) for m in multiruns}
    assert by_name["rungs_ring"]["ablation"].split(",") == [
        r for r in RUNG_NAMES if uses_ring("lru", r)]
    assert by_name["rungs_unit_disk"]["ablation"].split(",") == [
        r for r in RUNG_NAMES if not uses_ring("lru", r)]
    assert all(key in by_name["rungs_ring"] for key in RING_KEYS)
    assert not any(key in by_name["rungs_unit_disk"] for key in RING_KEYS)


# --------------------------------------------------------------------------- the runs


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    """Seeds of known accuracy, with a single-seed group, a superseded failure and a run
    without summary; each run's config sets a ring."""
    root = tmp_path / "sweep"
    for seed, acc in enumerate([0.55, 0.60, 0.62]):
        write_run(root, f"lru{seed}", task="listops", rung="lru", seed=seed, test_accuracy=acc)
    write_run(root, "ring0", task="listops", rung="ring", test_accuracy=0.50)
    write_run(root, "ring1", task="listops", rung="ring", seed=1, status="failed")
    write_run(root, "s5", task="listops", model="s5", rung=None, test_accuracy=0.52)
    write_run(root, "exp0", task="listops", rung="exp", summary=False)
    write_run(root / "a", "lru_pf0", task="pathfinder", rung="lru", status="failed")
    write_run(root / "b", "lru_pf0", task="pathfinder", rung="lru", test_accuracy=0.80)
    for seed, acc in enumerate([0.70, 0.74]):
        write_run(root, f"diag{seed}", task="pathfinder", rung="diag_complex", seed=seed,
                  test_accuracy=acc)
    return root


#: Exact matching: the upper-case rows match no label, so s5 has no paper value.
REFERENCE = pd.DataFrame({
    "model": ["lru", "LRU", "ring", "S5", "exp", "diag_complex"],
    "task": ["listops", "listops", "listops", "listops", "listops", "pathfinder"],
    "value": [60.2, 11.0, 59.4, 58.0, 60.5, np.nan],
    "source": ["T3", "upper case", "T7", "upper case", "T7", "T7 (✗)"],
})


def test_the_run_label_and_ring_columns_follow_the_rules(runs_dir):
    runs = load_runs(runs_dir)
    assert run_label("lru", "ring") == "ring" and run_label("s5", "lru") == "s5"
    assert runs["label"].tolist() == [run_label(m, r) for m, r in zip(runs["model"], runs["rung"])]
    # the plots label run folders by the same rule as the run loader
    from_dirs = plots._runs_to_plot(runs["run_dir"].tolist())
    assert from_dirs["label"].tolist() == runs["label"].tolist()
    # the ring columns are filled exactly where the run used a ring
    for row in runs.itertuples():
        assert pd.notna(row.r_min) == uses_ring(row.model, row.rung), row.run_dir


def test_the_table_and_the_plot_show_the_same_numbers(runs_dir):
    runs = load_runs(runs_dir)
    table = build_table(runs, "ladder", REFERENCE).cells.set_index(["task", "label"])
    data = plots.accuracy_data(runs, REFERENCE).set_index(["task", "label"])
    assert len(data) == 2 * 5    # tasks x labels with a run: lru, ring, diag_complex, exp, s5
    shared = table.loc[data.index]
    for column in ("mean", "sem", "paper"):
        pd.testing.assert_series_equal(data[column], shared[column], check_names=False)
    for column in ("seeds", "finished", "source"):
        assert data[column].tolist() == shared[column].tolist(), column

    # known answers, computed independently
    lru = data.loc[("listops", "lru")]
    percent = [55.0, 60.0, 62.0]
    assert lru["mean"] == pytest.approx(statistics.fmean(percent))
    assert lru["sem"] == pytest.approx(statistics.stdev(percent) / math.sqrt(3))
    assert lru["accuracies"] == pytest.approx(tuple(percent))
    # one finished seed: a mean and no standard error, in both (never 0)
    for label in ("s5", "ring"):
        one = data.loc[("listops", label)]
        assert one["finished"] == 1 and math.isnan(one["sem"]) and math.isnan(shared.loc[
            ("listops", label), "sem"])
    assert data.loc[("listops", "ring"), "seeds"] == 2
    # the finished rerun supersedes the failed seed in both
    assert tuple(data.loc[("pathfinder", "lru"), ["seeds", "finished", "mean"]]) == (1, 1, 80.0)
    # exact matching: "LRU" and "S5" match nothing
    assert data.loc[("listops", "lru"), "paper"] == 60.2
    assert math.isnan(data.loc[("listops", "s5"), "paper"])

    # the figure draws these numbers: the bars, their error bars, none for one seed
    fig = plots.plot_rung_accuracy(runs, REFERENCE)
    listops = fig.axes[0]
    labels = [t.get_text() for t in listops.get_xticklabels()]
    assert labels == ["diag_complex", "exp", "ring", "lru", "s5"]
    bars = {labels[round(c.patches[0].get_x() + c.patches[0].get_width() / 2)]: c
            for c in listops.containers if isinstance(c, BarContainer)}
    assert set(bars) == {"ring", "lru", "s5"}       # exp has no finished run: no bar
    for label, bar in bars.items():
        cell = data.loc[("listops", label)]
        assert bar.patches[0].get_height() == pytest.approx(cell["mean"])
        if math.isnan(cell["sem"]):
            assert bar.errorbar is None, label
        else:
            low, high = bar.errorbar.lines[2][0].get_segments()[0][:, 1]
            assert (high - low) / 2 == pytest.approx(cell["sem"])
    diamonds = [line.get_xdata()[0] for line in listops.lines if line.get_marker() == "D"]
    assert sorted(labels[round(x)] for x in diamonds) == ["exp", "lru", "ring"]

    text = format_table(build_table(runs, "ladder"), "markdown")
    s5_line = next(line for line in text.splitlines() if line.startswith("| s5"))
    assert "52.0 (n=1)" in s5_line and "±" not in s5_line


def test_the_table_the_plots_and_the_state_norms_refuse_a_seed_finished_twice(runs_dir):
    write_run(runs_dir / "rerun", "lru0", task="listops", rung="lru", test_accuracy=0.9)
    runs = load_runs(runs_dir)
    errors = []
    for make in (lambda: build_table(runs, "ladder"), lambda: build_table(runs, "lra"),
                 lambda: plots.accuracy_data(runs), lambda: plots.plot_rung_accuracy(runs),
                 lambda: measure(runs_dir)):
        with pytest.raises(ValueError, match="listops / lru seed 0 finished more than once") as e:
            make()
        errors.append(str(e.value))
    assert len(set(errors)) == 1
    assert str(runs_dir / "lru0") in errors[0] and str(runs_dir / "rerun" / "lru0") in errors[0]


def test_a_ring_sweep_counts_a_seed_once_per_ring(tmp_path):
    from test_plots import write_run as write_ring_run

    rows = []
    for name, seed, r_min, acc in (("a", 0, 0.0, 0.5), ("b", 0, 0.5, 0.7), ("c", 1, 0.5, 0.8)):
        run = write_ring_run(tmp_path / name, seed=seed, r_min=r_min, r_max=0.9)
        rows.append({"task": "listops", "label": "lru", "seed": seed, "status": "finished",
                     "test_accuracy": acc, "run_dir": str(run)})
    grid = plots.sweep_grid(pd.DataFrame(rows)).set_index(["r_min", "r_max"])
    assert grid["n"].to_dict() == {(0.0, 0.9): 1, (0.5, 0.9): 2}
    assert grid.loc[(0.5, 0.9), "value"] == pytest.approx(75.0)

    run = write_ring_run(tmp_path / "d", seed=1, r_min=0.5, r_max=0.9)
    rows.append({"task": "listops", "label": "lru", "seed": 1, "status": "finished",
                 "test_accuracy": 0.6, "run_dir": str(run)})
    with pytest.raises(ValueError, match=r"listops / lru, r_min 0.5, r_max 0.9 seed 1 finished"):
        plots.sweep_grid(pd.DataFrame(rows))
