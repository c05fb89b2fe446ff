"""The Gauss hypergeometric function 2F1(1, B; C; z) for 0 < B < C and 0 <= z < 1, as Pareto/NBD needs it.

SciPy's general `hyp2f1` is fast and accurate here, except that it returns NaN for large C with z near 1 (its
connection formulas overflow Gamma(C)). Where it does, this special case is evaluated by Gauss's continued
fraction (DLMF 15.7.5 with a = 0, b -> 0 shifted), whose partial numerators
are all positive when 0 < B < C:

    2F1(1, B; C; z) = 1 / (1 - k1 z / (1 - k2 z / (1 - k3 z / ...))),
    k_{2n+1} = (B + n)(C - 1 + n) / ((C - 1 + 2n)(C + 2n)),   k_{2n} = n (C - 1 - B + n) / ((C - 2 + 2n)(C - 1 + 2n)),

a Stieltjes fraction that converges for every z < 1; it is evaluated by the modified Lentz method (Thompson &
Barnett 1986). The value lies in [1, 1/(1 - z)], so no scaling is needed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

__all__ = ["hyp2f1_one", "hyp2f1_one_fraction"]

_TINY = 1e-300
_MAX_TERMS = 200_000


def hyp2f1_one(B: ArrayLike, C: ArrayLike, z: ArrayLike) -> NDArray[np.float64]:
    """2F1(1, B; C; z), elementwise, for 0 < B < C and 0 <= z < 1: SciPy's value, or the continued fraction
    where SciPy's is not finite or outside the bounds [1, 1/(1-z)] that every value satisfies."""
    B, C, z = np.broadcast_arrays(np.asarray(B, float), np.asarray(C, float), np.asarray(z, float))
    with np.errstate(all="ignore"):
        value = np.asarray(special.hyp2f1(1.0, B, C, z), dtype=float)
        bad = ~np.isfinite(value) | (value < 1.0 - 1e-12) | (value * (1.0 - z) > 1.0 + 1e-12)
    if bad.any():
        value = value.copy()
        value[bad] = hyp2f1_one_fraction(B[bad], C[bad], z[bad])
    return value


def hyp2f1_one_fraction(B: ArrayLike, C: ArrayLike, z: ArrayLike) -> NDArray[np.float64] | NDArray[np.complex128]:
    """2F1(1, B; C; z) by Gauss's continued fraction (see the module docstring). Complex arguments are accepted
    (only arithmetic is used), so that the complex-step method can differentiate through it."""
    dtype = np.result_type(np.asarray(B), np.asarray(C), np.asarray(z), float)
    B, C, z = np.broadcast_arrays(np.asarray(B, dtype), np.asarray(C, dtype), np.asarray(z, dtype))
    shape = B.shape
    B, C, z = B.ravel(), C.ravel(), z.ravel()
    out = np.ones(B.shape, dtype=dtype)
    active = np.flatnonzero(z.real > 0)
    if active.size == 0:
        return out.reshape(shape)
    b, c, x = B[active], C[active], z[active]
    # f = 1 / (1 - k1 x / (1 - k2 x / ...)): Lentz on the fraction g = b0 + a1/(b1 + a2/(b2 + ...)) with
    # b_j = 1 and a_j = -k_j x, then f = 1 / g with b0 = 1. Converged rows leave the working arrays, so that the
    # cost follows the slow rows only (those with z near 1 need thousands of terms, most rows a few dozen).
    f = np.ones(b.shape, dtype=dtype)
    cc = f.copy()
    d = np.zeros(b.shape, dtype=dtype)
    rows = active
    for j in range(1, _MAX_TERMS):
        n = j // 2
        if j % 2:
            k = (b + n) * (c - 1.0 + n) / ((c - 1.0 + 2 * n) * (c + 2 * n))
        else:
            k = n * (c - 1.0 - b + n) / ((c - 2.0 + 2 * n) * (c - 1.0 + 2 * n))
        a = -k * x
        d = 1.0 + a * d
        d = np.where(np.abs(d) < _TINY, _TINY, d)
        cc = 1.0 + a / cc
        cc = np.where(np.abs(cc) < _TINY, _TINY, cc)
        d = 1.0 / d
        step = cc * d
        f = f * step
        done = np.abs(step - 1.0) < 2e-16
        if done.any():
            out[rows[done]] = 1.0 / f[done]
            keep = ~done
            rows, b, c, x, f, cc, d = rows[keep], b[keep], c[keep], x[keep], f[keep], cc[keep], d[keep]
            if rows.size == 0:
                break
    out[rows] = 1.0 / f  # rows that reached the term limit keep their last approximant
    return out.reshape(shape)


