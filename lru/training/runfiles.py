"""A run directory's files: ``config.yaml``, ``metrics.jsonl``, ``summary.json``.

Whole files are written atomically (a temporary file in the same folder, then
``os.replace``), so a crash never leaves a half-written summary; ``metrics.jsonl`` gets one
JSON object per line, flushed as it is written (mirrored to TensorBoard when asked).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it a normal file's mode
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class MetricsLog:
    """Appends one JSON line per record to ``metrics.jsonl``.

    On resume, lines for steps after the checkpoint being resumed are dropped first, so the
    file reads exactly as if the run had never stopped. An inactive log (``active=False``:
    the processes other than 0 of a multi-process run) touches no file.
    """

    def __init__(self, path: Path, *, keep_through_step: int | None = None,
                 tensorboard_dir: Path | None = None, active: bool = True):
        self.path = Path(path)
        self.active = active
        self.tensorboard = None
        if not active:
            return
        if tensorboard_dir is not None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise ImportError("trainer.tensorboard=true needs tensorboardX: "
                                  'pip install -e ".[tensorboard]"') from None
            self.tensorboard = SummaryWriter(str(tensorboard_dir))
        if keep_through_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line and json.loads(line)["step"] <= keep_through_step]
            write_atomic(self.path, "".join(line + "\n" for line in kept))
        elif keep_through_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in ("step", "split") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{record['split']}/{key}", value, record["step"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
