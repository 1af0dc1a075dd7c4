"""Errors that carry a clear, user-facing message (the file and the problem)."""


class DffError(Exception):
    """Base class of dff_gs errors; entry points print ``str(err)`` as a one-line reason."""


class DataError(DffError, ValueError):
    """Bad input data: a missing or malformed file, an inconsistent scene."""


class ConfigError(DffError, ValueError):
    """An unknown or invalid configuration key or value."""


class CheckpointError(DffError, ValueError):
    """A missing, truncated or non-finite checkpoint / PLY."""


def run_cli(job, report) -> int:
    """The error boundary of a command: ``report(job())`` is printed and 0 returned, or a :class:`DffError`'s
    one-line reason goes to stderr and 2 is returned.  job: () -> result; report: result -> str."""
    import sys

    try:
        result = job()
    except DffError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(result))
    return 0
