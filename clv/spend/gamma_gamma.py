"""Gamma-Gamma spend model: Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (the note; after
Colombo & Jiang 1999). Equation numbers are the note's.

Each transaction's value z ~ Gamma(p, nu), nu ~ Gamma(q, v) across customers; the mean m_x of a customer's x
repeat transactions is what we observe. Parameters p, q, v (v in currency units). It assumes that spend is
independent of the purchase process: the fit warns when frequency and spend correlate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special

from clv.compress import unique_rows
from clv.covariate_fit import CovariateOptions, by_covariate_pattern
from clv.data.rfm import validate_rfm
from clv.errors import DataError, plain_number
from clv.mle import Hessian, MleResult
from clv.model import MEAN_SPEND, FitResult, FittedModel, LikelihoodProblem, check_output
from clv.special import trigamma

__all__ = ["GammaGammaModel", "loglik_grad", "loglik_grad_rows"]

FloatArray = NDArray[np.float64]

#: |correlation| of frequency and spend among repeat buyers above which the independence assumption is doubtful
CORRELATION_WARNING = 0.3
#: q under this (when the fit has no standard errors) cannot be told from 1: see `GammaGammaModel._identification`
Q_NEAR_ONE = 1.1


def loglik_grad(
    params: FloatArray, x: FloatArray, m: FloatArray, log_m: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per-row log density of m_x given x (the note, Eq. 5) and its analytic gradient in (p, q, v):
    log f = lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(v + m x).
    Gamma and digamma terms depend on x alone: they are evaluated once per transaction count and gathered."""
    p, q, v = params
    index = x.astype(np.intp)
    k = np.arange(int(index.max(initial=0)) + 1, dtype=float)
    pk = p * k
    with np.errstate(divide="ignore", invalid="ignore"):
        log_k = np.where(k > 0, np.log(np.maximum(k, 1.0)), 0.0)
        gam_k = special.gammaln(pk + q) - special.gammaln(np.where(k > 0, pk, 1.0)) - special.gammaln(q)
        psi_q_k = special.digamma(pk + q)
        psi_p_k = special.digamma(np.where(k > 0, pk, 1.0))
    px = p * x
    log_m = np.log(m) if log_m is None else log_m
    mx = m * x
    log_vmx = np.log(v + mx)
    log_x = log_k[index]
    ll = gam_k[index] + q * np.log(v) + (px - 1.0) * log_m + px * log_x - (px + q) * log_vmx
    psi_pxq = psi_q_k[index]
    grad = np.empty((x.size, 3))
    grad[:, 0] = x * (psi_pxq - psi_p_k[index] + log_m + log_x - log_vmx)
    grad[:, 1] = psi_pxq - special.digamma(q) + np.log(v) - log_vmx
    grad[:, 2] = q / v - (px + q) / (v + mx)
    return ll, grad


def _row_count_terms(P: FloatArray, x: FloatArray) -> FloatArray:
    """The special-function parts of `loglik_grad_rows` per row, evaluated once per distinct (x, p, q) (the
    spend covariates move v only, so these are shared by the covariate patterns) and gathered; shape (4, rows):
    lnG(px+q) - lnG(px) - lnG(q), digamma(px+q), digamma(px) and digamma(q) (px = 1 where x = 0, as in
    `loglik_grad`)."""
    (k, p, q), inverse, _ = unique_rows(x, P[:, 0], P[:, 1])
    pk = p * k
    pk_safe = np.where(k > 0, pk, 1.0)
    terms = np.stack(
        [
            special.gammaln(pk + q) - special.gammaln(pk_safe) - special.gammaln(q),
            special.digamma(pk + q),
            special.digamma(pk_safe),
            special.digamma(q),
        ]
    )
    return np.asarray(terms[:, inverse], dtype=float)


