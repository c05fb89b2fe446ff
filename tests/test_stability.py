"""Numerical stability at the edges of the domain, checked against high-precision (mpmath) values."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel
from clv.purchase import beta_geometric as bg
from clv.purchase.pareto_nbd import loglik as pareto_loglik

mp.mp.dps = 50


def pareto_ll_mp(r, alpha, s, beta, x, t_x, T):
    """The note's Eq. (22) in 50-digit arithmetic, untransformed."""
    return float(pareto_ll_mpf(r, alpha, s, beta, x, t_x, T))


def pareto_ll_mpf(r, alpha, s, beta, x, t_x, T):
    """pareto_ll_mp as an mpmath number (for mpmath's derivatives)."""
    r, alpha, s, beta, x, t_x, T = map(mp.mpf, (r, alpha, s, beta, x, t_x, T))
    if alpha >= beta:

        def term(t):
            return mp.hyp2f1(r + s + x, s + 1, r + s + x + 1, (alpha - beta) / (alpha + t)) / (alpha + t) ** (r + s + x)
    else:

        def term(t):
            return mp.hyp2f1(r + s + x, r + x, r + s + x + 1, (beta - alpha) / (beta + t)) / (beta + t) ** (r + s + x)

    bracket = 1 / ((alpha + T) ** (r + x) * (beta + T) ** s) + s / (r + s + x) * (term(t_x) - term(T))
    return mp.log(mp.gamma(r + x) * alpha**r * beta**s / mp.gamma(r) * bracket)


@pytest.mark.parametrize(
    "args",
    [
        (0.55, 10.6, 0.6, 11.7, 2, 30.43, 38.86),
        (0.55, 10.6, 0.6, 11.7, 3000, 30.0, 38.86),  # thousands of purchases
        (0.55, 100.0, 0.6, 1.0, 500, 3.0, 38.86),  # alpha >> beta
        (0.55, 1.0, 0.6, 100.0, 2000, 3.0, 38.86),  # beta >> alpha, large x
        (0.55, 10.6, 1.0, 10.6, 5, 5.0, 38.86),  # s = 1 and alpha = beta
        (0.55, 10.6, 0.6, 11.7, 0, 0.0, 38.86),  # no repeat purchase
        (0.55, 10.6, 0.6, 11.7, 7, 38.86, 38.86),  # recency = T
    ],
)
def test_pareto_loglik_against_mpmath(args):
    ours = pareto_loglik(*args[:4], np.array([args[4]], float), np.array([args[5]]), np.array([args[6]]))[0]
    assert ours == pytest.approx(pareto_ll_mp(*args), rel=1e-11, abs=1e-10)


def bg_expected_mp(t, r, alpha, a, b):
    """FHL 2005, Eq. 9 in 50-digit arithmetic."""
    t, r, alpha, a, b = map(mp.mpf, (t, r, alpha, a, b))
    return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * mp.hyp2f1(r, b, a + b - 1, t / (alpha + t))))


@pytest.mark.parametrize(
    ("x", "T", "t"),
    [(0, 38.86, 39.0), (2, 38.86, 39.0), (1000, 38.86, 52.0), (5000, 70.0, 10.0), (0, 0.0, 1000.0)],
)
def test_bg_expectation_against_mpmath(x, T, t):
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    ours = bg.expected_new(t, np.array([r + x]), np.array([alpha + T]), a, np.array([b + x]))[0]
    assert ours == pytest.approx(bg_expected_mp(t, r + x, alpha + T, a, b + x), rel=1e-10)


def test_bg_removable_singularity_at_a_equal_one():
    rfm = pd.DataFrame({"frequency": [0, 3, 40], "recency": [0.0, 20.0, 30.0], "T": [38.0, 38.0, 38.0]})
    at_one = BetaGeoModel.from_params(r=0.3, alpha=5.0, a=1.0, b=3.0).expected_purchases(rfm, 39.0)
    near = [
        BetaGeoModel.from_params(r=0.3, alpha=5.0, a=1.0 + e, b=3.0).expected_purchases(rfm, 39.0)
        for e in (-1e-7, 1e-7)
    ]
    assert np.all(np.isfinite(at_one))
    np.testing.assert_allclose(at_one, near[0], rtol=1e-6)
    np.testing.assert_allclose(at_one, near[1], rtol=1e-6)


