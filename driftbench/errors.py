"""Exceptions that carry a one-line, user-facing message: what went wrong, which file, and the fix; and the
exit codes every command returns."""

from __future__ import annotations

import re
import unicodedata
from enum import IntEnum


class ExitCode(IntEnum):
    """What every ``driftbench`` command exits with (one meaning per number, for scripts and CI)."""

    OK = 0  #: everything measured / the check or gate passed
    FAIL = 1  #: some clips failed (the rest written), or a check or gate failed
    USAGE = 2  #: bad usage or configuration (checked before any work), or the run directory is in use
    INTERRUPTED = 130  #: Ctrl-C; rerun the same command to resume
    TERMINATED = 143  #: SIGTERM; rerun the same command to resume


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (newline -> \\n, U+202E -> \\u202e): a file
    name from a dataset cannot split a one-line message into forged log lines or reorder what it shows."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in ("Cc", "Cf")
                   else ch for ch in text)


class DriftbenchError(Exception):
    """Base class; ``str(exc)`` is the one-line message shown to the user (credentials scrubbed)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(a) if isinstance(a, str) else a for a in args))


class UsageError(DriftbenchError):
    """Bad command line or configuration: exit code 2, raised before any work starts."""


class RunDirBusy(UsageError):
    """Another process holds the run directory's lock (exit 2; that run's files are left alone)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM received: handled like Ctrl-C (results kept, resumable), with its own exit code (143)."""


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


# -- secrets ------------------------------------------------------------------------------------------
#: environment variables whose values are credentials (generator API keys); providers add theirs
#: (the ``auth.env`` a provider YAML names) with :func:`register_secret_env`
SECRET_ENV_PATTERN = re.compile(
    r"^(KLING_.+|RUNWAYML_API_SECRET|RUNWAY_.*(KEY|SECRET|TOKEN).*|GEMINI_.+|GOOGLE_.*(KEY|SECRET|TOKEN|CREDENTIALS).*"
    r"|.*_API_KEY|.*_API_SECRET|.*_SECRET_KEY|.*_ACCESS_KEY|.*_AUTH_TOKEN|.*_API_TOKEN|HF_TOKEN)$",
    re.IGNORECASE,
)
#: credentials shorter than this are not scrubbed (a "1" would blank every digit of a report)
MIN_SECRET_LEN = 8
_EXTRA_ENV: set[str] = set()
_EXTRA_VALUES: set[str] = set()
#: a bearer credential echoed in any form (the header a server sends back, a JWT built from a key)
_BEARER = re.compile(r"(?i)\b(bearer\s+|(?:access_|api_)?token\"?\s*[:=]\s*\"?)([A-Za-z0-9._~+/-]{8,}=*)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
REDACTED = "[redacted]"


def register_secret_env(*names: str) -> None:
    """Treat the values of these environment variables as secrets (a provider's ``auth.env``)."""
    _EXTRA_ENV.update(n for n in names if n)


def register_secret_value(value: str) -> None:
    """Treat ``value`` (a token derived from a key, e.g. Kling's JWT) as a secret."""
    if value and len(value) >= MIN_SECRET_LEN:
        _EXTRA_VALUES.add(value)


def secret_values() -> list[str]:
    """The credentials of this process: values of secret environment variables, longest first."""
    import os

    vals = {v for k, v in os.environ.items() if (k in _EXTRA_ENV or SECRET_ENV_PATTERN.match(k))
            and len(v) >= MIN_SECRET_LEN}
    vals |= _EXTRA_VALUES
    return sorted(vals, key=len, reverse=True)


def scrub(text: str, *, patterns: bool = True, values: list[str] | None = None) -> str:
    """``text`` with every credential replaced by ``[redacted]``: the values of secret environment
    variables and, with ``patterns``, bearer tokens and JWTs in any form. The one function every
    recorded message goes through (errors, log records, CSV cells), and every text file written by
    :mod:`driftbench.io` (those with ``patterns=False``: a signed result URL that a generator's cache
    keeps must stay usable, and no key or token reaches a file other than inside a message). ``values``:
    :func:`secret_values` taken once by a caller that scrubs many strings at once (a table's cells)."""
    if not isinstance(text, str) or not text:
        return text
    for value in secret_values() if values is None else values:
        if value in text:
            text = text.replace(value, REDACTED)
    if not patterns:
        return text
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "earer" in text or "oken" in text or "EARER" in text or "OKEN" in text:
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class ScrubFilter:
    """A :mod:`logging` filter that scrubs each record's message (see :func:`scrub`)."""

    def filter(self, record: object) -> bool:
        import logging

        assert isinstance(record, logging.LogRecord)
        try:
            msg = record.getMessage()
        except Exception:
            return True
        clean = scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


def install_log_scrubbing() -> None:
    """Scrub every record of the ``driftbench`` logger (the terminal and driftbench.log both see it)."""
    import logging

    logger = logging.getLogger("driftbench")
    if not any(isinstance(f, ScrubFilter) for f in logger.filters):
        logger.addFilter(ScrubFilter())


install_log_scrubbing()
