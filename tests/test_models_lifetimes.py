"""Agreement with lifetimes (the independent implementation) to 1e-6 relative, at identical parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes import (
    BetaGeoBetaBinomFitter,
    BetaGeoFitter,
    GammaGammaFitter,
    ModifiedBetaGeoFitter,
    ParetoNBDFitter,
)

from clv import BetaGeoBetaBinomModel, BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel

RTOL = 1e-6
PAIRS = [
    (BetaGeoModel, BetaGeoFitter, {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}),
    (ModifiedBetaGeoModel, ModifiedBetaGeoFitter, {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}),
    (ParetoNBDModel, ParetoNBDFitter, {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}),
]


def random_rfm(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    T = rng.uniform(1.0, 80.0, n)
    x = rng.poisson(rng.gamma(0.6, 6.0, n)).astype(float)
    t_x = np.where(x > 0, T * rng.beta(2.0, 1.0, n), 0.0)
    return pd.DataFrame({"customer_id": np.arange(n), "frequency": x, "recency": t_x, "T": T})


def pair(ours_cls, theirs_cls, params):
    theirs = theirs_cls()
    theirs.params_ = pd.Series(params)
    return ours_cls.from_params(**params), theirs


def arrays(rfm):
    return rfm["frequency"].to_numpy(float), rfm["recency"].to_numpy(float), rfm["T"].to_numpy(float)


@pytest.mark.parametrize(("ours_cls", "theirs_cls", "params"), PAIRS)
@pytest.mark.parametrize("data", ["cdnow", "random"])
def test_purchase_predictions_agree(ours_cls, theirs_cls, params, data, cdnow_rfm):
    rfm = cdnow_rfm if data == "cdnow" else random_rfm(7)
    ours, theirs = pair(ours_cls, theirs_cls, params)
    x, t_x, T = arrays(rfm)
    np.testing.assert_allclose(ours.probability_alive(rfm), theirs.conditional_probability_alive(x, t_x, T), rtol=RTOL)
    for horizon in (1.0, 13.0, 52.0):
        np.testing.assert_allclose(
            ours.expected_purchases(rfm, horizon),
            theirs.conditional_expected_number_of_purchases_up_to_time(horizon, x, t_x, T),
            rtol=RTOL,
        )
    t = np.array([1.0, 10.0, 39.0, 100.0])
    np.testing.assert_allclose(
        ours.expected_purchases_new_customer(t), theirs.expected_number_of_purchases_up_to_time(t), rtol=RTOL
    )


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_bgnbd_new_customer_pmf_agrees(n):
    ours, theirs = pair(*PAIRS[0])
    assert ours.probability_of_purchases_new_customer(n, 39.0) == pytest.approx(
        float(theirs.probability_of_n_purchases_up_to_time(39.0, n)), rel=RTOL
    )


@pytest.mark.parametrize("n", [0, 1, 3])
def test_pareto_conditional_pmf_agrees(n, cdnow_rfm):
    ours, theirs = pair(*PAIRS[2])
    rows = cdnow_rfm.iloc[::20]
    x, t_x, T = arrays(rows)
    expected = [
        theirs.conditional_probability_of_n_purchases_up_to_time(n, 26.0, *v) for v in zip(x, t_x, T, strict=True)
    ]
    np.testing.assert_allclose(ours.probability_of_purchases(rows, n, 26.0), np.ravel(expected), rtol=RTOL)


def test_bgbb_predictions_agree(donations):
    params = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
    ours, theirs = pair(BetaGeoBetaBinomModel, BetaGeoBetaBinomFitter, params)
    x, t_x, n = arrays(donations)
    for m in (0, 1, 5):
        np.testing.assert_allclose(
            ours.probability_alive(donations, m),
            theirs.conditional_probability_alive(m, x, t_x, n),
            rtol=RTOL,
        )
    np.testing.assert_allclose(
        ours.expected_purchases(donations, 5),
        theirs.conditional_expected_number_of_purchases_up_to_time(5, x, t_x, n),
        rtol=RTOL,
    )


@pytest.mark.parametrize("data", ["cdnow", "random"])
def test_gamma_gamma_agrees(data, cdnow_rfm):
    rfm = cdnow_rfm
    if data == "random":
        rng = np.random.default_rng(3)
        rfm = pd.DataFrame(
            {
                "frequency": rng.integers(0, 30, 400),
                "recency": 0.0,
                "T": 50.0,
                "monetary_value": rng.gamma(2.0, 20.0, 400),
            }
        )
        rfm["recency"] = np.where(rfm["frequency"] > 0, 10.0, 0.0)
    params = {"p": 6.25, "q": 3.74, "v": 15.44}
    ours, theirs = pair(GammaGammaModel, GammaGammaFitter, params)
    m = np.where(rfm["frequency"] > 0, rfm["monetary_value"], 0.0)
    expected = theirs.conditional_expected_average_profit(rfm["frequency"], pd.Series(m, index=rfm.index))
    np.testing.assert_allclose(ours.expected_spend(rfm), np.asarray(expected), rtol=RTOL)


@pytest.mark.parametrize(("ours_cls", "theirs_cls", "params"), PAIRS[:2])
def test_fits_agree_with_lifetimes_fit(ours_cls, theirs_cls, params, cdnow_rfm):
    x, t_x, T = arrays(cdnow_rfm)
    theirs = theirs_cls().fit(x, t_x, T)
    ours = ours_cls().fit(cdnow_rfm)
    for key in params:
        assert ours.params_[key] == pytest.approx(theirs.params_[key], rel=1e-3)
