"""``python -m dff_gs.launch`` (``dff-torchrun``): torchrun whose failures end in one line.

``torchrun --nproc_per_node N train.py ...`` is ``torch.distributed.run.main``, wrapped in elastic's ``@record``:
when a rank exits non-zero (a value refused in one line, a SIGTERM, a killed peer) the agent raises a
``ChildFailedError`` and ``@record`` lets it end the launcher as a Python traceback with a "Root Cause" table
after the ranks' own one-line messages; SIGTERM / Ctrl-C on the launcher ends as a ``SignalException``
traceback. Whatever the ranks do, plain torchrun prints that traceback (a rank that exits 0 on an error would
hide it, and lie to the scheduler).

This launcher runs torchrun's own argument parser and ``run()`` (every torchrun option, the same agent and
rendezvous) and ends instead with one line, ``torchrun: rank R exited with status S (its message is above)``,
and the failed rank's exit status (128 + the signal for a rank killed by one, or for the launcher stopped by
SIGTERM / SIGINT: 143 / 130). ``python -m dff_gs.launch --standalone --nproc_per_node 2 train.py ...``.
"""

from __future__ import annotations

import signal
import sys
from typing import Optional, Sequence

from dff_gs.core.startup import guard_startup


def status_of(exitcode: int) -> int:
    """A process's exit status as a shell reports it: ``exitcode`` itself, or 128 + N for one killed by signal N
    (elastic reports those as -N)."""
    return 128 - exitcode if exitcode < 0 else exitcode


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def failure_line(err) -> tuple[str, int]:
    """The line and exit status a ``ChildFailedError`` ends with: its first failed rank (the root cause, by
    time; torchrun then stopped the others) and how it ended."""
    rank, failure = err.get_first_failure()
    how = (f"was killed by {signal_name(-failure.exitcode)}" if failure.exitcode < 0
           else f"exited with status {failure.exitcode} (its message is above)")
    return f"torchrun: rank {rank} {how}; every rank has stopped", status_of(failure.exitcode)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """torchrun with ``argv`` (default: the command line); 0 when every rank succeeded, else one line on stderr
    and the failed rank's exit status."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    guard_startup()  # Ctrl-C / SIGTERM during torch's seconds of import: one line, exit 130
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for sig, handler in before.items():  # the agent installs its own once it starts the ranks
        signal.signal(sig, handler)
    try:
        run(parse_args(list(argv) if argv is not None else None))
    except ChildFailedError as err:
        line, status = failure_line(err)
        print(line, file=sys.stderr)
        return status
    except SignalException as err:  # the launcher itself stopped (SIGTERM, Ctrl-C): the ranks were stopped first
        print(f"torchrun: stopped by {err.sigval.name}; the ranks were stopped (their messages are above)",
              file=sys.stderr)
        return 128 + int(err.sigval)
    except KeyboardInterrupt:  # Ctrl-C before the agent took over the signals
        print("torchrun: stopped by SIGINT", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
