"""dff_gs: Distilled Feature Fields on 3D Gaussian Splatting."""

import sys as _sys

__version__ = "0.1.0"

if getattr(_sys, "argv", [])[:1] == ["-m"]:  # `python -m dff_gs.<command>` locating its module (whose package
    from dff_gs.core.startup import guard_module_start  # imports torch first): Ctrl-C / SIGTERM answered from now on

    guard_module_start()
