"""Shared mathematics of the beta-geometric purchase models: BG/NBD and MBG/NBD.

Both models: while alive, a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); after each
purchase the customer drops out with probability p ~ Beta(a, b). MBG/NBD (Batislam, Denizel & Filiztekin 2007)
adds a drop-out chance at time 0, right after the first purchase. The integer `c` below is the number of extra
drop-out chances: c = 0 for BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"), c = 1
for MBG/NBD.

The likelihood of (x, t_x, T) given lambda and p is (1-p)^(x+c) lambda^x e^(-lambda T) for a customer still
alive, plus p (1-p)^(x+c-1) lambda^x e^(-lambda t_x) for one who dropped after the last purchase (x + c > 0).
A customer alive at T, seen from T on, is a new BG/NBD customer with r + x, alpha + T, a and b + x + c: the
conditional expectations, probabilities and discounted residual purchases below all use that fact.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy import special

from clv.compress import unique_rows
from clv.quadrature import beta_rule, beta_rules, nodes_for_pole
from clv.special import trigamma

__all__ = [
    "dert_alive",
    "expected_new",
    "expected_new_curve",
    "expected_new_curve_draws",
    "log_p_alive",
    "loglik",
    "loglik_grad",
    "loglik_grad_rows",
    "pmf_new",
]

FloatArray = NDArray[np.float64]
#: a parameter: one value, or one per posterior draw as an array of shape (draws, 1) broadcasting against rows
Param = float | FloatArray


def _by_count(x: FloatArray) -> tuple[NDArray[np.intp], FloatArray]:
    """Purchase counts as indices into a grid 0..max(x): terms that depend on x alone are computed once per count
    on the grid and gathered, instead of once per customer (special functions dominate the cost of a fit)."""
    index = x.astype(np.intp)
    return index, np.arange(int(index.max(initial=0)) + 1, dtype=float)


def _terms(
    r: Param, alpha: Param, a: Param, b: Param, x: FloatArray, t_x: FloatArray, T: FloatArray, c: int
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Log of the 'alive at T' and 'dropped after t_x' terms of the likelihood (FHL 2005, Eq. 6)."""
    index, k = _by_count(x)
    common_k = special.gammaln(r + k) - special.gammaln(r) + r * np.log(alpha) - special.betaln(a, b)
    b_drop_k = np.maximum(b + k + c - 1.0, b)  # only used where k + c > 0, where it equals b + k + c - 1
    # [..., index]: parameters may carry a leading draws axis (shape (draws, 1)), the counts are the last axis
    alive = (common_k + special.betaln(a, b + k + c))[..., index] - (r + x) * np.log(alpha + T)
    has_drop = (x + c) > 0
    drop = (common_k + special.betaln(a + 1.0, b_drop_k))[..., index] - (r + x) * np.log(alpha + t_x)
    return alive, np.where(has_drop, drop, -np.inf), has_drop


def loglik(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray, c: int
) -> FloatArray:
    """Log-likelihood of each row: log of the sum of the two terms, taken with logaddexp."""
    alive, drop, _ = _terms(r, alpha, a, b, x, t_x, T, c)
    return np.logaddexp(alive, drop)


