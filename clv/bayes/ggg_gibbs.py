"""Pareto/GGG's posterior by Gibbs sampling of the customers' latent variables, compiled by Numba.

The model (Platzer & Reutterer 2016, "Ticking away the moments", Marketing Science 35(5), Sec. 3; notation of
`clv.purchase.ggg`): customer i has regularity k_i ~ Gamma(t, gamma), purchase rate lambda_i ~ Gamma(r, alpha),
dropout rate mu_i ~ Gamma(s, beta) and lifetime tau_i ~ Exp(mu_i) from the first purchase; intervals between
purchases are Gamma(k_i, k_i lambda_i). The six heterogeneity parameters have Gamma(0.001, 0.001) priors, as in
the paper's sampler (BTYDplus `pggg.mcmc.DrawParameters`). One sweep updates, for every customer in turn:

- k_i and lambda_i by slice sampling (Neal 2003, "Slice sampling", Ann. Statist. 31(3); stepping out and
  shrinkage, on the log scale) of their full conditionals given tau_i: the prior density times the interval
  densities (`clv.purchase.ggg.log_interval_density`) times Q(k, k lambda (min(tau, T) - t_x)), the
  probability that the open interval outlasts the observed or lifetime window;
- mu_i from its conjugate conditional Gamma(s + 1, beta + tau_i);
- tau_i exactly: alive at T with P(alive | k, lambda, mu) (`clv.purchase.ggg.log_p_alive`), then tau = T +
  Exp(mu) (memoryless); else tau = t_x + u, u in (0, d), d = T - t_x, drawn by inverting its distribution
  function, which has a closed form: with b = k lambda and c = b / (b + mu), the density mu e^(-mu u) Q(k, b u)
  integrates (by parts, as in `clv.purchase.ggg`) to

      G(u) = (1 - c^k) + c^k Q(k, (b + mu) u) - e^(-mu u) Q(k, b u),

  so u solves G(u) = V G(d), V ~ U(0, 1) (safeguarded Newton; G'(u) = mu e^(-mu u) Q(k, b u)).

Then each heterogeneity pair in a block: the shape (t, r or s) from its conditional with the rate integrated
out (Gamma-Gamma conjugacy: p(t | k) ~ prior(t) Gamma(N t + a0) / (sum k + b0)^(N t + a0) prod k^(t - 1) /
Gamma(t)^N), by slice sampling on the log scale, and the rate from its conjugate Gamma(a0 + N t, b0 + sum k).
Blocking the pair removes the shape-rate correlation that coordinate-wise updates crawl along. The lifetime pair (s,
beta) is drawn with mu integrated out, so every mu is drawn again under the new pair before any later step uses
it (a partially collapsed Gibbs sampler: van Dyk & Park 2008, JASA 103(482)).

Q(k, z) is the regularised upper incomplete gamma function: the power series of P = 1 - Q (DLMF 8.7.1) for
z <= k + 1, Legendre's continued fraction (DLMF 8.9.2, modified Lentz) beyond, both in log space so that far
tails do not underflow. Chains run in threads (the compiled sweeps release the GIL), each seeded from the
run's seed: the draws do not depend on the number of threads.
"""

# mypy: disable-error-code="untyped-decorator,no-untyped-call,type-arg"
# Numba compiles the legacy np.random functions (seeded per thread by np.random.seed), not Generator objects:
# ruff: noqa: NPY002
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HYPER_NAMES",
    "GibbsDraws",
    "GibbsSettings",
    "log_bracket",
    "log_upper_gamma",
    "sample_chains",
    "sample_latents",
    "tau_quantile",
]

FloatArray = NDArray[np.float64]

#: the heterogeneity parameters, in the order of a draw's columns
HYPER_NAMES = ("t", "gamma", "r", "alpha", "s", "beta")
#: the Gamma(a0, b0) prior of each heterogeneity parameter (the paper's and BTYDplus' choice)
HYPER_PRIOR = (1e-3, 1e-3)

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 10_000
_WIDTH = 1.0  # initial slice width on the log scale of k and lambda
_STEPS = 64  # stepping-out budget of a slice, split between the sides at random (Neal 2003, Fig. 3)
_SCALE_MOVES = 3  # interweaving moves of beta per sweep (`_scale_lifetimes`)
_SCALE_STEP = 0.3  # their proposal's sd on the log scale


