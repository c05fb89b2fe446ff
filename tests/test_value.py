"""Discounting, the monthly revenue schedule, and CLV."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from clv.data.datasets import dataset_path
from clv.errors import UsageError
from clv.units import (
    DAYS_PER_YEAR,
    continuous_rate_per_unit,
    days_per_unit,
    months_to_units,
    units_per_month,
    units_per_year,
)
from clv.value import forecast_months, month_edges, value_customers

BG = BetaGeoModel.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
GG = GammaGammaModel.from_params(p=6.25, q=3.74, v=15.44)


def test_unit_conversions():
    assert units_per_year("W") == pytest.approx(DAYS_PER_YEAR / 7)
    assert units_per_month("D") == pytest.approx(DAYS_PER_YEAR / 12)
    assert months_to_units(12, "W") == pytest.approx(units_per_year("W"))
    # one year of continuous discounting equals the annual effective rate
    for unit in ("D", "W"):
        delta = continuous_rate_per_unit(0.10, unit)
        assert math.exp(-delta * units_per_year(unit)) == pytest.approx(1 / 1.10, rel=1e-14)
    with pytest.raises(ValueError):
        continuous_rate_per_unit(-1.5, "W")


def test_bad_arguments_are_usage_errors_and_value_errors():
    for bad in (lambda: continuous_rate_per_unit(-1.5, "W"), lambda: days_per_unit("M"), lambda: dataset_path("x")):
        with pytest.raises(UsageError) as caught:
            bad()
        assert isinstance(caught.value, ValueError) and caught.value.exit_code == 2


def test_month_edges_cover_the_horizon():
    edges = month_edges(52.0, "W")
    assert edges[0] == 0 and edges[-1] == 52.0
    assert len(edges) == 13  # 12 whole months and a partial one (52 weeks is 11.96 months)
    assert np.all(np.diff(edges) > 0)


def test_calendar_month_edges_from_the_calibration_end():
    """12 calendar months from 1997-09-30 are October to September, 365 days; each edge is the offset of a
    month's last day, in weeks."""
    edges = month_edges(365 / 7, "W", dt.date(1997, 9, 30))
    assert len(edges) == 13 and edges[0] == 0 and edges[-1] == 365 / 7
    np.testing.assert_allclose(edges[1:3] * 7, [31, 61])
    months = forecast_months(52.0, "W", dt.date(1997, 9, 15))
    assert months["month"].iloc[0] == "1997-09" and months["days"].iloc[0] == 15 and months["partial"].iloc[0]
    assert months["end_date"].iloc[-1] == "1998-09-14" and months["partial"].iloc[-1]
    assert months["days"].sum() == 364


def test_calendar_months_change_the_schedule_not_the_horizon(cdnow_rfm):
    """The same horizon cut into calendar months or mean months: the same expected purchases per customer, CLV
    equal to the discounting quadrature's error, the schedule's columns named by month."""
    mean = value_customers(BG, GG, cdnow_rfm, 52.0, 0.10, 1.0, "W")
    dated = value_customers(BG, GG, cdnow_rfm, 52.0, 0.10, 1.0, "W", calibration_end=dt.date(1997, 9, 15))
    np.testing.assert_allclose(dated.customers["expected_purchases"], mean.customers["expected_purchases"], rtol=1e-12)
    np.testing.assert_allclose(dated.customers["clv"], mean.customers["clv"], rtol=1e-7)
    schedule = dated.schedule()
    assert list(schedule.columns[:3]) == ["customer_id", "1997-09", "1997-10"] and schedule.columns[-1] == "1998-09"
    assert list(mean.schedule().columns[1:3]) == ["month_1", "month_2"]
    assert dated.forecast["expected_revenue"].sum() == pytest.approx(schedule.iloc[:, 1:].to_numpy().sum())


def test_schedule_sums_to_expected_purchases_and_clv(cdnow_rfm):
    result = value_customers(BG, GG, cdnow_rfm, 52.0, 0.10, 0.3, "W")
    c = result.customers
    np.testing.assert_allclose(c["expected_purchases"], BG.expected_purchases(cdnow_rfm, 52.0), rtol=1e-12)
    revenue = result.schedule().drop(columns="customer_id").to_numpy()
    spend = GG.expected_spend(cdnow_rfm)
    np.testing.assert_allclose(revenue.sum(axis=1), c["expected_purchases"] * spend, rtol=1e-10)
    assert result.forecast["expected_revenue"].sum() == pytest.approx(revenue.sum(), rel=1e-12)
    undiscounted = 0.3 * revenue.sum(axis=1)
    assert np.all(c["clv"] <= undiscounted + 1e-12)
    assert np.all(c["clv"] >= undiscounted / 1.10 - 1e-12)  # discounting over one year costs at most 10%
    np.testing.assert_allclose(c["p_churn"], 1 - c["p_alive"])


def test_clv_against_a_fine_continuous_integral():
    """margin * spend * integral of e^(-delta t) dE(t), by a 4,000-step midpoint sum (error ~1e-9)."""
    rfm = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "frequency": [2, 0],
            "recency": [30.43, 0.0],
            "T": [38.86, 38.86],
            "monetary_value": [22.345, 0.0],
        }
    )
    result = value_customers(BG, GG, rfm, 52.0, 0.10, 1.0, "W")
    delta = continuous_rate_per_unit(0.10, "W")
    grid = np.linspace(0, 52.0, 4001)
    cumulative = np.stack([BG.expected_purchases(rfm, t) for t in grid], axis=1)
    mid = (grid[1:] + grid[:-1]) / 2
    exact = (np.diff(cumulative, axis=1) * np.exp(-delta * mid)).sum(axis=1) * GG.expected_spend(rfm)
    np.testing.assert_allclose(result.customers["clv"], exact, rtol=1e-8)


def test_residual_value_exceeds_horizon_value(cdnow_rfm):
    result = value_customers(
        ParetoNBDModel.from_params(r=0.553, alpha=10.578, s=0.606, beta=11.669),
        GG,
        cdnow_rfm,
        52.0,
        0.1,
        1.0,
        "W",
    )
    assert np.all(result.customers["residual_clv"] >= result.customers["clv"] - 1e-9)


def test_population_mean_spend_is_labelled(cdnow_rfm):
    c = value_customers(BG, GG, cdnow_rfm, 52.0, 0.1, 1.0, "W").customers
    flagged = c["spend_is_population_mean"].to_numpy()
    assert flagged.sum() == (cdnow_rfm["frequency"] == 0).sum()
    np.testing.assert_allclose(c.loc[flagged, "expected_spend"], GG.population_mean_spend())


def test_without_amounts_value_is_in_purchases(cdnow_rfm):
    rfm = cdnow_rfm.drop(columns=["monetary_value"])
    result = value_customers(BG, None, rfm, 52.0, 0.1, 1.0, "W")
    assert "expected_spend" not in result.customers
    assert "expected_revenue" not in result.forecast
    assert np.all(result.customers["clv"] <= result.customers["expected_purchases"] + 1e-12)


@pytest.mark.parametrize(
    "model",
    [BG, ParetoNBDModel.from_params(r=0.553, alpha=10.578, s=0.606, beta=11.669)],
)
def test_curve_equals_pointwise_expectations(model, cdnow_rfm):
    horizons = np.array([0.0, 1.0, 4.35, 26.0, 52.0])
    curve = model.expected_purchases_curve(cdnow_rfm, horizons)
    pointwise = np.stack([model.expected_purchases(cdnow_rfm, h) for h in horizons], axis=1)
    np.testing.assert_allclose(curve, pointwise, rtol=1e-12, atol=1e-300)
