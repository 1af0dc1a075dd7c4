"""``python -m dff_gs.bench``: the backbone benchmark (:mod:`dff_gs.cli.bench`; also ``dff-bench``)."""

import sys

from dff_gs.cli import launch

sys.exit(launch("bench"))