def test_pareto_removable_singularities():
    rfm = pd.DataFrame({"frequency": [0, 3, 40], "recency": [0.0, 20.0, 30.0], "T": [38.0, 38.0, 38.0]})
    base = {"r": 0.5, "alpha": 10.0, "beta": 12.0}
    at_one = ParetoNBDModel.from_params(s=1.0, **base)
    near = ParetoNBDModel.from_params(s=1.0 + 1e-7, **base)
    np.testing.assert_allclose(at_one.expected_purchases(rfm, 39.0), near.expected_purchases(rfm, 39.0), rtol=1e-6)
    equal = ParetoNBDModel.from_params(r=0.5, alpha=10.0, s=0.6, beta=10.0)
    close = ParetoNBDModel.from_params(r=0.5, alpha=10.0, s=0.6, beta=10.0 + 1e-7)
    np.testing.assert_allclose(equal.probability_alive(rfm), close.probability_alive(rfm), rtol=1e-6)
    np.testing.assert_allclose(equal.loglik(rfm), close.loglik(rfm), rtol=1e-8)


@pytest.mark.parametrize(
    "model",
    [
        BetaGeoModel.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426),
        ModifiedBetaGeoModel.from_params(r=0.525, alpha=6.183, a=0.891, b=1.614),
        ParetoNBDModel.from_params(r=0.553, alpha=10.578, s=0.606, beta=11.669),
    ],
)
def test_extreme_customers_give_finite_outputs(model):
    rfm = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "frequency": [0, 5000, 3000, 1, 200],
            "recency": [0.0, 70.0, 0.5, 38.86, 200.0],
            "T": [0.0, 70.0, 70.0, 38.86, 200.0],
        }
    )
    outputs = [
        model.probability_alive(rfm),
        model.probability_alive(rfm, at=26.0),
        model.expected_purchases(rfm, 52.0),
        model.probability_of_purchases(rfm, 0, 52.0),
        model.probability_of_purchases(rfm, 3, 52.0),
        model.expected_residual_purchases(rfm, 0.0018),
        model.loglik(rfm),
    ]
    for values in outputs:
        assert np.all(np.isfinite(values))
    p = outputs[0]
    assert np.all((p >= 0) & (p <= 1))


@pytest.mark.parametrize(
    ("r", "alpha", "a", "b", "delta"),
    [
        (2.243, 43.27, 0.793, 4.426, 0.0018),
        (0.5, 5.0, 0.6, 0.7, 0.05),  # b < 1: the beta density is singular at both ends
        (0.3, 40.0, 0.2, 0.5, 0.00026),  # daily discounting, small a
        (50.2, 80.0, 0.8, 52.5, 0.0018),  # a heavy buyer
    ],
)
def test_dert_against_numerical_integral(r, alpha, a, b, delta):
    """DERT of an alive BG customer = (r/alpha) int_0^inf e^(-delta t) E_p[(1 + p t/alpha)^-(r+1)] dt, where the
    inner expectation is 2F1(r+1, a; a+b; -t/alpha) (Euler's integral); both by mpmath, in the other order of
    integration from ours."""
    mp.mp.dps = 20

    def integrand(t):
        return mp.e ** (-delta * t) * mp.hyp2f1(r + 1, a, a + b, -t / alpha)

    expected = (r / alpha) * float(mp.quad(integrand, [0, alpha, 10 * alpha, 1 / delta, 10 / delta, mp.inf]))
    mp.mp.dps = 50
    ours = bg.dert_alive(delta, np.array([r]), np.array([alpha]), a, np.array([b]))[0]
    assert ours == pytest.approx(expected, rel=1e-8)


def test_scaled_expint_against_mpmath():
    from clv.purchase.beta_geometric import scaled_expint

    rng = np.random.default_rng(0)
    m = np.concatenate([rng.uniform(0.05, 15.0, 120), [1.0, 2.0, 3.0, 1.0 + 1e-6, 12.0]])
    z = np.concatenate([10 ** rng.uniform(-6, 2, 120), [0.5, 1e-3, 1.0, 0.9, 3.0]])
    ours = scaled_expint(m, z)
    expected = np.array([float(mp.e**zi * mp.expint(mi, zi)) for mi, zi in zip(m, z, strict=True)])
    np.testing.assert_allclose(ours, expected, rtol=1e-9)


