"""Maximum likelihood: several starts on log-parameters, L-BFGS, a Newton polish, and standard errors.

Every model hands in one `Likelihood`: its rows (unique histories) with weights (how many customers share each),
the weighted mean log-likelihood and its gradient in the natural parameters on all rows or on a subset, and an
analytic Hessian where it has one (`RowLikelihood` builds it from a per-row function). The search runs on
theta = log(params), where every parameter is positive and the surface is better conditioned, and minimises the
mean negative log-likelihood (weights summing to 1), so tolerances do not depend on the number of customers.
Standard errors come from the inverse of the observed information (the Hessian of -LL at the optimum: analytic
where the model has one, else central differences of the exact gradient).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import optimize
from threadpoolctl import threadpool_limits

__all__ = [
    "Likelihood",
    "LogBounds",
    "LoglikGrad",
    "MeanLoglikGrad",
    "MleResult",
    "RowLikelihood",
    "central_difference_hessian",
    "damped_step",
    "default_log_bounds",
    "maximize_likelihood",
    "single_threaded_blas",
]

FloatArray = NDArray[np.float64]
#: params (natural scale) -> (per-row log-likelihood, per-row gradient of shape (rows, k))
LoglikGrad = Callable[[FloatArray], tuple[FloatArray, FloatArray]]
#: (params, row weights) -> weighted sum of the per-row Hessians of the log-likelihood, shape (k, k)
Hessian = Callable[[FloatArray, FloatArray], FloatArray]
#: params -> (weighted mean log-likelihood, its gradient): for models whose sums reduce to a few statistics
MeanLoglikGrad = Callable[[FloatArray], tuple[float, FloatArray]]
#: (params, weighted mean log-likelihood of all rows there) -> True to end the search at this point: the model
#: has reached a limit where the likelihood is flat (see `clv.purchase.base.PurchaseModel.fit`)
Stop = Callable[[FloatArray, float], bool]

# The one piece of module state: how many fits (threads) are inside `single_threaded_blas` now, and the limiter
# that restores BLAS's thread count when the last leaves. Guarded by the lock; nothing happens at import.
_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limiter: threadpool_limits | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread while a fit runs. The fits' dot products are over vectors of 10^4-10^6 rows, where
    OpenBLAS's threads cost more to wake than they save: measured on 2 cores, a Gamma-Gamma fit on 465k buyers
    takes 0.68 s with them and 0.19 s without. Counted, so that fits running at once in threads restore the
    setting only when the last one ends."""
    global _blas_users, _blas_limiter
    with _BLAS_LOCK:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


_LOG_BOUND = 25.0  # |log(param)| beyond this is a boundary: parameters under e^-25 or over e^25
_BOUND_MARGIN = 0.5  # a log-parameter this close to its bound counts as at the boundary (a factor of 1.65)
#: (lower, upper) bounds of the log-parameters, one entry per parameter
LogBounds = tuple[FloatArray, FloatArray]


def default_log_bounds(k: int) -> LogBounds:
    """Every log-parameter in [-25, 25]."""
    return np.full(k, -_LOG_BOUND), np.full(k, _LOG_BOUND)


class Likelihood(Protocol):
    """What the optimiser needs of a model's log-likelihood (in the way statsmodels' GenericLikelihoodModel
    takes a log-likelihood): rows with weights, the weighted mean on any rows, and an analytic Hessian or None."""

    @property
    def weights(self) -> FloatArray:
        """How many customers share each row."""
        ...

    @property
    def log_bounds(self) -> LogBounds | None:
        """Bounds of the log-parameters of the search (None: [-25, 25] each)."""
        ...

    def on_rows(self, rows: NDArray[np.intp] | None, weights: FloatArray) -> MeanLoglikGrad:
        """params -> (weighted mean log-likelihood, its gradient) on `rows` (None: all) with `weights` (summing
        to 1, one per row taken)."""
        ...

    def mean_hessian(
        self, params: FloatArray, weights: FloatArray, rows: NDArray[np.intp] | None = None
    ) -> FloatArray | None:
        """The weighted mean Hessian where the model has it analytically (else None): on all rows, or an estimate
        of it from `rows` (weights one per row taken), which a likelihood may also answer from all rows."""
        ...


