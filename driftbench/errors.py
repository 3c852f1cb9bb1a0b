"""Exceptions that carry a one-line, user-facing message: what went wrong, which file, and the fix."""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (newline -> \\n, U+202E -> \\u202e): a file
    name from a dataset cannot split a one-line message into forged log lines or reorder what it shows."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in ("Cc", "Cf")
                   else ch for ch in text)


class DriftbenchError(Exception):
    """Base class; ``str(exc)`` is the one-line message shown to the user."""


class UsageError(DriftbenchError):
    """Bad command line or configuration: exit code 2, raised before any work starts."""


class ModelNotFoundError(DriftbenchError):
    """A weight file could not be resolved by the model store."""


class ClipError(DriftbenchError):
    """One clip cannot be measured; the run records it as skipped and continues with the others."""

    def __init__(self, path: object, problem: str, fix: str, *, reason: str = "bad_input") -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        self.reason = reason
        super().__init__(printable(f"{self.path}: {problem} -- fix: {fix}"))
