"""Static covariates (issue 13): CLVTools' apparel values, recovery of known coefficients, per-pattern predictions,
penalty and constraint, and the errors of the encoding."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from clv.config import DataConfig
from clv.covariates import CovariateSet
from clv.data import load_transactions, rfm_summary
from clv.errors import ConvergenceWarning, DataError, UsageError
from clv.mle import central_difference_hessian
from clv.purchase import BetaGeoBetaBinomModel
from clv.simulate import simulate_bgnbd, simulate_gamma_gamma, simulate_pareto_nbd
from tests import reference_values as ref
from tests.conftest import SHARED

BOTH = {"purchase_covariates": ["Gender", "Channel"], "dropout_covariates": ["Gender", "Channel"]}


@pytest.fixture(scope="module")
def apparel() -> pd.DataFrame:
    """CLVTools' apparel data as CLVTools' estimation.split = 104 summarises it, with the static covariates."""
    if not (SHARED / "clvtools_apparelTrans.csv").exists():
        pytest.skip("../shared/data is absent")
    spec = DataConfig(source="x", customer_id="Id", date="Date", amount="Price")
    tx = load_transactions(str(SHARED / "clvtools_apparelTrans.csv"), spec)
    cal = dt.date.fromisoformat(ref.APPAREL_CALIBRATION_END)
    rfm = rfm_summary(tx, cal, unit="W").frame
    cov = pd.read_csv(SHARED / "clvtools_apparelStaticCov.csv", dtype={"Id": str})
    return rfm.merge(cov.rename(columns={"Id": "customer_id"}), on="customer_id", validate="one_to_one")


def _close(got: dict[str, float], want: dict[str, float], rel: float = 1e-3, abs_: float = 0.0) -> None:
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=rel, abs=abs_), k


def test_pareto_nbd_with_covariates_matches_clvtools(apparel: pd.DataFrame) -> None:
    model = ParetoNBDModel(**BOTH).fit(apparel)
    assert model.log_likelihood_ == pytest.approx(ref.PARETO_APPAREL_COV_LL, abs=1e-4)
    _close(model.params_, ref.PARETO_APPAREL_COV)
    for process, want in ref.PARETO_APPAREL_COV_COEFFICIENTS.items():
        # CLVTools prints 5 significant digits and stops its search on a flat ridge: 1e-3 absolute
        _close(model.coefficients_[process], want, rel=0.0, abs_=1e-3)
    assert model.converged_
    # CLVTools' own estimates, as a model: their likelihood is not above ours (the ridge is flat, not two optima)
    theirs = ParetoNBDModel.from_result(
        replace(model.result_, params=ref.PARETO_APPAREL_COV, coefficients=ref.PARETO_APPAREL_COV_COEFFICIENTS)
    )
    at_theirs = float(theirs.loglik(apparel).sum())
    assert at_theirs == pytest.approx(ref.PARETO_APPAREL_COV_LL, abs=1e-4)
    assert at_theirs <= model.log_likelihood_
    se = model.coefficient_standard_errors_
    assert se is not None and all(0.05 < v < 0.5 for p in se.values() for v in p.values())


def test_apparel_without_covariates_matches_clvtools(apparel: pd.DataFrame) -> None:
    model = ParetoNBDModel().fit(apparel)
    assert model.log_likelihood_ == pytest.approx(ref.PARETO_APPAREL_LL, abs=1e-4)
    _close(model.params_, ref.PARETO_APPAREL)
    assert model.coefficients_ == {} and model.covariates_ is None
    _close(GammaGammaModel().fit(apparel).params_, ref.GAMMA_GAMMA_APPAREL)


def test_bgnbd_with_covariates_reaches_the_boundary_and_says_so(apparel: pd.DataFrame) -> None:
    with pytest.warns(ConvergenceWarning, match="dropout parameters run to a boundary"):
        model = BetaGeoModel(**BOTH).fit(apparel)
    # CLVTools prints -5839.86: at least that, to its 2 decimals
    assert model.log_likelihood_ >= ref.BGNBD_APPAREL_COV_BOUNDARY_LL - 0.005
    assert "dropout" in model.not_identified_
    assert "not estimates" in model.not_identified_["dropout"]


def _two_groups(model: str, n: int, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Customers of two covariate groups (z = 0, 1) drawn from the model with known coefficients: the purchase
    coefficient 0.5 and the dropout coefficient -0.7 (Pareto/NBD: alpha_1 = alpha e^-0.5, beta_1 = beta e^0.7;
    BG/NBD: a_1 = a e^-0.7, b_1 = b e^-0.7), in CLVTools' parameterisation."""
    g_p, g_d = 0.5, -0.7
    parts = []
    for z in (0, 1):
        if model == "pareto_nbd":
            frame = simulate_pareto_nbd(n, 0.8, 6.0 * np.exp(-g_p * z), 0.6, 12.0 * np.exp(-g_d * z), seed=seed + z)
        else:
            a, b = 0.8 * np.exp(g_d * z), 2.5 * np.exp(g_d * z)
            frame = simulate_bgnbd(n, 0.8, 6.0 * np.exp(-g_p * z), a, b, seed=seed + z)
        parts.append(frame.assign(z=z, customer_id=[f"{z}-{i}" for i in range(n)]))
    return pd.concat(parts, ignore_index=True), {"purchase": g_p, "dropout": g_d}