def loglik_grad_rows(P: FloatArray, x: FloatArray, m: FloatArray) -> tuple[FloatArray, FloatArray]:
    """`loglik_grad` with every row's own parameters, P of shape (rows, 3) in (p, q, v) (spend covariates:
    v_i = v exp(g_s'z_i), Fader & Hardie's note on covariates in the Gamma-Gamma model): the log density of m_x
    given x (the note, Eq. 5) per row and its analytic gradient in that row's parameters, shape (rows, 3)."""
    P = np.asarray(P, dtype=float)
    p, q, v = P.T
    gam, psi_pxq, psi_px, psi_q = _row_count_terms(P, x)
    with np.errstate(divide="ignore"):
        log_x = np.where(x > 0, np.log(np.maximum(x, 1.0)), 0.0)
    px, log_m, mx = p * x, np.log(m), m * x
    log_vmx = np.log(v + mx)
    ll = gam + q * np.log(v) + (px - 1.0) * log_m + px * log_x - (px + q) * log_vmx
    grad = np.empty((x.size, 3))
    grad[:, 0] = x * (psi_pxq - psi_px + log_m + log_x - log_vmx)
    grad[:, 1] = psi_pxq - psi_q + np.log(v) - log_vmx
    grad[:, 2] = q / v - (px + q) / (v + mx)
    return ll, grad


class SpendStatistics:
    """The weighted mean of `loglik_grad`'s log density over rows, reduced to statistics of the rows.

    With L_i = ln(v + m_i x_i), the mean log-likelihood is
    sum_k W_k [lnG(pk+q) - lnG(pk) - lnG(q)] + q ln v + p (A + C) - B - p sum w x L - q sum w L,
    where W_k is the weight of the rows with x = k, A = sum w x ln m, B = sum w ln m, C = sum w x ln x
    (the weights sum to 1). Only L and 1 / (v + m x) change with the parameters: an evaluation is a handful of
    passes over the rows instead of the two dozen that per-row values and gradients take.
    """

    def __init__(self, x: FloatArray, m: FloatArray, weights: FloatArray) -> None:
        index = x.astype(np.intp)
        self.k = np.arange(int(index.max(initial=0)) + 1, dtype=float)
        self.w_k = np.bincount(index, weights=weights, minlength=self.k.size)
        self.w = weights
        self.wx = weights * x
        self.mx = m * x
        log_m = np.log(m)
        with np.errstate(divide="ignore"):
            log_x = np.where(x > 0, np.log(np.maximum(x, 1.0)), 0.0)
        self.constant_p = float(self.wx @ log_m + self.wx @ log_x)
        self.constant = -float(weights @ log_m)
        self.total = float(weights.sum())

    def __call__(self, params: FloatArray) -> tuple[float, FloatArray]:
        """The mean log-likelihood and its gradient in (p, q, v)."""
        p, q, v = params
        pk, k, w_k = p * self.k, self.k, self.w_k
        pk_safe = np.where(k > 0, pk, 1.0)
        log_vmx = np.log(v + self.mx)
        inv = 1.0 / (v + self.mx)
        wx_l, w_l = float(self.wx @ log_vmx), float(self.w @ log_vmx)
        gam = special.gammaln(pk + q) - special.gammaln(pk_safe)
        psi_pkq = special.digamma(pk + q)
        ll = w_k @ gam - self.total * special.gammaln(q) + q * np.log(v) * self.total
        ll += p * self.constant_p + self.constant - p * wx_l - q * w_l
        grad = np.array(
            [
                w_k @ (k * (psi_pkq - special.digamma(pk_safe))) + self.constant_p - wx_l,
                w_k @ psi_pkq - self.total * special.digamma(q) + self.total * np.log(v) - w_l,
                self.total * q / v - p * float(self.wx @ inv) - q * float(self.w @ inv),
            ]
        )
        return float(ll), grad

    def hessian(self, params: FloatArray, _weights: FloatArray | None = None) -> FloatArray:
        """The Hessian of the mean log-likelihood, from the per-row second derivatives of `loglik_grad`'s density:
        d2/dp2 = x^2 (trigamma(px+q) - trigamma(px)), d2/dpdq = x trigamma(px+q), d2/dpdv = -x/(v+mx),
        d2/dq2 = trigamma(px+q) - trigamma(q), d2/dqdv = 1/v - 1/(v+mx), d2/dv2 = -q/v^2 + (px+q)/(v+mx)^2,
        with the terms in x alone summed per purchase count."""
        p, q, v = params
        k, w_k, total = self.k, self.w_k, self.total
        tri_pkq = trigamma(p * k + q)
        tri_pk = trigamma(np.where(k > 0, p * k, 1.0))
        inv = 1.0 / (v + self.mx)
        inv2 = inv * inv
        hess = np.empty((3, 3))
        hess[0, 0] = w_k @ (k * k * (tri_pkq - tri_pk))
        hess[0, 1] = hess[1, 0] = w_k @ (k * tri_pkq)
        hess[0, 2] = hess[2, 0] = -float(self.wx @ inv)
        hess[1, 1] = w_k @ tri_pkq - float(trigamma(q)) * total
        hess[1, 2] = hess[2, 1] = total / v - float(self.w @ inv)
        hess[2, 2] = -q / v**2 * total + p * float(self.wx @ inv2) + q * float(self.w @ inv2)
        return hess


