"""A model's repeat purchases week by week, to lay over the actual ones (`clv.data.tracking`).

Two curves, as in Fader, Hardie & Lee (2005, "Counting Your Customers the Easy Way", Figs. 2-3):
- unconditional: the cohort's expected cumulative repeat purchases by the end of week k, sum over customers of
  E[X(t_k - s_i)] with s_i the customer's first purchase day and E[X(t)] the new-customer expectation (BG/NBD:
  Eq. (7)); over the calibration this is how well the model describes the data it was fitted to;
- conditional: from the calibration end, the actual cumulative count there plus each customer's conditional
  expectation E[X(t_k - T_end) | x, t_x, T] (BG/NBD: Eq. (10)): the holdout forecast itself.
Day offsets become model time in the run's unit (`clv.units.days_per_unit`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.compress import unique_histories
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
    the work grows with the number of distinct first days). A model with covariates needs the customers (`rfm`):
    each covariate pattern's customers, grouped by first day (calibration_end - T), at that pattern's
    parameters."""
    if model.covariates_ is None:
        return _cohort_curve(model, tracking, tracking.first_day, tracking.first_day_customers.astype(float), unit)
    if rfm is None:
        raise ValueError("a model with covariates needs the customers' frame for its tracking curve")
    per_unit = days_per_unit(unit)
    first = tracking.calibration_end - np.rint(rfm["T"].to_numpy(dtype=float) * per_unit).astype(np.int64)
    P = model.row_params(rfm)
    total = np.zeros(tracking.week_end.size)
    for rows in pattern_groups(P):
        days, counts = np.unique(first[rows], return_counts=True)
        total += _cohort_curve(model.pattern_model(P[rows[0]]), tracking, days, counts.astype(float), unit)
    return total


def _cohort_curve(
    model: PurchaseModel, tracking: RepeatTracking, first_day: NDArray[np.int64], customers: FloatArray, unit: TimeUnit
) -> FloatArray:
    elapsed = (tracking.week_end[None, :] - first_day[:, None]) / days_per_unit(unit)
    values = np.zeros(elapsed.shape)
    started = elapsed > 0
    if started.any():
        values[started] = model.expected_purchases_new_customer(elapsed[started])
    return np.asarray(customers @ values, dtype=float)


def conditional_cumulative(
    model: PurchaseModel, rfm: pd.DataFrame, tracking: RepeatTracking, unit: TimeUnit
) -> tuple[NDArray[np.intp], FloatArray]:
    """The holdout forecast as a cumulative curve: the weeks ending after the calibration end and, at each, the
    actual repeat purchases to the calibration end plus the sum of conditional expectations since."""
    weeks = np.flatnonzero(tracking.week_end > tracking.calibration_end)
    horizons = (tracking.week_end[weeks] - tracking.calibration_end) / days_per_unit(unit)
    unique, _, counts = unique_histories(rfm, model.covariate_columns)
    total = np.zeros(horizons.size)
    for start in range(0, len(unique), _BLOCK):
        block = unique.iloc[start : start + _BLOCK]
        total += counts[start : start + _BLOCK] @ model.expected_purchases_curve(block, horizons)
    return weeks, float(rfm["frequency"].sum()) + total