def loglik_grad(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray, c: int
) -> tuple[FloatArray, FloatArray]:
    """Log-likelihood of each row and its analytic gradient in (r, alpha, a, b), shape (rows, 4).

    Each term is gammaln / betaln / log of the parameters, so its derivative is a digamma expression; the
    gradient of log(e^A + e^B) is the softmax-weighted mix of the terms' gradients. Digamma terms that depend on
    the purchase count alone are evaluated once per count.
    """
    alive, drop, _ = _terms(r, alpha, a, b, x, t_x, T, c)
    ll = np.logaddexp(alive, drop)
    w_drop = np.exp(drop - ll)
    w_alive = 1.0 - w_drop
    psi = special.digamma
    index, k = _by_count(x)
    b_drop = np.maximum(b + k + c - 1.0, b)
    d_r = (psi(r + k) - psi(r))[index] + np.log(alpha)
    d_a_alive = (psi(a) - psi(a + b + k + c))[index]
    d_a_drop = (psi(a + 1.0) - psi(a + 1.0 + b_drop))[index]
    d_b_alive = (psi(b + k + c) - psi(a + b + k + c))[index]
    d_b_drop = (psi(b_drop) - psi(a + 1.0 + b_drop))[index]
    log_at, log_atx = np.log(alpha + T), np.log(alpha + t_x)
    grad = np.empty((x.shape[0], 4))
    grad[:, 0] = d_r - w_alive * log_at - w_drop * log_atx
    grad[:, 1] = r / alpha - (r + x) * (w_alive / (alpha + T) + w_drop / (alpha + t_x))
    grad[:, 2] = -(psi(a) - psi(a + b)) + w_alive * d_a_alive + w_drop * d_a_drop
    grad[:, 3] = -(psi(b) - psi(a + b)) + w_alive * d_b_alive + w_drop * d_b_drop
    return ll, grad


def _row_count_terms(P: FloatArray, x: FloatArray, c: int) -> FloatArray:
    """The parts of the likelihood and its gradient that do not depend on t_x or T, per row, with the rows' own
    parameters P (rows, 4) in (r, alpha, a, b): special functions cost most, so they are evaluated once per
    distinct (x, r, alpha, a, b) (the covariate patterns times the purchase counts) and gathered. Shape (9, rows):
    the alive and drop-out terms' parameter parts (`_terms` without the powers of alpha + T, alpha + t_x), then
    d/dr of log Gamma(r+x)/Gamma(r), d/da and d/db of each term's beta functions, and d/da, d/db of -log B(a, b)."""
    (k, r, alpha, a, b), inverse, _ = unique_rows(x, *P.T)
    psi = special.digamma
    common = special.gammaln(r + k) - special.gammaln(r) + r * np.log(alpha) - special.betaln(a, b)
    b_drop = np.maximum(b + k + c - 1.0, b)  # only used where k + c > 0, where it equals b + k + c - 1
    terms = np.stack(
        [
            common + special.betaln(a, b + k + c),
            common + special.betaln(a + 1.0, b_drop),
            psi(r + k) - psi(r),
            psi(a) - psi(a + b + k + c),
            psi(a + 1.0) - psi(a + 1.0 + b_drop),
            psi(b + k + c) - psi(a + b + k + c),
            psi(b_drop) - psi(a + 1.0 + b_drop),
            -(psi(a) - psi(a + b)),
            -(psi(b) - psi(a + b)),
        ]
    )
    return np.asarray(terms[:, inverse], dtype=float)


def loglik_grad_rows(
    P: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, c: int
) -> tuple[FloatArray, FloatArray]:
    """`loglik_grad` with every row's own parameters, P of shape (rows, 4) in (r, alpha, a, b) (customers with
    covariates: Bachmann, Meierer & Naef 2021): the log-likelihood of each row (FHL 2005, Eq. 6; Batislam et al.
    2007 for c = 1) and its analytic gradient in that row's parameters, shape (rows, 4). The per-count grid of
    `_terms` becomes a grid of distinct (x, parameter pattern) (`_row_count_terms`)."""
    P = np.asarray(P, dtype=float)
    r, alpha = P[:, 0], P[:, 1]
    alive_k, drop_k, d_r, d_a_alive, d_a_drop, d_b_alive, d_b_drop, d_a0, d_b0 = _row_count_terms(P, x, c)
    log_at, log_atx = np.log(alpha + T), np.log(alpha + t_x)
    alive = alive_k - (r + x) * log_at
    drop = np.where((x + c) > 0, drop_k - (r + x) * log_atx, -np.inf)
    ll = np.logaddexp(alive, drop)
    w_drop = np.exp(drop - ll)
    w_alive = 1.0 - w_drop
    grad = np.empty((x.shape[0], 4))
    grad[:, 0] = d_r + np.log(alpha) - w_alive * log_at - w_drop * log_atx
    grad[:, 1] = r / alpha - (r + x) * (w_alive / (alpha + T) + w_drop / (alpha + t_x))
    grad[:, 2] = d_a0 + w_alive * d_a_alive + w_drop * d_a_drop
    grad[:, 3] = d_b0 + w_alive * d_b_alive + w_drop * d_b_drop
    return ll, grad