@dataclass(frozen=True)
class GibbsSettings:
    """How long to run: `warmup` sweeps discarded, then `draws` kept per chain, every `thin`-th sweep."""

    chains: int = 2
    warmup: int = 500
    draws: int = 500
    thin: int = 2
    seed: int = 0
    workers: int = 2


@dataclass
class GibbsDraws:
    """The kept draws: heterogeneity parameters (chains, draws, 6) in `HYPER_NAMES` order, and the customers'
    (k, lambda, mu) as (chains, draws, customers) each."""

    hyper: FloatArray
    k: FloatArray
    lam: FloatArray
    mu: FloatArray
    seconds: float


@numba.njit(cache=True, nogil=True)
def _log_lower_series(k: float, z: float) -> float:
    """log P(k, z) by the power series (DLMF 8.7.1), for 0 < z <= k + 1 (terms shrink at once)."""
    term, total = 1.0, 1.0
    for n in range(1, _MAX_TERMS):
        term *= z / (k + n)
        total += term
        if term < _EPS * total:
            break
    return k * math.log(z) - z - math.lgamma(k + 1.0) + math.log(total)


@numba.njit(cache=True, nogil=True)
def _log_upper_fraction(k: float, z: float) -> float:
    """log Q(k, z) by Legendre's continued fraction (DLMF 8.9.2; modified Lentz), for z > k + 1."""
    b = z + 1.0 - k
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - k)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return k * math.log(z) - z - math.lgamma(k) + math.log(h)


@numba.njit(cache=True, nogil=True)
def _log_q(k: float, z: float) -> float:
    """log Q(k, z), the regularised upper incomplete gamma function, for k > 0, z >= 0."""
    if z <= 0.0:
        return 0.0
    if z > k + 1.0:
        return _log_upper_fraction(k, z)
    return math.log1p(-math.exp(_log_lower_series(k, z)))


