#!/usr/bin/env python
"""Edit a feature Gaussian scene by query. ``python edit.py --help`` lists every option."""

import sys

from dff_gs.cli.edit import main

if __name__ == "__main__":
    sys.exit(main())
