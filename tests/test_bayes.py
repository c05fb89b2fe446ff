"""Bayesian fits and posterior predictions. The fast tests use fixed posterior draws or the Laplace
approximation (no sampling); NUTS, Pathfinder and ADVI runs are marked slow."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoBetaBinomModel, BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from clv.bayes import predict
from clv.bayes.fit import build_model, fit_posterior
from clv.bayes.posterior import Diagnostics, Posterior, warn_or_raise
from clv.bayes.predict import DrawOptions, ValueOptions
from clv.config import BayesConfig, PriorConfig
from clv.errors import ConfigError, ConvergenceWarning, FitError
from clv.value import value_customers

from . import reference_values as ref

BG_MLE = np.array([0.242594, 4.413602, 0.792922, 2.425907])
GG_MLE = np.array([6.249572, 3.744225, 15.443523])


def fixed(name: str, names: tuple[str, ...], draws: np.ndarray) -> Posterior:
    return Posterior(
        name, names, np.asarray(draws, dtype=float), Diagnostics("nuts", "pymc", 1, len(draws), 0, 0.0), {}
    )


def spread(center: np.ndarray, n: int, scale: float, seed: int) -> np.ndarray:
    return center * np.exp(np.random.default_rng(seed).normal(0.0, scale, (n, center.size)))


# ---------- the PyMC model ----------


def test_the_models_log_density_is_the_likelihood_plus_the_priors(cdnow_rfm):
    """The PyMC model's potential is the likelihood graph (tests/test_graphs.py holds it to the numpy function):
    with flat priors its log density at the rescaled parameters is `problem.total` plus the log-transform's
    Jacobian, and its gradient is the likelihood's in the log parameters, plus 1. Compiled by Numba, as nutpie
    compiles it (PyTensor's C backend, which PyMC's own sampler uses, has a digamma good to about 3e-9)."""
    problem = BetaGeoModel().likelihood_problem(cdnow_rfm)
    flat = {name: PriorConfig(distribution="flat") for name in problem.param_names}
    model = build_model(problem, flat)
    point = np.array([0.3, 1.2, 0.9, 2.0])
    values = {f"{v.name}": np.log(p) for v, p in zip(model.value_vars, point, strict=True)}
    logp = model.compile_logp(jacobian=True, mode="NUMBA")(values)
    dlogp = model.compile_dlogp(jacobian=True, mode="NUMBA")(values)
    value, grad = problem.total(point)
    assert float(logp) == pytest.approx(value + np.log(point).sum(), rel=1e-12)
    np.testing.assert_allclose(dlogp, grad * point + 1.0, rtol=1e-10)


def test_flat_priors_put_the_posterior_mode_at_the_mle(cdnow_rfm):
    import pymc as pm

    problem = BetaGeoModel().likelihood_problem(cdnow_rfm)
    flat = {name: PriorConfig(distribution="flat") for name in problem.param_names}
    with build_model(problem, flat):
        start = {"r": 0.5, "alpha_rescaled": 1.0, "a": 1.0, "b": 2.0}
        mode = pm.find_MAP(progressbar=False, start=start, method="BFGS", tol=1e-12)
    got = np.array([float(mode[k]) for k in ("r", "alpha", "a", "b")])
    np.testing.assert_allclose(got, list(ref.BGNBD_CDNOW.values()), rtol=2e-3)
    mle = BetaGeoModel().fit(cdnow_rfm)
    np.testing.assert_allclose(got, list(mle.params_.values()), rtol=1e-6)


def test_unknown_prior_name_is_refused(cdnow_rfm):
    problem = BetaGeoModel().likelihood_problem(cdnow_rfm)
    with pytest.raises(ConfigError, match=r"bayes\.priors names s"):
        build_model(problem, {"s": PriorConfig()})


# ---------- Laplace (fast, deterministic) ----------


def test_laplace_matches_the_mle_and_is_unit_invariant(cdnow_rfm):
    options = BayesConfig(inference="laplace", chains=1, draws=2000)
    weeks = fit_posterior(BetaGeoModel(), cdnow_rfm, options, seed=3)
    days = cdnow_rfm.assign(recency=cdnow_rfm["recency"] * 7, T=cdnow_rfm["T"] * 7)
    in_days = fit_posterior(BetaGeoModel(), days, options, seed=3)
    # the same posterior, alpha scaled by 7: the priors are on rescaled parameters
    scale = np.array([1.0, 7.0, 1.0, 1.0])
    np.testing.assert_allclose(in_days.draws, weeks.draws * scale, rtol=1e-6)
    mean = weeks.mean()
    for name, value in ref.BGNBD_CDNOW.items():
        assert mean[name] == pytest.approx(value, rel=0.08)
    assert weeks.diagnostics.passed, weeks.diagnostics.problems
    assert weeks.diagnostics.laplace is not None and weeks.diagnostics.laplace["pareto_k"] < 0.7


def test_laplace_on_gamma_gamma_and_seeded(cdnow_rfm):
    options = BayesConfig(inference="laplace", chains=1, draws=500)
    a = fit_posterior(GammaGammaModel(), cdnow_rfm, options, seed=5)
    b = fit_posterior(GammaGammaModel(), cdnow_rfm, options, seed=5)
    np.testing.assert_array_equal(a.draws, b.draws)
    for name, value in ref.GAMMA_GAMMA_CDNOW.items():
        assert a.mean()[name] == pytest.approx(value, rel=0.08)


def test_failed_diagnostics_warn_or_raise():
    post = fixed("bgnbd", ("r",), np.ones((10, 1)))
    post.diagnostics.problems.append("R-hat 1.2 > 1.01")
    with pytest.warns(ConvergenceWarning, match="R-hat 1.2"):
        warn_or_raise(post, strict=False)
    with pytest.raises(FitError, match="fails its diagnostics"):
        warn_or_raise(post, strict=True)


# ---------- predictions from fixed draws ----------


def test_a_point_posterior_reproduces_the_mle_value(cdnow_rfm):
    """With every draw at the same parameters, posterior means equal the ML predictions and credible intervals
    collapse onto them."""
    p_post = fixed("bgnbd", BetaGeoModel.param_names, np.tile(BG_MLE, (20, 1)))
    s_post = fixed("gamma_gamma", GammaGammaModel.param_names, np.tile(GG_MLE, (20, 1)))
    got = predict.value_posterior(
        BetaGeoModel, p_post, s_post, cdnow_rfm, ValueOptions(52.0, 0.1, 0.8, "W", DrawOptions(0.9, 20, 1))
    )
    point = value_customers(
        BetaGeoModel.from_params(**dict(zip(BetaGeoModel.param_names, BG_MLE, strict=True))),
        GammaGammaModel.from_params(**dict(zip(GammaGammaModel.param_names, GG_MLE, strict=True))),
        cdnow_rfm,
        52.0,
        0.1,
        0.8,
        "W",
    )
    for column in ("p_alive", "expected_purchases", "expected_spend", "clv"):
        np.testing.assert_allclose(got.customers[column], point.customers[column], rtol=1e-10)
        np.testing.assert_allclose(got.customers[f"{column}_lo"], point.customers[column], rtol=1e-10)
        np.testing.assert_allclose(got.customers[f"{column}_hi"], point.customers[column], rtol=1e-10)
    for column in ("expected_purchases", "expected_revenue", "discounted_profit"):
        np.testing.assert_allclose(got.forecast[column], point.forecast[column], rtol=1e-10)
    np.testing.assert_allclose(got.schedule().iloc[:, 1:], point.schedule().iloc[:, 1:], rtol=1e-9, atol=1e-12)


def test_a_posterior_forecast_has_the_calendar_months_of_the_point_one(cdnow_rfm):
    end = dt.date(1997, 9, 15)
    p_post = fixed("bgnbd", BetaGeoModel.param_names, np.tile(BG_MLE, (20, 1)))
    s_post = fixed("gamma_gamma", GammaGammaModel.param_names, np.tile(GG_MLE, (20, 1)))
    options = ValueOptions(365 / 7, 0.1, 1.0, "W", DrawOptions(0.9, 20, 1), calibration_end=end)
    got = predict.value_posterior(BetaGeoModel, p_post, s_post, cdnow_rfm, options)
    point = value_customers(
        BetaGeoModel.from_params(**dict(zip(BetaGeoModel.param_names, BG_MLE, strict=True))),
        GammaGammaModel.from_params(**dict(zip(GammaGammaModel.param_names, GG_MLE, strict=True))),
        cdnow_rfm,
        365 / 7,
        0.1,
        1.0,
        "W",
        calibration_end=end,
    )
    months = ["month", "start_date", "end_date", "days", "partial"]
    pd.testing.assert_frame_equal(got.forecast[months], point.forecast[months])
    assert got.forecast["month"].iloc[0] == "1997-09" and got.forecast["partial"].iloc[[0, -1]].all()
    np.testing.assert_allclose(got.forecast["expected_revenue"], point.forecast["expected_revenue"], rtol=1e-10)
    assert list(got.schedule().columns) == list(point.schedule().columns)


def test_posterior_means_are_averages_over_draws(cdnow_rfm):
    """Each draw computed independently by the ML value code, then averaged: the same as value_posterior."""
    p_draws, s_draws = spread(BG_MLE, 6, 0.1, 1), spread(GG_MLE, 6, 0.05, 2)
    p_post = fixed("bgnbd", BetaGeoModel.param_names, p_draws)
    s_post = fixed("gamma_gamma", GammaGammaModel.param_names, s_draws)
    got = predict.value_posterior(
        BetaGeoModel, p_post, s_post, cdnow_rfm, ValueOptions(39.0, 0.1, 1.0, "W", DrawOptions(0.9, 6, 4))
    )
    pairs = zip(p_post.subsample(6, 4), s_post.subsample(6, 5), strict=True)
    values = [
        value_customers(
            BetaGeoModel.from_params(**dict(zip(BetaGeoModel.param_names, p, strict=True))),
            GammaGammaModel.from_params(**dict(zip(GammaGammaModel.param_names, s, strict=True))),
            cdnow_rfm,
            39.0,
            0.1,
            1.0,
            "W",
        )
        for p, s in pairs
    ]
    for column in ("p_alive", "expected_purchases", "expected_spend", "clv"):
        stacked = np.column_stack([v.customers[column] for v in values])
        np.testing.assert_allclose(got.customers[column], stacked.mean(axis=1), rtol=1e-9)
        np.testing.assert_allclose(got.customers[f"{column}_hi"], np.quantile(stacked, 0.95, axis=1), rtol=1e-9)
    monthly = np.stack([v.forecast["expected_revenue"].to_numpy() for v in values])
    np.testing.assert_allclose(got.forecast["expected_revenue"], monthly.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(got.forecast["expected_revenue_p90"], np.quantile(monthly, 0.9, axis=0), rtol=1e-9)
    total = monthly.sum(axis=1)
    assert got.totals["expected_revenue"]["p10"] == pytest.approx(np.quantile(total, 0.1), rel=1e-9)
    schedule = np.mean([v.schedule().iloc[:, 1:].to_numpy() for v in values], axis=0)
    np.testing.assert_allclose(got.schedule().iloc[:, 1:], schedule, rtol=1e-8, atol=1e-12)


def test_blocks_do_not_change_the_answer(cdnow_rfm, monkeypatch):
    p_post = fixed("bgnbd", BetaGeoModel.param_names, spread(BG_MLE, 8, 0.1, 7))
    s_post = fixed("gamma_gamma", GammaGammaModel.param_names, spread(GG_MLE, 8, 0.05, 8))
    args = (BetaGeoModel, p_post, s_post, cdnow_rfm, ValueOptions(52.0, 0.1, 1.0, "W", DrawOptions(0.9, 8, 2)))
    whole = predict.value_posterior(*args)
    monkeypatch.setattr(predict, "_BLOCK", 97)
    blocks = predict.value_posterior(*args)
    for column in ("p_alive", "clv_lo", "clv_hi", "expected_spend_hi"):
        np.testing.assert_allclose(blocks.customers[column], whole.customers[column], rtol=1e-12)
    np.testing.assert_allclose(
        blocks.forecast["expected_revenue_p50"], whole.forecast["expected_revenue_p50"], rtol=1e-12
    )


def test_threads_do_not_change_the_answer(cdnow_rfm, monkeypatch):
    monkeypatch.setattr(predict, "_BLOCK", 300)
    p_post = fixed("bgnbd", BetaGeoModel.param_names, spread(BG_MLE, 8, 0.1, 7))
    s_post = fixed("gamma_gamma", GammaGammaModel.param_names, spread(GG_MLE, 8, 0.05, 8))
    args = (BetaGeoModel, p_post, s_post, cdnow_rfm)
    options = ValueOptions(52.0, 0.1, 1.0, "W", DrawOptions(0.9, 8, 2))
    one = predict.value_posterior(*args, replace(options, workers=1))
    two = predict.value_posterior(*args, replace(options, workers=2))
    pd.testing.assert_frame_equal(one.customers, two.customers)
    pd.testing.assert_frame_equal(one.forecast, two.forecast)
    assert one.totals == two.totals


def test_parts_holding_whole_blocks_get_the_whole_datas_numbers(cdnow_rfm, monkeypatch):
    """What the Spark engine relies on (clv.spark.posterior): the customers split into parts that each hold
    whole blocks of histories (`history_keys`), shuffled, each part valued with its blocks' keys, give every
    customer the numbers of the whole data's run bit for bit, predictive draws included, and the parts'
    portfolios and predictive parts add up to the whole's."""
    monkeypatch.setattr(predict, "_BLOCK", 150)  # many blocks on CDNOW
    p_post = fixed("bgnbd", BetaGeoModel.param_names, spread(BG_MLE, 40, 0.1, 7))
    s_post = fixed("gamma_gamma", GammaGammaModel.param_names, spread(GG_MLE, 40, 0.05, 8))
    options = ValueOptions(52.0, 0.1, 1.0, "W", DrawOptions(0.9, 40, 2), workers=2)
    whole = predict.value_posterior(BetaGeoModel, p_post, s_post, cdnow_rfm, options)
    held_whole, held_parts = predict.predictive_parts(BetaGeoModel, p_post, cdnow_rfm, 39.0, options.draws, 2)
    histories = cdnow_rfm[["frequency", "recency", "T"]].drop_duplicates()
    keys = predict.history_keys(histories, 40, 2)
    assert keys.max() >= 4
    keyed = cdnow_rfm.merge(histories.assign(key=keys), on=["frequency", "recency", "T"], how="left")
    shuffled = keyed.sample(frac=1.0, random_state=3)
    portfolio = predict.Portfolio.zeros(40, len(whole.forecast))
    held = predict.PredictiveParts(np.zeros(40), 0.0)
    rows = []
    for part_id in range(3):
        part = shuffled[shuffled["key"] % 3 == part_id].reset_index(drop=True)
        blocks = predict.part_blocks(part, part["key"].to_numpy())
        value = predict.value_posterior(BetaGeoModel, p_post, s_post, part.drop(columns="key"), options, blocks)
        frame, parts = predict.predictive_parts(BetaGeoModel, p_post, part, 39.0, options.draws, 2, blocks)
        portfolio, held = portfolio + value.portfolio, held + parts
        draws = value.clv_draws.read_rows(0, value.clv_draws.shape[0])[value.clv_index]
        rows.append((value.customers.assign(__held=frame["hi"].to_numpy()), draws))
    got = pd.concat([r for r, _ in rows]).set_index("customer_id")
    draws = np.concatenate([d for _, d in rows])
    want = whole.customers.assign(__held=held_whole["hi"].to_numpy()).set_index("customer_id")
    order = want.index.get_indexer(got.index)
    pd.testing.assert_frame_equal(got, want.iloc[order], check_exact=True)
    whole_draws = whole.clv_draws.read_rows(0, whole.clv_draws.shape[0])[whole.clv_index]
    np.testing.assert_array_equal(draws, whole_draws[order])
    np.testing.assert_allclose(portfolio.monthly_revenue, whole.portfolio.monthly_revenue, rtol=1e-12)
    assert portfolio.revenue_variance == pytest.approx(whole.portfolio.revenue_variance, rel=1e-12)
    np.testing.assert_allclose(held.expected_total, held_parts.expected_total, rtol=1e-12)
    assert held.process == pytest.approx(held_parts.process, rel=1e-12)
    with pytest.raises(ValueError, match="whole blocks"):
        predict.part_blocks(keyed, np.where(keyed["key"] == 0, 2, keyed["key"]).astype(np.int64))


