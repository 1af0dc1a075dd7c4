"""``python -m dff_gs.render RUN_OR_PLY --data SCENE --split test --out DIR``: see :mod:`dff_gs.cli.render`."""

import sys

from dff_gs.cli import launch

sys.exit(launch("render"))
