"""Errors that carry a clear, user-facing message (the file and the problem)."""


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
    """Ctrl-C or SIGTERM stopped a run; ``checkpoint`` is the file that holds its progress (None: none written)."""

    def __init__(self, checkpoint=None, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.checkpoint = checkpoint
        self.signal_name = signal_name


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
    if ckpt:
        run_dir = ckpt.parent if ckpt.suffix == ".pt" else ckpt
        return f"interrupted ({name}): the run's progress is in {ckpt}; continue with --resume {run_dir}"
    return f"interrupted ({name}): nothing was saved"


def run_cli(job, report) -> int:
    """The error boundary of a command: ``report(job())`` is printed (unless empty) and 0 returned, or a
    :class:`DffError`'s (or an OSError's) one-line reason goes to stderr and 2 is returned; Ctrl-C / SIGTERM
    returns 130.
    job: () -> result; report: result -> str."""
    import signal
    import sys

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
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    text = report(result)
    if text:
        print(text)
    return 0
