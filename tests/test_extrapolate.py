"""``python -m ablations extrapolate``: trained per-token runs scored on fresh examples at
other lengths (``ablations.extrapolate``), the models rebuilt for those lengths
(``lru.training.restore.load_model(..., length=)``) and the accuracy-against-length plot
(``ablations.plots.plot_extrapolation``).

One tiny induction-heads run (length 16, 30 steps) is trained for the module; runs that are
only read, never trained, are folders holding a ``config.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from omegaconf import OmegaConf

import tasks
from ablations.__main__ import main
from ablations.extrapolate import (COLUMNS, extrapolate, fresh_split, open_run, parse_lengths,
                                   score, window_note)
from ablations.plots import extrapolation_lines, plot_extrapolation
from ablations.stats import standard_error
from lru.layers import S4
from lru.training.loop import train
from lru.training.registry import BACKBONES
from lru.training.restore import load_model
from tasks.base import IGNORE
from tests.jitted import forward
from tests.tiny import compose_cfg



def per_token(model: str = "lru") -> list[str]:
    """A tiny causal ``model`` with a head at every step (the per-token rules; the harness's
    blocks with layer norm, Hawk/Griffin/MQA with their own)."""
    norm = [] if model in BACKBONES else ["model.norm=layer"]
    return [f"model={model}", "model.d_model=16", "model.d_state=16", "model.n_layers=1",
            "model.pooling=none", *norm]

#: Induction heads at length 16, small splits.
INDUCTION = ["task=induction_heads", "task.generate.args.length=16",
             "task.generate.args.n_train=512", "task.generate.args.n_val=64",
             "task.generate.args.n_test=64"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder of 30 steps of a tiny LRU on induction heads at length 16."""
    root = tmp_path_factory.mktemp("extrapolate")
    run = root / "lru-seed0"
    summary = train(compose_cfg([
        *INDUCTION, *per_token(), f"run_dir={run}", f"task.data_dir={root / 'data'}",
        f"task.cache_dir={root / 'cache'}", "trainer.steps=30", "trainer.batch_size=32",
        "trainer.eval_every=15", "trainer.log_every=15", "trainer.eval_batch_size=64",
        "trainer.progress=false"]))
    assert summary["status"] == "finished", summary.get("reason")
    return run


