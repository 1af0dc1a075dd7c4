"""Errors that carry a clear, user-facing message (the file and the problem)."""


class DffError(Exception):
    """Base class of dff_gs errors; entry points print ``str(err)`` as a one-line reason."""


class DataError(DffError, ValueError):
    """Bad input data: a missing or malformed file, an inconsistent scene."""


class ConfigError(DffError, ValueError):
    """An unknown or invalid configuration key or value."""


class CheckpointError(DffError, ValueError):
    """A missing, truncated or non-finite checkpoint / PLY."""
