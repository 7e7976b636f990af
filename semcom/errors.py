"""Errors a user can act on. The CLI prints their message and exits 2, no traceback."""

from __future__ import annotations


class SemcomError(Exception):
    """Base class of errors caused by input (config, files, peers), not by a bug."""


class ConfigError(SemcomError, ValueError):
    """A configuration value or key is wrong. ``key`` is its full dotted path."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"config key '{key}': {message}" if key else message)


class ModelLoadError(SemcomError):
    """A model directory is missing, incomplete or of the wrong kind."""


class DataError(SemcomError):
    """A data file or folder is missing or malformed."""


class WireFormatError(SemcomError, ValueError):
    """Bytes received do not parse as the expected wire format."""