def hyp2f1_one_log_grad(B: ArrayLike, C: ArrayLike, z: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """log 2F1(1, B; C; z) and its partial derivatives in (B, C, z), for 0 < B < C and 0 <= z < 1.

    The same continued fraction as `hyp2f1_one_fraction`, differentiated step by step (forward mode): each
    partial numerator a_j = -k_j(B, C) z is a product of rational functions of B and C, so d a_j / d(B, C, z) is
    exact, and Lentz's recurrences D_j = 1 / (1 + a_j D_(j-1)), C_j = 1 + a_j / C_(j-1), f_j = f_(j-1) C_j D_j
    carry their derivatives along; d log f = sum_j (d log C_j + d log D_j). The fraction stops when both the
    value and the derivatives have converged to rounding, so the result is the derivative of the limit, not of
    an approximant. Returns log 2F1 (shape of the broadcast inputs) and the gradient (shape (3, ...)).
    """
    B, C, z = np.broadcast_arrays(np.asarray(B, float), np.asarray(C, float), np.asarray(z, float))
    shape = B.shape
    B, C, z = B.ravel(), C.ravel(), z.ravel()
    log_f = np.zeros(B.shape)
    grad = np.zeros((3, B.size))
    grad[2] = B / C  # at z = 0: d 2F1 / dz = B / C, and 2F1 = 1
    active = np.flatnonzero(z > 0)
    if active.size:
        log_f[active], grad[:, active] = _fraction_log_grad(B[active], C[active], z[active])
    return log_f.reshape(shape), grad.reshape((3, *shape))


def _partial_numerator(j: int, b: NDArray[np.float64], c: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """k_j of the module docstring and its log-derivatives in B and C."""
    n = j // 2
    if j % 2:
        u, v, w1, w2 = b + n, c - 1.0 + n, c - 1.0 + 2 * n, c + 2.0 * n
        k = u * v / (w1 * w2)
        return k, 1.0 / u, 1.0 / v - 1.0 / w1 - 1.0 / w2
    v, w1, w2 = c - 1.0 - b + n, c - 2.0 + 2 * n, c - 1.0 + 2 * n
    k = n * v / (w1 * w2)
    return k, -1.0 / v, 1.0 / v - 1.0 / w1 - 1.0 / w2


def _fraction_log_grad(
    b: NDArray[np.float64], c: NDArray[np.float64], x: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """-log g and -d log g of g = 1 + a1/(1 + a2/(1 + ...)), a_j = -k_j x, by modified Lentz with tangents
    (rows with z > 0; see `hyp2f1_one_log_grad`). Converged rows leave the working arrays."""
    out_f, out_g = np.zeros(b.size), np.zeros((3, b.size))
    rows = np.arange(b.size)
    log_f = np.zeros(b.size)
    d_log = np.zeros((3, b.size))  # d log g so far
    cc, d = np.ones(b.size), np.zeros(b.size)
    dcc, dd = np.zeros((3, b.size)), np.zeros((3, b.size))  # derivatives of C_j and D_j
    for j in range(1, _MAX_TERMS):
        k, kb, kc = _partial_numerator(j, b, c)
        a = -k * x
        da = np.stack([a * kb, a * kc, -k])  # d a / d(B, C, z)
        den = 1.0 + a * d
        dden = da * d + a * dd
        den = np.where(np.abs(den) < _TINY, _TINY, den)
        d = 1.0 / den
        dd = -dden * d * d
        dcc = da / cc - a * dcc / (cc * cc)
        cc = 1.0 + a / cc
        cc = np.where(np.abs(cc) < _TINY, _TINY, cc)
        step = cc * d
        d_step = dcc / cc + dd / d  # d log(C_j D_j)
        log_f += np.log(step)
        d_log += d_step
        done = (np.abs(step - 1.0) < 2e-16) & np.all(np.abs(d_step) <= 1e-16 * (np.abs(d_log) + 1e-3), axis=0)
        if done.any():
            out_f[rows[done]], out_g[:, rows[done]] = -log_f[done], -d_log[:, done]
            keep = ~done
            rows, b, c, x, log_f, d_log = rows[keep], b[keep], c[keep], x[keep], log_f[keep], d_log[:, keep]
            cc, d, dcc, dd = cc[keep], d[keep], dcc[:, keep], dd[:, keep]
            if rows.size == 0:
                break
    out_f[rows], out_g[:, rows] = -log_f, -d_log  # rows that reached the term limit keep their last approximant
    return out_f, out_g
