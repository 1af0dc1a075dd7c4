#!/usr/bin/env python
"""Train a feature Gaussian scene. ``python train.py --help`` lists every option."""

import sys

from dff_gs.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
