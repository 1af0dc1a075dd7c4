"""``python -m dff_gs.query``: the query command line (:mod:`dff_gs.cli.query`; also ``dff-query``)."""

import sys

from dff_gs.cli import launch

sys.exit(launch("query"))
