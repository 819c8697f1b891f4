"""The errors airmic raises: each one a message a user can act on."""

from __future__ import annotations


class AirmicError(Exception):
    """Base of airmic's errors; its message is shown to the user as one line."""

    exit_code = 1


class UsageError(AirmicError):
    """A bad option or specification given by the user."""

    exit_code = 2


class DeviceError(AirmicError):
    """An audio device is missing, busy or unusable."""


class SourceError(AirmicError):
    """An input file or source cannot be opened or read."""


class NetworkError(AirmicError):
    """A socket cannot be opened (port in use, unknown host, no route)."""