def test_without_spend_values_are_purchases(cdnow_rfm):
    p_post = fixed(
        "pareto_nbd", ParetoNBDModel.param_names, spread(np.array([0.553, 10.578, 0.606, 11.669]), 5, 0.05, 3)
    )
    got = predict.value_posterior(
        ParetoNBDModel, p_post, None, cdnow_rfm, ValueOptions(52.0, 0.1, 1.0, "W", DrawOptions(0.8, 5, 0))
    )
    assert "expected_spend" not in got.customers and "expected_revenue" not in got.forecast
    assert (got.customers["clv"] <= got.customers["expected_purchases"] + 1e-12).all()  # discounting shrinks
    assert got.customers["clv_lo"].le(got.customers["clv_hi"]).all()


def test_predictive_intervals_contain_their_expectation_and_are_counts(cdnow_rfm):
    p_post = fixed("bgnbd", BetaGeoModel.param_names, spread(BG_MLE, 200, 0.05, 9))
    frame, total = predict.predictive_purchases(BetaGeoModel, p_post, cdnow_rfm, 39.0, DrawOptions(0.9, 200, 1))
    assert np.all(frame["lo"] == np.floor(frame["lo"])) and np.all(frame["hi"] == np.floor(frame["hi"]))
    assert (frame["lo"] <= frame["hi"]).all() and (frame["lo"] >= 0).all()
    # customers who bought often have wide intervals around their expectation
    busy = (cdnow_rfm["frequency"].to_numpy() >= 10) & (frame["expected"].to_numpy() >= 1)
    assert (frame["expected"][busy] < frame["hi"][busy]).all() and (frame["hi"] - frame["lo"])[busy].min() >= 2
    assert total["lo"] < total["mean"] < total["hi"]
    assert total["mean"] == pytest.approx(ref.BGNBD_CDNOW_HOLDOUT_PREDICTION, rel=0.02)


