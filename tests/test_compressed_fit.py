"""Fits from distinct rows with counts (what the driver collects from Spark, `clv.spark.rows`) against fits on the
customers themselves, and the fingerprint's independence of how the rows are split. The rows kept elsewhere
are played here by a pandas stand-in with the `clv.data.rfm.RemoteRows` contract, written independently of
`clv.spark.rows` (a groupby per distinct row, its lowest id and count)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest

from clv import pipeline
from clv.config import parse_config
from clv.data.rfm import RfmSummary
from clv.errors import DataError
from clv.spend.outliers import _weighted_median
from clv.store import data_fingerprint, fingerprint_from_parts, fingerprint_part


class PandasRows:
    """Customer rows 'kept elsewhere': only counts, distinct rows and a few ids leave it; `collect` is refused."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self.released = False

    @property
    def customers(self) -> int:
        return len(self._frame)

    @property
    def columns(self) -> list[str]:
        return list(self._frame.columns)

    def collect(self) -> pd.DataFrame:
        raise AssertionError("the customers were collected")

    def _distinct(self, rows: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        grouped = rows.groupby(keys, sort=False).agg(customer_id=("customer_id", "min"), n=("customer_id", "size"))
        grouped = grouped.reset_index().sort_values("customer_id").reset_index(drop=True)
        return grouped[["customer_id", *keys]], grouped["n"].to_numpy(dtype=float)

    def histories(self):
        return self._distinct(self._frame, ["frequency", "recency", "T"])

    def spend_pairs(self):
        return self._distinct(self._frame[self._frame["frequency"] > 0], ["frequency", "monetary_value"])

    def spend_outlier_ids(self, threshold: float, shown: int) -> list[str]:
        f = self._frame
        above = f[(f["frequency"] > 0) & (f["monetary_value"] > threshold)]
        return above.sort_values(["monetary_value", "customer_id"], ascending=[False, True])["customer_id"][
            :shown
        ].tolist()

    def repeated_ids(self, shown: int):
        counts = self._frame["customer_id"].value_counts()
        repeated = sorted(counts[counts > 1].index)
        return len(repeated), repeated[:shown]

    def sums(self, columns):
        return {c: float(self._frame[c].sum()) for c in columns}

    def fingerprint(self):
        return data_fingerprint(self._frame)

    def release(self) -> None:
        self.released = True


CONFIG = {
    "name": "cdnow",
    "data": {"source": "cdnow", "currency": "USD", "duplicates": "keep"},
    "time": {"unit": "W", "calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
}


def _remote(summary: RfmSummary) -> RfmSummary:
    return dataclasses.replace(summary, rows=PandasRows(summary.frame))


@pytest.mark.parametrize(
    ("purchase", "policy"), [("bgnbd", "keep"), ("pareto_nbd", "cap"), ("mbgnbd", "exclude"), ("bgnbd", "cap")]
)
def test_a_fit_on_distinct_rows_with_counts_is_the_fit_on_the_customers(cdnow_summary, purchase, policy):
    config = parse_config(
        CONFIG | {"model": {"purchase": purchase, "spend_outliers": policy, "spend_outlier_multiple": 3.0}}
    )
    local = pipeline.fit_models(config, cdnow_summary.frame)
    remote = _remote(cdnow_summary)
    compressed = pipeline.fit_models(config, remote)
    rows = pipeline.fit_rows(config, remote)
    assert rows.purchase_weights is not None and len(rows.purchase) == 1016  # CDNOW's distinct histories
    for a, b in ((local.purchase, compressed.purchase), (local.spend, compressed.spend)):
        for name, value in a.params_.items():
            assert b.params_[name] == pytest.approx(value, rel=1e-10, abs=0), name
        assert b.log_likelihood_ == pytest.approx(a.log_likelihood_, rel=1e-12)
        assert b.n_customers_ == a.n_customers_
    assert local.purchase.n_customers_ == 2357
    checks_a, checks_b = local.spend.summary()["assumption_checks"], compressed.spend.summary()["assumption_checks"]
    assert checks_b["buyers_fitted"] == checks_a["buyers_fitted"]
    for key in ("frequency_spend_correlation", "mean_spend_observed", "mean_spend_model"):
        assert checks_b[key] == pytest.approx(checks_a[key], rel=1e-12), key
    assert compressed.spend.zero_spend_buyers_ == local.spend.zero_spend_buyers_
    found, expected = pipeline.spend_outliers(config, remote), pipeline.spend_outliers(config, cdnow_summary.frame)
    assert expected.customers > 5  # the ids are cut to five with "..."
    assert dataclasses.replace(found, share_of_revenue=0.0) == dataclasses.replace(expected, share_of_revenue=0.0)
    assert found.share_of_revenue == pytest.approx(expected.share_of_revenue, rel=1e-12)


def test_models_that_read_more_than_the_history_are_fitted_on_the_customers(cdnow_summary):
    remote = _remote(cdnow_summary)
    with pytest.raises(AssertionError, match="collected"):  # the regularity term reads each customer's own gaps
        pipeline.fit_rows(parse_config(CONFIG | {"model": {"purchase": "bgcnbd"}}), remote)


def test_checks_on_rows_kept_elsewhere_read_their_counts(cdnow_summary):
    remote = _remote(cdnow_summary)
    pipeline.check_unique_ids(remote, "cdnow")
    frame = pd.concat([cdnow_summary.frame, cdnow_summary.frame.iloc[[3, 5]]], ignore_index=True)
    twice = dataclasses.replace(cdnow_summary, rows=PandasRows(frame))
    with pytest.raises(DataError, match=r"2 customer id\(s\) stand for more than one customer"):
        pipeline.check_unique_ids(twice, "cdnow")
    assert remote.customers == 2357 and remote.sums(["frequency"]) == {"frequency": 2457.0}


def test_the_weighted_median_is_the_median_of_the_repeated_values():
    rng = np.random.default_rng(7)
    for _ in range(200):
        values = np.round(rng.gamma(2.0, 20.0, size=rng.integers(1, 12)), 1)
        counts = rng.integers(1, 5, size=values.size).astype(float)
        assert _weighted_median(values, counts) == float(np.median(np.repeat(values, counts.astype(int))))


def test_the_fingerprint_does_not_depend_on_order_or_parts_and_sees_a_change(cdnow_rfm):
    whole = data_fingerprint(cdnow_rfm)
    shuffled = cdnow_rfm.sample(frac=1.0, random_state=3)
    cuts = [0, 1, 400, 401, 1500, 2000, len(shuffled)]
    parts = [fingerprint_part(shuffled.iloc[a:b]) for a, b in itertools.pairwise(cuts)]
    assert fingerprint_from_parts(parts)["row_hash"] == whole["row_hash"]
    assert fingerprint_from_parts(parts)["customers"] == whole["customers"] == 2357
    assert fingerprint_from_parts(parts)["sum_frequency"] == whole["sum_frequency"] == 2457.0
    changed = cdnow_rfm.copy()
    changed.loc[10, "recency"] += 1 / 7
    assert data_fingerprint(changed)["row_hash"] != whole["row_hash"]
    renamed = cdnow_rfm.copy()
    renamed.loc[0, "customer_id"] = "0001"
    assert data_fingerprint(renamed)["row_hash"] != whole["row_hash"]
    assert len(whole["row_hash"]) == 32