@numba.njit(cache=True, nogil=True)
def _log_add(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


@numba.njit(cache=True, nogil=True)
def _log_sub(a: float, b: float) -> float:
    """log(e^a - e^b) for a >= b; -inf when they are equal."""
    if b >= a:
        return -math.inf
    return a + math.log(-math.expm1(b - a))


@numba.njit(cache=True, nogil=True)
def _log_bracket(k: float, b: float, mu: float, u: float) -> float:
    """log[(1 - c^k) + c^k Q(k, (b + mu) u)], c = b / (b + mu): the probability of no purchase in the first u
    of the open interval while alive (`clv.purchase.ggg.log_dropout_term` without e^(-mu t_x))."""
    log_ck = -k * math.log1p(mu / b)
    gone = math.log(-math.expm1(log_ck)) if log_ck < 0.0 else -math.inf
    return _log_add(gone, log_ck + _log_q(k, (b + mu) * u))


@numba.njit(cache=True, nogil=True)
def _log_g(k: float, b: float, mu: float, u: float) -> float:
    """log G(u) = log[bracket(u) - e^(-mu u) Q(k, b u)]: the probability of dying within u of the last purchase
    with no purchase before (module docstring)."""
    return _log_sub(_log_bracket(k, b, mu, u), -mu * u + _log_q(k, b * u))


@numba.njit(cache=True, nogil=True)
def _tau_offset(k: float, b: float, mu: float, d: float, log_v: float) -> float:
    """u in (0, d) with G(u) = V G(d) (log V = `log_v`), by Newton's method on G safeguarded by bisection."""
    target = log_v + _log_g(k, b, mu, d)
    lo, hi = 0.0, d
    u = 0.5 * d
    for _ in range(200):
        log_gu = _log_g(k, b, mu, u)
        if log_gu < target:
            lo = u
        else:
            hi = u
        slope = math.log(mu) - mu * u + _log_q(k, b * u)  # log G'(u)
        step = (math.exp(target) - math.exp(log_gu)) / math.exp(slope) if slope > -700.0 else 0.0
        new = u + step
        if not (lo < new < hi) or step == 0.0:
            new = 0.5 * (lo + hi)
        if abs(new - u) <= 1e-12 * max(d, 1e-300) or hi - lo <= 1e-13 * d:
            return new
        u = new
    return u


@numba.njit(cache=True, nogil=True)
def _log_k_conditional(
    v: float, lam: float, x: float, t_x: float, S: float, window: float, t: float, g: float
) -> float:
    """log p(log k | rest) up to a constant: prior Gamma(t, g) with the log-scale Jacobian, interval densities,
    and the open interval's survival over `window` = min(tau, T) - t_x."""
    k = math.exp(v)
    b = k * lam
    value = t * v - g * k + (k - 1.0) * S - b * t_x + _log_q(k, b * window)
    if x > 0.0:
        value += x * (k * math.log(b) - math.lgamma(k))
    return value


@numba.njit(cache=True, nogil=True)
def _log_lam_conditional(v: float, k: float, x: float, t_x: float, window: float, r: float, alpha: float) -> float:
    """log p(log lambda | rest) up to a constant: prior Gamma(r, alpha) with the Jacobian, the intervals'
    k x log lambda - k lambda t_x, and the open interval's survival."""
    lam = math.exp(v)
    b = k * lam
    return (r + k * x) * v - alpha * lam - b * t_x + _log_q(k, b * window)


@numba.njit(cache=True, nogil=True)
def _slice_k(v0: float, lam: float, x: float, t_x: float, S: float, window: float, t: float, g: float) -> float:
    y = _log_k_conditional(v0, lam, x, t_x, S, window, t, g) - np.random.exponential()
    left = v0 - _WIDTH * np.random.random()
    right = left + _WIDTH
    j = int(_STEPS * np.random.random())  # Neal (2003), Fig. 3: the budget split at random
    kk = _STEPS - 1 - j
    while j > 0 and _log_k_conditional(left, lam, x, t_x, S, window, t, g) > y:
        left -= _WIDTH
        j -= 1
    while kk > 0 and _log_k_conditional(right, lam, x, t_x, S, window, t, g) > y:
        right += _WIDTH
        kk -= 1
    for _ in range(200):
        v = left + (right - left) * np.random.random()
        if _log_k_conditional(v, lam, x, t_x, S, window, t, g) > y:
            return v
        if v < v0:
            left = v
        else:
            right = v
    return v0


@numba.njit(cache=True, nogil=True)
def _slice_lam(v0: float, k: float, x: float, t_x: float, window: float, r: float, alpha: float) -> float:
    y = _log_lam_conditional(v0, k, x, t_x, window, r, alpha) - np.random.exponential()
    left = v0 - _WIDTH * np.random.random()
    right = left + _WIDTH
    j = int(_STEPS * np.random.random())  # Neal (2003), Fig. 3: the budget split at random
    kk = _STEPS - 1 - j
    while j > 0 and _log_lam_conditional(left, k, x, t_x, window, r, alpha) > y:
        left -= _WIDTH
        j -= 1
    while kk > 0 and _log_lam_conditional(right, k, x, t_x, window, r, alpha) > y:
        right += _WIDTH
        kk -= 1
    for _ in range(200):
        v = left + (right - left) * np.random.random()
        if _log_lam_conditional(v, k, x, t_x, window, r, alpha) > y:
            return v
        if v < v0:
            left = v
        else:
            right = v
    return v0


@numba.njit(cache=True, nogil=True)
def _log_shape_conditional(v: float, n: float, sum_x: float, sum_log_x: float) -> float:
    """log p(log shape | latents) with the rate integrated out (module docstring), Jacobian included."""
    a0, b0 = HYPER_PRIOR
    shape = math.exp(v)
    return (
        a0 * v
        - b0 * shape
        + math.lgamma(n * shape + a0)
        - (n * shape + a0) * math.log(sum_x + b0)
        + (shape - 1.0) * sum_log_x
        - n * math.lgamma(shape)
    )


@numba.njit(cache=True, nogil=True)
def _draw_pair(shape: float, values: FloatArray) -> tuple[float, float]:
    """(shape, rate) of a Gamma population given its members `values`: the shape by three slice updates of its
    rate-integrated conditional, then the rate from its conjugate Gamma."""
    a0, b0 = HYPER_PRIOR
    n = float(values.size)
    sum_x = 0.0
    sum_log_x = 0.0
    for value in values:
        sum_x += value
        sum_log_x += math.log(value)
    v0 = math.log(shape)
    width = 0.5
    for _ in range(3):
        y = _log_shape_conditional(v0, n, sum_x, sum_log_x) - np.random.exponential()
        left = v0 - width * np.random.random()
        right = left + width
        j = int(_STEPS * np.random.random())  # Neal (2003), Fig. 3: the budget split at random
        kk = _STEPS - 1 - j
        while j > 0 and _log_shape_conditional(left, n, sum_x, sum_log_x) > y:
            left -= width
            j -= 1
        while kk > 0 and _log_shape_conditional(right, n, sum_x, sum_log_x) > y:
            right += width
            kk -= 1
        for _ in range(200):
            v = left + (right - left) * np.random.random()
            if _log_shape_conditional(v, n, sum_x, sum_log_x) > y:
                v0 = v
                break
            if v < v0:
                left = v
            else:
                right = v
    shape = math.exp(v0)
    rate = np.random.gamma(a0 + n * shape, 1.0 / (b0 + sum_x))
    return shape, rate


@numba.njit(cache=True, nogil=True)
def _log_lifetime_conditional(log_s: float, log_m: float, tau: FloatArray) -> float:
    """log p(log s, log m | tau) with mu integrated out, m = s / beta the mean dropout rate: the lifetimes are
    Pareto II (Lomax) with shape s and scale beta, density s beta^s / (beta + tau)^(s + 1); Gamma(a0, b0) priors
    on s and beta, with the Jacobian of (log s, log m)."""
    a0, b0 = HYPER_PRIOR
    s = math.exp(log_s)
    beta = s / math.exp(log_m)
    total = 0.0
    for value in tau:
        total += math.log1p(value / beta)
    n = float(tau.size)
    return n * math.log(s / beta) - (s + 1.0) * total + a0 * log_s - b0 * s + a0 * math.log(beta) - b0 * beta


@numba.njit(cache=True, nogil=True)
def _draw_lifetime_pair(s: float, beta: float, tau: FloatArray) -> tuple[float, float]:
    """(s, beta) given the lifetimes, mu integrated out (module docstring): three rounds of slice updates of
    log s and of log(s / beta) in turn (the mean dropout rate is well determined where s alone is not)."""
    point = np.array([math.log(s), math.log(s / beta)])
    width = 0.5
    for _ in range(3):
        for j in range(2):
            y = _log_lifetime_conditional(point[0], point[1], tau) - np.random.exponential()
            v0 = point[j]
            left = v0 - width * np.random.random()
            right = left + width
            trial = point.copy()
            steps = int(_STEPS * np.random.random())  # Neal (2003), Fig. 3: the budget split at random
            rest = _STEPS - 1 - steps
            trial[j] = left
            while steps > 0 and _log_lifetime_conditional(trial[0], trial[1], tau) > y:
                left -= width
                trial[j] = left
                steps -= 1
            trial[j] = right
            while rest > 0 and _log_lifetime_conditional(trial[0], trial[1], tau) > y:
                right += width
                trial[j] = right
                rest -= 1
            for _ in range(200):
                trial[j] = left + (right - left) * np.random.random()
                if _log_lifetime_conditional(trial[0], trial[1], tau) > y:
                    point[j] = trial[j]
                    break
                if trial[j] < v0:
                    left = trial[j]
                else:
                    right = trial[j]
    s = math.exp(point[0])
    return s, s / math.exp(point[1])


@numba.njit(cache=True, nogil=True)
def _clip(value: float) -> float:
    """Keep a latent rate inside the doubles' comfortable range (a rate of 1e-300 is as good as 0 here)."""
    return min(max(value, 1e-12), 1e12)


@numba.njit(cache=True, nogil=True)
def _sweep(
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    S: FloatArray,
    k: FloatArray,
    lam: FloatArray,
    mu: FloatArray,
    tau: FloatArray,
    hyper: FloatArray,
    update_hyper: bool,
) -> None:
    """One Gibbs sweep in place (module docstring); the heterogeneity parameters stay as they are unless
    `update_hyper`."""
    t, g, r, alpha, s, beta = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5]
    for i in range(x.size):
        d = T[i] - t_x[i]
        window = min(tau[i], T[i]) - t_x[i]
        k[i] = _clip(math.exp(_slice_k(math.log(k[i]), lam[i], x[i], t_x[i], S[i], window, t, g)))
        lam[i] = _clip(math.exp(_slice_lam(math.log(lam[i]), k[i], x[i], t_x[i], window, r, alpha)))
        mu[i] = _clip(np.random.gamma(s + 1.0, 1.0 / (beta + tau[i])))
        b = k[i] * lam[i]
        if d <= 0.0:
            tau[i] = T[i] + np.random.exponential() / mu[i]
            continue
        log_alive = -mu[i] * d + _log_q(k[i], b * d)
        log_total = _log_bracket(k[i], b, mu[i], d)
        if math.log(np.random.random()) < log_alive - log_total:
            tau[i] = T[i] + np.random.exponential() / mu[i]
        else:
            u = _tau_offset(k[i], b, mu[i], d, math.log(np.random.random()))
            tau[i] = t_x[i] + min(max(u, 1e-12 * d), d)
    if update_hyper:
        hyper[0], hyper[1] = _draw_pair(t, k)
        hyper[2], hyper[3] = _draw_pair(r, lam)
        hyper[4], hyper[5] = _draw_lifetime_pair(s, beta, tau)
        # mu was integrated out of that step: redraw it under the new (s, beta) before any move conditions on it
        # (partially collapsed Gibbs, van Dyk & Park 2008)
        for i in range(x.size):
            mu[i] = _clip(np.random.gamma(hyper[4] + 1.0, 1.0 / (hyper[5] + tau[i])))
        for _ in range(_SCALE_MOVES):
            _scale_lifetimes(t_x, T, k, lam, mu, tau, hyper)
            _scale_rates(x, t_x, T, k, lam, tau, hyper)
            _spread_regularity(x, t_x, T, S, k, lam, tau, hyper)
            _spread_dropout(t_x, T, k, lam, mu, tau, hyper)