def test_tier_probabilities_of_a_point_posterior_are_the_tiers(cdnow_rfm):
    from clv.config import TiersConfig
    from clv.tiers import assign_tiers, tier_probabilities

    p_post = fixed("bgnbd", BetaGeoModel.param_names, np.tile(BG_MLE, (10, 1)))
    s_post = fixed("gamma_gamma", GammaGammaModel.param_names, np.tile(GG_MLE, (10, 1)))
    got = predict.value_posterior(
        BetaGeoModel, p_post, s_post, cdnow_rfm, ValueOptions(52.0, 0.1, 1.0, "W", DrawOptions(0.9, 10, 1))
    )
    config = TiersConfig()
    clv = got.customers["clv"].to_numpy()
    tiers = assign_tiers(clv, config, got.customers["customer_id"].to_numpy())
    probabilities = tier_probabilities(got.clv_draws, got.clv_index, config)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    # away from ties at the cut-offs, every draw puts the customer in the same tier
    distinct = ~pd.Series(clv).duplicated(keep=False).to_numpy()
    assert np.all(probabilities[distinct, tiers[distinct]] == 1.0)


# ---------- simulation of future purchases (the predictive intervals' engine) ----------


@pytest.mark.parametrize(
    ("cls", "params", "frame"),
    [
        (BetaGeoModel, dict(zip(BetaGeoModel.param_names, BG_MLE, strict=True)), "continuous"),
        (ModifiedBetaGeoModel, ref.MBGNBD_CDNOW, "continuous"),
        (ParetoNBDModel, ref.PARETO_CDNOW, "continuous"),
        (BetaGeoBetaBinomModel, ref.BGBB_DONATIONS, "discrete"),
    ],
)
def test_simulated_purchases_average_to_the_expectation(cls, params, frame):
    if frame == "continuous":
        rfm = pd.DataFrame(
            {"frequency": [0, 2, 7, 1], "recency": [0.0, 30.4, 36.0, 5.0], "T": [38.9, 38.9, 38.9, 20.0]}
        )
        horizon = 39.0
    else:
        rfm = pd.DataFrame({"frequency": [0, 2, 5, 6], "recency": [0, 4, 6, 6], "T": [6, 6, 6, 6]})
        horizon = 5
    model = cls.from_params(**params)
    copies = 40_000
    many = rfm.loc[np.tile(np.arange(len(rfm)), copies)].reset_index(drop=True)
    sims = model.simulate_purchases(many, horizon, np.random.default_rng(11)).reshape(copies, len(rfm))
    se = sims.std(axis=0) / np.sqrt(sims.shape[0])
    assert np.all(np.abs(sims.mean(axis=0) - model.expected_purchases(rfm, horizon)) < 4.5 * se + 1e-12)
    p0 = model.probability_of_purchases(rfm, 0, horizon)
    assert np.all(np.abs((sims == 0).mean(axis=0) - p0) < 4.5 * np.sqrt(p0 * (1 - p0) / sims.shape[0]) + 1e-12)


