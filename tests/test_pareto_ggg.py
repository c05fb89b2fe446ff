"""Pareto/GGG (clv.purchase.ggg): the closed-form dropout term against numerical integration
of the model's definition, the k = 1 reduction to the Pareto/NBD customer, the conditional simulation against the
unconditional one, and the Gibbs sampler's compiled kernel against the SciPy form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from clv.purchase import ggg

# (k, lambda, mu, x, t_x, T, S): regular, irregular (k < 1), x = 0, t_x = T, long gaps, tiny and large mu
CASES = [
    (2.5, 0.4, 0.02, 4, 11.0, 30.0, 4 * math.log(2.5)),
    (0.6, 1.3, 0.1, 7, 20.0, 24.0, -3.0),
    (1.0, 0.2, 0.05, 0, 0.0, 40.0, 0.0),
    (4.0, 0.5, 0.01, 3, 15.0, 15.0, 3 * math.log(5.0)),
    (8.0, 1.0, 1e-5, 20, 21.0, 60.0, 20 * math.log(1.05)),
    (3.0, 0.05, 2.0, 1, 5.0, 52.0, math.log(5.0)),
]


def _integrated_dropout(k, lam, mu, t_x, T):
    """The paper's form of the dropout term: alive through T (e^(-mu T) Q(k, b d)) plus death at tau in (t_x, T)
    with no purchase in (t_x, tau), integrated by scipy's quad."""
    b, d = k * lam, T - t_x
    alive = math.exp(-mu * T) * special.gammaincc(k, b * d)
    if d == 0:
        return alive
    dead, _ = integrate.quad(
        lambda tau: mu * math.exp(-mu * tau) * special.gammaincc(k, b * (tau - t_x)),
        t_x,
        T,
        epsabs=0,
        epsrel=1e-12,
        limit=200,
    )
    return alive + dead


