"""What every purchase model shares: the estimator contract, fitting on unique rows, and checked outputs.

`__init__` stores options only; `fit(rfm)` validates, fits and returns the model; learned state ends in `_`.
Predictions take the same RFM frame (columns frequency, recency, T) and return one value per row.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv.compress import unique_rows
from clv.data.rfm import validate_rfm
from clv.errors import ClvError, ConvergenceWarning, DataError, FitError, NotFittedError, UsageError, first_ids
from clv.mle import (
    Hessian,
    LogBounds,
    LoglikGrad,
    MleResult,
    Reducer,
    Stop,
    central_difference_hessian,
    maximize_likelihood,
)
from clv.purchase import nbd

__all__ = [
    "DROPOUT",
    "MEAN_SPEND",
    "NOT_IDENTIFIED",
    "NO_DROPOUT_CRITICAL",
    "FactoredCurveModel",
    "FittedModel",
    "LikelihoodProblem",
    "PurchaseModel",
    "check_horizons",
    "check_output",
    "rfm_arrays",
]

FloatArray = NDArray[np.float64]

#: keys of `FittedModel.not_identified_`: the model part the data cannot tell
DROPOUT = "dropout"
MEAN_SPEND = "mean_spend"
NOT_IDENTIFIED: dict[str, str] = {
    DROPOUT: "churn risk (dropout) not identified",
    MEAN_SPEND: "population mean spend not identified",
}
#: the 5% point of chi-square with 1 degree of freedom: the least likelihood-ratio statistic against the
#: no-dropout limit at which dropout counts as identified
NO_DROPOUT_CRITICAL = 3.84


def rfm_arrays(rfm: pd.DataFrame) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validated frequency, recency and T of an RFM frame as float arrays."""
    validate_rfm(rfm)
    return (
        rfm["frequency"].to_numpy(dtype=float),
        rfm["recency"].to_numpy(dtype=float),
        rfm["T"].to_numpy(dtype=float),
    )


def check_output(values: FloatArray, what: str, rfm: pd.DataFrame | None = None) -> FloatArray:
    """Refuse to return NaN or inf: name the customers whose value is not finite."""
    bad = ~np.isfinite(values)
    if bad.any():
        ids = rfm["customer_id"].to_numpy()[bad] if rfm is not None and "customer_id" in rfm else np.flatnonzero(bad)
        raise ClvError(f"{what} is not finite for {int(bad.sum())} row(s) (first: {first_ids(ids)})")
    return values


def _weights(weights: ArrayLike | None, n: int) -> FloatArray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise DataError(f"weights must be {n} finite non-negative numbers with a positive sum")
    return w


@dataclass(frozen=True)
class LikelihoodProblem:
    """What a fit needs, shared by maximum likelihood and the Bayesian fit: `fn` gives the per-row
    log-likelihood and gradient of the rescaled data at rescaled parameters; natural parameters are the rescaled
    ones times `factor`; `unscaled` is the same function on the data as given."""

    param_names: tuple[str, ...]
    fn: LoglikGrad
    weights: FloatArray
    factor: FloatArray
    subset: Callable[[NDArray[np.intp]], LoglikGrad] | None
    hessian: Hessian | None
    unscaled: LoglikGrad
    n_customers: int
    n_unique: int
    reducer: Reducer | None = None
    #: bounds of the log of the rescaled parameters in the maximum-likelihood search (None: [-25, 25] each)
    log_bounds: LogBounds | None = None

    def total(self, scaled_params: FloatArray) -> tuple[float, FloatArray]:
        """Weighted total log-likelihood of the rescaled data and its gradient in the rescaled parameters."""
        if self.reducer is not None:
            size = float(self.weights.sum())
            value, grad = self.reducer(None, self.weights / size)(scaled_params)
            return size * value, size * np.asarray(grad)
        ll, grad = self.fn(scaled_params)
        return float(self.weights @ ll), self.weights @ grad

    def total_hessian(self, scaled_params: FloatArray) -> FloatArray:
        """Hessian of `total` in the rescaled parameters: analytic where the model has it, else central
        differences of the exact gradient."""
        if self.hessian is not None:
            size = float(self.weights.sum())
            return size * self.hessian(scaled_params, self.weights / size)
        return central_difference_hessian(lambda p: np.asarray(self.total(p)[1], dtype=float), scaled_params)

    def log_likelihood(self, params: FloatArray) -> float:
        """Total log-likelihood of the data as given, at natural parameters."""
        ll, _ = self.unscaled(params)
        return float(self.weights @ ll)


