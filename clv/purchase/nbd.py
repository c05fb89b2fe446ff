"""The NBD model of purchase timing with no dropout: the limit that BG/NBD, MBG/NBD and Pareto/NBD reach when
nobody drops out, used to tell whether a fit's dropout is identified by the data.

Purchases follow a Poisson process with rate lambda ~ Gamma(r, alpha) and customers never leave (Ehrenberg 1959,
"The Pattern of Consumer Purchases", Applied Statistics 8(1)). The likelihood of purchase times with x repeat
purchases in (0, T] is E[lambda^x e^(-lambda T)]:

    L(r, alpha | x, T) = Gamma(r + x) alpha^r / (Gamma(r) (alpha + T)^(r + x)),

which is the BG/NBD likelihood of Fader, Hardie & Lee (2005), Eq. (6), at p = 0 (its first term), and the
Pareto/NBD likelihood of Fader & Hardie (2005), Eq. (22), at mu = 0. Arrays in, arrays out.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import special

from clv.mle import RowLikelihood, maximize_likelihood

__all__ = ["fit_no_dropout", "loglik_grad"]

FloatArray = NDArray[np.float64]


def loglik_grad(params: FloatArray, x: FloatArray, T: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-row log-likelihood lnG(r+x) - lnG(r) + r ln(alpha) - (r+x) ln(alpha+T) and its gradient in
    (r, alpha): psi(r+x) - psi(r) + ln(alpha) - ln(alpha+T), and r/alpha - (r+x)/(alpha+T)."""
    r, alpha = params
    log_at = np.log(alpha + T)
    ll = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) - (r + x) * log_at
    grad = np.empty((x.size, 2))
    grad[:, 0] = special.digamma(r + x) - special.digamma(r) + np.log(alpha) - log_at
    grad[:, 1] = r / alpha - (r + x) / (alpha + T)
    return ll, grad


def fit_no_dropout(x: FloatArray, T: FloatArray, weights: FloatArray) -> tuple[FloatArray, float]:
    """Maximum-likelihood (r, alpha) of the no-dropout NBD on rows (x, T) with weights, and the weighted total
    log-likelihood there."""
    rows = RowLikelihood(
        lambda r: (lambda p: loglik_grad(p, x, T)) if r is None else (lambda p: loglik_grad(p, x[r], T[r])), weights
    )
    result = maximize_likelihood(rows, [np.array([0.5, 2.0])])
    return np.asarray(result.params, dtype=float), float(result.log_likelihood)
