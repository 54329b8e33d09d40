"""Errors that are the user's to fix (a bad argument, a missing or unreadable file, an impossible request).

The command-line entry points print these as one line and exit with status 2 (``arc.cli.errors``); any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error whose message tells the user what to change."""


class InvalidInputError(UserError, ValueError):
    """A value the user gave is impossible: an empty prompt, a duration above the model's maximum, 0 steps..."""


class NotACheckpointError(UserError, ValueError):
    """A file given as a checkpoint cannot be read as one (corrupt, truncated, or another kind of file)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the user named does not exist."""