@numba.njit(cache=True, nogil=True)
def _spread_dropout(
    t_x: FloatArray, T: FloatArray, k: FloatArray, lam: FloatArray, mu: FloatArray, tau: FloatArray, hyper: FloatArray
) -> None:
    """`_spread_regularity` for the dropout rates: s moves with s / beta held, each mu keeps its Wilson-Hilferty
    value z, and each lifetime keeps mu tau (its Exp(1) draw), so tau' = tau mu / mu'. The exponential densities
    of the lifetimes and that map's Jacobian cancel (mu' / mu times mu / mu'); what remains is the Gamma(s, beta)
    densities of the mu's, the open intervals' survival over the moved lifetimes (and tau' > t_x), the priors
    and the Jacobians of the mu map and of (log s, log beta)."""
    a0, b0 = HYPER_PRIOR
    s, beta = hyper[4], hyper[5]
    step = _SCALE_STEP * np.random.standard_normal()
    c = math.exp(step)
    s2, beta2 = c * s, c * beta
    m = s / beta
    root, root2 = math.sqrt(s), math.sqrt(s2)
    log_ratio = (a0 - 1.0) * 2.0 * step - b0 * (s2 - s + beta2 - beta) + 2.0 * step
    log_ratio += t_x.size * (s2 * math.log(beta2) - math.lgamma(s2) - s * math.log(beta) + math.lgamma(s))
    moved_mu = np.empty(t_x.size)
    moved_tau = np.empty(t_x.size)
    for i in range(t_x.size):
        u = (mu[i] / m) ** (1.0 / 3.0)
        z = (u - 1.0 + 1.0 / (9.0 * s)) * 3.0 * root
        u2 = 1.0 - 1.0 / (9.0 * s2) + z / (3.0 * root2)
        if u2 <= 0.0:
            return
        mu2 = m * u2**3
        if mu2 < 1e-12 or mu2 > 1e12:
            return
        tau2 = tau[i] * mu[i] / mu2
        if tau2 <= t_x[i]:
            return
        moved_mu[i], moved_tau[i] = mu2, tau2
        before, after = min(tau[i], T[i]), min(tau2, T[i])
        if before != after:
            b = k[i] * lam[i]
            log_ratio += _log_q(k[i], b * (after - t_x[i])) - _log_q(k[i], b * (before - t_x[i]))
        log_ratio += (s2 - 1.0) * math.log(mu2) - beta2 * mu2 - (s - 1.0) * math.log(mu[i]) + beta * mu[i]
        log_ratio += 2.0 * math.log(u2 / u) + 0.5 * math.log(s / s2)
    if math.log(np.random.random()) < log_ratio:
        hyper[4], hyper[5] = s2, beta2
        mu[:] = moved_mu
        tau[:] = moved_tau


