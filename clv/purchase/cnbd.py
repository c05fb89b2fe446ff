"""MBG/CNBD-k and BG/CNBD-k: Reutterer, Platzer & Schroeder (2021), "Leveraging purchase regularity for
predicting customer behavior the easy way", International Journal of Research in Marketing 38(1), 194-215 (the
R package BTYDplus by Platzer: `mbgcnbd.*`, `bgcnbd.*`). The formulas live in `clv.purchase.erlang_geometric`.

k (the Erlang order of the inter-purchase times) is a whole number: for each k in 1..K the other parameters are
fitted by maximum likelihood on the compressed (x, t_x, T) rows, and the k with the highest log-likelihood
(which includes the regularity term, i.e. each customer's `sum_log_intervals`) is kept (BTYDplus
`mbgcnbd.EstimateParameters` searches k the same way).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv.compress import unique_rows
from clv.errors import ClvError, ClvWarning, DataError
from clv.mle import MleResult, RowLikelihood, maximize_likelihood
from clv.model import FitResult, HeldParameters, LikelihoodProblem
from clv.purchase import erlang_geometric as eg
from clv.purchase.base import (
    PurchaseModel,
    _weights,
    check_count,
    check_horizon,
    check_horizons,
    check_new_customer_horizons,
    check_output,
    check_rate,
    rfm_arrays,
)

__all__ = ["BetaGeoCNBDModel", "ModifiedBetaGeoCNBDModel", "sum_log_intervals"]

FloatArray = NDArray[np.float64]

#: the RFM column the likelihood needs (`clv.data.rfm`)
SUM_LOG_INTERVALS = "sum_log_intervals"
#: the Bayesian fit samples at the k of maximum likelihood and warns when the approximate posterior probability
#: of that k (`_CNBDModel.held_in_posterior`) is below this
K_CERTAIN = 0.99


def sum_log_intervals(rfm: pd.DataFrame) -> FloatArray:
    """The validated `sum_log_intervals` column: finite, 0 where frequency is 0."""
    if SUM_LOG_INTERVALS not in rfm.columns:
        raise DataError(
            f"the regularity models need the RFM column {SUM_LOG_INTERVALS} (the sum over repeat purchases of the "
            "log of the time since the previous purchase); RFM summaries built by clv have it, this frame has "
            f"only {', '.join(map(str, rfm.columns))}"
        )
    values = pd.to_numeric(rfm[SUM_LOG_INTERVALS], errors="coerce").to_numpy(dtype=float)
    x = rfm["frequency"].to_numpy(dtype=float)
    bad = ~np.isfinite(values) | ((x == 0) & (values != 0))
    if bad.any():
        ids = rfm["customer_id"].to_numpy()[bad] if "customer_id" in rfm else np.flatnonzero(bad)
        raise DataError(
            f"{SUM_LOG_INTERVALS} must be finite, and 0 where frequency is 0; {int(bad.sum())} customer(s) violate "
            f"this (first ids: {', '.join(map(str, ids[:5]))})"
        )
    return values


def _order_of(row: FloatArray) -> int:
    """The Erlang order k of a parameter row (k, r, alpha, a, b), checked to be a whole number >= 1."""
    k = float(row[0])
    if not (np.isfinite(k) and k >= 1 and k == int(k)):
        raise ClvError(f"k must be a whole number >= 1, got {k!r}")
    return int(k)


class _CNBDModel(PurchaseModel):
    """The regularity models; see `ModifiedBetaGeoCNBDModel`."""

    param_names: ClassVar[tuple[str, ...]] = ("k", "r", "alpha", "a", "b")
    time_params: ClassVar[tuple[str, ...]] = ("alpha",)
    _c: ClassVar[int]

    def __init__(
        self, k: int | None = None, max_k: int = 12, *, starts: int = 4, seed: int = 42, max_iter: int = 2000
    ) -> None:
        """`k`: the Erlang order, fixed; None: chosen by likelihood over 1..max_k."""
        if k is not None and (int(k) != k or k < 1):
            raise ClvError(f"k must be a whole number >= 1, got {k!r}")
        if int(max_k) != max_k or max_k < 1:
            raise ClvError(f"max_k must be a whole number >= 1, got {max_k!r}")
        super().__init__(starts=starts, seed=seed, max_iter=max_iter)
        self.k = None if k is None else int(k)
        self.max_k = int(max_k)

    @classmethod
    def from_result(cls, result: FitResult) -> Self:
        """`FittedModel.from_result` with k checked to be a whole number >= 1."""
        k = result.params.get("k")
        if k is not None and (not isinstance(k, int | float) or int(k) != k or k < 1):
            raise ClvError(f"{cls.__name__}: k must be a whole number >= 1, got {k!r}")
        return super().from_result(result)

    def start_point(self) -> FloatArray:
        return np.array([0.5, 2.0, 1.0, 2.0])

    def _order(self) -> int:
        return int(self.fit_result.params["k"])

    def _rest(self) -> FloatArray:
        """(r, alpha, a, b) as an array."""
        return np.array(self._p()[1:])

    def _loglik_grad(
        self, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-row log-likelihood without the regularity term at params (k, r, alpha, a, b); gradient in all
        five, 0 along k (k is a whole number, not searched continuously)."""
        ll, grad = eg.loglik_grad(params[1:], x, t_x, T, k=int(params[0]), c=self._c)
        return ll, np.concatenate([np.zeros((ll.size, 1)), grad], axis=1)

    def likelihood_problem(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> LikelihoodProblem:
        """The fit's data at the model's k (given, or fitted) in (r, alpha, a, b): unique (x, t_x, T) rows with
        weights, time rescaled so that max(T) = 10."""
        k = self.k if self.k is not None else (self._order() if self.is_fitted else None)
        if k is None:
            raise ClvError(f"{type(self).__name__}: the likelihood at a given k needs k (pass k=..., or fit first)")
        x, t_x, T = rfm_arrays(rfm)
        return self._problem(k, x, t_x, T, _weights(weights, x.size))

    def _problem(self, k: int, x: FloatArray, t_x: FloatArray, T: FloatArray, w: FloatArray) -> LikelihoodProblem:
        (ux, ut, uT), inverse, _ = unique_rows(x, t_x, T)
        uw = np.bincount(inverse, weights=w).astype(float)
        scale = self._time_scale(uT)
        fn = functools.partial(eg.loglik_grad, k=k, c=self._c)
        search = RowLikelihood.of_arrays(fn, (ux, ut / scale, uT / scale), weights=uw)
        return LikelihoodProblem(
            param_names=self.param_names[1:],
            likelihood=search,
            factor=np.array([1.0, scale, 1.0, 1.0]),
            unscaled=lambda p: fn(p, ux, ut, uT),
            n_customers=int(x.size),
            n_unique=int(ux.size),
            model_name=self.name,
            # j: the phase grid 0..k-1 (events of the open inter-purchase time), which the likelihood graph reads
            rows={"x": ux, "t_x": ut / scale, "T": uT / scale, "j": np.arange(k, dtype=float)},
        )

    def fit(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> Self:
        """For each k (the given one, or 1..max_k) the maximum-likelihood (r, alpha, a, b); keep the k with the
        highest log-likelihood including the regularity term. `k_log_likelihoods_` holds every k's."""
        x, t_x, T = rfm_arrays(rfm)
        litt = sum_log_intervals(rfm)
        w = _weights(weights, x.size)
        self.time_scale_ = self._time_scale(T)
        orders = [self.k] if self.k is not None else list(range(1, self.max_k + 1))
        fits = {k: self._fit_order(k, x, t_x, T, w, litt) for k in orders}
        self.k_log_likelihoods_ = {k: ll for k, (ll, _, _) in fits.items()}
        best = max(fits, key=lambda k: fits[k][0])
        ll, found, params = fits[best]
        names = self.param_names[1:]
        se = None if found.standard_errors is None else found.standard_errors * params / found.params
        self.result_ = FitResult(
            params={"k": float(best), **dict(zip(names, map(float, params), strict=True))},
            standard_errors=None if se is None else dict(zip(names, map(float, se), strict=True)),
            log_likelihood=ll,
            converged=found.converged,
            gradient_norm=found.gradient_norm,
            n_customers=int(x.size),
        )
        self.n_unique_ = int(unique_rows(x, t_x, T)[0][0].size)
        self._warn(found)
        return self

    def held_in_posterior(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> HeldParameters:
        """The Bayesian fit holds k at its maximum-likelihood value (the given k, or the best of 1..max_k, as
        `fit` chooses it) and samples (r, alpha, a, b) given that k. The record says so, with each k's maximised
        log-likelihood and its approximate posterior probability under a uniform prior on 1..max_k,
        exp(LL_k - max LL) normalised: the Laplace (BIC) approximation of p(data | k), whose penalty is the same
        for every k (4 parameters each) and cancels. A ClvWarning says when that probability of the chosen k
        is under `K_CERTAIN` (the posterior given k then understates the uncertainty)."""
        chooser = type(self)(k=self.k, max_k=self.max_k, starts=self.starts, seed=self.seed, max_iter=self.max_iter)
        chooser.fit(rfm, weights)
        k = chooser._order()
        lls = chooser.k_log_likelihoods_
        top = max(lls.values())
        relative = {j: float(np.exp(ll - top)) for j, ll in lls.items()}
        share = {j: v / sum(relative.values()) for j, v in relative.items()}
        searched = f"1..{self.max_k}" if self.k is None else f"{self.k} (given)"
        record: dict[str, Any] = {
            "k": k,
            "how": (
                f"k fixed at its maximum-likelihood value over {searched}; (r, alpha, a, b) sampled given k. "
                "approximate_probability: exp(LL_k - max LL) normalised, the Laplace (BIC) approximation of "
                "P(k | data) under a uniform prior on the k searched"
            ),
            "log_likelihood_by_k": {str(j): float(ll) for j, ll in lls.items()},
            "approximate_probability": {str(j): float(v) for j, v in share.items()},
        }
        if share[k] < K_CERTAIN:
            others = ", ".join(f"k={j}: {v:.3f}" for j, v in sorted(share.items()) if j != k and v >= 1e-3)
            warnings.warn(
                f"{type(self).__name__}: the posterior is sampled at k={k}, whose approximate probability is only "
                f"{share[k]:.3f} ({others}): the credible intervals leave out the uncertainty about k",
                ClvWarning,
                stacklevel=2,
            )
        fixed = type(self)(k=k, max_k=self.max_k, starts=self.starts, seed=self.seed, max_iter=self.max_iter)
        return HeldParameters({"k": float(k)}, fixed, record)

    def _fit_order(
        self, k: int, x: FloatArray, t_x: FloatArray, T: FloatArray, w: FloatArray, litt: FloatArray
    ) -> tuple[float, MleResult, FloatArray]:
        """The fit at one k: log-likelihood of the data as given (with the regularity term), the search's result
        and the natural parameters (r, alpha, a, b)."""
        problem = self._problem(k, x, t_x, T, w)
        rng = np.random.default_rng(self.seed)
        base = self.start_point()
        starts = [base] + [base * np.exp(rng.normal(0.0, 0.7, base.size)) for _ in range(max(0, self.starts - 1))]
        found = maximize_likelihood(problem.likelihood, starts, self.max_iter, seed=self.seed)
        params = found.params * problem.factor
        ll = problem.log_likelihood(params) + float(w @ eg.regularity_term(k, x, litt))
        if not np.isfinite(ll):
            raise ClvError(f"{type(self).__name__}: the likelihood at k = {k} is not finite at the optimum")
        return float(ll), found, params

    def loglik(self, rfm: pd.DataFrame) -> FloatArray:
        """Log-likelihood of each customer's history, with the regularity term (needs `sum_log_intervals`)."""
        x, t_x, T = rfm_arrays(rfm)
        k = self._order()
        ll, _ = eg.loglik_grad(self._rest(), x, t_x, T, k=k, c=self._c)
        return check_output(ll + eg.regularity_term(k, x, sum_log_intervals(rfm)), "log-likelihood", rfm)

    def probability_alive(self, rfm: pd.DataFrame, at: float = 0.0) -> FloatArray:
        """P(alive at T | x, t_x, T) (Reutterer et al. 2021, Eq. A.6; BTYDplus `mbgcnbd.PAlive`); at > 0 is not
        implemented."""
        if check_horizon(at) > 0:
            raise NotImplementedError(f"{type(self).__name__}: P(alive) after the calibration end (at > 0)")
        x, t_x, T = rfm_arrays(rfm)
        value = np.exp(eg.log_p_alive(self._rest(), x, t_x, T, self._order(), self._c))
        return check_output(value, "P(alive)", rfm)

    def _alive_unique(self, rfm: pd.DataFrame) -> tuple[list[FloatArray], NDArray[np.intp], FloatArray]:
        """The distinct (frequency, recency, T) histories, each row's history, and P(alive) per history."""
        x, t_x, T = rfm_arrays(rfm)
        unique, inverse, _ = unique_rows(x, t_x, T)
        ux, ut, uT = unique
        return unique, inverse, np.exp(eg.log_p_alive(self._rest(), ux, ut, uT, self._order(), self._c))

    def expected_purchases(self, rfm: pd.DataFrame, horizon: float) -> FloatArray:
        """E[X(T, T + horizon) | x, t_x, T]: P(alive) times an alive customer's expectation given the phase of the
        open interval, an exact series (`erlang_geometric.expected_alive`; BTYDplus
        `mbgcnbd.ConditionalExpectedTransactions` approximates it for k > 1)."""
        horizon = check_horizon(horizon)
        (ux, ut, uT), inverse, alive = self._alive_unique(rfm)
        k, params = self._order(), self._rest()
        value = alive * eg.expected_alive(horizon, params, ux, ut, uT, k, self._c)
        return check_output(value[inverse], "expected purchases", rfm)

    @classmethod
    def alive_curve_draws(
        cls, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, horizons: FloatArray
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """`alive_curve` under each draw (rows of `params`: k, r, alpha, a, b): P(alive) (draws, rows), one group
        per row (the alive customer's expectation depends on t_x through the phase of the open interval), and
        the curve (draws, rows, horizons) by `erlang_geometric.expected_alive_curve`."""
        times = check_horizons(horizons)
        alive = np.empty((params.shape[0], x.size))
        curve = np.empty((params.shape[0], x.size, times.size))
        for d, row in enumerate(params):
            k, rest = _order_of(row), row[1:]
            alive[d] = np.exp(eg.log_p_alive(rest, x, t_x, T, k, cls._c))
            curve[d] = eg.expected_alive_curve(times, rest, x, t_x, T, k, cls._c)
        return alive, np.arange(x.size), curve

    @classmethod
    def predict_draws(cls, params: FloatArray, rfm: pd.DataFrame, method: str, **kwargs: Any) -> FloatArray:
        """`expected_purchases` under every draw by `alive_curve_draws`; other predictions draw by draw."""
        if method != "expected_purchases":
            return super().predict_draws(params, rfm, method, **kwargs)
        x, t_x, T = rfm_arrays(rfm)
        alive, _, curve = cls.alive_curve_draws(params, x, t_x, T, np.array([check_horizon(kwargs["horizon"])]))
        return check_output(alive * curve[:, :, 0], "expected purchases", rfm)

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
        """`simulate_purchases` under each draw (rows of `params`), shape (draws, rows): alive with P(alive),
        then `erlang_geometric.simulate_alive`."""
        horizon = check_horizon(horizon)
        out = np.empty((params.shape[0], x.size))
        for d, row in enumerate(params):
            k, rest = _order_of(row), row[1:]
            alive = np.exp(eg.log_p_alive(rest, x, t_x, T, k, cls._c)) if p_alive is None else p_alive[d]
            counts = eg.simulate_alive(horizon, rest, x, t_x, T, k, cls._c, rng)
            out[d] = np.where(rng.random(x.size) < alive, counts, 0.0)
        return out

    def simulate_purchases(self, rfm: pd.DataFrame, horizon: float, rng: np.random.Generator) -> FloatArray:
        """One draw per row of the purchases in (T, T + horizon] given the history: alive with P(alive), then the
        purchase process from the latent state's posterior (`erlang_geometric.simulate_alive`)."""
        x, t_x, T = rfm_arrays(rfm)
        return self.simulate_purchases_draws(np.array([self._p()]), x, t_x, T, horizon, rng)[0]

    def expected_purchases_new_customer(self, horizon: float | ArrayLike) -> FloatArray:
        """E[X(t)] for a customer just acquired (`erlang_geometric.expected_new`, an exact series)."""
        t = check_new_customer_horizons(horizon)
        return check_output(eg.expected_new(t, self._rest(), self._order(), self._c), "expected purchases")

    def probability_of_purchases(self, rfm: pd.DataFrame, n: int, horizon: float) -> FloatArray:
        """P(X(T, T + horizon) = n | x, t_x, T): P(alive) times the alive customer's pmf
        (`erlang_geometric.pmf_alive`, exact), plus P(dead) for n = 0."""
        horizon, n = check_horizon(horizon), check_count(n)
        (ux, ut, uT), inverse, alive = self._alive_unique(rfm)
        k, params = self._order(), self._rest()
        if horizon == 0:
            value = np.full(ux.shape, 1.0 if n == 0 else 0.0)
        else:
            value = alive * eg.pmf_alive(n, horizon, params, ux, ut, uT, k, self._c) + (1.0 - alive) * (n == 0)
        return check_output(value[inverse], "P(n purchases)", rfm)

    def expected_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> FloatArray:
        """DERT: P(alive) times the discounted expected purchases of an alive customer
        (`erlang_geometric.dert_alive`: a closed form in p, one Gauss-Laguerre integral over lambda)."""
        delta = check_rate(discount_rate)
        (ux, ut, uT), inverse, alive = self._alive_unique(rfm)
        k, params = self._order(), self._rest()
        value = alive * eg.dert_alive(delta, params, ux, ut, uT, k, self._c)
        return check_output(value[inverse], "discounted expected residual purchases", rfm)


class ModifiedBetaGeoCNBDModel(_CNBDModel):
    """MBG/CNBD-k: Erlang-k inter-purchase times with rate lambda ~ Gamma(r, alpha) while alive; drop-out with
    probability p ~ Beta(a, b) at time 0 and after each purchase. Parameters k (a whole number), r, alpha (in
    the run's time unit), a, b. k = 1 is MBG/NBD. The RFM frame needs `sum_log_intervals` for fitting.

    Example:
        >>> from clv import ModifiedBetaGeoCNBDModel
        >>> import pandas as pd
        >>> rfm = pd.DataFrame({"frequency": [0], "recency": [0.0], "T": [38.86]})
        >>> model = ModifiedBetaGeoCNBDModel.from_params(k=1, r=0.525, alpha=6.183, a=0.891, b=1.614)
        >>> round(float(model.probability_alive(rfm)[0]), 4)
        0.3897
    """

    name: ClassVar[str] = "mbgcnbd"
    _c: ClassVar[int] = 1


class BetaGeoCNBDModel(_CNBDModel):
    """BG/CNBD-k: as MBG/CNBD-k without the drop-out chance at time 0 (a customer with no repeat purchase is
    alive). k = 1 is BG/NBD."""

    name: ClassVar[str] = "bgcnbd"
    _c: ClassVar[int] = 0
