"""`bayes.inference: auto`: the time estimate from the unique histories, the choice, and the fallback to NUTS
when Laplace's Pareto-k check fails. The choice is deterministic; nothing here samples."""

from __future__ import annotations

import pytest

from clv import BetaGeoModel
from clv.bayes import budget
from clv.bayes import fit as bayes_fit
from clv.bayes.fit import fit_posterior
from clv.config import BayesConfig


def test_auto_samples_small_data_and_approximates_large_data():
    options = BayesConfig()
    assert options.inference == "auto"
    small = budget.choose_inference("bgnbd", 1_016, options)  # CDNOW's unique histories
    assert small.inference == "nuts" and small.reason.startswith("auto: NUTS, expected")
    large = budget.choose_inference("bgnbd", 100_000, options)
    assert large.inference == "laplace"
    assert "NUTS would take about" in large.reason and "100,000 unique histories" in large.reason


def test_the_estimate_grows_with_rows_iterations_and_the_model():
    options = BayesConfig()
    assert budget.nuts_seconds("bgnbd", 10_000, options) < budget.nuts_seconds("bgnbd", 20_000, options)
    assert budget.nuts_seconds("bgnbd", 10_000, options) < budget.nuts_seconds("pareto_nbd", 10_000, options)
    fewer = BayesConfig(draws=500, tune=500)
    assert budget.nuts_seconds("bgnbd", 10_000, fewer) < budget.nuts_seconds("bgnbd", 10_000, options)
    assert budget.mle_seconds("pareto_nbd", 100_000) > budget.mle_seconds("bgnbd", 100_000)


def test_a_configured_inference_is_kept():
    choice = budget.choose_inference("bgnbd", 10**7, BayesConfig(inference="nuts"))
    assert choice.inference == "nuts" and choice.reason == "nuts (bayes.inference)"


def test_auto_over_budget_uses_laplace_and_says_so(cdnow_rfm):
    post = fit_posterior(BetaGeoModel(), cdnow_rfm, BayesConfig(nuts_budget_seconds=1.0, chains=1, draws=500), 3)
    assert post.diagnostics.inference == "laplace"
    assert post.diagnostics.choice is not None and post.diagnostics.choice.startswith("auto: Laplace")
    assert post.diagnostics.to_dict()["choice"] == post.diagnostics.choice  # what summary.json carries


class _SampledError(Exception):
    """Raised by the stand-in sampler: NUTS was asked for, with these options."""


def test_auto_falls_back_to_nuts_when_laplace_fails_its_check(cdnow_rfm, monkeypatch):
    """A Laplace fit whose Pareto k is 0.9 with unequal weights sends auto to NUTS (a stand-in sampler records
    the call)."""
    real_laplace = bayes_fit._laplace

    def bad_laplace(*args, **kwargs):
        idata, diagnostics = real_laplace(*args, **kwargs)
        diagnostics.laplace = {**(diagnostics.laplace or {}), "pareto_k": 0.9, "importance_ess_share": 0.6}
        return idata, diagnostics

    def fake_sample(pm_model, initial, options, seed, progress):
        raise _SampledError(options.inference)

    monkeypatch.setattr(bayes_fit, "_laplace", bad_laplace)
    monkeypatch.setattr(bayes_fit, "_sample", fake_sample)
    options = BayesConfig(nuts_budget_seconds=1.0, chains=1, draws=500)
    with pytest.raises(_SampledError, match="nuts"):
        fit_posterior(BetaGeoModel(), cdnow_rfm, options, 3)
    # a configured laplace keeps its result (the failed check is a diagnostics problem, not a fallback)
    post = fit_posterior(BetaGeoModel(), cdnow_rfm, options.model_copy(update={"inference": "laplace"}), 3)
    assert post.diagnostics.inference == "laplace" and not post.diagnostics.passed


def test_nearly_equal_importance_weights_pass_laplaces_check():
    """k above 0.7 of weights within a few percent of each other (Gamma-Gamma on 200k customers: k 0.81, log
    weights of standard deviation 0.02) is no failure; the same k with unequal weights, or no k, is."""
    from clv.bayes.posterior import Diagnostics

    def check(laplace):
        d = Diagnostics("laplace", "clv", 1, 100, 0, 0.0)
        d.laplace = laplace
        return bayes_fit._unreliable(d)

    assert check({"pareto_k": 0.81, "importance_ess_share": 0.9996}) is None
    assert check({"pareto_k": 0.5, "importance_ess_share": 0.2}) is None
    assert (
        check({"pareto_k": 0.81, "importance_ess_share": 0.9}) == "Pareto k 0.81 > 0.7, importance ESS 90.0% of draws"
    )
    assert check({"pareto_k": None}) == "Pareto k not computed"
