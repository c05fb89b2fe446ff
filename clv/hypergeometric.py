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

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

__all__ = ["hyp2f1_one", "hyp2f1_one_fraction", "hyp2f1_one_log_grad"]

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
    partial numerator a_j = -k_j(B, C) z is a product of rational functions of B and C, so d log a_j is exact,
    and Lentz's recurrences carry the derivatives along (see `_fraction_log_grad`). The fraction stops when
    both the value and the derivatives have converged to rounding, so the result is the derivative of the
    limit, not of an approximant. Returns log 2F1 (shape of the broadcast inputs) and the gradient (shape
    (3, ...)). The loop runs compiled (numba, cached on disk after the first call): near z = 1 it takes a
    thousand steps, whose per-step overhead in NumPy would dominate a Pareto/NBD fit.
    """
    B, C, z = np.broadcast_arrays(np.asarray(B, float), np.asarray(C, float), np.asarray(z, float))
    shape = B.shape
    log_f, grad = np.empty(B.size), np.empty((3, B.size))
    _compiled_fraction()(
        np.ascontiguousarray(B.ravel()), np.ascontiguousarray(C.ravel()), np.ascontiguousarray(z.ravel()), log_f, grad
    )
    return log_f.reshape(shape), grad.reshape((3, *shape))


@functools.cache
def _compiled_fraction() -> Callable[..., None]:
    """`_fraction_log_grad` compiled by numba on first use (imported here, so that importing clv stays quick)."""
    import numba

    return numba.njit(cache=True)(_fraction_log_grad)


def _fraction_log_grad(
    b: NDArray[np.float64],
    c: NDArray[np.float64],
    z: NDArray[np.float64],
    out_f: NDArray[np.float64],
    out_g: NDArray[np.float64],
) -> None:
    """Fill out_f with log 2F1(1, B; C; z) = -log g, g = 1 + a1/(1 + a2/(1 + ...)), a_j = -k_j z (the module
    docstring's k_j), and out_g (3, n) with its derivatives in (B, C, z), by modified Lentz with tangents.

    The tangents are carried as log-derivatives e = dD/D and dC/C, whose recurrences need no division by the
    (possibly tiny) D and C: with g_j = d log a_j = (d log k_j / dB, d log k_j / dC, 1 / z),
    e(D_j) = -(1 - D_j) (g_j + e(D_(j-1))) and e(C_j) = (1 - 1 / C_j) (g_j - e(C_(j-1))), from
    D_j = 1 / (1 + a_j D_(j-1)) and C_j = 1 + a_j / C_(j-1); d log g = sum_j (e(C_j) + e(D_j)). At z = 0 the
    value is 1 and d 2F1 / dz = B / C.
    """
    for i in range(b.size):
        B, Cc, x = b[i], c[i], z[i]
        if x <= 0.0:
            out_f[i], out_g[0, i], out_g[1, i], out_g[2, i] = 0.0, 0.0, 0.0, B / Cc
            continue
        f, cc, d = 1.0, 1.0, 0.0  # f, the approximant of g, stays in [1 - z, 1]: a product, no logs
        ec0 = ec1 = ec2 = ed0 = ed1 = ed2 = l0 = l1 = l2 = 0.0
        g2 = 1.0 / x
        for j in range(1, _MAX_TERMS):
            n = j // 2
            if j % 2:
                u, v, w1, w2 = B + n, Cc - 1.0 + n, Cc - 1.0 + 2 * n, Cc + 2.0 * n
                k, g0, g1 = u * v / (w1 * w2), 1.0 / u, 1.0 / v - 1.0 / w1 - 1.0 / w2
            else:
                v, w1, w2 = Cc - 1.0 - B + n, Cc - 2.0 + 2 * n, Cc - 1.0 + 2 * n
                k, g0, g1 = n * v / (w1 * w2), -1.0 / v, 1.0 / v - 1.0 / w1 - 1.0 / w2
            a = -k * x
            p_d, p_c = a * d, a / cc
            d = 1.0 + p_d
            d = 1.0 / (d if abs(d) >= _TINY else _TINY)
            cc = 1.0 + p_c
            cc = cc if abs(cc) >= _TINY else _TINY
            m, q = -p_d * d, p_c / cc  # D_j - 1 and 1 - 1 / C_j without cancellation (a_j is tiny at small z)
            ed0, ed1, ed2 = m * (g0 + ed0), m * (g1 + ed1), m * (g2 + ed2)
            ec0, ec1, ec2 = q * (g0 - ec0), q * (g1 - ec1), q * (g2 - ec2)
            step = cc * d
            s0, s1, s2 = ec0 + ed0, ec1 + ed1, ec2 + ed2
            f *= step
            l0, l1, l2 = l0 + s0, l1 + s1, l2 + s2
            if (
                abs(step - 1.0) < 2e-16
                and abs(s0) <= 1e-16 * (abs(l0) + 1e-3)
                and abs(s1) <= 1e-16 * (abs(l1) + 1e-3)
                and abs(s2) <= 1e-16 * (abs(l2) + 1e-3)
            ):
                break  # rows that reach the term limit keep their last approximant
        out_f[i], out_g[0, i], out_g[1, i], out_g[2, i] = -np.log(f), -l0, -l1, -l2