class SpendLikelihood:
    """The optimiser's view of Gamma-Gamma (`clv.mle.Likelihood`): the weighted mean log-likelihood of any rows
    from their `SpendStatistics`, and its analytic Hessian."""

    log_bounds = None

    def __init__(self, x: FloatArray, m: FloatArray, weights: FloatArray) -> None:
        self.x, self.m, self.weights = x, m, weights
        self._all = SpendStatistics(x, m, weights / weights.sum())

    def on_rows(self, rows: NDArray[np.intp] | None, weights: FloatArray) -> SpendStatistics:
        if rows is None:
            return self._all if np.array_equal(weights, self._all.w) else SpendStatistics(self.x, self.m, weights)
        return SpendStatistics(self.x[rows], self.m[rows], weights)

    def mean_hessian(self, params: FloatArray, weights: FloatArray, rows: NDArray[np.intp] | None = None) -> FloatArray:
        return self.on_rows(rows, weights).hessian(params)


#: whole-number weights below this multiply a float exactly in two halves (Veltkamp's split, 26 bits each)
_EXACT_WEIGHT = float(2**26)


def weighted_mean(values: FloatArray, weights: FloatArray) -> float:
    """The weighted mean, its sum correctly rounded (math.fsum) when the weights are whole numbers under 2^26
    (counts of customers): then rows weighted by counts and the rows repeated give the same float, so a fit on
    distinct rows with counts starts from the very scale of the fit on the customers. Other weights: np.average."""
    w = np.asarray(weights, dtype=float)
    whole = bool(np.all(w == np.floor(w)) and np.all((w >= 0) & (w < _EXACT_WEIGHT)))
    if not whole:
        return float(np.average(values, weights=w))
    v = np.asarray(values, dtype=float)
    t = v * 134217729.0  # 2^27 + 1: v = high + low exactly, each with at most 26 significant bits
    high = t - (t - v)
    low = v - high
    total = math.fsum(np.concatenate([high * w, low * w]))  # each product exact: the sum is the exact sum rounded
    return total / math.fsum(w)


def _weighted_correlation(x: FloatArray, m: FloatArray, w: FloatArray) -> float:
    """Pearson's correlation of x and m over rows that stand for `w` buyers each (as np.corrcoef over the buyers)."""
    dx, dm = x - np.average(x, weights=w), m - np.average(m, weights=w)
    return float(np.sum(w * dx * dm) / np.sqrt(np.sum(w * dx * dx) * np.sum(w * dm * dm)))


