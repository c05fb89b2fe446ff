"""What the reports read of the customer table: counts, sums and means by segment, a few order statistics, the
CLV histogram and concentration curve, and the first rows of the at-risk list.

The report, summary.json and the console headline are built from this digest, not from the customer table, so
that they can be built where the table does not fit on one machine. Every figure is of a kind an engine can
compute where the table lives: a count, sum or mean over a group; an order statistic of a column; the count of a
histogram bin; the sum of the values above a threshold; or the first rows in the table's order (highest CLV
first, ties by customer id). `digest_customers` computes it from a pandas customer table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.evaluate.scores import by_frequency
from clv.tiers import AT_RISK

__all__ = [
    "AT_RISK_LEAD",
    "AT_RISK_ROWS",
    "AT_RISK_TAIL",
    "CURVE_POINTS",
    "CURVE_TOPS",
    "HISTOGRAM_BINS",
    "ClvShape",
    "CustomerDigest",
    "GroupFigures",
    "churn_of",
    "clv_shape",
    "curve_probabilities",
    "digest_customers",
    "histogram_edges",
]

FloatArray = NDArray[np.float64]

#: rows of the at-risk list the report shows (at_risk.csv has all of them)
AT_RISK_ROWS = 25
#: CLV quantiles at which the concentration curve is drawn: each point is exact (the customers above a value are
#: the top ones), the curve between them a straight line (exact where the values between are equal); evenly
#: spaced, and as many again spaced geometrically over the top 1% down to the top 0.001%, where the curve is
#: steepest
CURVE_POINTS = 200


def curve_probabilities() -> list[float]:
    """The probabilities of the CLV quantiles the concentration curve is drawn at (see CURVE_POINTS)."""
    top = 1.0 - np.logspace(-5.0, -2.0, CURVE_POINTS // 2)
    return sorted({*np.linspace(0.0, 1.0, CURVE_POINTS).tolist(), *top.tolist()})


#: the top shares of customers (%) whose share of the CLV the concentration chart marks
CURVE_TOPS = (5, 20, 50)
#: edges of the histogram of the positive CLVs, on a log axis from the 0.1% quantile to just past the largest
HISTOGRAM_BINS = 30
#: the at-risk list's columns in the report, where the table has them: the lead, the churn-risk column, the tail
AT_RISK_LEAD = ("customer_id", "tier", "clv", "frequency", "first_purchase", "last_purchase")
AT_RISK_TAIL = ("days_since_last_purchase", "expected_spend")


@dataclass(frozen=True)
class GroupFigures:
    """One segment's figures: its customers, their total CLV, their mean churn risk (None without the column)
    and the share who bought in the holdout (None without a holdout)."""

    customers: int
    clv: float
    p_purchase: float | None
    bought: float | None


@dataclass(frozen=True)
class ClvShape:
    """The CLV distribution chart's figures. `edges` / `counts`: the histogram of the positive CLVs (each clipped
    at the first edge) on log-spaced bins, empty without a positive CLV. `curve`: points (% of customers, % of
    total CLV) of the concentration curve, highest CLV first, from (0, 0) to (100, 100); `tops`: the share of
    the CLV held by the top 5 / 20 / 50% of customers (CURVE_TOPS), as (% of customers, % of CLV); both empty
    when the total CLV is not positive. Negative CLVs count as 0 in the curve."""

    edges: FloatArray
    counts: NDArray[np.int64]
    curve: FloatArray
    tops: dict[int, tuple[float, float]]


@dataclass(frozen=True)
class CustomerDigest:
    """The customer table's figures the reports read (see the module docstring)."""

    customers: int
    columns: tuple[str, ...]
    churn: str | None
    total_clv: float
    total_residual_clv: float | None
    expected_purchases: float
    mean_p_alive: float
    mean_churn: float | None
    segments: dict[str, GroupFigures]
    rfm_segments: dict[str, GroupFigures] | None
    rfm_by_segment: pd.DataFrame | None
    T_p90: float
    frequency_p99: float
    at_risk_customers: int
    at_risk_top: pd.DataFrame
    holdout_by_frequency: pd.DataFrame | None
    clv_shape: ClvShape

    def segment_counts(self) -> dict[str, int]:
        """Customers per segment, the largest first (ties by name)."""
        return {name: figures.customers for name, figures in self.segments.items()}


def churn_of(columns: list[str]) -> str | None:
    """The churn-risk column of a customer table (`p_purchase_next_13w`, not its interval columns), or None."""
    return next((c for c in columns if c.startswith("p_purchase_next_") and not c.endswith(("_lo", "_hi"))), None)