# ---------- sampling (slow) ----------


def test_auto_falls_back_to_pymc_and_says_why(cdnow_rfm, monkeypatch):
    """sampler auto: nutpie when it compiles; PyMC's NUTS when nutpie is missing or fails, with the reason in
    `sampler_note`; sampler nutpie: those are errors."""
    import arviz as az

    from clv.bayes import fit

    def failing(*args, **kwargs):
        raise RuntimeError("no compiler here")

    def pymc_sampler(problem, initial, options, seed, progress):
        names = {n: np.full((1, options.draws), v) for n, v in initial.items()}
        idata = az.from_dict(posterior=names, sample_stats={"diverging": np.zeros((1, options.draws), bool)})
        return fit._Timed(idata, 0.0, 1.5)

    monkeypatch.setattr(fit, "_sample_nutpie", failing)
    monkeypatch.setattr(fit, "_sample_pymc", pymc_sampler)
    problem = BetaGeoModel().likelihood_problem(cdnow_rfm)
    initial = {"r": 0.24, "alpha_rescaled": 1.1, "a": 0.8, "b": 2.4}
    _, d = fit._nuts(problem, initial, BayesConfig(draws=50), 1, False)
    assert d.sampler == "pymc" and d.sampler_note is not None
    assert "nutpie failed (RuntimeError: no compiler here)" in d.sampler_note
    assert (d.compile_seconds, d.sampling_seconds) == (0.0, 1.5)
    with pytest.raises(FitError, match="nutpie could not compile or sample the model: no compiler here"):
        fit._nuts(problem, initial, BayesConfig(draws=50, sampler="nutpie"), 1, False)
    monkeypatch.setattr(fit, "nutpie_available", lambda: False)
    _, d = fit._nuts(problem, initial, BayesConfig(draws=50), 1, False)
    assert d.sampler == "pymc" and d.sampler_note is not None and "nutpie is not installed" in d.sampler_note
    with pytest.raises(FitError, match="nutpie is not installed"):
        fit._nuts(problem, initial, BayesConfig(draws=50, sampler="nutpie"), 1, False)


