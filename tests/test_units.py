"""Durations and calendar months (clv.units): the horizon is a span of time that carries its unit."""

from __future__ import annotations

import datetime as dt
from itertools import pairwise

import pytest

from clv.errors import UsageError
from clv.units import Duration, add_months, calendar_months

CDNOW_END = dt.date(1997, 9, 30)


@pytest.mark.parametrize(
    ("text", "count", "unit"),
    [("12M", 12, "M"), ("52w", 52, "W"), (" 365 D ", 365, "D"), ("1y", 1, "Y"), ("4.35W", 4.35, "W")],
)
def test_durations_parse_with_their_unit(text, count, unit):
    duration = Duration.parse(text)
    assert (duration.count, duration.unit) == (count, unit)
    assert Duration.parse(str(duration)) == duration


def test_a_bare_number_is_in_the_run_unit_and_needs_one():
    assert Duration.parse(52, "W") == Duration(52, "W")
    assert Duration.parse(365, "D").days(CDNOW_END) == 365
    with pytest.raises(UsageError, match="needs a time unit"):
        Duration.parse(52)


@pytest.mark.parametrize(("text", "message"), [("1.5M", "whole numbers"), ("0W", "> 0"), ("12X", "e.g. 52W")])
def test_bad_durations_are_refused(text, message):
    with pytest.raises(UsageError, match=message):
        Duration.parse(text)


def test_calendar_months_are_exact_in_days():
    assert Duration.parse("12M").days(CDNOW_END) == 365  # to 1998-09-30
    assert Duration.parse("1Y").days(CDNOW_END) == 365
    assert Duration.parse("12M").days(dt.date(2023, 9, 30)) == 366  # over 2024-02-29
    assert Duration.parse("52W").days(CDNOW_END) == 364
    assert Duration.parse("12M").units(CDNOW_END, "W") == pytest.approx(365 / 7)
    assert Duration.parse("52W").units(CDNOW_END, "D") == 364
    assert Duration.parse("52W").describe(CDNOW_END) == "52 W (364 days)"
    assert Duration.parse("12M").describe(CDNOW_END) == "12 M (365 days)"
    assert Duration.parse("90D").describe(CDNOW_END) == "90 D"


def test_switching_the_unit_keeps_a_year_a_year():
    """The trap a bare number set: `horizon: 52` meant a year in weeks and 52 days in days."""
    year = Duration.parse("12M")
    assert year.units(CDNOW_END, "D") == 365
    assert year.units(CDNOW_END, "W") * 7 == pytest.approx(365)


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (dt.date(1997, 9, 30), 1, dt.date(1997, 10, 31)),  # from a month's last day, to the last day
        (dt.date(1997, 9, 30), 12, dt.date(1998, 9, 30)),
        (dt.date(2024, 1, 31), 1, dt.date(2024, 2, 29)),
        (dt.date(2023, 2, 28), 12, dt.date(2024, 2, 29)),
        (dt.date(1997, 9, 15), 12, dt.date(1998, 9, 15)),
        (dt.date(2024, 1, 30), 1, dt.date(2024, 2, 29)),  # clamped to a shorter month
        (dt.date(2024, 11, 15), 3, dt.date(2025, 2, 15)),
    ],
)
def test_add_months(start, months, end):
    assert add_months(start, months) == end


def test_a_calibration_end_on_a_month_end_gives_whole_months():
    months = calendar_months(CDNOW_END, 365)
    assert [m.label for m in months] == [f"1997-{k}" for k in (10, 11, 12)] + [f"1998-{k:02d}" for k in range(1, 10)]
    assert not any(m.partial for m in months)
    assert months[0].first == dt.date(1997, 10, 1) and months[-1].last == dt.date(1998, 9, 30)
    assert [m.end_day for m in months[:2]] == [31, 61]


def test_partial_first_and_last_months():
    """Calibration end mid-month: the first month is its rest; a horizon ending mid-month: the last is partial.
    Time 0 is the end of the calibration end's day, so the month whose last day is d days later ends at t = d."""
    months = calendar_months(dt.date(1997, 9, 15), 364)
    first, last = months[0], months[-1]
    assert (first.label, first.first, first.last, first.days, first.partial) == (
        "1997-09",
        dt.date(1997, 9, 16),
        dt.date(1997, 9, 30),
        15,
        True,
    )
    assert (last.label, last.first, last.last, last.end_day, last.partial) == (
        "1998-09",
        dt.date(1998, 9, 1),
        dt.date(1998, 9, 14),
        364,
        True,
    )
    assert all(a.end_day == b.start_day for a, b in pairwise(months))
    assert sum(m.days for m in months) == 364
    assert not any(m.partial for m in months[1:-1])


def test_a_round_trip_through_weeks_adds_no_sliver_of_a_month():
    months = calendar_months(CDNOW_END, (365 / 7) * 7)  # 365.00000000000006
    assert len(months) == 12 and months[-1].end_day == pytest.approx(365)


def test_a_fraction_of_a_day_falls_in_its_day():
    months = calendar_months(dt.date(2024, 2, 29), 52.5)
    assert months[-1].end_day == 52.5 and months[-1].last == dt.date(2024, 4, 22)
