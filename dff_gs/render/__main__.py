"""``python -m dff_gs.render RUN_OR_PLY --data SCENE --split test --out DIR``: see :mod:`dff_gs.render_cli`."""

import sys

from dff_gs.render_cli import main

sys.exit(main())