class FittedModel(ABC):
    """Parameters, their uncertainty, and the fit's diagnostics; shared by purchase and spend models."""

    name: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]]

    def __init__(self, starts: int = 4, seed: int = 42, max_iter: int = 2000) -> None:
        self.starts = starts
        self.seed = seed
        self.max_iter = max_iter

    @classmethod
    def from_params(cls, **params: float) -> Self:
        """A model with known parameters, ready to predict without fitting."""
        names = set(cls.param_names)
        if set(params) != names:
            raise ClvError(f"{cls.__name__} takes parameters {', '.join(cls.param_names)}; got {', '.join(params)}")
        bad = [k for k, v in params.items() if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ClvError(f"{cls.__name__}: parameters must be finite and > 0: {', '.join(bad)}")
        model = cls()
        model.params_ = {k: float(params[k]) for k in cls.param_names}
        model.standard_errors_ = None
        model.log_likelihood_ = None
        model.converged_ = None
        model.gradient_norm_ = None
        model.not_identified_ = {}
        return model

    params_: dict[str, float]
    standard_errors_: dict[str, float] | None
    log_likelihood_: float | None
    converged_: bool | None
    gradient_norm_: float | None
    #: what the data cannot tell, by key of `NOT_IDENTIFIED` ("dropout", "mean_spend"), with the sentence that
    #: says so; empty when the fit identifies everything the predictions rest on
    not_identified_: dict[str, str]

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "params_")

    def _p(self) -> tuple[float, ...]:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} has no parameters: call fit first (or use from_params)")
        return tuple(self.params_[k] for k in self.param_names)

    def _store(self, result: MleResult, params: FloatArray, se: FloatArray | None) -> None:
        self.params_ = dict(zip(self.param_names, map(float, params), strict=True))
        self.standard_errors_ = None if se is None else dict(zip(self.param_names, map(float, se), strict=True))
        self.log_likelihood_ = float(result.log_likelihood)
        self.converged_ = result.converged
        self.gradient_norm_ = result.gradient_norm
        if not np.isfinite(result.log_likelihood):
            label = type(self).__name__
            raise FitError(f"{label}: the likelihood is not finite at every start; the data cannot identify the model")
        self.not_identified_ = self._identification(result)
        self._warn(result)

    def _identification(self, result: MleResult) -> dict[str, str]:
        """What the fit cannot identify (see `not_identified_`); models with such limits override it."""
        return {}

    def _warn(self, result: MleResult) -> None:
        """One ConvergenceWarning per finding. A sentence of `not_identified_` replaces the generic boundary,
        convergence and standard-error warnings, which are its consequences."""
        label = type(self).__name__
        messages = list(self.not_identified_.values())
        if not messages:
            if result.at_boundary:
                messages.append(f"{label}: a parameter is at the boundary of the search: {self.params_}")
            elif not result.converged:
                messages.append(
                    f"{label}: the fit did not converge (gradient norm {result.gradient_norm:.3g}; {result.message})"
                )
            if self.standard_errors_ is None:
                messages.append(f"{label}: the information matrix is not positive definite; no standard errors")
        messages += [f"{label}: {message}" for message in self._assumption_warnings()]
        for message in messages:
            warnings.warn(message, ConvergenceWarning, stacklevel=3)

    def _assumption_warnings(self) -> list[str]:
        return []

    @abstractmethod
    def _start(self) -> FloatArray:
        """A central starting point of the search, in rescaled units."""

    def _fit_problem(self, problem: LikelihoodProblem, stop: Stop | None = None) -> None:
        """Maximum likelihood from the central start and `starts - 1` seeded perturbations of it (`stop`: the
        model's rule that ends the search at a limit, see `clv.mle.maximize_likelihood`); parameters back to their
        natural scale; stored with the fit's diagnostics and warnings."""
        rng = np.random.default_rng(self.seed)
        base = self._start()
        starts = [base] + [base * np.exp(rng.normal(0.0, 0.7, base.size)) for _ in range(max(0, self.starts - 1))]
        result = maximize_likelihood(
            problem.fn,
            problem.weights,
            starts,
            self.max_iter,
            seed=self.seed,
            subset=problem.subset,
            hessian=problem.hessian,
            reducer=problem.reducer,
            log_bounds=problem.log_bounds,
            stop=stop,
        )
        params = result.params * problem.factor
        se = None if result.standard_errors is None else result.standard_errors * problem.factor
        # The likelihood of the data as given (purchase-time densities change by scale^-x under rescaling).
        result = MleResult(**{**result.__dict__, "log_likelihood": problem.log_likelihood(params)})
        self.n_customers_ = problem.n_customers
        self._store(result, params, se)

    @abstractmethod
    def likelihood_problem(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> LikelihoodProblem:
        """The data of a fit and its log-likelihood, as both estimation methods use them."""

    def summary(self) -> dict[str, Any]:
        """Parameters, standard errors and diagnostics, JSON-ready."""
        return {
            "name": self.name,
            "params": dict(self.params_) if self.is_fitted else None,
            "standard_errors": self.standard_errors_ if self.is_fitted else None,
            "log_likelihood": self.log_likelihood_ if self.is_fitted else None,
            "converged": self.converged_ if self.is_fitted else None,
            "gradient_norm": self.gradient_norm_ if self.is_fitted else None,
            "not_identified": dict(self.not_identified_) if self.is_fitted else None,
        }


class PurchaseModel(FittedModel):
    """A purchase model of (frequency, recency, T); see the subclasses for the models' papers."""

    #: parameters measured in the run's time unit (they scale with it; nothing else does)
    time_params: ClassVar[tuple[str, ...]]
    #: the model tends to the no-dropout NBD as its dropout parameters go to a boundary (see `fit`)
    has_no_dropout_limit: ClassVar[bool] = False
    #: log-likelihood of the no-dropout NBD on the data of the last fit (models with `has_no_dropout_limit`)
    no_dropout_log_likelihood_: float
    #: the time rescaling of the last fit: max(T) / 10 (the search runs on time divided by it)
    time_scale_: float

    @abstractmethod
    def _loglik_grad(
        self, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-row log-likelihood and its gradient in the natural parameters."""

    def _on_rows(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> LoglikGrad:
        """`_loglik_grad` bound to a subset of rows, gathered once."""
        return lambda params: self._loglik_grad(params, x, t_x, T)

    def _hessian_function(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> Hessian | None:
        """(params, weights) -> weighted Hessian of the log-likelihood, where the model has it analytically."""
        return None

    @abstractmethod
    def _start(self) -> FloatArray:
        """A central starting point, for data with time rescaled so that max(T) = 10."""

    def _search_bounds(self) -> LogBounds | None:
        """Bounds of the log-parameters (rescaled) in the maximum-likelihood search; None: [-25, 25] each."""
        return None

    def _time_scale(self, T: FloatArray) -> float:
        top = float(np.max(T))
        return top / 10.0 if top > 0 else 1.0

    def likelihood_problem(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> LikelihoodProblem:
        """The data of a fit, as both estimation methods use it: unique (frequency, recency, T) rows with weights,
        time rescaled so that max(T) = 10, and the log-likelihood on those rows."""
        x, t_x, T = rfm_arrays(rfm)
        w = _weights(weights, x.size)
        (ux, ut, uT), inverse, _ = unique_rows(x, t_x, T)
        uw = np.bincount(inverse, weights=w).astype(float)
        scale = self._time_scale(uT)
        sx, st, sT = ux, ut / scale, uT / scale
        return LikelihoodProblem(
            param_names=self.param_names,
            fn=lambda p: self._loglik_grad(p, sx, st, sT),
            weights=uw,
            factor=np.array([scale if k in self.time_params else 1.0 for k in self.param_names]),
            subset=lambda rows: self._on_rows(sx[rows], st[rows], sT[rows]),
            hessian=self._hessian_function(sx, st, sT),
            unscaled=lambda p: self._loglik_grad(p, ux, ut, uT),
            n_customers=int(x.size),
            n_unique=int(ux.size),
            log_bounds=self._search_bounds(),
        )

    def fit(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> Self:
        """Maximum-likelihood fit on the unique (frequency, recency, T) rows, time rescaled internally. Models
        with dropout are compared with their no-dropout limit (see `_identification`)."""
        problem = self.likelihood_problem(rfm, weights)
        stop = None
        if self.has_no_dropout_limit:
            self.no_dropout_log_likelihood_, stop = self._no_dropout_limit(rfm, weights)
        self._fit_problem(problem, stop)
        self.n_unique_ = problem.n_unique
        return self

    def _no_dropout_limit(self, rfm: pd.DataFrame, weights: ArrayLike | None) -> tuple[float, Stop]:
        """The no-dropout NBD fitted to the same customers (`clv.purchase.nbd`): its log-likelihood on the data as
        given, and the rule that ends the search once the model has reached that limit: dropout negligible
        (`_dropout_strength` under 1e-6) with a log-likelihood within 1e-6 per customer of the limit's. Past that
        point the likelihood is flat along the dropout parameters, which would only drift towards the bounds."""
        x, _, T = rfm_arrays(rfm)
        (ux, uT), inverse, _ = unique_rows(x, T)
        uw = np.bincount(inverse, weights=_weights(weights, x.size)).astype(float)
        scale = self.time_scale_ = self._time_scale(uT)
        params, scaled_ll = nbd.fit_no_dropout(ux, uT / scale, uw)
        natural = params * np.array([1.0, scale])
        limit_ll = float(uw @ nbd.loglik_grad(natural, ux, uT)[0])
        # the stop rule sees the mean log-likelihood of the rescaled rows the search runs on
        limit_mean = scaled_ll / float(uw.sum())

        def stop(scaled_params: FloatArray, mean_ll: float) -> bool:
            return mean_ll >= limit_mean - 1e-6 and self._dropout_strength(scaled_params) < 1e-6

        return limit_ll, stop

    def _dropout_strength(self, scaled_params: FloatArray) -> float:
        """About the probability that a customer with the mean purchase rate drops out over the span of the
        rescaled data (max T = 10), at rescaled parameters; models with `has_no_dropout_limit` define it."""
        raise NotImplementedError

    def _dropout_limit_description(self) -> str:
        """Which parameters went where, in words, at the fitted parameters."""
        raise NotImplementedError

    def _identification(self, result: MleResult) -> dict[str, str]:
        """Dropout is not identified when the fit is no better than the no-dropout NBD: the likelihood-ratio
        statistic 2 (LL - LL_NBD) under 3.84, the 5% point of chi-square(1) (the NBD is the model's limit as the
        dropout parameters go to a boundary), or the search ended at that limit."""
        if not self.has_no_dropout_limit:
            return {}
        limit = self.no_dropout_log_likelihood_
        statistic = max(0.0, 2.0 * (float(result.log_likelihood) - limit))
        if statistic >= NO_DROPOUT_CRITICAL and not result.stopped:
            return {}
        label = type(self).__name__
        return {
            DROPOUT: (
                f"{label}: the data show almost no dropout ({self._dropout_limit_description()}); the fit is no "
                f"better than a model in which no customer ever leaves (log-likelihood {result.log_likelihood:,.1f} "
                f"vs {limit:,.1f}, likelihood-ratio statistic {statistic:.2f} < {NO_DROPOUT_CRITICAL}): churn "
                "probabilities are not identifiable from this history, so P(alive) and the churn-risk segments "
                "are not meaningful"
            )
        }

    def loglik(self, rfm: pd.DataFrame) -> FloatArray:
        """Log-likelihood of each customer's history under the current parameters."""
        x, t_x, T = rfm_arrays(rfm)
        ll, _ = self._loglik_grad(np.array(self._p()), x, t_x, T)
        return check_output(ll, "log-likelihood", rfm)

    @abstractmethod
    def probability_alive(self, rfm: pd.DataFrame, at: float = 0.0) -> FloatArray:
        """P(alive) at T + at given the history (at = 0: now, at the calibration end)."""

    def probability_churned(self, rfm: pd.DataFrame, at: float = 0.0) -> FloatArray:
        """1 - P(alive)."""
        return 1.0 - self.probability_alive(rfm, at)

    @abstractmethod
    def expected_purchases(self, rfm: pd.DataFrame, horizon: float) -> FloatArray:
        """Conditional expected purchases in (T, T + horizon]."""

    def expected_purchases_curve(self, rfm: pd.DataFrame, horizons: ArrayLike) -> FloatArray:
        """expected_purchases at every horizon, shape (rows, len(horizons)); models override it to share work."""
        return np.stack([self.expected_purchases(rfm, float(h)) for h in np.asarray(horizons, dtype=float)], axis=1)

    def alive_curve(self, rfm: pd.DataFrame, horizons: ArrayLike) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """`expected_purchases_curve` factored as p[:, None] * curve[index]: P(alive) per row, and the expected
        purchases of an alive customer per group of rows that share them (rows with the same frequency and T for
        the continuous-time models), which is far fewer groups than rows. This generic form has one group per row."""
        curve = self.expected_purchases_curve(rfm, horizons)
        return np.ones(curve.shape[0]), np.arange(curve.shape[0]), curve

    @abstractmethod
    def probability_of_purchases(self, rfm: pd.DataFrame, n: int, horizon: float) -> FloatArray:
        """Conditional P(exactly n purchases in (T, T + horizon])."""

    @abstractmethod
    def expected_purchases_new_customer(self, horizon: float | ArrayLike) -> FloatArray:
        """Expected purchases in (0, horizon] of a customer just acquired."""

    def simulate_purchases(self, rfm: pd.DataFrame, horizon: float, rng: np.random.Generator) -> FloatArray:
        """One random draw, per row, of the number of purchases in (T, T + horizon] given the history: the
        latent state (alive or not, the customer's rates) from its posterior given (x, t_x, T), then the
        purchase process. Used for predictive intervals."""
        raise NotImplementedError(f"{type(self).__name__} cannot simulate future purchases")

    @abstractmethod
    def expected_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> FloatArray:
        """DERT: discounted expected purchases from T to infinity, continuous discount rate per time unit."""


class FactoredCurveModel(PurchaseModel):
    """A purchase model whose conditional expectations factor as P(alive) times the expectation of a customer
    alive at T, which depends on the history only through (frequency, T) (BG/NBD, MBG/NBD, Pareto/NBD)."""

    @abstractmethod
    def alive_curve(self, rfm: pd.DataFrame, horizons: ArrayLike) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """P(alive) per row, the row's group of equal (frequency, T), and the alive customer's expected purchases
        per group at each horizon."""

    def expected_purchases_curve(self, rfm: pd.DataFrame, horizons: ArrayLike) -> FloatArray:
        """expected_purchases at every horizon at once (P(alive) and the groups computed once), shape
        (rows, len(horizons))."""
        p_alive, inverse, curve = self.alive_curve(rfm, horizons)
        return check_output(p_alive[:, None] * curve[inverse], "expected purchases", rfm)


def check_horizons(horizons: ArrayLike) -> FloatArray:
    """Horizons as a float array, each checked by `check_horizon`."""
    times = np.asarray(horizons, dtype=float)
    for h in times.ravel():
        check_horizon(float(h))
    return times


def check_horizon(horizon: float) -> float:
    if not (math.isfinite(horizon) and horizon >= 0):
        raise ClvError(f"horizon must be a finite number >= 0, got {horizon!r}")
    return float(horizon)


def check_count(n: int) -> int:
    """A purchase count asked about: a whole number >= 0."""
    if n < 0 or int(n) != n:
        raise UsageError(f"n must be a whole number >= 0, got {n!r}")
    return int(n)


def check_new_customer_horizons(horizon: float | ArrayLike) -> FloatArray:
    """Horizons of a new customer's expectation, as a 1-d array of finite numbers >= 0."""
    t = np.atleast_1d(np.asarray(horizon, dtype=float))
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise UsageError("horizon must be finite and >= 0")
    return t


def check_rate(rate: float) -> float:
    if not (math.isfinite(rate) and rate > 0):
        raise ClvError(f"discount rate must be a finite number > 0, got {rate!r}")
    return float(rate)
