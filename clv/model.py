"""The fitted-model contract that purchase models, the spend model, the Bayesian layer and the store share: the
estimator (`FittedModel`), the result of a fit (`FitResult`), and the data of a fit (`LikelihoodProblem`).

`__init__` stores options only; `fit(data)` validates, fits and returns the model; learned state ends in `_`.
Every fit statistic lives in one immutable `FitResult` (`result_`); `params_`, `standard_errors_`,
`log_likelihood_`, `converged_`, `gradient_norm_`, `n_customers_` and `not_identified_` read from it. A model
with known parameters (`from_params`), the point model of a posterior and a model restored from disk are built
from a `FitResult` too (`from_result`), never by setting attributes from outside.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv.covariate_fit import (
    CoefficientLayout,
    CovariateLikelihood,
    CovariateOptions,
    compressed_rows,
)
from clv.covariates import CovariateSet, Effect, row_parameters
from clv.errors import ClvError, ConvergenceWarning, FitError, NotFittedError, first_ids, plain_number
from clv.mle import (
    Hessian,
    Likelihood,
    LogBounds,
    LoglikGrad,
    MleResult,
    Stop,
    central_difference_hessian,
    default_log_bounds,
    maximize_likelihood,
)

__all__ = [
    "DROPOUT",
    "MEAN_SPEND",
    "NOT_IDENTIFIED",
    "FitResult",
    "FittedModel",
    "HeldParameters",
    "LikelihoodProblem",
    "check_finite_frame",
    "check_output",
]

FloatArray = NDArray[np.float64]

#: keys of `FitResult.not_identified`: the model part the data cannot tell, and its label in tables
DROPOUT = "dropout"
MEAN_SPEND = "mean_spend"
NOT_IDENTIFIED: dict[str, str] = {
    DROPOUT: "churn risk (dropout) not identified",
    MEAN_SPEND: "population mean spend not identified",
}


def _not_finite(what: str, bad: NDArray[np.bool_], frame: pd.DataFrame | None) -> ClvError:
    """The one error for outputs that are not finite: how many customers (rows, without ids), and the first."""
    if frame is not None and "customer_id" in frame:
        ids, unit = frame["customer_id"].to_numpy()[bad], "customer(s)"
    else:
        ids, unit = np.flatnonzero(bad), "row(s)"
    return ClvError(f"{what} is not finite for {int(bad.sum())} {unit} (first: {first_ids(ids)})")


def check_output(values: FloatArray, what: str, rfm: pd.DataFrame | None = None) -> FloatArray:
    """Refuse to return NaN or inf: name the customers whose value is not finite."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise _not_finite(what, bad, rfm)
    return values


