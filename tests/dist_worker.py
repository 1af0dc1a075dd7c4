"""What ``tests/test_distributed.py`` starts under torchrun: ``train.py`` itself, and after training each rank's own
final parameters saved to ``$DFF_TEST_PARAMS/rank<R>.pt`` (the test's look into every rank; the product writes
from rank 0 only)."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dff_gs.cli.train import main  # noqa: E402
from dff_gs.train.trainer import Trainer  # noqa: E402

_fit = Trainer.fit


def fit_and_keep(self, *args, **kwargs):
    _fit(self, *args, **kwargs)
    state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
    torch.save(state, Path(os.environ["DFF_TEST_PARAMS"]) / f"rank{self.world.rank}.pt")


Trainer.fit = fit_and_keep

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
