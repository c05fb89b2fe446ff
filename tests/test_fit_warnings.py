"""Doubtful fits warn (never print), with what is wrong."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoModel, ConvergenceWarning, GammaGammaModel
from clv.simulate import simulate_bgnbd


def test_clean_fit_does_not_warn(cdnow_rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        BetaGeoModel().fit(cdnow_rfm)
        GammaGammaModel().fit(cdnow_rfm)


def test_correlated_spend_warns():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 30, 2000)
    spend = 5.0 * x * rng.gamma(20.0, 0.05, x.size)
    rfm = pd.DataFrame({"frequency": x, "recency": 1.0, "T": 2.0, "monetary_value": spend})
    with pytest.warns(ConvergenceWarning, match="frequency and spend correlate"):
        model = GammaGammaModel().fit(rfm)
    assert model.frequency_spend_correlation_ > 0.3


def test_infinite_mean_spend_warns():
    rng = np.random.default_rng(1)
    x = rng.integers(1, 5, 3000)
    heavy = 1.0 / rng.gamma(0.7, 1.0, x.size)  # nu with shape < 1: q < 1
    rfm = pd.DataFrame({"frequency": x, "recency": 1.0, "T": 2.0, "monetary_value": rng.gamma(3.0 * x, heavy) / x})
    with pytest.warns(ConvergenceWarning, match="q = .* <= 1"):
        GammaGammaModel().fit(rfm)


def test_no_repeat_buyers_is_a_clear_error():
    from clv.errors import DataError

    rfm = pd.DataFrame({"frequency": [0, 0], "recency": [0.0, 0.0], "T": [5.0, 5.0], "monetary_value": [0.0, 0.0]})
    with pytest.raises(DataError, match="at least 3 customers with repeat purchases"):
        GammaGammaModel().fit(rfm)


def test_boundary_warns():
    # nobody ever buys again: r runs towards 0, and nothing tells dropout apart from none
    rfm = simulate_bgnbd(500, 0.25, 4.0, 0.8, 2.5, seed=3).assign(frequency=0, recency=0.0)
    with pytest.warns(ConvergenceWarning, match="the data carry no evidence of dropout"):
        model = BetaGeoModel().fit(rfm)
    assert model.params_["r"] < 1e-2
