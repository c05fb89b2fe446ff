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
from clv.errors import ClvError, ConvergenceWarning, DataError, FitError, NotFittedError, first_ids
from clv.mle import Hessian, LoglikGrad, MleResult, Reducer, central_difference_hessian, maximize_likelihood

__all__ = [
    "FactoredCurveModel",
    "FittedModel",
    "LikelihoodProblem",
    "PurchaseModel",
    "check_horizons",
    "check_output",
    "rfm_arrays",
]

FloatArray = NDArray[np.float64]


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
        return model

    params_: dict[str, float]
    standard_errors_: dict[str, float] | None
    log_likelihood_: float | None
    converged_: bool | None
    gradient_norm_: float | None

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
        self._warn(result)

    def _warn(self, result: MleResult) -> None:
        label = type(self).__name__
        if not np.isfinite(result.log_likelihood):
            raise FitError(f"{label}: the likelihood is not finite at every start; the data cannot identify the model")
        if result.at_boundary:
            warnings.warn(
                f"{label}: a parameter is at the boundary of the search: {self.params_}",
                ConvergenceWarning,
                stacklevel=3,
            )
        elif not result.converged:
            warnings.warn(
                f"{label}: the fit did not converge (gradient norm {result.gradient_norm:.3g}; {result.message})",
                ConvergenceWarning,
                stacklevel=3,
            )
        if self.standard_errors_ is None:
            warnings.warn(
                f"{label}: the information matrix is not positive definite; no standard errors",
                ConvergenceWarning,
                stacklevel=3,
            )
        for message in self._assumption_warnings():
            warnings.warn(f"{label}: {message}", ConvergenceWarning, stacklevel=3)

    def _assumption_warnings(self) -> list[str]:
        return []

    @abstractmethod
    def _start(self) -> FloatArray:
        """A central starting point of the search, in rescaled units."""

    def _fit_problem(self, problem: LikelihoodProblem) -> None:
        """Maximum likelihood from the central start and `starts - 1` seeded perturbations of it; parameters
        back to their natural scale; stored with the fit's diagnostics and warnings."""
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
        }


class PurchaseModel(FittedModel):
    """A purchase model of (frequency, recency, T); see the subclasses for the models' papers."""

    #: parameters measured in the run's time unit (they scale with it; nothing else does)
    time_params: ClassVar[tuple[str, ...]]

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
        )

    def fit(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> Self:
        """Maximum-likelihood fit on the unique (frequency, recency, T) rows, time rescaled internally."""
        problem = self.likelihood_problem(rfm, weights)
        self._fit_problem(problem)
        self.n_unique_ = problem.n_unique
        return self

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
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    return int(n)


def check_new_customer_horizons(horizon: float | ArrayLike) -> FloatArray:
    """Horizons of a new customer's expectation, as a 1-d array of finite numbers >= 0."""
    t = np.atleast_1d(np.asarray(horizon, dtype=float))
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise ValueError("horizon must be finite and >= 0")
    return t


def check_rate(rate: float) -> float:
    if not (math.isfinite(rate) and rate > 0):
        raise ClvError(f"discount rate must be a finite number > 0, got {rate!r}")
    return float(rate)
