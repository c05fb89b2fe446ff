"""BG/BB: Fader, Hardie & Shang (2010), "Customer-Base Analysis in a Discrete-Time Noncontractual Setting",
Marketing Science 29(6), 1086-1108 (FHS; equation numbers are the paper's).

Time is n discrete transaction opportunities. While alive, a customer transacts at each opportunity with
probability p ~ Beta(alpha, beta); before each opportunity after the first the customer dies with probability
theta ~ Beta(gamma, delta). The RFM frame reads: frequency = x (repeat transactions), recency = t_x (the
opportunity of the last one, 0 if none), T = n (opportunities in the calibration period).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special

from clv.compress import unique_rows
from clv.errors import DataError, UsageError
from clv.purchase.base import PurchaseModel, check_count, check_output, check_rate, rfm_arrays

__all__ = ["BetaGeoBetaBinomModel"]

FloatArray = NDArray[np.float64]
#: a parameter: one value, or one per posterior draw as an array of shape (draws, 1) broadcasting against rows
Param = float | FloatArray
_TERM_FLOATS = 2_000_000  # floats per (draws x rows x terms or opportunities) array of the draws-axis forms (16 MB)


def _terms(
    al: Param, be: Param, ga: Param, de: Param, x: FloatArray, t_x: FloatArray, n: FloatArray
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """log of each term of the likelihood (FHS Eq. 5), shape (rows, 1 + max(n - t_x)); unused slots -inf.
    Parameters of shape (draws, 1) (one per posterior draw) give shape (draws, rows, 1 + max(n - t_x)).

    Term 0: alive through n, B(al+x, be+n-x)/B(al,be) B(ga, de+n)/B(ga,de); term 1+i (i < n - t_x): died just
    after opportunity t_x + i, B(al+x, be+t_x-x+i)/B(al,be) B(ga+1, de+t_x+i)/B(ga,de).
    """
    width = int(np.max(n - t_x)) if n.size else 0
    i = np.arange(width, dtype=float)[None, :]
    base = -special.betaln(al, be) - special.betaln(ga, de)
    alive = base + special.betaln(al + x, be + n - x) + special.betaln(ga, de + n)
    used = i < (n - t_x)[:, None]
    al_, be_, ga_, de_, base_ = (np.asarray(v)[..., None] for v in (al, be, ga, de, base))
    died = (
        base_
        + special.betaln(al_ + x[:, None], be_ + (t_x - x)[:, None] + i)
        + special.betaln(ga_ + 1.0, de_ + t_x[:, None] + i)
    )
    terms = np.concatenate([alive[..., None], np.where(used, died, -np.inf)], axis=-1)
    return terms, np.concatenate([np.ones((x.size, 1), bool), used], axis=1)


def loglik_grad(params: FloatArray, x: FloatArray, t_x: FloatArray, n: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-row log-likelihood (FHS Eq. 5) and its analytic gradient in (alpha, beta, gamma, delta)."""
    al, be, ga, de = params
    terms, used = _terms(al, be, ga, de, x, t_x, n)
    ll = special.logsumexp(terms, axis=1)
    w = np.where(used, np.exp(terms - ll[:, None]), 0.0)
    psi = special.digamma
    width = terms.shape[1] - 1
    i = np.arange(width, dtype=float)[None, :]
    # d betaln(u, v)/du = psi(u) - psi(u+v)
    b_pa = np.concatenate([(be + n - x)[:, None], be + (t_x - x)[:, None] + i], axis=1)
    g_a = np.concatenate([np.full((x.size, 1), ga), np.full((x.size, width), ga + 1.0)], axis=1)
    g_d = np.concatenate([(de + n)[:, None], de + t_x[:, None] + i], axis=1)
    a_x = (al + x)[:, None]
    d_al = psi(a_x) - psi(a_x + b_pa) - (psi(al) - psi(al + be))
    d_be = psi(b_pa) - psi(a_x + b_pa) - (psi(be) - psi(al + be))
    d_ga = psi(g_a) - psi(g_a + g_d) - (psi(ga) - psi(ga + de))
    d_de = psi(g_d) - psi(g_a + g_d) - (psi(de) - psi(ga + de))
    grad = np.stack([(w * d).sum(axis=1) for d in (d_al, d_be, d_ga, d_de)], axis=1)
    return ll, grad