@pytest.mark.parametrize("model_cls", [ParetoNBDModel, BetaGeoModel])
def test_known_coefficients_are_recovered(model_cls: type) -> None:
    data, truth = _two_groups(model_cls.name, 20_000, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = model_cls(purchase_covariates=["z"], dropout_covariates=["z"]).fit(data)
    se = model.coefficient_standard_errors_
    assert se is not None
    for process, g in truth.items():
        got = model.coefficients_[process]["z"]
        assert abs(got - g) < 4 * se[process]["z"], (process, got, se[process]["z"])
        assert se[process]["z"] < 0.2


def test_gamma_gamma_spend_covariate_is_recovered() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    z = rng.integers(0, 2, n)
    frequency = rng.integers(1, 8, n)
    g_s = 0.4
    m = np.empty(n)
    for level in (0, 1):
        rows = z == level
        m[rows] = simulate_gamma_gamma(frequency[rows], 4.0, 3.0, 20.0 * np.exp(g_s * level), seed=level)
    rfm = pd.DataFrame(
        {
            "customer_id": np.arange(n).astype(str),
            "frequency": frequency,
            "recency": 10.0,
            "T": 20.0,
            "monetary_value": m,
            "z": z,
        }
    )
    model = GammaGammaModel(spend_covariates=["z"]).fit(rfm)
    got, se = model.coefficients_["spend"]["z"], model.coefficient_standard_errors_["spend"]["z"]  # type: ignore[index]
    assert abs(got - g_s) < 4 * se and se < 0.05
    # expected spend of a customer without repeat purchases is exp(g) times the reference's
    none = rfm.iloc[:2].assign(frequency=0, recency=0.0, monetary_value=0.0, z=[0, 1])
    e0, e1 = model.expected_spend(none)
    assert e1 / e0 == pytest.approx(np.exp(got), rel=1e-12)


@pytest.mark.parametrize("model_cls", [ParetoNBDModel, BetaGeoModel, ModifiedBetaGeoModel])
def test_predictions_are_the_pattern_models(model_cls: type, apparel: pd.DataFrame) -> None:
    """Every prediction of a covariate model equals the model without covariates at the customer's own
    parameters (alpha_i, beta_i or a_i, b_i), computed here row by row from the coefficients. (BG/NBD with
    Channel on dropout has no interior optimum on this data: Gender only there.)"""
    dropout = ["Gender", "Channel"] if model_cls is ParetoNBDModel else ["Gender"]
    model = model_cls(purchase_covariates=["Gender", "Channel"], dropout_covariates=dropout).fit(apparel)
    rows = apparel.sample(40, random_state=3).reset_index(drop=True)
    c = model.coefficients_
    for i in range(len(rows)):
        one = rows.iloc[[i]]
        zp = sum(g * one[name].iloc[0] for name, g in c["purchase"].items())
        zd = sum(g * one[name].iloc[0] for name, g in c["dropout"].items())
        p = dict(model.params_)
        p["alpha"] *= np.exp(-zp)
        if model_cls is ParetoNBDModel:
            p["beta"] *= np.exp(-zd)
        else:
            p["a"] *= np.exp(zd)
            p["b"] *= np.exp(zd)
        plain = model_cls.from_params(**p)
        for name, args in [
            ("probability_alive", ()),
            ("expected_purchases", (26.0,)),
            ("probability_of_purchases", (2, 26.0)),
            ("expected_residual_purchases", (0.002,)),
            ("loglik", ()),
        ]:
            want = getattr(plain, name)(one, *args)
            got = getattr(model, name)(rows, *args)[i]
            # the pmf quadrature chooses its nodes from all the rows it is given: 1e-8, not rounding level
            rel = 1e-8 if name == "probability_of_purchases" else 1e-12
            assert got == pytest.approx(want[0], rel=rel, abs=1e-300), name
    curve = model.expected_purchases_curve(rows, [4.0, 52.0])
    single = np.stack([model.expected_purchases(rows, h) for h in (4.0, 52.0)], axis=1)
    np.testing.assert_allclose(curve, single, rtol=1e-12)


def test_weights_and_compression_equal_expanded_rows(apparel: pd.DataFrame) -> None:
    """Customers with the same history and covariates are one weighted row; a continuous covariate (compresses
    less) gives the same fit as its rows expanded."""
    data = apparel.assign(score=np.round(np.random.default_rng(1).normal(size=len(apparel)), 1))
    twice = pd.concat([data, data], ignore_index=True)
    one = ParetoNBDModel(purchase_covariates=["score", "Channel"]).fit(data, weights=np.full(len(data), 2.0))
    two = ParetoNBDModel(purchase_covariates=["score", "Channel"]).fit(twice)
    assert one.log_likelihood_ == pytest.approx(two.log_likelihood_, rel=1e-10)
    _close(one.params_, two.params_, rel=1e-6)
    assert one.coefficients_["purchase"]["score"] == pytest.approx(two.coefficients_["purchase"]["score"], abs=1e-6)


def test_penalty_shrinks_and_zero_penalty_is_no_penalty(apparel: pd.DataFrame) -> None:
    free = ParetoNBDModel(**BOTH).fit(apparel)
    zero = ParetoNBDModel(**BOTH, covariate_penalty={"purchase": 0.0, "dropout": 0.0}).fit(apparel)
    assert zero.log_likelihood_ == free.log_likelihood_
    strong = ParetoNBDModel(**BOTH, covariate_penalty={"purchase": 10.0, "dropout": 10.0}).fit(apparel)
    for process in ("purchase", "dropout"):
        for name, value in free.coefficients_[process].items():
            assert abs(strong.coefficients_[process][name]) < 0.1 * abs(value)
    assert strong.log_likelihood_ < free.log_likelihood_  # the likelihood of the data, not the penalised objective


def test_constrained_covariate_has_one_coefficient(apparel: pd.DataFrame) -> None:
    model = ParetoNBDModel(**BOTH, constrained_covariates=["Gender"]).fit(apparel)
    c = model.coefficients_
    assert c["purchase"]["Gender"] == c["dropout"]["Gender"]
    assert c["purchase"]["Channel"] != c["dropout"]["Channel"]
    free = ParetoNBDModel(**BOTH).fit(apparel)
    none = ParetoNBDModel(purchase_covariates=["Channel"], dropout_covariates=["Channel"]).fit(apparel)
    assert none.log_likelihood_ - 1e-6 <= model.log_likelihood_ <= free.log_likelihood_ + 1e-6


def test_categorical_covariate_against_its_reference(apparel: pd.DataFrame) -> None:
    """A text column is dummy-coded against the named reference; its coefficient is the numeric 0/1 column's
    with the sign of the reference swapped."""
    data = apparel.assign(channel=np.where(apparel["Channel"] == 1, "offline", "online"))
    numeric = ParetoNBDModel(purchase_covariates=["Channel"]).fit(data)
    text = ParetoNBDModel(purchase_covariates=["channel"], categorical={"channel": "offline"}).fit(data)
    assert list(text.coefficients_["purchase"]) == ["channel[online]"]
    assert text.coefficients_["purchase"]["channel[online]"] == pytest.approx(
        -numeric.coefficients_["purchase"]["Channel"], abs=1e-5
    )
    assert text.log_likelihood_ == pytest.approx(numeric.log_likelihood_, abs=1e-6)


def test_encoding_errors_name_the_customers(apparel: pd.DataFrame) -> None:
    data = apparel.assign(channel=np.where(apparel["Channel"] == 1, "offline", "online"))
    model = ParetoNBDModel(purchase_covariates=["channel"]).fit(data)
    with pytest.raises(DataError, match=r"levels the model was not fitted with: 'shop'.*first ids: 1\b"):
        model.probability_alive(data.assign(channel=np.where(data["customer_id"] == "1", "shop", data["channel"])))
    with pytest.raises(DataError, match="covariate 'channel' is missing"):
        model.probability_alive(data.drop(columns="channel"))
    gaps = data.assign(channel=data["channel"].where(data["customer_id"] != "7"))
    with pytest.raises(DataError, match=r"missing for 1 customers \(first ids: 7\)"):
        ParetoNBDModel(purchase_covariates=["channel"]).fit(gaps)
    with pytest.raises(DataError, match="not found"):
        ParetoNBDModel(purchase_covariates=["nope"]).fit(data)
    with pytest.raises(UsageError, match="no purchase process"):
        BetaGeoBetaBinomModel(purchase_covariates=["x"])
    with pytest.raises(UsageError, match="must be listed in both"):
        ParetoNBDModel(purchase_covariates=["Gender"], constrained_covariates=["Gender"])


def test_covariate_set_round_trips() -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "g": ["x", "y", "x"], "n": [1.0, 2.0, 4.0]})
    cov = CovariateSet.learn(frame, {"purchase": ["g", "n"]}, standardise=True)
    again = CovariateSet.from_dict(cov.to_dict())
    np.testing.assert_array_equal(again.design(frame, "purchase"), cov.design(frame, "purchase"))
    assert cov.design_names("purchase") == ["g[y]", "n"]
    assert cov.design(frame, "purchase")[:, 1].mean() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("model_cls", [ParetoNBDModel, BetaGeoModel])