def test_a_compiled_model_is_one_per_structure(cdnow_rfm):
    """The cache key: the model, the free parameters' names (rescaled or not) and their priors; not the data."""
    from clv.bayes.fit import _structure

    problem = BetaGeoModel().likelihood_problem(cdnow_rfm)
    half = BetaGeoModel().likelihood_problem(cdnow_rfm.iloc[:1000])
    assert _structure(problem, {}) == _structure(half, {})
    assert _structure(problem, {}) != _structure(problem, {"b": PriorConfig(distribution="flat")})
    other = ModifiedBetaGeoModel().likelihood_problem(cdnow_rfm)
    assert _structure(problem, {}) != _structure(other, {})


@pytest.mark.slow
def test_nuts_on_cdnow_converges_near_the_mle(cdnow_rfm):
    post = fit_posterior(BetaGeoModel(), cdnow_rfm, BayesConfig(), seed=1)
    d = post.diagnostics
    assert d.sampler == "nutpie" and d.sampler_note is None  # the compiled path
    assert d.compile_seconds is not None and d.sampling_seconds is not None and d.ess_bulk_per_second
    assert d.r_hat_max is not None and d.r_hat_max <= 1.01
    assert d.divergences == 0 and d.ess_bulk_min is not None and d.ess_bulk_min > 400
    mean, median = post.mean(), dict(zip(post.param_names, np.median(post.draws, axis=0), strict=True))
    for name, value in ref.BGNBD_CDNOW.items():
        assert mean[name] == pytest.approx(value, rel=0.10)  # b's posterior is right-skewed: its mean is ~7% above
        assert median[name] == pytest.approx(value, rel=0.03)
    again = fit_posterior(BetaGeoModel(), cdnow_rfm, BayesConfig(), seed=1)
    np.testing.assert_array_equal(again.draws, post.draws)  # seeded, and the same with the compiled model reused
    assert again.diagnostics.compile_seconds == 0.0
    # the compiled model takes other data of the same model: a sample of the customers, rows and counts differ
    half = fit_posterior(BetaGeoModel(), cdnow_rfm.iloc[::2], BayesConfig(chains=2, draws=300, tune=300), seed=1)
    assert half.diagnostics.compile_seconds == 0.0
    np.testing.assert_allclose(np.median(half.draws, axis=0), list(half.mle.values()), rtol=0.1)


