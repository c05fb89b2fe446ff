"""Pareto/NBD: Schmittlein, Morrison & Colombo (1987), "Counting Your Customers: Who Are They and What Will They
Do Next?", Management Science 33(1), with the likelihood as simplified in Fader & Hardie (2005), "A Note on
Deriving the Pareto/NBD Model and Related Expressions" (the note; equation numbers below are the note's).

While alive a customer buys at rate lambda ~ Gamma(r, alpha); the lifetime is exponential with rate
mu ~ Gamma(s, beta). Parameters r, alpha, s, beta; alpha and beta are in the run's time unit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special

from clv.compress import unique_rows
from clv.covariate_fit import by_covariate_pattern, curve_by_covariate_pattern
from clv.errors import plain_number
from clv.hypergeometric import hyp2f1_one, hyp2f1_one_log_grad
from clv.mle import LogBounds, default_log_bounds
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
from clv.purchase.beta_geometric import scaled_expint
from clv.quadrature import nodes_for_poles, unit_legendre_rule

__all__ = ["ParetoNBDModel", "log_bracket", "loglik", "loglik_grad", "loglik_grad_rows"]

FloatArray = NDArray[np.float64]
#: a parameter: one value, or one per posterior draw as an array of shape (draws, 1) broadcasting against rows
Param = float | FloatArray

#: the predictions `ParetoNBDModel.predict_draws` computes under all draws at once
_PMF_FLOATS = 2_000_000  # floats per (draws x rows x nodes) array of `_pmf_alive_draws` (16 MB)
_DRAWS_METHODS = ("probability_alive", "expected_purchases", "probability_of_purchases", "expected_residual_purchases")

#: the largest alpha and beta of the search, in time units of max(T) / 10
RATE_SCALE_BOUND = 1e3


def _log_hyp_term(r: Param, alpha: Param, s: Param, beta: Param, x: FloatArray, t: FloatArray) -> FloatArray:
    """log of 2F1(r+s+x, b; r+s+x+1; z) / (max(alpha, beta) + t)^(r+s+x), the pieces of A_0 (note, Eq. 22).

    Euler's transformation 2F1(a, b; c; z) = (1-z)^(c-a-b) 2F1(c-a, c-b; c; z) (DLMF 15.8.1) with c = a + 1 turns
    both branches into 2F1(1, B; r+s+x+1; z) with B < r+s+x+1 and z in [0, 1), whose value lies in [1, 1/(1-z)]
    (evaluated by `clv.hypergeometric.hyp2f1_one`): no overflow for customers with thousands of purchases, and the
    powers are combined in log space:
      alpha >= beta: G(z) (alpha+t)^-(r+x) (beta+t)^-s,      G = 2F1(1, r+x; r+s+x+1; (alpha-beta)/(alpha+t)),
      alpha <  beta: H(z) (alpha+t)^-(r+x-1) (beta+t)^-(s+1), H = 2F1(1, s+1; r+s+x+1; (beta-alpha)/(beta+t)).
    At alpha = beta, z = 0 and the hypergeometric factor is 1: the removable singularity of other forms is absent.
    The term depends on the row only through (x, t): it is evaluated once per distinct pair. The parameters are
    numbers, or arrays of shape (draws, 1) (one per posterior draw, the branch chosen per draw): then the result
    is (draws, rows), from one `hyp2f1_one` call over (draws, distinct pairs).
    """
    (px, pt), inverse, _ = unique_rows(np.asarray(x, dtype=float), np.asarray(t, dtype=float))
    c = r + s + px + 1.0
    ge = np.asarray(alpha >= beta)
    z = np.where(ge, (alpha - beta) / (alpha + pt), (beta - alpha) / (beta + pt))
    hyp = hyp2f1_one(np.where(ge, r + px, s + 1.0), c, z)
    power_a, power_b = np.where(ge, r + px, r + px - 1.0), np.where(ge, s, s + 1.0)
    u = np.log(hyp) - power_a * np.log(alpha + pt) - power_b * np.log(beta + pt)
    return np.asarray(u[..., inverse], dtype=float)


def log_bracket(
    r: Param, alpha: Param, s: Param, beta: Param, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """log of the 'alive' term (alpha+T)^-(r+x) (beta+T)^-s and log of the whole bracket of the note's Eq. (22):
    (alpha+T)^-(r+x) (beta+T)^-s + s/(r+s+x) A_0, where A_0 = term(t_x) - term(T) >= 0. Parameters as in
    `_log_hyp_term` (numbers, or (draws, 1) arrays giving (draws, rows) results)."""
    log_alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    n = np.shape(x)[0]
    u = _log_hyp_term(r, alpha, s, beta, np.concatenate([x, x]), np.concatenate([t_x, T]))  # one 2F1 call
    u1, u2 = u[..., :n], u[..., n:]
    with np.errstate(divide="ignore"):
        log_a0 = u1 + np.log(np.maximum(-np.expm1(u2 - u1), 0.0))  # A_0 = e^u1 - e^u2, never negative
    return log_alive, np.logaddexp(log_alive, np.log(s) - np.log(r + s + x) + log_a0)


def loglik(r: float, alpha: float, s: float, beta: float, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """Per-row log-likelihood, the note's Eq. (22):
    L = Gamma(r+x) alpha^r beta^s / Gamma(r) * [(alpha+T)^-(r+x) (beta+T)^-s + s/(r+s+x) A_0]."""
    _, bracket = log_bracket(r, alpha, s, beta, x, t_x, T)
    return special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta) + bracket


#: the distinct (x, t) pairs of some rows and each row's pair (`unique_rows`), when computed once for many calls
Pairs = tuple[list[FloatArray], NDArray[np.intp], FloatArray]


def _log_hyp_term_grad(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, t: FloatArray, pairs: Pairs | None = None
) -> tuple[FloatArray, FloatArray]:
    """`_log_hyp_term` and its gradient in (r, alpha, s, beta), shape (4, rows).

    The hypergeometric factor depends on the row only through (x, t), which far fewer pairs share than rows
    (a million customers: some thousands of pairs), so it is evaluated once per distinct pair. With
    h = log 2F1(1, B; C; z) and its partials (h_B, h_C, h_z) from `hyp2f1_one_log_grad`, the chain rule through
    B, C = r+s+x+1 and z gives, for alpha >= beta (B = r+x, z = (alpha-beta)/(alpha+t)):
      d/dr = h_B + h_C - log(alpha+t),  d/ds = h_C - log(beta+t),
      d/dalpha = h_z (beta+t)/(alpha+t)^2 - (r+x)/(alpha+t),  d/dbeta = -h_z/(alpha+t) - s/(beta+t);
    and for alpha < beta (B = s+1, z = (beta-alpha)/(beta+t)) the same with the roles of the rates exchanged.
    `pairs`: `unique_rows(x, t)`, when the caller has it already.
    """
    (px, pt), inverse, _ = unique_rows(x, t) if pairs is None else pairs
    la, lb = np.log(alpha + pt), np.log(beta + pt)
    c = r + s + px + 1.0
    grad = np.empty((4, px.size))
    if alpha >= beta:
        h, (h_b, h_c, h_z) = hyp2f1_one_log_grad(r + px, c, (alpha - beta) / (alpha + pt))
        u = h - (r + px) * la - s * lb
        grad[0] = h_b + h_c - la
        grad[1] = h_z * (beta + pt) / (alpha + pt) ** 2 - (r + px) / (alpha + pt)
        grad[2] = h_c - lb
        grad[3] = -h_z / (alpha + pt) - s / (beta + pt)
    else:
        h, (h_b, h_c, h_z) = hyp2f1_one_log_grad(s + 1.0, c, (beta - alpha) / (beta + pt))
        u = h - (r + px - 1.0) * la - (s + 1.0) * lb
        grad[0] = h_c - la
        grad[1] = -h_z / (beta + pt) - (r + px - 1.0) / (alpha + pt)
        grad[2] = h_b + h_c - lb
        grad[3] = h_z * (alpha + pt) / (beta + pt) ** 2 - (s + 1.0) / (beta + pt)
    return u[inverse], grad[:, inverse]


def loglik_grad(
    r: float,
    alpha: float,
    s: float,
    beta: float,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    pairs: Pairs | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Per-row log-likelihood (the note's Eq. 22, as `loglik`) and its exact gradient in (r, alpha, s, beta),
    shape (rows, 4): the hypergeometric terms at t_x and T in one call (`_log_hyp_term_grad`), combined by
    `_loglik_grad_from_terms`. `pairs`: `unique_rows` of (x, x) and (t_x, T) concatenated, when the caller
    evaluates the same rows many times (`ParetoNBDModel._prepare_loglik_grad`)."""
    n = x.size
    xx, tt = np.concatenate([x, x]), np.concatenate([t_x, T])
    u, du = _log_hyp_term_grad(r, alpha, s, beta, xx, tt, pairs)
    return _loglik_grad_from_terms(r, alpha, s, beta, x, t_x, T, (u[:n], u[n:]), (du[:, :n], du[:, n:]))


