"""The one exception type users see.

An :class:`ArchlintError` is a problem with the user's input (a path, a flag, a model
that does not construct): the CLI prints its message on one line and exits with 2.
Anything else is a bug in archlint and keeps its traceback under ``--debug``.
"""

from __future__ import annotations


class ArchlintError(Exception):
    """A user-facing error whose message says what to do next."""
