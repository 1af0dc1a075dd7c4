"""``python -m dff_gs.process``: posing photos or a video (:mod:`dff_gs.cli.process`; also ``dff-process``)."""

import sys

from dff_gs.cli import launch

sys.exit(launch("process"))
