"""Orbax checkpoints of the training state (one folder each for the latest and the best).

What is saved: the parameters, the BatchNorm statistics and the optimizer state (arrays,
through orbax), and ``{"next_step", "best"}`` (JSON, ``<step>.json`` beside orbax's step
folders). RNG state is not saved: the training step folds its dropout key from the step
number, so it needs none. Each folder keeps its two newest steps, so that a checkpoint
damaged on disk (or a save cut short by a full disk) leaves an older one to resume from
(:func:`restore_newest`). In a multi-process run every process calls :meth:`save` and
:meth:`restore` (orbax's multi-process protocol); only process 0 writes the JSON files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from lru.training.runfiles import write_json
from lru.training.sharding import is_writer

# Orbax reports every save step by step at INFO level; keep its warnings only.
logging.getLogger("absl").setLevel(logging.WARNING)

#: Steps kept per checkpoint folder: the newest and the one before it.
KEEP = 2


class NoRestorableCheckpoint(RuntimeError):
    """Checkpoints exist but none of them restores; the message lists every reason."""


def _split_rest(rest: nnx.State) -> tuple[nnx.State, nnx.State]:
    """(BatchStat variables, everything else) of the non-parameter state."""
    return nnx.split_state(rest, nnx.BatchStat, ...)


class Checkpoints:
    """Save and restore ``(params, rest, opt_state)`` under ``directory`` (keeps :data:`KEEP`)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=True))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        """The saved steps, newest first."""
        return sorted(self.manager.all_steps(), reverse=True)

    def save(self, step: int, state, extra: dict[str, Any]) -> None:
        """Save ``state`` at ``step`` with ``extra``; raises (e.g. ``OSError``, disk full)
        without touching the steps saved before."""
        params, rest, opt_state = state
        stats, _ = _split_rest(rest)
        self.manager.save(step, args=ocp.args.Composite(
            arrays=ocp.args.StandardSave({"params": params, "stats": stats, "opt": opt_state})))
        self.manager.wait_until_finished()
        if is_writer():
            write_json(self.directory / f"{step}.json", extra)
            kept = {str(s) for s in self.manager.all_steps()}
            for old in self.directory.glob("*.json"):
                if old.stem not in kept:
                    old.unlink()

    def restore(self, template, step: int | None = None) -> tuple[tuple, dict[str, Any]]:
        """The state saved at ``step`` (default: the latest), shaped like ``template``, and
        its ``extra`` dict. Raises whatever orbax raises for a damaged or mismatched step."""
        step = self.manager.latest_step() if step is None else step
        extra = json.loads((self.directory / f"{step}.json").read_text())
        params, rest, opt_state = template
        stats, others = _split_rest(rest)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                              {"params": params, "stats": stats, "opt": opt_state})
        restored = self.manager.restore(step, args=ocp.args.Composite(
            arrays=ocp.args.StandardRestore(target)))["arrays"]
        rest = nnx.merge_state(others, restored["stats"])
        return (restored["params"], rest, restored["opt"]), extra

    def delete(self, step: int) -> None:
        """Remove ``step`` (its arrays and its JSON)."""
        self.manager.delete(step)
        if is_writer():
            (self.directory / f"{step}.json").unlink(missing_ok=True)

    def close(self) -> None:
        self.manager.close()

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def restore_newest(template, folders: dict[str, Checkpoints]) -> tuple[tuple, dict, dict] | None:
    """The newest state that restores from any of ``folders``, trying older ones on failure.

    Args:
      template: ``(params, rest, opt_state)`` giving shapes and dtypes.
      folders: name -> :class:`Checkpoints` (e.g. ``{"latest": ..., "best": ...}``); every
        step of every folder is a candidate, newest first (ties: the order given).

    Returns:
      None when no folder holds a checkpoint; else ``(state, extra, record)`` where
      ``record`` is ``{"restored_from": {"checkpoint", "step"}, "skipped_checkpoints":
      [{"checkpoint", "step", "reason"}, ...]}`` (the newer ones that did not restore; they
      are deleted, as orbax saves no step older than one on disk).

    Raises:
      NoRestorableCheckpoint: checkpoints exist and none restores; lists every reason.
    """
    order = list(folders)
    candidates = sorted(((step, name) for name, c in folders.items() for step in c.steps()),
                        key=lambda sn: (-sn[0], order.index(sn[1])))
    skipped = []
    for step, name in candidates:
        try:
            state, extra = folders[name].restore(template, step)
        except Exception as e:  # any failure to read: try the next older step
            skipped.append({"checkpoint": name, "step": step,
                            "reason": f"{type(e).__name__}: {_first_line(e)}"})
            continue
        for s in skipped:  # newer than the resumed step and unreadable: saving passes them
            folders[s["checkpoint"]].delete(s["step"])
        return state, extra, {"restored_from": {"checkpoint": name, "step": step},
                              "skipped_checkpoints": skipped}
    if skipped:
        raise NoRestorableCheckpoint(
            "no checkpoint restores, so the run does not resume from a partly read state: "
            + "; ".join(f"{s['checkpoint']} step {s['step']}: {s['reason']}" for s in skipped)
            + f". To train from scratch, delete {', '.join(str(c.directory) for c in folders.values())}")
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines() or [""])[0][:300]
