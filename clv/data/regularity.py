"""The regularity of a transaction log's inter-purchase times (`clv.regularity`), as `clv data summarize` reports
it: the customers' inter-purchase times in days from the merged customer-day table (same-day purchases are one
purchase), up to the calibration end, and the two estimates of the Gamma shape k with what they rest on."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from clv.data.transactions import Transactions, exact_sum, sql_date
from clv.regularity import gamma_shape_mle, wheat_morrison

__all__ = [
    "MLE_MIN_GAPS",
    "RegularityEstimate",
    "customer_gaps",
    "customer_shapes",
    "estimate_regularity",
    "regularity_estimates",
    "regularity_from_gaps",
    "regularity_line",
    "regularity_reading",
]

RegularityMethod = Literal["wheat-morrison", "gamma-mle-median"]
#: inter-purchase times a customer needs for the per-customer Gamma fit (BTYDplus' default for its MLE methods)
MLE_MIN_GAPS = 10
#: Wheat & Morrison use each customer's last two inter-purchase times
WHEAT_MIN_GAPS = 2


@dataclass(frozen=True)
class RegularityEstimate:
    """One estimate of the Gamma shape k of inter-purchase times. `k` is None where it cannot be estimated
    (too few customers, or every customer's times equal); `customers` is how many customers it rests on: those
    with at least `min_gaps` inter-purchase times (purchase days - 1) up to `period_end`."""

    method: RegularityMethod
    k: float | None
    standard_error: float | None
    customers: int
    min_gaps: int
    period_end: str | None
    note: str = ""


def customer_gaps(tx: Transactions, end: dt.date | None) -> pd.DataFrame:
    """Per customer with two or more inter-purchase times up to `end`: customer_id, their number n, sum total and
    sum of logs sum_log (days), and the last and previous (second-to-last) time."""
    where = "" if end is None else f"WHERE day <= {sql_date(end)}"
    frame = tx.con.execute(
        f"""
        WITH g AS (
            SELECT customer_id,
                   date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day), day) AS gap,
                   row_number() OVER (PARTITION BY customer_id ORDER BY day DESC) AS back
            FROM {tx.table} {where}
        )
        SELECT customer_id, count(gap) AS n, sum(gap) AS total, {exact_sum("ln(gap)", 18)} AS sum_log,
               max(gap) FILTER (WHERE back = 1) AS last, max(gap) FILTER (WHERE back = 2) AS previous
        FROM g WHERE gap IS NOT NULL GROUP BY customer_id HAVING count(gap) >= {WHEAT_MIN_GAPS}
        """
    ).df()
    return frame


def regularity_from_gaps(gaps: pd.DataFrame, end: dt.date | None = None) -> list[RegularityEstimate]:
    """The two estimates from the customers' gaps (`customer_gaps`; of a whole log, or its parts' together)."""
    last_two = gaps[["last", "previous"]].assign(customers=1.0)
    shapes = customer_shapes(gaps)
    shapes = shapes[~np.isnan(shapes)]
    median = float(np.median(shapes)) if shapes.size else None
    return regularity_estimates(last_two, median, int(shapes.size), end)


def customer_shapes(gaps: pd.DataFrame) -> np.ndarray:
    """Each customer's own maximum-likelihood Gamma shape (`gamma_shape_mle`) where they have `MLE_MIN_GAPS`
    or more inter-purchase times, NaN elsewhere (inf where all their times are equal)."""
    n = gaps["n"].to_numpy(dtype=float)
    many = n >= MLE_MIN_GAPS
    shapes = np.full(n.size, np.nan)
    if many.any():
        total, sum_log = (gaps[c].to_numpy(dtype=float)[many] for c in ("total", "sum_log"))
        shapes[many] = gamma_shape_mle(n[many], total, sum_log)
    return shapes


def regularity_estimates(
    last_two: pd.DataFrame, shape_median: float | None, shape_customers: int, end: dt.date | None
) -> list[RegularityEstimate]:
    """The two estimates from what they read: `last_two`, the last and previous inter-purchase times of the
    customers with two or more (last, previous, and `customers`, how many customers have that pair), and the
    median of the `shape_customers` customers' own Gamma shapes (`customer_shapes`; None without any)."""
    period = None if end is None else end.isoformat()
    pairs = {c: last_two[c].to_numpy(dtype=float) for c in ("last", "previous", "customers")}
    return [_wheat(pairs, period), _mle_median(shape_median, shape_customers, period)]


