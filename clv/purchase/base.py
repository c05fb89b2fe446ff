"""What every purchase model shares: fitting on unique rows, the no-dropout limit, and checked inputs.

The estimator contract itself (options in `__init__`, `fit` returns the model, learned state ends in `_`) is
`clv.model.FittedModel`. Predictions take an RFM frame (columns frequency, recency, T) and return one value per
row.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv.compress import unique_rows
from clv.covariate_fit import CovariateOptions, by_covariate_pattern, grouped_loglik_grad
from clv.data.rfm import validate_rfm
from clv.errors import ClvError, DataError, UsageError
from clv.mle import Hessian, MleResult, RowLikelihood, Stop
from clv.model import DROPOUT, FitResult, FittedModel, LikelihoodProblem, check_output
from clv.purchase import nbd

__all__ = [
    "NO_DROPOUT_CRITICAL",
    "FactoredCurveModel",
    "PurchaseModel",
    "check_horizons",
    "check_output",
    "rfm_arrays",
]

FloatArray = NDArray[np.float64]

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


def _weights(weights: ArrayLike | None, n: int) -> FloatArray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise DataError(f"weights must be {n} finite non-negative numbers with a positive sum")
    return w


class PurchaseModel(FittedModel):
    """A purchase model of (frequency, recency, T); see the subclasses for the models' papers."""

    #: parameters measured in the run's time unit (they scale with it; nothing else does)
    time_params: ClassVar[tuple[str, ...]]
    #: the estimation methods (model.method) the model has
    estimation_methods: ClassVar[tuple[str, ...]] = ("mle", "bayes")
    #: the model's posterior predictions need each customer's latent variables, drawn along the posterior draws
    #: (`latents_for`, `latent_curve_draws`: Pareto/GGG) rather than formulas of (frequency, recency, T)
    customer_latents: ClassVar[bool] = False
    #: the model tends to the no-dropout NBD as its dropout parameters go to a boundary (see `fit`)
    has_no_dropout_limit: ClassVar[bool] = False
    #: log-likelihood of the no-dropout NBD on the data of the last fit (models with `has_no_dropout_limit`)
    no_dropout_log_likelihood_: float
    #: the time rescaling of the last fit: max(T) / 10 (the search runs on time divided by it)
    time_scale_: float

    def __init__(
        self,
        *,
        purchase_covariates: Sequence[str] | None = None,
        dropout_covariates: Sequence[str] | None = None,
        constrained_covariates: Sequence[str] = (),
        covariate_penalty: Mapping[str, float] | None = None,
        categorical: Mapping[str, str | None] | None = None,
        standardise: bool = False,
        starts: int = 4,
        seed: int = 42,
        max_iter: int = 2000,
    ) -> None:
        """Options only. Covariates (columns of the frame given to `fit` and to every prediction):
        `purchase_covariates` move the purchase rate, `dropout_covariates` the dropout process, each customer's
        parameters as in CLVTools (see the model's `covariate_effects`); `constrained_covariates` have one
        coefficient in both processes; `covariate_penalty` is the L2 weight per process ({"purchase": 0.1}, as
        CLVTools' `reg.lambdas`); `categorical` names columns to dummy-code with their reference level (None:
        the first); `standardise` takes numeric columns as (z - mean) / sd."""
        processes = {"purchase": tuple(purchase_covariates or ()), "dropout": tuple(dropout_covariates or ())}
        options = CovariateOptions(
            processes={k: v for k, v in processes.items() if v},
            constrained=tuple(constrained_covariates),
            penalty=dict(covariate_penalty or {}),
            categorical=dict(categorical or {}),
            standardise=standardise,
        )
        super().__init__(starts=starts, seed=seed, max_iter=max_iter, covariates=options)

    @abstractmethod
    def _loglik_grad(
        self, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-row log-likelihood and its gradient in the natural parameters."""

    def _row_loglik_grad(self, P: FloatArray, *columns: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per-row log-likelihood and gradient with each row's own parameters (rows of P), by the model's scalar
        function per group of rows that share parameters (models with a vectorised form override it)."""
        return grouped_loglik_grad(self._loglik_grad, P, *columns)

    def _hessian_function(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> Hessian | None:
        """(params, weights) -> weighted Hessian of the log-likelihood, where the model has it analytically."""
        return None

    @abstractmethod
    def start_point(self) -> FloatArray:
        """A central starting point, for data with time rescaled so that max(T) = 10."""

    def _time_scale(self, T: FloatArray) -> float:
        top = float(np.max(T))
        return top / 10.0 if top > 0 else 1.0

    def likelihood_problem(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> LikelihoodProblem:
        """The data of a fit, as both estimation methods use it: unique (frequency, recency, T) rows with weights,
        time rescaled so that max(T) = 10, and the log-likelihood on those rows."""
        x, t_x, T = rfm_arrays(rfm)
        w = _weights(weights, x.size)
        if self.covariate_options.active:
            scale = self._time_scale(T)
            factor = np.array([scale if k in self.time_params else 1.0 for k in self.param_names])
            return self._covariate_problem(rfm, (x, t_x / scale, T / scale), (x, t_x, T), w, factor, ("x", "t_x", "T"))
        (ux, ut, uT), inverse, _ = unique_rows(x, t_x, T)
        uw = np.bincount(inverse, weights=w).astype(float)
        scale = self._time_scale(uT)
        sx, st, sT = ux, ut / scale, uT / scale
        search = RowLikelihood.of_arrays(
            self._loglik_grad,
            (sx, st, sT),
            weights=uw,
            hessian=self._hessian_function(sx, st, sT),
            log_bounds=self._search_bounds(),
        )
        return LikelihoodProblem(
            param_names=self.param_names,
            likelihood=search,
            factor=np.array([scale if k in self.time_params else 1.0 for k in self.param_names]),
            unscaled=lambda p: self._loglik_grad(p, ux, ut, uT),
            n_customers=int(x.size) if weights is None else round(float(w.sum())),
            n_unique=int(ux.size),
            model_name=self.name,
            rows={"x": sx, "t_x": st, "T": sT},
        )

    def fit(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> Self:
        """Maximum-likelihood fit on the unique (frequency, recency, T) rows, time rescaled internally. Models
        with dropout are compared with their no-dropout limit (see `_identification`)."""
        problem = self.likelihood_problem(rfm, weights)
        stop = None
        self.time_scale_ = self._time_scale(rfm["T"].to_numpy(dtype=float))
        if self.has_no_dropout_limit and problem.layout is None:
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

    def _dropout_limit_description(self, params: dict[str, float]) -> tuple[bool, str]:
        """Whether the dropout parameters went to their no-dropout limit, and which went where, in words."""
        raise NotImplementedError

    def _finding_explains_search(self) -> bool:
        """Only a fit at the no-dropout limit is explained by it: elsewhere (few repeat purchases, say) the
        generic boundary and standard-error warnings say more."""
        findings = self.not_identified_
        return bool(findings) and (DROPOUT not in findings or self._dropout_limit_description(self.params_)[0])

    def _identification(self, found: MleResult, result: FitResult) -> dict[str, str]:
        """Dropout is not identified when the fit is no better than the no-dropout NBD: the likelihood-ratio
        statistic 2 (LL - LL_NBD) under 3.84, the 5% point of chi-square(1) (the NBD is the model's limit as the
        dropout parameters go to a boundary), or the search ended at that limit."""
        if result.coefficients:
            return self._covariate_dropout_boundary(result)
        if not self.has_no_dropout_limit:
            return {}
        limit = self.no_dropout_log_likelihood_
        ll = float(result.log_likelihood or 0.0)
        statistic = max(0.0, 2.0 * (ll - limit))
        if statistic >= NO_DROPOUT_CRITICAL and not found.stopped:
            return {}
        label = type(self).__name__
        at_limit, where = self._dropout_limit_description(result.params)
        # at the limit the data show no dropout; elsewhere (e.g. hardly any repeat purchases) they cannot tell
        lead = "the data show almost no dropout" if at_limit else "the data carry no evidence of dropout"
        return {
            DROPOUT: (
                f"{label}: {lead} ({where}); the fit is no better than a model in which no customer ever leaves "
                f"(log-likelihood {ll:,.1f} vs {limit:,.1f}, likelihood-ratio statistic {statistic:.2f} < "
                f"{NO_DROPOUT_CRITICAL}): churn probabilities are not identifiable from this history, so P(alive), "
                "the churn-risk segments and residual CLV (a perpetuity in which nobody leaves) are not meaningful"
            )
        }

    def _dropout_degenerate(self, params: dict[str, float]) -> str | None:
        """Where the dropout parameters of a fit went to a limit at which the dropout distribution across customers
        is degenerate, in words (None: not there); models with dropout define it."""
        return None

    def _covariate_dropout_boundary(self, result: FitResult) -> dict[str, str]:
        """A covariate fit is not compared with the no-dropout NBD (which has no dropout covariates); what it can
        reach instead is a boundary of the dropout parameters with no interior optimum (BG/NBD with covariates on
        CLVTools' apparel data: a and b run off together). Then those parameters and the dropout coefficients are
        no estimates, and the fit says so."""
        where = self._dropout_degenerate(result.params)
        if where is None:
            return {}
        return {
            DROPOUT: (
                f"{type(self).__name__}: the dropout parameters run to a boundary ({where}): the likelihood has no "
                f"interior optimum along the dropout process (log-likelihood {float(result.log_likelihood or 0):,.2f} "
                "is that of the limit), so the dropout parameters and the dropout coefficients are not estimates, "
                "and P(alive) and the churn-risk segments rest on a limit; fit without dropout covariates, with an "
                "L2 penalty on them (covariate_penalty), or choose another model"
            )
        }

    @by_covariate_pattern
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

    @classmethod
    def alive_curve_draws(
        cls, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, horizons: FloatArray
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """`alive_curve` under many parameter draws (rows of `params`, in `param_names` order) at once: P(alive)
        (draws, rows), each row's group, and the curve per group (draws, groups, len(horizons)). This generic
        form runs `alive_curve` draw by draw; models with a vectorised form override it."""
        frame = pd.DataFrame({"frequency": x, "recency": t_x, "T": T})
        parts = [cls._from_row(row).alive_curve(frame, horizons) for row in params]
        return np.stack([p[0] for p in parts]), parts[0][1], np.stack([p[2] for p in parts])

    @classmethod
    def simulate_purchases_draws(
        cls,
        params: FloatArray,
        x: FloatArray,
        t_x: FloatArray,
        T: FloatArray,
        horizon: float,
        rng: np.random.Generator,
        p_alive: FloatArray | None = None,
    ) -> FloatArray:
        """`simulate_purchases` under each parameter draw (rows of `params`), shape (draws, rows); this generic
        form runs draw by draw. `p_alive`: P(alive) (draws, rows) when the caller has it already (from
        `alive_curve_draws`), so that the vectorised forms need not compute it again."""
        frame = pd.DataFrame({"frequency": x, "recency": t_x, "T": T})
        return np.stack([cls._from_row(row).simulate_purchases(frame, horizon, rng) for row in params])

    @classmethod
    def latents_for(
        cls, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, S: FloatArray, seed: int
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Models with `customer_latents`: the customers' latent variables, (draws, customers) each, one draw
        per row of `params`."""
        raise NotImplementedError(f"{cls.__name__} has no customer-level latent variables")

    @classmethod
    def latent_curve_draws(
        cls,
        latents: tuple[FloatArray, FloatArray, FloatArray],
        t_x: FloatArray,
        T: FloatArray,
        points: FloatArray,
        horizon: float,
        rng: np.random.Generator,
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray, FloatArray]:
        """Models with `customer_latents`: `alive_curve_draws` and one simulated count over `horizon`, from the
        latents of `latents_for`."""
        raise NotImplementedError(f"{cls.__name__} has no customer-level latent variables")

    @classmethod
    def predict_draws(cls, params: FloatArray, rfm: pd.DataFrame, method: str, **kwargs: Any) -> FloatArray:
        """Any per-row prediction (`method` with its keyword arguments) under each parameter draw (rows of
        `params`), shape (draws, rows); this generic form runs draw by draw, models override it for the methods
        they vectorise."""
        return np.stack([getattr(cls._from_row(row), method)(rfm, **kwargs) for row in params])

    @classmethod
    def _from_row(cls, row: FloatArray) -> Self:
        return cls.from_params(**dict(zip(cls.param_names, map(float, row), strict=True)))

    @abstractmethod
    def probability_of_purchases(self, rfm: pd.DataFrame, n: int, horizon: float) -> FloatArray:
        """Conditional P(exactly n purchases in (T, T + horizon])."""

    @abstractmethod
    def expected_purchases_new_customer(self, horizon: float | ArrayLike) -> FloatArray:
        """Expected purchases in (0, horizon] of a customer just acquired (with covariates: of the reference
        pattern, all covariates 0; `pattern_model(row_params(frame)[i])` gives customer i's)."""

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
