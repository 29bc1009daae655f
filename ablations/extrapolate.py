"""Accuracy against sequence length: trained runs of a per-token task evaluated on fresh
examples at other lengths than they trained on (the Griffin paper, De et al. 2024, §6.2 and
Fig. 6: induction heads trained at length 256 and evaluated at longer lengths, where Hawk
keeps its accuracy and the MQA Transformer loses it beyond its training length).

Axis legend: ``e`` examples, ``t`` time.

For each run and each length ``L``:

* examples: ``n`` fresh ones from the task's generator (:func:`tasks.sampler`) at length
  ``L``, with the run's other generator options (``task.generate.args``: MQAR's ``n_pairs``
  and ``power_a``, selective copying's ``n_data``), drawn from
  ``numpy.random.default_rng([seed, L])``: every run of a task with the same options sees
  the same examples at a given length (:func:`fresh_split`);
* model: the run's checkpoint rebuilt for length ``L``
  (:func:`lru.training.restore.load_model`: MQA's automatic window covers ``L``, S4 is
  refolded at ``L``); an attention window set in the run's config is kept, so beyond it
  that model attends locally (:func:`window_note` says so);
* scores: the harness's evaluation (:func:`lru.training.loop.evaluate`, the scores of
  :mod:`lru.training.scoring`) in batches of ``batch_size``: accuracy over scored positions
  and sequence accuracy (every scored position of an example right).

    python -m ablations extrapolate RUN_DIR ... --lengths 256,512,1024 --out length.csv
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from flax import nnx
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import tasks
from lru.ladder import rung_of
from lru.training.loop import evaluate, make_eval_step, task_meta
from lru.training.restore import load_config, load_model

#: The columns of :func:`extrapolate`'s frame (and of its CSV), in order. ``run``: the run
#: folder as given; ``train_length``: the task's ``max_length`` the run trained at;
#: ``accuracy`` over scored positions and ``sequence_accuracy``, as fractions; ``n``: the
#: examples drawn at ``length``.
COLUMNS = ("run", "task", "model", "rung", "seed", "train_length", "length", "accuracy",
           "sequence_accuracy", "n")
#: The checkpoints a run is evaluated from.
WHICH = ("best", "latest")


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run of a per-token task, ready to be evaluated at other lengths.

    Attributes:
      run_dir: the run folder.
      cfg: its config (:func:`lru.training.restore.load_config`).
      meta: its task's metadata as trained (``max_length``: the training length).
      sample: the task's generator's ``sample`` (:func:`tasks.sampler`).
      options: the generator's options besides the length, from ``task.generate.args``.
    """

    run_dir: Path
    cfg: DictConfig
    meta: tasks.TaskMeta
    sample: Callable[..., dict[str, np.ndarray]]
    options: dict[str, Any]


