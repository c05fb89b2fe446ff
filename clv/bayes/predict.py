"""Posterior predictions: per-customer means and intervals, and the portfolio's revenue distribution.

Every quantity is computed per posterior draw on unique (frequency, recency, T) histories, a block of them at
a time, and summarised before the next block: memory is (block x draws), never customers x draws (the CLV draws
that tier probabilities need are written to a memory-mapped file when they are large).

- Credible intervals (parameter uncertainty): P(alive), expected purchases, expected spend and CLV per draw,
  then their mean and central quantiles.
- Predictive intervals (parameters and the purchase process): one simulated count of purchases per draw from
  `simulate_purchases`; revenue given N purchases is a sum of N Gamma(p, nu) spends with
  nu ~ Gamma(p x + q, v + x m) (the Gamma-Gamma posterior, Fader & Hardie 2013, Eq. 4), i.e.
  (v + x m) G1 / G2 with G1 ~ Gamma(N p), G2 ~ Gamma(p x + q). Customers who share a history share the draws of
  G1 / G2 (common random numbers): each customer's predictive distribution is exact, which is what an interval
  per customer needs; sums over customers do not use them.
- Portfolio: per draw, the expected purchases and revenue of every future month summed over customers (exact per
  draw: a history's total spend is p (n v + x sum m) / (p x + q - 1)), so the P10 / P50 / P90 of a total are
  quantiles of the total, not sums of quantiles. The predictive total over the horizon adds the purchase
  process's noise: customers are independent given the parameters, so it is the expected total plus a normal
  term whose variance is the sum over customers of their process variance (the predictive variance minus the
  variance of the expectation, per customer), which the central limit theorem makes accurate for many customers.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.bayes.fit import Posterior
from clv.compress import unique_rows
from clv.errors import ClvError
from clv.purchase.base import PurchaseModel, rfm_arrays
from clv.units import TimeUnit, continuous_rate_per_unit
from clv.value import discounted_increments, month_edges

__all__ = ["BayesValue", "posterior_predict", "predictive_purchases", "value_posterior"]

FloatArray = NDArray[np.float64]
_BLOCK = 20_000  # unique histories (and customers) per block
_IN_MEMORY_BYTES = 256 * 2**20  # CLV draws larger than this go to a memory-mapped file


def _bounds(level: float) -> tuple[float, float]:
    return (1.0 - level) / 2.0, (1.0 + level) / 2.0


def _summaries(values: FloatArray, level: float, discrete: bool = False) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Mean, lower and upper bound of each row over the draws (columns). Counts use the inverted CDF so that
    their bounds are counts."""
    lo, hi = _bounds(level)
    method = "inverted_cdf" if discrete else "linear"
    q = np.quantile(values, np.array([lo, hi]), axis=1, method=method)  # type: ignore[call-overload]
    return values.mean(axis=1), q[0], q[1]


def _pair(purchase: Posterior, spend: Posterior | None, n: int, seed: int) -> tuple[FloatArray, FloatArray | None]:
    """The same number of draws from each posterior (independent fits: pairing by position is a joint draw)."""
    p_draws = purchase.subsample(n, seed)
    if spend is None:
        return p_draws, None
    s_draws = spend.subsample(n, seed + 1)
    k = min(len(p_draws), len(s_draws))
    return p_draws[:k], s_draws[:k]


def _model(cls: type[PurchaseModel], posterior: Posterior, row: FloatArray) -> PurchaseModel:
    return cls.from_params(**dict(zip(posterior.param_names, map(float, row), strict=True)))


