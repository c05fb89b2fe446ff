"""The customer digest (clv.digest): the reports' figures of the customer table, checked against the table
itself computed another way (pandas groupby, a full sort and cumulative sum)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.digest import AT_RISK_ROWS, CURVE_TOPS, clv_shape, digest_customers
from clv.tiers import AT_RISK, SEGMENTS


def _table(n: int = 5_000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    clv = np.round(rng.lognormal(3.0, 1.2, n), 2)
    clv[rng.random(n) < 0.02] = 0.0  # some customers worth nothing
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{k:05d}" for k in range(n)],
            "frequency": rng.poisson(1.5, n).astype(float),
            "T": rng.integers(1, 80, n).astype(float),
            "p_alive": rng.random(n),
            "p_purchase_next_13w": rng.random(n),
            "p_purchase_next_13w_lo": rng.random(n) * 0.5,
            "expected_purchases": rng.gamma(1.0, 1.0, n),
            "expected_purchases_holdout": rng.gamma(1.0, 1.0, n),
            "frequency_holdout": rng.poisson(0.8, n).astype(float),
            "clv": clv,
            "residual_clv": clv * 1.5,
            "tier": rng.choice(["A", "B", "C"], n),
            "segment": rng.choice(list(SEGMENTS), n, p=[0.1, 0.2, 0.3, 0.4]),
            "rfm_segment": rng.choice(["champions", "hibernating", "at risk", "other"], n),
        }
    )
    return frame.sort_values(["clv", "customer_id"], ascending=[False, True]).reset_index(drop=True)


def test_group_figures_match_a_groupby() -> None:
    table = _table()
    digest = digest_customers(table)
    assert digest.churn == "p_purchase_next_13w" and digest.customers == len(table)
    grouped = table.groupby("segment")
    for name, figures in digest.segments.items():
        part = grouped.get_group(name)
        assert figures.customers == len(part)
        assert figures.clv == pytest.approx(part["clv"].sum(), rel=1e-12)
        assert figures.p_purchase == pytest.approx(part["p_purchase_next_13w"].mean(), rel=1e-12)
        assert figures.bought == pytest.approx((part["frequency_holdout"] > 0).mean(), rel=1e-12)
    sizes = [f.customers for f in digest.segments.values()]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(table)
    assert digest.segment_counts() == table["segment"].value_counts().to_dict()
    assert digest.rfm_segments is not None and digest.rfm_by_segment is not None
    assert digest.rfm_by_segment.to_numpy().sum() == len(table)
    assert (
        digest.rfm_by_segment.loc["champions", AT_RISK]
        == ((table["rfm_segment"] == "champions") & (table["segment"] == AT_RISK)).sum()
    )


def test_totals_quantiles_and_at_risk_rows() -> None:
    table = _table()
    digest = digest_customers(table)
    assert digest.total_clv == pytest.approx(table["clv"].sum(), rel=1e-12)
    assert digest.total_residual_clv == pytest.approx(table["residual_clv"].sum(), rel=1e-12)
    assert digest.mean_churn == pytest.approx(table["p_purchase_next_13w"].mean(), rel=1e-12)
    assert digest.T_p90 == np.percentile(table["T"], 90)
    assert digest.frequency_p99 == np.percentile(table["frequency"], 99)
    slipping = table[table["segment"] == AT_RISK]
    assert digest.at_risk_customers == len(slipping)
    assert digest.at_risk_top["customer_id"].tolist() == slipping["customer_id"].head(AT_RISK_ROWS).tolist()
    assert "p_purchase_next_13w" in digest.at_risk_top and "p_purchase_next_13w_lo" not in digest.at_risk_top
    assert digest.holdout_by_frequency is not None
    assert digest.holdout_by_frequency["customers"].sum() == len(table)


def test_without_holdout_rfm_or_churn_column() -> None:
    table = _table().drop(columns=["frequency_holdout", "expected_purchases_holdout", "rfm_segment"])
    table = table.drop(columns=["p_purchase_next_13w", "p_purchase_next_13w_lo"])
    digest = digest_customers(table)
    assert digest.churn is None and digest.mean_churn is None and digest.holdout_by_frequency is None
    assert digest.rfm_segments is None and digest.rfm_by_segment is None
    assert all(f.p_purchase is None and f.bought is None for f in digest.segments.values())


def test_concentration_curve_points_lie_on_the_full_curve() -> None:
    clv = _table()["clv"].to_numpy().copy()
    clv[:10] = -1.0  # negative CLVs count as 0
    shape = clv_shape(clv)
    ordered = np.sort(np.maximum(clv, 0.0))[::-1]
    x_full = np.r_[0.0, 100.0 * np.arange(1, ordered.size + 1) / ordered.size]
    y_full = np.r_[0.0, 100.0 * np.cumsum(ordered) / ordered.sum()]
    assert shape.curve[0].tolist() == [0.0, 0.0] and shape.curve[-1].tolist() == [100.0, 100.0]
    assert np.all(np.diff(shape.curve[:, 0]) >= 0) and len(shape.curve) > 50
    np.testing.assert_allclose(np.interp(shape.curve[:, 0], x_full, y_full), shape.curve[:, 1], atol=1e-9)
    for top in CURVE_TOPS:
        k = max(1, round(ordered.size * top / 100))
        assert shape.tops[top] == pytest.approx((x_full[k], y_full[k]), rel=1e-12)
    positive = clv[clv > 0]
    assert shape.counts.sum() == positive.size and shape.edges.size == shape.counts.size + 1
    assert shape.edges[-1] > positive.max() and shape.edges[0] == pytest.approx(np.quantile(positive, 0.001))


def test_no_positive_value_gives_an_empty_chart() -> None:
    shape = clv_shape(np.zeros(10))
    assert shape.counts.size == 0 and shape.curve.size == 0 and shape.tops == {}