def loglik_hessian(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    c: int,
    weights: FloatArray,
) -> FloatArray:
    """Weighted sum over rows of the Hessian of the log-likelihood in (r, alpha, a, b), analytically.

    With LL = log(e^A + e^B) and softmax weights w_A + w_B = 1: Hess LL = w_A Hess A + w_B Hess B +
    w_A w_B (grad A - grad B)(grad A - grad B)^T. A and B share the part of `_terms` that depends on the
    parameters alone and on x; their own parts give trigamma terms and powers of 1/(alpha + T), 1/(alpha + t_x).
    """
    alive, drop, _ = _terms(r, alpha, a, b, x, t_x, T, c)
    ll = np.logaddexp(alive, drop)
    w_b = np.exp(drop - ll)
    w_a = 1.0 - w_b
    index, k = _by_count(x)
    tri = trigamma
    psi = special.digamma
    b_drop = np.maximum(b + k + c - 1.0, b)
    at, atx = alpha + T, alpha + t_x
    # gradients of A and B beyond the shared part, and their difference
    ga = [
        -np.log(at),
        -(r + x) / at,
        (psi(a) - psi(a + b + k + c))[index],
        (psi(b + k + c) - psi(a + b + k + c))[index],
    ]
    gb = [
        -np.log(atx),
        -(r + x) / atx,
        (psi(a + 1.0) - psi(a + b + k + c))[index],
        (psi(b_drop) - psi(a + b + k + c))[index],
    ]
    d = np.stack([u - v for u, v in zip(ga, gb, strict=True)], axis=1)
    cross = (weights * w_a * w_b)[:, None] * d
    hess = d.T @ cross
    tri_abkc = tri(a + b + k + c)[index]
    # the shared part (rows weighted by `weights` only)
    hess[0, 0] += weights @ (tri(r + k) - tri(r))[index]
    hess[0, 1] += weights.sum() / alpha
    hess[1, 1] += -r / alpha**2 * weights.sum()
    hess[2, 2] += -(tri(a) - tri(a + b)) * weights.sum()
    hess[2, 3] += tri(a + b) * weights.sum()
    hess[3, 3] += -(tri(b) - tri(a + b)) * weights.sum()
    # each term's own part, mixed by the softmax weights
    wa, wb = weights * w_a, weights * w_b
    hess[0, 1] += -(wa @ (1.0 / at)) - (wb @ (1.0 / atx))
    hess[1, 1] += wa @ ((r + x) / at**2) + wb @ ((r + x) / atx**2)
    hess[2, 2] += wa @ (tri(a) - tri_abkc) + wb @ (tri(a + 1.0) - tri_abkc)
    hess[2, 3] += -(weights @ tri_abkc)
    hess[3, 3] += wa @ (tri(b + k + c)[index] - tri_abkc) + wb @ (tri(b_drop)[index] - tri_abkc)
    hess[1, 0], hess[3, 2] = hess[0, 1], hess[2, 3]  # the additions above went to the upper triangle only
    return hess


def log_p_alive(
    r: Param, alpha: Param, a: Param, b: Param, x: FloatArray, t_x: FloatArray, T: FloatArray, c: int
) -> FloatArray:
    """log P(alive at T | x, t_x, T): the 'alive' term over the likelihood.

    BG/NBD: 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)) (FHL 2005, Eq. 13);
    MBG/NBD: 1 / (1 + a / (b + x) (...)^(r + x)) (Batislam et al. 2007, Eq. 8).
    """
    alive, drop, _ = _terms(r, alpha, a, b, x, t_x, T, c)
    return alive - np.logaddexp(alive, drop)