class BetaGeoBetaBinomModel(PurchaseModel):
    """BG/BB (Fader, Hardie & Shang 2010). Parameters alpha, beta (transaction), gamma, delta (drop-out).
    Time is counted in transaction opportunities; horizons are whole numbers of opportunities.

    Example:
        >>> from clv import BetaGeoBetaBinomModel
        >>> import pandas as pd
        >>> rfm = pd.DataFrame({"frequency": [3], "recency": [4], "T": [6]})
        >>> model = BetaGeoBetaBinomModel.from_params(alpha=1.204, beta=0.750, gamma=0.657, delta=2.783)
        >>> round(float(model.probability_alive(rfm)[0]), 4)
        0.4723
    """

    name: ClassVar[str] = "bgbb"
    param_names: ClassVar[tuple[str, ...]] = ("alpha", "beta", "gamma", "delta")
    time_params: ClassVar[tuple[str, ...]] = ()

    def start_point(self) -> FloatArray:
        return np.array([1.0, 1.0, 1.0, 1.0])

    def _time_scale(self, T: FloatArray) -> float:
        return 1.0  # discrete opportunities are not rescaled

    def _loglik_grad(
        self, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        return loglik_grad(params, x, t_x, T)

    def _discrete(self, rfm: pd.DataFrame) -> tuple[FloatArray, FloatArray, FloatArray]:
        x, t_x, n = rfm_arrays(rfm)
        _check_discrete(x, t_x, n, rfm["customer_id"].to_numpy() if "customer_id" in rfm else None)
        return x, t_x, n

    def fit(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> BetaGeoBetaBinomModel:
        self._discrete(rfm)
        return super().fit(rfm, weights)

    def _posterior(self, rfm: pd.DataFrame) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """log P(alive at opportunity n) and the updated Beta parameters (alpha+x, beta+n-x, gamma, delta+n)."""
        al, be, ga, de = self._p()
        x, t_x, n = self._discrete(rfm)
        terms, _ = _terms(al, be, ga, de, x, t_x, n)
        log_alive = terms[:, 0] - special.logsumexp(terms, axis=1)
        return log_alive, al + x, be + n - x, de + n

    def probability_alive(self, rfm: pd.DataFrame, at: float = 0.0) -> FloatArray:
        """P(alive at opportunity n + at) (FHS Eq. 11 with n + at in place of n + 1):
        B(alpha+x, beta+n-x)/B(alpha,beta) B(gamma, delta+n+at)/B(gamma,delta) / L."""
        if at < 0 or int(at) != at:
            raise UsageError(f"at must be a whole number of opportunities >= 0, got {at!r}")
        log_alive, _, _, de2 = self._posterior(rfm)
        ga = self.params_["gamma"]
        value = np.exp(log_alive + special.betaln(ga, de2 + at) - special.betaln(ga, de2))
        return check_output(value, "P(alive)", rfm)

    def _survival(self, de2: FloatArray, k: FloatArray) -> FloatArray:
        """E[(1 - theta)^k] for theta ~ Beta(gamma, delta'), per row and k: B(gamma, delta'+k) / B(gamma, delta')."""
        return _survival_draws(self.params_["gamma"], de2, k)

    def expected_purchases(self, rfm: pd.DataFrame, horizon: float) -> FloatArray:
        """E[X(n, n + n*) | x, t_x, n] (FHS Eq. 13), as P(alive) E[p'] sum_{k=1..n*} E[(1-theta')^k] with the
        posterior Beta parameters: a finite sum with no removable singularity at gamma = 1."""
        steps = _whole(horizon)
        log_alive, al2, be2, de2 = self._posterior(rfm)
        k = np.arange(1, steps + 1, dtype=float)
        value = np.exp(log_alive) * al2 / (al2 + be2) * self._survival(de2, k).sum(axis=1)
        return check_output(value, "expected purchases", rfm)

    def simulate_purchases(self, rfm: pd.DataFrame, horizon: float, rng: np.random.Generator) -> FloatArray:
        """Alive at opportunity n with probability P(alive); then p ~ Beta(alpha + x, beta + n - x) and
        theta ~ Beta(gamma, delta + n) (FHS 2010, Sec. 3), the number of the next `horizon` opportunities
        survived (drop-out before each with probability theta), and Binomial(survived, p) purchases."""
        h = _whole(horizon)
        log_alive, al2, be2, de2 = self._posterior(rfm)
        ga = self.params_["gamma"]
        p = rng.beta(al2, be2)
        theta = np.clip(rng.beta(ga, de2), 1e-300, 1.0)
        survived = np.minimum(rng.geometric(theta) - 1, h)
        purchases = rng.binomial(survived, p)
        alive = rng.random(p.size) < np.exp(log_alive)
        return np.where(alive, purchases, 0).astype(float)

    def alive_curve(self, rfm: pd.DataFrame, horizons: ArrayLike) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """`expected_purchases_curve` factored as P(alive) per row times an alive customer's expected purchases
        (FHS Eq. 13 without P(alive)) per unique (frequency, T), which is all they depend on."""
        x, t_x, n = self._discrete(rfm)
        alive, inverse, curve = self.alive_curve_draws(np.array([self._p()]), x, t_x, n, np.asarray(horizons, float))
        return alive[0], inverse, curve[0]

    @classmethod
    def alive_curve_draws(
        cls, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, horizons: FloatArray
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """`alive_curve` under every draw at once: P(alive) (draws, rows), each row's group of equal (frequency,
        T), and the alive customer's expected purchases E[p'] sum_(k <= h) E[(1-theta')^k] per group at each
        whole horizon h (draws, groups, len(horizons)), the sums cumulated once up to the largest horizon."""
        steps = np.array([_whole(float(h)) for h in np.asarray(horizons, dtype=float).ravel()], dtype=np.intp)
        _check_discrete(x, t_x, T, None)
        log_alive, _, _, _, ga = _posterior_draws(params, x, t_x, T)
        (ux, un), inverse, _ = unique_rows(x, T)
        al, be, de = (params[:, j : j + 1] for j in (0, 1, 3))
        al2, be2, de2 = al + ux, be + un - ux, de + un
        k = np.arange(1, int(steps.max(initial=0)) + 1, dtype=float)
        curve = np.empty((*de2.shape, steps.size))
        step = max(1, _TERM_FLOATS // max(ux.size * (k.size + 1), 1))  # (draws x groups x k) arrays
        for d0 in range(0, de2.shape[0], step):
            d = slice(d0, d0 + step)
            survival = _survival_draws(ga[d], de2[d], k)
            cumulative = np.concatenate([np.zeros((*de2[d].shape, 1)), np.cumsum(survival, axis=-1)], axis=-1)
            curve[d] = (al2[d] / (al2[d] + be2[d]))[..., None] * cumulative[..., steps]
        return np.exp(log_alive), inverse, curve

    @classmethod
    def predict_draws(cls, params: FloatArray, rfm: pd.DataFrame, method: str, **kwargs: Any) -> FloatArray:
        """`probability_alive`, `expected_purchases`, `probability_of_purchases` and
        `expected_residual_purchases` under every draw at once, shape (draws, rows): the methods' formulas with
        parameters of shape (draws, 1); other predictions draw by draw."""
        if method not in _DRAWS_METHODS:
            return super().predict_draws(params, rfm, method, **kwargs)
        x, t_x, n = rfm_arrays(rfm)
        _check_discrete(x, t_x, n, rfm["customer_id"].to_numpy() if "customer_id" in rfm else None)
        if method == "expected_purchases":
            alive, inverse, curve = cls.alive_curve_draws(params, x, t_x, n, np.array([kwargs["horizon"]]))
            return check_output(alive * curve[:, inverse, 0], "expected purchases", rfm)
        log_alive, al2, be2, de2, ga = _posterior_draws(params, x, t_x, n)
        if method == "probability_alive":
            at = kwargs.get("at", 0.0)
            if at < 0 or int(at) != at:
                raise UsageError(f"at must be a whole number of opportunities >= 0, got {at!r}")
            value = np.exp(log_alive + special.betaln(ga, de2 + at) - special.betaln(ga, de2))
            return check_output(value, "P(alive)", rfm)
        if method == "probability_of_purchases":
            count, steps = check_count(kwargs["n"]), _whole(kwargs["horizon"])
            alive_part = np.empty(de2.shape)
            step = max(1, _TERM_FLOATS // max(x.size * (steps + 1), 1))  # (draws x rows x opportunities) arrays
            for d0 in range(0, de2.shape[0], step):
                d = slice(d0, d0 + step)
                alive_part[d] = _alive_pmf(count, steps, al2[d], be2[d], ga[d], de2[d])
            value = np.exp(log_alive) * alive_part + (1.0 - np.exp(log_alive)) * (count == 0)
            return check_output(value, "P(n purchases)", rfm)
        rate = check_rate(kwargs["discount_rate"])
        value = np.exp(log_alive) * al2 / (al2 + be2) * _discounted_survival(rate, ga, de2)
        return check_output(value, "discounted expected residual purchases", rfm)

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
        h = _whole(horizon)
        _check_discrete(x, t_x, T, None)
        if p_alive is None:
            p_alive = np.exp(_posterior_draws(params, x, t_x, T)[0])
        al, be, ga, de = (params[:, j : j + 1] for j in range(4))
        al2, be2, de2 = al + x, be + T - x, de + T
        p = rng.beta(al2, be2)
        theta = np.clip(rng.beta(np.broadcast_to(ga, de2.shape), de2), 1e-300, 1.0)
        survived = np.minimum(rng.geometric(theta) - 1, h)
        purchases = rng.binomial(survived, p)
        alive = rng.random(p.shape) < p_alive
        return np.where(alive, purchases, 0).astype(float)

    def expected_purchases_new_customer(self, horizon: float | ArrayLike) -> FloatArray:
        """E[X(n)] of a new customer (FHS Eq. 7): alpha/(alpha+beta) sum_{k=1..n} B(gamma, delta+k)/B(gamma, delta)."""
        al, be, _, de = self._p()
        horizons = [_whole(h) for h in np.atleast_1d(np.asarray(horizon, dtype=float))]
        top = max(horizons, default=0)
        cumulative = np.concatenate(
            [[0.0], np.cumsum(self._survival(np.array([de]), np.arange(1, top + 1, dtype=float))[0])]
        )
        return al / (al + be) * cumulative[horizons]

    def probability_of_purchases(self, rfm: pd.DataFrame, n: int, horizon: float) -> FloatArray:
        """P(X(n, n + n*) = k | history) (FHS Eq. 14), by the number d of future opportunities the customer is
        alive for: P(d) = E[theta(1-theta)^d] (d < n*) or E[(1-theta)^n*], times E[Binomial(k; d, p)]."""
        steps = _whole(horizon)
        n = check_count(n)
        log_alive, al2, be2, de2 = self._posterior(rfm)
        alive_part = _alive_pmf(n, steps, al2, be2, self.params_["gamma"], de2)
        value = np.exp(log_alive) * alive_part + (1.0 - np.exp(log_alive)) * (n == 0)
        return check_output(value, "P(n purchases)", rfm)

    def expected_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> FloatArray:
        """DERT (FHS Eq. 15) with continuous discounting e^(-rate k) at opportunity n + k: P(alive) E[p']
        sum_k E[(1-theta')^k] e^(-rate k), summed until e^(-rate k) < 1e-17."""
        rate = check_rate(discount_rate)
        log_alive, al2, be2, de2 = self._posterior(rfm)
        value = np.exp(log_alive) * al2 / (al2 + be2) * _discounted_survival(rate, self.params_["gamma"], de2)
        return check_output(value, "discounted expected residual purchases", rfm)


def _whole(horizon: float) -> int:
    if not np.isfinite(horizon) or horizon < 0 or int(horizon) != horizon:
        raise UsageError(f"BG/BB horizons are whole numbers of opportunities >= 0, got {horizon!r}")
    return int(horizon)


#: the predictions `BetaGeoBetaBinomModel.predict_draws` computes under all draws at once
_DRAWS_METHODS = ("probability_alive", "expected_purchases", "probability_of_purchases", "expected_residual_purchases")


def _check_discrete(x: FloatArray, t_x: FloatArray, n: FloatArray, ids: NDArray[Any] | None) -> None:
    """Refuses histories that are not whole numbers of opportunities with frequency <= recency."""
    bad = (np.floor(t_x) != t_x) | (np.floor(n) != n) | (x > t_x)
    if bad.any():
        first = ids[bad] if ids is not None else np.flatnonzero(bad)
        raise DataError(
            f"BG/BB needs whole-number recency and T (transaction opportunities) with frequency <= recency; "
            f"{int(bad.sum())} row(s) violate this (first: {', '.join(map(str, first[:5]))})"
        )


def _posterior_draws(
    params: FloatArray, x: FloatArray, t_x: FloatArray, n: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """`BetaGeoBetaBinomModel._posterior` under every draw (rows of `params`): log P(alive) and the updated
    (alpha+x, beta+n-x, delta+n), shape (draws, rows), and gamma (draws, 1). The likelihood's terms (draws x rows
    x terms) are built in chunks of draws under `_TERM_FLOATS` floats."""
    al, be, ga, de = (params[:, j : j + 1] for j in range(4))
    width = (int(np.max(n - t_x)) if n.size else 0) + 1
    log_alive = np.empty((params.shape[0], x.size))
    step = max(1, _TERM_FLOATS // max(x.size * width, 1))
    for d0 in range(0, params.shape[0], step):
        d = slice(d0, d0 + step)
        terms, _ = _terms(al[d], be[d], ga[d], de[d], x, t_x, n)
        log_alive[d] = terms[..., 0] - special.logsumexp(terms, axis=-1)
    return log_alive, al + x, be + n - x, de + n, ga


def _survival_draws(ga: Param, de2: FloatArray, k: FloatArray) -> FloatArray:
    """E[(1 - theta)^k] for theta ~ Beta(gamma, delta'), shape (*de2.shape, k.size): B(gamma, delta'+k) /
    B(gamma, delta'); gamma a number or broadcasting against de2 ((draws, 1) against (draws, rows))."""
    ga_ = np.asarray(ga)[..., None]
    return np.exp(special.betaln(ga_, de2[..., None] + k) - special.betaln(ga, de2)[..., None])


def _alive_pmf(n: int, steps: int, al2: FloatArray, be2: FloatArray, ga: Param, de2: FloatArray) -> FloatArray:
    """P(n purchases in the next `steps` opportunities | alive now) (FHS Eq. 14 without P(alive)), by the number
    d of future opportunities the customer is alive for: P(d) = E[theta(1-theta)^d] (d < steps) or
    E[(1-theta)^steps], times E[Binomial(n; d, p)]; rows (and draws) on the leading axes."""
    d = np.arange(0, steps + 1, dtype=float)
    ga_ = np.asarray(ga)[..., None]
    log_pd = special.betaln(ga_ + 1.0, de2[..., None] + d) - special.betaln(ga, de2)[..., None]
    log_pd[..., -1] = special.betaln(ga, de2 + steps) - special.betaln(ga, de2)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_binom = np.where(
            d >= n,
            special.gammaln(d + 1.0)
            - special.gammaln(n + 1.0)
            - special.gammaln(np.maximum(d - n, 0) + 1.0)
            + special.betaln(al2[..., None] + n, be2[..., None] + np.maximum(d - n, 0))
            - special.betaln(al2, be2)[..., None],
            -np.inf,
        )
    return np.asarray(np.exp(special.logsumexp(log_pd + log_binom, axis=-1)), dtype=float)


def _discounted_survival(rate: float, ga: Param, de2: FloatArray) -> FloatArray:
    """sum_k E[(1-theta')^k] e^(-rate k) over k >= 1, summed until e^(-rate k) < 1e-17 (FHS Eq. 15), in chunks
    of k whose (rows x k) arrays stay under `_TERM_FLOATS` floats."""
    top = int(min(200_000, np.ceil(39.0 / rate)))
    total = np.zeros(de2.shape)
    chunk = max(1, min(4096, _TERM_FLOATS // max(de2.size, 1)))
    for start in range(1, top + 1, chunk):
        k = np.arange(start, min(top, start + chunk - 1) + 1, dtype=float)
        total += np.einsum("...k,k->...", _survival_draws(ga, de2, k), np.exp(-rate * k))
    return total
