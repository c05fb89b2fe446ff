"""Pareto/GGG's Gibbs sampler (clv.bayes.ggg_gibbs): its incomplete gamma kernel against SciPy, the exact draw of
the lifetime against numerical integration of its density, and the whole sampler on data drawn from the model:
the heterogeneity parameters recovered, and with them held at the truth the holdout forecast unbiased."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from clv.bayes import ggg_gibbs
from clv.bayes.ggg_gibbs import HYPER_NAMES, GibbsSettings, sample_chains, sample_latents
from clv.purchase import ggg


@pytest.mark.parametrize("k", [0.3, 1.0, 2.5, 12.0, 80.0])
def test_log_upper_gamma_matches_scipy(k):
    z = np.array([1e-8, 0.01, 0.5, k * 0.9, k + 1.0, k + 1.5, 3 * k + 5, 60.0, 400.0])
    expected = np.log(special.gammaincc(k, z))
    got = ggg_gibbs.log_upper_gamma(np.full(z.size, k), z)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10, atol=1e-13)
    # far tails, where Q underflows to 0: the asymptotic series z^(k-1) e^(-z) / Gamma(k) sum_j (k-1)...(k-j) /
    # z^j (DLMF 8.11.2), three terms (the next is below 1e-5 relative here)
    z_far = 2000.0 + 10 * k
    far = ggg_gibbs.log_upper_gamma(np.array([k]), np.array([z_far]))[0]
    series = 1 + (k - 1) / z_far + (k - 1) * (k - 2) / z_far**2 + (k - 1) * (k - 2) * (k - 3) / z_far**3
    asymptotic = (k - 1) * math.log(z_far) - z_far - math.lgamma(k) + math.log(series)
    assert abs(far - asymptotic) < 1e-4


@pytest.mark.parametrize(
    ("k", "lam", "mu", "d"),
    [(2.0, 0.5, 0.05, 30.0), (0.5, 1.0, 0.2, 10.0), (6.0, 0.2, 0.01, 50.0), (1.0, 3.0, 1e-3, 2.0)],
)
def test_lifetime_draw_inverts_its_distribution(k, lam, mu, d):
    """u with G(u) = V G(d): the distribution function by numerical integration of mu e^(-mu u) Q(k, b u)
    at the returned quantile equals V."""
    b = k * lam

    def density(u):
        return mu * math.exp(-mu * u) * special.gammaincc(k, b * u)

    total, _ = integrate.quad(density, 0, d, epsabs=0, epsrel=1e-12, limit=400)
    for v in (0.01, 0.3, 0.5, 0.9, 0.999):
        u = ggg_gibbs.tau_quantile(k, lam, mu, d, v)
        assert 0 < u < d
        mass, _ = integrate.quad(density, 0, u, epsabs=0, epsrel=1e-12, limit=400)
        assert mass / total == pytest.approx(v, abs=1e-8)


TRUTH = {"t": 3.0, "gamma": 1.5, "r": 0.9, "alpha": 6.0, "s": 0.7, "beta": 15.0}


def _synthetic(n, seed):
    rng = np.random.default_rng(seed)
    k = rng.gamma(TRUTH["t"], 1 / TRUTH["gamma"], n)
    lam = rng.gamma(TRUTH["r"], 1 / TRUTH["alpha"], n)
    mu = rng.gamma(TRUTH["s"], 1 / TRUTH["beta"], n)
    T = rng.uniform(30, 78, n)
    return ggg.simulate_histories(k, lam, mu, T, rng, horizon=39.0), rng


@pytest.mark.slow
def test_latents_at_the_true_parameters_forecast_the_holdout():
    """With the heterogeneity held at the truth, the customers' latents give a holdout total within sampling
    error of the actual (the process noise of 3,000 customers' totals is about 2%)."""
    h, rng = _synthetic(3000, 3)
    truth = np.tile([TRUTH[n] for n in HYPER_NAMES], (300, 1))
    k, lam, mu = sample_latents(h["x"], h["t_x"], h["T"], h["S"], truth, seed=5)
    forecast = ggg.simulate_holdout(k, lam, mu, h["t_x"][None, :], h["T"][None, :], 39.0, rng).mean(axis=0)
    actual = h["x_holdout"].sum()
    assert abs(forecast.sum() / actual - 1) < 0.05
    # and the latents track the customers: the forecast beats one that ignores the history
    assert np.abs(forecast - h["x_holdout"]).mean() < np.abs(h["x_holdout"] - h["x_holdout"].mean()).mean()


@pytest.mark.slow
def test_sampler_recovers_the_heterogeneity_parameters():
    """12,000 customers drawn from the model: every heterogeneity parameter's posterior mean within 10% of the
    truth (measured: within 5%), the two chains agree, and the holdout total within 2% of the actual."""
    h, rng = _synthetic(12_000, 4)
    draws = sample_chains(
        h["x"], h["t_x"], h["T"], h["S"], np.array([1, 1, 0.5, 5, 0.5, 10.0]), GibbsSettings(warmup=400, draws=300)
    )
    for j, name in enumerate(HYPER_NAMES):
        assert draws.hyper[:, :, j].mean() == pytest.approx(TRUTH[name], rel=0.10), name
    C, M, N = draws.k.shape
    k, lam, mu = (a.reshape(C * M, N) for a in (draws.k, draws.lam, draws.mu))
    forecast = ggg.simulate_holdout(k, lam, mu, h["t_x"][None, :], h["T"][None, :], 39.0, rng).mean(axis=0)
    assert forecast.sum() / h["x_holdout"].sum() == pytest.approx(1.0, abs=0.02)


def test_chains_are_reproducible_from_the_seed():
    h, _ = _synthetic(200, 7)
    settings = GibbsSettings(warmup=20, draws=10, thin=1, seed=11)
    start = np.array([1, 1, 0.5, 5, 0.5, 10.0])
    one = sample_chains(h["x"], h["t_x"], h["T"], h["S"], start, settings)
    two = sample_chains(h["x"], h["t_x"], h["T"], h["S"], start, settings)
    np.testing.assert_array_equal(one.hyper, two.hyper)
    np.testing.assert_array_equal(one.k, two.k)
    assert not np.array_equal(one.hyper[0], one.hyper[1])  # the chains have streams of their own
    assert np.all(np.isfinite(one.hyper)) and np.all(one.mu > 0)