def estimate_regularity(tx: Transactions, end: dt.date | None = None) -> list[RegularityEstimate]:
    """The Wheat & Morrison estimate (customers with 2+ inter-purchase times) and the median of the customers'
    maximum-likelihood Gamma shapes (customers with `MLE_MIN_GAPS`+ times), from the purchases up to `end`."""
    return regularity_from_gaps(customer_gaps(tx, end), end)


def _wheat(g: dict[str, np.ndarray], period: str | None) -> RegularityEstimate:
    counts = g["customers"]
    n = round(float(counts.sum()))
    if n < 2:
        return RegularityEstimate("wheat-morrison", None, None, n, WHEAT_MIN_GAPS, period, "too few customers")
    k, se = wheat_morrison(g["last"], g["previous"], None if np.all(counts == 1.0) else counts)
    if not math.isfinite(k):
        note = "every customer's last two inter-purchase times are equal: k is unbounded"
        return RegularityEstimate("wheat-morrison", None, None, n, WHEAT_MIN_GAPS, period, note)
    return RegularityEstimate("wheat-morrison", k, se, n, WHEAT_MIN_GAPS, period)


def _mle_median(median: float | None, n: int, period: str | None) -> RegularityEstimate:
    if n == 0 or median is None:
        return RegularityEstimate(
            "gamma-mle-median", None, None, 0, MLE_MIN_GAPS, period, "no customer has enough purchases"
        )
    if not math.isfinite(median):
        return RegularityEstimate("gamma-mle-median", None, None, n, MLE_MIN_GAPS, period, "k is unbounded")
    return RegularityEstimate("gamma-mle-median", median, None, n, MLE_MIN_GAPS, period)


#: how each method is named for a reader
METHOD_TEXT: dict[RegularityMethod, str] = {
    "wheat-morrison": "Wheat & Morrison 1990, from each customer's last two inter-purchase times",
    "gamma-mle-median": "median of the customers' own maximum-likelihood Gamma shapes",
}


def regularity_line(estimate: RegularityEstimate) -> str:
    """One line for a reader: the estimate, its method and what it rests on."""
    value = "not estimated" if estimate.k is None else f"k = {estimate.k:.2f}"
    if estimate.k is not None and estimate.standard_error is not None:
        value += f" +- {estimate.standard_error:.2f} (standard error)"
    end = "" if estimate.period_end is None else f" to {estimate.period_end}"
    rests = f"{estimate.customers:,} customers with {estimate.min_gaps}+ inter-purchase times{end}"
    note = f"; {estimate.note}" if estimate.note else ""
    return f"{value}: {METHOD_TEXT[estimate.method]}; {rests}{note}"


def regularity_reading(estimate: RegularityEstimate) -> str:
    """What the Wheat & Morrison estimate says, judged by its 95% interval k +- 1.96 standard errors."""
    if estimate.k is None or estimate.standard_error is None:
        return f"regularity not estimated: {estimate.note}"
    low, high = estimate.k - 1.96 * estimate.standard_error, estimate.k + 1.96 * estimate.standard_error
    span = f"k = {estimate.k:.2f} (95% interval {low:.2f} to {high:.2f})"
    if low > 1.0:
        return (
            f"{span}: inter-purchase times are more regular than a Poisson process (k > 1); the regularity models "
            "MBG/CNBD-k and BG/CNBD-k (model.purchase mbgcnbd, bgcnbd) may forecast better than the NBD models"
        )
    if high < 1.0:
        return (
            f"{span}: inter-purchase times are more clumped than a Poisson process (k < 1); no regularity to "
            "exploit, the NBD models (k = 1) are the closest"
        )
    return (
        f"{span}: consistent with k = 1, exponential inter-purchase times (Poisson-like, no regularity), as the "
        "NBD models (BG/NBD, Pareto/NBD, ...) assume"
    )