def _loglik_grad_from_terms(
    r: Param,
    alpha: Param,
    s: Param,
    beta: Param,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    u: tuple[FloatArray, FloatArray],
    du: tuple[FloatArray, FloatArray],
) -> tuple[FloatArray, FloatArray]:
    """The note's Eq. (22) and its gradient from the log hypergeometric terms u = (u1, u2) at t_x and T and
    their gradients du (each (4, rows)); the parameters are numbers or one value per row.

    log L = log Gamma(r+x) - log Gamma(r) + r log alpha + s log beta + log(E + D), with E the alive term and
    D = s/(r+s+x) A_0 the drop-out term; d log(E + D) = w d log E + (1 - w) d log D, w = E / (E + D). A_0 =
    e^u1 - e^u2, so d log A_0 = (d u1 - e^(u2-u1) d u2) / (1 - e^(u2-u1)); where t_x = T, A_0 = 0 and D
    contributes nothing.
    """
    (u1, u2), (du1, du2) = u, du
    equal = t_x == T
    ratio = np.exp(np.where(equal, -1.0, u2 - u1))  # e^(u2 - u1) < 1 where t_x < T
    one_minus = -np.expm1(np.where(equal, -1.0, u2 - u1))
    log_alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    with np.errstate(divide="ignore"):
        second = np.where(equal, -np.inf, np.log(s) - np.log(r + s + x) + u1 + np.log(one_minus))
    bracket = np.logaddexp(log_alive, second)
    w, w_drop = np.exp(log_alive - bracket), np.exp(second - bracket)  # w_drop = 1 - w, without cancellation
    d_a0 = np.where(equal, 0.0, (du1 - ratio * du2) / one_minus)
    d_alive = np.stack([-np.log(alpha + T), -(r + x) / (alpha + T), -np.log(beta + T), -s / (beta + T)])
    d_second = d_a0
    d_second[0] -= 1.0 / (r + s + x)
    d_second[2] += 1.0 / s - 1.0 / (r + s + x)
    grad = w * d_alive + w_drop * d_second
    grad[0] += _by_count(special.digamma, r, x) - special.digamma(r) + np.log(alpha)
    grad[1] += r / alpha
    grad[2] += np.log(beta)
    grad[3] += s / beta
    ll = _by_count(special.gammaln, r, x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta) + bracket
    return ll, grad.T


