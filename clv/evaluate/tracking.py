"""A model's repeat purchases week by week, to lay over the actual ones (`clv.data.tracking`).

Two curves, as in Fader, Hardie & Lee (2005, "Counting Your Customers the Easy Way", Figs. 2-3):
- unconditional: the cohort's expected cumulative repeat purchases by the end of week k, sum over customers of
  E[X(t_k - s_i)] with s_i the customer's first purchase day and E[X(t)] the new-customer expectation (BG/NBD:
  Eq. (7)); over the calibration this is how well the model describes the data it was fitted to;
- conditional: from the calibration end, the actual cumulative count there plus each customer's conditional
  expectation E[X(t_k - T_end) | x, t_x, T] (BG/NBD: Eq. (10)): the holdout forecast itself.
Day offsets become model time in the run's unit (`clv.units.days_per_unit`). A model with covariates sums the
curves of its covariate patterns, each over its own customers (their first days from T).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.compress import covariate_columns, unique_histories
from clv.covariate_fit import pattern_groups
from clv.data.tracking import RepeatTracking
from clv.purchase.base import PurchaseModel
from clv.units import TimeUnit, days_per_unit

__all__ = ["conditional_cumulative", "unconditional_cumulative"]

FloatArray = NDArray[np.float64]
_BLOCK = 50_000


def unconditional_cumulative(
    model: PurchaseModel, tracking: RepeatTracking, unit: TimeUnit, rfm: pd.DataFrame | None = None
) -> FloatArray:
    """Expected cumulative repeat purchases of the cohort at each week's end (first-day groups, not customers:
    the work grows with the number of distinct first days). A model with covariates needs the cohort's RFM
    frame `rfm` (with its covariate columns): each covariate pattern's customers, by their first day (the
    calibration end less T), under that pattern's parameters."""
    if model.covariates_ is None:
        return _cumulative(model, tracking.first_day, tracking.first_day_customers, tracking.week_end, unit)
    if rfm is None:
        raise ValueError("a model with covariates needs the cohort's RFM frame for its tracking curve")
    P = model.row_params(rfm)
    first = tracking.calibration_end - np.rint(rfm["T"].to_numpy(dtype=float) * days_per_unit(unit)).astype(np.int64)
    total = np.zeros(tracking.week_end.size)
    for rows in pattern_groups(P):
        days, customers = np.unique(first[rows], return_counts=True)
        total += _cumulative(model.pattern_model(P[rows[0]]), days, customers, tracking.week_end, unit)
    return total


def _cumulative(
    model: PurchaseModel,
    first_day: NDArray[np.int64],
    customers: NDArray[np.int64],
    week_end: NDArray[np.int64],
    unit: TimeUnit,
) -> FloatArray:
    """sum over first days of customers x E[X(week end - first day)] at each week's end."""
    elapsed = (week_end[None, :] - first_day[:, None]) / days_per_unit(unit)
    values = np.zeros(elapsed.shape)
    started = elapsed > 0
    if started.any():
        values[started] = model.expected_purchases_new_customer(elapsed[started])
    return np.asarray(customers.astype(float) @ values, dtype=float)


def conditional_cumulative(
    model: PurchaseModel, rfm: pd.DataFrame, tracking: RepeatTracking, unit: TimeUnit
) -> tuple[NDArray[np.intp], FloatArray]:
    """The holdout forecast as a cumulative curve: the weeks ending after the calibration end and, at each, the
    actual repeat purchases to the calibration end plus the sum of conditional expectations since."""
    weeks = np.flatnonzero(tracking.week_end > tracking.calibration_end)
    horizons = (tracking.week_end[weeks] - tracking.calibration_end) / days_per_unit(unit)
    unique, _, counts = unique_histories(rfm, covariate_columns(model))
    total = np.zeros(horizons.size)
    for start in range(0, len(unique), _BLOCK):
        block = unique.iloc[start : start + _BLOCK]
        total += counts[start : start + _BLOCK] @ model.expected_purchases_curve(block, horizons)
    return weeks, float(rfm["frequency"].sum()) + total