@numba.njit(cache=True, nogil=True)
def _log_k_data(k: float, lam: float, x: float, t_x: float, S: float, window: float) -> float:
    """The terms of a customer's likelihood that involve k (`_log_k_conditional` without the prior)."""
    b = k * lam
    value = (k - 1.0) * S - b * t_x + _log_q(k, b * window)
    if x > 0.0:
        value += x * (k * math.log(b) - math.lgamma(k))
    return value


@numba.njit(cache=True, nogil=True)
def _spread_regularity(
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    S: FloatArray,
    k: FloatArray,
    lam: FloatArray,
    tau: FloatArray,
    hyper: FloatArray,
) -> None:
    """A Metropolis move of the regularity's shape t with its mean t / gamma held, carrying the k's along: each
    k keeps its standardised value z under the Wilson-Hilferty transform of Gamma(t, gamma) (Wilson & Hilferty
    1931: k ~ (t / gamma) (1 - 1/(9t) + z / (3 sqrt t))^3, z about N(0, 1)), so that a population of k's widens
    or narrows with t instead of holding t back (the interweaving idea of `_scale_lifetimes` for a shape). The
    map is a bijection for a given step, so the ratio is the joint density's (data, Gamma(t, gamma) of the k's,
    priors) times the map's Jacobian prod dk' / dk = prod (u' / u)^2 sqrt(t / t') and that of (log t, log
    gamma) -> both + step (t' gamma' / (t gamma) for the priors in t and gamma)."""
    a0, b0 = HYPER_PRIOR
    t, g = hyper[0], hyper[1]
    step = _SCALE_STEP * np.random.standard_normal()
    c = math.exp(step)
    t2, g2 = c * t, c * g
    m = t / g
    root, root2 = math.sqrt(t), math.sqrt(t2)
    log_ratio = (a0 - 1.0) * 2.0 * step - b0 * (t2 - t + g2 - g) + 2.0 * step
    log_ratio += x.size * (t2 * math.log(g2) - math.lgamma(t2) - t * math.log(g) + math.lgamma(t))
    moved = np.empty(x.size)
    for i in range(x.size):
        u = (k[i] / m) ** (1.0 / 3.0)
        z = (u - 1.0 + 1.0 / (9.0 * t)) * 3.0 * root
        u2 = 1.0 - 1.0 / (9.0 * t2) + z / (3.0 * root2)
        if u2 <= 0.0:
            return
        k2 = m * u2**3
        if k2 < 1e-12 or k2 > 1e12:
            return
        moved[i] = k2
        window = min(tau[i], T[i]) - t_x[i]
        log_ratio += _log_k_data(k2, lam[i], x[i], t_x[i], S[i], window)
        log_ratio -= _log_k_data(k[i], lam[i], x[i], t_x[i], S[i], window)
        log_ratio += (t2 - 1.0) * math.log(k2) - g2 * k2 - (t - 1.0) * math.log(k[i]) + g * k[i]
        log_ratio += 2.0 * math.log(u2 / u) + 0.5 * math.log(t / t2)
    if math.log(np.random.random()) < log_ratio:
        hyper[0], hyper[1] = t2, g2
        k[:] = moved