def test_pattern_hessian_equals_differences_of_the_gradient(model_cls: type, apparel: pd.DataFrame) -> None:
    """The covariate likelihood's Hessian (assembled per covariate pattern) against central differences of its
    own exact gradient, with a penalty and a constrained covariate, at a point off the optimum."""
    model = model_cls(**BOTH, constrained_covariates=["Gender"], covariate_penalty={"purchase": 0.3, "dropout": 0.1})
    problem = model.likelihood_problem(apparel)
    like = problem.likelihood
    w = like.weights / like.weights.sum()
    params = np.r_[
        model.start_point() * [1.1, 0.9, 1.2, 0.8], np.exp([0.2, -0.3, 0.4, 0.1, 0.25])[: len(problem.param_names) - 4]
    ]
    analytic = like.mean_hessian(params, w)
    mean = like.on_rows(None, w)
    numeric = central_difference_hessian(lambda p: np.asarray(mean(p)[1]), params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7 * np.abs(numeric).max())


def test_value_compresses_by_history_and_covariates(apparel: pd.DataFrame) -> None:
    """CLV of a covariate model: the histories shared by customers with different covariates are not merged
    (each customer's expected purchases and spend are the model's own for that customer)."""
    from clv import value_customers

    purchase = ParetoNBDModel(**BOTH).fit(apparel)
    spend = GammaGammaModel(spend_covariates=["Channel"]).fit(apparel)
    value = value_customers(purchase, spend, apparel, horizon=52, annual_discount_rate=0.1, margin=1.0, unit="W")
    out = value.customers
    np.testing.assert_allclose(out["expected_purchases"], purchase.expected_purchases(apparel, 52.0), rtol=1e-10)
    np.testing.assert_allclose(out["p_alive"], purchase.probability_alive(apparel), rtol=1e-12)
    np.testing.assert_allclose(out["expected_spend"], spend.expected_spend(apparel), rtol=1e-12)
    zero = apparel["frequency"] == 0
    assert out.loc[zero, "expected_spend"].nunique() == 2  # one population mean per Channel level


