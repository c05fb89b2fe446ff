"""Repeat purchases week by week over calibration and holdout, for the tracking charts of Fader, Hardie & Lee
(2005, "Counting Your Customers the Easy Way", Figs. 2-3) and BTYD's `bgnbd.PlotTrackingInc` / `...Cum`.

The cohort is every customer first seen on or before calibration_end (the customers of the RFM summary). Days
are counted from the cohort's first purchase day (day 0); weeks are laid so that one ends on calibration_end
(the first week and the last, which ends with the holdout's last day, may be shorter), so every week is wholly
calibration or wholly holdout. A repeat purchase is a customer-day after the customer's first
day, exactly as the RFM summary counts them, so the weekly counts add up to sum(frequency) over the calibration
and sum(frequency_holdout) over the holdout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from clv.data.transactions import Transactions, sql_date
from clv.errors import DataError

__all__ = ["RepeatTracking", "repeat_tracking"]


@dataclass(frozen=True)
class RepeatTracking:
    """Actual repeat purchases per week, and when each cohort member started (for the model's curve)."""

    start: dt.date
    #: last day offset (inclusive) of each week; one is calibration_end's, the last is the holdout's last day
    week_end: NDArray[np.int64]
    #: repeat purchases in each week
    weekly: NDArray[np.int64]
    #: first purchase days of the cohort, as day offsets, and how many customers started on each
    first_day: NDArray[np.int64]
    first_day_customers: NDArray[np.int64]
    #: day offset of calibration_end
    calibration_end: int

    @property
    def cumulative(self) -> NDArray[np.int64]:
        return np.cumsum(self.weekly)

    def week_end_dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=int(d)) for d in self.week_end]


def repeat_tracking(tx: Transactions, calibration_end: dt.date, end: dt.date) -> RepeatTracking:
    """Weekly repeat purchases from the cohort's first day to `end` (inclusive) of the customers first seen on
    or before `calibration_end`, and the cohort's first-day distribution."""
    con, table = tx.con, tx.table
    cal = sql_date(calibration_end)
    firsts = f"(SELECT customer_id, min(day) AS first_day FROM {table} GROUP BY 1 HAVING min(day) <= {cal})"
    row = con.execute(f"SELECT min(first_day) FROM {firsts}").fetchone()
    if row is None or row[0] is None:
        raise DataError(f"no customer made a purchase on or before calibration_end {calibration_end}")
    start: dt.date = row[0]
    cohort = con.execute(
        f"SELECT date_diff('day', {sql_date(start)}, first_day) AS d, count(*) FROM {firsts} GROUP BY 1 ORDER BY 1"
    ).fetchnumpy()
    repeats = con.execute(
        f"""
        SELECT date_diff('day', {sql_date(start)}, t.day) AS d, count(*) AS n
        FROM {table} t JOIN {firsts} f USING (customer_id)
        WHERE t.day > f.first_day AND t.day <= {sql_date(end)}
        GROUP BY 1 ORDER BY 1
        """
    ).fetchnumpy()
    cal_day, last = (calibration_end - start).days, (end - start).days
    week_end = np.arange(cal_day % 7, last + 7, 7, dtype=np.int64)
    week_end = week_end[week_end - 7 < last]
    week_end[-1] = min(int(week_end[-1]), last)
    days = np.asarray(repeats["d"], dtype=np.int64)
    weekly = np.bincount(
        np.searchsorted(week_end, days, side="left"),
        weights=np.asarray(repeats["n"], dtype=float),
        minlength=week_end.size,
    ).astype(np.int64)
    values = list(cohort.values())
    return RepeatTracking(
        start=start,
        week_end=week_end,
        weekly=weekly,
        first_day=np.asarray(values[0], dtype=np.int64),
        first_day_customers=np.asarray(values[1], dtype=np.int64),
        calibration_end=(calibration_end - start).days,
    )
