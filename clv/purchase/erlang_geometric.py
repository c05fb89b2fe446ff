"""Shared mathematics of the regularity models BG/CNBD-k and MBG/CNBD-k (Reutterer, Platzer & Schroeder 2021,
"Leveraging purchase regularity for predicting customer behavior the easy way", International Journal of Research
in Marketing 38(1), 194-215; Platzer's R package BTYDplus, functions `bgcnbd.*` and `mbgcnbd.*`).

While alive, a customer's inter-purchase times are Erlang-k with rate lambda ~ Gamma(r, alpha) (a purchase at
every k-th event of a Poisson process of rate lambda, the first purchase at time 0); after each purchase the
customer drops out with probability p ~ Beta(a, b); MBG/CNBD-k adds a drop-out chance at time 0. As in
`clv.purchase.beta_geometric`, `c` counts the extra drop-out chances (0: BG/CNBD-k, 1: MBG/CNBD-k). k = 1 gives
BG/NBD and MBG/NBD.

Given lambda and p the history (x purchases, the last at t_x, observed to T, u = T - t_x) has the density

    prod_i d_i^(k-1) / ((k-1)!)^x * lambda^(kx) e^(-lambda t_x)
        * [(1-p)^(x+c) sum_{j<k} e^(-lambda u) (lambda u)^j / j!  +  1{x+c>0} p (1-p)^(x+c-1)]

(d_i the inter-purchase times; the sum is the Erlang-k survival of the open interval). The first factor does not
depend on (r, alpha, a, b): it enters the likelihood as (k-1) sum_log_intervals - x log((k-1)!) (BTYDplus
`mbgcnbd.LL`, its term P1), so a fit at fixed k runs on (x, t_x, T) alone. Integrating lambda and p out gives
the paper's Eq. (A.5) / BTYDplus `mbgcnbd.LL`: `loglik_grad` below. The sum over j is the posterior over the
number of Poisson events j since the last purchase (the phase of the open interval): given alive, j and the
history, lambda ~ Gamma(r + kx + j, alpha + T) and p ~ Beta(a, b + x + c), which is what the predictions use.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

__all__ = [
    "dert_alive",
    "expected_alive",
    "expected_alive_curve",
    "expected_new",
    "log_p_alive",
    "loglik_grad",
    "phase_weights",
    "pmf_alive",
    "regularity_term",
    "simulate_alive",
]

FloatArray = NDArray[np.float64]

#: tail mass of the negative-binomial event count left out of the series of `_series_expected`
TAIL = 1e-17


def regularity_term(k: int, x: FloatArray, sum_log_intervals: FloatArray) -> FloatArray:
    """(k - 1) sum_i log d_i - x log((k - 1)!): the log of the Erlang densities' factors that do not depend on
    lambda (BTYDplus `mbgcnbd.LL`, term P1). Zero for k = 1."""
    return (k - 1) * sum_log_intervals - x * math.lgamma(k)


def _log_phase(s: FloatArray, alpha: float, x: FloatArray, t_x: FloatArray, T: FloatArray, k: int) -> FloatArray:
    """log of Gamma(s + j) / (Gamma(s) j!) u^j / (alpha + T)^j, j = 0..k-1, shape (rows, k), u = T - t_x: the
    terms of the Erlang survival after integrating lambda (BTYDplus `mbgcnbd.LL`, its sum S2). u = 0 leaves
    only j = 0."""
    j = np.arange(k, dtype=float)
    u = T - t_x
    open_ = u > 0
    log_ratio = np.log(np.where(open_, u, 1.0)) - np.log(alpha + T)  # finite everywhere; u = 0 masked below
    grow = special.gammaln(s[:, None] + j) - special.gammaln(s)[:, None] - special.gammaln(j + 1.0)
    out = np.where(open_[:, None] | (j == 0), grow + j * log_ratio[:, None], -np.inf)
    return np.asarray(out, dtype=float)


def _terms(
    params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, k: int, c: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Log of the 'alive at T' and 'dropped after the last purchase' terms of the likelihood without the
    regularity term (Reutterer et al. 2021, Eq. A.5; BTYDplus `mbgcnbd.LL` P2 + P3 + P4 + log(S1 + S2)), and the
    log phase terms (`_log_phase`)."""
    r, alpha, a, b = (float(v) for v in params)
    s = r + k * x
    common = special.gammaln(s) - special.gammaln(r) + r * np.log(alpha) - special.betaln(a, b)
    phase = _log_phase(s, alpha, x, t_x, T, k)
    alive = common + special.betaln(a, b + x + c) + special.logsumexp(phase, axis=1) - s * np.log(alpha + T)
    b_drop = np.maximum(b + x + c - 1.0, b)  # only used where x + c > 0, where it equals b + x + c - 1
    drop = np.where(x + c > 0, common + special.betaln(a + 1.0, b_drop) - s * np.log(alpha + t_x), -np.inf)
    return alive, drop, phase