def _log_hyp_term_grad_rows(P: FloatArray, x: FloatArray, t: FloatArray) -> tuple[FloatArray, FloatArray]:
    """`_log_hyp_term_grad` with parameters per row (P of shape (rows, 4), in (r, alpha, s, beta)): the branch
    (alpha >= beta or not) is chosen per row, and the hypergeometric factor is evaluated once per distinct
    (x, t, r, alpha, s, beta), one `hyp2f1_one_log_grad` call for both branches. Returns u (rows,) and its
    gradient (4, rows), by the same chain rule as `_log_hyp_term_grad`."""
    (px, pt, r, alpha, s, beta), inverse, _ = unique_rows(x, t, *P.T)
    la, lb = np.log(alpha + pt), np.log(beta + pt)
    ge = alpha >= beta
    z = np.where(ge, (alpha - beta) / (alpha + pt), (beta - alpha) / (beta + pt))
    h, (h_b, h_c, h_z) = hyp2f1_one_log_grad(np.where(ge, r + px, s + 1.0), r + s + px + 1.0, z)
    power_a, power_b = np.where(ge, r + px, r + px - 1.0), np.where(ge, s, s + 1.0)
    u = h - power_a * la - power_b * lb
    grad = np.empty((4, px.size))
    # B = r + x and z = (alpha - beta) / (alpha + t) where ge; B = s + 1 and z = (beta - alpha) / (beta + t) elsewhere
    grad[0] = np.where(ge, h_b, 0.0) + h_c - la
    grad[1] = np.where(ge, h_z * (beta + pt) / (alpha + pt) ** 2, -h_z / (beta + pt)) - power_a / (alpha + pt)
    grad[2] = np.where(ge, 0.0, h_b) + h_c - lb
    grad[3] = np.where(ge, -h_z / (alpha + pt), h_z * (alpha + pt) / (beta + pt) ** 2) - power_b / (beta + pt)
    return u[inverse], grad[:, inverse]


