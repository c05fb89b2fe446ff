"""Time units and every conversion between them: the one place where units convert.

A run measures time in one unit, days (`D`) or weeks (`W`); recency, T, horizons and rates are all in that unit.
Calendar months and years enter only here, through the mean Gregorian year of 365.2425 days.
"""

from __future__ import annotations

import math
from typing import Literal

from clv.errors import UsageError

__all__ = [
    "DAYS_PER_YEAR",
    "TimeUnit",
    "continuous_rate_per_unit",
    "days_per_unit",
    "months_to_units",
    "units_per_month",
    "units_per_year",
]

TimeUnit = Literal["D", "W"]

#: Mean length of the Gregorian year in days.
DAYS_PER_YEAR = 365.2425

_DAYS_PER_UNIT: dict[str, float] = {"D": 1.0, "W": 7.0}


def days_per_unit(unit: TimeUnit) -> float:
    """Days in one time unit: 1 for `D`, 7 for `W`."""
    try:
        return _DAYS_PER_UNIT[unit]
    except KeyError:
        raise UsageError(f"time unit must be 'D' or 'W', got {unit!r}") from None


def units_per_year(unit: TimeUnit) -> float:
    """Time units in a mean Gregorian year (365.2425 days, 52.1775 weeks)."""
    return DAYS_PER_YEAR / days_per_unit(unit)


def units_per_month(unit: TimeUnit) -> float:
    """Time units in a mean calendar month (one twelfth of a mean year)."""
    return units_per_year(unit) / 12.0


def months_to_units(months: float, unit: TimeUnit) -> float:
    """A span of calendar months in time units."""
    return months * units_per_month(unit)


def continuous_rate_per_unit(annual_discount_rate: float, unit: TimeUnit) -> float:
    """The continuously compounded discount rate per time unit equivalent to an annual effective rate.

    A cash flow at time t (in units) is discounted by exp(-delta * t), with delta = ln(1 + d) / units_per_year,
    so that one year of discounting equals 1 / (1 + d) exactly (Fader, Hardie & Lee 2005b, "RFM and CLV", Sec. 4).
    """
    if not math.isfinite(annual_discount_rate) or annual_discount_rate <= -1.0:
        raise UsageError(f"annual_discount_rate must be a finite number > -1, got {annual_discount_rate!r}")
    return math.log1p(annual_discount_rate) / units_per_year(unit)