def config_run(path: Path, overrides: list[str]) -> Path:
    """A run folder holding only the ``config.yaml`` of ``overrides`` (as train writes it)."""
    path.mkdir(parents=True)
    cfg = compose_cfg([f"run_dir={path}", *overrides])
    (path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def windows(model) -> list[int]:
    return [block.attention_block.window for block in model.backbone.blocks]


# --------------------------------------------------------------------------- the command


def test_the_command_writes_the_csv_the_table_and_the_plot(trained, tmp_path, capsys):
    out, image = tmp_path / "sub" / "length.csv", tmp_path / "length.png"
    (tmp_path / "sub").mkdir()
    rc = main(["extrapolate", str(trained), "--lengths", "32,16,48", "--n", "40",
               "--batch-size", "16", "--out", str(out), "--plot", str(image)])
    printed = capsys.readouterr().out
    assert rc == 0
    frame = pd.read_csv(out)
    assert tuple(frame.columns) == COLUMNS
    assert frame["length"].tolist() == [16, 32, 48]
    assert (frame["run"] == str(trained)).all() and (frame["task"] == "induction_heads").all()
    assert (frame["model"] == "lru").all() and (frame["rung"] == "lru").all()
    assert (frame["seed"] == 0).all() and (frame["train_length"] == 16).all()
    assert (frame["n"] == 40).all()
    for column in ("accuracy", "sequence_accuracy"):
        assert frame[column].between(0, 1).all(), frame
    # induction heads scores one position per example: both accuracies are one number
    np.testing.assert_allclose(frame["accuracy"], frame["sequence_accuracy"])
    assert "| run " in printed and f"wrote {out}" in printed and f"wrote {image}" in printed
    data = image.read_bytes()
    assert data[:4] == b"\x89PNG" and len(data) > 2000
    assert not list(out.parent.glob("*.tmp"))  # written through a temporary file


def test_at_the_training_length_it_scores_as_the_run_did(trained):
    """Two independent paths: the run's own evaluation of its test split during training,
    and the accuracy recomputed in numpy from the model's logits on freshly sampled
    examples."""
    cfg = OmegaConf.load(trained / "config.yaml")
    summary = json.loads((trained / "summary.json").read_text())
    test = tasks.load("induction_heads", "test", cfg.task.data_dir, cache_dir=cfg.task.cache_dir,
                      max_length=16)
    got = score(load_model(trained, "best", length=16), test, batch_size=7)
    assert got["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
    assert got["sequence_accuracy"] == pytest.approx(summary["test_sequence_accuracy"], abs=1e-6)

    row = extrapolate([trained], [16], n=60, batch_size=25, seed=3, progress=False).iloc[0]
    arrays = tasks.sampler("induction_heads")(60, length=16, rng=np.random.default_rng([3, 16]))
    model = load_model(trained, "best")  # as the run built it
    logits = np.asarray(forward(model, jnp.asarray(arrays["inputs"]),
                                jnp.asarray(arrays["lengths"])))
    scored = arrays["labels"] != IGNORE
    right = (logits.argmax(-1) == arrays["labels"]) & scored
    assert row["accuracy"] == pytest.approx(right.sum() / scored.sum(), abs=1e-6)
    assert row["sequence_accuracy"] == pytest.approx((right | ~scored).all(1).mean(), abs=1e-6)


def test_every_run_sees_the_same_examples_with_its_own_options(trained, tmp_path):
    run = open_run(trained)
    a, b = fresh_split(run, 32, 10, seed=0), fresh_split(run, 32, 10, seed=0)
    assert a.inputs.shape == a.labels.shape == (10, 32) and a.meta.max_length == 32
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert not np.array_equal(a.inputs, fresh_split(run, 32, 10, seed=1).inputs)
    # MQAR's n_pairs comes from the run's task.generate.args: 3 queries scored per example
    mqar = config_run(tmp_path / "mqar", ["task=mqar", "task.generate.args.length=16",
                                          "task.generate.args.n_pairs=3", *per_token()])
    (mqar / "checkpoints" / "best").mkdir(parents=True)
    split = fresh_split(open_run(mqar), 40, 5, seed=0)
    assert split.inputs.shape == (5, 40)
    assert ((split.labels != IGNORE).sum(axis=1) == 3).all()
    with pytest.raises(ValueError, match=r"length 8 .*n_pairs.*4 \* n_pairs"):
        fresh_split(open_run(mqar), 8, 5, seed=0)


# --------------------------------------------------------------------------- refusals


def test_a_run_of_a_sequence_task_is_refused(tmp_path, capsys):
    run = config_run(tmp_path / "listops", ["task.options.max_length=16"])
    rc = main(["extrapolate", str(run), "--lengths", "16,32"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(run) in err and "'listops' has one label per sequence" in err
    assert "per-token" in err and "induction_heads" in err


def test_a_missing_run_or_checkpoint_names_the_path_and_the_way_to_it(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["extrapolate", str(missing), "--lengths", "16"]) == 2
    err = capsys.readouterr().err
    assert str(missing / "config.yaml") in err and "not a run directory" in err
    bare = config_run(tmp_path / "bare", [*INDUCTION, *per_token()])
    assert main(["extrapolate", str(bare), "--lengths", "16"]) == 2
    err = capsys.readouterr().err
    assert str(bare / "checkpoints" / "best") in err
    assert "trainer.checkpoint=true" in err and "--which latest" in err
    with pytest.raises(FileNotFoundError, match=r"checkpoints/latest.*--which best"):
        open_run(bare, "latest")


def test_bad_arguments_name_themselves(trained, tmp_path, capsys):
    assert parse_lengths("64,16,16") == [16, 64]
    for bad in ("16,x", "0", "16,,32"):
        with pytest.raises(ValueError, match="--lengths"):
            parse_lengths(bad)
    assert main(["extrapolate", str(trained), "--lengths", "16", "--plot",
                 str(tmp_path / "a.gif")]) == 2
    assert "--plot" in capsys.readouterr().err
    with pytest.raises(ValueError, match="n must be at least 1"):
        extrapolate([trained], [16], n=0)


# --------------------------------------------------------------------------- longer models


def test_mqa_rebuilt_for_a_longer_length_attends_over_all_of_it(tmp_path):
    auto = config_run(tmp_path / "auto", [*INDUCTION, *per_token("mqa")])
    assert windows(load_model(auto, "init")) == [16]
    assert windows(load_model(auto, "init", length=64)) == [64]
    assert window_note(open_run_unchecked(auto)) is None
    # a window the config sets is kept (beyond it the attention is local), and said
    fixed = config_run(tmp_path / "fixed", [*INDUCTION, *per_token("mqa"),
                                            "model.layer_options.attention_window=24"])
    assert windows(load_model(fixed, "init", length=64)) == [24]
    note = window_note(open_run_unchecked(fixed))
    assert "attention_window=24" in note and "local" in note


def open_run_unchecked(run_dir: Path):
    """:func:`open_run` of a config-only run (an empty checkpoint folder stands in)."""
    (run_dir / "checkpoints" / "best").mkdir(parents=True, exist_ok=True)
    return open_run(run_dir)


@pytest.mark.parametrize("model", ["mqa", "s4", "hawk"])
def test_the_rebuilt_model_computes_the_same_function_on_the_training_length(tmp_path, model):
    """Causal models: on a length-64 input, the first 16 steps' logits of the model rebuilt
    for 64 are those of the model as trained, on those 16 steps alone (S4 refolded, MQA's
    window widened)."""
    run = config_run(tmp_path / model, [*INDUCTION, *per_token(model)])
    trained_model, longer = load_model(run, "init"), load_model(run, "init", length=64)
    if model == "s4":
        assert [n.l_max for _, n in nnx.iter_graph(longer) if isinstance(n, S4)] == [64]
    tokens = np.random.default_rng(0).integers(1, 16, (2, 64)).astype(np.int32)
    full = np.asarray(forward(longer, jnp.asarray(tokens), jnp.full((2,), 64, jnp.int32)))
    prefix = np.asarray(forward(trained_model, jnp.asarray(tokens[:, :16]),
                                jnp.full((2,), 16, jnp.int32)))
    np.testing.assert_allclose(full[:, :16], prefix, rtol=1e-4, atol=1e-4 * np.abs(prefix).max())


# --------------------------------------------------------------------------- the plot


def lengths_frame(runs: list[tuple[str, str, int, list[float]]]) -> pd.DataFrame:
    """An extrapolation frame: ``(run, model, seed, accuracies at 16, 32, 64)`` per run."""
    rows = [{"run": run, "task": "induction_heads", "model": model, "rung": None, "seed": seed,
             "train_length": 16, "length": length, "accuracy": acc, "sequence_accuracy": acc,
             "n": 10}
            for run, model, seed, accs in runs for length, acc in zip((16, 32, 64), accs)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_the_plot_averages_the_seeds_of_a_label(tmp_path):
    frame = lengths_frame([("h0", "hawk", 0, [1.0, 0.9, 0.8]), ("h1", "hawk", 1, [1.0, 0.7, 0.4]),
                           ("m0", "mqa", 0, [1.0, 0.2, 0.1])])
    lines = extrapolation_lines(frame).set_index(["line", "length"])
    assert lines.loc[("hawk", 32), "mean"] == pytest.approx(0.8)
    assert lines.loc[("hawk", 64), "sem"] == pytest.approx(standard_error([0.8, 0.4]))
    assert lines.loc[("hawk", 64), "sem"] == pytest.approx(0.2)  # std(ddof=1) / sqrt(2)
    assert (lines.loc["hawk", "seeds"] == 2).all()
    assert np.isnan(lines.loc[("mqa", 32), "sem"]) and lines.loc[("mqa", 32), "mean"] == 0.2
    # two runs of one label and seed differ in something else: a line each, by folder
    twice = lengths_frame([("a/hawk", "hawk", 0, [1, 1, 1]), ("b/hawk", "hawk", 0, [1, 0, 0])])
    assert set(extrapolation_lines(twice)["line"]) == {"a/hawk", "b/hawk"}
    # a CSV read back plots too (rung empty for models other than the LRU)
    path = tmp_path / "length.csv"
    frame.to_csv(path, index=False)
    fig = plot_extrapolation(pd.read_csv(path))
    fig.savefig(tmp_path / "length.png", dpi=60)
    assert (tmp_path / "length.png").read_bytes()[:4] == b"\x89PNG"
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert any(list(line.get_xdata()) == [16, 16] for line in ax.get_lines())  # trained at 16
    with pytest.raises(ValueError, match="lacks columns"):
        extrapolation_lines(frame.drop(columns=["train_length"]))