def loglik_grad_rows(P: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray) -> tuple[FloatArray, FloatArray]:
    """`loglik_grad` with every row's own parameters, P of shape (rows, 4) in (r, alpha, s, beta) (customers
    with covariates: Bachmann, Meierer & Naef 2021): the note's Eq. (22) per row and its exact gradient in that
    row's parameters, shape (rows, 4). Rows sharing a history and a parameter pattern share the hypergeometric
    evaluation (`_log_hyp_term_grad_rows`)."""
    P = np.asarray(P, dtype=float)
    n = x.size
    u, du = _log_hyp_term_grad_rows(np.concatenate([P, P]), np.concatenate([x, x]), np.concatenate([t_x, T]))
    r, alpha, s, beta = P.T
    return _loglik_grad_from_terms(r, alpha, s, beta, x, t_x, T, (u[:n], u[n:]), (du[:, :n], du[:, n:]))


def _by_count(fn: Callable[[FloatArray], FloatArray], r: Param, x: FloatArray) -> FloatArray:
    """fn(r + x) per row, evaluated once per purchase count 0..max(x) and gathered when r is one number and the
    counts are whole (a million rows hold a few hundred counts; the special function dominates otherwise)."""
    if np.ndim(r) == 0 and x.size > 64:
        index = x.astype(np.intp)
        if np.array_equal(index, x) and index.min(initial=0) >= 0:
            return np.asarray(fn(r + np.arange(int(index.max(initial=0)) + 1, dtype=float)), dtype=float)[index]
    return np.asarray(fn(r + x), dtype=float)


def _one_minus_exp_over(y: FloatArray) -> FloatArray:
    """(1 - e^-y) / y, equal to 1 at y = 0: the factor that makes the s = 1 singularity removable."""
    y = np.asarray(y, dtype=float)
    small = np.abs(y) < 1e-8
    safe = np.where(small, 1.0, y)
    return np.where(small, 1.0 - y / 2.0, -np.expm1(-safe) / safe)


def _expected_alive(t: float | FloatArray, r: FloatArray, alpha: FloatArray, s: Param, beta: FloatArray) -> FloatArray:
    """E[X(t)] of a customer alive at the start, with parameters (r, alpha, s, beta):
    r beta / (alpha (s-1)) [1 - (beta/(beta+t))^(s-1)] (SMC 1987, Eq. 17; the note, Eq. 27),
    written as (r/alpha) beta L (1 - e^-((s-1)L)) / ((s-1)L) with L = log(1 + t/beta)."""
    log_ratio = np.log1p(t / beta)
    return (r / alpha) * beta * log_ratio * _one_minus_exp_over((s - 1.0) * log_ratio)


