"""The predictive band of the portfolio's totals: purchases (and revenue) per future month and cumulated over the
horizon, from parameter draws and the purchase process's noise.

- Parameter draws: a posterior's (Bayesian fits), or for a maximum-likelihood fit draws of the log-parameters
  from their asymptotic normal N(log theta_hat, I(log theta_hat)^-1), the observed information being minus the
  Hessian of the total log-likelihood in the log-parameters (the MLE's asymptotic normality and invariance:
  Casella & Berger 2002, Thms. 10.1.6 and 10.1.12; the delta method carries it to the log scale). A parameter the
  search does not move (CNBD-k's Erlang order k) is kept at its value.
- Per draw d, the cohort's expected purchases in month k (exact differences of the conditional expectation, as
  `clv.value`) and revenue (each customer's expected spend under the draw's Gamma-Gamma parameters, Fader,
  Hardie & Lee 2005b, Eq. 6, times the purchases: spend and purchases are independent in that model).
- Process noise (the purchases actually made, and their amounts, given the parameters): customers are
  independent given the parameters, so the total's process variance is the sum of the customers' process
  variances, each Var(N) - Var(E[N | theta]) over the draws (the law of total variance) from one simulated
  count per customer and draw at each month end (`simulate_purchases_draws`), and for revenue the sum of the
  simulated count's spends, (v + x m) G1 / G2 with G1 ~ Gamma(N p), G2 ~ Gamma(p x + q) (the Gamma-Gamma
  posterior of the customer's spend rate, as `clv.bayes.predict`). The total is then its expectation under
  the draw plus a normal term with that variance (the central limit theorem over many customers), and the
  band is the central quantiles of it over the draws. A month's process variance is taken as the difference of
  the cumulative ones at its ends: exact for independent increments, an upper bound when the increments of a
  customer's counts are positively correlated (a shared purchase rate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.compress import unique_rows
from clv.model import FittedModel
from clv.purchase.base import PurchaseModel, rfm_arrays

__all__ = ["KINDS", "PredictiveBand", "asymptotic_draws", "predictive_band", "usable_spend_draws"]

FloatArray = NDArray[np.float64]
#: the totals a band covers, in this order
KINDS = ("purchases", "revenue")
_BLOCK_FLOATS = 2_000_000  # floats per (draws x histories x points) array of a block of histories


def asymptotic_draws(model: FittedModel, rfm: pd.DataFrame, n: int, rng: np.random.Generator) -> tuple[FloatArray, str]:
    """n draws (rows, in the model's `param_names` order) of a maximum-likelihood fit's parameters from the
    asymptotic normal of their logs (module docstring), on the data it was fitted to; and a note, empty unless
    the information matrix is not positive definite (then every draw is the estimate: no parameter uncertainty)."""
    problem = model.likelihood_problem(rfm)
    names = problem.param_names
    full = np.array([model.params_[name] for name in model.param_names], dtype=float)
    draws = np.tile(full, (n, 1))
    theta = np.array([model.params_[name] for name in names], dtype=float)
    scaled = theta / problem.factor
    _, gradient = problem.total(scaled)
    # d2 l / du_i du_j at u = log s: s_i s_j H_ij + delta_ij s_i g_i
    hessian_u = problem.total_hessian(scaled) * np.outer(scaled, scaled) + np.diag(gradient * scaled)
    try:
        chol = np.linalg.cholesky(np.linalg.inv(-(hessian_u + hessian_u.T) / 2.0))
    except np.linalg.LinAlgError:
        return draws, (
            f"{model.name}: the fit's information matrix is not positive definite (a parameter at a limit of the "
            "model): its band has no parameter uncertainty, only the purchase process's"
        )
    if not np.all(np.isfinite(chol)):
        return draws, f"{model.name}: the fit's covariance is not finite: its band has no parameter uncertainty"
    logs = np.log(theta) + rng.standard_normal((n, theta.size)) @ chol.T
    columns = [model.param_names.index(name) for name in names]
    draws[:, columns] = np.exp(np.clip(logs, -700.0, 700.0))
    return draws, ""


def usable_spend_draws(draws: FloatArray) -> tuple[FloatArray, int]:
    """Gamma-Gamma draws (p, q, v) with q > 1 (the mean spend is infinite otherwise), and how many were not."""
    keep = draws[:, 1] > 1.0
    return draws[keep], int((~keep).sum())


@dataclass(frozen=True)
class PredictiveBand:
    """Per kind ("purchases", and "revenue" with a spend model): the mean over the draws of the expected total
    per month, and the central band at `level` of the actual total per month and cumulated to each month's end
    (arrays of one value per month); `process_sd` is the process noise's sd of the cumulated totals."""

    level: float
    draws: int
    expected: dict[str, FloatArray]
    month_lo: dict[str, FloatArray]
    month_hi: dict[str, FloatArray]
    cumulative_lo: dict[str, FloatArray]
    cumulative_hi: dict[str, FloatArray]
    process_sd: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if k in self.expected)


