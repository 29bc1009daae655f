"""Rebuild a trained model from its run directory (``config.yaml`` + ``checkpoints/``).

A run directory written by :func:`lru.training.loop.train` holds everything needed to rebuild its
model: the resolved config (``config.yaml``) and orbax checkpoints of the training state in
``checkpoints/latest`` and ``checkpoints/best``. No data is read: the task's
:class:`tasks.TaskMeta` (vocabulary, classes, lengths) follows from the task's name and
options alone.

    model = load_model("results/runs/listops/lru-lru/seed0")           # best checkpoint
    init = load_model("results/runs/listops/lru-lru/seed0", "init")    # the same seed, untrained
    longer = load_model("results/runs/induction/hawk/seed0", length=4096)  # for longer inputs
"""

from __future__ import annotations

from pathlib import Path

from flax import nnx
from omegaconf import DictConfig, OmegaConf

from lru.layers import S4
from lru.training.checkpoints import Checkpoints
from lru.training.config import upgrade
from lru.training.loop import optimizer_settings, task_meta
from lru.training.registry import build_model
from lru.training.optim import make_optimizer

#: What :func:`load_model` can rebuild: a checkpoint folder, or the untrained model.
WHICH: tuple[str, ...] = ("best", "latest", "init")


def load_config(run_dir: str | Path) -> DictConfig:
    """The run's ``config.yaml`` on today's config schema (:func:`lru.training.config.upgrade`).

    Keys added to the schema after the run was made take their defaults and retired ones
    move to their successors, so older run directories stay loadable.

    Raises:
      FileNotFoundError: ``run_dir`` has no ``config.yaml``.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {run_dir} is not a run directory (lru.training.loop.train writes "
            f"config.yaml, metrics.jsonl, summary.json and checkpoints/ into one; pass that "
            f"folder)")
    return upgrade(OmegaConf.load(path))


def load_model(run_dir: str | Path, which: str = "best", *,
               length: int | None = None) -> nnx.Module:
    """The model of a run, rebuilt from its config and restored from a checkpoint.

    Args:
      run_dir: a folder written by :func:`lru.training.loop.train`.
      which: ``"best"`` (the checkpoint of the best validation accuracy), ``"latest"`` (the
        last one saved), or ``"init"`` (the freshly initialised model of the run's seed:
        exactly the parameters training started from).
      length: rebuild the model for sequences up to ``length`` rather than the task's
        ``max_length`` (evaluation at other lengths, :mod:`ablations.extrapolate`): MQA's
        automatic window covers it (:func:`lru.training.registry.build_model`) and S4
        layers folded at a shorter ``l_max`` are refolded at ``length``
        (:func:`fit_length`). The parameters and the function on the run's own lengths
        stay the same.

    Returns:
      The classifier :func:`lru.training.registry.build_model` builds from the run's config, with its
      parameters and BatchNorm running statistics from the checkpoint, in eval mode
      (BatchNorm uses its running statistics, dropout is off).

    Raises:
      ValueError: ``which`` is not one of :data:`WHICH`.
      FileNotFoundError: no ``config.yaml``, or no checkpoint in ``checkpoints/<which>``.
    """
    if which not in WHICH:
        raise ValueError(f"load_model: which={which!r}; choose one of {WHICH}")
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    model = build_model(cfg, task_meta(cfg), length=length)
    if which != "init":
        model = _restore(model, cfg, run_dir / "checkpoints" / which)
    if length is not None:
        fit_length(model, length)
    model.eval()
    return model


def fit_length(model: nnx.Module, length: int) -> None:
    """Refold, in place, every S4 layer of ``model`` folded at a shorter ``l_max`` than
    ``length`` (:meth:`lru.layers.s4.S4.refold`: the same system, for inputs up to
    ``length``; S4 refuses longer inputs than its ``l_max``)."""
    for _, node in nnx.iter_graph(model):
        if isinstance(node, S4) and node.l_max is not None and node.l_max < length:
            node.refold(length)


def _restore(model: nnx.Module, cfg: DictConfig, directory: Path) -> nnx.Module:
    """``model`` with the parameters and BatchNorm statistics saved under ``directory``."""
    # Checkpoints creates a missing folder; look first so that a wrong path stays untouched.
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory} not found: the run saved no checkpoint there (a run with "
            f"trainer.checkpoint=false, or one stopped before its first evaluation); "
            f"load_model(..., which='init') rebuilds the untrained model")
    checkpoints = Checkpoints(directory)
    try:
        if checkpoints.latest_step() is None:
            raise FileNotFoundError(f"{directory} holds no complete checkpoint; "
                                    f"load_model(..., which='init') rebuilds the untrained model")
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        # The checkpoint holds the optimizer state too; restoring needs its shapes.
        tx, _ = make_optimizer(model, optimizer_settings(cfg))
        (params, rest, _), _ = checkpoints.restore((params, rest, tx.init(params)))
    finally:
        checkpoints.close()
    return nnx.merge(graphdef, params, rest)
