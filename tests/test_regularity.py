"""The regularity estimate (clv.regularity, clv.data.regularity, `clv data summarize`): hand-computed values,
seeded draws of known k, scipy's Gamma fit as an independent MLE, and BTYDplus' `estimateRegularity` on grocery
and CDNOW (tests/fixtures/btydplus/regularity.csv, made in R; its README says how)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from clv.cli import app
from clv.config import DataConfig
from clv.data import load_transactions
from clv.data.regularity import estimate_regularity, regularity_line, regularity_reading
from clv.regularity import gamma_shape_mle, wheat_morrison

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "fixtures" / "btydplus" / "regularity.csv"
GROCERY = ROOT.parent / "shared" / "data" / "btydplus_groceryElog.csv"


def test_wheat_morrison_by_hand():
    """Pairs (1, 1) and (3, 1): M - 1/2 = 0 and 1/4, V = (0 + 1/16) / 2 = 1/32, k = (1 - 1/8) / (1/4) = 3.5;
    the (M - 1/2)^2 have standard deviation (1/16) / sqrt(2), so the standard error is (1/16) / 2 / (8 / 32^2) =
    4. Swapping which time is last changes nothing."""
    k, se = wheat_morrison(np.array([1.0, 3.0]), np.array([1.0, 1.0]))
    assert k == pytest.approx(3.5, rel=1e-12)
    assert se == pytest.approx(4.0, rel=1e-12)
    assert wheat_morrison(np.array([1.0, 1.0]), np.array([1.0, 3.0])) == pytest.approx((k, se), rel=1e-12)
    assert wheat_morrison(np.array([2.0, 5.0]), np.array([2.0, 5.0])) == (math.inf, math.inf)
    with pytest.raises(ValueError, match="> 0"):
        wheat_morrison(np.array([0.0, 1.0]), np.array([1.0, 1.0]))


@pytest.mark.parametrize("k", [0.6, 1.0, 3.0])
def test_wheat_morrison_recovers_a_known_k(k):
    """20,000 customers' two last gaps drawn Gamma(k) with customer-specific rates (the estimator needs no common
    rate): within 4 standard errors of k; the standard error is that of 200 repetitions' spread within 25%."""
    rng = np.random.default_rng(7)
    rate = rng.gamma(2.0, 1.0, 20_000)
    k_hat, se = wheat_morrison(rng.gamma(k, 1 / rate), rng.gamma(k, 1 / rate))
    assert abs(k_hat - k) < 4 * se
    small = [wheat_morrison(rng.gamma(k, 1.0, 500), rng.gamma(k, 1.0, 500)) for _ in range(200)]
    spread = np.std([v for v, _ in small], ddof=1)
    assert np.mean([s for _, s in small]) == pytest.approx(spread, rel=0.25)


