"""Bayesian fits with covariates and pooled groups (`model.pool_by`), and their posterior predictions.

References from outside the code under test: the numpy likelihood of the maximum-likelihood fit (the graphs must
equal it), a per-group loop with the models' own scalar functions (the pooled graph), the maximum-likelihood
value code run draw by draw with point models that have covariates (`value_customers`, per covariate pattern),
and the known parameters of simulated data (recovery). Fast tests use fixed draws or Laplace; NUTS runs are slow.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clv import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from clv.bayes import predict
from clv.bayes.fit import BayesProblem, _structure, build_model, fit_posterior
from clv.bayes.pooling import CENTRED_SE, PoolingOptions, pooled_problem, pooling_summary
from clv.bayes.posterior import CustomerLayout, Diagnostics, Posterior
from clv.bayes.predict import DrawOptions, ValueOptions
from clv.config import BayesConfig, PriorConfig
from clv.covariate_fit import pattern_groups
from clv.covariates import CovariateSet
from clv.errors import ConfigError, ConvergenceWarning, UsageError
from clv.model import FitResult
from clv.simulate import simulate_bgnbd, simulate_gamma_gamma, simulate_pareto_nbd
from clv.value import value_customers

BG_TRUE = {"r": 0.6, "alpha": 4.0, "a": 0.8, "b": 3.0}
PARETO_TRUE = {"r": 0.6, "alpha": 4.0, "s": 0.6, "beta": 10.0}
#: channel 1 buys e^0.5 = 1.6x as often (alpha_i = alpha e^-0.5) and drops out with a_i, b_i (or beta_i) moved
G_PURCHASE, G_DROPOUT = 0.5, -0.4
GG_TRUE = {"p": 6.0, "q": 4.0, "v": 15.0}
G_SPEND = 0.3


def with_channel(n0: int, n1: int, seed: int, pareto: bool = False) -> pd.DataFrame:
    """Customers of two channels drawn from BG/NBD (or Pareto/NBD) with CLVTools' covariate parameterisation:
    channel 1 has alpha e^-g_p and a e^g_d, b e^g_d (Pareto/NBD: beta e^-g_d); a mean spend from Gamma-Gamma with
    v e^g_s; and a region (3 levels) that has no effect."""
    if pareto:
        r, alpha, s, beta = PARETO_TRUE.values()
        f0 = simulate_pareto_nbd(n0, r, alpha, s, beta, seed=seed)
        f1 = simulate_pareto_nbd(n1, r, alpha * np.exp(-G_PURCHASE), s, beta * np.exp(-G_DROPOUT), seed=seed + 1)
    else:
        r, alpha, a, b = BG_TRUE.values()
        f0 = simulate_bgnbd(n0, r, alpha, a, b, seed=seed)
        shift = np.exp(G_DROPOUT)
        f1 = simulate_bgnbd(n1, r, alpha * np.exp(-G_PURCHASE), a * shift, b * shift, seed=seed + 1)
    frame = pd.concat([f0.assign(channel=0), f1.assign(channel=1)], ignore_index=True)
    p, q, v = GG_TRUE.values()
    x = frame["frequency"].to_numpy()
    spend0 = simulate_gamma_gamma(x, p, q, v, seed=seed + 2)
    spend1 = simulate_gamma_gamma(x, p, q, v * np.exp(G_SPEND), seed=seed + 3)
    frame["monetary_value"] = np.where(frame["channel"] == 1, spend1, spend0)
    frame["region"] = np.array(["north", "south", "west"])[np.arange(len(frame)) % 3]
    frame["customer_id"] = [f"c{i}" for i in range(len(frame))]
    return frame


def numba_logp(model, point: dict[str, np.ndarray]) -> float:
    values = {v.name: point[v.name] for v in model.value_vars}
    return float(model.compile_logp(jacobian=True, mode="NUMBA")(values))


# ---------- the PyMC model with covariates ----------


@pytest.mark.parametrize(
    "model",
    [
        BetaGeoModel(purchase_covariates=["channel"], dropout_covariates=["channel", "region"]),
        ParetoNBDModel(purchase_covariates=["channel", "region"], dropout_covariates=["channel"]),
        GammaGammaModel(spend_covariates=["channel", "region"]),
    ],
)
def test_the_covariate_models_log_density_is_the_likelihood_plus_the_priors(model):
    """The graph with per-row parameters equals the maximum-likelihood fit's numpy likelihood (`problem.total`
    at base parameters and e^g); flat priors on the base parameters add their log-transform's Jacobian, and
    each coefficient adds its Normal(0, sd) log density."""
    frame = with_channel(300, 200, seed=4)
    problem = model.likelihood_problem(frame)
    shaped = BayesProblem.of(problem, coefficient_sd=0.7, effects=dict(model.covariate_effects))
    k = len(model.param_names)
    flat = {name: PriorConfig(distribution="flat") for name in model.param_names}
    pm_model = build_model(shaped, flat)
    rng = np.random.default_rng(1)
    base = np.exp(rng.normal(0.0, 0.3, k)) * np.array(model.start_point())
    g = rng.normal(0.0, 0.3, problem.layout.size)
    point = {}
    for name, factor, value in zip(model.param_names, problem.factor, base, strict=False):
        point[f"{name}_rescaled_log__" if factor != 1.0 else f"{name}_log__"] = np.log(value)
    point |= dict(zip(problem.layout.names, g, strict=True))
    value, _ = problem.total(np.concatenate([base, np.exp(g)]))
    expected = value + np.log(base).sum() + stats.norm(0.0, 0.7).logpdf(g).sum()
    assert numba_logp(pm_model, point) == pytest.approx(expected, rel=1e-11)


def test_the_compiled_models_key_holds_the_covariate_layout():
    """One compiled model per structure: the same covariates on other customers share it; other covariates,
    another process, a constrained coefficient or another coefficient prior do not."""
    frame = with_channel(300, 200, seed=4)

    def key(model, data=frame, sd=1.0):
        problem = BayesProblem.of(model.likelihood_problem(data), coefficient_sd=sd, effects=model.covariate_effects)
        return _structure(problem, {})

    both = BetaGeoModel(purchase_covariates=["channel"], dropout_covariates=["channel"])
    assert key(both) == key(both, frame.iloc[::2])
    assert key(both) != key(BetaGeoModel(purchase_covariates=["channel"]))
    assert key(both) != key(BetaGeoModel(dropout_covariates=["channel"], purchase_covariates=["region"]))
    constrained = BetaGeoModel(
        purchase_covariates=["channel"], dropout_covariates=["channel"], constrained_covariates=["channel"]
    )
    assert key(both) != key(constrained)
    assert key(both) != key(both, sd=2.0)
    assert key(both) != key(BetaGeoModel())


def test_priors_on_coefficients_are_refused():
    frame = with_channel(300, 200, seed=4)
    model = BetaGeoModel(purchase_covariates=["channel"])
    options = BayesConfig(inference="laplace", priors={"purchase:channel": PriorConfig()})
    with pytest.raises(ConfigError, match="coefficient_prior_sd"):
        fit_posterior(model, frame, options, seed=1)


# ---------- recovery ----------


def _covers(posterior: Posterior, name: str, truth: float, level: float = 0.95) -> bool:
    column = posterior.draws[:, posterior.param_names.index(name)]
    lo, hi = np.quantile(column, [(1 - level) / 2, (1 + level) / 2])
    return bool(lo <= truth <= hi)


def _near_the_mle(posterior: Posterior, fitted, tolerance_sd: float) -> None:
    for process, coefficients in fitted.coefficients_.items():
        for design, value in coefficients.items():
            column = posterior.draws[:, posterior.param_names.index(f"{process}:{design}")]
            assert abs(np.median(column) - value) < tolerance_sd * column.std(), (process, design)


def test_laplace_recovers_the_coefficients_of_simulated_bgnbd_customers():
    """Customers drawn with known coefficients: the posterior's 95% intervals cover them, its medians are the
    maximum-likelihood coefficients to a fraction of a posterior sd (the N(0, 1) prior barely moves 6,000
    customers), and the draws carry the base parameters and the coefficients."""
    frame = with_channel(3000, 3000, seed=1)
    model = BetaGeoModel(purchase_covariates=["channel"], dropout_covariates=["channel"])
    began = time.perf_counter()
    posterior = fit_posterior(model, frame, BayesConfig(inference="laplace", chains=1, draws=2000), seed=2)
    seconds = time.perf_counter() - began
    assert posterior.param_names == ("r", "alpha", "a", "b", "purchase:channel", "dropout:channel")
    assert posterior.diagnostics.passed, posterior.diagnostics.problems
    assert _covers(posterior, "purchase:channel", G_PURCHASE)
    assert _covers(posterior, "dropout:channel", G_DROPOUT)
    for name, value in BG_TRUE.items():
        assert _covers(posterior, name, value, level=0.99), name
    mle = BetaGeoModel(purchase_covariates=["channel"], dropout_covariates=["channel"]).fit(frame)
    _near_the_mle(posterior, mle, 0.25)
    assert posterior.mle is not None and posterior.mle["purchase:channel"] == pytest.approx(
        mle.coefficients_["purchase"]["channel"], rel=1e-5
    )
    assert posterior.layout is not None and posterior.summary()["layout"]["slots"] == {"purchase": [0], "dropout": [1]}
    point = BetaGeoModel.from_result(posterior.point_result())  # the posterior mean as a point model
    assert point.coefficients_["dropout"]["channel"] == pytest.approx(posterior.mean()["dropout:channel"])
    assert point.params_["a"] == pytest.approx(posterior.mean()["a"])
    assert seconds < 10.0


def test_laplace_recovers_a_spend_coefficient():
    frame = with_channel(3000, 3000, seed=1)
    model = GammaGammaModel(spend_covariates=["channel"])
    posterior = fit_posterior(model, frame, BayesConfig(inference="laplace", chains=1, draws=2000), seed=2)
    assert _covers(posterior, "spend:channel", G_SPEND)
    _near_the_mle(posterior, GammaGammaModel(spend_covariates=["channel"]).fit(frame), 0.25)


@pytest.mark.slow
def test_nuts_recovers_the_coefficients_of_simulated_pareto_nbd_customers():
    """nutpie on the compiled graph with per-row parameters: intervals cover the known coefficients, medians
    near the maximum-likelihood fit's; converged."""
    frame = with_channel(2500, 2500, seed=7, pareto=True)
    model = ParetoNBDModel(purchase_covariates=["channel"], dropout_covariates=["channel"])
    options = BayesConfig(inference="nuts", chains=2, draws=300, tune=300, ess_min=100)
    posterior = fit_posterior(model, frame, options, seed=3)
    d = posterior.diagnostics
    print(f"\nPareto/NBD with covariates, NUTS: compile {d.compile_seconds} s, sampling {d.sampling_seconds} s")
    assert d.sampler == "nutpie"
    assert d.r_hat_max is not None and d.r_hat_max < 1.05 and not d.divergences
    assert _covers(posterior, "purchase:channel", G_PURCHASE)
    assert _covers(posterior, "dropout:channel", G_DROPOUT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mle = ParetoNBDModel(purchase_covariates=["channel"], dropout_covariates=["channel"]).fit(frame)
    _near_the_mle(posterior, mle, 0.5)


# ---------- predictions with covariates ----------


def covariate_posteriors(frame: pd.DataFrame, draws: int, scale: float, seed: int) -> tuple[Posterior, Posterior]:
    """Posteriors of BG/NBD with channel on both processes and region on purchase, and of Gamma-Gamma with
    channel on spend, with draws spread around fixed parameters."""
    rng = np.random.default_rng(seed)
    p_cov = CovariateSet.learn(
        frame, {"purchase": ("channel", "region"), "dropout": ("channel",)}, categorical={"region": None}
    )
    s_cov = CovariateSet.learn(frame, {"spend": ("channel",)})
    p_center = np.array([0.6, 4.0, 0.8, 3.0, 0.5, 0.2, -0.3, -0.4])  # base, then purchase:channel, region x2, dropout
    s_center = np.array([6.0, 4.0, 15.0, 0.3])
    p_draws = np.tile(p_center, (draws, 1)) + rng.normal(0.0, scale, (draws, p_center.size)) * np.r_[[0.0] * 4, [1] * 4]
    p_draws[:, :4] *= np.exp(rng.normal(0.0, scale, (draws, 4)))
    s_draws = np.tile(s_center, (draws, 1))
    s_draws[:, :3] *= np.exp(rng.normal(0.0, scale, (draws, 3)))
    s_draws[:, 3] += rng.normal(0.0, scale, draws)
    p_names = ("r", "alpha", "a", "b", "purchase:channel", "purchase:region[south]", "purchase:region[west]")
    p_layout = CustomerLayout(
        BetaGeoModel.param_names, p_cov, BetaGeoModel.covariate_effects, {"purchase": (0, 1, 2), "dropout": (3,)}
    )
    s_layout = CustomerLayout(GammaGammaModel.param_names, s_cov, GammaGammaModel.covariate_effects, {"spend": (0,)})
    diagnostics = Diagnostics("nuts", "nutpie", 1, draws, 0, 0.0)
    purchase = Posterior("bgnbd", (*p_names, "dropout:channel"), p_draws, diagnostics, {}, layout=p_layout)
    spend = Posterior("gamma_gamma", ("p", "q", "v", "spend:channel"), s_draws, diagnostics, {}, layout=s_layout)
    return purchase, spend


def point_models(purchase: Posterior, spend: Posterior, p: np.ndarray, s: np.ndarray):
    """The maximum-likelihood models with covariates at one draw of each posterior."""
    p_cov, s_cov = purchase.layout.covariates, spend.layout.covariates
    bg = BetaGeoModel.from_result(
        FitResult(
            params=dict(zip(BetaGeoModel.param_names, p[:4], strict=True)),
            coefficients={
                "purchase": dict(zip(p_cov.design_names("purchase"), p[4:7], strict=True)),
                "dropout": {"channel": float(p[7])},
            },
            covariates=p_cov,
        )
    )
    gg = GammaGammaModel.from_result(
        FitResult(
            params=dict(zip(GammaGammaModel.param_names, s[:3], strict=True)),
            coefficients={"spend": {"channel": float(s[3])}},
            covariates=s_cov,
        )
    )
    return bg, gg


def value_by_pattern(bg: BetaGeoModel, gg: GammaGammaModel, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The maximum-likelihood value code run per covariate pattern: each pattern's customers (the same
    parameters under `row_params`, the core's per-customer parameters) valued by the models without covariates
    at that pattern's parameters. Per-customer columns, the monthly revenue and the schedule."""
    P, S = bg.row_params(frame), gg.row_params(frame)
    out: dict[str, np.ndarray] = {}
    for rows in pattern_groups(np.hstack([P, S])):
        part = value_customers(
            bg.pattern_model(P[rows[0]]), gg.pattern_model(S[rows[0]]), frame.iloc[rows], 39.0, 0.1, 1.0, "W"
        )
        for column in ("p_alive", "expected_purchases", "expected_spend", "clv"):
            out.setdefault(column, np.full(len(frame), np.nan))[rows] = part.customers[column].to_numpy()
        out["revenue"] = out.get("revenue", 0.0) + part.forecast["expected_revenue"].to_numpy()
        schedule = part.schedule().iloc[:, 1:].to_numpy()
        out.setdefault("schedule", np.full((len(frame), schedule.shape[1]), np.nan))[rows] = schedule
    return out


def test_posterior_values_with_covariates_are_averages_over_draws():
    """Each draw valued per covariate pattern by the maximum-likelihood code (`value_by_pattern`), then
    averaged: the same as value_posterior's per-pattern draws."""
    frame = with_channel(400, 300, seed=5)
    purchase, spend = covariate_posteriors(frame, draws=5, scale=0.1, seed=3)
    options = ValueOptions(39.0, 0.1, 1.0, "W", DrawOptions(0.9, 5, 4))
    got = predict.value_posterior(BetaGeoModel, purchase, spend, frame, options)
    pairs = zip(purchase.subsample(5, 4), spend.subsample(5, 5), strict=True)
    values = [value_by_pattern(*point_models(purchase, spend, p, s), frame) for p, s in pairs]
    for column in ("p_alive", "expected_purchases", "expected_spend", "clv"):
        stacked = np.column_stack([v[column] for v in values])
        np.testing.assert_allclose(got.customers[column], stacked.mean(axis=1), rtol=1e-9)
        np.testing.assert_allclose(got.customers[f"{column}_hi"], np.quantile(stacked, 0.95, axis=1), rtol=1e-9)
    monthly = np.stack([v["revenue"] for v in values])
    np.testing.assert_allclose(got.forecast["expected_revenue"], monthly.mean(axis=0), rtol=1e-9)
    schedule = np.mean([v["schedule"] for v in values], axis=0)
    np.testing.assert_allclose(got.schedule().iloc[:, 1:], schedule, rtol=1e-8, atol=1e-12)
    # the covariates matter: channel 1's spend is e^0.3 times channel 0's
    spend_by_channel = got.customers.groupby(frame["channel"].to_numpy())["expected_spend"].mean()
    assert spend_by_channel[1] > 1.1 * spend_by_channel[0]


def test_a_point_posterior_with_covariates_predicts_as_the_point_model():
    """Every draw at the posterior mean: per-customer predictions, the holdout's expectation and the simulated
    counts' mean equal the point model's, per covariate pattern."""
    frame = with_channel(400, 300, seed=6)
    purchase, spend = covariate_posteriors(frame, draws=4, scale=0.1, seed=2)
    mean_p, mean_s = purchase.draws.mean(axis=0), spend.draws.mean(axis=0)
    point = Posterior(
        "bgnbd", purchase.param_names, np.tile(mean_p, (30, 1)), purchase.diagnostics, {}, layout=purchase.layout
    )
    bg, _ = point_models(purchase, spend, mean_p, mean_s)
    got = predict.posterior_predict(
        BetaGeoModel, point, frame, "expected_purchases", DrawOptions(0.9, 30, 1), horizon=20
    )
    np.testing.assert_allclose(got["mean"], bg.expected_purchases(frame, 20.0), rtol=1e-10)
    np.testing.assert_allclose(got["hi"], got["lo"], rtol=1e-12)
    alive = predict.posterior_predict(BetaGeoModel, point, frame, "probability_alive", DrawOptions(0.9, 30, 1))
    np.testing.assert_allclose(alive["mean"], bg.probability_alive(frame), rtol=1e-10)
    held, _ = predict.predictive_purchases(BetaGeoModel, point, frame, 20.0, DrawOptions(0.9, 30, 1))
    np.testing.assert_allclose(held["expected"], bg.expected_purchases(frame, 20.0), rtol=1e-10)


# ---------- pooled groups ----------


def grouped(sizes: dict[str, int], seed: int, spread: float = 0.3) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """BG/NBD customers in groups of the given sizes, each group's parameters drawn around a common mean (log
    scale, sd `spread`), with mean spends from one Gamma-Gamma."""
    rng = np.random.default_rng(seed)
    center = np.log(list(BG_TRUE.values()))
    truth, frames = {}, []
    for i, (group, n) in enumerate(sizes.items()):
        truth[group] = np.exp(center + rng.normal(0.0, spread, 4))
        frames.append(simulate_bgnbd(n, *truth[group], seed=seed + 10 + i).assign(segment=group))
    frame = pd.concat(frames, ignore_index=True)
    frame["monetary_value"] = simulate_gamma_gamma(frame["frequency"].to_numpy(), 6.0, 4.0, 15.0, seed=seed)
    frame["customer_id"] = [f"c{i}" for i in range(len(frame))]
    return frame, truth


def test_the_pooled_likelihood_is_the_sum_over_groups():
    """The pooled model's likelihood potential at given group parameters is the sum over groups of the BG/NBD
    log-likelihood of the group's rows at its parameters (the model's numpy function, group by group); its
    prior terms are the hierarchy's."""
    frame, _ = grouped({"A": 300, "B": 60, "C": 12}, seed=2)
    model = BetaGeoModel()
    whole = model.likelihood_problem(frame)
    # information per customer such that some (group, parameter) pairs are centred and some are not
    problem, groups = pooled_problem(model, frame, None, "segment", 1.0, np.array([0.1, 0.01, 0.1, 0.01]))
    assert groups.centred.any() and not groups.centred.all()
    shaped = BayesProblem.of(problem, groups=groups)
    pm_model = build_model(shaped, {})
    rng = np.random.default_rng(3)
    theta = np.exp(np.log(model.start_point())[None, :] + rng.normal(0.0, 0.3, (3, 4)))  # rescaled, per group
    mu, tau = np.log(model.start_point()) + 0.1, np.array([0.4, 0.5, 0.6, 0.7])
    point = {}
    for j, name in enumerate(model.param_names):
        factor = whole.factor[j]
        level = f"{name}_population_rescaled_log__" if factor != 1.0 else f"{name}_population_log__"
        point[level] = mu[j]
        point[f"tau_log_{name}_log__"] = np.log(tau[j])
        c = groups.centred[:, j]
        point[f"z_{name}"] = np.where(c, np.log(theta[:, j]), (np.log(theta[:, j]) - mu[j]) / tau[j])
    (potential,) = pm_model.replace_rvs_by_values([pm_model["log_likelihood"]])  # at the values, not draws
    fn = pm_model.compile_fn(potential, inputs=pm_model.value_vars, mode="NUMBA", on_unused_input="ignore")
    got = float(fn(point))
    rows = problem.rows
    expected = 0.0
    for g in range(3):
        mine = groups.index == g
        ll, _ = model._loglik_grad(theta[g], rows["x"][mine], rows["t_x"][mine], rows["T"][mine])
        expected += float(problem.weights[mine] @ ll)
    assert got == pytest.approx(expected, rel=1e-11)
    assert groups.levels == ("A", "B", "C")


def test_groups_with_strong_data_are_centred():
    frame, _ = grouped({"A": 3000, "B": 20}, seed=2)
    with pytest.warns(ConvergenceWarning, match="2 groups .A, B.: the spread"):  # few groups: tau is its prior's
        _, groups = pooled_problem(BetaGeoModel(), frame, None, "segment", 1.0, np.full(4, 0.01))
    # standard errors 1 / sqrt(n 0.01): 0.18 for 3,000 customers, 2.2 for 20
    assert groups.centred[0].all() and not groups.centred[1].any()
    assert 1.0 / np.sqrt(3000 * 0.01) < CENTRED_SE < 1.0 / np.sqrt(20 * 0.01)


def pooled_posterior(frame: pd.DataFrame, draws: np.ndarray) -> Posterior:
    model = BetaGeoModel()
    _, groups = pooled_problem(model, frame, None, "segment", 1.0, np.ones(len(model.param_names)))
    names = tuple(f"{n}[{g}]" for g in groups.levels for n in model.param_names)
    return Posterior(
        model.name, names, draws, Diagnostics("nuts", "nutpie", 1, len(draws), 0, 0.0), {}, layout=groups.layout
    )


def test_pooled_predictions_are_each_groups_own():
    """A pooled posterior predicts each customer with their group's draws: the same as valuing each group's
    customers by the maximum-likelihood code with that group's parameters, draw by draw."""
    frame, truth = grouped({"A": 300, "B": 60, "C": 12}, seed=2)
    rng = np.random.default_rng(4)
    blocks = np.concatenate([truth[g] for g in ("A", "B", "C")])
    draws = blocks[None, :] * np.exp(rng.normal(0.0, 0.05, (4, 12)))
    posterior = pooled_posterior(frame, draws)
    got = predict.value_posterior(
        BetaGeoModel, posterior, None, frame, ValueOptions(39.0, 0.1, 1.0, "W", DrawOptions(0.9, 4, 2))
    )
    order = posterior.subsample(4, predict.seeds.stream_seed(2, "purchase_draws"))
    for g, group in enumerate(("A", "B", "C")):
        rows = (frame["segment"] == group).to_numpy()
        per_draw = [
            value_customers(
                BetaGeoModel.from_params(**dict(zip(BetaGeoModel.param_names, d[4 * g : 4 * g + 4], strict=True))),
                None,
                frame.loc[rows],
                39.0,
                0.1,
                1.0,
                "W",
            ).customers["p_alive"]
            for d in order
        ]
        np.testing.assert_allclose(got.customers["p_alive"][rows], np.mean(per_draw, axis=0), rtol=1e-9)


def test_the_pooling_summary_shows_the_shrinkage():
    """Per group: the posterior beside the separate fit, and the weight toward the population: (separate - pooled)
    / (separate - population) on the log scale, by hand here."""
    frame, _ = grouped({"A": 300, "B": 60}, seed=2)
    _, groups = pooled_problem(GammaGammaModel(), frame, None, "segment", 1.0, np.ones(3))
    n = 4
    group_a = np.tile([2.0, 3.0, 10.0], (n, 1))
    group_b = np.tile([4.0, 3.0, 20.0], (n, 1))
    mu = np.tile(np.log([3.0, 3.0, 12.0]), (n, 1))
    tau = np.tile([0.5, 0.1, 0.3], (n, 1))
    draws = np.hstack([group_a, group_b, mu, tau])
    separate = [{"p": 2.0, "q": 3.0, "v": 10.0}, {"p": 6.0, "q": 3.0, "v": 30.0}]
    summary = pooling_summary(draws, groups, separate, np.array([300.0, 60.0]))
    b = summary["groups"]["B"]["params"]
    assert b["p"]["weight_toward_population"] == pytest.approx((np.log(6) - np.log(4)) / (np.log(6) - np.log(3)))
    assert b["q"]["weight_toward_population"] is None  # separate fit at the population: nothing to tell
    assert summary["groups"]["A"]["params"]["p"]["weight_toward_population"] == pytest.approx(0.0)
    assert summary["population"]["v"]["location"]["mean"] == pytest.approx(12.0)
    assert summary["population"]["p"]["scale_tau"]["mean"] == pytest.approx(0.5)
    assert summary["groups"]["B"]["customers"] == 60.0


def test_pooling_refuses_what_it_cannot_do():
    frame, _ = grouped({"A": 300, "B": 60}, seed=2)
    with pytest.raises(UsageError, match="cannot be combined"):
        fit_posterior(
            BetaGeoModel(purchase_covariates=["segment"]), frame, BayesConfig(), 1, pooling=PoolingOptions("segment")
        )
    with pytest.raises(ConfigError, match="laplace cannot fit a pooled model"):
        fit_posterior(BetaGeoModel(), frame, BayesConfig(inference="laplace"), 1, pooling=PoolingOptions("segment"))


def _new_customer_error(params: dict[str, np.ndarray] | dict[str, dict[str, float]], truth, horizon: float) -> float:
    """Mean over groups of |log(expected purchases of a new customer over the horizon / the truth's)|."""
    errors = []
    for group, true in truth.items():
        fitted = params[group]
        got = BetaGeoModel.from_params(**dict(fitted)).expected_purchases_new_customer(horizon)[0]
        want = BetaGeoModel.from_params(**dict(zip(BetaGeoModel.param_names, true, strict=True)))
        errors.append(abs(np.log(got / want.expected_purchases_new_customer(horizon)[0])))
    return float(np.mean(errors))


def _pooled_fit(sizes: dict[str, int], seed: int, options: BayesConfig) -> tuple[float, float, Posterior]:
    frame, truth = grouped(sizes, seed=seed)
    began = time.perf_counter()
    posterior = fit_posterior(BetaGeoModel(), frame, options, seed=1, pooling=PoolingOptions("segment"))
    seconds = time.perf_counter() - began
    groups = posterior.pooling["groups"]
    pooled = {g: {n: v["mean"] for n, v in groups[g]["params"].items()} for g in sizes}
    separate = {g: {n: v["separate_fit"] for n, v in groups[g]["params"].items()} for g in sizes}
    assert all(v is not None for s in separate.values() for v in s.values())
    d = posterior.diagnostics
    print(f"\npooled BG/NBD {sizes}: {seconds:.1f} s (compile {d.compile_seconds}, sampling {d.sampling_seconds})")
    return _new_customer_error(pooled, truth, 39.0), _new_customer_error(separate, truth, 39.0), posterior


@pytest.mark.slow
def test_the_pooled_fit_recovers_groups_better_than_separate_fits():
    """Groups of 5,000 / 500 / 50 / 15 customers with parameters drawn around a common mean: the pooled
    posterior means predict each group's new-customer purchases over 39 weeks with less error than each group's
    own maximum-likelihood fit (which the small groups cannot pin down)."""
    options = BayesConfig(inference="nuts", chains=2, draws=300, tune=400, ess_min=50, r_hat_max=1.1)
    pooled, separate, posterior = _pooled_fit({"A": 5000, "B": 500, "C": 50, "D": 15}, 3, options)
    print(f"error of log expected purchases: pooled {pooled:.3f}, separate {separate:.3f}")
    assert pooled < separate
    weights = [posterior.pooling["groups"][g]["params"]["alpha"]["weight_toward_population"] for g in "AD"]
    assert abs(weights[0]) < 0.1  # 5,000 customers keep their own fit
    assert posterior.param_names[:4] == ("r[A]", "alpha[A]", "a[A]", "b[A]")


@pytest.mark.slow
def test_a_small_pooled_spend_fit_shrinks_the_small_group_most():
    """Gamma-Gamma pooled across three groups of 1,500 / 150 / 12 buyers whose v differ: NUTS (few draws) runs,
    every group's v has its interval, and the small group is drawn further toward the population than the
    large one."""
    rng = np.random.default_rng(8)
    frames = []
    for i, (group, n, v) in enumerate((("A", 1500, 12.0), ("B", 150, 20.0), ("C", 12, 30.0))):
        x = rng.integers(1, 8, n)
        spend = simulate_gamma_gamma(x, 6.0, 4.0, v, seed=20 + i)
        frames.append(
            pd.DataFrame({"frequency": x, "recency": 10.0, "T": 20.0, "monetary_value": spend, "segment": group})
        )
    frame = pd.concat(frames, ignore_index=True)
    frame["customer_id"] = [f"c{i}" for i in range(len(frame))]
    options = BayesConfig(inference="nuts", chains=2, draws=100, tune=150, ess_min=50, r_hat_max=1.1)
    began = time.perf_counter()
    posterior = fit_posterior(GammaGammaModel(), frame, options, seed=2, pooling=PoolingOptions("segment"))
    print(
        f"\npooled Gamma-Gamma: {time.perf_counter() - began:.1f} s (compile {posterior.diagnostics.compile_seconds})"
    )
    groups = posterior.pooling["groups"]
    assert set(groups) == {"A", "B", "C"} and groups["C"]["customers"] == 12
    v_a, v_c = groups["A"]["params"]["v"], groups["C"]["params"]["v"]
    assert v_a["lo"] < 12.0 < v_a["hi"]
    assert abs(np.log(v_c["mean"]) - np.log(v_c["separate_fit"] or v_c["mean"])) > abs(
        np.log(v_a["mean"]) - np.log(v_a["separate_fit"])
    )
    assert posterior.diagnostics.sampler == "nutpie"
    # the draws are in the inference data under the posterior's names (a saved posterior is read by them)
    saved = posterior.idata.posterior.stack(sample=("chain", "draw"))
    np.testing.assert_array_equal(
        np.asarray(saved["v[C]"].values), posterior.draws[:, posterior.param_names.index("v[C]")]
    )
    population = posterior.point_result().params
    assert population["v"] == pytest.approx(np.exp(posterior.mean()["mu_log_v"]))
