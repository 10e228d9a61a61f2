"""Errors the engine raises on purpose.

Every message is meant for a person: the CLI and both UIs print ``str(error)`` as
one line and exit or notify, never a traceback.
"""

from __future__ import annotations


class IsovoxError(Exception):
    """Base class: an expected failure with a message fit for the user."""


class InputError(IsovoxError):
    """An input file, scan or parameter that isovox cannot work with."""


class ResourceError(IsovoxError):
    """Not enough memory (or another resource) to do what was asked."""


class CancelledError(IsovoxError):
    """The user cancelled a long-running operation."""