def _group_by(values: FloatArray) -> tuple[FloatArray, NDArray[np.intp]]:
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, inverse.reshape(-1)


def expected_new(
    t: float | FloatArray, r: FloatArray, alpha: FloatArray, a: float, b: FloatArray, c: int = 0
) -> FloatArray:
    """E[X(t)] of a new customer with parameters (r, alpha, a, b), per row (r, alpha, b may vary by row).

    E[X(t) | lambda, p] = (1 - p)^c (1 - exp(-lambda p t)) / p; averaging over lambda gives
    (1 - p)^c (1 - (1 + p t / alpha)^-r) / p, and over p ~ Beta(a, b) a Gauss-Jacobi rule takes the expectation.
    This equals the closed form (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))] of FHL 2005,
    Eq. 9 (c = 0), but has no removable singularity at a = 1 and no cancellation for large r and b.
    """
    r, alpha, b = np.broadcast_arrays(np.asarray(r, float), np.asarray(alpha, float), np.asarray(b, float))
    t_arr = np.broadcast_to(np.asarray(t, dtype=float), r.shape)
    out = np.zeros(r.shape)
    positive = t_arr > 0
    b_values, group = _group_by(b)
    for k, b_k in enumerate(b_values):
        rows = (group == k) & positive
        if not rows.any():
            continue
        d = float(np.min(alpha[rows] / t_arr[rows]))
        p, w = beta_rule(a, float(b_k), nodes_for_pole(d))
        shrink = np.log1p(np.outer(t_arr[rows] / alpha[rows], p))  # log(1 + p t / alpha)
        g = -np.expm1(-r[rows, None] * shrink) / p
        if c:
            g = g * (1.0 - p) ** c
        out[rows] = g @ w
    return out