@dataclass
class _Sums:
    """Sums over histories, filled block by block: per draw and month the expected totals, per month end the
    process variance of the cumulated totals."""

    expected: dict[str, FloatArray]
    variance: dict[str, FloatArray]


def _histories(rfm: pd.DataFrame, has_spend: bool) -> tuple[list[FloatArray], FloatArray, FloatArray, FloatArray]:
    """Unique (x, t_x, T) with, per history, its customers' count, sum of mean spends and of their squares."""
    x, t_x, T = rfm_arrays(rfm)
    (ux, ut, uT), inverse, counts = unique_rows(x, t_x, T)
    m = np.where(x > 0, rfm["monetary_value"].to_numpy(dtype=float), 0.0) if has_spend else np.zeros(x.size)
    s1 = np.bincount(inverse, weights=m, minlength=ux.size)
    s2 = np.bincount(inverse, weights=m * m, minlength=ux.size)
    return [ux, ut, uT], counts.astype(float), s1.astype(float), s2.astype(float)


def _spread(z: FloatArray, v: FloatArray, x: FloatArray, c: FloatArray, s1: FloatArray, s2: FloatArray) -> FloatArray:
    """Per history, the sum over its customers i of Var_d((v_d + x m_i) z_d) over the draws d (columns of z and v,
    (draws, histories)), from the customers' count c and sums of m and m^2 (s1, s2)."""
    zz = z * z
    second = (zz * v * v).mean(axis=0) * c + 2.0 * x * s1 * (zz * v).mean(axis=0) + x * x * s2 * zz.mean(axis=0)
    ez, evz = z.mean(axis=0), (v * z).mean(axis=0)
    first = c * evz * evz + 2.0 * x * s1 * evz * ez + x * x * s2 * ez * ez
    return np.asarray(second - first, dtype=float)


def _block(
    cls: type[PurchaseModel],
    purchase: FloatArray,
    spend: FloatArray | None,
    history: tuple[FloatArray, ...],
    edges: FloatArray,
    rng: np.random.Generator,
    sums: _Sums,
) -> None:
    """One block of histories: add its expected monthly totals per draw and its process variances to `sums`."""
    x, t_x, T, c, s1, s2 = history
    alive, group, curve = cls.alive_curve_draws(purchase, x, t_x, T, edges)
    expected = alive[:, :, None] * curve[:, group, :]  # (draws, histories, edges): E[X(t)] per customer
    per_month = np.diff(expected, axis=-1)
    sums.expected["purchases"] += np.einsum("h,dhm->dm", c, per_month)
    if spend is not None:
        p, q, v = (spend[:, j : j + 1] for j in range(3))
        rate = p / (p * x + q - 1.0)  # E[Z] = rate (v + x m), Eq. 6 of Fader, Hardie & Lee 2005b
        spend_sum = rate * (c * v + x * s1)  # sum over the history's customers of E[Z_i]
        sums.expected["revenue"] += np.einsum("dh,dhm->dm", spend_sum, per_month)
    for k in range(1, edges.size):
        n = cls.simulate_purchases_draws(purchase, x, t_x, T, float(edges[k]), rng, p_alive=alive)
        e = expected[:, :, k]
        sums.variance["purchases"][k - 1] += float(c @ np.maximum(n.var(axis=0) - e.var(axis=0), 0.0))
        if spend is not None:
            ratio = _spend_ratio(n, x, spend, rng)
            process = _spread(ratio, v, x, c, s1, s2) - _spread(rate * e, v, x, c, s1, s2)
            sums.variance["revenue"][k - 1] += float(np.maximum(process, 0.0).sum())