@dataclass(frozen=True)
class RowLikelihood:
    """A `Likelihood` from a per-row function: `rows_fn(rows)` is the per-row log-likelihood and gradient on
    those rows (None: all), `hessian` the weighted Hessian on all rows where the model has it."""

    rows_fn: Callable[[NDArray[np.intp] | None], LoglikGrad]
    weights: FloatArray
    hessian: Hessian | None = None
    log_bounds: LogBounds | None = None

    @classmethod
    def of_arrays(
        cls, loglik_grad: Callable[..., tuple[FloatArray, FloatArray]], columns: tuple[FloatArray, ...], **options: Any
    ) -> RowLikelihood:
        """From `loglik_grad(params, *columns)` on data columns of one row each (subsets gathered once)."""

        def rows_fn(rows: NDArray[np.intp] | None) -> LoglikGrad:
            taken = columns if rows is None else tuple(c[rows] for c in columns)
            return lambda params: loglik_grad(params, *taken)

        return cls(rows_fn=rows_fn, **options)

    def on_rows(self, rows: NDArray[np.intp] | None, weights: FloatArray) -> MeanLoglikGrad:
        fn = self.rows_fn(rows)

        def mean(params: FloatArray) -> tuple[float, FloatArray]:
            ll, grad = fn(params)
            return float(weights @ ll), weights @ grad

        return mean

    def mean_hessian(
        self, params: FloatArray, weights: FloatArray, rows: NDArray[np.intp] | None = None
    ) -> FloatArray | None:
        if self.hessian is None or rows is not None:
            return None
        return self.hessian(params, weights)


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
    #: the search was ended by the caller's `stop` rule (at a limit of the model), not by convergence
    stopped: bool = False


class _StopSearchError(Exception):
    """Raised inside the objective when the caller's stop rule holds at the point evaluated."""

    def __init__(self, theta: FloatArray, mean_ll: float, gradient: FloatArray) -> None:
        super().__init__("stopped")
        self.theta = theta
        self.mean_ll = mean_ll
        self.gradient = gradient


def _on_theta(mean_ll: MeanLoglikGrad, stop: Stop | None = None) -> Callable[[FloatArray], tuple[float, FloatArray]]:
    """The minimised function: minus the mean log-likelihood, in theta = log(params). With `stop`, every point
    evaluated is offered to the rule, which may end the search there."""

    def negative_mean_ll(theta: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(theta)
        with np.errstate(all="ignore"):
            value, grad = mean_ll(params)
            g = -np.asarray(grad) * params  # chain rule: d/dtheta = d/dparam * param
        if not np.isfinite(value) or not np.all(np.isfinite(g)):
            return np.inf, np.zeros_like(theta)  # outside the model's domain: L-BFGS backtracks
        if stop is not None and stop(params, float(value)):
            raise _StopSearchError(np.array(theta, dtype=float), float(value), np.asarray(grad, dtype=float))
        return -value, g

    return negative_mean_ll


def central_difference_hessian(gradient: Callable[[FloatArray], FloatArray], params: FloatArray) -> FloatArray:
    """The Hessian as central differences of an exact gradient (step 1e-5 of each parameter), symmetrised:
    accurate to about 1e-10 relative, since the gradient carries no truncation error of its own."""
    k = params.size
    hess = np.empty((k, k))
    for j in range(k):
        h = 1e-5 * params[j]
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        with np.errstate(all="ignore"):
            hess[:, j] = (gradient(up) - gradient(down)) / (2.0 * h)
    return 0.5 * (hess + hess.T)


#: a weighted sample of the rows: (row indices, weights summing to 1)
Sample = tuple[NDArray[np.intp], FloatArray]


def _hessian(
    likelihood: Likelihood, params: FloatArray, weights: FloatArray, sample: Sample | None = None
) -> FloatArray:
    """Hessian of the weighted mean log-likelihood in the natural parameters: analytic where the model gives one,
    else by central differences of the exact gradient, on all rows or, given `sample`, on that weighted sample
    of customers (an estimate of the same mean Hessian, for Newton steps on data with many rows)."""
    rows, on = (None, weights) if sample is None else sample
    with np.errstate(all="ignore"):
        analytic = likelihood.mean_hessian(params, on, rows)
        if analytic is None and rows is not None:
            analytic = likelihood.mean_hessian(params, weights)  # an analytic one on all rows beats differences
    if analytic is not None:
        return analytic
    mean = likelihood.on_rows(rows, on)
    return central_difference_hessian(lambda p: np.asarray(mean(p)[1], dtype=float), params)


def _newton_polish(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    likelihood: Likelihood,
    theta: FloatArray,
    weights: FloatArray,
    bounds: LogBounds,
    sample: Sample | None = None,
) -> tuple[FloatArray, FloatArray | None]:
    """Damped Newton steps in theta (Hessian analytic where the model has one, else central differences of the
    exact gradient), each kept inside the search bounds: from a point near the optimum, quadratic convergence
    takes the gradient to rounding level in two or three steps. With `sample` the Hessian is the sample's,
    formed once at the first point (a chord method: the gradient stays that of all rows, so the steps still
    converge to the optimum of all rows, linearly at the rate of the sample's relative error and of the
    distance moved). Returns theta and the natural-scale Hessian of the mean log-likelihood of all rows when it
    was formed at the returned theta."""
    value, grad = objective(theta)
    hess_at_theta: FloatArray | None = None
    h_nat: FloatArray | None = None
    for _ in range(6 if sample is None else 8):
        params = np.exp(theta)
        if sample is None or h_nat is None:
            h_nat = _hessian(likelihood, params, weights, sample)
        hess_at_theta = h_nat if sample is None else None
        h_theta = -h_nat * np.outer(params, params) + np.diag(grad)
        try:
            step = -np.linalg.solve(h_theta, grad)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)) or np.max(np.abs(step)) < 1e-12:
            break
        taken = damped_step(objective, theta, value, step, bounds=bounds)
        if taken is None:
            break
        moved = float(np.max(np.abs(taken[0] - theta)))
        theta, value, grad = taken
        # after a step this small the Hessian is unchanged to ~1e-7: keep it for the standard errors
        hess_at_theta = h_nat if moved < 1e-7 and sample is None else None
        if moved < 1e-7:
            break
    return theta, hess_at_theta


