"""The ablation plots and ``lru.training.restore.load_model``: every plot writes a non-empty image from
small synthetic inputs (and one tiny real run), a restored model is its checkpoint, and the
state norms tell the paper's Section 3 story."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import pytest
from flax import nnx
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import tasks
from ablations import plots
from lru.analysis import layer_eigenvalues
from lru.training.config import register
from lru.training.loop import evaluate, load_data, make_eval_step, train
from lru.training.registry import build_model
from lru.training.restore import load_model

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
register()


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def assert_image(path: Path, fig=None) -> None:
    """``fig`` (if given) saved to ``path`` is a non-empty PNG or PDF."""
    if fig is not None:
        fig.savefig(path, dpi=60)
    data = Path(path).read_bytes()
    assert len(data) > 2000, f"{path}: only {len(data)} bytes"
    assert data[:4] in (b"\x89PNG", b"%PDF"), data[:8]


# --------------------------------------------------------------------------- a tiny real run


#: A ring-rung run of 10 steps on tiny generated ListOps, evaluated at steps 5 and 10.
TINY_RUN = [
    "task.generate.args.n_train=300", "task.generate.args.n_val=100",
    "task.generate.args.n_test=100", "task.generate.args.max_depth=2",
    "task.generate.args.max_length=16", "task.options.max_length=16",
    "model.d_model=16", "model.d_state=16", "model.n_layers=2", "ablation=ring",
    "model.r_min=0.5", "model.r_max=0.95", "model.max_phase=3.14",
    "trainer.steps=10", "trainer.eval_every=5", "trainer.log_every=2",
    "trainer.eval_batch_size=100", "trainer.bucket=false", "trainer.progress=false",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The run directory of :data:`TINY_RUN`."""
    data = tmp_path_factory.mktemp("listops-data")
    run = tmp_path_factory.mktemp("runs") / "ring-seed0"
    summary = train(compose_cfg(TINY_RUN + [f"run_dir={run}", f"task.data_dir={data}",
                                            f"task.cache_dir={data / 'cache'}"]))
    assert summary["status"] == "finished", summary.get("reason")
    return run


