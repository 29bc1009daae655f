"""The environment of the processes tests start."""

from __future__ import annotations

import os


def xla_flags(*flags: str) -> str:
    """``XLA_FLAGS`` for a started process: the suite's own (tests/conftest.py), then ``flags``."""
    return " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()
