"""Signals while a command is still loading (importing torch takes seconds): Ctrl-C / SIGTERM then end the process
in one line, exit 130. Used by ``dff_gs/__init__.py`` (for ``python -m``), the launcher :mod:`dff_gs.cli` and
:mod:`dff_gs.launch`. Imports nothing heavy."""

from __future__ import annotations

import os
import signal
import sys

from dff_gs.core.errors import Interrupted, interrupted_message

MODULE_COMMANDS = {"dff_gs.query": "query", "dff_gs.render": "render", "dff_gs.bench": "bench",
                   "dff_gs.view": "view", "dff_gs.process": "process"}
"""``python -m <module>``: the command it runs."""


def stop_now(signum, frame) -> None:
    """A signal while the command is still loading: nothing was written yet, so leave at once (an exception here
    would surface as a traceback from whichever import it interrupted)."""
    sys.stderr.write(interrupted_message(Interrupted(None, signal.Signals(signum).name)) + "\n")
    sys.stderr.flush()
    os._exit(130)


def raise_sigterm(signum, frame) -> None:
    raise Interrupted(None, "SIGTERM")


def guard_startup() -> None:
    """Until :func:`dff_gs.cli.launch` hands over to the command: Ctrl-C and SIGTERM end the process in one line, exit
    130 (a signal this process was started ignoring, as ``nohup`` does, stays ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, stop_now)


def guard_module_start() -> None:
    """Called by ``dff_gs/__init__.py`` while ``python -m`` is still locating its module (``sys.argv[0]`` is
    ``"-m"`` then): for one of :data:`MODULE_COMMANDS`, whose package imports torch before its ``__main__``
    runs, :func:`guard_startup` now."""
    argv = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith("-m"):
            module = arg[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            if module in MODULE_COMMANDS:
                guard_startup()
            return