def test_tracking_curve_of_a_covariate_model_sums_its_patterns(apparel: pd.DataFrame) -> None:
    """The cohort's expected cumulative repeat purchases: each customer at their own parameters, from their own
    first day (calibration_end - T), summed; here against a loop over customers."""
    from clv.data.tracking import RepeatTracking
    from clv.evaluate.tracking import unconditional_cumulative

    model = ParetoNBDModel(**BOTH).fit(apparel)
    cal = 728  # day offset of calibration_end; weeks end every 7 days to it and 26 weeks on
    week_end = np.arange(0, cal + 26 * 7 + 1, 7, dtype=np.int64)
    first = cal - np.rint(apparel["T"].to_numpy() * 7).astype(np.int64)
    days, counts = np.unique(first, return_counts=True)
    tracking = RepeatTracking(
        start=dt.date(2005, 1, 2),
        week_end=week_end,
        weekly=np.zeros(week_end.size, dtype=np.int64),
        first_day=days,
        first_day_customers=counts,
        calibration_end=cal,
    )
    got = unconditional_cumulative(model, tracking, "W", apparel)
    P = model.row_params(apparel)
    want = np.zeros(week_end.size)
    for i in range(0, len(apparel), 7):  # every 7th customer, scaled: a loop over all would be slow
        elapsed = (week_end - first[i]) / 7.0
        one = model.pattern_model(P[i])
        want[elapsed > 0] += one.expected_purchases_new_customer(elapsed[elapsed > 0])
    sub = apparel.iloc[::7]
    part = unconditional_cumulative(model, replace(tracking), "W", sub)
    np.testing.assert_allclose(part, want, rtol=1e-12)
    assert got[-1] > part[-1] * 5


