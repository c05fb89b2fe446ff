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
import pandas as pd
from numpy.typing import NDArray

from clv.data.transactions import Transactions, sql_date
from clv.errors import DataError

__all__ = ["RepeatTracking", "repeat_tracking", "tracking_counts", "tracking_from_counts"]


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
    return tracking_from_counts(*tracking_counts(tx, calibration_end, end), calibration_end, end)


def tracking_counts(tx: Transactions, calibration_end: dt.date, end: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What `repeat_tracking` is built from, additive over parts of a log that split its customers (`clv.spark`):
    the cohort's customers by first purchase day (first_day, customers) and their repeat purchases by day (day,
    purchases), both by date."""
    con, table = tx.con, tx.table
    cal = sql_date(calibration_end)
    firsts = f"(SELECT customer_id, min(day) AS first_day FROM {table} GROUP BY 1 HAVING min(day) <= {cal})"
    cohort = con.execute(f"SELECT first_day, count(*) AS customers FROM {firsts} GROUP BY 1 ORDER BY 1").df()
    repeats = con.execute(
        f"""
        SELECT t.day, count(*) AS purchases
        FROM {table} t JOIN {firsts} f USING (customer_id)
        WHERE t.day > f.first_day AND t.day <= {sql_date(end)}
        GROUP BY 1 ORDER BY 1
        """
    ).df()
    return cohort, repeats


def tracking_from_counts(
    cohort: pd.DataFrame, repeats: pd.DataFrame, calibration_end: dt.date, end: dt.date
) -> RepeatTracking:
    """`repeat_tracking` from `tracking_counts`' tables (of a whole log, or added up over its parts)."""
    if cohort.empty:
        raise DataError(f"no customer made a purchase on or before calibration_end {calibration_end}")
    by_first = cohort.groupby("first_day", sort=True)["customers"].sum()
    by_day = repeats.groupby("day", sort=True)["purchases"].sum()
    start = _date(by_first.index[0])
    first_day = np.array([(_date(d) - start).days for d in by_first.index], dtype=np.int64)
    days = np.array([(_date(d) - start).days for d in by_day.index], dtype=np.int64)
    cal_day, last = (calibration_end - start).days, (end - start).days
    week_end = np.arange(cal_day % 7, last + 7, 7, dtype=np.int64)
    week_end = week_end[week_end - 7 < last]
    week_end[-1] = min(int(week_end[-1]), last)
    weekly = np.bincount(
        np.searchsorted(week_end, days, side="left"),
        weights=by_day.to_numpy(dtype=float),
        minlength=week_end.size,
    ).astype(np.int64)
    return RepeatTracking(
        start=start,
        week_end=week_end,
        weekly=weekly,
        first_day=first_day,
        first_day_customers=by_first.to_numpy(dtype=np.int64),
        calibration_end=cal_day,
    )


def _date(value: object) -> dt.date:
    """A day of the counts' tables (a date, or a pandas timestamp) as a date."""
    return value.date() if isinstance(value, pd.Timestamp) else value  # type: ignore[return-value]