def open_run(run_dir: str | Path, which: str = "best") -> Run:
    """Read and check a run folder before anything is evaluated.

    Raises:
      FileNotFoundError: no ``config.yaml`` or no ``checkpoints/<which>``; the message names
        the path and how to get it.
      ValueError: the task is not per-token, or the config has no ``task.generate``.
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    meta = task_meta(cfg)
    if not meta.per_token:
        raise ValueError(f"{run_dir}: task {meta.name!r} has one label per sequence; "
                         f"extrapolate evaluates runs of per-token tasks, whose generators "
                         f"draw examples at any length ({', '.join(tasks.registry.SAMPLERS)})")
    sample = tasks.sampler(meta.name)
    if cfg.task.generate is None:
        raise ValueError(f"{run_dir}/config.yaml: task.generate is null, so the options its "
                         f"data was generated with are unknown; extrapolate draws examples with "
                         f"task.generate.args (conf/task/{meta.name}.yaml has them)")
    checkpoint = run_dir / "checkpoints" / which
    if not checkpoint.is_dir():
        raise FileNotFoundError(
            f"{checkpoint} not found: extrapolate needs the run's trained weights. Runs "
            f"trained with trainer.checkpoint=true (the default) keep them there (committed "
            f"results keep none): rerun its training into a run folder of your own, or pass "
            f"--which {'latest' if which == 'best' else 'best'} if that checkpoint is kept")
    args = OmegaConf.to_container(cfg.task.generate.args, resolve=True)
    accepted = set(inspect.signature(sample).parameters) - {"n", "length", "rng"}
    return Run(run_dir, cfg, meta, sample, {k: v for k, v in args.items() if k in accepted})


def window_note(run: Run) -> str | None:
    """A sentence for a run of ``model=mqa`` whose config sets its attention window (kept at
    every length, so beyond it the attention is local); None otherwise."""
    window = OmegaConf.select(run.cfg, "model.layer_options.attention_window")
    if run.cfg.model.layer != "mqa" or window is None:
        return None
    return (f"{run.run_dir}: model.layer_options.attention_window={window} is set in its "
            f"config and kept at every length: beyond {window} tokens its attention is local, "
            f"not global")


def fresh_split(run: Run, length: int, n: int, seed: int) -> tasks.Split:
    """``n`` fresh examples of ``run``'s task at ``length`` (see the module), as a split of
    ``max_length`` ``length``: ``inputs``, ``labels`` ``(e, t)``, ``lengths`` ``(e,)``.

    Raises:
      ValueError: the generator refuses ``length`` with the run's options (naming both).
    """
    rng = np.random.default_rng([seed, length])
    try:
        arrays = run.sample(n, length=length, rng=rng, **run.options)
    except ValueError as e:
        raise ValueError(f"{run.run_dir}: no {run.meta.name} examples of length {length} with "
                         f"{run.options}: {e}") from None
    return tasks.Split(meta=dataclasses.replace(run.meta, max_length=length), **arrays)


def score(model: nnx.Module, split: tasks.Split, batch_size: int) -> dict[str, float]:
    """``split``'s ``loss``, ``accuracy`` and ``sequence_accuracy`` under ``model`` (in eval
    mode), by :func:`lru.training.loop.evaluate` in batches of ``batch_size``."""
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return evaluate(make_eval_step(graphdef, dual=False), params, rest, split, batch_size)


def default_batch_size(run: Run, length: int) -> int:
    """The run's ``trainer.eval_batch_size`` scaled by ``train_length / length`` (at least
    1): batches of about as many steps as the run's own evaluation."""
    return max(1, run.cfg.trainer.eval_batch_size * run.meta.max_length // length)


def extrapolate(run_dirs: Sequence[str | Path], lengths: Sequence[int], *, n: int = 1000,
                batch_size: int | None = None, which: str = "best", seed: int = 0,
                progress: bool = True) -> pd.DataFrame:
    """Every run's accuracy at every length: one row per run and length, :data:`COLUMNS`.

    Every run is opened and checked (:func:`open_run`) before any is evaluated.

    Args:
      run_dirs: run folders of per-token tasks, with checkpoints.
      lengths: sequence lengths to evaluate at.
      n: examples per length.
      batch_size: examples per evaluation batch; None: :func:`default_batch_size`.
      which: the checkpoint, one of :data:`WHICH`.
      seed: the examples' seed (see the module).
      progress: show a progress bar.

    Raises:
      ValueError: a bad argument, or a run that :func:`open_run` or :func:`fresh_split`
        refuses.
      FileNotFoundError: a run folder without config or checkpoint.
    """
    if which not in WHICH:
        raise ValueError(f"which={which!r}; choose one of {WHICH}")
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths must be positive integers, at least one; got {list(lengths)}")
    for name, value in (("n", n), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1; got {value}")
    runs = [open_run(d, which) for d in run_dirs]
    rows = []
    with tqdm(total=len(runs) * len(lengths), desc="extrapolate", disable=not progress,
              dynamic_ncols=True) as bar:
        for run in runs:
            for length in lengths:
                bar.set_postfix_str(f"{run.run_dir.name} length {length}")
                split = fresh_split(run, length, n, seed)
                model = load_model(run.run_dir, which, length=length)
                scores = score(model, split, batch_size or default_batch_size(run, length))
                m = run.cfg.model
                rows.append({"run": str(run.run_dir), "task": run.meta.name, "model": m.layer,
                             "rung": rung_of(m.layer, run.cfg.ablation.rung),
                             "seed": run.cfg.seed, "train_length": run.meta.max_length,
                             "length": length, "accuracy": scores["accuracy"],
                             "sequence_accuracy": scores["sequence_accuracy"], "n": n})
                bar.update()
    return pd.DataFrame(rows, columns=list(COLUMNS))


def parse_lengths(text: str) -> list[int]:
    """``"256,512,1024"`` -> ``[256, 512, 1024]`` (sorted, each once).

    Raises:
      ValueError: an entry that is not a positive integer, naming it.
    """
    lengths = set()
    for part in text.split(","):
        try:
            length = int(part)
        except ValueError:
            length = 0
        if length < 1:
            raise ValueError(f"--lengths {text}: {part.strip()!r} is not a positive integer; "
                             f"give comma-separated lengths such as 256,512,1024")
        lengths.add(length)
    return sorted(lengths)


def format_frame(frame: pd.DataFrame, fmt: str = "markdown") -> str:
    """``frame`` as CSV (every digit) or a markdown table (three decimals)."""
    if fmt == "csv":
        return frame.to_csv(index=False, float_format="%.6g")
    shown = frame.astype(object).where(frame.notna(), None)  # None -> missingval
    return shown.to_markdown(index=False, floatfmt=".3f", missingval="—") + "\n"
