"""The RFM summary reproduces BTYD's cdnowSummary exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.config import DataConfig
from clv.data import load_transactions
from clv.data.datasets import dataset_path

from . import reference_values as ref
from .conftest import SHARED


def test_embedded_data_sets_have_the_published_sizes():
    cohort = pd.read_csv(dataset_path("cdnow"))
    master = pd.read_csv(dataset_path("cdnow_master"))
    assert (len(cohort), cohort["customer_id"].nunique()) == (ref.CDNOW_TRANSACTIONS, ref.CDNOW_CUSTOMERS)
    assert (len(master), master["customer_id"].nunique()) == (
        ref.CDNOW_MASTER_TRANSACTIONS,
        ref.CDNOW_MASTER_CUSTOMERS,
    )


def test_cdnow_counts(cdnow_rfm):
    assert len(cdnow_rfm) == ref.CDNOW_CUSTOMERS
    assert cdnow_rfm["frequency"].sum() == ref.CDNOW_CALIBRATION_REPEATS
    assert cdnow_rfm["frequency_holdout"].sum() == ref.CDNOW_HOLDOUT_REPEATS
    assert (cdnow_rfm["frequency"] > 0).sum() == ref.GAMMA_GAMMA_REPEAT_BUYERS


@pytest.mark.skipif(not (SHARED / "btyd_cdnowSummary_cbs.csv").exists(), reason="../shared/data is absent")
def test_matches_btyd_cdnow_summary_exactly(cdnow_rfm):
    btyd = pd.read_csv(SHARED / "btyd_cdnowSummary_cbs.csv")
    btyd["cust"] = btyd["cust"].astype(str)  # ids are text (as written: 1 .. 2357)
    merged = cdnow_rfm.merge(btyd, left_on="customer_id", right_on="cust", validate="one_to_one")
    assert len(merged) == ref.CDNOW_CUSTOMERS
    assert (merged["frequency"] == merged["x"]).all()
    assert (merged["frequency_holdout"] == merged["x.star"]).all()
    np.testing.assert_allclose(merged["recency"], merged["t.x"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged["T"], merged["T.cal"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged["monetary_value"], merged["m.x"], rtol=1e-12, atol=1e-12)


def test_matches_lifetimes_shipped_summary(cdnow_rfm):
    """lifetimes ships the same table rounded to 2 decimals (always available: lifetimes is a test dependency)."""
    from lifetimes.datasets import load_dataset

    shipped = load_dataset("cdnow_customers_summary_with_transactions.csv")
    shipped["ID"] = shipped["ID"].astype(str)
    merged = cdnow_rfm.merge(shipped, left_on="customer_id", right_on="ID", suffixes=("", "_lt"))
    assert len(merged) == ref.CDNOW_CUSTOMERS
    assert (merged["frequency"] == merged["x"]).all()
    np.testing.assert_allclose(merged["recency"], merged["t_x"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(merged["T"], merged["T_lt"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(merged["monetary_value"], merged["zbar"], atol=0.005 + 1e-9)


def test_matches_lifetimes_summary_function_on_days(cdnow_summary):
    """An independent implementation of the definitions: lifetimes' summary_data_from_transaction_data."""
    import datetime as dt

    from lifetimes.utils import summary_data_from_transaction_data

    from clv.data import rfm_summary

    tx = load_transactions("cdnow", DataConfig(source="cdnow", duplicates="keep"))
    ours = rfm_summary(tx, dt.date(1997, 9, 30), None, "D").frame.set_index("customer_id")
    raw = pd.read_csv(dataset_path("cdnow"), parse_dates=["date"], dtype={"customer_id": str})
    raw = raw[raw["date"] <= "1997-09-30"]
    theirs = summary_data_from_transaction_data(
        raw, "customer_id", "date", monetary_value_col="amount", observation_period_end="1997-09-30", freq="D"
    )
    theirs = theirs.loc[ours.index]
    np.testing.assert_array_equal(ours["frequency"], theirs["frequency"])
    np.testing.assert_allclose(ours["recency"], theirs["recency"])
    np.testing.assert_allclose(ours["T"], theirs["T"])
    np.testing.assert_allclose(ours["monetary_value"], theirs["monetary_value"], rtol=1e-9)


def test_days_and_weeks_differ_by_seven(cdnow_summary):
    import datetime as dt

    from clv.data import rfm_summary

    tx = load_transactions("cdnow", DataConfig(source="cdnow", duplicates="keep"))
    days = rfm_summary(tx, dt.date(1997, 9, 30), None, "D").frame
    np.testing.assert_allclose(days["T"], cdnow_summary.frame["T"] * 7, rtol=1e-12)
    np.testing.assert_allclose(days["recency"], cdnow_summary.frame["recency"] * 7, rtol=1e-12)


def test_the_summary_is_the_same_to_the_last_bit_on_every_run(tmp_path):
    """DuckDB's parallel sums add a customer's values in an order that depends on thread scheduling: the summary's
    money and log-gap sums must not (the same file gives the same CLVs, tie order and model fingerprint on every
    run). 1.2 million purchase days of 60,000 customers, in shuffled order, summarised three times."""
    import datetime as dt

    import numpy as np

    from clv.config import DataConfig
    from clv.data import load_transactions
    from clv.data.rfm import rfm_summary

    rng = np.random.default_rng(3)
    n = 1_200_000
    days = rng.integers(0, 700, n)
    frame = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 60_000, n).astype(str),
            "date": (np.datetime64("2024-01-01") + days.astype("timedelta64[D]")).astype(str),
            "amount": np.round(rng.gamma(2.0, 20.0, n), 2) + rng.integers(0, 3, n) * 1e-3,
        }
    )
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    spec = DataConfig(source=str(path), customer_id="customer_id", date="date", amount="amount", duplicates="keep")
    runs = [
        rfm_summary(load_transactions(str(path), spec), dt.date(2025, 6, 30), dt.date(2025, 12, 1), "W").frame
        for _ in range(3)
    ]
    for other in runs[1:]:
        for column in ("monetary_value", "monetary_value_holdout", "sum_log_intervals"):
            assert (runs[0][column].to_numpy() == other[column].to_numpy()).all(), column
