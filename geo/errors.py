"""The one error hierarchy of ``icv``.

Every error a user can cause or meet carries a one-line message saying what went
wrong, where, and what to do; the CLI prints that line and exits with
``exit_code``. Tracebacks are shown only with ``--debug``.

As OSMnx's errors do, each also subclasses the builtin it refines, so library
users can catch them as such: bad input is a :class:`ValueError`, an
unreachable server a :class:`ConnectionError`, cache and output faults an
:class:`OSError`.
"""

from __future__ import annotations

import re
from typing import Any

#: C0/C1 control characters (ESC of terminal sequences, BEL, NUL...) and the bidi
#: overrides that reorder text on screen; whitespace controls become spaces.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: object) -> str:
    """``text`` with control characters removed: safe to print on a terminal or in a log.

    Strings from files and servers are data; an ESC sequence in them must not
    reach the user's terminal.
    """
    s = "" if text is None else str(text)
    # ESC [ ... letter (CSI) and ESC ] ... BEL (OSC) go whole, not just their ESC
    s = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x9b[0-?]*[ -/]*[@-~]", "", s)
    return _CONTROLS.sub("", s.replace("\t", " ").replace("\n", " ").replace("\r", " "))


class IcvError(Exception):
    """Base class of every error ``icv`` raises on purpose."""

    exit_code: int = 1

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.message)

    def __str__(self) -> str:  # OSError's own __str__ would show errno fields
        return self.message

    def __reduce__(self) -> Any:  # picklable (Dask workers send errors back)
        return (_rebuild, (type(self), self.what, self.where, self.hint))

    @property
    def message(self) -> str:
        """One line: what, where, what to do."""
        parts = [self.what.rstrip(".")]
        if self.where:
            parts[0] = f"{self.where}: {parts[0]}"
        line = parts[0] + "."
        if self.hint:
            hint = self.hint.rstrip(".")
            line += " " + hint[:1].upper() + hint[1:] + "."
        return " ".join(strip_controls(line).split())


class InputError(IcvError, ValueError):
    """A file or value given by the user cannot be used (bad format, bad content)."""

    exit_code = 2


class ZoneError(InputError):
    """A zone outline is unusable: empty, not a polygon, invalid, out of range."""


class FilterError(InputError):
    """A road filter is unknown or malformed."""


class EmptyNetworkError(InputError):
    """The source holds no road ways that pass the filter inside the zone."""


class FleetLogError(InputError):
    """A fleet log cannot be read (missing columns, undecodable file)."""


class ReportedFiguresError(InputError):
    """The reported-figures table is malformed (unknown figure, missing source, bad date)."""


class SourceUnavailableError(IcvError, ConnectionError):
    """A remote source (Overpass) cannot be reached or keeps failing."""

    exit_code = 3


class CacheError(IcvError, OSError):
    """The project's cache is missing or corrupted."""

    exit_code = 4


class OutputError(IcvError, OSError):
    """An output file cannot be written where the user asked."""

    exit_code = 5


class InputWarning(UserWarning):
    """An input was read with a stated repair (duplicate ids, history versions...); one line for the user."""


def _rebuild(cls: type[IcvError], what: str, where: str | None, hint: str | None) -> IcvError:
    return cls(what, where=where, hint=hint)


def env_mib(name: str, default: int, *, max_mb: float = 1e9, example: str | None = None) -> int:
    """A size cap in bytes from the environment variable ``name`` (MiB), else ``default`` (bytes).

    A value that is not a positive number below ``max_mb`` is an :class:`InputError`.
    """
    import os

    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not (mb > 0 and mb < max_mb):
        raise InputError(f"bad {name} {raw!r}",
                         hint="give a positive number of MiB" + (f", e.g. {example}" if example else ""))
    return int(mb * (1 << 20))