def test_distinct_gap_pairs_with_counts_give_the_customers_estimates():
    """What the Spark data step collects (the distinct last-two-times pairs with counts, the 10+-gap customers'
    sums) gives the estimates of every customer's gaps: the same k and standard error to 1e-12 (sums in
    another order), the same customer counts and the same median of shapes."""
    from clv.data.regularity import MLE_MIN_GAPS, customer_shapes, regularity_estimates, regularity_from_gaps

    rng = np.random.default_rng(5)
    n = rng.integers(2, 25, 3000).astype(float)
    gaps = pd.DataFrame(
        {
            "n": n,
            "total": n * rng.integers(5, 60, n.size),
            "sum_log": n * np.log(rng.integers(5, 60, n.size)) - rng.random(n.size),
            "last": rng.integers(1, 40, n.size).astype(float),
            "previous": rng.integers(1, 40, n.size).astype(float),
        }
    )
    pairs = gaps.groupby(["last", "previous"]).size().rename("customers").astype(float).reset_index()
    assert len(pairs) < len(gaps) / 2
    many = gaps.loc[gaps["n"] >= MLE_MIN_GAPS].sample(frac=1.0, random_state=1)
    shapes = gamma_shape_mle(many["n"], many["total"], many["sum_log"])  # independently of customer_shapes
    ranked = np.sort(shapes)
    middle = (
        ranked[(ranked.size - 1) // 2]
        if ranked.size % 2
        else (ranked[ranked.size // 2 - 1] + ranked[ranked.size // 2]) / 2
    )
    end = dt.date(2026, 1, 1)
    estimates = regularity_estimates(pairs, float(middle), len(many), end)
    for ours, theirs in zip(estimates, regularity_from_gaps(gaps, end), strict=True):
        assert (ours.method, ours.customers, ours.min_gaps, ours.note) == (
            theirs.method,
            theirs.customers,
            theirs.min_gaps,
            theirs.note,
        )
        assert ours.k == pytest.approx(theirs.k, rel=1e-12)
        if theirs.standard_error is not None:
            assert ours.standard_error == pytest.approx(theirs.standard_error, rel=1e-12)
    assert np.isnan(customer_shapes(gaps)[gaps["n"].to_numpy() < MLE_MIN_GAPS]).all()
    k, se = wheat_morrison(np.array([1.0, 3.0]), np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    assert (k, se) == pytest.approx(wheat_morrison(np.array([1.0, 1.0, 3.0, 3.0]), np.ones(4)), rel=1e-12)


def test_gamma_shape_mle_is_scipys_fit():
    """Per-customer shapes equal scipy's numerical Gamma maximum likelihood (location fixed at 0) to 1e-5."""
    rng = np.random.default_rng(11)
    samples = [rng.gamma(k, 3.0, n) for k, n in ((0.4, 12), (1.0, 30), (2.5, 15), (8.0, 40), (40.0, 20))]
    ours = gamma_shape_mle(
        np.array([s.size for s in samples], dtype=float),
        np.array([s.sum() for s in samples]),
        np.array([np.log(s).sum() for s in samples]),
    )
    ref = [stats.gamma.fit(s, floc=0, method="MLE")[0] for s in samples]
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    equal = gamma_shape_mle(np.array([3.0]), np.array([21.0]), np.array([3 * math.log(7.0)]))
    assert equal[0] == math.inf


def _profile(path: Path | str, end: dt.date, **cfg: str | None):
    tx = load_transactions(str(path), DataConfig(source="x", **cfg))
    return estimate_regularity(tx, end)


def _btydplus() -> pd.DataFrame:
    return pd.read_csv(REF).set_index(["dataset", "method"])


@pytest.mark.parametrize("dataset", ["grocery", "cdnow"])
def test_equals_btydplus_estimate_regularity(dataset):
    """Calibration-period logs. Wheat & Morrison: BTYDplus draws which of the two gaps is the numerator, so its
    value varies with R's seed (grocery 2.4589 to 2.4808 over seeds 1..50, CDNOW 1.0454 to 1.0707); clv's
    estimate (deterministic, about the known mean 1/2) lies in that range: grocery 2.4631, CDNOW 1.0485. The
    per-customer MLE median equals BTYDplus' `mle` to 1e-5 (its `optimize` tolerance): grocery 3.89313 against
    3.89312, CDNOW 1.300013 against 1.300012. Customer counts equal: grocery 713 and 158, CDNOW 507 and 29."""
    if dataset == "grocery":
        if not GROCERY.exists():
            pytest.skip("the grocery data (../shared/data) is absent")
        wheat, mle = _profile(GROCERY, dt.date(2006, 12, 31), customer_id="cust", date="date", amount=None)
    else:
        tx = load_transactions("cdnow", DataConfig(source="cdnow", duplicates="keep"))
        wheat, mle = estimate_regularity(tx, dt.date(1997, 9, 30))
    ref = _btydplus()
    low, high, n = ref.loc[(dataset, "wheat"), ["min", "max", "customers"]]
    assert wheat.k is not None and low <= wheat.k <= high
    assert wheat.customers == n
    assert mle.k == pytest.approx(ref.loc[(dataset, "mle"), "seed1"], rel=1e-5)
    assert mle.customers == ref.loc[(dataset, "mle"), "customers"]


def _synthetic_log(k: float, customers: int, purchases: int, seed: int) -> pd.DataFrame:
    """Seeded log: each customer starts in January 2020 and buys `purchases` times, Gamma(k) gaps with a
    customer-specific mean of 100 to 300 days, dates the whole days of the running time (gaps rarely under one
    day, so few same-day merges: a merge drops a short gap and makes a log look more regular than it was)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        mean = rng.uniform(100.0, 300.0)
        times = rng.integers(0, 30) + np.concatenate([[0.0], np.cumsum(rng.gamma(k, mean / k, purchases - 1))])
        days = np.unique(np.floor(times).astype(int))
        rows += [(f"c{c}", dt.date(2020, 1, 1) + dt.timedelta(days=int(d))) for d in days]
    return pd.DataFrame(rows, columns=["customer_id", "date"])


@pytest.mark.parametrize(("k", "reading"), [(3.0, "more regular"), (1.0, "consistent with k = 1")])
def test_synthetic_log_of_known_k(k, reading):
    """Through the data path (validation, same-day merge, SQL gaps): Wheat & Morrison within 4 standard errors of
    the k the log was drawn with (3,000 customers); the MLE median within 10% (40 purchases each: the small-sample
    bias of a 39-gap shape MLE is a few %); the reading says what k means."""
    frame = _synthetic_log(k, 3000, 40, seed=5)
    tx = load_transactions(frame, DataConfig(source="frame", amount=None))
    wheat, mle = estimate_regularity(tx, None)
    assert wheat.k is not None and wheat.standard_error is not None
    assert abs(wheat.k - k) < 4 * wheat.standard_error
    assert wheat.customers == 3000 and mle.customers == 3000
    assert mle.k == pytest.approx(k, rel=0.10)
    assert reading in regularity_reading(wheat)
    assert "3,000 customers with 2+ inter-purchase times" in regularity_line(wheat)


def test_too_few_customers_says_so():
    frame = pd.DataFrame(
        {"customer_id": ["a", "a", "a", "b"], "date": ["2020-01-01", "2020-01-05", "2020-01-07", "2020-01-02"]}
    )
    tx = load_transactions(frame, DataConfig(source="frame", amount=None))
    wheat, mle = estimate_regularity(tx, None)
    assert wheat.k is None and wheat.customers == 1
    assert mle.k is None and mle.customers == 0
    assert regularity_reading(wheat) == "regularity not estimated: too few customers"
    assert "not estimated" in regularity_line(mle) and "no customer has enough purchases" in regularity_line(mle)


def test_data_summarize_shows_it():
    """`clv data summarize` on CDNOW: the table has both estimates and the reading; the JSON has them too."""
    runner = CliRunner()
    config = str(ROOT / "configs" / "cdnow.yaml")
    shown = runner.invoke(app, ["data", "summarize", config])
    assert shown.exit_code == 0, shown.stdout
    assert "regularity (wheat-morrison)" in shown.stdout and "regularity (gamma-mle-median)" in shown.stdout
    assert "Wheat & Morrison 1990" in shown.stdout and "regularity reading" in shown.stdout
    info = json.loads(runner.invoke(app, ["data", "summarize", config, "--json"]).stdout)
    wheat, mle = info["regularity"]
    assert (wheat["method"], wheat["customers"], mle["customers"]) == ("wheat-morrison", 507, 29)
    assert wheat["k"] == pytest.approx(1.0485, abs=1e-4)
    assert info["regularity_reading"].startswith("k = 1.05 (95% interval 0.92 to 1.17): consistent with k = 1")
