"""Value tiers, segments, RFM scores and migration, on hand-made examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from clv.config import TiersConfig
from clv.errors import DataError
from clv.tiers import (
    SEGMENTS,
    UNIDENTIFIED_SEGMENTS,
    assign_tiers,
    churn_column,
    churn_window,
    migration_table,
    rfm_scores,
    segments,
    tier_table,
)


def test_share_tiers_cut_at_the_rounded_shares():
    clv = np.arange(100, dtype=float)[::-1]  # customer 0 has the highest CLV
    tiers = assign_tiers(clv, TiersConfig())
    assert np.bincount(tiers).tolist() == [5, 15, 30, 50]
    assert tiers[:5].tolist() == [0] * 5 and tiers[5] == 1 and tiers[-1] == 3


def test_ties_are_broken_by_id_order():
    clv = np.array([5.0, 5.0, 5.0, 1.0])
    config = TiersConfig(levels=[{"label": "a", "share": 0.25}, {"label": "b", "share": 0.75}])
    assert assign_tiers(clv, config, np.array([3, 1, 2, 4])).tolist() == [1, 0, 1, 1]


def test_threshold_tiers():
    config = TiersConfig(
        levels=[{"label": "gold", "min_clv": 100}, {"label": "silver", "min_clv": 10}, {"label": "rest"}]
    )
    tiers = assign_tiers(np.array([150.0, 100.0, 99.9, 10.0, 0.0]), config)
    assert tiers.tolist() == [0, 0, 1, 1, 2]


def test_min_size_is_enforced_with_the_tier_named():
    config = TiersConfig(min_size=10)
    with pytest.raises(DataError, match=r"top 5% \(5\)"):
        assign_tiers(np.arange(100, dtype=float), config)


@pytest.mark.parametrize(
    "levels",
    [
        [{"label": "a", "share": 0.5}, {"label": "b", "share": 0.2}],  # shares do not add up
        [{"label": "a", "min_clv": 10}, {"label": "b", "min_clv": 50}, {"label": "c"}],  # thresholds increase
        [{"label": "a", "share": 0.5}, {"label": "b", "min_clv": 5}],  # a mix
        [{"label": "a", "share": 0.5}, {"label": "a", "share": 0.5}],  # duplicate labels
    ],
)
def test_bad_tier_configs_are_refused(levels):
    with pytest.raises(ValidationError):
        TiersConfig(levels=levels)


def test_segments_cross_value_and_churn_risk():
    tiers = np.array([0, 1, 2, 3, 0, 1])
    p_purchase = np.array([0.9, 0.2, 0.9, 0.1, 0.3, 0.29])  # the threshold (0.3) itself is active
    got = segments(tiers, p_purchase, TiersConfig())
    assert got.tolist() == [SEGMENTS[0], SEGMENTS[1], SEGMENTS[2], SEGMENTS[3], SEGMENTS[0], SEGMENTS[1]]


def test_segments_without_identified_dropout_are_by_value_only():
    got = segments(np.array([0, 3]), np.array([0.01, 0.99]), TiersConfig(), churn_identified=False)
    assert got.tolist() == list(UNIDENTIFIED_SEGMENTS)


def test_the_old_p_alive_threshold_is_refused_with_its_replacement_named():
    with pytest.raises(ValidationError, match=r"replaced by tiers\.at_risk_p_purchase"):
        TiersConfig(at_risk_p_alive=0.5)


@pytest.mark.parametrize(
    ("unit", "window", "name"), [("W", 13.0, "p_purchase_next_13w"), ("D", 91.0, "p_purchase_next_91d")]
)
def test_the_churn_window_defaults_to_13_weeks_in_the_run_unit(unit, window, name):
    assert churn_window(TiersConfig(), unit) == window
    assert churn_column(churn_window(TiersConfig(), unit), unit) == name
    assert churn_column(churn_window(TiersConfig(churn_window="6.5W"), unit), unit) == (
        "p_purchase_next_6_5w" if unit == "W" else "p_purchase_next_45_5d"
    )


def test_the_churn_window_is_a_duration_and_a_bare_number_is_in_the_run_unit():
    from clv.config import parse_config
    from clv.errors import ConfigError

    base = {"name": "x", "data": {"source": "cdnow"}, "time": {"calibration_end": "1997-09-30", "unit": "d"}}
    assert parse_config(base | {"tiers": {"churn_window": 30}}).tiers.churn_window == "30D"
    assert parse_config(base | {"tiers": {"churn_window": "4w"}}).tiers.churn_window == "4W"
    with pytest.raises(ConfigError, match="days or weeks"):
        parse_config(base | {"tiers": {"churn_window": "3M"}})


def test_rfm_scores_by_quintile():
    rfm = pd.DataFrame(
        {
            "frequency": np.arange(10),
            "recency": np.arange(10, dtype=float),
            "T": np.full(10, 20.0),
            "monetary_value": np.arange(10, dtype=float)[::-1],
        }
    )
    rfm.loc[0, "recency"] = 0.0
    scores = rfm_scores(rfm)
    # time since last purchase T - recency falls with the row: the last rows are the most recent
    assert scores["r_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scores["f_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scores["m_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scores["rfm_score"].iloc[-1] == "551"
    assert scores["rfm_segment"].iloc[-1] == "champions"
    assert scores["rfm_segment"].iloc[0] == "hibernating"


def test_rfm_scores_without_amounts_have_no_m():
    rfm = pd.DataFrame({"frequency": np.arange(10), "recency": np.arange(10, dtype=float), "T": np.full(10, 20.0)})
    scores = rfm_scores(rfm)
    assert "m_score" not in scores
    assert scores["rfm_score"].iloc[-1] == "55"  # R and F only: no made-up middle M score


def test_migration_counts_moves_new_and_gone():
    labels = ["high", "low"]
    previous = pd.DataFrame({"customer_id": [1, 2, 3, 4], "tier": ["high", "high", "low", "low"]})
    current = pd.DataFrame({"customer_id": [1, 2, 3, 5], "tier": ["high", "low", "low", "high"]})
    table = migration_table(previous, current, labels)
    assert table.loc["high", "high"] == 1 and table.loc["high", "low"] == 1
    assert table.loc["low", "low"] == 1 and table.loc["low", "(gone)"] == 1
    assert table.loc["(new)", "high"] == 1
    assert int(table.to_numpy().sum()) == 5


def test_tier_table_shares_add_up():
    customers = pd.DataFrame(
        {
            "clv": [10.0, 5.0, 1.0, 0.0],
            "p_alive": [0.9, 0.8, 0.5, 0.1],
            "expected_purchases": [3.0, 2.0, 1.0, 0.0],
            "expected_spend": [4.0, 3.0, 2.0, 1.0],
            "tier": ["a", "b", "b", "b"],
        }
    )
    config = TiersConfig(levels=[{"label": "a", "share": 0.25}, {"label": "b", "share": 0.75}])
    table = tier_table(customers, config)
    assert table["customers"].tolist() == [1, 3]
    assert table["share_of_clv"].tolist() == pytest.approx([10 / 16, 6 / 16])
    assert table.loc[1, "mean_p_alive"] == pytest.approx((0.8 + 0.5 + 0.1) / 3)