def _spend_ratio(n: FloatArray, x: FloatArray, spend: FloatArray, rng: np.random.Generator) -> FloatArray:
    """G1 / G2 per draw and history (0 without purchases): the revenue of N purchases of a customer with mean spend
    m is (v + x m) G1 / G2 (module docstring)."""
    p = np.broadcast_to(spend[:, 0:1], n.shape)
    q = np.broadcast_to(spend[:, 1:2], n.shape)
    ratio = np.zeros(n.shape)
    buying = n > 0
    g1 = rng.gamma(n[buying] * p[buying])
    g2 = rng.gamma(p[buying] * np.broadcast_to(x, n.shape)[buying] + q[buying])
    ratio[buying] = g1 / g2
    return ratio


def predictive_band(
    cls: type[PurchaseModel],
    purchase: FloatArray,
    spend: FloatArray | None,
    rfm: pd.DataFrame,
    edges: FloatArray,
    level: float,
    rng: np.random.Generator,
) -> PredictiveBand:
    """The band at `level` of the cohort's purchases (and revenue, with spend draws: rows (p, q, v), paired with
    the purchase draws by position) in each month (edges in time units from the calibration end, 0 first) and
    cumulated to each month end (module docstring)."""
    if spend is not None and len(spend) != len(purchase):
        raise ValueError("the purchase and spend draws must be paired: the same number of rows")
    kinds = KINDS if spend is not None else KINDS[:1]
    d, months = len(purchase), edges.size - 1
    sums = _Sums({k: np.zeros((d, months)) for k in kinds}, {k: np.zeros(months) for k in kinds})
    (ux, ut, uT), c, s1, s2 = _histories(rfm, spend is not None)
    step = max(1, _BLOCK_FLOATS // (d * edges.size))
    for a in range(0, ux.size, step):
        rows = slice(a, a + step)
        _block(cls, purchase, spend, (ux[rows], ut[rows], uT[rows], c[rows], s1[rows], s2[rows]), edges, rng, sums)
    return _summarise(sums, level, rng)


def _summarise(sums: _Sums, level: float, rng: np.random.Generator) -> PredictiveBand:
    """Central quantiles at `level` over the draws of the expected totals plus the process noise."""
    tails = np.array([(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    out: dict[str, dict[str, FloatArray]] = {n: {} for n in ("expected", "mlo", "mhi", "clo", "chi", "sd")}
    d = 0
    for kind, monthly in sums.expected.items():
        d = monthly.shape[0]
        z = rng.standard_normal((d, 1))
        cumulative_var = np.maximum.accumulate(sums.variance[kind])  # a count's variance grows with the horizon
        month_var = np.diff(cumulative_var, prepend=0.0)
        month = np.quantile(monthly + np.sqrt(month_var) * z, tails, axis=0)
        total = np.quantile(np.cumsum(monthly, axis=1) + np.sqrt(cumulative_var) * z, tails, axis=0)
        out["expected"][kind] = monthly.mean(axis=0)
        out["mlo"][kind], out["mhi"][kind] = np.maximum(month[0], 0.0), month[1]
        out["clo"][kind], out["chi"][kind] = np.maximum(total[0], 0.0), total[1]
        out["sd"][kind] = np.sqrt(cumulative_var)
    return PredictiveBand(level, d, out["expected"], out["mlo"], out["mhi"], out["clo"], out["chi"], out["sd"])
