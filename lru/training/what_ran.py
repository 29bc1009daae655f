"""What a run actually ran: backend, devices, precision, the fused operations, the compiled
kernels, and the scan method every recurrence call resolved to.

Written into ``summary.json`` (``"ran"``) and printed as the run's first log lines, so a
result says how it was computed, and a fallback (no C++ compiler, a multi-device mesh)
shows instead of passing silently.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, Callable

import jax

from lru import scan
from lru.kernels import native
from lru.kernels.backend import fused_pays, single_cpu_device


def describe(forward: Callable, *args, precision: str) -> dict[str, Any]:
    """What running ``forward(*args)`` (a model's forward pass) computes with, here.

    The scan methods are read by tracing ``forward`` with ``jax.eval_shape`` (nothing runs)
    inside :func:`lru.scan.recording`, so they are the methods the layers resolve ``auto``
    to on this backend, in the forward pass's order (the layers in order).

    Args:
      forward: the function whose recurrences to list.
      *args: its arguments (arrays or shapes).
      precision: ``trainer.precision``.

    Returns:
      ``{"backend", "devices", "processes", "precision", "fused_ops", "native_kernels",
      "native_kernels_unavailable" (why, or None), "scan": [{"call", "requested", "ran"}]}``.
    """
    with scan.recording() as calls:
        jax.eval_shape(forward, *args)
    on_cpu = single_cpu_device()
    reason = native.unavailable_reason() if on_cpu else (
        "used on a single CPU device only; this run has "
        f"{jax.device_count()} {jax.default_backend()} device(s)")
    if on_cpu and reason is not None:
        warnings.warn(f"the compiled CPU kernels (lru/kernels/native.py) are unavailable: "
                      f"{reason}; the XLA loops run instead (slower, same results)")
    return {"backend": jax.default_backend(), "devices": jax.device_count(),
            "processes": jax.process_count(), "precision": precision,
            "fused_ops": fused_pays(), "native_kernels": on_cpu and reason is None,
            "native_kernels_unavailable": reason, "scan": calls}


def log_lines(ran: dict[str, Any]) -> list[str]:
    """:func:`describe`'s record as two short lines for the run's log."""
    counts = Counter(f"{c['call']} {c['requested'] or '-'} -> {c['ran']}" for c in ran["scan"])
    scans = ", ".join(f"{k} (x{n})" for k, n in counts.items()) or "none"
    native_state = ("built" if ran["native_kernels"]
                    else f"not used ({ran['native_kernels_unavailable']})")
    return [f"ran on {ran['backend']} x{ran['devices']} ({ran['processes']} process(es)), "
            f"precision {ran['precision']}, fused ops {'on' if ran['fused_ops'] else 'off'}, "
            f"native kernels {native_state}",
            f"recurrences: {scans}"]