def loglik_grad(
    params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, *, k: int, c: int
) -> tuple[FloatArray, FloatArray]:
    """Per-row log-likelihood at fixed k without `regularity_term`, and its analytic gradient in
    (r, alpha, a, b), shape (rows, 4). log(e^A + e^D) by logaddexp; its gradient is the softmax mix of the
    terms' gradients, and A's own is the softmax mix over the phase terms (digamma of r + kx + j)."""
    r, alpha, a, b = (float(v) for v in params)
    alive, drop, phase = _terms(params, x, t_x, T, k, c)
    ll = np.logaddexp(alive, drop)
    w_drop = np.exp(drop - ll)
    w_alive = 1.0 - w_drop
    omega = np.exp(phase - special.logsumexp(phase, axis=1, keepdims=True))
    psi = special.digamma
    s = r + k * x
    j = np.arange(k, dtype=float)
    s_j = s[:, None] + j
    log_at, log_atx = np.log(alpha + T), np.log(alpha + t_x)
    b_drop = np.maximum(b + x + c - 1.0, b)
    d_r_alive = (omega * (psi(s_j) - psi(s)[:, None])).sum(axis=1) - log_at
    grad = np.empty((x.shape[0], 4))
    grad[:, 0] = psi(s) - psi(r) + np.log(alpha) + w_alive * d_r_alive - w_drop * log_atx
    grad[:, 1] = r / alpha - w_alive * (omega * s_j).sum(axis=1) / (alpha + T) - w_drop * s / (alpha + t_x)
    grad[:, 2] = (
        -(psi(a) - psi(a + b)) + w_alive * (psi(a) - psi(a + b + x + c)) + w_drop * (psi(a + 1.0) - psi(a + b + x + c))
    )
    grad[:, 3] = (
        -(psi(b) - psi(a + b))
        + w_alive * (psi(b + x + c) - psi(a + b + x + c))
        + w_drop * (psi(b_drop) - psi(a + b + x + c))
    )
    return ll, grad


def log_p_alive(params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, k: int, c: int) -> FloatArray:
    """log P(alive at T | x, t_x, T): the alive term's share of the likelihood (BTYDplus `mbgcnbd.PAlive`;
    Reutterer et al. 2021, Eq. A.6)."""
    alive, drop, _ = _terms(params, x, t_x, T, k, c)
    return np.asarray(alive - np.logaddexp(alive, drop), dtype=float)


def phase_weights(params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, k: int) -> FloatArray:
    """P(j Poisson events since the last purchase | alive at T, history), j = 0..k-1, shape (rows, k)."""
    r, alpha = float(params[0]), float(params[1])
    phase = _log_phase(r + k * x, alpha, x, t_x, T, k)
    return np.asarray(np.exp(phase - special.logsumexp(phase, axis=1, keepdims=True)), dtype=float)


