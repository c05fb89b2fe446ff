"""Fits reproduce the published parameter values to their printed precision."""

from __future__ import annotations

import pytest

from clv import BetaGeoBetaBinomModel, BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel

from . import reference_values as ref


def assert_printed(params: dict[str, float], published: dict[str, float]) -> None:
    for key, value in published.items():
        decimals = len(str(value).split(".")[1])
        assert round(params[key], decimals) == pytest.approx(value, abs=1e-12), (key, params[key], value)


def test_bgnbd_cdnow(cdnow_rfm):
    model = BetaGeoModel().fit(cdnow_rfm)
    assert_printed(model.params_, ref.BGNBD_CDNOW)
    assert round(model.log_likelihood_, 1) == ref.BGNBD_CDNOW_LL
    assert model.converged_ and model.gradient_norm_ < 1e-6
    assert set(model.standard_errors_) == {"r", "alpha", "a", "b"}


def test_pareto_nbd_cdnow(cdnow_rfm):
    model = ParetoNBDModel().fit(cdnow_rfm)
    assert_printed(model.params_, ref.PARETO_CDNOW)
    assert round(model.log_likelihood_, 1) == ref.PARETO_CDNOW_LL
    assert model.converged_


def test_mbgnbd_cdnow(cdnow_rfm):
    model = ModifiedBetaGeoModel().fit(cdnow_rfm)
    assert_printed(model.params_, ref.MBGNBD_CDNOW)
    assert model.converged_


def test_gamma_gamma_cdnow(cdnow_rfm):
    model = GammaGammaModel().fit(cdnow_rfm)
    assert model.n_customers_ == ref.GAMMA_GAMMA_REPEAT_BUYERS
    assert_printed(model.params_, ref.GAMMA_GAMMA_CDNOW)


def test_bgbb_donations(donations):
    model = BetaGeoBetaBinomModel().fit(donations, weights=donations["weights"])
    assert_printed(model.params_, ref.BGBB_DONATIONS)
    assert round(model.log_likelihood_, 1) == ref.BGBB_DONATIONS_LL


def test_bgnbd_holdout_forecast(cdnow_rfm):
    model = BetaGeoModel().fit(cdnow_rfm)
    total = model.expected_purchases(cdnow_rfm, 39.0).sum()
    assert round(total) == ref.BGNBD_CDNOW_HOLDOUT_PREDICTION
