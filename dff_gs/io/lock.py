"""A lock that keeps two processes from writing one output (a run folder, an edited PLY) at once.

``with OutputLock(path, what):`` holds an exclusive ``flock`` on the file ``path`` (which records this process's
id and host, for the message another process gets) and removes the file on exit. The kernel releases the lock
when the process ends in any way (``kill -9`` included), so a lock file left behind by a dead process holds
nothing and is simply taken.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from dff_gs.core.errors import OutputError


class OutputLock:
    """Exclusive ownership of an output while a command writes it.

    path: the lock file; what: the output it guards, for messages."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            data = json.loads(self.path.read_text())
            return f"process {int(data['pid'])} on {data['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def acquire(self) -> "OutputLock":
        fd = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    fd = None
                    raise OutputError(f"{self.what}: {self._holder()} is writing it now (lock {self.path}); wait for "
                                      "it or choose another output") from None
                try:  # the file may have been removed by its previous holder between our open and flock: retry
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
                fd = None
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        except OSError as e:
            if fd is not None:
                os.close(fd)
            if isinstance(e, OutputError):
                raise
            raise OutputError(f"{self.what}: cannot write here ({e.strerror})") from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiting opener then retries on a new file
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
