"""What ``tests/test_distributed.py`` starts under torchrun: ``train.py`` itself, and after training each rank's own
final parameters saved to ``$DFF_TEST_PARAMS/rank<R>.pt`` (the test's look into every rank; the product writes
from rank 0 only), and when the run has returned, the names of the rank's threads in ``threads<R>.txt`` (gloo's must
be gone before the interpreter exits)."""

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


def thread_names() -> list[str]:
    """This process's threads as the kernel names them (gloo's worker threads are ``pt_gloo_runloop``)."""
    tasks = Path("/proc/self/task")
    return sorted((tasks / t / "comm").read_text().strip() for t in os.listdir(tasks))


if __name__ == "__main__":
    code = main(sys.argv[1:])
    rank = os.environ.get("RANK", "0")
    (Path(os.environ["DFF_TEST_PARAMS"]) / f"threads{rank}.txt").write_text("\n".join(thread_names()))
    sys.exit(code)