def posterior_predict(
    cls: type[PurchaseModel],
    posterior: Posterior,
    rfm: pd.DataFrame,
    method: str,
    level: float = 0.9,
    n_draws: int = 1000,
    seed: int = 0,
    **kwargs: Any,
) -> pd.DataFrame:
    """Posterior mean and central credible interval of any per-row prediction of the model (e.g.
    `probability_alive`, `expected_purchases` with horizon=...), computed per draw on unique histories.

    Example:
        >>> # frame = posterior_predict(BetaGeoModel, posterior, rfm, "expected_purchases", horizon=52)
        >>> # frame.columns: mean, lo, hi
    """
    x, t_x, T = rfm_arrays(rfm)
    (ux, ut, uT), inverse, _ = unique_rows(x, t_x, T)
    draws = posterior.subsample(n_draws, seed)
    out = np.empty((3, ux.size))
    for start in range(0, ux.size, _BLOCK):
        end = min(start + _BLOCK, ux.size)
        frame = pd.DataFrame({"frequency": ux[start:end], "recency": ut[start:end], "T": uT[start:end]})
        values = np.column_stack([getattr(_model(cls, posterior, row), method)(frame, **kwargs) for row in draws])
        out[:, start:end] = _summaries(values, level)
    return pd.DataFrame({"mean": out[0][inverse], "lo": out[1][inverse], "hi": out[2][inverse]}, index=rfm.index)


@dataclass
class BayesValue:
    """Per-customer means and intervals, the monthly forecast with its distribution, and horizon totals."""

    customers: pd.DataFrame
    forecast: pd.DataFrame
    totals: dict[str, Any]
    #: CLV per draw of each value row (customers sharing a history and mean spend); customer i is row clv_index[i]
    clv_draws: NDArray[np.float32]
    clv_index: NDArray[np.intp]
    level: float
    n_draws: int
    #: posterior-mean monthly schedule per history: revenue of customer i in month k is
    #: schedule_base[h_i, k] + m_i * schedule_slope[h_i, k] (purchases when there is no spend model)
    schedule_base: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    schedule_slope: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    history: NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    mean_spend: FloatArray = field(default_factory=lambda: np.zeros(0))
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def schedule(self) -> pd.DataFrame:
        """Posterior mean of expected revenue (purchases without a spend model) per customer and future month."""
        values = self.schedule_base[self.history] + self.mean_spend[:, None] * self.schedule_slope[self.history]
        frame = pd.DataFrame(values, columns=[f"month_{k + 1}" for k in range(values.shape[1])])
        frame.insert(0, "customer_id", self.customers["customer_id"].to_numpy())
        return frame


def _clv_storage(customers: int, draws: int) -> tuple[NDArray[np.float32], tempfile.TemporaryDirectory[str] | None]:
    if customers * draws * 4 <= _IN_MEMORY_BYTES:
        return np.empty((customers, draws), dtype=np.float32), None
    tmp = tempfile.TemporaryDirectory(prefix="clv-draws-")
    path = Path(tmp.name) / "clv_draws.npy"
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(customers, draws)), tmp


