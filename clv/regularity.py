"""How regular a data set's inter-purchase times are: the shape k of a Gamma distribution of the times between a
customer's purchases (k = 1: exponential times, purchases as a Poisson process; k > 1: more regular; k < 1:
clumped). The idea and the two estimators are those of BTYDplus' `estimateRegularity` (Platzer & Reutterer 2016,
"Ticking away the moments: timing regularity helps to better predict customer activity", Marketing Science 35(5),
779-799, Sec. 4); written here from the papers they cite.

- `wheat_morrison`: one k for all customers from each customer's last two inter-purchase times d1, d2 (Wheat &
  Morrison 1990, "Estimating purchase regularity with two interpurchase times", Journal of Marketing Research
  27(1), 87-93): with d1, d2 independent Gamma(k, rate) of any rate, M = d1 / (d1 + d2) ~ Beta(k, k), whose
  variance 1 / (4 (2k + 1)) gives k = (1 - 4 Var M) / (8 Var M), a method of moments.
- `gamma_shape_mle`: one k per customer, the maximum-likelihood Gamma shape of the customer's own times (Minka
  2002, "Estimating a Gamma distribution"), for customers with many purchases; BTYDplus reports their median.

Arrays in, numbers out; the times' unit does not matter (k is a shape).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import special

__all__ = ["gamma_shape_mle", "wheat_morrison"]

FloatArray = NDArray[np.float64]


def wheat_morrison(last: FloatArray, previous: FloatArray, weights: FloatArray | None = None) -> tuple[float, float]:
    """k and its standard error from each customer's last two inter-purchase times (Wheat & Morrison 1990:
    M = d1 / (d1 + d2) ~ Beta(k, k), Var M = 1 / (4 (2k + 1))).

    E[M] = 1/2 exactly (the Beta is symmetric), so Var M is estimated about 1/2: V = mean((M - 1/2)^2). This
    does not depend on which of the two times is d1 (BTYDplus draws it at random; here nothing is random), and
    is unbiased for Var M. k = (1 - 4V) / (8V); its standard error by the delta method, |dk/dV| = 1 / (8 V^2),
    with the sampling variance of V estimated from the customers' (M - 1/2)^2. Infinite k (every customer's two
    times equal: V = 0) is returned as inf; the caller says so. With `weights`, each pair stands for that many
    customers (distinct pairs with counts: the same estimate, its sums in another order)."""
    d1, d2 = np.asarray(last, dtype=float), np.asarray(previous, dtype=float)
    w = np.ones(d1.size) if weights is None else np.asarray(weights, dtype=float)
    n = float(w.sum()) if weights is not None else float(d1.size)
    if d1.shape != d2.shape or w.shape != d1.shape or n < 2:
        raise ValueError(f"need two or more pairs of inter-purchase times, got {n:g}")
    if not (np.all(np.isfinite(d1)) and np.all(np.isfinite(d2)) and np.all(d1 > 0) and np.all(d2 > 0)):
        raise ValueError("inter-purchase times must be finite and > 0")
    q = (d1 / (d1 + d2) - 0.5) ** 2
    v = float(q.mean()) if weights is None else float(np.sum(w * q) / n)
    if v == 0.0:
        return math.inf, math.inf
    k = (1.0 - 4.0 * v) / (8.0 * v)
    spread = float(q.std(ddof=1)) if weights is None else math.sqrt(float(np.sum(w * (q - v) ** 2)) / (n - 1.0))
    se = spread / math.sqrt(n) / (8.0 * v * v)
    return float(k), se


def gamma_shape_mle(n: FloatArray, total: FloatArray, sum_log: FloatArray, iterations: int = 50) -> FloatArray:
    """The maximum-likelihood Gamma shape of each customer's n inter-purchase times, given their sum and the sum of
    their logs: the root of log k - digamma(k) = s, s = log(mean) - mean(log) >= 0 (Minka 2002), by
    Minka's generalised Newton iteration 1/k' = 1/k + (log k - digamma(k) - s) / (k^2 (1/k - trigamma(k)))
    from his closed-form start k0 = (3 - s + sqrt((s - 3)^2 + 24 s)) / (12 s) (both from Minka
    2002). s = 0 (all times equal) gives inf."""
    n, total, sum_log = (np.asarray(v, dtype=float) for v in (n, total, sum_log))
    s = np.log(total / n) - sum_log / n
    s = np.where(s < 0, 0.0, s)  # rounding below 0 when all times are equal: Jensen says s >= 0
    out = np.full(s.shape, np.inf)
    ok = s > 1e-12
    si = s[ok]
    k = (3.0 - si + np.sqrt((si - 3.0) ** 2 + 24.0 * si)) / (12.0 * si)
    for _ in range(iterations):
        g = np.log(k) - special.digamma(k) - si
        step = g / (k * k * (1.0 / k - special.polygamma(1, k)))
        k = 1.0 / (1.0 / k + step)
        if np.all(np.abs(g) <= 1e-13 * si):
            break
    out[ok] = k
    return out
