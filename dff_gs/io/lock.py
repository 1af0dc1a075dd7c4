"""A lock file that keeps two processes from writing one output (a run folder, an edited PLY) at once.

``with OutputLock(path, what):`` creates ``path`` exclusively (``O_CREAT | O_EXCL``) holding this process's id
and host, and removes it on exit. A lock left by a process that is gone (killed with ``kill -9``, a crashed
machine's host name aside) is taken over with one line saying so; a live holder is a one-line error.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from dff_gs.errors import OutputError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class OutputLock:
    """Exclusive ownership of an output while a command writes it.

    path: the lock file; what: the output it guards, for messages."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path = Path(path)
        self.what = what
        self._held = False

    def _create(self) -> bool:
        """True when this process created the lock file; False when it exists."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise OutputError(f"{self.what}: cannot write here ({e.strerror})") from None
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
        return True

    def acquire(self) -> "OutputLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.what}: cannot create the folder ({e.strerror})") from None
        if not self._create():
            holder = _holder(self.path)
            pid, host = holder.get("pid"), holder.get("host")
            same_host = host == socket.gethostname()
            if isinstance(pid, int) and same_host and _alive(pid) and pid != os.getpid():
                raise OutputError(f"{self.what}: process {pid} is writing it now (lock {self.path}); wait for it or "
                                  "choose another output")
            if not same_host and host:
                raise OutputError(f"{self.what}: locked by process {pid} on {host} (lock {self.path}); remove the "
                                  "lock file if that process is gone")
            print(f"{self.what}: taking over the lock of a process that is gone ({self.path})", file=sys.stderr)
            self.path.unlink(missing_ok=True)
            if not self._create():  # another process took it over first
                raise OutputError(f"{self.what}: another process is writing it now (lock {self.path})")
        self._held = True
        return self

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