@pytest.mark.parametrize("model_cls", [ParetoNBDModel, BetaGeoModel, ModifiedBetaGeoModel, GammaGammaModel])
def test_grouped_and_per_row_likelihoods_agree(model_cls: type, apparel: pd.DataFrame, monkeypatch) -> None:
    """The covariate likelihood per pattern (few patterns) and with per-row parameters (many): the same value
    and gradient at a point off the optimum."""
    from clv import covariate_fit

    kw = {"spend_covariates": ["Gender", "Channel"]} if model_cls is GammaGammaModel else BOTH
    model = model_cls(**kw)
    grouped = model.likelihood_problem(apparel)
    monkeypatch.setattr(covariate_fit, "GROUPED_PATTERNS", 0)
    per_row = model.likelihood_problem(apparel)
    assert grouped.likelihood.grouped and not per_row.likelihood.grouped  # type: ignore[attr-defined]
    k = len(model.param_names)
    params = np.r_[model.start_point() * 1.3, np.exp(np.linspace(-0.4, 0.5, len(grouped.param_names) - k))]
    for p in (params, params * 0.7):
        a, b = grouped.total(p), per_row.total(p)
        assert a[0] == pytest.approx(b[0], rel=1e-12)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-10 * np.abs(a[1]).max())


def test_continuous_covariate_is_recovered() -> None:
    """A continuous covariate (every customer a pattern of their own: the per-row path) with a known purchase
    and dropout coefficient, drawn with `simulate_pareto_nbd_rows`."""
    from clv.covariates import row_parameters
    from clv.simulate import simulate_pareto_nbd_rows

    n = 30_000
    rng = np.random.default_rng(8)
    score = rng.normal(size=n)
    truth = {"purchase": 0.4, "dropout": -0.5}
    coefs = {p: np.array([g]) for p, g in truth.items()}
    designs = {p: score[:, None] for p in truth}
    P = row_parameters(
        np.array([0.9, 5.0, 0.7, 10.0]), ParetoNBDModel.param_names, ParetoNBDModel.covariate_effects, designs, coefs
    )
    data = simulate_pareto_nbd_rows(P, 39.0, seed=9).assign(score=score)
    model = ParetoNBDModel(purchase_covariates=["score"], dropout_covariates=["score"]).fit(data)
    se = model.coefficient_standard_errors_
    assert se is not None and model.converged_
    for process, g in truth.items():
        assert abs(model.coefficients_[process]["score"] - g) < 4 * se[process]["score"]


