#!/usr/bin/env python
"""Train a feature Gaussian scene. ``python train.py --help`` lists every option."""

import sys

from dff_gs.cli import launch  # import-light: answers Ctrl-C / SIGTERM while the libraries load

if __name__ == "__main__":
    sys.exit(launch("train"))