def digest_customers(customers: pd.DataFrame, churn: str | None = None) -> CustomerDigest:
    """The digest of a customer table (one row per customer, highest CLV first, ties by id: `clv.pipeline`'s
    order); `churn` names its churn-risk column (found by its name when not given)."""
    columns = [str(c) for c in customers.columns]
    churn = churn if churn is not None else churn_of(columns)
    churn = churn if churn in customers else None
    clv = customers["clv"].to_numpy(dtype=float)
    slipping = customers[customers["segment"] == AT_RISK]
    lead = [*AT_RISK_LEAD, *([churn] if churn else []), *AT_RISK_TAIL]
    holdout = None
    if "expected_purchases_holdout" in customers and "frequency_holdout" in customers:
        holdout = by_frequency(
            customers["frequency"].to_numpy(dtype=float),
            customers["expected_purchases_holdout"].to_numpy(dtype=float),
            customers["frequency_holdout"].to_numpy(dtype=float),
        )
    rfm = "rfm_segment" in customers
    return CustomerDigest(
        customers=len(customers),
        columns=tuple(columns),
        churn=churn,
        total_clv=float(clv.sum()),
        total_residual_clv=float(customers["residual_clv"].sum()) if "residual_clv" in customers else None,
        expected_purchases=float(customers["expected_purchases"].sum()),
        mean_p_alive=float(customers["p_alive"].mean()) if len(customers) else float("nan"),
        mean_churn=float(customers[churn].mean()) if churn and len(customers) else None,
        segments=_groups(customers, "segment", churn),
        rfm_segments=_groups(customers, "rfm_segment", churn) if rfm else None,
        rfm_by_segment=_crossed(customers) if rfm else None,
        T_p90=float(np.quantile(customers["T"].to_numpy(dtype=float), 0.9)) if len(customers) else 0.0,
        frequency_p99=float(np.quantile(customers["frequency"].to_numpy(dtype=float), 0.99)) if len(customers) else 0.0,
        at_risk_customers=len(slipping),
        at_risk_top=slipping[[c for c in lead if c in slipping]].head(AT_RISK_ROWS).reset_index(drop=True),
        holdout_by_frequency=holdout,
        clv_shape=clv_shape(clv),
    )


def _groups(customers: pd.DataFrame, by: str, churn: str | None) -> dict[str, GroupFigures]:
    """Per value of `by`, the largest group first (ties by name): its figures."""
    names, group = np.unique(customers[by].astype(str).to_numpy(), return_inverse=True)
    sizes = np.bincount(group, minlength=names.size)

    def sums(column: str) -> FloatArray:
        weights = customers[column].to_numpy(dtype=float)
        return np.asarray(np.bincount(group, weights=weights, minlength=names.size), dtype=float)

    clv = sums("clv")
    p = sums(churn) / np.maximum(sizes, 1) if churn else None
    bought = None
    if "frequency_holdout" in customers:
        buyers = (customers["frequency_holdout"].to_numpy(dtype=float) > 0).astype(float)
        bought = np.bincount(group, weights=buyers, minlength=names.size) / np.maximum(sizes, 1)
    order = sorted(range(names.size), key=lambda k: (-int(sizes[k]), str(names[k])))
    return {
        str(names[k]): GroupFigures(
            customers=int(sizes[k]),
            clv=float(clv[k]),
            p_purchase=None if p is None else float(p[k]),
            bought=None if bought is None else float(bought[k]),
        )
        for k in order
    }


def _crossed(customers: pd.DataFrame) -> pd.DataFrame:
    """Customers by RFM segment (rows) and churn-risk segment (columns, by name)."""
    table = pd.crosstab(customers["rfm_segment"].astype(str), customers["segment"].astype(str))
    table.index.name = "rfm_segment"
    table.columns.name = "segment"
    return table


def histogram_edges(low: float, top: float) -> FloatArray:
    """The CLV histogram's log-spaced edges from `low` (the first edge exactly: every CLV clipped to it is
    counted) to just past the largest CLV `top`."""
    edges = np.logspace(np.log10(low), np.log10(top * 1.001), HISTOGRAM_BINS)
    edges[0] = low  # logspace may land one ulp above it, and np.histogram would then drop the clipped values
    return edges


def clv_shape(clv: FloatArray) -> ClvShape:
    """The histogram and the concentration curve of the CLVs (see ClvShape)."""
    positive = clv[clv > 0]
    if positive.size:
        low = max(float(np.quantile(positive, 0.001)), float(positive.max()) * 1e-6)
        edges = histogram_edges(low, float(positive.max()))
        counts = np.histogram(np.clip(positive, low, None), bins=edges)[0].astype(np.int64)
    else:
        edges, counts = np.zeros(0), np.zeros(0, dtype=np.int64)
    ordered = np.sort(np.maximum(clv, 0.0))[::-1]
    total = float(ordered.sum())
    if not ordered.size or total <= 0:
        return ClvShape(edges, counts, np.zeros((0, 2)), {})
    n = ordered.size
    # the customers above a value are the top ones: each threshold gives an exact point of the curve
    thresholds = np.unique(np.quantile(ordered, curve_probabilities()))
    ascending = ordered[::-1]
    above = n - np.searchsorted(ascending, thresholds, side="right")
    tail = np.concatenate([[0.0], np.cumsum(ordered)])  # tail[k]: the sum of the k largest
    points = np.column_stack([100.0 * above / n, 100.0 * tail[above] / total])
    curve = np.vstack([[0.0, 0.0], points[::-1], [100.0, 100.0]])
    curve = curve[np.r_[True, np.any(np.diff(curve, axis=0) != 0, axis=1)]]
    tops = {}
    for top in CURVE_TOPS:
        k = max(1, round(n * top / 100))
        tops[top] = (100.0 * k / n, 100.0 * float(tail[k]) / total)
    return ClvShape(edges, counts, curve, tops)