def _series_expected(
    horizon: float, k: int, shape: FloatArray, rate: FloatArray, a: float, b: FloatArray, done: FloatArray
) -> FloatArray:
    """E[purchases in (0, horizon]] with lambda ~ Gamma(shape, rate), the n-th purchase at event n k - done of a
    Poisson process of rate lambda, made while alive with probability E[(1 - p)^(n-1)], p ~ Beta(a, b):

        sum_{n >= 1} B(a, b + n - 1) / B(a, b) * P(N >= n k - done),  N ~ NegBin(shape, rate / (rate + horizon))

    (N the Poisson count mixed over lambda). The series is summed until the count's tail beyond the last term is
    under `TAIL`, so the value is exact to rounding (no simulation)."""
    if horizon <= 0:
        return np.zeros(shape.shape)
    q = rate / (rate + horizon)
    top = float(np.max(stats.nbinom.isf(TAIL, shape, q)))
    n = np.arange(1.0, math.ceil((top + k) / k) + 2.0)
    survive = np.exp(special.betaln(a, b[:, None] + n - 1.0) - special.betaln(a, b)[:, None])
    tail = stats.nbinom.sf(n * k - done[:, None] - 1.0, shape[:, None], q[:, None])
    return np.asarray((survive * tail).sum(axis=1), dtype=float)


def expected_alive(
    horizon: float, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, k: int, c: int
) -> FloatArray:
    """E[X(T, T + horizon) | alive at T, history]: the phase posterior (`phase_weights`) mixed over
    `_series_expected` with lambda ~ Gamma(r + kx + j, alpha + T), p ~ Beta(a, b + x + c) and j events of the
    next inter-purchase time already past. BTYDplus `mbgcnbd.ConditionalExpectedTransactions` approximates this
    for k > 1; the series here is exact."""
    r, alpha, a, b = (float(v) for v in params)
    weights = phase_weights(params, x, t_x, T, k)
    total = np.zeros(x.shape)
    for j in range(k):
        used = weights[:, j] > 0
        if not used.any():
            continue
        part = _series_expected(
            horizon, k, r + k * x[used] + j, alpha + T[used], a, b + x[used] + c, np.full(int(used.sum()), j)
        )
        total[used] += weights[used, j] * part
    return total


def expected_alive_curve(
    horizons: FloatArray, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, k: int, c: int
) -> FloatArray:
    """`expected_alive` at many horizons at once, shape (rows, len(horizons)), by another exact route: with N
    the Poisson count mixed over lambda ~ Gamma(r + kx + j, alpha + T) (NegBin) and J = floor((N + j) / k) the
    purchase chances,

        E[min(J, D)] = sum_m P(N = m) C(floor((m + j) / k)),  C(n) = sum_{i=1..n} B(a, b' + i - 1) / B(a, b')

    (D the purchases until drop-out, P(D >= i) = E[(1 - p)^(i-1)], b' = b + x + c), summed over m = 0..M with
    P(N > M) under `TAIL` at the longest horizon. The log-gamma part of the NegBin pmf and C do not depend on
    the horizon, so each further horizon costs one exponential per (row, m); the work is done once per distinct
    (x, T) and phase j, then mixed by each row's phase posterior (`phase_weights`)."""
    r, alpha, a, b = (float(v) for v in params)
    times = np.asarray(horizons, dtype=float)
    weights = phase_weights(params, x, t_x, T, k)
    (gx, gT), inverse = _unique2(x, T)
    total = np.zeros((x.size, times.size))
    for j in range(k):
        curve = _curve_grid(times, k, j, r + k * gx + j, alpha + gT, a, b + gx + c)
        total += weights[:, j : j + 1] * curve[inverse]
    return total