def expected_new_curve(
    times: FloatArray, r: FloatArray, alpha: FloatArray, a: float, b: FloatArray, chunk: int = 2_000_000
) -> FloatArray:
    """E[X(t)] of alive customers (c = 0 form) at every t of `times`, shape (rows, len(times)): one Gauss-Jacobi
    rule per distinct b, all built at once (`beta_rules`) with the node count the hardest row needs (the largest
    t and the smallest alpha), serves every time point."""
    times = np.asarray(times, dtype=float)
    out = np.zeros((r.size, times.size))
    if not np.any(times > 0) or r.size == 0:
        return out
    t_max = float(times.max())
    b_values, group = _group_by(b)
    nodes, weights = beta_rules(a, b_values, nodes_for_pole(float(np.min(alpha)) / t_max))
    step = max(1, chunk // (times.size * nodes.shape[1]))
    for lo in range(0, r.size, step):
        sel = slice(lo, lo + step)
        p = nodes[group[sel]][:, None, :]
        scaled = (times[None, :, None] / alpha[sel, None, None]) * p
        g = -np.expm1(-r[sel, None, None] * np.log1p(scaled)) / p
        out[sel] = np.einsum("itk,ik->it", g, weights[group[sel]])
    return out


def expected_new_curve_draws(
    times: FloatArray, r: FloatArray, alpha: FloatArray, a: FloatArray, b: FloatArray, x: FloatArray, T: FloatArray
) -> FloatArray:
    """`expected_new_curve` of the alive customers with histories (x, T) under many parameter draws at once:
    E[X(t)] with parameters (r_d + x, alpha_d + T, a_d, b_d + x) (b already including MBG/NBD's c), shape
    (draws, rows, len(times)), for 1-d draws r, alpha, a, b and rows x, T.

    A Gauss-Jacobi rule per draw and purchase count would cost an eigenproblem each; instead, with z = t / (alpha'
    + t), FHL 2005's Eq. (10) bracket is the integral of the purchase rate, E[X(t)] = r' int_0^z (1-y)^(r'-1)
    2F1(r'+1, b'; a+b'; y) dy (Euler's integral of E_p[(1 + p s / alpha')^-(r'+1)] and Pfaff's transformation,
    DLMF 15.6.1, 15.8.1), and Euler's transformation gives the integrand as (1-y)^(a-2) 2F1(a+b'-r'-1, a; a+b'; y),
    a power series whose coefficients e_n (the Cauchy product of the two series) depend on the draw and x only:
    E[X(t)] = r' sum_n e_n z^(n+1) / (n+1), summed by Horner's rule for every T and t (`_series_curve`, compiled).
    Where the series would need more than 4,000 terms (z near 1) or its coefficients are not all positive
    (a > 2 or a + b - r - 1 < 0), those (draw, row) pairs take the quadrature (`expected_new_curve`) instead.
    """
    times = np.ascontiguousarray(times, dtype=float)
    r, alpha, a, b = (np.ascontiguousarray(np.broadcast_to(v, np.shape(r)), dtype=float) for v in (r, alpha, a, b))
    x, T = np.ascontiguousarray(x, dtype=float), np.ascontiguousarray(T, dtype=float)
    out = np.zeros((r.size, x.size, times.size))
    if times.size == 0 or x.size == 0 or r.size == 0 or not np.any(times > 0):
        return out
    ok = np.ones((r.size, x.size), dtype=np.bool_)
    order = np.lexsort((T, x))  # runs of equal x share the series' coefficients
    ascending = np.argsort(times, kind="stable")  # the Horner sums run on tails of ascending times
    _compiled_series()(r, alpha, a, b, x[order], T[order], times[ascending], order, ascending, out, ok)
    for d in np.flatnonzero(~ok.all(axis=1)):
        rows = np.flatnonzero(~ok[d])
        out[d, rows] = expected_new_curve(times, r[d] + x[rows], alpha[d] + T[rows], float(a[d]), b[d] + x[rows])
    return out


_SERIES_TERMS = 4000


def _series_coefficients(
    cp: float, a: float, b2: float, z_max: float, dk: FloatArray, sm: FloatArray, cn: FloatArray
) -> int:  # pragma: no cover - runs compiled
    """Fill cn[n] = e_n / (n + 1) (see `_series_curve`) and return the number of terms: all coefficients are
    positive here (a <= 2, C' >= 0), and the series stops once three terms in a row at z_max fall under 1e-17 of
    the sum while decreasing; 0 when that takes more than `_SERIES_TERMS` terms."""
    dk[0], sm[0], cn[0] = 1.0, 1.0, 1.0
    total, power, small = 1.0, 1.0, 0
    for n in range(1, _SERIES_TERMS):
        dk[n] = dk[n - 1] * (cp + n - 1.0) * (a + n - 1.0) / ((a + b2 + n - 1.0) * n)
        sm[n] = sm[n - 1] * (1.0 - a + n) / n
        e0 = e1 = e2 = e3 = 0.0  # four partial sums: independent chains of multiply-adds
        top = n + 1 - (n + 1) % 4
        for k in range(0, top, 4):
            e0 += dk[k] * sm[n - k]
            e1 += dk[k + 1] * sm[n - k - 1]
            e2 += dk[k + 2] * sm[n - k - 2]
            e3 += dk[k + 3] * sm[n - k - 3]
        for k in range(top, n + 1):
            e0 += dk[k] * sm[n - k]
        cn[n] = ((e0 + e1) + (e2 + e3)) / (n + 1.0)
        power *= z_max
        term = cn[n] * power
        total += term
        small = small + 1 if term <= 1e-17 * total and cn[n] * z_max <= cn[n - 1] else 0
        if small == 3:
            return n + 1
    return 0


def _horner(cn: FloatArray, need: NDArray[np.int64], zs: FloatArray, acc: FloatArray) -> None:  # pragma: no cover
    """acc[k] = sum_(n < need[k]) cn[n] zs[k]^n for ascending `need`, eight elements at a time: each group of
    eight keeps its sums in registers (eight independent chains of multiply-adds, which the compiler packs into
    vector instructions) and sums the terms its last element needs, which are at least those each of the eight
    needs (the extra terms are below rounding). Three times faster than one pass over the elements per term."""
    m = zs.size
    full = m - m % 8
    for s in range(0, full, 8):
        z0, z1, z2, z3, z4, z5, z6, z7 = (
            zs[s],
            zs[s + 1],
            zs[s + 2],
            zs[s + 3],
            zs[s + 4],
            zs[s + 5],
            zs[s + 6],
            zs[s + 7],
        )
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        for n in range(need[s + 7] - 1, -1, -1):
            c = cn[n]
            a0, a1, a2, a3 = a0 * z0 + c, a1 * z1 + c, a2 * z2 + c, a3 * z3 + c
            a4, a5, a6, a7 = a4 * z4 + c, a5 * z5 + c, a6 * z6 + c, a7 * z7 + c
        acc[s], acc[s + 1], acc[s + 2], acc[s + 3] = a0, a1, a2, a3
        acc[s + 4], acc[s + 5], acc[s + 6], acc[s + 7] = a4, a5, a6, a7
    for k in range(full, m):
        a, z = 0.0, zs[k]
        for n in range(need[k] - 1, -1, -1):
            a = a * z + cn[n]
        acc[k] = a


@functools.cache
def _compiled_series() -> Callable[..., None]:
    """`_series_curve` compiled by numba on first use (cached on disk), releasing the GIL: callers run blocks on
    threads (`clv.bayes.predict`), so the kernel itself is serial (numba's own threads, when its OpenMP layer is
    missing, must not be entered from several threads at once)."""
    import numba

    # the same code with its draws loop as numba's parallel range (the plain function runs it as `range`)
    horner = numba.njit(cache=True, nogil=True, fastmath=True)(_horner)
    coefficients = numba.njit(cache=True, nogil=True)(_series_coefficients)
    names = {**globals(), "_horner": horner, "_series_coefficients": coefficients}
    compiled = types.FunctionType(_series_curve.__code__, names, "_series_curve")
    return numba.njit(cache=True, nogil=True)(compiled)


def _series_curve(  # pragma: no cover - runs compiled; tested through expected_new_curve_draws
    r: FloatArray,
    alpha: FloatArray,
    a: FloatArray,
    b: FloatArray,
    x: FloatArray,
    T: FloatArray,
    times: FloatArray,
    rows_at: NDArray[np.intp],
    times_at: NDArray[np.intp],
    out: FloatArray,
    ok: NDArray[np.bool_],
) -> None:
    """Fill out[d, rows_at[i], times_at[j]] with the series of `expected_new_curve_draws` at rows i sorted by x
    and times j ascending (rows_at, times_at: their places in the caller's order); ok[d, rows_at[i]] False where
    the series is not used. Coefficients: d_k = (C')_k (a)_k / ((a+b')_k k!), C' = a+b'-r'-1, and
    s_m = (2-a)_m / m!; e_n = sum_k d_k s_(n-k), all positive where a <= 2 and C' >= 0 (no cancellation; other
    draws and counts are left to the quadrature). Each time point sums the terms it needs at the run's largest z
    (z^n falls to z_max^N at n = N log z_max / log z), plus a margin of 12."""
    n_rows, n_times = x.size, times.size
    t_max = times.max()
    for di in range(r.size):
        dk, sm, cn = np.empty(_SERIES_TERMS), np.empty(_SERIES_TERMS), np.empty(_SERIES_TERMS)
        zs, acc = np.empty(n_rows * n_times), np.empty(n_rows * n_times)
        need = np.empty(n_rows * n_times, dtype=np.int64)
        ra, al, aa, ba = r[di], alpha[di], a[di], b[di]
        i0 = 0
        while i0 < n_rows:
            i1 = i0
            while i1 < n_rows and x[i1] == x[i0]:
                i1 += 1
            r2, b2 = ra + x[i0], ba + x[i0]
            cp = aa + b2 - r2 - 1.0
            z_max = t_max / (al + T[i0] + t_max)  # rows sorted by T within x: the first has the largest z
            n_terms = 0 if aa > 2.0 or cp < 0.0 else _series_coefficients(cp, aa, b2, z_max, dk, sm, cn)
            if n_terms == 0:
                for i in range(i0, i1):
                    ok[di, rows_at[i]] = False
                i0 = i1
                continue
            rows = i1 - i0
            log_max = np.log(z_max)
            for j in range(n_times):  # times ascending, so is the number of terms each needs (at the run's z_max)
                z_j = times[j] / (al + T[i0] + times[j])
                n_j = min(n_terms, int(n_terms * log_max / np.log(max(z_j, 1e-300))) + 12)
                for i in range(rows):
                    zs[j * rows + i] = times[j] / (al + T[i0 + i] + times[j])
                    need[j * rows + i] = n_j
            m = rows * n_times
            _horner(cn, need[:m], zs[:m], acc[:m])
            for j in range(n_times):
                for i in range(rows):
                    out[di, rows_at[i0 + i], times_at[j]] = r2 * zs[j * rows + i] * acc[j * rows + i]
            i0 = i1


def pmf_new(n: int, t: float, r: FloatArray, alpha: FloatArray, a: Param, b: FloatArray, c: int = 0) -> FloatArray:
    """P(X(t) = n) for a new customer (FHL 2005, Eq. 8; Batislam et al. 2007, Eq. 6 for c = 1), per row.

    P = B(a, b+n+c)/B(a,b) NB(n; r, alpha/(alpha+t)) + [n + c > 0] B(a+1, b+n+c-1)/B(a,b) P(NB >= n), where
    NB is the negative binomial count of the gamma-Poisson purchases in (0, t] and P(NB >= n) is the regularised
    incomplete beta function I_{t/(alpha+t)}(n, r) (1 for n = 0), which avoids summing n terms.
    """
    r, alpha, b = np.broadcast_arrays(np.asarray(r, float), np.asarray(alpha, float), np.asarray(b, float))
    log_q = np.log(t) - np.log(alpha + t)  # log(t / (alpha + t))
    log_nb = (
        special.gammaln(r + n)
        - special.gammaln(r)
        - special.gammaln(n + 1.0)
        + r * (np.log(alpha) - np.log(alpha + t))
        + n * log_q
    )
    alive = special.betaln(a, b + n + c) - special.betaln(a, b) + log_nb
    if n + c == 0:
        return np.exp(alive)
    tail = special.betainc(n, r, t / (alpha + t)) if n > 0 else np.ones_like(r)
    drop = special.betaln(a + 1.0, b + n + c - 1.0) - special.betaln(a, b) + np.log(np.maximum(tail, 1e-300))
    return np.exp(np.logaddexp(alive, np.where(tail > 0, drop, -np.inf)))


def dert_alive(delta: float, r: FloatArray, alpha: FloatArray, a: float, b: FloatArray) -> FloatArray:
    """Discounted expected purchases from now to infinity of a customer alive now (continuous rate delta).

    Given lambda and p the purchase rate at time t is lambda e^(-lambda p t); averaging over lambda ~ Gamma(r, alpha)
    gives (r/alpha)(1 + p t/alpha)^-(r+1), and the discounted integral is
    (r/alpha) J(p), J(p) = int_0^inf e^(-delta t) (1 + p t/alpha)^-(r+1) dt = (z^(r+1) / delta) U(r+1, r+1, z)
    with z = delta alpha / p and U Tricomi's confluent hypergeometric function (DLMF 13.4.4). The expectation over
    p ~ Beta(a, b) is a Gauss-Jacobi rule.
    """
    r, alpha, b = np.broadcast_arrays(np.asarray(r, float), np.asarray(alpha, float), np.asarray(b, float))
    out = np.zeros(r.shape)
    b_values, group = _group_by(b)
    for k, b_k in enumerate(b_values):
        rows = group == k
        p, w = beta_rule(a, float(b_k), 128)
        z = delta * alpha[rows, None] / p
        m = np.broadcast_to(r[rows, None] + 1.0, z.shape)
        j = scaled_expint(m, z) * alpha[rows, None] / p  # J = (1/k) e^z E_m(z), k = p / alpha
        out[rows] = (r[rows] / alpha[rows]) * (j @ w)
    return out


def scaled_expint(m: FloatArray, z: FloatArray) -> FloatArray:
    """e^z E_m(z) for real m > 0, z > 0, never forming e^z or E_m(z) alone (E_m the generalised exponential
    integral, DLMF 8.19.1; e^z E_m(z) = z^(m-1) U(m, m, z) in Tricomi's U).

    z >= 1 or m >= 12: the continued fraction e^z E_m(z) = 1/(z+m- 1*m/(z+m+2- 2*(m+1)/(z+m+4- ...)))
    (DLMF 8.19.17, modified Lentz), which converges in a few dozen steps there. z < 1: start from the fractional
    order m0 = m - ceil(m) + 1 in (0, 1], E_m0(z) = z^(m0-1) Gamma(1-m0) Q(1-m0, z) (DLMF 8.19.1 with 8.2.4; E_1 for
    m0 = 1), and recur upwards with S_(p+1) = (1 - z S_p) / p for S_p = e^z E_p(z) (DLMF 8.19.12), which is stable
    for z < 1 because each step multiplies errors by z / p < 1; the first step divides 1 - z S_m0 by m0, so the
    relative error is about 1e-16 / m0 when m sits just above a whole number (1e-10 at m0 = 1e-6).
    """
    m, z = np.broadcast_arrays(np.asarray(m, float), np.asarray(z, float))
    out = np.empty(m.shape)
    fraction = (z >= 1.0) | (m >= 12.0)
    if fraction.any():
        out[fraction] = _expint_continued_fraction(m[fraction], z[fraction])
    rest = ~fraction
    if rest.any():
        out[rest] = _expint_recurrence(m[rest], z[rest])
    return out


def _expint_recurrence(m: FloatArray, z: FloatArray) -> FloatArray:
    steps = np.maximum(np.ceil(m) - 1.0, 0.0)
    m0 = m - steps
    whole = np.abs(m0 - 1.0) < 1e-12
    a = np.where(whole, 0.5, 1.0 - m0)  # placeholder where whole: replaced below
    frac = np.exp((m0 - 1.0) * np.log(z) + special.gammaln(a) + np.log(special.gammaincc(a, z)))
    s = np.exp(z) * np.where(whole, special.exp1(z), frac)
    p = m0.copy()
    for _ in range(int(steps.max(initial=0.0))):
        go = p < m - 0.5
        s = np.where(go, (1.0 - z * s) / p, s)
        p = np.where(go, p + 1.0, p)
    return s


def _expint_continued_fraction(m: FloatArray, z: FloatArray) -> FloatArray:
    tiny = 1e-300
    b = z + m
    c = np.full(m.shape, 1.0 / tiny)
    d = 1.0 / b
    h = d.copy()
    for i in range(1, 500):
        an = -i * (m - 1.0 + i)
        b = b + 2.0
        d = 1.0 / np.where(np.abs(an * d + b) < tiny, tiny, an * d + b)
        c = b + an / np.where(np.abs(c) < tiny, tiny, c)
        step = c * d
        h = h * step
        if np.all(np.abs(step - 1.0) < 1e-15):
            break
    return h
