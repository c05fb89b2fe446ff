"""Pareto/GGG per customer: Platzer & Reutterer (2016), "Ticking away the moments: timing regularity helps to
better predict customer activity", Marketing Science 35(5), 779-799 (the R package BTYDplus by Platzer:
`pggg.*`).

A customer with latent (k, lambda, mu) makes a first purchase at time 0; while alive, the times between purchases
are Gamma(k, k lambda) (shape k, rate k lambda: mean 1 / lambda, coefficient of variation 1 / sqrt(k), so k
measures regularity); the lifetime tau from the first purchase is Exp(mu). Across customers k ~ Gamma(t, gamma),
lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta) (the Bayesian fit: `clv.bayes.ggg_fit`). This module holds the
customer-level quantities given (k, lambda, mu): arrays in, arrays out, broadcast elementwise.

Notation: x repeat purchases, the last at t_x, observed to T (time since the first purchase), S = the sum of the
logs of the x intervals (`sum_log_intervals`), d = T - t_x, b = k lambda, w = (b + mu) d, and P(k, z), Q(k, z)
the regularised lower and upper incomplete gamma functions.

Likelihood (Platzer & Reutterer 2016, Sec. 3 and Appendix; derived here with tau integrated out in closed form):
the x intervals have the Gamma density product

    f = (k lambda)^(k x) exp((k - 1) S - k lambda t_x) / Gamma(k)^x,

and no purchase follows t_x before min(tau, T): with tau > t_x (probability e^(-mu t_x), memoryless) the open
interval G ~ Gamma(k, b) must exceed both the residual lifetime E ~ Exp(mu) and d, so the dropout term is

    e^(-mu t_x) [1 - P(G < E, G < d)] = e^(-mu t_x) [1 - (b / (b + mu))^k P(k, w)],

since P(G < E, G < d) = E[e^(-mu G); G < d] = (b / (b + mu))^k P(k, (b + mu) d) (the Gamma(k, b) Laplace
transform truncated at d). This is the paper's sum of the alive term e^(-mu T) Q(k, b d) and the integral over
tau in (t_x, T) of mu e^(-mu tau) Q(k, b (tau - t_x)): by parts, that integral is e^(-mu t_x) [1 - e^(-mu d)
Q(k, b d) - (b / (b + mu))^k P(k, w)], and the Q terms cancel (tests/test_pareto_ggg.py checks it by numerical
integration of the definition).

In log space the bracket is written 1 - c^k P = (1 - c^k) + c^k Q with c = b / (b + mu), log c^k =
-k log1p(mu / b), so that neither term is a difference of numbers near 1 (the first is -expm1(log c^k)).

P(alive at T | k, lambda, mu, data) = e^(-mu T) Q(k, b d) / [dropout term] = e^(-mu d) Q(k, b d) / (1 - c^k P(k,
w)) (Bayes' rule; BTYDplus `pggg.PAlive` averages it over the draws).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

__all__ = [
    "log_dropout_term",
    "log_interval_density",
    "log_p_alive",
    "loglik",
    "simulate_future",
    "simulate_histories",
    "simulate_holdout",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _arrays(*values: ArrayLike) -> list[FloatArray]:
    return [np.asarray(v, dtype=float) for v in np.broadcast_arrays(*values)]


def log_interval_density(k: ArrayLike, lam: ArrayLike, x: ArrayLike, t_x: ArrayLike, S: ArrayLike) -> FloatArray:
    """log of the product of the x Gamma(k, k lambda) interval densities: k x log(k lambda) + (k - 1) S - k lambda
    t_x - x log Gamma(k) (module docstring). 0 for x = 0."""
    k_, lam_, x_, t_, s_ = _arrays(k, lam, x, t_x, S)
    return np.asarray(k_ * x_ * np.log(k_ * lam_) + (k_ - 1.0) * s_ - k_ * lam_ * t_ - x_ * special.gammaln(k_))


def _log_upper(k: FloatArray, z: FloatArray) -> FloatArray:
    """log Q(k, z); -inf where Q underflows (the terms it enters are then negligible: see the callers)."""
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(special.gammaincc(k, z)))


def log_dropout_term(k: ArrayLike, lam: ArrayLike, mu: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """log e^(-mu t_x) [(1 - c^k) + c^k Q(k, (b + mu) d)], c = b / (b + mu), b = k lambda, d = T - t_x: the
    probability of no purchase after t_x while alive and before T (module docstring)."""
    k_, lam_, mu_, t_, T_ = _arrays(k, lam, mu, t_x, T)
    b = k_ * lam_
    log_ck = -k_ * np.log1p(mu_ / b)
    with np.errstate(divide="ignore"):
        gone = np.log(-np.expm1(log_ck))
    return np.asarray(-mu_ * t_ + np.logaddexp(gone, log_ck + _log_upper(k_, (b + mu_) * (T_ - t_))))


def loglik(
    k: ArrayLike, lam: ArrayLike, mu: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, S: ArrayLike
) -> FloatArray:
    """Log-likelihood of a history (x, t_x, T, S) given the customer's (k, lambda, mu): the interval densities
    times the dropout term (Platzer & Reutterer 2016; module docstring)."""
    return log_interval_density(k, lam, x, t_x, S) + log_dropout_term(k, lam, mu, t_x, T)


def log_p_alive(k: ArrayLike, lam: ArrayLike, mu: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """log P(alive at T | k, lambda, mu, t_x, T) = -mu d + log Q(k, k lambda d) - log(1 - c^k P(k, (b + mu) d))
    (module docstring); -inf where the open interval is too long to be believed (Q underflows)."""
    k_, lam_, mu_, t_, T_ = _arrays(k, lam, mu, t_x, T)
    d = T_ - t_
    alive = -mu_ * d + _log_upper(k_, k_ * lam_ * d)
    return np.asarray(np.minimum(alive - (log_dropout_term(k_, lam_, mu_, t_, T_) + mu_ * t_), 0.0))


def _gap_beyond(k: FloatArray, b: FloatArray, d: FloatArray, rng: np.random.Generator) -> FloatArray:
    """The remaining time G - d of a Gamma(k, b) interval G known to exceed d, by inversion: Q(k, b G) = V Q(k,
    b d), V ~ U(0, 1). Where Q(k, b d) underflows, the Gamma tail is close to exponential with rate b (Q(k, z) ~
    z^(k-1) e^(-z) / Gamma(k), DLMF 8.11.2), and the remaining time is drawn as Exp(b)."""
    u = rng.uniform(size=k.shape)
    tail = special.gammaincc(k, b * d)
    ok = tail > 1e-300
    z = special.gammainccinv(k, np.where(ok, u * tail, 0.5))
    beyond = np.where(ok, z / b - d, rng.exponential(size=k.shape) / b)
    return np.asarray(np.maximum(beyond, 0.0))


def simulate_holdout(
    k: ArrayLike,
    lam: ArrayLike,
    mu: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    horizon: float,
    rng: np.random.Generator,
) -> IntArray:
    """One draw of the number of purchases in (T, T + horizon] per element, given (k, lambda, mu) and the
    history: alive at T with `log_p_alive`'s probability; then the residual lifetime is Exp(mu) (memoryless),
    the open interval ends after its remaining time given that it exceeds T - t_x (`_gap_beyond`), and later
    intervals are Gamma(k, k lambda); purchases count up to min(horizon, lifetime)."""
    counts, _ = simulate_future(k, lam, mu, t_x, T, np.array([horizon]), rng)
    return counts[..., 0]


def simulate_future(
    k: ArrayLike,
    lam: ArrayLike,
    mu: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    horizons: ArrayLike,
    rng: np.random.Generator,
    alive: NDArray[np.bool_] | None = None,
    discount_rate: float = 0.0,
) -> tuple[IntArray, FloatArray]:
    """One draw per element of the future as `simulate_holdout` describes it: the purchases in (T, T + h] at
    each of `horizons` (shape (..., len(horizons))), and the sum of e^(-discount_rate s) over the purchases at
    times T + s up to the last horizon. `alive` (the elements' shape) conditions on being alive at T instead of
    drawing it."""
    k_, lam_, mu_, t_, T_ = _arrays(k, lam, mu, t_x, T)
    shape = k_.shape
    k_, lam_, mu_, t_, T_ = (v.ravel() for v in (k_, lam_, mu_, t_, T_))
    points = np.asarray(horizons, dtype=float).ravel()
    b = k_ * lam_
    if alive is None:
        living = rng.uniform(size=k_.shape) < np.exp(log_p_alive(k_, lam_, mu_, t_, T_))
    else:
        living = np.broadcast_to(np.asarray(alive, dtype=bool), shape).ravel()
    end = np.minimum(points.max(initial=0.0), rng.exponential(size=k_.shape) / mu_)
    clock = _gap_beyond(k_, b, T_ - t_, rng)
    counts = np.zeros((k_.size, points.size), dtype=np.int64)
    discounted = np.zeros(k_.size)
    active = living & (clock <= end)
    while active.any():
        idx = np.flatnonzero(active)
        counts[idx] += clock[idx, None] <= points[None, :]
        if discount_rate > 0.0:
            discounted[idx] += np.exp(-discount_rate * clock[idx])
        else:
            discounted[idx] += 1.0
        clock[idx] += rng.gamma(k_[idx], 1.0 / b[idx])
        active[idx] = clock[idx] <= end[idx]
    return counts.reshape((*shape, points.size)), discounted.reshape(shape)


def simulate_histories(
    k: ArrayLike, lam: ArrayLike, mu: ArrayLike, T: ArrayLike, rng: np.random.Generator, horizon: float = 0.0
) -> dict[str, FloatArray]:
    """Customers drawn from the model's process with the given latents (one per element), observed to T and,
    with a horizon, for `horizon` more: x, t_x, T, S (`sum_log_intervals`) and x_holdout."""
    k_, lam_, mu_, T_ = (v.ravel() for v in _arrays(k, lam, mu, T))
    b = k_ * lam_
    tau = rng.exponential(size=k_.shape) / mu_
    seen, end = np.minimum(tau, T_), np.minimum(tau, T_ + horizon)
    x, t_x, S, later = (np.zeros(k_.shape) for _ in range(4))
    clock = np.zeros(k_.shape)
    active = np.ones(k_.shape, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        # a Gamma draw with a tiny shape can underflow to 0: an interval of 1e-300 keeps its log finite
        gap = np.maximum(rng.gamma(k_[idx], 1.0 / b[idx]), 1e-300)
        clock[idx] += gap
        calibration = clock[idx] <= seen[idx]
        hit = idx[calibration]
        x[hit] += 1
        t_x[hit] = clock[hit]
        S[hit] += np.log(gap[calibration])
        holdout = idx[~calibration & (clock[idx] <= end[idx]) & (clock[idx] > T_[idx])]
        later[holdout] += 1
        active[idx] = clock[idx] <= end[idx]
    return {"x": x, "t_x": t_x, "T": T_.copy(), "S": S, "x_holdout": later}