def test_covariate_in_the_tens_fits_as_its_standardised_self() -> None:
    """An unstandardised covariate in the tens (an age): the search runs on standardised columns and maps back,
    so the fit converges with standard errors and equals the standardised fit on the original scale
    (g = g_std / sd, the base parameters those of age 0)."""
    from clv.covariates import row_parameters
    from clv.simulate import simulate_pareto_nbd_rows

    n = 20_000
    rng = np.random.default_rng(4)
    age = rng.integers(20, 61, n).astype(float)
    g_true = np.array([0.02])
    P = row_parameters(
        np.array([0.9, 5.0, 0.7, 10.0]),
        ParetoNBDModel.param_names,
        ParetoNBDModel.covariate_effects,
        {"purchase": age[:, None]},
        {"purchase": g_true},
    )
    data = simulate_pareto_nbd_rows(P, 39.0, seed=5).assign(age=age)
    raw = ParetoNBDModel(purchase_covariates=["age"]).fit(data)
    std = ParetoNBDModel(purchase_covariates=["age"], standardise=True).fit(data)
    assert raw.converged_ and raw.coefficient_standard_errors_ is not None
    g, se = raw.coefficients_["purchase"]["age"], raw.coefficient_standard_errors_["purchase"]["age"]
    assert abs(g - 0.02) < 4 * se
    sd = float(np.std(age))
    assert g == pytest.approx(std.coefficients_["purchase"]["age"] / sd, rel=1e-6)
    assert se == pytest.approx(std.coefficient_standard_errors_["purchase"]["age"] / sd, rel=1e-4)  # type: ignore[index]
    assert raw.log_likelihood_ == pytest.approx(std.log_likelihood_, abs=1e-6)
    # alpha of age 0 = alpha of the mean age times exp(g * mean)
    assert raw.params_["alpha"] == pytest.approx(std.params_["alpha"] * np.exp(g * age.mean()), rel=1e-6)


def test_rare_levels_are_said_and_number_like_text_is_refused(apparel: pd.DataFrame) -> None:
    """A level of one customer gets a warning naming it (its coefficient runs off); text with about one value
    per customer (numbers with a thousands separator) is no categorical covariate."""
    from clv.errors import DataWarning

    rare = apparel.assign(
        region=np.where(apparel["customer_id"] == "17", "Mars", np.where(apparel["Channel"] == 1, "north", "south"))
    )
    with pytest.warns(DataWarning, match=r"'Mars' \(1 customer\(s\)\) \(first ids: 17\)"):
        CovariateSet.learn(rare, {"purchase": ["region"]})
    income = apparel.assign(income=[f"{50_000 + 137 * i:,}" for i in range(len(apparel))])
    with pytest.raises(DataError, match="numbers written as text"):
        CovariateSet.learn(income, {"purchase": ["income"]})


def test_a_numeric_reference_level_is_the_level_as_written() -> None:
    frame = pd.DataFrame({"customer_id": list("abcdef"), "channel": [0, 1, 1, 0, 1, 0]})
    cov = CovariateSet.learn(frame, {"purchase": ["channel"]}, categorical={"channel": "1"})
    assert cov.design_names("purchase") == ["channel[0]"]
    zero = CovariateSet.learn(frame, {"purchase": ["channel"]}, categorical={"channel": "0"})
    assert zero.design_names("purchase") == ["channel[1]"]  # "0" is a level, not "no reference given"