def damped_step(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    theta: FloatArray,
    value: float,
    step: FloatArray,
    shrinks: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1),
    bounds: LogBounds | None = None,
    slack: float = 0.0,
) -> tuple[FloatArray, float, FloatArray] | None:
    """One damped Newton step of a minimised `objective` (value, gradient): the first of theta + shrink * step
    (clipped to `bounds`) whose value is at most `value` + `slack` |value|, as (theta, value, gradient); None
    when no shrink gives one (a value that is not finite never does)."""
    for shrink in shrinks:
        candidate = theta + shrink * step
        if bounds is not None:
            candidate = np.clip(candidate, bounds[0], bounds[1])
        v, g = objective(candidate)
        if v <= value + slack * abs(value):
            return candidate, v, g
    return None


def _lbfgs(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    theta0: FloatArray,
    max_iter: int,
    bounds: LogBounds,
    loose: bool = False,
) -> optimize.OptimizeResult:
    """L-BFGS-B on theta; `loose` for scouting on a sample, where Newton on all rows does the last digits."""
    tolerances = {"ftol": 1e-9, "gtol": 1e-5} if loose else {"ftol": 1e-15, "gtol": 1e-10}
    return optimize.minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(bounds[0], bounds[1], strict=True)),
        # at most a few evaluations per iteration: the search ends in bounded time on any input
        options={"maxiter": max_iter, "maxfun": 3 * max_iter, **tolerances},
    )


def _subsample(weights: FloatArray, size: int, rng: np.random.Generator) -> tuple[NDArray[np.intp], FloatArray]:
    """A weighted sample of customers (as unique rows with counts) for a cheap first search from every start."""
    draws = rng.choice(weights.size, size=size, replace=True, p=weights / weights.sum())
    rows, counts = np.unique(draws, return_counts=True)
    return rows, counts.astype(float)


def maximize_likelihood(
    likelihood: Likelihood,
    starts: list[FloatArray],
    max_iter: int = 2000,
    seed: int = 0,
    sample_size: int = 20_000,
    stop: Stop | None = None,
) -> MleResult:
    """Maximise the weighted log-likelihood from each start (natural-scale parameter vectors); keep the best.

    Every start gets a short search (20 L-BFGS iterations), on a weighted sample of `sample_size` customers when
    there are more rows than that, and the most promising one is followed to the optimum and polished by Newton
    on all rows. The log-parameters stay inside `likelihood.log_bounds`; starts outside are moved onto them.
    `stop` (params, mean log-likelihood of all rows) -> bool ends the search at the first point of all rows
    where it holds (the result then has `stopped`, no standard errors, and is not `converged`).

    The search ends in bounded time on any input: each L-BFGS run stops after `max_iter` iterations or
    3 * `max_iter` evaluations, the Newton polish after six steps, and there are `len(starts)` + 1 runs at most.
    """
    k = np.asarray(starts[0]).size
    bounds = likelihood.log_bounds or default_log_bounds(k)
    weights = likelihood.weights
    with single_threaded_blas():
        try:
            return _maximize(likelihood, starts, max_iter, seed, sample_size, bounds, stop)
        except _StopSearchError as end:
            return MleResult(
                params=np.exp(end.theta),
                log_likelihood=end.mean_ll * float(weights.sum()),
                standard_errors=None,
                covariance=None,
                converged=False,
                gradient_norm=float(np.linalg.norm(end.gradient)),
                at_boundary=False,
                message="stopped at a limit of the model",
                stopped=True,
            )


