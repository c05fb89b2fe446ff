"""The errors clv raises, and the warning it gives when a fit is doubtful.

The library raises `ClvError` subclasses only; the command line maps them to exit codes: `ConfigError` and
`UsageError` to 2 (bad usage or config), every other `ClvError` to 1 (the run failed), and an interrupt (Ctrl-C) to
130.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal

__all__ = [
    "ClvError",
    "ConfigError",
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "FitError",
    "ModelFileError",
    "NotFittedError",
    "UsageError",
    "first_ids",
    "plain_number",
]


class ClvError(Exception):
    """Base class of every error clv raises on purpose. `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(ClvError):
    """The run config is invalid: unknown key, bad value, or a bad `--set` override."""

    exit_code = 2


class UsageError(ClvError, ValueError):
    """The command was used wrongly (a missing file, a wrong combination of options, a bad argument); also a
    `ValueError`, which callers of a function given a bad argument expect."""

    exit_code = 2


class DataError(ClvError):
    """The data cannot be used: unreadable file, missing columns, invalid rows or customers."""


class FitError(ClvError):
    """A model could not be fitted (the optimiser failed, or the data cannot identify the model)."""


class NotFittedError(ClvError):
    """A fitted quantity was asked of a model that has no parameters yet."""


class ModelFileError(ClvError):
    """A saved model is missing, tampered with, or does not match what it is used for."""


class ClvWarning(UserWarning):
    """Something the user should know that does not stop the run; the CLI prints these."""


class ConvergenceWarning(ClvWarning):
    """A fit finished, but its result is doubtful (no convergence, boundary, broken model assumption)."""


class DataWarning(ClvWarning):
    """The data was read, but something in it needs a person's eye (e.g. customer ids with spaces)."""


class ScoringWarning(ClvWarning):
    """A saved model is used on a config that names something else (e.g. another purchase model)."""


def first_ids(values: Iterable[object], limit: int = 5) -> str:
    """Format the first `limit` offending ids or line numbers for an error message: '1042, 1077, 2210'."""
    items: Sequence[object] = list(values)
    shown = ", ".join(str(v) for v in items[:limit])
    return shown + (", ..." if len(items) > limit else "")


def plain_number(value: float, digits: int = 3) -> str:
    """A number for a sentence, never in scientific notation: `digits` significant digits, thousands separated
    (2290.4 -> '2,290', 2.4e-07 -> '0.00000024', 0.7929 -> '0.793')."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    text = format(Decimal(f"{value:.{digits}g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
