"""Customer value: discounted CLV over a horizon, a monthly revenue schedule, and residual lifetime value.

All amounts are in the currency of the transactions, discounted to the calibration end. Time is in the run's
unit; the annual discount rate becomes a continuous rate per unit in `clv.units`, the one place where units
convert. With the calibration end's date the future months are calendar months (`clv.units.calendar_months`:
a calibration end inside a month makes the first one partial, a horizon ending inside a month the last);
without it, months of mean length (365.2425 / 12 days) from time 0. Expected purchases in each future month
are exact differences of the conditional expectation E[X(T, T + t)]. Each month's purchases are discounted
continuously: integrating by parts,
int_a^b e^(-delta t) dE(t) = e^(-delta b) E(b) - e^(-delta a) E(a) + delta int_a^b e^(-delta t) E(t) dt, and the last
integral is Simpson's rule on E at the month's start, middle and end (error of order delta h^5 E^(4) / 2880).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.compress import unique_histories
from clv.errors import ClvError
from clv.model import check_finite_frame
from clv.purchase.base import PurchaseModel
from clv.spend.gamma_gamma import GammaGammaModel
from clv.units import (
    TimeUnit,
    calendar_months,
    continuous_rate_per_unit,
    days_to_units,
    units_per_month,
    units_to_days,
)

__all__ = [
    "VALUE_UNITS",
    "ValueResult",
    "column_units",
    "discounted_increments",
    "forecast_months",
    "month_edges",
    "schedule_columns",
    "value_customers",
]

FloatArray = NDArray[np.float64]

#: what each output column measures, for data with amounts (`column_units` adapts it to a run)
VALUE_UNITS: dict[str, str] = {
    "first_purchase": "date (ISO) of the first purchase",
    "last_purchase": "date (ISO) of the last purchase up to the calibration end",
    "days_since_last_purchase": "days from the last purchase to the calibration end (T - recency, in days)",
    "frequency": "repeat purchases (purchase days after the first) up to the calibration end",
    "recency": "time from the first purchase to the last purchase (BTYD's recency; 0 for one-time buyers)",
    "T": "time from the first purchase to the calibration end",
    "p_alive": "probability the customer has not left by the calibration end (model-based)",
    "p_churn": "probability the customer has left by the calibration end (1 - p_alive)",
    "expected_purchases": "purchases over the horizon",
    "expected_spend": "currency per purchase",
    "clv": "currency, discounted to the calibration end, times margin, over the horizon",
    "residual_clv": "currency, discounted to the calibration end, times margin, no horizon",
    "segment": "the forecast's view: value tier (high value = the top tiers) x churn risk (the chance of a purchase "
    "in the churn window): active, slipping away, lapsing",
    "rfm_segment": "the RFM view of the past: recency and frequency quintile scores named (champions ... "
    "hibernating); it describes past behaviour and may differ from segment, the forecast (not in at_risk.csv)",
}


def column_units(
    has_spend: bool, unit: str, currency: str | None = None, churn: tuple[str, float] | None = None
) -> dict[str, str]:
    """What each output column measures in this run: times in `unit`; money in `currency` (or "the data's
    currency" when it is not known); without amounts, CLV in discounted expected purchases and no money column;
    `churn` is the churn-risk column and its window in `unit` (e.g. ("p_purchase_next_13w", 13.0))."""
    money = currency or "currency of the data"
    words = {"W": "weeks", "D": "days"}.get(unit, unit)
    units = {k: v.replace("currency", money, 1) if v.startswith("currency") else v for k, v in VALUE_UNITS.items()}
    for key in ("recency", "T"):
        units[key] += f", in {words}"
    if not has_spend:
        del units["expected_spend"]
        units["clv"] = "purchases, discounted to the calibration end, over the horizon (no amounts: not money)"
        units["residual_clv"] = "purchases, discounted to the calibration end, no horizon (no amounts: not money)"
    if churn is not None:
        name, window = churn
        units[name] = f"probability of at least one purchase in the {window:g} {words} after the calibration end"
    return units


@dataclass
class ValueResult:
    """Per-customer predictions and value, and the monthly totals; the per-customer monthly schedule is built
    on request (`schedule()`), since it is customers x months, from each unique history's expected purchases
    per month (`per_month_unique`, customer i's history is `inverse[i]`) and the customers' spend; with each
    history's discounted purchases per month (`discounted_unique`) the monthly totals can be summed anew over
    any subset of customers (`clv.spark.score` sums them per partition)."""

    customers: pd.DataFrame
    forecast: pd.DataFrame
    per_month_unique: FloatArray
    inverse: NDArray[np.intp]
    spend: FloatArray | None
    discounted_unique: FloatArray

    def schedule(self) -> pd.DataFrame:
        """Expected revenue (purchases, without amounts) per customer and future month, a column per month
        (`1997-10`, ...; `month_1`, ... without dates)."""
        values = self.per_month_unique[self.inverse]
        if self.spend is not None:
            values = values * self.spend[:, None]
        frame = pd.DataFrame(values, columns=schedule_columns(self.forecast))
        frame.insert(0, "customer_id", self.customers["customer_id"].to_numpy())
        return frame


def schedule_columns(forecast: pd.DataFrame) -> list[str]:
    """The revenue schedule's month columns: the forecast's month labels (`1997-10`), or `month_1`, ... when the
    months are numbered (no calibration end date)."""
    return [label if isinstance(label, str) else f"month_{label}" for label in forecast["month"].tolist()]


def forecast_months(horizon: float, unit: TimeUnit, calibration_end: dt.date | None = None) -> pd.DataFrame:
    """The future months of a forecast over `horizon` (in time units from the calibration end): `month`,
    `start` and `end` (edges in time units, the month covers (start, end]), `days` and `partial`; with the
    calibration end's date, calendar months labelled `YYYY-MM` with `start_date` and `end_date` (inclusive ISO
    dates); without it, months of mean length numbered 1, 2, ... (the last may be partial)."""
    if not (horizon > 0 and math.isfinite(horizon)):
        raise ClvError(f"prediction.horizon must be > 0, got {horizon!r}")
    if calibration_end is None:
        per_month = units_per_month(unit)
        count = max(1, math.ceil(horizon / per_month - 1e-9))
        edges = np.minimum(np.arange(count + 1) * per_month, horizon)
        days = np.array([units_to_days(b - a, unit) for a, b in pairwise(edges)])
        return pd.DataFrame(
            {
                "month": np.arange(1, count + 1),
                "start": edges[:-1],
                "end": edges[1:],
                "days": days,
                "partial": days < units_to_days(per_month, unit) - 1e-6,
            }
        )
    months = calendar_months(calibration_end, units_to_days(horizon, unit))
    end = np.array([days_to_units(m.end_day, unit) for m in months])
    end[-1] = horizon  # exactly, whatever the round trip through days
    return pd.DataFrame(
        {
            "month": [m.label for m in months],
            "start_date": [m.first.isoformat() for m in months],
            "end_date": [m.last.isoformat() for m in months],
            "start": np.concatenate([[0.0], end[:-1]]),
            "end": end,
            "days": [m.days for m in months],
            "partial": [m.partial for m in months],
        }
    )


def month_edges(horizon: float, unit: TimeUnit, calibration_end: dt.date | None = None) -> FloatArray:
    """Edges (in time units, from 0 to horizon) of the future months (`forecast_months`): calendar months with
    the calibration end's date, months of mean length without it."""
    return _edges(forecast_months(horizon, unit, calibration_end))


def _edges(months: pd.DataFrame) -> FloatArray:
    return np.append(months["start"].to_numpy(dtype=float), float(months["end"].iloc[-1]))


def value_customers(
    purchase: PurchaseModel,
    spend: GammaGammaModel | None,
    rfm: pd.DataFrame,
    horizon: float,
    annual_discount_rate: float,
    margin: float,
    unit: TimeUnit,
    residual: bool = True,
    calibration_end: dt.date | None = None,
) -> ValueResult:
    """Predict and value every customer of `rfm`, computing on unique histories and expanding; `horizon` is in
    `unit`, from the calibration end, whose date (`calibration_end`) makes the forecast's months calendar months.

    Without a spend model (data without amounts) the revenue columns are left out and the value is in
    purchases: clv is then the discounted expected number of purchases. `residual=False` skips residual_clv
    (the discounted value with no horizon), the costliest column for the BG family.
    """
    months = forecast_months(horizon, unit, calibration_end)
    unique, inverse, customers_per_row = unique_histories(rfm, purchase.covariate_columns)
    delta = continuous_rate_per_unit(annual_discount_rate, unit)
    edges = _edges(months)
    points = np.concatenate([edges, (edges[:-1] + edges[1:]) / 2.0])
    values = purchase.expected_purchases_curve(unique, points)
    cumulative, middle = values[:, : edges.size], values[:, edges.size :]
    per_month = np.diff(cumulative, axis=1)  # per unique history
    discounted = discounted_increments(cumulative, middle, edges, delta)
    out = pd.DataFrame({"customer_id": rfm["customer_id"].to_numpy() if "customer_id" in rfm else np.arange(len(rfm))})
    p_alive = purchase.probability_alive(unique)[inverse]
    out["p_alive"] = p_alive
    out["p_churn"] = 1.0 - p_alive
    out["expected_purchases"] = cumulative[inverse, -1]
    dert = purchase.expected_residual_purchases(unique, delta)[inverse] if residual else None
    forecast = months.assign(expected_purchases=customers_per_row @ per_month)
    m: FloatArray | None = None
    if spend is not None:
        m = spend.expected_spend(rfm)
        out["expected_spend"] = m
        out["spend_is_population_mean"] = spend.spend_is_population_mean(rfm)
        out["clv"] = margin * m * discounted.sum(axis=1)[inverse]
        if dert is not None:
            out["residual_clv"] = margin * m * dert
        spend_per_row = np.bincount(inverse, weights=m, minlength=len(unique))
        forecast["expected_revenue"] = spend_per_row @ per_month
        forecast["discounted_profit"] = margin * (spend_per_row @ discounted)
    else:
        out["clv"] = discounted.sum(axis=1)[inverse]
        if dert is not None:
            out["residual_clv"] = dert
        forecast["discounted_purchases"] = customers_per_row @ discounted
    check_finite_frame(out, "a value output")
    return ValueResult(
        out, forecast, per_month_unique=per_month, inverse=inverse, spend=m, discounted_unique=discounted
    )


def discounted_increments(cumulative: FloatArray, middle: FloatArray, edges: FloatArray, delta: float) -> FloatArray:
    """int over each month of e^(-delta t) dE(t), by parts and Simpson's rule (see the module docstring); the
    months are the last axis (leading axes, e.g. draws x histories, broadcast)."""
    a, b = edges[:-1], edges[1:]
    w_a, w_m, w_b = np.exp(-delta * a), np.exp(-delta * (a + b) / 2.0), np.exp(-delta * b)
    # w_b e_b - w_a e_a + delta (b - a) / 6 (w_a e_a + 4 w_m E_mid + w_b e_b), as one weight per month and term:
    # three passes over the (draws x histories x months) arrays instead of ten
    k = delta * (b - a) / 6.0
    return cumulative[..., 1:] * (w_b * (1.0 + k)) - cumulative[..., :-1] * (w_a * (1.0 - k)) + middle * (4.0 * k * w_m)
