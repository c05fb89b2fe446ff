"""Invariants that must hold for any valid input and parameters (hypothesis), and weights = expanded rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clv import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from clv.simulate import simulate_bgnbd, simulate_gamma_gamma, simulate_pareto_nbd

positive = st.floats(min_value=0.05, max_value=20.0, allow_nan=False)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rfm_rows(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 8))
    T = np.array(draw(st.lists(st.floats(0.5, 200.0), min_size=n, max_size=n)))
    x = np.array(draw(st.lists(st.integers(0, 400), min_size=n, max_size=n)), dtype=float)
    share = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    return pd.DataFrame({"frequency": x, "recency": np.where(x > 0, T * share, 0.0), "T": T})


@st.composite
def models(draw):
    kind = draw(st.sampled_from(["bgnbd", "mbgnbd", "pareto"]))
    p = [draw(positive) for _ in range(4)]
    if kind == "pareto":
        return ParetoNBDModel.from_params(r=p[0], alpha=p[1], s=p[2], beta=p[3])
    cls = BetaGeoModel if kind == "bgnbd" else ModifiedBetaGeoModel
    return cls.from_params(r=p[0], alpha=p[1], a=p[2], b=p[3])


@SETTINGS
@given(model=models(), rfm=rfm_rows(), at=st.floats(0.0, 100.0))
def test_p_alive_is_a_probability_and_decays(model, rfm, at):
    now = model.probability_alive(rfm)
    later = model.probability_alive(rfm, at=at)
    assert np.all((now >= 0) & (now <= 1))
    assert np.all(later <= now + 1e-12)


@SETTINGS
@given(model=models(), rfm=rfm_rows(), h1=st.floats(0.1, 50.0), h2=st.floats(0.1, 50.0))
def test_expectations_grow_with_the_horizon(model, rfm, h1, h2):
    short, long_ = sorted((h1, h2))
    e_short, e_long = model.expected_purchases(rfm, short), model.expected_purchases(rfm, long_)
    assert np.all(e_short >= 0)
    assert np.all(e_long >= e_short * (1 - 1e-10))
    new = model.expected_purchases_new_customer([short, long_])
    assert new[1] >= new[0] * (1 - 1e-10)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), rfm=rfm_rows(), horizon=st.floats(0.5, 30.0))
def test_pmf_sums_to_one_and_matches_the_mean(model, rfm, horizon):
    expected = model.expected_purchases(rfm, horizon)
    probs, total = [], np.zeros(len(rfm))
    for n in range(300):  # until the remaining tail mass is below 1e-13
        probs.append(model.probability_of_purchases(rfm, n, horizon))
        total += probs[-1]
        if np.all(total > 1 - 1e-13):
            break
    else:
        # a tail too heavy to sum term by term: the partial sums still bound the whole from below
        p = np.array(probs)
        assert np.all(p >= 0) and np.all(p.sum(axis=0) <= 1 + 1e-8)
        assert np.all((p * np.arange(len(p))[:, None]).sum(axis=0) <= expected * (1 + 1e-6) + 1e-8)
        return
    p = np.array(probs)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-8)
    np.testing.assert_allclose((p * np.arange(len(p))[:, None]).sum(axis=0), expected, rtol=1e-6, atol=1e-8)


@SETTINGS
@given(model=models(), rfm=rfm_rows(), c=st.floats(0.1, 10.0), horizon=st.floats(0.5, 40.0))
def test_rescaling_time_rescales_alpha_and_nothing_else(model, rfm, c, horizon):
    params = dict(model.params_)
    for key in type(model).time_params:
        params[key] *= c
    scaled_model = type(model).from_params(**params)
    scaled = rfm.assign(recency=rfm["recency"] * c, T=rfm["T"] * c)
    tiny = 1e-290  # values in the subnormal range carry fewer digits
    np.testing.assert_allclose(
        scaled_model.probability_alive(scaled), model.probability_alive(rfm), rtol=1e-9, atol=tiny
    )
    np.testing.assert_allclose(
        scaled_model.expected_purchases(scaled, horizon * c),
        model.expected_purchases(rfm, horizon),
        rtol=1e-8,
        atol=tiny,
    )
    np.testing.assert_allclose(
        scaled_model.expected_residual_purchases(scaled, 0.01 / c),
        model.expected_residual_purchases(rfm, 0.01),
        rtol=1e-7,
        atol=tiny,
    )


@pytest.mark.parametrize("cls", [BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel])
def test_fit_rescales_alpha_only(cls, cdnow_rfm):
    weeks = cls().fit(cdnow_rfm)
    days = cls().fit(cdnow_rfm.assign(recency=cdnow_rfm["recency"] * 7, T=cdnow_rfm["T"] * 7))
    for key, value in weeks.params_.items():
        factor = 7.0 if key in cls.time_params else 1.0
        assert days.params_[key] == pytest.approx(value * factor, rel=1e-5)


@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_weighted_compressed_rows_equal_expanded_rows(cls):
    rfm = simulate_bgnbd(3000, 0.25, 4.0, 0.8, 2.5, seed=5)
    counts = rfm.groupby(["frequency", "recency", "T"]).size().rename("w").reset_index()
    weighted = cls().fit(counts, weights=counts["w"])
    expanded = cls().fit(rfm)
    for key in cls.param_names:
        assert weighted.params_[key] == pytest.approx(expanded.params_[key], rel=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(expanded.log_likelihood_, rel=1e-10)
    assert len(counts) < len(rfm)


@pytest.mark.parametrize("columns", [(5, 50, 3), (3000, 3000, 3000), (0, 3)])
def test_unique_rows_are_the_distinct_rows_in_order_of_first_appearance(columns):
    """Against pandas' drop_duplicates: the same rows in the same order, each row's index into them and the
    counts; small ranges (counted), ranges whose product overflows (renumbered) and a continuous column."""
    from clv.compress import unique_rows

    rng = np.random.default_rng(len(columns))
    cols = [rng.integers(0, k, 50_000).astype(float) if k else rng.random(50_000) for k in columns]
    uniques, inverse, counts = unique_rows(*cols)
    frame = pd.DataFrame({str(i): c for i, c in enumerate(cols)})
    expected = frame.drop_duplicates()
    np.testing.assert_array_equal(np.column_stack(uniques), expected.to_numpy())
    np.testing.assert_array_equal(np.column_stack(uniques)[inverse], frame.to_numpy())
    sizes = frame.groupby(list(frame.columns), sort=False).size()
    np.testing.assert_array_equal(counts, sizes.to_numpy())


def test_gamma_gamma_fits_the_distinct_spend_pairs_exactly():
    """Spends in cents repeat: the fit runs on the distinct (x, m) pairs with their counts, and its
    log-likelihood is the sum over every buyer of Eq. 5 evaluated row by row (scipy's gamma functions, not the
    model's gathered terms); the same fit from a frame of weighted pairs."""
    from scipy import special

    rng = np.random.default_rng(4)
    x = rng.integers(1, 6, 4000)
    rfm = pd.DataFrame(
        {
            "frequency": x,
            "recency": 1.0,
            "T": 2.0,
            "monetary_value": np.round(simulate_gamma_gamma(x, 6.0, 4.0, 15.0, seed=3) * 4) / 4,  # quarters
        }
    )
    fitted = GammaGammaModel().fit(rfm)
    problem = GammaGammaModel().likelihood_problem(rfm)
    pairs = rfm.groupby(["frequency", "monetary_value"]).size()
    assert problem.n_customers == 4000 and problem.n_unique == len(pairs) < 4000
    p, q, v = (fitted.params_[k] for k in ("p", "q", "v"))
    m = rfm["monetary_value"].to_numpy()
    by_hand = (
        special.gammaln(p * x + q)
        - special.gammaln(p * x)
        - special.gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(v + m * x)
    ).sum()
    assert fitted.log_likelihood_ == pytest.approx(by_hand, rel=1e-10)
    weighted = pairs.rename("w").reset_index().assign(recency=1.0, T=2.0)
    again = GammaGammaModel().fit(weighted, weights=weighted["w"])
    for key in ("p", "q", "v"):
        assert again.params_[key] == pytest.approx(fitted.params_[key], rel=1e-8)


def test_gamma_gamma_spend_is_between_own_mean_and_population_mean():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 20, 500)
    rfm = pd.DataFrame(
        {
            "frequency": x,
            "recency": np.where(x > 0, 1.0, 0.0),
            "T": 2.0,
            "monetary_value": simulate_gamma_gamma(x, 6.0, 4.0, 15.0, seed=2),
        }
    )
    model = GammaGammaModel.from_params(p=6.0, q=4.0, v=15.0)
    spend = model.expected_spend(rfm)
    pop = model.population_mean_spend()
    own = rfm["monetary_value"].to_numpy()
    repeat = x > 0
    lo, hi = np.minimum(own, pop), np.maximum(own, pop)
    assert np.all((spend[repeat] >= lo[repeat] - 1e-9) & (spend[repeat] <= hi[repeat] + 1e-9))
    np.testing.assert_allclose(spend[~repeat], pop)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("simulate", "cls", "truth"),
    [
        (simulate_bgnbd, BetaGeoModel, {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}),
        (simulate_pareto_nbd, ParetoNBDModel, {"r": 0.55, "alpha": 10.0, "s": 0.6, "beta": 12.0}),
    ],
)
def test_fit_recovers_generating_parameters(simulate, cls, truth):
    rfm = simulate(200_000, *truth.values(), T=78.0, seed=11)
    model = cls().fit(rfm)
    for key, value in truth.items():
        assert model.params_[key] == pytest.approx(value, rel=0.08), key