class _Accumulator:
    """Per-customer outputs, filled block by block."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.columns: dict[str, FloatArray] = {}

    def put(self, rows: NDArray[np.intp], name: str, values: tuple[FloatArray, FloatArray, FloatArray]) -> None:
        for suffix, value in zip(("", "_lo", "_hi"), values, strict=True):
            column = self.columns.setdefault(name + suffix, np.full(self.n, np.nan))
            column[rows] = value

    def expand(self, index: NDArray[np.intp]) -> None:
        """From value rows to customers."""
        self.columns = {k: v[index] for k, v in self.columns.items()}


def value_posterior(
    cls: type[PurchaseModel],
    purchase: Posterior,
    spend: Posterior | None,
    rfm: pd.DataFrame,
    horizon: float,
    annual_discount_rate: float,
    margin: float,
    unit: TimeUnit,
    level: float = 0.9,
    n_draws: int = 1000,
    seed: int = 0,
) -> BayesValue:
    """Per-customer posterior means and intervals of P(alive), expected purchases, expected spend and CLV;
    predictive intervals of purchases and revenue over the horizon; the monthly forecast's distribution; and
    the horizon totals. Units as in `clv.value.VALUE_UNITS`."""
    x, t_x, T = rfm_arrays(rfm)
    (ux, ut, uT), inverse = _sorted_histories(x, t_x, T)
    p_draws, s_draws = _pair(purchase, spend, n_draws, seed)
    n = len(p_draws)
    m_all = np.where(x > 0, rfm["monetary_value"].to_numpy(dtype=float), 0.0) if spend is not None else np.zeros(x.size)
    counts = np.bincount(inverse, minlength=ux.size).astype(float)
    spend_sums = np.bincount(inverse, weights=m_all, minlength=ux.size) if spend is not None else None
    # Value rows: customers with the same history and mean spend have the same predictions (all customers without
    # repeat purchases of a history share one); per-customer work is done once per value row.
    (vh, vm), vinv, v_counts = unique_rows(inverse.astype(float), m_all)
    vh_index: NDArray[np.intp] = vh.astype(np.intp)
    m = vm if spend is not None else None
    order = np.argsort(vh_index, kind="stable")
    first = np.searchsorted(vh_index[order], np.arange(ux.size + 1))  # history u: value rows order[first[u]:first[u+1]]
    vx = ux[vh_index]
    delta = continuous_rate_per_unit(annual_discount_rate, unit)
    edges = month_edges(horizon, unit)
    points = np.concatenate([edges, (edges[:-1] + edges[1:]) / 2.0])
    months = edges.size - 1
    monthly = {"purchases": np.zeros((n, months)), "revenue": np.zeros((n, months)), "profit": np.zeros((n, months))}
    process_var = {"purchases": 0.0, "revenue": 0.0}
    schedule = np.zeros((2, ux.size, months))
    acc = _Accumulator(vh_index.size)
    clv_draws, tmp = _clv_storage(vh_index.size, n)
    rng = np.random.default_rng(seed)
    for u0 in range(0, ux.size, _BLOCK):
        u1 = min(u0 + _BLOCK, ux.size)
        frame = pd.DataFrame({"frequency": ux[u0:u1], "recency": ut[u0:u1], "T": uT[u0:u1]})
        pa, eh, disc, sims = (np.empty((u1 - u0, n)) for _ in range(4))
        for d in range(n):
            model = _model(cls, purchase, p_draws[d])
            alive, group, curve = model.alive_curve(frame, points)
            # everything below is linear in the alive curve: work per group, then scale by P(alive)
            per_month = np.diff(curve[:, : edges.size], axis=1)
            discounted = discounted_increments(curve[:, : edges.size], curve[:, edges.size :], edges, delta)
            pa[:, d] = alive
            eh[:, d] = alive * curve[group, edges.size - 1]
            disc[:, d] = alive * discounted.sum(axis=1)[group]
            sims[:, d] = model.simulate_purchases(frame, horizon, rng)
            groups = curve.shape[0]
            monthly["purchases"][d] += np.bincount(group, weights=counts[u0:u1] * alive, minlength=groups) @ per_month
            row_months = alive[:, None] * per_month[group]
            if s_draws is not None and spend_sums is not None:
                p, q, v = s_draws[d]
                denominator = p * ux[u0:u1] + q - 1.0
                schedule[0, u0:u1] += (p * v / denominator)[:, None] * row_months
                schedule[1, u0:u1] += (p * ux[u0:u1] / denominator)[:, None] * row_months
                totals = p * (counts[u0:u1] * v + ux[u0:u1] * spend_sums[u0:u1]) / denominator
                per_group = np.bincount(group, weights=totals * alive, minlength=groups)
                monthly["revenue"][d] += per_group @ per_month
                monthly["profit"][d] += margin * (per_group @ discounted)
            else:
                schedule[0, u0:u1] += row_months
                monthly["profit"][d] += np.bincount(group, weights=counts[u0:u1] * alive, minlength=groups) @ discounted
        rows = order[first[u0] : first[u1]]
        local = vh_index[rows] - u0
        acc.put(rows, "p_alive", _gather(_summaries(pa, level), local))
        acc.put(rows, "expected_purchases", _gather(_summaries(eh, level), local))
        acc.put(rows, "purchases_predicted", _gather(_summaries(sims, level, True), local))
        spread = np.maximum(sims.var(axis=1) - eh.var(axis=1), 0.0)
        process_var["purchases"] += float(counts[u0:u1] @ spread)
        if s_draws is None or m is None:
            for c0 in range(0, rows.size, _BLOCK):
                block, lb = rows[c0 : c0 + _BLOCK], local[c0 : c0 + _BLOCK]
                acc.put(block, "clv", _summaries(disc[lb], level))
                clv_draws[block] = disc[lb]
            continue
        ratio = _spend_ratio(sims, ux[u0:u1], s_draws, rng)
        for c0 in range(0, rows.size, _BLOCK):
            block, lb = rows[c0 : c0 + _BLOCK], local[c0 : c0 + _BLOCK]
            spread = _customer_block(block, lb, vx, m, s_draws, disc, eh, ratio, margin, level, acc, clv_draws)
            process_var["revenue"] += float(v_counts[block] @ spread)
    acc.expand(vinv)
    result = _finish(acc, rfm, monthly, process_var, edges, level, n, clv_draws, vinv, tmp, spend is not None, seed)
    result.schedule_base, result.schedule_slope = schedule[0] / n, schedule[1] / n
    result.history, result.mean_spend = inverse, m_all
    return result


def _gather(
    values: tuple[FloatArray, FloatArray, FloatArray], index: NDArray[np.intp]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    return values[0][index], values[1][index], values[2][index]


def _sorted_histories(
    x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], NDArray[np.intp]]:
    """Unique (x, t_x, T) histories ordered by (x, T, t_x), and each customer's index into them: blocks of
    consecutive histories then share few (x, T) pairs, on which the expensive expectations are computed."""
    (ux, ut, uT), inverse, _ = unique_rows(x, t_x, T)
    order = np.lexsort((ut, uT, ux))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return (ux[order], ut[order], uT[order]), rank[inverse]


def _spend_ratio(sims: FloatArray, xu: FloatArray, s_draws: FloatArray, rng: np.random.Generator) -> FloatArray:
    """G1 / G2 per history and draw: the predictive revenue is (v + x m) times it (module docstring)."""
    p, q = s_draws[:, 0][None, :], s_draws[:, 1][None, :]
    g1 = rng.gamma(np.maximum(sims * p, 1e-300)) * (sims > 0)
    g2 = rng.gamma(p * xu[:, None] + q)
    return np.asarray(g1 / g2, dtype=float)


def _customer_block(
    rows: NDArray[np.intp],
    local: NDArray[np.intp],
    x: FloatArray,
    m: FloatArray,
    s_draws: FloatArray,
    disc: FloatArray,
    eh: FloatArray,
    ratio: FloatArray,
    margin: float,
    level: float,
    acc: _Accumulator,
    clv_draws: NDArray[np.float32],
) -> FloatArray:
    """Spend, CLV and predictive revenue of a block of value rows over the draws; returns their process variance
    of revenue."""
    p, q, v = (s_draws[:, j][None, :] for j in range(3))
    xi, mi = x[rows][:, None], m[rows][:, None]
    scale = v + xi * mi
    spend = p * scale / (p * xi + q - 1.0)
    clv = margin * spend * disc[local]
    revenue = scale * ratio[local]
    acc.put(rows, "expected_spend", _summaries(spend, level))
    acc.put(rows, "clv", _summaries(clv, level))
    acc.put(rows, "revenue_predicted", _summaries(revenue, level))
    clv_draws[rows] = clv
    expected_revenue = spend * eh[local]
    return np.maximum(revenue.var(axis=1) - expected_revenue.var(axis=1), 0.0)


def _quantiles(values: FloatArray) -> dict[str, float]:
    q = np.quantile(values, [0.1, 0.5, 0.9])
    return {"mean": float(values.mean()), "p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}


def _finish(
    acc: _Accumulator,
    rfm: pd.DataFrame,
    monthly: dict[str, FloatArray],
    process_var: dict[str, float],
    edges: FloatArray,
    level: float,
    n: int,
    clv_draws: NDArray[np.float32],
    clv_index: NDArray[np.intp],
    tmp: tempfile.TemporaryDirectory[str] | None,
    has_spend: bool,
    seed: int,
) -> BayesValue:
    ids = rfm["customer_id"].to_numpy() if "customer_id" in rfm else np.arange(len(rfm))
    customers = pd.DataFrame({"customer_id": ids, **acc.columns})
    customers.insert(4, "p_churn", 1.0 - customers["p_alive"])
    customers.insert(5, "p_churn_lo", 1.0 - customers["p_alive_hi"])
    customers.insert(6, "p_churn_hi", 1.0 - customers["p_alive_lo"])
    if has_spend:
        customers["spend_is_population_mean"] = rfm["frequency"].to_numpy() == 0
    numeric = customers.select_dtypes("number").drop(columns="customer_id", errors="ignore")
    bad = ~np.isfinite(numeric.to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        raise ClvError(
            f"posterior predictions are not finite for {int(bad.sum())} customer(s) "
            f"(first: {', '.join(map(str, ids[bad][:5]))})"
        )
    forecast = pd.DataFrame({"month": np.arange(1, edges.size), "start": edges[:-1], "end": edges[1:]})
    kinds = ("purchases", "revenue") if has_spend else ("purchases",)
    for kind in kinds:
        q = np.quantile(monthly[kind], [0.1, 0.5, 0.9], axis=0)
        forecast[f"expected_{kind}"] = monthly[kind].mean(axis=0)
        for label, row in zip(("p10", "p50", "p90"), q, strict=True):
            forecast[f"expected_{kind}_{label}"] = row
    profit_name = "discounted_profit" if has_spend else "discounted_purchases"
    forecast[profit_name] = monthly["profit"].mean(axis=0)
    rng = np.random.default_rng(seed + 2)
    totals: dict[str, Any] = {"draws": n, "interval": level, "clv": _quantiles(monthly["profit"].sum(axis=1))}
    for kind in kinds:
        expected = monthly[kind].sum(axis=1)
        noise = math.sqrt(process_var[kind]) * rng.standard_normal(n)
        totals[f"expected_{kind}"] = _quantiles(expected)
        totals[f"predicted_{kind}"] = _quantiles(expected + noise) | {"process_sd": math.sqrt(process_var[kind])}
    return BayesValue(customers, forecast, totals, clv_draws, clv_index, level, n, _tmp=tmp)


def predictive_purchases(
    cls: type[PurchaseModel],
    purchase: Posterior,
    rfm: pd.DataFrame,
    horizon: float,
    level: float = 0.9,
    n_draws: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per customer: posterior mean of expected purchases over `horizon` and the predictive interval of the
    purchases actually made; and the total's predictive distribution (P10 / P50 / P90 and the interval at
    `level`). For holdout checks."""
    x, t_x, T = rfm_arrays(rfm)
    (ux, ut, uT), inverse, _ = unique_rows(x, t_x, T)
    counts = np.bincount(inverse, minlength=ux.size).astype(float)
    draws = purchase.subsample(n_draws, seed)
    rng = np.random.default_rng(seed)
    out = np.empty((3, ux.size))
    expected_total = np.zeros(len(draws))
    process = 0.0
    for start in range(0, ux.size, _BLOCK):
        end = min(start + _BLOCK, ux.size)
        frame = pd.DataFrame({"frequency": ux[start:end], "recency": ut[start:end], "T": uT[start:end]})
        eh, sims = np.empty((end - start, len(draws))), np.empty((end - start, len(draws)))
        for d, row in enumerate(draws):
            model = _model(cls, purchase, row)
            eh[:, d] = model.expected_purchases(frame, horizon)
            sims[:, d] = model.simulate_purchases(frame, horizon, rng)
        expected_total += counts[start:end] @ eh
        process += float(counts[start:end] @ np.maximum(sims.var(axis=1) - eh.var(axis=1), 0.0))
        _, lo, hi = _summaries(sims, level, discrete=True)
        out[:, start:end] = eh.mean(axis=1), lo, hi
    frame = pd.DataFrame({"expected": out[0][inverse], "lo": out[1][inverse], "hi": out[2][inverse]}, index=rfm.index)
    total = expected_total + math.sqrt(process) * rng.standard_normal(len(draws))
    lo_q, hi_q = _bounds(level)
    summary = _quantiles(total) | {"lo": float(np.quantile(total, lo_q)), "hi": float(np.quantile(total, hi_q))}
    return frame, summary