@numba.njit(cache=True, nogil=True)
def _scale_rates(
    x: FloatArray, t_x: FloatArray, T: FloatArray, k: FloatArray, lam: FloatArray, tau: FloatArray, hyper: FloatArray
) -> None:
    """The interweaving move of alpha (as `_scale_lifetimes` of beta): with lambda = g / alpha, alpha -> c alpha
    scales every lambda by 1 / c; the data's ratio is that of the interval densities (k lambda)^(k x)
    e^(-k lambda t_x) and of the open interval's survival, times the prior's and the proposal's."""
    a0, b0 = HYPER_PRIOR
    alpha = hyper[3]
    step = _SCALE_STEP * np.random.standard_normal()
    c = math.exp(step)
    log_ratio = a0 * step - b0 * alpha * (c - 1.0)
    for i in range(x.size):
        b = k[i] * lam[i]
        moved = b / c
        window = min(tau[i], T[i]) - t_x[i]
        log_ratio += -k[i] * x[i] * step - (moved - b) * t_x[i]
        log_ratio += _log_q(k[i], moved * window) - _log_q(k[i], b * window)
    if math.log(np.random.random()) < log_ratio:
        hyper[3] = c * alpha
        for i in range(x.size):
            lam[i] /= c


@numba.njit(cache=True, nogil=True)
def _scale_lifetimes(
    t_x: FloatArray, T: FloatArray, k: FloatArray, lam: FloatArray, mu: FloatArray, tau: FloatArray, hyper: FloatArray
) -> None:
    """A Metropolis move of beta in the non-centred parameterisation (an interweaving step, Yu & Meng 2011, "To
    center or not to center", JCGS 20(3)): with mu = g / beta and tau = e / mu (g ~ Gamma(s, 1), e ~ Exp(1) held),
    beta -> c beta scales every mu by 1 / c and every lifetime by c. The data see the lifetimes only through the
    open interval's survival Q(k, k lambda (min(tau, T) - t_x)) and tau > t_x, so the ratio is theirs, times
    the prior's and the log-scale proposal's c (Gamma(a0, b0) prior: c^a0 e^(-b0 beta (c - 1)))."""
    a0, b0 = HYPER_PRIOR
    beta = hyper[5]
    step = _SCALE_STEP * np.random.standard_normal()
    c = math.exp(step)
    log_ratio = a0 * step - b0 * beta * (c - 1.0)
    for i in range(t_x.size):
        moved = c * tau[i]
        if moved <= t_x[i]:
            return
        before = min(tau[i], T[i])
        after = min(moved, T[i])
        if before != after:
            b = k[i] * lam[i]
            log_ratio += _log_q(k[i], b * (after - t_x[i])) - _log_q(k[i], b * (before - t_x[i]))
    if math.log(np.random.random()) < log_ratio:
        hyper[5] = c * beta
        for i in range(t_x.size):
            tau[i] *= c
            mu[i] /= c


