"""One writer per run folder: an exclusive OS lock held for the life of a training run.

The lock is ``fcntl.flock`` on ``<run_dir>/.run.lock``: the kernel releases it when the
process ends, however it ends (a crash, ``kill -9``, a node lost by SLURM), so a stale lock
never outlives its holder. The file records the holder (pid, host, start time) so that a
second process can say who owns the folder. ``flock`` also works across NFS clients on
Linux (emulated with POSIX byte-range locks since 2.6.12).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

#: The lock file's name inside a run folder (git-ignored; it holds no result).
LOCK_NAME = ".run.lock"


class RunFolderLocked(RuntimeError):
    """Another live process holds the run folder's lock.

    Attributes:
      run_dir: the folder.
      holder: what the holder wrote into the lock file (``pid``, ``host``, ``started``),
        or an empty dict when it had not written it yet.
    """

    def __init__(self, run_dir: Path, holder: dict):
        self.run_dir, self.holder = run_dir, holder
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
               if holder else "a process that has not yet written its name")
        super().__init__(f"{run_dir} is in use by another run ({who}); one run folder has one "
                         f"writer. Wait for it to end, stop it, or choose another run_dir=")


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir``'s lock, creating the folder if needed.

    Raises (on entry):
      RunFolderLocked: another process holds it; nothing in the folder is touched.
      OSError: the folder cannot be created or written (the message names it).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OSError(e.errno, f"run_dir {self.run_dir} is not writable ({e.strerror}); "
                                   f"choose another run_dir= or fix the folder's permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunFolderLocked(self.run_dir, holder) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            # The file stays: unlinking a locked file would let a third process lock a new
            # inode while a second still waits on the old one.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # the holder is between truncating and writing its name
        return {}
    return holder if isinstance(holder, dict) else {}
