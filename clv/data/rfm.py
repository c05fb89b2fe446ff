"""The RFM summary: one row per customer, computed by DuckDB from the merged customer-day table.

Definitions (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way", Sec. 2; BTYD's `dc.ElogToCbsCbt`):
transactions of a customer on one day are merged into one; the first purchase day starts the customer's clock.

- `frequency` x: repeat purchase days in the calibration period (purchase days up to calibration_end, minus 1);
- `recency` t_x: time from the first to the last purchase day in the calibration period;
- `T`: time from the first purchase day to calibration_end;
- `monetary_value` m_x: mean merged amount of the repeat purchase days (the first excluded), 0 when x = 0;
- with a holdout: `frequency_holdout` (purchase days in (calibration_end, holdout_end]) and
  `monetary_value_holdout` (their mean merged amount, 0 when there are none);
- `sum_log_intervals`: the sum over the calibration repeat purchase days of the log of the time since the previous
  purchase day (0 when x = 0), which the regularity models' likelihood needs (Reutterer, Platzer & Schroeder 2021;
  BTYDplus' `litt`).

Times are in the run's unit (days or weeks). Customers first seen after calibration_end have no calibration
history: they are counted and listed in the result (`new_customers`: first purchase day, purchase days and value
in the holdout), never silently dropped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.data.transactions import Transactions, exact_sum, sql_date
from clv.errors import DataError, first_ids
from clv.units import TimeUnit, days_per_unit

__all__ = [
    "NEW_CUSTOMER_COLUMNS",
    "RFM_COLUMNS",
    "RemoteRows",
    "RfmSummary",
    "new_customers",
    "rfm_summary",
    "validate_rfm",
]

#: Columns every RFM frame has, in this order.
RFM_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")
HOLDOUT_COLUMNS = ("frequency_holdout", "monetary_value_holdout")
#: Columns of the new customers' list (value_holdout only with amounts).
NEW_CUSTOMER_COLUMNS = ("customer_id", "first_purchase", "purchases_holdout", "value_holdout")


class RemoteRows(Protocol):
    """RFM rows kept where they were summarised (on Spark, `clv.spark.rows.SparkRows`): how many customers and
    which columns, and the frame itself only when a step asks for it (`RfmSummary.frame`)."""

    @property
    def customers(self) -> int: ...

    @property
    def columns(self) -> list[str]: ...

    def collect(self) -> pd.DataFrame:
        """The rows as `rfm_summary` gives them (by customer id), brought to this process."""
        ...

    def histories(self) -> tuple[pd.DataFrame, NDArray[np.float64]]:
        """The distinct (frequency, recency, T) rows (with their first customer's id) and their customer counts."""
        ...

    def spend_pairs(self) -> tuple[pd.DataFrame, NDArray[np.float64]]:
        """The repeat buyers' distinct (frequency, monetary_value) rows (with the first id) and their counts."""
        ...

    def spend_outlier_ids(self, threshold: float, shown: int) -> list[str]:
        """The first `shown` ids of the repeat buyers spending more than `threshold`, highest spend first."""
        ...

    def repeated_ids(self, shown: int) -> tuple[int, list[str]]:
        """How many ids have more than one row, and the first `shown` of them."""
        ...

    def sums(self, columns: list[str]) -> dict[str, float]:
        """The sums of numeric columns over the rows."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """`clv.store.data_fingerprint` of the rows."""
        ...

    def release(self) -> None:
        """Free the rows where they are kept."""
        ...


@dataclass
class RfmSummary:
    """The RFM rows plus what the summary left out and why. The rows are a frame, or rows kept where they were
    summarised (`RemoteRows`), brought here the first time `frame` is read."""

    rows: pd.DataFrame | RemoteRows
    unit: TimeUnit
    calibration_end: dt.date
    holdout_end: dt.date | None
    late_customers: int = 0
    late_customer_ids: list[str] = field(default_factory=list)
    days_after_end: int = 0
    #: the customers first seen after calibration_end (`new_customers`); None for an RFM table
    new_customers: pd.DataFrame | None = None

    _collected: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def frame(self) -> pd.DataFrame:
        """The RFM frame: one row per customer (of remote rows, collected once)."""
        if isinstance(self.rows, pd.DataFrame):
            return self.rows
        if self._collected is None:
            self._collected = self.rows.collect()
        return self._collected

    @property
    def remote(self) -> RemoteRows | None:
        """The rows where they were summarised, when they were kept there (None for a frame)."""
        return None if isinstance(self.rows, pd.DataFrame) else self.rows

    @property
    def customers(self) -> int:
        """How many customers (rows) the summary has, without collecting remote rows."""
        return len(self.rows) if isinstance(self.rows, pd.DataFrame) else self.rows.customers

    @property
    def columns(self) -> list[str]:
        """The RFM rows' columns, without collecting remote rows."""
        return list(self.rows.columns)

    def sums(self, columns: list[str]) -> dict[str, float]:
        """The sums of numeric columns over the customers (of remote rows, where they are)."""
        if isinstance(self.rows, pd.DataFrame):
            return {c: float(self.rows[c].sum()) for c in columns}
        return self.rows.sums(columns)

    @property
    def holdout_length(self) -> float | None:
        """Length of the holdout period in the run's unit."""
        if self.holdout_end is None:
            return None
        return (self.holdout_end - self.calibration_end).days / days_per_unit(self.unit)


def late_customers(tx: Transactions, calibration_end: dt.date) -> tuple[int, list[object]]:
    """How many customers are first seen after `calibration_end`, and the first ten of them (by first day, id)."""
    (late, late_ids) = tx.con.execute(
        f"SELECT count(*), list(customer_id ORDER BY first_day, customer_id)[1:10] FROM "
        f"(SELECT customer_id, min(day) AS first_day FROM {tx.table} GROUP BY 1) WHERE first_day > "
        f"{sql_date(calibration_end)}"
    ).fetchone() or (0, [])
    return int(late), list(late_ids or [])


def new_customers(tx: Transactions, calibration_end: dt.date, holdout_end: dt.date | None = None) -> pd.DataFrame:
    """The customers first seen after `calibration_end`, by first purchase day then id (the ones `late_customers`
    counts): `customer_id` as text, `first_purchase` (date), `purchases_holdout` (their purchase days in
    (calibration_end, holdout_end], or after calibration_end without a holdout end) and, with amounts,
    `value_holdout` (the value of those days, after returns)."""
    cal = sql_date(calibration_end)
    window = f"day > {cal}" + (f" AND day <= {sql_date(holdout_end)}" if holdout_end is not None else "")
    frame = tx.con.execute(
        f"""
        SELECT CAST(customer_id AS VARCHAR) AS customer_id, min(day) AS first_purchase,
               count(*) FILTER (WHERE {window}) AS purchases_holdout,
               coalesce({exact_sum("amount", 9, window)}, 0.0) AS value_holdout
        FROM {tx.table} GROUP BY customer_id HAVING min(day) > {cal}
        ORDER BY min(day), customer_id
        """
    ).df()
    frame["first_purchase"] = pd.to_datetime(frame["first_purchase"]).dt.date
    frame["purchases_holdout"] = frame["purchases_holdout"].astype(np.int64)
    return frame if tx.has_amount else frame.drop(columns="value_holdout")


def rfm_summary(
    tx: Transactions,
    calibration_end: dt.date,
    holdout_end: dt.date | None = None,
    unit: TimeUnit = "W",
    allow_empty: bool = False,
) -> RfmSummary:
    """Summarise validated transactions into one RFM row per customer (see the module docstring); a summary
    without a customer is refused unless `allow_empty` (a part of a log, `clv.spark`)."""
    per_unit = days_per_unit(unit)
    cal = sql_date(calibration_end)
    end = sql_date(holdout_end) if holdout_end is not None else cal
    table = tx.table
    con = tx.con
    new = new_customers(tx, calibration_end, holdout_end)
    (after,) = con.execute(f"SELECT count(*) FROM {table} WHERE day > {end}").fetchone() or (0,)
    frame = con.execute(
        f"""
        WITH cal AS (
            SELECT customer_id, count(*) - 1 AS frequency, min(day) AS first_day, max(day) AS last_day,
                   {exact_sum("amount", 9)} AS total, arg_min(amount, day) AS first_amount
            FROM {table} WHERE day <= {cal} GROUP BY 1
        ), gaps AS (
            SELECT customer_id, {exact_sum(f"ln(date_diff('day', previous_day, day) / {per_unit})", 18)}
                   AS sum_log_intervals
            FROM (SELECT customer_id, day, lag(day) OVER (PARTITION BY customer_id ORDER BY day) AS previous_day
                  FROM {table} WHERE day <= {cal})
            WHERE previous_day IS NOT NULL GROUP BY 1
        ), hold AS (
            SELECT customer_id, count(*) AS frequency_holdout, {exact_sum("amount", 9)} AS total_holdout
            FROM {table} WHERE day > {cal} AND day <= {end} GROUP BY 1
        )
        SELECT cal.customer_id,
               cal.frequency,
               date_diff('day', first_day, last_day) / {per_unit} AS recency,
               date_diff('day', first_day, {cal}) / {per_unit} AS "T",
               CASE WHEN cal.frequency > 0 THEN (total - first_amount) / cal.frequency ELSE 0.0 END
                   AS monetary_value,
               coalesce(gaps.sum_log_intervals, 0.0) AS sum_log_intervals,
               coalesce(hold.frequency_holdout, 0) AS frequency_holdout,
               CASE WHEN hold.frequency_holdout > 0 THEN total_holdout / hold.frequency_holdout ELSE 0.0 END
                   AS monetary_value_holdout
        FROM cal LEFT JOIN gaps USING (customer_id) LEFT JOIN hold USING (customer_id)
        ORDER BY cal.customer_id
        """
    ).df()
    frame["frequency"] = frame["frequency"].astype(np.int64)
    frame["frequency_holdout"] = frame["frequency_holdout"].astype(np.int64)
    if holdout_end is None:
        frame = frame.drop(columns=list(HOLDOUT_COLUMNS))
    if not tx.has_amount:
        frame = frame.drop(columns=[c for c in ("monetary_value", "monetary_value_holdout") if c in frame])
    if frame.empty and not allow_empty:
        raise DataError(f"no customer made a purchase on or before calibration_end {calibration_end}")
    return RfmSummary(
        rows=frame.reset_index(drop=True),
        unit=unit,
        calibration_end=calibration_end,
        holdout_end=holdout_end,
        late_customers=len(new),
        late_customer_ids=new["customer_id"].head(10).tolist(),
        days_after_end=int(after),
        new_customers=new,
    )


def _violations(rfm: pd.DataFrame, mask: np.ndarray) -> tuple[int, str]:
    ids = rfm["customer_id"].to_numpy()[mask] if "customer_id" in rfm else np.flatnonzero(mask)
    return int(mask.sum()), first_ids(ids)


def validate_rfm(rfm: pd.DataFrame, need_monetary: bool = False, times: bool = True) -> None:
    """Check an RFM frame at a model's boundary; raise DataError naming the offending customers. Without
    `times`, recency and T are neither needed nor checked (the spend model's fit reads frequency and spend).

    Finiteness is checked first (NaN compares False and would slip through the range checks).
    """
    needed = ["frequency", *(["recency", "T"] if times else []), *(["monetary_value"] if need_monetary else [])]
    missing = [c for c in needed if c not in rfm.columns]
    if missing:
        raise DataError(f"RFM frame lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, rfm.columns))}")
    if len(rfm) == 0:
        raise DataError("RFM frame has no rows")
    values = {c: pd.to_numeric(rfm[c], errors="coerce").to_numpy(dtype=float) for c in needed}
    x = values["frequency"]
    checks: list[tuple[str, np.ndarray]] = [
        (f"{c} must be a finite number", ~np.isfinite(v)) for c, v in values.items()
    ]
    with np.errstate(invalid="ignore"):
        checks.append(("frequency must be a whole number >= 0", (x < 0) | (np.floor(x) != x)))
        if times:
            t_x, T = values["recency"], values["T"]
            checks += [
                ("recency must be >= 0", t_x < 0),
                ("T must be >= 0", T < 0),
                ("recency must be <= T", t_x > T * (1 + 1e-12)),
                ("frequency 0 requires recency 0", (x == 0) & (t_x > 0)),
            ]
        if need_monetary:
            m = values["monetary_value"]
            # 0 is a mean spend: repeat purchases whose value was all returned (the returns policy, data.returns)
            checks.append(("monetary_value must be >= 0", ~(m >= 0)))
    problems = []
    for what, mask in checks:
        if mask.any():
            n, ids = _violations(rfm, mask)
            problems.append(f"{what}; {n} customer(s) violate this (first ids: {ids})")
    if problems:
        raise DataError("invalid RFM rows: " + " | ".join(problems))
