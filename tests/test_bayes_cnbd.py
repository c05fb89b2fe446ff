"""The Bayesian fit of MBG/CNBD-k and BG/CNBD-k: k held at its maximum-likelihood value and recorded, (r, alpha,
a, b) sampled given k; Laplace near the maximum-likelihood fit; predictions per draw; the store round trip. The
graphs' equality to the numpy likelihood is in tests/test_graphs.py."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoCNBDModel, ClvWarning, ModifiedBetaGeoCNBDModel
from clv.bayes import DrawOptions, posterior_predict, predictive_purchases
from clv.bayes.fit import fit_posterior
from clv.config import BayesConfig


@pytest.fixture(scope="module")
def mle(cdnow_rfm):
    return ModifiedBetaGeoCNBDModel(max_k=4).fit(cdnow_rfm)


@pytest.fixture(scope="module")
def laplace(cdnow_rfm):
    """MBG/CNBD-k on CDNOW by Laplace, k searched over 1..4."""
    model = ModifiedBetaGeoCNBDModel(max_k=4)
    return model, fit_posterior(model, cdnow_rfm, BayesConfig(inference="laplace", chains=1, draws=2000), seed=3)


def test_k_is_held_at_its_maximum_likelihood_value_and_recorded(laplace, mle):
    _, post = laplace
    k = mle.params_["k"]
    assert post.param_names == ("k", "r", "alpha", "a", "b")
    assert np.all(post.draws[:, 0] == k)
    held = post.summary()["held"]
    assert held["k"] == k and "fixed at its maximum-likelihood value" in held["how"]
    assert held["log_likelihood_by_k"] == {
        str(j): pytest.approx(v, abs=1e-6) for j, v in mle.k_log_likelihoods_.items()
    }
    shares = held["approximate_probability"]
    assert sum(shares.values()) == pytest.approx(1.0)
    # the shares are the likelihood ratios: by hand from the maximised log-likelihoods
    top = max(mle.k_log_likelihoods_.values())
    by_hand = {j: np.exp(v - top) for j, v in mle.k_log_likelihoods_.items()}
    for j, v in by_hand.items():
        assert shares[str(j)] == pytest.approx(v / sum(by_hand.values()), rel=1e-9, abs=1e-300)
    assert post.mle is not None and post.mle["k"] == k


def test_laplace_lands_on_the_maximum_likelihood_fit(laplace, mle):
    """With 2,357 customers and a wide prior the posterior mean is within a posterior sd or so of the MLE."""
    _, post = laplace
    for j, name in enumerate(post.param_names[1:], start=1):
        sd = post.draws[:, j].std()
        assert abs(post.draws[:, j].mean() - mle.params_[name]) < 1.5 * sd, name
        assert sd < 0.5 * mle.params_[name]
    assert post.diagnostics.passed, post.diagnostics.problems


def test_predictions_per_draw_at_one_draw_are_the_model(laplace, cdnow_rfm):
    """A posterior whose draws are all one point predicts what the point model does (P(alive), expected
    purchases; the predictive total's mean near the expectation)."""
    _, post = laplace
    point = post.draws[:1].repeat(30, axis=0)
    one = type(post)(post.model_name, post.param_names, point, post.diagnostics, post.priors, held=post.held)
    frame = cdnow_rfm.iloc[:300]
    model = ModifiedBetaGeoCNBDModel.from_params(**dict(zip(post.param_names, map(float, point[0]), strict=True)))
    options = DrawOptions(0.9, 30, seed=1)
    alive = posterior_predict(ModifiedBetaGeoCNBDModel, one, frame, "probability_alive", options)
    np.testing.assert_allclose(alive["mean"], model.probability_alive(frame), rtol=1e-12)
    expected = posterior_predict(ModifiedBetaGeoCNBDModel, one, frame, "expected_purchases", options, horizon=39.0)
    np.testing.assert_allclose(expected["mean"], model.expected_purchases(frame, 39.0), rtol=1e-9)
    intervals, total = predictive_purchases(ModifiedBetaGeoCNBDModel, one, frame, 39.0, options)
    np.testing.assert_allclose(intervals["expected"], model.expected_purchases(frame, 39.0), rtol=1e-9)
    assert np.all(intervals["lo"] <= intervals["hi"]) and np.all(intervals["lo"] == np.round(intervals["lo"]))
    assert total["lo"] < model.expected_purchases(frame, 39.0).sum() < total["hi"]


def test_the_posterior_round_trips_through_the_store(laplace, cdnow_rfm, tmp_path):
    """Saved (NetCDF with k as a constant variable, model.json with the record of k) and loaded: the same draws,
    names and record, and the same point model."""
    from pathlib import Path

    from clv.config import load_config
    from clv.pipeline import FittedModels, load_fitted, save_trained

    _, post = laplace
    root = Path(__file__).resolve().parents[1]
    config = load_config(
        root / "configs" / "cdnow.yaml",
        ["model.purchase=mbgcnbd", "model.method=bayes", f"output.models_dir={tmp_path}"],
    )
    point = ModifiedBetaGeoCNBDModel.from_result(post.point_result())
    fitted = FittedModels(point, None, "bayes", post, None, {})
    tiers = pd.DataFrame({"customer_id": cdnow_rfm["customer_id"], "tier": "rest"})
    path = save_trained(config, fitted, cdnow_rfm, tiers)
    assert (path / "mbgcnbd_posterior.nc").is_file()
    loaded = load_fitted(path)
    assert loaded.purchase_posterior is not None
    np.testing.assert_array_equal(loaded.purchase_posterior.draws, post.draws)
    assert loaded.purchase_posterior.param_names == post.param_names
    assert loaded.purchase_posterior.held == post.held
    assert loaded.purchase.params_ == point.params_


def test_an_uncertain_k_warns():
    """Data that cannot tell k = 1 from k = 2 (a handful of customers): the warning says the intervals leave the
    uncertainty about k out."""
    frame = pd.DataFrame(
        {
            "frequency": [0, 1, 2, 3, 1, 0],
            "recency": [0.0, 5.0, 12.0, 20.0, 3.0, 0.0],
            "T": [30.0, 30.0, 30.0, 30.0, 25.0, 20.0],
            "sum_log_intervals": [0.0, np.log(5.0), np.log(6.0) * 2, np.log(6.0) * 3 + 0.3, np.log(3.0), 0.0],
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held = BetaGeoCNBDModel(max_k=3).held_in_posterior(frame)
    share = held.record["approximate_probability"][str(held.record["k"])]
    assert share < 0.99
    assert any(issubclass(w.category, ClvWarning) and "uncertainty about k" in str(w.message) for w in caught)


@pytest.mark.slow
def test_nuts_on_cdnow_converges_given_k(cdnow_rfm):
    """NUTS (nutpie) on CDNOW at the maximum-likelihood k: converged, near the MLE, seeded."""
    options = BayesConfig(chains=2, draws=300, tune=300, ess_min=100)
    post = fit_posterior(ModifiedBetaGeoCNBDModel(max_k=3), cdnow_rfm, options, seed=2)
    assert post.diagnostics.passed, post.diagnostics.problems
    mle = ModifiedBetaGeoCNBDModel(max_k=3).fit(cdnow_rfm)
    assert np.all(post.draws[:, 0] == mle.params_["k"])
    for j, name in enumerate(post.param_names[1:], start=1):
        assert abs(post.draws[:, j].mean() - mle.params_[name]) < 2 * post.draws[:, j].std(), name
    again = fit_posterior(ModifiedBetaGeoCNBDModel(max_k=3), cdnow_rfm, options, seed=2)
    np.testing.assert_array_equal(again.draws, post.draws)