def _curve_grid(
    times: FloatArray, k: int, j: int, shape: FloatArray, rate: FloatArray, a: float, b: FloatArray
) -> FloatArray:
    """E[min(J, D)] per group (rows of shape, rate, b) and horizon: see `expected_alive_curve`. Groups are
    taken in chunks of similar truncation points M (light buyers need a few terms, heavy buyers hundreds)."""
    out = np.zeros((shape.size, times.size))
    longest = float(times.max(initial=0.0))
    if longest <= 0 or shape.size == 0:
        return out
    tops = stats.nbinom.isf(TAIL, shape, rate / (rate + longest))
    order = np.argsort(tops, kind="stable")
    for chunk in np.array_split(order, max(1, -(-order.size // _CHUNK))):
        out[chunk] = _curve_chunk(times, k, j, int(tops[chunk].max()), shape[chunk], rate[chunk], a, b[chunk])
    return out


#: groups per chunk of `_curve_grid`
_CHUNK = 48


def _curve_chunk(
    times: FloatArray, k: int, j: int, top: int, shape: FloatArray, rate: FloatArray, a: float, b: FloatArray
) -> FloatArray:
    """`_curve_grid` for groups whose event counts are summed over 0..top."""
    out = np.zeros((shape.size, times.size))
    m = np.arange(top + 1, dtype=float)
    log_count = special.gammaln(shape[:, None] + m) - special.gammaln(shape)[:, None] - special.gammaln(m + 1.0)
    i = np.arange(1.0, (top + j) // k + 1.0)
    keep = np.exp(special.betaln(a, b[:, None] + i - 1.0) - special.betaln(a, b)[:, None])
    cumulative = np.concatenate([np.zeros((shape.size, 1)), np.cumsum(keep, axis=1)], axis=1)
    made = cumulative[:, ((m.astype(np.int64) + j) // k)]  # C(floor((m + j) / k)), (groups, top + 1)
    positive = times > 0
    t = times[positive]
    log_q = np.log(rate[:, None] / (rate[:, None] + t))  # (groups, horizons)
    log_1q = np.log(t / (rate[:, None] + t))
    pmf = np.exp(log_count[:, None, :] + (shape[:, None] * log_q)[:, :, None] + log_1q[:, :, None] * m)
    out[:, positive] = np.einsum("ghm,gm->gh", pmf, made)
    return out


def _unique2(u: FloatArray, v: FloatArray) -> tuple[tuple[FloatArray, FloatArray], NDArray[np.intp]]:
    unique, inverse = np.unique(np.stack([u, v], axis=1), axis=0, return_inverse=True)
    return (unique[:, 0], unique[:, 1]), inverse.reshape(-1)


def simulate_alive(
    horizon: float,
    params: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    k: int,
    c: int,
    rng: np.random.Generator,
) -> FloatArray:
    """One draw per row of the purchases in (T, T + horizon] of a customer alive at T, from the model's
    generative process given the history (module docstring): the phase j from its posterior (`phase_weights`),
    lambda ~ Gamma(r + kx + j, alpha + T), p ~ Beta(a, b + x + c), N ~ Poisson(lambda horizon) events, the
    J = floor((N + j) / k) purchase chances, and drop-out after each purchase: min(J, D), D ~ Geometric(p) on
    1, 2, ... (the purchases made before dropping out)."""
    r, alpha, a, b = (float(v) for v in params)
    weights = phase_weights(params, x, t_x, T, k)
    j = (rng.random(x.size)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1).clip(max=k - 1)
    lam = rng.gamma(r + k * x + j) / (alpha + T)
    p = rng.beta(a, b + x + c)
    chances = (rng.poisson(lam * horizon) + j) // k
    until = rng.geometric(np.clip(p, 1e-300, 1.0))
    return np.minimum(chances, until).astype(float)


def expected_new(horizon: FloatArray, params: FloatArray, k: int, c: int) -> FloatArray:
    """E[X(t)] for a customer just acquired (Reutterer et al. 2021, Eq. A.3; BTYDplus `mbgcnbd.xbar` evaluates
    it by approximation): `_series_expected` with lambda ~ Gamma(r, alpha), no event past, and the n-th purchase
    made with probability E[(1 - p)^(n - 1 + c)]."""
    r, alpha, a, b = (float(v) for v in params)
    one = np.ones(1)
    values = [
        _series_expected(float(t), k, r * one, alpha * one, a, (b + c) * one, 0.0 * one)[0] * _shift(a, b, c)
        for t in np.asarray(horizon, dtype=float)
    ]
    return np.asarray(values, dtype=float)


def _shift(a: float, b: float, c: int) -> float:
    """E[(1 - p)^c] for p ~ Beta(a, b): B(a, b + c) / B(a, b); with the series' B(a, b + c + n - 1) / B(a, b + c)
    it makes the new customer's E[(1 - p)^(n - 1 + c)]."""
    return float(np.exp(special.betaln(a, b + c) - special.betaln(a, b)))


def _count_tail(n: FloatArray, k: int, j: int, shape: FloatArray, q: FloatArray) -> FloatArray:
    """P(J >= n) per row and n (shape (rows, len(n))), J = floor((N + j) / k) the purchases among N ~
    NegBin(shape, q) events with j events already past: P(N >= n k - j), 1 for n <= 0."""
    return np.where(n <= 0, 1.0, stats.nbinom.sf(n * k - j - 1.0, shape[:, None], q[:, None]))


def pmf_alive(
    count: int, horizon: float, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, k: int, c: int
) -> FloatArray:
    """P(X(T, T + horizon) = count | alive at T, history). With J the purchase chances in the horizon (as in
    `_series_expected`) and the n-th purchase made with probability E[(1 - p)^(n-1)], p ~ Beta(a, b + x + c):
    P(X = n) = P(J = n) E[(1-p)^(n-1)] + P(J > n) E[(1-p)^(n-1) p] for n >= 1, and P(X = 0) = P(J = 0), mixed
    over the phase posterior (`phase_weights`). Reutterer et al. 2021, Eq. A.4, conditioned on the history."""
    r, alpha, a, b = (float(v) for v in params)
    weights = phase_weights(params, x, t_x, T, k)
    q = (alpha + T) / (alpha + T + horizon)
    n = np.array([count, count + 1], dtype=float)
    b2 = b + x + c
    total = np.zeros(x.shape)
    for j in range(k):
        tail = _count_tail(n, k, j, r + k * x + j, q)  # P(J >= count), P(J >= count + 1)
        if count == 0:
            part = 1.0 - tail[:, 1]
        else:
            keep = np.exp(special.betaln(a, b2 + count - 1.0) - special.betaln(a, b2))
            keep_next = np.exp(special.betaln(a, b2 + count) - special.betaln(a, b2))
            part = (tail[:, 0] - tail[:, 1]) * keep + tail[:, 1] * (keep - keep_next)
        total += weights[:, j] * part
    return total


def dert_alive(
    delta: float, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, k: int, c: int, nodes: int = 96
) -> FloatArray:
    """Discounted expected purchases from T on of a customer alive at T (continuous discount rate delta).

    Given lambda, p and j events of the open gap past, the n-th purchase comes at the (nk - j)-th event, whose
    discount factor has mean g^(nk - j), g = lambda / (lambda + delta); summed over n with (1 - p)^(n-1):
    g^(k-j) / (1 - (1-p) g^k), and over p ~ Beta(a, b'): g^(k-j) 2F1(1, b'; a + b'; g^k) (the series of the
    Beta moments of 1 - p). What is left is one integral over lambda ~ Gamma(r + kx + j, alpha + T), by
    generalised Gauss-Laguerre quadrature with `nodes` nodes per distinct shape."""
    r, alpha, a, b = (float(v) for v in params)
    weights = phase_weights(params, x, t_x, T, k)
    total = np.zeros(x.shape)
    for j in range(k):
        shape = r + k * x + j
        (us, ub, ubeta), inverse, _ = _unique3(shape, b + x + c, alpha + T)
        values = np.empty(us.shape)
        for i, (s_i, b_i, beta_i) in enumerate(zip(us, ub, ubeta, strict=True)):
            z, w = special.roots_genlaguerre(nodes, s_i - 1.0)
            g = z / (z + beta_i * delta)
            f = g ** (k - j) * special.hyp2f1(1.0, b_i, a + b_i, g**k)
            values[i] = float(np.exp(special.logsumexp(np.log(w) + np.log(f)) - special.gammaln(s_i)))
        total += weights[:, j] * values[inverse]
    return total


def _unique3(
    u: FloatArray, v: FloatArray, w: FloatArray
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], NDArray[np.intp], None]:
    stacked = np.stack([u, v, w], axis=1)
    unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return (unique[:, 0], unique[:, 1], unique[:, 2]), inverse.reshape(-1), None
