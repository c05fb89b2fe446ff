"""Maximum likelihood: several starts on log-parameters, L-BFGS, a Newton polish, and standard errors.

Every model hands in a function returning the per-row log-likelihood and its gradient in the natural
parameters; rows are unique histories with weights (how many customers share each). The search runs on
theta = log(params), where every parameter is positive and the surface is better conditioned, and minimises the
mean negative log-likelihood (weights summing to 1), so tolerances do not depend on the number of customers.
Standard errors come from the inverse of the observed information (the Hessian of -LL at the optimum, by
central differences of the exact gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

__all__ = ["LoglikGrad", "MleResult", "maximize_likelihood"]

FloatArray = NDArray[np.float64]
#: params (natural scale) -> (per-row log-likelihood, per-row gradient of shape (rows, k))
LoglikGrad = Callable[[FloatArray], tuple[FloatArray, FloatArray]]

_LOG_BOUND = 25.0  # |log(param)| beyond this is a boundary: parameters under e^-25 or over e^25


@dataclass(frozen=True)
class MleResult:
    """The optimum and what is known about it."""

    params: FloatArray
    log_likelihood: float
    standard_errors: FloatArray | None
    covariance: FloatArray | None
    converged: bool
    gradient_norm: float
    at_boundary: bool
    message: str


def _objective(fn: LoglikGrad, weights: FloatArray) -> Callable[[FloatArray], tuple[float, FloatArray]]:
    def negative_mean_ll(theta: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(theta)
        with np.errstate(all="ignore"):
            ll, grad = fn(params)
            value = -float(weights @ ll)
            g = -(weights @ grad) * params  # chain rule: d/dtheta = d/dparam * param
        if not np.isfinite(value) or not np.all(np.isfinite(g)):
            return 1e300, np.zeros_like(theta)
        return value, g

    return negative_mean_ll


def _hessian(fn: LoglikGrad, params: FloatArray, weights: FloatArray) -> FloatArray:
    """Hessian of the total log-likelihood in the natural parameters, by central differences of the gradient."""
    k = params.size
    hess = np.empty((k, k))
    for j in range(k):
        h = 1e-5 * params[j]
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        with np.errstate(all="ignore"):
            g_up = weights @ fn(up)[1]
            g_down = weights @ fn(down)[1]
        hess[:, j] = (g_up - g_down) / (2.0 * h)
    return 0.5 * (hess + hess.T)


def _newton_polish(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    fn: LoglikGrad,
    theta: FloatArray,
    weights: FloatArray,
) -> FloatArray:
    """A few damped Newton steps in theta: L-BFGS stops at ~1e-8; Newton takes the gradient to ~1e-12."""
    value, grad = objective(theta)
    for _ in range(8):
        params = np.exp(theta)
        h_nat = -_hessian(fn, params, weights)
        h_theta = h_nat * np.outer(params, params) + np.diag(grad)
        try:
            step = -np.linalg.solve(h_theta, grad)
        except np.linalg.LinAlgError:
            return theta
        improved = False
        for scale in (1.0, 0.5, 0.25, 0.1):
            cand = theta + scale * step
            v, g = objective(cand)
            if v <= value:
                theta, value, grad, improved = cand, v, g, True
                break
        if not improved or np.max(np.abs(grad)) < 1e-13:
            break
    return theta


def maximize_likelihood(
    fn: LoglikGrad,
    weights: FloatArray,
    starts: list[FloatArray],
    max_iter: int = 2000,
) -> MleResult:
    """Maximise sum(weights * loglik) from each start (natural-scale parameter vectors); keep the best."""
    total = float(weights.sum())
    w = weights / total
    objective = _objective(fn, w)
    best: optimize.OptimizeResult | None = None
    for start in starts:
        theta0 = np.log(np.asarray(start, dtype=float))
        res = optimize.minimize(
            objective,
            theta0,
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * theta0.size,
            options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-10},
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    theta = _newton_polish(objective, fn, np.asarray(best.x, float), w)
    value, grad = objective(theta)
    params = np.exp(theta)
    gradient_norm = float(np.linalg.norm(grad / params))  # gradient in natural parameters, per customer
    at_boundary = bool(np.any(np.abs(theta) > _LOG_BOUND - 1.0))
    se, cov = _standard_errors(fn, params, weights)
    converged = bool(value < 1e299 and np.max(np.abs(grad)) < 1e-6 and not at_boundary)
    return MleResult(
        params=params,
        log_likelihood=-value * total,
        standard_errors=se,
        covariance=cov,
        converged=converged,
        gradient_norm=gradient_norm,
        at_boundary=at_boundary,
        message=str(best.message),
    )


def _standard_errors(
    fn: LoglikGrad, params: FloatArray, weights: FloatArray
) -> tuple[FloatArray | None, FloatArray | None]:
    info = -_hessian(fn, params, weights)
    if not np.all(np.isfinite(info)):
        return None, None
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return None, None
    diag = np.diag(cov)
    if np.any(diag <= 0) or not np.all(np.isfinite(diag)):
        return None, None
    return np.asarray(np.sqrt(diag), dtype=float), np.asarray(cov, dtype=float)