def check_finite_frame(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """Refuse a frame of per-customer outputs with a number that is not finite in any column: name the
    customers (see `check_output`)."""
    numeric = frame.select_dtypes("number").drop(columns="customer_id", errors="ignore")
    bad = ~np.isfinite(numeric.to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        raise _not_finite(what, bad, frame)
    return frame


@dataclass(frozen=True)
class FitResult:
    """What a fit found: parameters (natural scale, by paper name) and what is known about them."""

    params: dict[str, float]
    standard_errors: dict[str, float] | None = None
    log_likelihood: float | None = None
    converged: bool | None = None
    gradient_norm: float | None = None
    n_customers: int | None = None
    #: what the data cannot tell, by key of `NOT_IDENTIFIED`, with the sentence that says so
    not_identified: dict[str, str] = field(default_factory=dict)
    #: covariate coefficients by process and design column ({} without covariates), their standard errors,
    #: and the covariates' encoding learned from the fitting data (`clv.covariates`)
    coefficients: dict[str, dict[str, float]] = field(default_factory=dict)
    coefficient_standard_errors: dict[str, dict[str, float]] | None = None
    covariates: CovariateSet | None = None


@dataclass(frozen=True)
class LikelihoodProblem:
    """What a fit needs, shared by maximum likelihood and the Bayesian fit: the search's `likelihood` on the
    rescaled data at rescaled parameters; natural parameters are the rescaled ones times `factor`; `unscaled`
    is the per-row log-likelihood of the same rows on the data as given. `model_name` and `rows` (the rescaled
    rows the search runs on, by paper symbol: x, t_x, T, or x, m) are what the Bayesian fit's compiled graph of
    the same likelihood reads (`clv.bayes.graphs`)."""

    param_names: tuple[str, ...]
    likelihood: Likelihood
    factor: FloatArray
    unscaled: LoglikGrad
    n_customers: int
    n_unique: int
    model_name: str = ""
    rows: dict[str, FloatArray] = field(default_factory=dict)
    #: with covariates: the coefficient slots that follow the base parameters (each entering as e^g, see
    #: `clv.covariate_fit`), the covariates' encoding, and each process's design matrix on `rows`
    layout: CoefficientLayout | None = None
    covariates: CovariateSet | None = None
    designs: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def weights(self) -> FloatArray:
        """How many customers share each row."""
        return self.likelihood.weights

    def total(self, scaled_params: FloatArray) -> tuple[float, FloatArray]:
        """Weighted total log-likelihood of the rescaled data and its gradient in the rescaled parameters."""
        size = float(self.weights.sum())
        value, grad = self.likelihood.on_rows(None, self.weights / size)(scaled_params)
        return size * value, size * np.asarray(grad)

    def total_hessian(self, scaled_params: FloatArray) -> FloatArray:
        """Hessian of `total` in the rescaled parameters: analytic where the model has it, else central
        differences of the exact gradient."""
        size = float(self.weights.sum())
        analytic = self.likelihood.mean_hessian(scaled_params, self.weights / size)
        if analytic is not None:
            return size * analytic
        return central_difference_hessian(lambda p: np.asarray(self.total(p)[1], dtype=float), scaled_params)

    def log_likelihood(self, params: FloatArray) -> float:
        """Total log-likelihood of the data as given, at natural parameters."""
        ll, _ = self.unscaled(params)
        return float(self.weights @ ll)


@dataclass(frozen=True)
class HeldParameters:
    """Parameters that a Bayesian fit holds at fixed values instead of sampling them (the Erlang order k of the
    regularity models, a whole number): their values, the model whose `likelihood_problem` is the likelihood of
    the other parameters at those values, and how the values were chosen (for the posterior's summary)."""

    values: dict[str, float]
    model: FittedModel
    record: dict[str, Any]


def _standardised_search(
    likelihood: CovariateLikelihood, starts: list[FloatArray], max_iter: int, seed: int
) -> MleResult:
    """Maximum likelihood of a covariate model, searched with the design columns standardised
    (`CovariateLikelihood.standardised`) and mapped back: the same optimum, its covariance carried through the
    linear map of the logs (cov_u = M cov_u_s M'; the search's covariance is of the natural parameters p, so
    cov_u_s = cov_p / p p')."""
    search, M = likelihood.standardised()
    # the starts are for the original parametrisation's coefficients (0 = e^0): the same in the standardised one
    found = maximize_likelihood(search, starts, max_iter, seed=seed)
    u_s = np.log(found.params)
    params = np.exp(M @ u_s)
    if found.covariance is None:
        return replace(found, params=params)
    cov_u = M @ (found.covariance / np.outer(found.params, found.params)) @ M.T
    diag = np.diag(cov_u)
    if np.any(diag <= 0) or not np.all(np.isfinite(diag)):
        return replace(found, params=params, standard_errors=None, covariance=None)
    cov = cov_u * np.outer(params, params)
    return replace(found, params=params, standard_errors=params * np.sqrt(diag), covariance=cov)


class FittedModel(ABC):
    """Parameters, their uncertainty, and the fit's diagnostics; shared by purchase and spend models."""

    name: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]]
    #: per process, the parameters its covariates move and the sign of the move on the log scale
    #: (`clv.covariates.row_parameters`); {}: the model takes no covariates
    covariate_effects: ClassVar[dict[str, tuple[Effect, ...]]] = {}
    result_: FitResult
    #: (params, *data columns) -> per-row log-likelihood and gradient at one parameter set: the scalar function
    #: the covariate fit calls per covariate pattern (each model defines it)
    _loglik_grad: Callable[..., tuple[FloatArray, FloatArray]]
    #: (*data columns) -> (params, weights) -> weighted Hessian of those rows, where the model has it
    #: analytically, else None (each model defines it)
    _hessian_function: Callable[..., Hessian | None]

    def __init__(
        self, starts: int = 4, seed: int = 42, max_iter: int = 2000, covariates: CovariateOptions | None = None
    ) -> None:
        self.starts = starts
        self.seed = seed
        self.max_iter = max_iter
        self.covariate_options = covariates if covariates is not None else CovariateOptions()
        self.covariate_options.check(type(self).__name__, self.covariate_effects)

    @classmethod
    def from_result(cls, result: FitResult) -> Self:
        """A model with a known fit result (parameters checked), ready to predict without fitting."""
        params = result.params
        if set(params) != set(cls.param_names):
            raise ClvError(f"{cls.__name__} takes parameters {', '.join(cls.param_names)}; got {', '.join(params)}")
        bad = [k for k, v in params.items() if not (isinstance(v, int | float) and math.isfinite(v) and v > 0)]
        if bad:
            raise ClvError(f"{cls.__name__}: parameters must be finite and > 0: {', '.join(bad)}")
        model = cls()
        model.result_ = replace(result, params={k: float(params[k]) for k in cls.param_names})
        return model

    @classmethod
    def from_params(cls, **params: float) -> Self:
        """A model with known parameters, ready to predict without fitting."""
        return cls.from_result(FitResult(params=params))

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "result_")

    @property
    def fit_result(self) -> FitResult:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} has no parameters: call fit first (or use from_params)")
        return self.result_

    @property
    def params_(self) -> dict[str, float]:
        return dict(self.fit_result.params)

    @property
    def standard_errors_(self) -> dict[str, float] | None:
        return self.fit_result.standard_errors

    @property
    def log_likelihood_(self) -> float | None:
        return self.fit_result.log_likelihood

    @property
    def converged_(self) -> bool | None:
        return self.fit_result.converged

    @property
    def gradient_norm_(self) -> float | None:
        return self.fit_result.gradient_norm

    @property
    def n_customers_(self) -> int | None:
        return self.fit_result.n_customers

    @property
    def covariates_(self) -> CovariateSet | None:
        """The covariates the model was fitted with and their encoding; None without covariates (or unfitted)."""
        return self.result_.covariates if self.is_fitted else None

    @property
    def coefficients_(self) -> dict[str, dict[str, float]]:
        """Covariate coefficients by process ("purchase", "dropout" or "spend") and design column, on the log
        scale of the parameters they move (`covariate_effects`); {} without covariates."""
        return {p: dict(c) for p, c in self.fit_result.coefficients.items()}

    @property
    def coefficient_standard_errors_(self) -> dict[str, dict[str, float]] | None:
        """Standard errors of `coefficients_`, in the same shape; None when the information matrix is singular."""
        se = self.fit_result.coefficient_standard_errors
        return None if se is None else {p: dict(c) for p, c in se.items()}

    @property
    def covariate_columns(self) -> list[str]:
        """The columns of the customer frame the fitted model reads as covariates ([] without)."""
        covariates = self.covariates_
        return [] if covariates is None else list(covariates.columns)

    def row_params(self, frame: pd.DataFrame) -> FloatArray:
        """Each customer's parameters (rows, len(param_names)) from their covariates (the base parameters on
        every row for a model without covariates)."""
        base = np.array(self._p())
        covariates = self.covariates_
        if covariates is None:
            return np.tile(base, (len(frame), 1))
        designs = {p: covariates.design(frame, p) for p in covariates.processes}
        coefs = {
            p: np.array([self.fit_result.coefficients[p][n] for n in covariates.design_names(p)])
            for p in covariates.processes
        }
        return row_parameters(base, self.param_names, self.covariate_effects, designs, coefs)

    def pattern_model(self, params: FloatArray) -> Self:
        """The model without covariates at one covariate pattern's parameters (see `row_params`)."""
        return type(self).from_params(**dict(zip(self.param_names, map(float, params), strict=True)))

    @property
    def not_identified_(self) -> dict[str, str]:
        """What the data cannot tell (see `FitResult.not_identified`); empty when nothing."""
        return dict(self.fit_result.not_identified)

    def _p(self) -> tuple[float, ...]:
        params = self.fit_result.params
        return tuple(params[k] for k in self.param_names)

    @abstractmethod
    def start_point(self) -> FloatArray:
        """A central starting point of the search, in rescaled units (shared by both estimation methods)."""

    @abstractmethod
    def likelihood_problem(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> LikelihoodProblem:
        """The data of a fit and its log-likelihood, as both estimation methods use them."""

    def held_in_posterior(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> HeldParameters | None:
        """The parameters a Bayesian fit on `rfm` holds fixed (`HeldParameters`); None, the default: it samples
        all of them."""
        return None

    def _search_bounds(self) -> LogBounds | None:
        """Bounds of the log-parameters (rescaled) in the maximum-likelihood search; None: [-25, 25] each."""
        return None

    def _prepare_loglik_grad(self, *columns: FloatArray) -> Callable[[FloatArray], tuple[FloatArray, FloatArray]]:
        """`_loglik_grad` on fixed rows, as a function of the parameters (models that can reuse work across
        evaluations of the same rows override it)."""
        return lambda params: self._loglik_grad(params, *columns)

    def _row_loglik_grad(self, P: FloatArray, *columns: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per-row log-likelihood and gradient when each row has its own parameters (rows of P); models with
        covariates define it."""
        raise NotImplementedError

    def _covariate_problem(
        self,
        frame: pd.DataFrame,
        scaled: tuple[FloatArray, ...],
        unscaled: tuple[FloatArray, ...],
        weights: FloatArray,
        factor: FloatArray,
        rows: tuple[str, ...],
    ) -> LikelihoodProblem:
        """The likelihood problem with covariates: the covariates' encoding learned from `frame` (one row per
        data row), rows with the same data and covariate values compressed to one weighted row, and the
        coefficient slots after the base parameters (`clv.covariate_fit`). `scaled` are the data columns the
        search runs on, `unscaled` the same as given; `factor` the base parameters' rescaling; `rows` the
        columns' paper symbols."""
        options = self.covariate_options
        covariates = CovariateSet.learn(frame, options.processes, options.categorical, options.standardise)
        layout = CoefficientLayout.of(covariates, options.constrained)
        designs = [covariates.design(frame, p) for p in covariates.processes]
        k = len(self.param_names)
        both = tuple(scaled) + tuple(unscaled)
        data, z, w = compressed_rows(both, designs, weights, keys=len(scaled))
        scaled_rows, unscaled_rows = tuple(data[: len(scaled)]), tuple(data[len(scaled) :])
        base_bounds = self._search_bounds() or default_log_bounds(k)
        lower, upper = default_log_bounds(layout.size)
        bounds = (np.concatenate([base_bounds[0], lower]), np.concatenate([base_bounds[1], upper]))
        named = dict(zip(covariates.processes, z, strict=True))
        likelihood = CovariateLikelihood(self, layout, options.penalty, scaled_rows, named, w, bounds)

        def unscaled_ll(params: FloatArray) -> tuple[FloatArray, FloatArray]:
            ll = likelihood.row_loglik(params, unscaled_rows)
            return ll, np.zeros((ll.size, params.size))  # the fit needs the unscaled likelihood's values only

        return LikelihoodProblem(
            param_names=self.param_names + layout.names,
            likelihood=likelihood,
            factor=np.concatenate([factor, np.ones(layout.size)]),
            unscaled=unscaled_ll,
            n_customers=len(frame),
            n_unique=int(w.size),
            model_name=self.name,
            rows=dict(zip(rows, scaled_rows, strict=True)),
            layout=layout,
            covariates=covariates,
            designs=named,
        )

    def _split_covariates(
        self, problem: LikelihoodProblem, params: FloatArray, se: FloatArray | None
    ) -> tuple[FitResult, FloatArray, FloatArray | None]:
        """The coefficients of a covariate fit (g = log of the search's e^g, standard error se(e^g) / e^g by the
        delta method) as a partial FitResult, and the base parameters with their standard errors."""
        k = len(self.param_names)
        layout, covariates = problem.layout, problem.covariates
        if layout is None or covariates is None:
            return FitResult(params={}), params, se
        g = np.log(params[k:])
        g_se = None if se is None else se[k:] / params[k:]
        coefs, coef_se = {}, {}
        for process, index in layout.slots.items():
            names = covariates.design_names(process)
            coefs[process] = {n: float(g[i]) for n, i in zip(names, index, strict=True)}
            if g_se is not None:
                coef_se[process] = {n: float(g_se[i]) for n, i in zip(names, index, strict=True)}
        partial = FitResult(
            params={},
            coefficients=coefs,
            coefficient_standard_errors=coef_se if g_se is not None else None,
            covariates=covariates,
        )
        return partial, params[:k], None if se is None else se[:k]

    def _fit_problem(self, problem: LikelihoodProblem, stop: Stop | None = None) -> None:
        """Maximum likelihood from the central start and `starts - 1` seeded perturbations of it (`stop`: the
        model's rule that ends the search at a limit, see `clv.mle.maximize_likelihood`); parameters back to their
        natural scale; stored as the fit's result, with its warnings."""
        rng = np.random.default_rng(self.seed)
        base = self.start_point()
        if problem.layout is not None:
            base = np.concatenate([base, np.ones(problem.layout.size)])  # coefficients start at 0 (e^0)
        starts = [base] + [base * np.exp(rng.normal(0.0, 0.7, base.size)) for _ in range(max(0, self.starts - 1))]
        if isinstance(problem.likelihood, CovariateLikelihood):
            found = _standardised_search(problem.likelihood, starts, self.max_iter, self.seed)
        else:
            found = maximize_likelihood(problem.likelihood, starts, self.max_iter, seed=self.seed, stop=stop)
        params = found.params * problem.factor
        se = None if found.standard_errors is None else found.standard_errors * problem.factor
        # The likelihood of the data as given (purchase-time densities change by scale^-x under rescaling).
        found = replace(found, log_likelihood=problem.log_likelihood(params))
        if not np.isfinite(found.log_likelihood):
            label = type(self).__name__
            raise FitError(f"{label}: the likelihood is not finite at every start; the data cannot identify the model")
        partial, params, se = self._split_covariates(problem, params, se)
        named = dict(zip(self.param_names, map(float, params), strict=True))
        result = replace(
            partial,
            params=named,
            standard_errors=None if se is None else dict(zip(self.param_names, map(float, se), strict=True)),
            log_likelihood=float(found.log_likelihood),
            converged=found.converged,
            gradient_norm=found.gradient_norm,
            n_customers=problem.n_customers,
        )
        self.result_ = replace(result, not_identified=self._identification(found, result))
        self._warn(found)

    def _identification(self, found: MleResult, result: FitResult) -> dict[str, str]:
        """What the fit cannot identify (see `FitResult.not_identified`); models with such limits override it."""
        return {}

    def _warn(self, found: MleResult) -> None:
        """One ConvergenceWarning per finding. A sentence of `not_identified_` replaces the generic boundary,
        convergence and standard-error warnings where it explains them (`_finding_explains_search`)."""
        label = type(self).__name__
        messages = list(self.not_identified_.values())
        if not self._finding_explains_search():
            if found.at_boundary:
                messages.append(f"{label}: a parameter is at the boundary of the search: {self.params_}")
            elif not found.converged:
                messages.append(
                    f"{label}: the fit did not converge (gradient norm {plain_number(found.gradient_norm)}; "
                    f"{found.message})"
                )
            if self.standard_errors_ is None:
                messages.append(f"{label}: the information matrix is not positive definite; no standard errors")
        messages += [f"{label}: {message}" for message in self._assumption_warnings()]
        for message in messages:
            warnings.warn(message, ConvergenceWarning, stacklevel=4)

    def _finding_explains_search(self) -> bool:
        """Whether the fit's `not_identified_` finding is why the search ran to a boundary or has no standard
        errors (then those generic warnings would only repeat it)."""
        return bool(self.not_identified_)

    def _assumption_warnings(self) -> list[str]:
        return []

    def summary(self) -> dict[str, Any]:
        """Parameters, standard errors and diagnostics, JSON-ready."""
        result = self.result_ if self.is_fitted else None
        return {
            "name": self.name,
            "params": dict(result.params) if result else None,
            "standard_errors": result.standard_errors if result else None,
            "log_likelihood": result.log_likelihood if result else None,
            "converged": result.converged if result else None,
            "gradient_norm": result.gradient_norm if result else None,
            "not_identified": dict(result.not_identified) if result else None,
            "n_customers": result.n_customers if result else None,
            "coefficients": self.coefficients_ if result and result.coefficients else None,
            "coefficient_standard_errors": result.coefficient_standard_errors if result else None,
            "covariates": result.covariates.to_dict() if result and result.covariates else None,
        }