@pytest.mark.parametrize("case", CASES)
def test_dropout_term_matches_numeric_integration(case):
    k, lam, mu, _, t_x, T, _ = case
    ours = ggg.log_dropout_term(k, lam, mu, t_x, T)
    assert float(ours) == pytest.approx(math.log(_integrated_dropout(k, lam, mu, t_x, T)), abs=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_loglik_is_interval_densities_plus_dropout(case):
    """The interval part is the product of Gamma(k, k lambda) densities of the intervals (scipy.stats), which
    loglik sees only through their sum t_x and the sum of their logs S."""
    from scipy import stats

    k, lam, mu, x, t_x, T, _ = case
    intervals = _intervals_with(x, t_x)
    log_f = stats.gamma.logpdf(intervals, k, scale=1.0 / (k * lam)).sum()
    expected = log_f + math.log(_integrated_dropout(k, lam, mu, t_x, T))
    assert float(ggg.loglik(k, lam, mu, x, t_x, T, np.log(intervals).sum())) == pytest.approx(expected, abs=1e-9)


def _intervals_with(x, total):
    """x unequal positive intervals with the given sum (none for x = 0)."""
    weights = np.linspace(1.0, 2.0, x)
    return total * weights / weights.sum()


def test_k1_is_the_pareto_nbd_customer():
    """k = 1: Poisson purchases with rate lambda and an Exp(mu) lifetime: the individual-level P(alive)
    1 / (1 + mu / (lambda + mu) (e^((lambda + mu)(T - t_x)) - 1)) (Fader, Hardie & Lee 2005, "A note on deriving
    the Pareto/NBD model", Eq. 11) and the likelihood lambda^x e^(-(lambda + mu) T) + lambda^x mu / (lambda +
    mu) (e^(-(lambda + mu) t_x) - e^(-(lambda + mu) T)) (ibid., Eq. 3)."""
    lam, mu = 0.7, 0.08
    x = np.array([0, 2, 5, 9])
    t_x = np.array([0.0, 3.0, 12.5, 30.0])
    T = np.array([10.0, 20.0, 25.0, 30.0])
    ref_alive = 1.0 / (1.0 + mu / (lam + mu) * np.expm1((lam + mu) * (T - t_x)))
    np.testing.assert_allclose(np.exp(ggg.log_p_alive(1.0, lam, mu, t_x, T)), ref_alive, rtol=1e-12)
    s = lam + mu
    ref_ll = np.log(lam**x * np.exp(-s * T) + lam**x * mu / s * (np.exp(-s * t_x) - np.exp(-s * T)))
    np.testing.assert_allclose(ggg.loglik(1.0, lam, mu, x, t_x, T, np.zeros(4)), ref_ll, rtol=1e-12)


def test_k1_holdout_simulation_matches_the_closed_form():
    """k = 1, alive: E[purchases in (T, T + h)] = lambda / mu (1 - e^(-mu h)) (Schmittlein et al. 1987); times
    P(alive)."""
    lam, mu, h = 0.5, 0.04, 26.0
    t_x, T = np.full(200_000, 8.0), np.full(200_000, 20.0)
    rng = np.random.default_rng(7)
    counts = ggg.simulate_holdout(1.0, lam, mu, t_x, T, h, rng)
    alive = math.exp(float(ggg.log_p_alive(1.0, lam, mu, 8.0, 20.0)))
    expected = alive * lam / mu * -math.expm1(-mu * h)
    se = counts.std() / math.sqrt(counts.size)
    assert abs(counts.mean() - expected) < 4 * se


@pytest.mark.parametrize(("k", "lam", "mu"), [(3.0, 0.3, 0.03), (0.7, 0.5, 0.05)])
def test_conditional_simulation_agrees_with_the_process(k, lam, mu):
    """Customers simulated through calibration and holdout; their holdout purchases, averaged, equal the average
    over the same customers of the conditional simulation given their calibration histories (the tower property:
    this checks P(alive) and the open interval's remaining time together)."""
    n, h = 100_000, 30.0
    rng = np.random.default_rng(11)
    T = rng.uniform(10.0, 40.0, n)
    sim = ggg.simulate_histories(k, lam, mu, T, rng, horizon=h)
    conditional = ggg.simulate_holdout(k, lam, mu, sim["t_x"], sim["T"], h, rng)
    direct = sim["x_holdout"]
    se = math.sqrt((direct.var() + conditional.var()) / n)
    assert abs(direct.mean() - conditional.mean()) < 4 * se
    assert direct.mean() > 0.5  # the check has something to compare


def test_histories_sum_log_intervals_and_recency():
    rng = np.random.default_rng(2)
    sim = ggg.simulate_histories(2.0, 0.5, 0.05, np.full(2000, 30.0), rng)
    assert np.all(sim["t_x"] <= sim["T"]) and np.all((sim["x"] == 0) == (sim["t_x"] == 0))
    assert np.all(sim["S"][sim["x"] == 0] == 0.0)
    # the mean interval is 1 / lambda: t_x / x near 2 for customers with many purchases
    many = sim["x"] >= 10
    assert np.mean(sim["t_x"][many] / sim["x"][many]) == pytest.approx(2.0, rel=0.05)


def test_p_alive_is_a_probability_at_extremes():
    k = np.array([0.3, 1.0, 5.0, 50.0, 50.0])
    lam = np.array([5.0, 1e-3, 0.5, 2.0, 0.01])
    mu = np.array([1e-6, 3.0, 0.05, 1e-4, 0.5])
    t_x, T = np.array([1.0, 0.0, 10.0, 2.0, 100.0]), np.array([100.0, 52.0, 10.0, 500.0, 104.0])
    p = np.exp(ggg.log_p_alive(k, lam, mu, t_x, T))
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert p[2] == pytest.approx(math.exp(-0.05 * 0.0))  # t_x = T: alive unless dead since, which is 0 time
    assert p[3] < 1e-12  # 250 mean intervals without a purchase by a very regular customer


def test_sampler_kernel_matches_the_dropout_term():
    """The Gibbs sampler's compiled bracket (clv.bayes.ggg_gibbs) equals the NumPy/SciPy dropout term without its
    e^(-mu t_x), including far tails and tiny dropout."""
    from clv.bayes.ggg_gibbs import log_bracket

    cases = np.array([(*c[:3], c[5] - c[4]) for c in CASES] + [(1.5, 2.0, 0.3, 400.0), (30.0, 0.1, 0.5, 5.0)])
    k, lam, mu, d = (np.ascontiguousarray(cases[:, j]) for j in range(4))
    np.testing.assert_allclose(
        log_bracket(k, lam, mu, d), ggg.log_dropout_term(k, lam, mu, 0.0, d), rtol=1e-10, atol=1e-12
    )