def _maximize(
    likelihood: Likelihood,
    starts: list[FloatArray],
    max_iter: int,
    seed: int,
    sample_size: int,
    bounds: LogBounds,
    stop: Stop | None,
) -> MleResult:
    total = float(likelihood.weights.sum())
    w = likelihood.weights / total
    objective = _on_theta(likelihood.on_rows(None, w), stop)
    thetas = [np.clip(np.log(np.asarray(start, dtype=float)), bounds[0], bounds[1]) for start in starts]
    sampled = w.size > sample_size and len(thetas) > 1
    search = objective
    if sampled:
        rows, counts = _subsample(likelihood.weights, sample_size, np.random.default_rng(seed))
        search = _on_theta(likelihood.on_rows(rows, counts / counts.sum()))
    theta0 = thetas[0]
    if len(thetas) > 1:
        # every start gets a short search; the most promising one is followed to the optimum
        scouted = [_lbfgs(search, theta, 20, bounds, loose=True) for theta in thetas]
        theta0 = np.asarray(min(scouted, key=lambda res: float(res.fun)).x, dtype=float)
    if sampled:
        # from the sample's optimum, Newton usually converges on all rows in a few steps; L-BFGS if not
        theta0 = np.asarray(_lbfgs(search, theta0, max_iter, bounds, loose=True).x, dtype=float)
        # Newton with the sample's Hessian (cheap), then with all rows' (one Hessian at the optimum, kept for
        # the standard errors)
        theta, _ = _newton_polish(objective, likelihood, theta0, w, bounds, (rows, counts / counts.sum()))
        theta, hess_mean = _newton_polish(objective, likelihood, theta, w, bounds)
        value, grad = objective(theta)
        if np.max(np.abs(_projected(grad, theta, bounds))) < 1e-8:
            return _result(
                likelihood, w, total, theta, value, grad, hess_mean, "Newton from the sample's optimum", bounds
            )
    best = _lbfgs(objective, theta0, max_iter, bounds)
    theta, hess_mean = _newton_polish(objective, likelihood, np.asarray(best.x, float), w, bounds)
    value, grad = objective(theta)
    return _result(likelihood, w, total, theta, value, grad, hess_mean, str(best.message), bounds)


def _projected(grad: FloatArray, theta: FloatArray, bounds: LogBounds) -> FloatArray:
    """The gradient of the minimised objective without the components that push a parameter at its bound
    outward: at a bound, those are what the constrained optimum leaves (L-BFGS-B's projected gradient)."""
    outward = ((theta <= bounds[0]) & (grad > 0)) | ((theta >= bounds[1]) & (grad < 0))
    return np.where(outward, 0.0, grad)


def _result(
    likelihood: Likelihood,
    w: FloatArray,
    total: float,
    theta: FloatArray,
    value: float,
    grad: FloatArray,
    hess_mean: FloatArray | None,
    message: str,
    bounds: LogBounds,
) -> MleResult:
    params = np.exp(theta)
    gradient_norm = float(np.linalg.norm(grad / params))  # gradient in natural parameters, per customer
    near = (theta < bounds[0] + _BOUND_MARGIN) | (theta > bounds[1] - _BOUND_MARGIN)
    at_boundary = bool(np.any(near))
    hessian = total * (hess_mean if hess_mean is not None else _hessian(likelihood, params, w))
    se, cov = _standard_errors(hessian)
    converged = bool(np.isfinite(value) and np.max(np.abs(grad)) < 1e-6 and not at_boundary)
    return MleResult(
        params=params,
        log_likelihood=-value * total,
        standard_errors=se,
        covariance=cov,
        converged=converged,
        gradient_norm=gradient_norm,
        at_boundary=at_boundary,
        message=message,
    )


def _standard_errors(hessian: FloatArray) -> tuple[FloatArray | None, FloatArray | None]:
    """Standard errors and covariance from the Hessian of the total log-likelihood (observed information)."""
    info = -hessian
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
