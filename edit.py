#!/usr/bin/env python
"""Edit a feature Gaussian scene by query. ``python edit.py --help`` lists every option."""

import sys

from dff_gs.edit.cli import main

if __name__ == "__main__":
    sys.exit(main())
