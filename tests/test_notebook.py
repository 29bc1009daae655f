"""``results/notebooks/lra_results.ipynb`` runs end to end (nbclient) on a runs directory from a
short real sweep, and is committed with its outputs cleared."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from hydra import compose, initialize_config_dir
from nbclient import NotebookClient

from lru.training.config import register
from lru.training.loop import train

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "results" / "notebooks" / "lra_results.ipynb"
RUNGS = ("rnn_tanh", "lru")
SEEDS = (0, 1)
register()


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """A sweep of RUNGS x SEEDS, 10 steps each on a tiny generated ListOps."""
    data = tmp_path_factory.mktemp("listops-data")
    runs = tmp_path_factory.mktemp("sweep")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for rung in RUNGS:
            for seed in SEEDS:
                cfg = compose(config_name="config", overrides=[
                    f"run_dir={runs / rung / f'seed{seed}'}", f"ablation={rung}",
                    f"seed={seed}", f"task.data_dir={data}", f"task.cache_dir={data / 'cache'}",
                    "task.generate.args.n_train=300", "task.generate.args.n_val=100",
                    "task.generate.args.n_test=100", "task.generate.args.max_depth=2",
                    "task.generate.args.max_length=16", "task.options.max_length=16",
                    "model.d_model=16", "model.d_state=16", "model.n_layers=1",
                    "trainer.steps=10", "trainer.eval_every=10", "trainer.log_every=2",
                    "trainer.eval_batch_size=100", "trainer.bucket=false",
                    "trainer.progress=false"])
                summary = train(cfg)
                assert summary["status"] == "finished", summary.get("reason")
    return runs


@pytest.fixture
def kernel_of_this_python(tmp_path, monkeypatch) -> str:
    """A kernel spec that runs this interpreter, found first on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def test_notebook_runs_end_to_end(runs_dir, kernel_of_this_python, monkeypatch):
    monkeypatch.setenv("LRA_RUNS_DIR", str(runs_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name=kernel_of_this_python,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # accuracy, curves, eigenvalues per rung, the paper's r_min x r_max grid, state norms
    assert len(images) == 4 + len(RUNGS)
    tables = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert len(tables) == 2
    for table in tables:
        assert "rnn_tanh" in table and "lru" in table and "(n=2)" in table
    assert str(runs_dir) in json.dumps(notebook.cells[1].outputs)  # it read LRA_RUNS_DIR


def test_notebook_is_committed_valid_and_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
