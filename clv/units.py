"""Time units, durations and the calendar: the one place where units convert.

A run measures time in one unit, days (`D`) or weeks (`W`); recency, T and rates are all in that unit. Durations
(the prediction horizon, the largest gap allowed between the data and the calibration end) carry their own unit:
days `D`, weeks `W`, calendar months `M` or calendar years `Y` (12 calendar months). A calendar duration is exact
in days once it has a start date: `12M` from 1997-09-30 ends on 1998-09-30, 365 days later; it is converted to
the run's unit through those days. Mean calendar months and years (365.2425 days a year) are used only where
there is no date: the discount rate per unit, and the month edges of a library call without a calibration end.

Time 0 is the end of the calibration end's day: a purchase d days after it is at t = d days, so the calendar
month whose last day is d_k days after the calibration end covers t in (d_(k-1), d_k].
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Literal

from clv.errors import UsageError

__all__ = [
    "DAYS_PER_YEAR",
    "CalendarMonth",
    "Duration",
    "DurationUnit",
    "TimeUnit",
    "add_months",
    "calendar_months",
    "continuous_rate_per_unit",
    "days_per_unit",
    "days_to_units",
    "months_to_units",
    "units_per_month",
    "units_per_year",
    "units_to_days",
]

TimeUnit = Literal["D", "W"]
DurationUnit = Literal["D", "W", "M", "Y"]

#: Mean length of the Gregorian year in days.
DAYS_PER_YEAR = 365.2425

_DAYS_PER_UNIT: dict[str, float] = {"D": 1.0, "W": 7.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([DWMY])\s*$", re.IGNORECASE)
#: spans shorter than this (in days) are rounding, not time: 52.142857 W x 7 is 365.00000000000006 days
_DAY_TOLERANCE = 1e-6


def days_per_unit(unit: TimeUnit) -> float:
    """Days in one time unit: 1 for `D`, 7 for `W`."""
    try:
        return _DAYS_PER_UNIT[unit]
    except KeyError:
        raise UsageError(f"time unit must be 'D' or 'W', got {unit!r}") from None


def days_to_units(days: float, unit: TimeUnit) -> float:
    """A span of days in time units."""
    return days / days_per_unit(unit)


def units_to_days(units: float, unit: TimeUnit) -> float:
    """A span of time units in days."""
    return units * days_per_unit(unit)


def units_per_year(unit: TimeUnit) -> float:
    """Time units in a mean Gregorian year (365.2425 days, 52.1775 weeks)."""
    return DAYS_PER_YEAR / days_per_unit(unit)


def units_per_month(unit: TimeUnit) -> float:
    """Time units in a mean calendar month (one twelfth of a mean year)."""
    return units_per_year(unit) / 12.0


def months_to_units(months: float, unit: TimeUnit) -> float:
    """A span of mean calendar months in time units."""
    return months * units_per_month(unit)


def continuous_rate_per_unit(annual_discount_rate: float, unit: TimeUnit) -> float:
    """The continuously compounded discount rate per time unit equivalent to an annual effective rate.

    A cash flow at time t (in units) is discounted by exp(-delta * t), with delta = ln(1 + d) / units_per_year,
    so that one year of discounting equals 1 / (1 + d) exactly (Fader, Hardie & Lee 2005b, "RFM and CLV", Sec. 4).
    """
    if not math.isfinite(annual_discount_rate) or annual_discount_rate <= -1.0:
        raise UsageError(f"annual_discount_rate must be a finite number > -1, got {annual_discount_rate!r}")
    return math.log1p(annual_discount_rate) / units_per_year(unit)


def _last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def add_months(start: dt.date, months: int) -> dt.date:
    """The same day `months` calendar months later, or the month's last day when it is shorter; from a month's
    last day, the last day of the month reached (1997-09-30 + 1 = 1997-10-31; 2024-01-31 + 1 = 2024-02-29)."""
    index = start.year * 12 + start.month - 1 + months
    year, month = divmod(index, 12)
    last = _last_day(year, month + 1)
    day = last if start.day == _last_day(start.year, start.month) else min(start.day, last)
    return dt.date(year, month + 1, day)


def _number(count: float) -> str:
    value = float(count)
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True)
class Duration:
    """A span of time with its unit: `count` days (`D`), weeks (`W`), calendar months (`M`) or calendar years
    (`Y`). Written and parsed as `52W`, `12M`, `365D`, `1Y`; months and years are whole numbers.

    >>> Duration.parse("12m").days(dt.date(1997, 9, 30))
    365.0
    >>> Duration.parse(52, "W").describe(dt.date(1997, 9, 30))
    '52 W (364 days)'
    """

    count: float
    unit: DurationUnit

    def __post_init__(self) -> None:
        if not (math.isfinite(self.count) and self.count > 0):
            raise UsageError(f"a duration must be a finite number > 0, got {_number(self.count)}{self.unit}")
        if self.unit in ("M", "Y") and not float(self.count).is_integer():
            raise UsageError(
                f"calendar months and years are whole numbers, got {_number(self.count)}{self.unit}",
                hint="write e.g. 12M or 1Y, or give the span in weeks or days (26W, 182D)",
            )

    @classmethod
    def parse(cls, value: str | float, default_unit: TimeUnit | None = None) -> Duration:
        """`52W`, `12M`, `365D`, `1Y` (any case, spaces allowed); a bare number is in `default_unit` (the run's
        time.unit), and is refused without one."""
        if isinstance(value, bool):
            raise UsageError(f"a duration is a number with a unit (52W, 12M, 365D), got {value!r}")
        if isinstance(value, int | float):
            if default_unit is None:
                raise UsageError(f"a bare number ({value!r}) needs a time unit: write it as e.g. {value}W")
            days_per_unit(default_unit)
            return cls(float(value), default_unit)
        match = _DURATION.match(str(value))
        if match is None:
            raise UsageError(
                f"a duration is a number with a unit D (days), W (weeks), M (calendar months) or Y (calendar "
                f"years), e.g. 52W, 12M, 365D; got {value!r}"
            )
        unit: DurationUnit = match.group(2).upper()  # type: ignore[assignment]
        return cls(float(match.group(1)), unit)

    def __str__(self) -> str:
        return f"{_number(self.count)}{self.unit}"

    def days(self, start: dt.date) -> float:
        """The span's length in days from `start` (calendar months and years counted on the calendar)."""
        if self.unit in ("D", "W"):
            return self.count * _DAYS_PER_UNIT[self.unit]
        months = int(self.count) * (12 if self.unit == "Y" else 1)
        return float((add_months(start, months) - start).days)

    def units(self, start: dt.date, unit: TimeUnit) -> float:
        """The span's length from `start` in the run's time unit."""
        if self.unit == unit:
            return float(self.count)
        return days_to_units(self.days(start), unit)

    def describe(self, start: dt.date) -> str:
        """`52 W (364 days)`, `12 M (365 days)`, `90 D`: the span as given, and in days from `start`."""
        text = f"{_number(self.count)} {self.unit}"
        if self.unit == "D":
            return text
        days = self.days(start)
        return f"{text} ({_number(round(days, 6))} day{'s' if days != 1 else ''})"


