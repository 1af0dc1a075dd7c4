"""Errors that carry a clear, user-facing message (the file and the problem)."""

import os
import re
import signal
import sys

QUOTE_LIMIT = 100
"""Characters of a user's value an error line quotes at most (:func:`quote`)."""


class DffError(Exception):
    """Base class of dff_gs errors; entry points print ``str(err)`` as a one-line reason."""


class DataError(DffError, ValueError):
    """Bad input data: a missing or malformed file, an inconsistent scene."""


class ConfigError(DffError, ValueError):
    """An unknown or invalid configuration key or value."""


class CheckpointError(DffError, ValueError):
    """A missing, truncated or non-finite checkpoint / PLY."""


class OutputError(DffError, OSError):
    """An output that cannot be written: an existing run, a lock held by another process, a read-only or full
    disk."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; ``checkpoint`` is the file that holds its progress (None: none written);
    ``outcome`` replaces "nothing was saved" where a command has something else to say (the viewer)."""

    def __init__(self, checkpoint=None, signal_name: str = "SIGINT", outcome: str = ""):
        super().__init__(signal_name)
        self.checkpoint = checkpoint
        self.signal_name = signal_name
        self.outcome = outcome


def quote(value, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error line, cut to at most ``limit`` characters (``...`` marks a cut): a pasted
    file or a runaway value stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def warn(message: str) -> None:
    """One line ``warning: <message>`` on stderr (rank 0 only under torchrun: the ranks read the same inputs)."""
    if os.environ.get("RANK", "0") in ("", "0"):
        print(f"warning: {message}", file=sys.stderr)


def check_version(source, what: str, version, newest: int, error: type = CheckpointError) -> None:
    """``error`` naming ``source`` unless ``version`` is a file version this code reads (1..``newest``); one
    written by a newer dff_gs says so. ``what`` names the kind of file ("sidecar", "NeRF model", ...)."""
    if not isinstance(version, bool) and isinstance(version, (int, float)) and version in range(1, newest + 1):
        return
    newer = not isinstance(version, bool) and isinstance(version, (int, float)) and version > newest
    raise error(f"{source}: unknown {what} version {version!r:.40} (this dff_gs reads 1..{newest}"
                + ("; written by a newer dff_gs: update it" if newer else "") + ")")


def describe_os_error(err: OSError) -> str:
    """``<file>: <problem>`` of an OSError (disk full, permission denied, a folder where a file goes)."""
    where = err.filename or "output"
    return f"{where}: {err.strerror or err}"


def interrupted_message(err: KeyboardInterrupt) -> str:
    """What a command says when Ctrl-C / SIGTERM stopped it: where the progress is, or that none was saved."""
    ckpt = getattr(err, "checkpoint", None)
    name = getattr(err, "signal_name", "SIGINT")
    if getattr(err, "outcome", ""):
        return f"interrupted ({name}): {err.outcome}"
    if ckpt:
        run_dir = ckpt.parent if ckpt.suffix == ".pt" else ckpt
        return f"interrupted ({name}): the run's progress is in {ckpt}; continue with --resume {run_dir}"
    return f"interrupted ({name}): nothing was saved"


OUT_OF_MEMORY = "while running: free memory, or give the command a smaller model or scene"
"""What :func:`run_cli` says after "out of memory" when its command gives no ``memory`` hint."""


def is_out_of_memory(err: BaseException) -> bool:
    """An allocator's failure: MemoryError, torch's ``OutOfMemoryError`` (CUDA), or the RuntimeError of torch's CPU
    allocator ("DefaultCPUAllocator: can't allocate memory", "not enough memory") or of CUDA ("out of memory")."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text
                                              or "out of memory" in text)


def out_of_memory_message(err: BaseException, memory: str = OUT_OF_MEMORY) -> str:
    """``out of memory <memory>``, with the size the allocator was asked for where its message says it."""
    asked = re.search(r"(?:tried|Tried) to allocate ([0-9.]+ ?[KMGT]?i?B|\d+ bytes)", str(err))
    size = ""
    if asked:
        size = asked.group(1)
        if size.endswith(" bytes"):
            size = f"{int(size.split()[0]) / 2**30:.1f} GiB"
        size = f" ({size} asked for)"
    return f"out of memory{size} {memory}"


def run_cli(job, report, memory: str = OUT_OF_MEMORY) -> int:
    """The error boundary of a command: ``report(job())`` is printed (unless empty) and 0 returned, or a
    :class:`DffError`'s (or an OSError's) one-line reason goes to stderr and 2 is returned; running out of memory
    is one line too, ``out of memory <memory>`` (what the command was doing and which keys to lower); Ctrl-C /
    SIGTERM returns 130.
    job: () -> result; report: result -> str."""
    def on_sigterm(signum, frame):  # before the training loop takes over SIGTERM (and after): stop like Ctrl-C
        raise Interrupted(None, "SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not in the main thread
        previous = None
    try:
        result = job()
    except DffError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder, a folder where a file goes
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(interrupted_message(e), file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(e):
            raise
        print(f"error: {out_of_memory_message(e, memory)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    text = report(result)
    if text:
        print(text)
    return 0