def _flat(tree) -> dict[str, np.ndarray]:
    """``{"a/b/c": array}`` for a nested dict, dropping orbax's trailing ``value`` keys."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    flat = {}
    for path, leaf in leaves:
        keys = [str(getattr(k, "key", k)) for k in path]
        flat["/".join(keys[:-1] if keys[-1] == "value" else keys)] = np.asarray(leaf)
    return flat


@pytest.mark.parametrize("which", ["best", "latest"])
def test_load_model_restores_parameters_and_batch_stats(trained, which):
    folder = trained / "checkpoints" / which
    step = next(p.name for p in folder.iterdir() if p.is_dir())
    saved = ocp.StandardCheckpointer().restore(folder / step / "arrays")
    model = load_model(trained, which)
    for kind, variables in (("params", nnx.Param), ("stats", nnx.BatchStat)):
        ours = _flat(nnx.to_pure_dict(nnx.state(model, variables)))
        theirs = _flat(saved[kind])
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{kind} {key}")


def test_load_model_best_reproduces_the_summarys_test_accuracy(trained):
    summary = json.loads((trained / "summary.json").read_text())
    model = load_model(trained, "best")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    data = load_data(OmegaConf.load(trained / "config.yaml"))
    result = evaluate(make_eval_step(graphdef, dual=False), params, rest, data["test"], 100)
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)


def test_load_model_init_is_the_untrained_model_of_the_seed(trained):
    cfg = compose_cfg(TINY_RUN + ["run_dir=unused"])
    meta = tasks.get_task("listops").meta(tasks.resolve_options("listops", max_length=16))
    fresh = _flat(nnx.to_pure_dict(nnx.state(build_model(cfg, meta), nnx.Param)))
    init = load_model(trained, "init")
    ours = _flat(nnx.to_pure_dict(nnx.state(init, nnx.Param)))
    assert ours.keys() == fresh.keys()
    for key in fresh:
        np.testing.assert_array_equal(ours[key], fresh[key], err_msg=key)
    for lam in layer_eigenvalues(init).values():  # on the run's ring
        assert np.all((np.abs(lam) >= 0.5 - 1e-6) & (np.abs(lam) <= 0.95 + 1e-6))
        assert np.all((np.angle(lam) >= 0) & (np.angle(lam) <= 3.14))
    best = _flat(nnx.to_pure_dict(nnx.state(load_model(trained, "best"), nnx.Param)))
    assert any(not np.array_equal(ours[k], best[k]) for k in ours), "training changed nothing"


def test_load_model_errors_name_the_fix(trained, tmp_path):
    with pytest.raises(ValueError, match="'best', 'latest', 'init'"):
        load_model(trained, "final")
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_model(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text((trained / "config.yaml").read_text())
    with pytest.raises(FileNotFoundError, match="which='init'"):
        load_model(bare, "best")
    assert not (bare / "checkpoints").exists()  # a wrong path is left as it was
    assert load_model(bare, "init") is not None


def test_plot_eigenvalues(trained, tmp_path):
    fig = plots.plot_eigenvalues(trained)
    ax_init = fig.axes[0]
    assert len(ax_init.patches) == 2  # the unit circle and the ring
    assert len(ax_init.collections) == 2  # one scatter per layer
    assert_image(tmp_path / "eig.png", fig)
    assert_image(tmp_path / "eig.pdf", plots.plot_eigenvalues(trained, which="latest"))


# --------------------------------------------------------------------------- synthetic runs


def runs_frame() -> pd.DataFrame:
    """Two tasks x three labels x three seeds; one failed run; rnn_tanh all failed on one task."""
    rows = []
    for task in ("listops", "pathfinder"):
        for label in ("rnn_tanh", "lru", "s5"):
            for seed in range(3):
                failed = ((label == "rnn_tanh" and task == "pathfinder")
                          or (label == "lru" and seed == 2))
                rows.append({"task": task, "model": "s5" if label == "s5" else "lru",
                             "rung": None if label == "s5" else label, "seed": seed,
                             "status": "failed" if failed else "finished",
                             "test_accuracy": None if failed else 0.4 + 0.1 * seed,
                             "best_val_accuracy": 0.5, "run_dir": "unused", "label": label})
    return pd.DataFrame(rows)


def reference_frame() -> pd.DataFrame:
    return pd.DataFrame({"model": ["lru", "lru", "rnn_tanh", "rnn_tanh"],
                         "task": ["listops", "pathfinder", "listops", "pathfinder"],
                         "value": [60.2, 95.1, 43.9, np.nan],
                         "source": ["paper"] * 4})


def test_plot_rung_accuracy_shows_means_of_finished_seeds_only(tmp_path):
    fig = plots.plot_rung_accuracy(runs_frame(), reference_frame())
    listops, pathfinder = fig.axes[:2]
    assert [t.get_text() for t in listops.get_xticklabels()] == ["rnn_tanh", "lru", "s5"]
    heights = [p.get_height() for p in listops.patches]
    assert heights == pytest.approx([50.0, 45.0, 50.0])  # lru: seeds 0 and 1 only
    # rnn_tanh failed on every pathfinder seed: no bar (never a zero), the table's count
    assert [p.get_height() for p in pathfinder.patches] == pytest.approx([45.0, 50.0])
    assert "3 failed" in [t.get_text() for t in pathfinder.texts]
    assert "✗" in [t.get_text() for t in pathfinder.texts]  # the paper's printed failure
    assert_image(tmp_path / "accuracy.png", fig)
    assert_image(tmp_path / "accuracy-noref.png", plots.plot_rung_accuracy(runs_frame()))


def test_plot_rung_accuracy_names_missing_columns():
    with pytest.raises(ValueError, match="test_accuracy.*load_runs"):
        plots.plot_rung_accuracy(runs_frame().drop(columns="test_accuracy"))


def write_run(folder: Path, *, rung: str = "lru", seed: int = 0, r_min: float = 0.0,
              r_max: float = 0.99, metrics: list[dict] | None = None) -> Path:
    """A run directory with a real composed config.yaml and the given metrics lines."""
    folder.mkdir(parents=True)
    cfg = compose_cfg([f"run_dir={folder}", f"ablation={rung}", f"seed={seed}",
                       f"model.r_min={r_min}", f"model.r_max={r_max}"])
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    lines = [json.dumps(m) for m in metrics or []]
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def curve(seed: int) -> list[dict]:
    """Train records every 10 steps and val records every 50, for 100 steps."""
    rng = np.random.default_rng(seed)
    train_lines = [{"step": s, "split": "train", "loss": 2.3 - s / 100 + 0.1 * rng.random(),
                    "accuracy": 0.1 + s / 200, "grad_norm": 1.0, "lr": 1e-3,
                    "tokens_per_s": 1e4} for s in range(9, 100, 10)]
    val_lines = [{"step": s, "split": split, "loss": 2.2 - s / 120, "accuracy": 0.15 + s / 250}
                 for s in (49, 99) for split in ("val", "test")]
    return train_lines + val_lines


def test_plot_training_curves_from_run_dirs_and_a_frame(tmp_path, trained):
    dirs = [write_run(tmp_path / f"{rung}-{seed}", rung=rung, seed=seed, metrics=curve(seed))
            for rung in ("ring", "lru") for seed in (0, 1)]
    fig = plots.plot_training_curves(dirs + [trained])
    ax_loss = fig.axes[0]
    assert len(ax_loss.lines) == 2 * 5  # train and val per run
    assert_image(tmp_path / "curves.png", fig)
    frame = pd.DataFrame({"task": "listops", "label": ["ring", "ring", "lru", "lru"],
                          "run_dir": [str(d) for d in dirs]})
    assert_image(tmp_path / "curves-frame.png", plots.plot_training_curves(frame))

    # by run: one colour and one legend entry per run folder, whatever its rung
    by_run = plots.plot_training_curves(frame, by="run")
    legend = [t.get_text() for t in by_run.legends[0].get_texts()]
    assert sorted(legend[:4]) == sorted(d.name for d in dirs) and legend[4:] == ["train", "val"]
    colours = {tuple(line.get_color()) if not isinstance(line.get_color(), str)
               else line.get_color() for line in by_run.axes[0].lines[::2]}
    assert len(colours) == 4
    with pytest.raises(ValueError, match="by='seed'"):
        plots.plot_training_curves(frame, by="seed")


def test_read_metrics_skips_a_half_written_last_line(tmp_path):
    run = write_run(tmp_path / "run", metrics=curve(0))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 109, "split": "tr')
    assert len(plots.read_metrics(run)) == len(curve(0))
    (run / "metrics.jsonl").write_text('{"step": 1\n{"step": 2, "split": "train"}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:1"):
        plots.read_metrics(run)
    with pytest.raises(ValueError, match="none of the runs has a metrics.jsonl"):
        plots.plot_training_curves([write_run(tmp_path / "empty")])


def test_heatmap_from_a_grid_and_from_a_sweep_of_runs(tmp_path):
    grid = pd.DataFrame([{"task": "image", "setting": setting, "r_min": a, "r_max": b,
                          "value": 80 + 5 * a + 3 * b}
                         for setting in ("(b) ring", "(c) lru")
                         for a in (0.0, 0.5, 0.9) for b in (0.9, 0.99, 0.999)])
    fig = plots.plot_rmin_rmax_heatmap(grid)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["image · (b) ring", "image · (c) lru"]
    assert_image(tmp_path / "grid.png", fig)

    rows = []
    for r_min in (0.0, 0.5):
        for r_max in (0.9, 0.99):
            for seed in (0, 1):
                run = write_run(tmp_path / f"lru-{r_min}-{r_max}-{seed}", seed=seed,
                                r_min=r_min, r_max=r_max)
                rows.append({"task": "listops", "label": "lru", "seed": seed,
                             "status": "finished",
                             "test_accuracy": r_max - r_min / 10 + seed / 100,
                             "run_dir": str(run)})
    # No ring on the unit-disk rungs: their r_min/r_max are not part of any grid.
    tanh = write_run(tmp_path / "tanh", rung="rnn_tanh")
    rows.append({"task": "listops", "label": "rnn_tanh", "seed": 0, "status": "finished",
                 "test_accuracy": 0.3, "run_dir": str(tanh)})
    rows.append({"task": "listops", "label": "lru", "seed": 0, "status": "failed",
                 "test_accuracy": None,
                 "run_dir": str(write_run(tmp_path / "failed", r_min=0.5, r_max=0.9))})
    runs = pd.DataFrame(rows)
    sweep = plots.sweep_grid(runs)
    assert set(sweep["label"]) == {"lru"} and len(sweep) == 4 and set(sweep["n"]) == {2}
    cell = sweep[(sweep["r_min"] == 0.5) & (sweep["r_max"] == 0.9)]
    assert float(cell["value"].iloc[0]) == pytest.approx(100 * (0.9 - 0.05 + 0.005))
    assert_image(tmp_path / "grid-runs.png", plots.plot_rmin_rmax_heatmap(runs))


# --------------------------------------------------------------------------- state norms


def test_state_norms_gamma_keeps_the_state_at_the_input_scale():
    r_min, r_max, t = 0.9, 0.999, 1000
    norms = plots.state_norms(["ring", "lru"], length=t, batch=16, d_state=256,
                              r_min=r_min, r_max=r_max)
    ring, lru = norms["ring"], norms["lru"]
    # With gamma: within a factor of a few of t = 1, and at the input's scale (1) by t = 1000.
    assert 1 / 5 < lru[t - 1] / lru[0] < 5
    assert 0.7 < lru[t - 1] < 1.3
    # Without gamma, modes near |lambda| = 1 accumulate: the norm grows well above the input's.
    assert ring[t - 1] > 3 * ring[0] and ring[t - 1] > 3 * lru[t - 1]
    # ... to Proposition 3's E||x_t||^2 / n = E[(1 - |lambda|^(2t)) / (1 - |lambda|^2)] at
    # |lambda|^2 ~ U[r_min^2, r_max^2] (the stationary value as t -> infinity).
    s = np.linspace(r_min**2, r_max**2, 200_001)
    expected = math.sqrt(np.mean((1 - s**t) / (1 - s)))
    assert ring[t - 1] == pytest.approx(expected, rel=0.2)


def test_plot_state_norms(tmp_path):
    fig = plots.plot_state_norms(length=64, d_state=16)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert "diag_complex = exp = stable_exp" in labels  # same init, one curve
    assert_image(tmp_path / "norms.png", fig)


# --------------------------------------------------------------------------- command line


def test_cli_writes_the_file_and_rejects_a_bad_extension(tmp_path, trained, capsys):
    out = tmp_path / "plots" / "norms.png"
    assert plots.main(["state-norms", "--length", "32", "--d-state", "8", "--rungs", "ring",
                       "lru", "--out", str(out)]) == 0
    assert_image(out)
    assert plots.main(["eigenvalues", str(trained), "--out", str(tmp_path / "eig.pdf")]) == 0
    assert_image(tmp_path / "eig.pdf")
    assert plots.main(["curves", str(trained), "--out", str(tmp_path / "curves.svg")]) == 0
    assert (tmp_path / "curves.svg").stat().st_size > 2000
    with pytest.raises(SystemExit):
        plots.main(["state-norms", "--out", str(tmp_path / "norms.jpg")])
    assert "extension must be one of" in capsys.readouterr().err
    assert plots.main(["eigenvalues", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "config.yaml" in capsys.readouterr().err


# --------------------------------------------------------------------------- trained state norms


class _OneLayer(nnx.Module):
    """An LRU layer behind a norm, called as the residual blocks call their mixer."""

    def __init__(self, rung: str):
        from lru.layers import LRU

        self.scale = nnx.Param(np.float32(3.0))
        ring = {"r_min": 0.9, "r_max": 0.99, "max_phase": 6.28} if rung in ("ring", "lru") else {}
        self.mixer = LRU(4, 8, rung=rung, bidirectional=True, rngs=nnx.Rngs(0), **ring)

    def __call__(self, u, lengths):
        mask = np.arange(u.shape[1])[None, :] < np.asarray(lengths)[:, None]
        return self.mixer(self.scale[...] * u, mask)


def test_layer_state_norms_are_the_layers_own_states_on_its_input():
    from lru.analysis import layer_state_norms
    from lru.layers import LRU

    u = jax.random.normal(jax.random.key(1), (3, 40, 4))
    lengths = np.array([40, 25, 7])
    mask = np.arange(40)[None, :] < lengths[:, None]
    for rung in ("ring", "lru", "linear_dense"):
        model = _OneLayer(rung)
        norms = layer_state_norms(model, u, lengths)
        x = np.asarray(model.mixer.states(3.0 * u, mask))          # the input the layer saw
        per_step = np.linalg.norm(x, axis=-1) / math.sqrt(8)
        assert list(norms) == ["mixer"]
        assert norms["mixer"] == pytest.approx(per_step[mask].mean(), rel=1e-5)
    # gamma keeps the state smaller than the same eigenvalues without it
    assert layer_state_norms(_OneLayer("lru"), u, lengths)["mixer"] < \
        layer_state_norms(_OneLayer("ring"), u, lengths)["mixer"]
    assert LRU.__call__.__name__ == "__call__" and "record" not in LRU.__call__.__qualname__


def test_layer_state_norms_restore_the_layer_after_an_error():
    from lru.analysis import layer_state_norms
    from lru.layers import LRU

    original = LRU.__call__
    with pytest.raises(TypeError):
        layer_state_norms(_OneLayer("lru"), np.zeros((1, 5, 4), np.float32))  # no lengths
    assert LRU.__call__ is original


def test_state_norms_command_measures_init_and_trained(trained, tmp_path, capsys):
    from ablations.__main__ import main
    from ablations.state_norms import first_test_examples
    from lru.analysis import layer_state_norms

    assert main(["state-norms", str(trained), "--batch", "20", "--format", "csv"]) == 0
    frame = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert len(frame) == 1 and frame.loc[0, "label"] == "ring" and frame.loc[0, "layers"] == 2
    data = first_test_examples(trained, 20)
    for which, column in (("init", "init_mean"), ("best", "trained_mean")):
        norms = layer_state_norms(load_model(trained, which), data["inputs"], data["lengths"])
        assert frame.loc[0, column] == pytest.approx(np.mean(list(norms.values())), rel=1e-4)
    assert frame.loc[0, "trained_mean"] != pytest.approx(frame.loc[0, "init_mean"], rel=1e-3)
    summary = json.loads((trained / "summary.json").read_text())
    assert frame.loc[0, "test_accuracy"] == pytest.approx(100 * summary["test_accuracy"])

    # a run whose checkpoints are not kept: accuracy and init norm, no trained norm
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.yaml", "summary.json"):
        (bare / name).write_bytes((trained / name).read_bytes())
    out = tmp_path / "norms.md"
    assert main(["state-norms", str(bare), "--out", str(out)]) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith("| ring"))
    assert row.rstrip(" |").endswith("—")
    assert main(["state-norms", str(bare), "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err
