"""BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the Pareto/NBD
Model", Marketing Science 24(2), 275-284. The formulas live in `clv.purchase.beta_geometric`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv.compress import unique_rows
from clv.covariate_fit import by_covariate_pattern, curve_by_covariate_pattern
from clv.errors import plain_number
from clv.mle import Hessian
from clv.purchase import beta_geometric as bg
from clv.purchase.base import (
    FactoredCurveModel,
    check_count,
    check_horizon,
    check_horizons,
    check_new_customer_horizons,
    check_output,
    check_rate,
    rfm_arrays,
)
from clv.quadrature import beta_rule, nodes_for_pole

__all__ = ["BetaGeoModel"]

FloatArray = NDArray[np.float64]


#: a + b beyond this: the beta distribution of the dropout probability is degenerate (see `_dropout_degenerate`)
DEGENERATE_CONCENTRATION = 1e4


class BetaGeoModel(FactoredCurveModel):
    """BG/NBD: purchases at rate lambda ~ Gamma(r, alpha) while alive; drop-out after each purchase with
    probability p ~ Beta(a, b). Parameters r, alpha (in the run's time unit), a, b.

    Example:
        >>> from clv import BetaGeoModel
        >>> import pandas as pd
        >>> rfm = pd.DataFrame({"frequency": [2, 0], "recency": [30.43, 0.0], "T": [38.86, 38.86]})
        >>> model = BetaGeoModel.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
        >>> [round(float(v), 4) for v in model.probability_alive(rfm)]
        [0.7266, 1.0]
    """

    name: ClassVar[str] = "bgnbd"
    param_names: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    time_params: ClassVar[tuple[str, ...]] = ("alpha",)
    #: CLVTools' parameterisation of BG/NBD with covariates: alpha_i = alpha exp(-g_p'z_i), a_i = a exp(g_d'z_i),
    #: b_i = b exp(g_d'z_i) (the mean dropout probability a / (a + b) is unchanged; the spread changes)
    covariate_effects: ClassVar[dict[str, tuple[tuple[str, float], ...]]] = {
        "purchase": (("alpha", -1.0),),
        "dropout": (("a", 1.0), ("b", 1.0)),
    }
    #: extra drop-out chances: 0 for BG/NBD, 1 for MBG/NBD (a drop-out chance right after the first purchase)
    _c: ClassVar[int] = 0

    has_no_dropout_limit: ClassVar[bool] = True

    def start_point(self) -> FloatArray:
        return np.array([0.5, 2.0, 1.0, 2.0])

    def _dropout_strength(self, scaled_params: FloatArray) -> float:
        """The mean dropout probability a / (a + b) at each of the (c + 10 r / alpha) dropout chances of a
        customer with the mean purchase rate over the rescaled span (max T = 10)."""
        r, alpha, a, b = scaled_params
        return float(min(1.0, (self._c + 10.0 * r / alpha) * a / (a + b)))

    def _dropout_limit_description(self, params: dict[str, float]) -> tuple[bool, str]:
        """At the no-dropout limit when the mean dropout probability a / (a + b) is negligible (a -> 0 or
        b -> infinity with a fixed); a and b both large is another limit (every customer has the same p)."""
        a, b = params["a"], params["b"]
        mean = a / (a + b)
        moves = [text for text, hit in (("a -> 0", a < 1e-2), ("b -> infinity", b > 1e3)) if hit]
        at_limit = mean < 1e-3 and bool(moves)
        where = " and ".join(moves) if at_limit else "a and b not identified"
        return (
            at_limit,
            f"{where}: a = {plain_number(a)}, b = {plain_number(b)}, mean dropout probability per purchase "
            f"a/(a+b) = {plain_number(mean, 2)}",
        )

    def _loglik_grad(
        self, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        r, alpha, a, b = params
        return bg.loglik_grad(r, alpha, a, b, x, t_x, T, self._c)

    def _row_loglik_grad(self, P: FloatArray, *columns: FloatArray) -> tuple[FloatArray, FloatArray]:
        """`beta_geometric.loglik_grad_rows`: each row with its own parameters (covariate models with many
        patterns)."""
        x, t_x, T = columns
        return bg.loglik_grad_rows(P, x, t_x, T, self._c)

    def _hessian_function(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> Hessian:
        c = self._c

        def hessian(params: FloatArray, weights: FloatArray) -> FloatArray:
            r, alpha, a, b = params
            return bg.loglik_hessian(r, alpha, a, b, x, t_x, T, c, weights)

        return hessian

    def _dropout_degenerate(self, params: dict[str, float]) -> str | None:
        """a + b over `DEGENERATE_CONCENTRATION`: p ~ Beta(a, b) has a standard deviation under 1% of its range at
        every mean, i.e. every customer (of the reference covariate pattern) has the same dropout probability."""
        a, b = params["a"], params["b"]
        if a + b <= DEGENERATE_CONCENTRATION:
            return None
        return (
            f"a = {plain_number(a)} and b = {plain_number(b)} grow together: the dropout probability a/(a+b) = "
            f"{plain_number(a / (a + b), 2)} has no spread across customers"
        )

    def _assumption_warnings(self) -> list[str]:
        a, b = self.params_["a"], self.params_["b"]
        if a + b <= 1.0:
            return [f"a + b = {a + b:.4g} <= 1: the drop-out probability's distribution is extreme; check the data"]
        return []

    def _alive(self, rfm: pd.DataFrame) -> tuple[FloatArray, NDArray[np.intp], FloatArray, FloatArray, FloatArray]:
        """P(alive) per row, and the parameters (r + x, alpha + T, b + x + c) of the BG process that an alive
        customer follows from T on, per unique (x, T) with each row's index into them: the expensive
        expectations depend on (x, T) only, and customers share far fewer of those than of (x, t_x, T)."""
        r, alpha, a, b = self._p()
        x, t_x, T = rfm_arrays(rfm)
        p_alive = np.exp(bg.log_p_alive(r, alpha, a, b, x, t_x, T, self._c))
        (ux, uT), inverse, _ = unique_rows(x, T)
        return p_alive, inverse, r + ux, alpha + uT, b + ux + self._c

    @by_covariate_pattern
    def probability_alive(self, rfm: pd.DataFrame, at: float = 0.0) -> FloatArray:
        """P(alive at T + at | x, t_x, T) (FHL 2005, Eq. 13, for at = 0).

        A customer alive at T stays alive over the next `at` units unless a purchase triggers drop-out:
        P(still alive) = E[exp(-lambda p at)] = E_p[(1 + p at / alpha')^-r'] with the updated parameters.
        """
        at = check_horizon(at)
        p_alive, inverse, r2, alpha2, b2 = self._alive(rfm)
        if at > 0:
            p_alive = p_alive * _stay_alive(at, r2, alpha2, self._p()[2], b2)[inverse]
        return check_output(p_alive, "P(alive)", rfm)

    @by_covariate_pattern
    def expected_purchases(self, rfm: pd.DataFrame, horizon: float) -> FloatArray:
        """E[X(T, T + horizon) | x, t_x, T] (FHL 2005, Eq. 10): P(alive) times a new customer's expectation
        with parameters (r + x, alpha + T, a, b + x)."""
        horizon = check_horizon(horizon)
        p_alive, inverse, r2, alpha2, b2 = self._alive(rfm)
        value = p_alive * bg.expected_new(horizon, r2, alpha2, self._p()[2], b2)[inverse]
        return check_output(value, "expected purchases", rfm)

    @curve_by_covariate_pattern
    def alive_curve(self, rfm: pd.DataFrame, horizons: ArrayLike) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """P(alive) per row and an alive customer's expected purchases per unique (frequency, T)."""
        times = check_horizons(horizons)
        p_alive, inverse, r2, alpha2, b2 = self._alive(rfm)
        return p_alive, inverse, bg.expected_new_curve(times, r2, alpha2, self._p()[2], b2)

    @classmethod
    def alive_curve_draws(
        cls, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, horizons: FloatArray
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """`alive_curve` under every draw at once: P(alive) broadcast over (draws, rows) and the alive customer's
        curve per unique (frequency, T) by `beta_geometric.expected_new_curve_draws` (equal to the draw-by-draw
        quadrature to rounding)."""
        times = check_horizons(horizons)
        r, alpha, a, b = (params[:, j : j + 1] for j in range(4))
        p_alive = np.exp(bg.log_p_alive(r, alpha, a, b, x, t_x, T, cls._c))
        (ux, uT), inverse, _ = unique_rows(x, T)
        curve = bg.expected_new_curve_draws(times, r[:, 0], alpha[:, 0], a[:, 0], b[:, 0] + cls._c, ux, uT)
        return p_alive, inverse, curve

    @classmethod
    def predict_draws(cls, params: FloatArray, rfm: pd.DataFrame, method: str, **kwargs: Any) -> FloatArray:
        """`probability_alive` (now), `expected_purchases` and `probability_of_purchases` under every draw at
        once, shape (draws, rows), the same formulas as the methods with parameters of shape (draws, 1); other
        predictions draw by draw."""
        x, t_x, T = rfm_arrays(rfm)
        if method == "expected_purchases":
            horizon = check_horizon(kwargs["horizon"])
            alive, inverse, curve = cls.alive_curve_draws(params, x, t_x, T, np.array([horizon]))
            return check_output(alive * curve[:, inverse, 0], "expected purchases", rfm)
        if method not in ("probability_alive", "probability_of_purchases") or kwargs.get("at", 0.0) != 0.0:
            return super().predict_draws(params, rfm, method, **kwargs)
        r, alpha, a, b = (params[:, j : j + 1] for j in range(4))
        p_alive = np.exp(bg.log_p_alive(r, alpha, a, b, x, t_x, T, cls._c))
        if method == "probability_alive":
            return check_output(p_alive, "P(alive)", rfm)
        n, horizon = check_count(kwargs["n"]), check_horizon(kwargs["horizon"])
        if horizon == 0:
            return np.full(p_alive.shape, 1.0 if n == 0 else 0.0)
        (ux, uT), inverse, _ = unique_rows(x, T)
        pmf = p_alive * bg.pmf_new(n, horizon, r + ux, alpha + uT, a, b + ux + cls._c, c=0)[:, inverse]
        if n == 0:
            pmf = pmf + (1.0 - p_alive)
        return check_output(pmf, "P(n purchases)", rfm)

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
        """`simulate_purchases` under every draw at once, shape (draws, rows) (P(alive) as given, if it is)."""
        horizon = check_horizon(horizon)
        r, alpha, a, b = (params[:, j : j + 1] for j in range(4))
        if p_alive is None:
            p_alive = np.exp(bg.log_p_alive(r, alpha, a, b, x, t_x, T, cls._c))
        # only the cells that need them draw their variates: the alive ones a rate and a count of chances to buy,
        # those with a chance a dropout probability and the purchase at which they drop (a fifth of the work of
        # drawing every variate in every cell on CDNOW-like data, where most customers are quiet)
        rows = p_alive.shape[1]
        alive = np.flatnonzero(rng.random(p_alive.shape) < p_alive)
        d, j = np.divmod(alive, rows)
        lam = rng.gamma(r[d, 0] + x[j], 1.0 / (alpha[d, 0] + T[j]))
        chances = rng.poisson(lam * horizon)
        buying = np.flatnonzero(chances)
        db, jb = d[buying], j[buying]
        p = rng.beta(a[db, 0], b[db, 0] + x[jb] + cls._c)
        until_drop = rng.geometric(np.clip(p, 1e-300, 1.0))
        counts = np.zeros(p_alive.shape)
        counts.reshape(-1)[alive[buying]] = np.minimum(chances[buying], until_drop)
        return counts

    @by_covariate_pattern
    def probability_of_purchases(self, rfm: pd.DataFrame, n: int, horizon: float) -> FloatArray:
        """P(X(T, T + horizon) = n | x, t_x, T): P(alive) times a new customer's pmf (FHL 2005, Eq. 8) with the
        updated parameters, plus P(dead) for n = 0."""
        horizon = check_horizon(horizon)
        n = check_count(n)
        p_alive, inverse, r2, alpha2, b2 = self._alive(rfm)
        if horizon == 0:
            return np.full(p_alive.shape, 1.0 if n == 0 else 0.0)
        pmf = p_alive * bg.pmf_new(int(n), horizon, r2, alpha2, self._p()[2], b2, c=0)[inverse]
        if n == 0:
            pmf = pmf + (1.0 - p_alive)
        return check_output(pmf, "P(n purchases)", rfm)

    def expected_purchases_new_customer(self, horizon: float | ArrayLike) -> FloatArray:
        """E[X(t)] for a customer just acquired (FHL 2005, Eq. 9; Batislam et al. 2007, Eq. 9 for MBG/NBD)."""
        r, alpha, a, b = self._p()
        t = check_new_customer_horizons(horizon)
        ones = np.ones_like(t)
        return check_output(bg.expected_new(t, r * ones, alpha * ones, a, b * ones, c=self._c), "expected purchases")

    def probability_of_purchases_new_customer(self, n: int, horizon: float) -> float:
        """P(X(t) = n) for a customer just acquired (FHL 2005, Eq. 8)."""
        r, alpha, a, b = self._p()
        horizon = check_horizon(horizon)
        return float(bg.pmf_new(int(n), horizon, np.array([r]), np.array([alpha]), a, np.array([b]), c=self._c)[0])

    @by_covariate_pattern
    def simulate_purchases(self, rfm: pd.DataFrame, horizon: float, rng: np.random.Generator) -> FloatArray:
        """Alive with probability P(alive); then lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x + c) (the
        posteriors given the history and being alive, FHL 2005 Sec. 4), K ~ Poisson(lambda horizon) purchase
        chances and J ~ Geometric(p) purchases until the drop-out one: min(K, J) purchases."""
        horizon = check_horizon(horizon)
        p_alive, inverse, r2, alpha2, b2 = self._alive(rfm)
        a = self._p()[2]
        lam = rng.gamma(r2[inverse], 1.0 / alpha2[inverse])
        p = rng.beta(a, b2[inverse])
        chances = rng.poisson(lam * horizon)
        until_drop = rng.geometric(np.clip(p, 1e-300, 1.0))
        alive = rng.random(p_alive.size) < p_alive
        return np.where(alive, np.minimum(chances, until_drop), 0).astype(float)

    @by_covariate_pattern
    def expected_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> FloatArray:
        """DERT: P(alive) times the discounted expected purchases of an alive customer (no closed form for the
        BG family; see `beta_geometric.dert_alive` for the one-dimensional integral and its evaluation)."""
        delta = check_rate(discount_rate)
        p_alive, inverse, r2, alpha2, b2 = self._alive(rfm)
        value = p_alive * bg.dert_alive(delta, r2, alpha2, self._p()[2], b2)[inverse]
        return check_output(value, "discounted expected residual purchases", rfm)


def _stay_alive(at: float, r: FloatArray, alpha: FloatArray, a: float, b: FloatArray) -> FloatArray:
    """E_p[(1 + p at / alpha)^-r] over p ~ Beta(a, b), per row."""
    out = np.empty(r.shape)
    for b_k in np.unique(b):
        rows = b == b_k
        p, w = beta_rule(a, float(b_k), nodes_for_pole(float(np.min(alpha[rows])) / at))
        out[rows] = np.exp(-r[rows, None] * np.log1p(np.outer(at / alpha[rows], p))) @ w
    return out