@numba.njit(cache=True, nogil=True)
def _chain(
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    S: FloatArray,
    hyper0: FloatArray,
    warmup: int,
    draws: int,
    thin: int,
    seed: int,
    out_hyper: FloatArray,
    out_k: FloatArray,
    out_lam: FloatArray,
    out_mu: FloatArray,
) -> None:
    """One chain from the start `hyper0` (customers start at k = 1, lambda = the population's purchase rate,
    tau half an interval after the last purchase, mu = 1 / tau: BTYDplus' start)."""
    np.random.seed(seed)
    n = x.size
    hyper = hyper0.copy()
    rate = max(x.mean() / max(np.where(t_x > 0.0, t_x, T).mean(), 1e-12), 1e-6)
    k = np.ones(n)
    lam = np.full(n, rate)
    tau = t_x + 0.5 / rate
    mu = 1.0 / tau
    for step in range(warmup + draws * thin):
        _sweep(x, t_x, T, S, k, lam, mu, tau, hyper, True)
        kept = step - warmup
        if kept >= 0 and kept % thin == thin - 1:
            j = kept // thin
            out_hyper[j] = hyper
            out_k[j] = k
            out_lam[j] = lam
            out_mu[j] = mu


@numba.njit(cache=True, nogil=True)
def _latent_chain(
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    S: FloatArray,
    hyper_draws: FloatArray,
    warmup: int,
    sweeps: int,
    seed: int,
    out_k: FloatArray,
    out_lam: FloatArray,
    out_mu: FloatArray,
) -> None:
    """The customers' latents given heterogeneity draws: `warmup` sweeps at the first draw, then for each draw
    in turn `sweeps` sweeps with the parameters held there, keeping the last state."""
    np.random.seed(seed)
    n = x.size
    hyper = hyper_draws[0].copy()
    rate = hyper[2] / hyper[3]
    k = np.full(n, hyper[0] / hyper[1])
    lam = np.full(n, rate)
    tau = t_x + 0.5 / rate
    mu = 1.0 / tau
    for _ in range(warmup):
        _sweep(x, t_x, T, S, k, lam, mu, tau, hyper, False)
    for j in range(hyper_draws.shape[0]):
        hyper[:] = hyper_draws[j]
        for _ in range(sweeps):
            _sweep(x, t_x, T, S, k, lam, mu, tau, hyper, False)
        out_k[j] = k
        out_lam[j] = lam
        out_mu[j] = mu


