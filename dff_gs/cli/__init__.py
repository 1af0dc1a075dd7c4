"""The command lines: each module parses ``argv``, calls the library and reports in one line on error
(:func:`dff_gs.core.errors.run_cli`).

=================  =====================================  ====================================
module             command                                console script (``pip install``)
=================  =====================================  ====================================
``train``          ``python train.py``                    ``dff-train``
``edit``           ``python edit.py``                     ``dff-edit``
``query``          ``python -m dff_gs.query``             ``dff-query`` (Gaussians or a NeRF)
``render``         ``python -m dff_gs.render``            ``dff-render``
``bench``          ``python -m dff_gs.bench``             ``dff-bench``
``view``           ``python -m dff_gs.view``              ``dff-view``
``process``        ``python -m dff_gs.process``           ``dff-process`` (photos / a video -> a posed scene)
=================  =====================================  ====================================

Every entry point (``train.py``, ``edit.py``, the ``__main__`` modules, the console scripts) starts through
:func:`launch`, which answers Ctrl-C / SIGTERM from the first moment: importing torch and the rest takes seconds,
and a signal then is one line (``interrupted (SIGINT): nothing was saved``, exit status 130), not a traceback or a
silent exit. This module imports nothing heavy: it runs before the libraries load.
"""

from __future__ import annotations

import importlib
import signal
import sys

from dff_gs.core.errors import interrupted_message
from dff_gs.core.startup import MODULE_COMMANDS, guard_module_start, guard_startup, raise_sigterm, stop_now

__all__ = ["COMMANDS", "MODULE_COMMANDS", "guard_module_start", "guard_startup", "launch"]

COMMANDS = ("train", "edit", "query", "render", "bench", "view", "process")
"""The command modules of this package a launcher starts (``dff_gs.cli.<name>``, each with ``main(argv)``)."""

def launch(command: str, argv: list[str] | None = None) -> int:
    """Run ``dff_gs.cli.<command>.main(argv)``, importing it under :func:`guard_startup`; then Ctrl-C is a
    KeyboardInterrupt again and SIGTERM one too (the command's :func:`~dff_gs.core.errors.run_cli` reports it), and
    one that escapes the command is still one line. Returns the exit status."""
    guard_startup()
    try:
        module = importlib.import_module(f"dff_gs.cli.{command}")
        for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, raise_sigterm)):
            if signal.getsignal(sig) is stop_now:
                signal.signal(sig, handler)
        return module.main(argv)
    except KeyboardInterrupt as e:
        print(interrupted_message(e), file=sys.stderr)
        return 130


# The console scripts of setup.py (``dff-train`` ...): each the launcher of its command (named apart from the
# command modules, which become this package's attributes once imported).
def dff_train() -> int:
    return launch("train")


def dff_edit() -> int:
    return launch("edit")


def dff_query() -> int:
    return launch("query")


def dff_render() -> int:
    return launch("render")


def dff_bench() -> int:
    return launch("bench")


def dff_view() -> int:
    return launch("view")


def dff_process() -> int:
    return launch("process")
