"""``python -m dff_gs.view``: the web viewer (:mod:`dff_gs.cli.view`; also ``dff-view``)."""

import sys

from dff_gs.cli import launch

sys.exit(launch("view"))