def sample_latents(
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    S: FloatArray,
    hyper_draws: FloatArray,
    seed: int,
    warmup: int = 200,
    sweeps: int = 2,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Customers' (k, lambda, mu) draws, (draws, customers) each, given heterogeneity draws (draws, 6): how a
    saved posterior scores histories it was not fitted on. Each draw's latents follow `sweeps` sweeps of the
    customer-level updates under that draw, from the previous draw's state (the customers' information does not
    feed back into the heterogeneity parameters: the usual scoring of new data by a fitted model)."""
    columns = [np.ascontiguousarray(v, dtype=float) for v in (x, t_x, T, S)]
    draws = np.ascontiguousarray(hyper_draws, dtype=float)
    k, lam, mu = (np.empty((draws.shape[0], columns[0].size)) for _ in range(3))
    _latent_chain(*columns, draws, warmup, sweeps, seed, k, lam, mu)
    return k, lam, mu


def sample_chains(
    x: FloatArray, t_x: FloatArray, T: FloatArray, S: FloatArray, start: FloatArray, settings: GibbsSettings
) -> GibbsDraws:
    """Run `settings.chains` chains from the heterogeneity start `start` (`HYPER_NAMES` order) on histories
    (x, t_x, T, S) and return their kept draws. Chain c is seeded by `settings.seed` and c."""
    import time

    columns = [np.ascontiguousarray(v, dtype=float) for v in (x, t_x, T, S)]
    n, c, m = columns[0].size, settings.chains, settings.draws
    hyper = np.empty((c, m, 6))
    k, lam, mu = (np.empty((c, m, n)) for _ in range(3))
    seeds = np.random.SeedSequence(settings.seed).generate_state(c, dtype=np.uint32)
    begin = time.perf_counter()

    def run(chain: int) -> None:
        _chain(
            *columns,
            np.asarray(start, dtype=float),
            settings.warmup,
            m,
            settings.thin,
            int(seeds[chain]),
            hyper[chain],
            k[chain],
            lam[chain],
            mu[chain],
        )

    with ThreadPoolExecutor(max_workers=max(1, min(settings.workers, c))) as pool:
        list(pool.map(run, range(c)))
    return GibbsDraws(hyper, k, lam, mu, time.perf_counter() - begin)


def log_upper_gamma(k: FloatArray, z: FloatArray) -> FloatArray:
    """log Q(k, z) elementwise (the kernel the sampler uses; tests hold it to SciPy)."""
    kk, zz = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(z, dtype=float))
    return np.array([_log_q(a, b) for a, b in zip(kk.ravel(), zz.ravel(), strict=True)]).reshape(kk.shape)


def log_bracket(k: FloatArray, lam: FloatArray, mu: FloatArray, d: FloatArray) -> FloatArray:
    """log[(1 - c^k) + c^k Q(k, (k lambda + mu) d)] elementwise (the kernel the sampler uses; tests hold it to
    `clv.purchase.ggg.log_dropout_term`)."""
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (k, lam, mu, d)))
    flat = [v.ravel() for v in arrays]
    out = [_log_bracket(a, a * b, c, e) for a, b, c, e in zip(*flat, strict=True)]
    return np.array(out).reshape(arrays[0].shape)


def tau_quantile(k: float, lam: float, mu: float, d: float, v: float) -> float:
    """The v-quantile of the time from the last purchase to death given death within d (the sampler's
    inversion; tests hold it to numerical integration of the density)."""
    return float(_tau_offset(k, k * lam, mu, d, math.log(v)))
