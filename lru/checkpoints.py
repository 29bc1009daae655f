"""Orbax checkpoints of the training state (one folder each for the latest and the best).

What is saved: the parameters, the BatchNorm statistics and the optimizer state (arrays,
through orbax), and ``{"next_step", "best"}`` (JSON). RNG state is not saved: the training
step folds its dropout key from the step number, so it needs none.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from lru.runfiles import write_json

# Orbax reports every save step by step at INFO level; keep its warnings only.
logging.getLogger("absl").setLevel(logging.WARNING)


def _split_rest(rest: nnx.State) -> tuple[nnx.State, nnx.State]:
    """(BatchStat variables, everything else) of the non-parameter state."""
    return nnx.split_state(rest, nnx.BatchStat, ...)


class Checkpoints:
    """Save and restore ``(params, rest, opt_state)`` under ``directory`` (keeps the latest)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, extra: dict[str, Any]) -> None:
        params, rest, opt_state = state
        stats, _ = _split_rest(rest)
        self.manager.save(step, args=ocp.args.Composite(
            arrays=ocp.args.StandardSave({"params": params, "stats": stats, "opt": opt_state})))
        self.manager.wait_until_finished()
        write_json(self.directory / f"{step}.json", extra)
        for old in self.directory.glob("*.json"):
            if old.stem != str(step):
                old.unlink()

    def restore(self, template) -> tuple[tuple, dict[str, Any]]:
        """The latest state, shaped like ``template``, and its ``extra`` dict."""
        step = self.manager.latest_step()
        params, rest, opt_state = template
        stats, others = _split_rest(rest)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                              {"params": params, "stats": stats, "opt": opt_state})
        restored = self.manager.restore(step, args=ocp.args.Composite(
            arrays=ocp.args.StandardRestore(target)))["arrays"]
        rest = nnx.merge_state(others, restored["stats"])
        extra = json.loads((self.directory / f"{step}.json").read_text())
        return (restored["params"], rest, restored["opt"]), extra

    def close(self) -> None:
        self.manager.close()