def test_invalid_rows_are_named_at_predict_time():
    from clv.errors import DataError

    model = BetaGeoModel.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
    rfm = pd.DataFrame(
        {
            "customer_id": [10, 11, 12, 13],
            "frequency": [1, 0, -1, 2],
            "recency": [50.0, 3.0, 0.0, np.nan],
            "T": [40.0, 40.0, 40.0, 40.0],
        }
    )
    with pytest.raises(DataError) as info:
        model.probability_alive(rfm)
    msg = info.value.message
    assert "recency must be a finite number; 1 customer(s) violate this (first ids: 13)" in msg
    assert "recency must be <= T; 1 customer(s) violate this (first ids: 10)" in msg
    assert "frequency 0 requires recency 0; 1 customer(s) violate this (first ids: 11)" in msg
    assert "frequency must be a whole number >= 0; 1 customer(s) violate this (first ids: 12)" in msg
    with pytest.raises(DataError, match="first ids: 10"):
        BetaGeoModel().fit(rfm)


def test_predicting_before_fitting_says_call_fit():
    from clv.errors import NotFittedError

    with pytest.raises(NotFittedError, match="call fit first"):
        BetaGeoModel().probability_alive(pd.DataFrame({"frequency": [0], "recency": [0.0], "T": [1.0]}))


@pytest.mark.parametrize(
    ("B", "C", "z"),
    [
        (1.05, 123.05, 0.95),  # SciPy's hyp2f1 returns NaN here
        (20.6, 140.0, 0.97),
        (3000.5, 3001.6, 0.99),
        (1.6, 5000.0, 0.9999),
        (0.6, 0.7, 0.3),
        (1.6, 1.65, 0.9),
        (2.0, 3.0, 0.999),
    ],
)
def test_hyp2f1_one_against_mpmath(B, C, z):
    from clv.hypergeometric import hyp2f1_one, hyp2f1_one_fraction

    expected = float(mp.hyp2f1(1, B, C, z))
    assert float(hyp2f1_one(B, C, z)) == pytest.approx(expected, rel=1e-12)
    assert float(hyp2f1_one_fraction(B, C, z)) == pytest.approx(expected, rel=1e-10)


def test_pareto_where_scipy_hyp2f1_fails():
    model = ParetoNBDModel.from_params(r=20.0, alpha=1.0, s=0.05, beta=20.0)
    rfm = pd.DataFrame({"frequency": [102.0], "recency": [0.0], "T": [1.0]})
    assert np.isfinite(model.probability_alive(rfm)).all()
    assert model.loglik(rfm)[0] == pytest.approx(pareto_ll_mp(20.0, 1.0, 0.05, 20.0, 102, 0.0, 1.0), rel=1e-10)


@pytest.mark.parametrize(
    "args",
    [
        (0.55, 10.6, 0.6, 11.7, 2, 30.43, 38.86),
        (0.55, 30.0, 0.6, 2.0, 40, 10.0, 38.86),  # alpha > beta branch
        (0.55, 10.6, 0.6, 11.7, 0, 0.0, 38.86),
        (0.55, 10.6, 0.6, 11.7, 7, 38.86, 38.86),  # recency = T
    ],
)
def test_pareto_gradient_is_exact(args):
    """The complex-step gradient against mpmath's derivative of the 50-digit likelihood."""
    params = np.array(args[:4])
    x, t_x, T = (np.array([v], dtype=float) for v in args[4:])
    _, grad = ParetoNBDModel()._loglik_grad(params, x, t_x, T)
    for j in range(4):

        def f(v, j=j):
            p = list(args[:4])
            p[j] = v
            return pareto_ll_mpf(*p, *args[4:])

        mp.mp.dps = 30
        expected = float(mp.diff(f, mp.mpf(args[j])))
        mp.mp.dps = 50
        assert grad[0, j] == pytest.approx(expected, rel=1e-9, abs=1e-12)