class ParetoNBDModel(FactoredCurveModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987). Parameters r, alpha, s, beta.

    Example:
        >>> from clv import ParetoNBDModel
        >>> import pandas as pd
        >>> rfm = pd.DataFrame({"frequency": [2], "recency": [30.43], "T": [38.86]})
        >>> model = ParetoNBDModel.from_params(r=0.553, alpha=10.578, s=0.606, beta=11.669)
        >>> round(float(model.probability_alive(rfm)[0]), 4)
        0.8692
    """

    name: ClassVar[str] = "pareto_nbd"
    param_names: ClassVar[tuple[str, ...]] = ("r", "alpha", "s", "beta")
    time_params: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    #: CLVTools' parameterisation (Bachmann, Meierer & Naef 2021, Eq. 4-5): alpha_i = alpha exp(-g_p'z_i) and
    #: beta_i = beta exp(-g_d'z_i), so a positive coefficient means more purchases or faster dropout
    covariate_effects: ClassVar[dict[str, tuple[tuple[str, float], ...]]] = {
        "purchase": (("alpha", -1.0),),
        "dropout": (("beta", -1.0),),
    }

    def start_point(self) -> FloatArray:
        return np.array([0.5, 2.0, 0.5, 2.0])

    has_no_dropout_limit: ClassVar[bool] = True

    def _dropout_strength(self, scaled_params: FloatArray) -> float:
        """P(a customer drops out within the rescaled span of 10) = 1 - (beta / (beta + 10))^s (SMC 1987: the
        lifetime is exponential with rate mu ~ Gamma(s, beta))."""
        s, beta = scaled_params[2], scaled_params[3]
        return float(-np.expm1(-s * np.log1p(10.0 / beta)))

    def _dropout_limit_description(self, params: dict[str, float]) -> tuple[bool, str]:
        """At the no-dropout limit when the dropout over the data's span is negligible (s -> 0 or
        beta -> infinity)."""
        s, beta = params["s"], params["beta"]
        scale = self.time_scale_  # max(T) / 10 of the fit (this is called during a fit)
        large = 0.5 * RATE_SCALE_BOUND * scale  # near the bound of the search
        moves = [text for text, hit in (("s -> 0", s < 1e-2), ("beta -> infinity", beta > large)) if hit]
        span_dropout = -np.expm1(-s * np.log1p(10.0 * scale / beta))  # P(leaving within max(T))
        at_limit = span_dropout < 1e-3 and bool(moves)
        where = " and ".join(moves) if at_limit else "s and beta not identified"
        return (
            at_limit,
            f"{where}: s = {plain_number(s)}, beta = {plain_number(beta)}, mean dropout rate s/beta = "
            f"{plain_number(s / beta, 2)} per time unit",
        )

    def _dropout_degenerate(self, params: dict[str, float]) -> str | None:
        """s over 1e3: mu ~ Gamma(s, beta) has a coefficient of variation under 3%, every customer (of the
        reference covariate pattern) drops out at the same rate; or beta near the search's bound."""
        s, beta = params["s"], params["beta"]
        near_bound = beta > 0.5 * RATE_SCALE_BOUND * self.time_scale_
        if s <= 1e3 and not near_bound:
            return None
        return f"s = {plain_number(s)}, beta = {plain_number(beta)}: the dropout rate has no spread across customers"

    def _search_bounds(self) -> LogBounds:
        """alpha and beta at most `RATE_SCALE_BOUND` (time rescaled so that max T = 10). Beyond it the gamma
        distribution of the rate they scale is either degenerate (shape and scale both large: every customer has
        the same rate) or the dropout vanishes (beta large, s / beta -> 0); the likelihood there is that limit's,
        and 2F1's argument z = |alpha - beta| / (max(alpha, beta) + t) tends to 1, where the continued fraction
        needs ever more terms (a million at 1 - z = 1e-9). The fit reports a parameter at this bound."""
        lower, upper = default_log_bounds(4)
        upper[[1, 3]] = np.log(RATE_SCALE_BOUND)
        return lower, upper

    def _loglik_grad(
        self, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Log-likelihood and its exact gradient (`loglik_grad`: the hypergeometric function's parameter
        derivatives by its continued fraction differentiated term by term)."""
        r, alpha, s, beta = params
        return loglik_grad(r, alpha, s, beta, x, t_x, T)

    def _prepare_loglik_grad(self, *columns: FloatArray) -> Callable[[FloatArray], tuple[FloatArray, FloatArray]]:
        """`_loglik_grad` on fixed rows, their distinct (x, t) pairs found once (the covariate fit evaluates each
        covariate pattern's rows hundreds of times)."""
        x, t_x, T = columns
        pairs = unique_rows(np.concatenate([x, x]), np.concatenate([t_x, T]))

        def fn(params: FloatArray) -> tuple[FloatArray, FloatArray]:
            r, alpha, s, beta = params
            return loglik_grad(r, alpha, s, beta, x, t_x, T, pairs)

        return fn

    def _row_loglik_grad(self, P: FloatArray, *columns: FloatArray) -> tuple[FloatArray, FloatArray]:
        """`loglik_grad_rows`: each row with its own parameters (covariate models with many patterns)."""
        x, t_x, T = columns
        return loglik_grad_rows(P, x, t_x, T)

    def _alive(self, rfm: pd.DataFrame) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """P(alive at T) (the note, Eq. 18 as alive term over bracket) and the updated (r + x, alpha + T, beta + T)
        of the gamma posteriors of lambda and mu given the history and being alive."""
        r, alpha, s, beta = self._p()
        x, t_x, T = rfm_arrays(rfm)
        log_alive, bracket = log_bracket(r, alpha, s, beta, x, t_x, T)
        return np.exp(log_alive - bracket), r + x, alpha + T, beta + T

    @by_covariate_pattern
    def probability_alive(self, rfm: pd.DataFrame, at: float = 0.0) -> FloatArray:
        """P(alive at T + at | x, t_x, T): P(alive at T) times P(lifetime > at) = ((beta+T)/(beta+T+at))^s."""
        at = check_horizon(at)
        p_alive, _, _, beta2 = self._alive(rfm)
        s = self.params_["s"]
        value = p_alive * np.exp(-s * np.log1p(at / beta2))
        return check_output(value, "P(alive)", rfm)

    @by_covariate_pattern
    def expected_purchases(self, rfm: pd.DataFrame, horizon: float) -> FloatArray:
        """E[X(T, T + horizon) | x, t_x, T] (the note, Eq. 41)."""
        horizon = check_horizon(horizon)
        p_alive, r2, alpha2, beta2 = self._alive(rfm)
        value = p_alive * _expected_alive(horizon, r2, alpha2, self.params_["s"], beta2)
        return check_output(value, "expected purchases", rfm)

    @curve_by_covariate_pattern
    def alive_curve(self, rfm: pd.DataFrame, horizons: ArrayLike) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """P(alive) per row and an alive customer's expected purchases per unique (frequency, T)."""
        times = check_horizons(horizons)
        p_alive, r2, alpha2, beta2 = self._alive(rfm)
        (ur, ua, ub), inverse, _ = unique_rows(r2, alpha2, beta2)
        s = self.params_["s"]
        curve = _expected_alive(times[None, :], ur[:, None], ua[:, None], s, ub[:, None])
        return p_alive, inverse, curve

    @staticmethod
    def _alive_draws(
        params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """`_alive` under every draw (rows of `params`) at once: P(alive) and the updated parameters, shape
        (draws, rows), and s per draw, shape (draws, 1); the same formulas with parameters of shape (draws, 1)."""
        r, alpha, s, beta = (params[:, j : j + 1] for j in range(4))
        log_alive, bracket = log_bracket(r, alpha, s, beta, x, t_x, T)
        return np.exp(log_alive - bracket), r + x, alpha + T, beta + T, s

    @classmethod
    def alive_curve_draws(
        cls, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, horizons: FloatArray
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """`alive_curve` under every draw at once: P(alive) (draws, rows), each row's group of equal (frequency,
        T), and the alive customer's expected purchases per group (draws, groups, len(horizons)) in closed form."""
        times = check_horizons(horizons)
        p_alive = cls._alive_draws(params, x, t_x, T)[0]
        (ux, uT), inverse, _ = unique_rows(x, T)
        r, alpha, s, beta = (params[:, j, None, None] for j in range(4))
        curve = _expected_alive(times[None, None, :], r + ux[:, None], alpha + uT[:, None], s, beta + uT[:, None])
        return p_alive, inverse, curve

    @classmethod
    def predict_draws(cls, params: FloatArray, rfm: pd.DataFrame, method: str, **kwargs: Any) -> FloatArray:
        """`probability_alive`, `expected_purchases`, `probability_of_purchases` and
        `expected_residual_purchases` under every draw at once, shape (draws, rows): the methods' formulas with
        parameters of shape (draws, 1); other predictions draw by draw."""
        x, t_x, T = rfm_arrays(rfm)
        if method not in _DRAWS_METHODS:
            return super().predict_draws(params, rfm, method, **kwargs)
        p_alive, r2, alpha2, beta2, s = cls._alive_draws(params, x, t_x, T)
        if method == "probability_alive":
            at = check_horizon(kwargs.get("at", 0.0))
            return check_output(p_alive * np.exp(-s * np.log1p(at / beta2)), "P(alive)", rfm)
        if method == "expected_purchases":
            horizon = check_horizon(kwargs["horizon"])
            return check_output(p_alive * _expected_alive(horizon, r2, alpha2, s, beta2), "expected purchases", rfm)
        if method == "expected_residual_purchases":
            delta = check_rate(kwargs["discount_rate"])
            value = p_alive * (r2 / alpha2) * beta2 * scaled_expint(np.broadcast_to(s, beta2.shape), delta * beta2)
            return check_output(value, "discounted expected residual purchases", rfm)
        n, horizon = check_count(kwargs["n"]), check_horizon(kwargs["horizon"])
        if horizon == 0:
            return np.full(p_alive.shape, 1.0 if n == 0 else 0.0)
        pmf = p_alive * _pmf_alive_draws(n, horizon, r2, alpha2, s[:, 0], beta2)
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
        """`simulate_purchases` under every draw at once, shape (draws, rows): the same draws, taken for all
        (draw, row) cells at once (so the random stream is consumed in another order than draw by draw); P(alive)
        as given, if it is."""
        horizon = check_horizon(horizon)
        if p_alive is None:
            p_alive = cls._alive_draws(params, x, t_x, T)[0]
        r, alpha, s, beta = (params[:, j : j + 1] for j in range(4))
        r2, alpha2, beta2 = r + x, alpha + T, beta + T
        shape = p_alive.shape
        lam = rng.gamma(r2, 1.0 / alpha2)
        mu = rng.gamma(np.broadcast_to(s, shape), 1.0 / beta2)
        lifetime = rng.exponential(1.0, shape) / np.maximum(mu, 1e-300)
        purchases = rng.poisson(lam * np.minimum(lifetime, horizon))
        alive = rng.random(shape) < p_alive
        return np.where(alive, purchases, 0).astype(float)

    @by_covariate_pattern
    def simulate_purchases(self, rfm: pd.DataFrame, horizon: float, rng: np.random.Generator) -> FloatArray:
        """Alive with probability P(alive); then lambda ~ Gamma(r + x, alpha + T) and mu ~ Gamma(s, beta + T)
        (the posteriors given the history and being alive; SMC 1987), a remaining lifetime ~ Exp(mu), and
        Poisson(lambda min(lifetime, horizon)) purchases."""
        horizon = check_horizon(horizon)
        p_alive, r2, alpha2, beta2 = self._alive(rfm)
        s = self.params_["s"]
        lam = rng.gamma(r2, 1.0 / alpha2)
        mu = rng.gamma(s, 1.0 / beta2)
        lifetime = rng.exponential(1.0, p_alive.size) / np.maximum(mu, 1e-300)
        purchases = rng.poisson(lam * np.minimum(lifetime, horizon))
        alive = rng.random(p_alive.size) < p_alive
        return np.where(alive, purchases, 0).astype(float)

    def expected_purchases_new_customer(self, horizon: float | ArrayLike) -> FloatArray:
        """E[X(t)] of a new customer (the note, Eq. 27)."""
        r, alpha, s, beta = self._p()
        t = check_new_customer_horizons(horizon)
        return check_output(
            _expected_alive(t, np.full(t.shape, r), np.full(t.shape, alpha), s, np.full(t.shape, beta)),
            "expected purchases",
        )

    @by_covariate_pattern
    def probability_of_purchases(self, rfm: pd.DataFrame, n: int, horizon: float) -> FloatArray:
        """P(X(T, T + horizon) = n | x, t_x, T).

        Alive at T (probability P(alive)), the customer's future is a new Pareto/NBD customer's with
        (r + x, alpha + T, s, beta + T); for that customer P(X(t) = n) = NB(n; t) P(lifetime > t) +
        int_0^t f(lifetime = u) NB(n; u) du, NB(n; u) the gamma-Poisson count over (0, u] (Fader, Hardie & Lee
        2006, "Deriving an expression for P(X(t) = x) under the Pareto/NBD model", Eq. 4 before integrating),
        evaluated by Gauss-Legendre quadrature on (0, t). Dead at T: no purchase.
        """
        horizon = check_horizon(horizon)
        n = check_count(n)
        p_alive, r2, alpha2, beta2 = self._alive(rfm)
        if horizon == 0:
            return np.full(p_alive.shape, 1.0 if n == 0 else 0.0)
        pmf = p_alive * _pmf_alive(int(n), horizon, r2, alpha2, self.params_["s"], beta2)
        if n == 0:
            pmf = pmf + (1.0 - p_alive)
        return check_output(pmf, "P(n purchases)", rfm)

    @by_covariate_pattern
    def expected_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> FloatArray:
        """DERT (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves", Eq. 2): P(alive) times
        E[lambda] E[1/(delta + mu)] = P(alive) (r+x)/(alpha+T) (beta+T) e^z E_s(z), z = delta (beta + T),
        which equals the paper's alpha^r beta^s delta^(s-1) Gamma(r+x+1) U(s, s; z) / (Gamma(r) (alpha+T)^(r+x+1) L)."""
        delta = check_rate(discount_rate)
        p_alive, r2, alpha2, beta2 = self._alive(rfm)
        s = np.full(beta2.shape, self.params_["s"])
        value = p_alive * (r2 / alpha2) * beta2 * scaled_expint(s, delta * beta2)
        return check_output(value, "discounted expected residual purchases", rfm)


def _pmf_alive(n: int, t: float, r: FloatArray, alpha: FloatArray, s: float, beta: FloatArray) -> FloatArray:
    """P(X(t) = n) of a customer alive at the start (see ParetoNBDModel.probability_of_purchases)."""
    nodes = _pmf_nodes(n, t, r[None, :], alpha[None, :], beta[None, :])
    return _pmf_alive_rule(n, t, r, alpha, s, beta, int(nodes[0]))


def _pmf_nodes(n: int, t: float, r: FloatArray, alpha: FloatArray, beta: FloatArray) -> NDArray[np.int64]:
    """Gauss-Legendre nodes of `_pmf_alive_rule` per draw (rows of the (draws, rows) arrays): the integrand has
    poles at u = -alpha and u = -beta and, for large r, a peak of width ~ sqrt(n) alpha / r."""
    nodes = nodes_for_poles(np.minimum(np.min(alpha, axis=-1), np.min(beta, axis=-1)) / t, lo=64, hi=800)
    extra = 2 * n + (4.0 * np.sqrt(np.max(r * t / alpha, axis=-1))).astype(np.int64)
    return np.minimum(nodes + extra, 1000)


def _pmf_alive_rule(
    n: int, t: float, r: FloatArray, alpha: FloatArray, s: Param, beta: FloatArray, nodes: int
) -> FloatArray:
    """`_pmf_alive` by an n-node rule; r, alpha, beta (..., rows) and s a number or (..., 1) broadcasting."""

    def log_nb(u: FloatArray, r_: FloatArray, alpha_: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore"):
            return (
                special.gammaln(r_ + n)
                - special.gammaln(r_)
                - special.gammaln(n + 1.0)
                + r_ * (np.log(alpha_) - np.log(alpha_ + u))
                + n * (np.log(u) - np.log(alpha_ + u))
            )

    survive = log_nb(np.full(r.shape, t), r, alpha) - s * np.log1p(t / beta)
    u01, w01 = unit_legendre_rule(nodes)
    u = t * u01
    s_ = np.asarray(s)[..., None]
    log_density = np.log(s_) + s_ * np.log(beta[..., None]) - (s_ + 1.0) * np.log(beta[..., None] + u)
    integrand = np.exp(log_density + log_nb(u, r[..., None], alpha[..., None]))
    return np.asarray(np.exp(survive) + t * np.einsum("...k,k->...", integrand, w01), dtype=float)


def _pmf_alive_draws(n: int, t: float, r: FloatArray, alpha: FloatArray, s: FloatArray, beta: FloatArray) -> FloatArray:
    """`_pmf_alive` under every draw: r, alpha, beta (draws, rows), s (draws,). Each draw gets the node count it
    would get alone; the draws that share a count are computed together, in chunks of (draws x rows x nodes)
    under `_PMF_FLOATS` floats."""
    nodes = _pmf_nodes(n, t, r, alpha, beta)
    out = np.empty(r.shape)
    for count in np.unique(nodes):
        draws = np.flatnonzero(nodes == count)
        step = max(1, _PMF_FLOATS // (r.shape[1] * int(count)))
        for d0 in range(0, draws.size, step):
            d = draws[d0 : d0 + step]
            out[d] = _pmf_alive_rule(n, t, r[d], alpha[d], s[d, None], beta[d], int(count))
    return out