@dataclass(frozen=True)
class CalendarMonth:
    """One calendar month of a forecast after `start` (time 0): its label `YYYY-MM`, its first and last dates
    inside the forecast (inclusive), and its edges in days after time 0, (start_day, end_day]."""

    label: str
    first: dt.date
    last: dt.date
    start_day: float
    end_day: float

    @property
    def days(self) -> float:
        """Days of the month inside the forecast."""
        return self.end_day - self.start_day

    @property
    def partial(self) -> bool:
        """Whether the forecast covers only part of the month (a start or an end inside it)."""
        return self.days < _last_day(self.first.year, self.first.month) - _DAY_TOLERANCE


def calendar_months(start: dt.date, days: float) -> list[CalendarMonth]:
    """The calendar months of the `days` days after the end of day `start`: the first begins the day after
    `start` (partial when `start` is not a month's last day), the last ends `days` days after it (partial when
    that is not a month's last day; a fraction of a day is kept in its edge, and its date is the day it falls
    in)."""
    if not (math.isfinite(days) and days >= 1.0 - _DAY_TOLERANCE):
        raise UsageError(f"a forecast of calendar months needs at least one day, got {days!r} days")
    months: list[CalendarMonth] = []
    edge = 0.0
    first = start + dt.timedelta(days=1)
    while days - edge > _DAY_TOLERANCE:
        month_end = dt.date(first.year, first.month, _last_day(first.year, first.month))
        end = min(float((month_end - start).days), days)
        if days - end <= _DAY_TOLERANCE:
            end = days
        last = start + dt.timedelta(days=math.ceil(end - _DAY_TOLERANCE))
        months.append(CalendarMonth(f"{first.year:04d}-{first.month:02d}", first, min(last, month_end), edge, end))
        edge, first = end, month_end + dt.timedelta(days=1)
    return months
