"""SIGTERM and SIGINT caught while a block runs, for the loop and the sweeps that stop on them.

The training loop preempts its job when either arrives (it checks :attr:`StopSignals.received`
after each step); the ladder's runner passes each on to the multirun it started
(``on_signal``). Outside the main thread Python cannot install handlers, so there the signals
stay with the caller's handlers and nothing is caught.
"""

from __future__ import annotations

import signal
from typing import Callable

#: The signals that stop a run or a sweep.
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager: while inside, :data:`SIGNALS` are caught instead of ending the process.

    Args:
      on_signal: called with each signal's number as it arrives (e.g. to pass it to a child).

    Attributes:
      received: the first signal caught, or None.
    """

    def __init__(self, on_signal: Callable[[int], None] | None = None):
        self.received: int | None = None
        self._on_signal = on_signal
        self._old = {}

    def __enter__(self) -> StopSignals:
        for sig in SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        if self._on_signal is not None:
            self._on_signal(signum)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