@pytest.mark.slow
def test_pymcs_sampler_runs_the_same_graph(cdnow_rfm):
    options = BayesConfig(sampler="pymc", chains=2, draws=300, tune=300, ess_min=100)
    post = fit_posterior(GammaGammaModel(), cdnow_rfm, options, seed=1)
    assert post.diagnostics.sampler == "pymc" and post.diagnostics.r_hat_max <= 1.02
    np.testing.assert_allclose(np.median(post.draws, axis=0), list(post.mle.values()), rtol=0.06)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [ParetoNBDModel, ModifiedBetaGeoModel, GammaGammaModel])
def test_nuts_for_the_other_models(cdnow_rfm, cls):
    post = fit_posterior(cls(), cdnow_rfm, BayesConfig(chains=2, draws=500, tune=500, ess_min=100), seed=2)
    assert post.diagnostics.sampler == "nutpie"
    assert post.diagnostics.r_hat_max is not None and post.diagnostics.r_hat_max <= 1.02
    median = np.median(post.draws, axis=0)
    np.testing.assert_allclose(median, list(post.mle.values()), rtol=0.06)


@pytest.mark.slow
def test_nuts_for_bgbb(donations):
    options = BayesConfig(chains=2, draws=400, tune=400, ess_min=100)
    post = fit_posterior(BetaGeoBetaBinomModel(), donations, options, 3, weights=donations["weights"])
    assert post.diagnostics.sampler == "nutpie"
    np.testing.assert_allclose(np.median(post.draws, axis=0), list(ref.BGBB_DONATIONS.values()), rtol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("inference", ["pathfinder", "advi"])
def test_approximations_land_near_the_mle(cdnow_rfm, inference):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fit_posterior(
            BetaGeoModel(), cdnow_rfm, BayesConfig(inference=inference, chains=1, draws=1000, advi_iterations=20000), 4
        )
    # approximations: ADVI (mean-field) lands within 10%; Pathfinder's normal along an L-BFGS path under-covers
    # the right-skewed a and b (measured: medians 13% low), so it gets 20%
    tolerance = 0.2 if inference == "pathfinder" else 0.1
    np.testing.assert_allclose(np.median(post.draws, axis=0), list(ref.BGNBD_CDNOW.values()), rtol=tolerance)