class GammaGammaModel(FittedModel):
    """Gamma-Gamma model of average transaction value. Fit on customers with frequency > 0.

    Example:
        >>> from clv import GammaGammaModel
        >>> import pandas as pd
        >>> rfm = pd.DataFrame({"frequency": [2, 0], "recency": [30.43, 0.0], "T": [38.86, 38.86],
        ...                     "monetary_value": [22.345, 0.0]})
        >>> model = GammaGammaModel.from_params(p=6.25, q=3.74, v=15.44)
        >>> [round(float(v), 2) for v in model.expected_spend(rfm)]
        [24.66, 35.22]
    """

    name: ClassVar[str] = "gamma_gamma"
    param_names: ClassVar[tuple[str, ...]] = ("p", "q", "v")
    #: covariates on spend move the scale: v_i = v exp(g_s'z_i) (Fader & Hardie, "Gamma-Gamma Model of Monetary
    #: Value", with customer-level covariates on the gamma mixing distribution's scale), so a customer's expected
    #: spend p v_i / (q - 1) is exp(g_s'z_i) times the reference customer's
    covariate_effects: ClassVar[dict[str, tuple[tuple[str, float], ...]]] = {"spend": (("v", 1.0),)}

    def __init__(
        self,
        *,
        spend_covariates: Sequence[str] | None = None,
        covariate_penalty: Mapping[str, float] | None = None,
        categorical: Mapping[str, str | None] | None = None,
        standardise: bool = False,
        starts: int = 4,
        seed: int = 42,
        max_iter: int = 2000,
    ) -> None:
        """Options only; `spend_covariates` are columns of the frame given to `fit` and `expected_spend` (the other
        covariate options as on the purchase models, with the process "spend")."""
        options = CovariateOptions(
            processes={"spend": tuple(spend_covariates)} if spend_covariates else {},
            penalty=dict(covariate_penalty or {}),
            categorical=dict(categorical or {}),
            standardise=standardise,
        )
        super().__init__(starts=starts, seed=seed, max_iter=max_iter, covariates=options)

    def _row_loglik_grad(self, P: FloatArray, *columns: FloatArray) -> tuple[FloatArray, FloatArray]:
        """`loglik_grad_rows`: each row with its own (p, q, v)."""
        x, m = columns
        return loglik_grad_rows(P, x, m)

    def _hessian_function(self, x: FloatArray, m: FloatArray) -> Hessian | None:
        """(params, weights) -> the weighted Hessian of these rows (`SpendStatistics.hessian`, which is of the mean
        with weights summing to 1: scaled back by their sum)."""

        def hessian(params: FloatArray, weights: FloatArray) -> FloatArray:
            total = float(weights.sum())
            return total * SpendStatistics(x, m, weights / total).hessian(params)

        return hessian

    def _loglik_grad(self, params: FloatArray, x: FloatArray, m: FloatArray) -> tuple[FloatArray, FloatArray]:
        """`loglik_grad` at one parameter set (the scalar function the covariate fit calls per pattern)."""
        return loglik_grad(params, x, m)

    def _repeat_buyers(self, rfm: pd.DataFrame) -> tuple[FloatArray, FloatArray, int]:
        validate_rfm(rfm, need_monetary=True, times=False)  # the fit reads frequency and spend alone
        x = rfm["frequency"].to_numpy(dtype=float)
        m = rfm["monetary_value"].to_numpy(dtype=float)
        keep = (x > 0) & (m > 0)  # a mean spend of 0 (every repeat purchase returned) has density 0: not fitted
        return x[keep], m[keep], int((~keep).sum())

    def start_point(self) -> FloatArray:
        """A central starting point, for spend rescaled to mean 1."""
        return np.array([2.0, 2.0, 1.0])

    def likelihood_problem(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> LikelihoodProblem:
        """The repeat buyers' mean spends with weights, spend rescaled by its weighted mean (so v is near 1),
        as both estimation methods use them."""
        x, m, _ = self._repeat_buyers(rfm)
        w_all = np.ones(len(rfm)) if weights is None else np.asarray(weights, dtype=float)
        keep = (rfm["frequency"].to_numpy() > 0) & (rfm["monetary_value"].to_numpy() > 0)
        w = np.asarray(w_all[keep], dtype=float)
        n_buyers = x.size if weights is None else round(float(w.sum()))  # a row may stand for several buyers
        if n_buyers < 3:
            raise DataError(f"Gamma-Gamma needs at least 3 customers with repeat purchases; the data has {n_buyers}")
        scale = weighted_mean(m, w)
        sm = m / scale
        if self.covariate_options.active:
            buyers = rfm.loc[keep]
            return self._covariate_problem(buyers, (x, sm), (x, m), w, np.array([1.0, 1.0, scale]), ("x", "m"))
        # Buyers with the same (x, m) have the same log density (Eq. 5 reads nothing else): the rows are the
        # distinct pairs, weighted by how many buyers share each (exact; spends in cents repeat, most of all at
        # small x, so the fit's cost grows with the distinct pairs, not with the buyers).
        (xu, mu), inverse, _ = unique_rows(x, m)
        wu = np.bincount(inverse, weights=w, minlength=xu.size).astype(float)
        smu = mu / scale
        return LikelihoodProblem(
            param_names=self.param_names,
            likelihood=SpendLikelihood(xu, smu, wu),
            factor=np.array([1.0, 1.0, scale]),
            unscaled=lambda p: loglik_grad(p, xu, mu),
            n_customers=n_buyers,
            n_unique=int(xu.size),
            model_name=self.name,
            rows={"x": xu, "m": smu},
        )

    def fit(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> Self:
        """Maximum-likelihood fit on the repeat buyers (frequency > 0) with a mean spend above 0, spend rescaled
        internally; `zero_spend_buyers_` counts the repeat buyers left out because all they bought again was
        returned (their expected spend is still predicted, from x and m = 0)."""
        problem = self.likelihood_problem(rfm, weights)
        x, m, _ = self._repeat_buyers(rfm)
        frequency = rfm["frequency"].to_numpy()
        zero_spend = (frequency > 0) & (rfm["monetary_value"].to_numpy() == 0)
        if weights is None:
            self.zero_spend_buyers_ = int(zero_spend.sum())
            correlation = float(np.corrcoef(x, m)[0, 1]) if np.ptp(x) > 0 and np.ptp(m) > 0 else 0.0
            mean_spend, buyers = float(np.mean(m)), int(x.size)
        else:  # rows that stand for `weights` buyers each (distinct (x, m) pairs): the same figures, weighted
            w_all = np.asarray(weights, dtype=float)
            w = w_all[(frequency > 0) & (rfm["monetary_value"].to_numpy() > 0)]
            self.zero_spend_buyers_ = round(float(w_all[zero_spend].sum()))
            correlation = _weighted_correlation(x, m, w) if np.ptp(x) > 0 and np.ptp(m) > 0 else 0.0
            mean_spend, buyers = float(np.average(m, weights=w)), round(float(w.sum()))
        self.frequency_spend_correlation_ = correlation
        self._fit_problem(problem)
        p, q, v = self._p()
        if self.covariates_ is not None:  # the mean over the buyers' own scales v_i
            v = float(np.mean(self.row_params(rfm.loc[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)])[:, 2]))
        self.assumption_checks_ = {
            # independence of spend and frequency (the note, Section 2): near 0 is what the model assumes
            "frequency_spend_correlation": self.frequency_spend_correlation_,
            # the mean of the buyers' mean spends, observed and implied (E[Z] = p v / (q - 1), the note, Eq. 2)
            "mean_spend_observed": mean_spend,
            "mean_spend_model": p * v / (q - 1.0) if q > 1.0 else None,
            "buyers_fitted": buyers,
        }
        return self

    def summary(self) -> dict[str, Any]:
        """The fit's summary, with the repeat buyers left out for a mean spend of 0 and the assumption checks."""
        return super().summary() | {
            "zero_spend_buyers": getattr(self, "zero_spend_buyers_", None),
            "assumption_checks": getattr(self, "assumption_checks_", None),
        }

    def _identification(self, found: MleResult, result: FitResult) -> dict[str, str]:
        """The population mean spend p v / (q - 1) (the note, Eq. 2) exists only for q > 1 and is not identified
        when the data cannot tell q from 1: q <= 1, or q - 1 within two standard errors of 0 (with no standard
        errors, q under `Q_NEAR_ONE`). The spend distribution's tail is then too heavy for its mean to be bounded."""
        q = result.params["q"]
        se = (result.standard_errors or {}).get("q")
        near = q <= 1.0 or (q - 1.0 < 2.0 * se if se is not None else q < Q_NEAR_ONE)
        if not near:
            return {}
        error = f" (standard error {plain_number(se, 2)})" if se is not None else ""
        why = f"q = {q:.4g}{error} <= 1" if q <= 1.0 else f"q = {q:.4g}{error} cannot be told from 1"
        return {
            MEAN_SPEND: (
                f"{type(self).__name__}: {why}: the customers' spend is so heavy-tailed that the mean spend "
                "p v / (q - 1) is not identified (q -> 1); the expected spend of customers with few purchases is "
                "not reliable (cap or exclude the largest buyers for the spend model: spend.outliers)"
            )
        }

    def _assumption_warnings(self) -> list[str]:
        out = []
        corr = getattr(self, "frequency_spend_correlation_", 0.0)
        if abs(corr) > CORRELATION_WARNING:
            out.append(
                f"frequency and spend correlate ({corr:.2f}, above {CORRELATION_WARNING}): the model assumes them "
                "independent, so its spend predictions are biased"
            )
        return out

    def population_mean_spend(self) -> float:
        """E[Z] = p v / (q - 1) for a customer with no repeat purchase (the note, Eq. 2, averaged over nu); with
        spend covariates, of the reference pattern (every covariate 0): `expected_spend` gives each customer's."""
        p, q, v = self._p()
        if q <= 1.0:
            raise DataError(f"the mean spend is infinite when q <= 1 (q = {q:.4g})")
        return p * v / (q - 1.0)

    @by_covariate_pattern
    def expected_spend(self, rfm: pd.DataFrame) -> FloatArray:
        """E[Z | x, m_x] = (p (v + x m_x)) / (p x + q - 1) (the note, Eq. 6); for x = 0 it is the population mean
        p v / (q - 1) (see `spend_is_population_mean`)."""
        p, q, v = self._p()
        validate_rfm(rfm, need_monetary=True)
        x = rfm["frequency"].to_numpy(dtype=float)
        m = rfm["monetary_value"].to_numpy(dtype=float)
        m = np.where(x > 0, m, 0.0)
        if q <= 1.0 and np.any(x == 0):
            raise DataError(
                f"expected spend is infinite for customers without repeat purchases when q <= 1 (q = {q:.4g})"
            )
        value = p * (v + x * m) / (p * x + q - 1.0)
        return check_output(value, "expected spend", rfm)

    @staticmethod
    def spend_is_population_mean(rfm: pd.DataFrame) -> NDArray[np.bool_]:
        """True for the rows whose expected spend is the population mean (no repeat purchase to learn from)."""
        return rfm["frequency"].to_numpy() == 0

    def loglik(self, rfm: pd.DataFrame) -> FloatArray:
        """Log density of each repeat buyer's mean spend."""
        validate_rfm(rfm, need_monetary=True)
        buyers = rfm.loc[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
        return self._buyers_loglik(buyers)

    @by_covariate_pattern
    def _buyers_loglik(self, buyers: pd.DataFrame) -> FloatArray:
        x, m, _ = self._repeat_buyers(buyers)
        ll, _ = loglik_grad(np.array(self._p()), x, m)
        return ll
