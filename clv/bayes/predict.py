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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.bayes.posterior import Posterior
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
    workers: int = 2,
) -> BayesValue:
    """Per-customer posterior means and intervals of P(alive), expected purchases, expected spend and CLV;
    predictive intervals of purchases and revenue over the horizon; the monthly forecast's distribution; and
    the horizon totals. Units as in `clv.value.VALUE_UNITS`. Blocks of histories run on `workers` threads (the
    array work releases the GIL), each with its own random stream spawned from `seed`: the result does not
    depend on the number of workers."""
    job = _ValueJob(cls, purchase, spend, rfm, horizon, annual_discount_rate, margin, unit, level, n_draws, seed)
    starts = list(range(0, job.ux.size, _BLOCK))
    streams = np.random.SeedSequence(seed).spawn(len(starts))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        parts = list(pool.map(job.block, starts, streams))
    for monthly, process_var in parts:
        for key, value in monthly.items():
            job.monthly[key] += value
        for key, number in process_var.items():
            job.process_var[key] += number
    return job.finish()


class _ValueJob:
    """The shared state of `value_posterior`: inputs, paired draws, and the outputs that blocks fill (each
    block writes its own rows, and returns its monthly totals and process variances to be summed)."""

    def __init__(
        self,
        cls: type[PurchaseModel],
        purchase: Posterior,
        spend: Posterior | None,
        rfm: pd.DataFrame,
        horizon: float,
        annual_discount_rate: float,
        margin: float,
        unit: TimeUnit,
        level: float,
        n_draws: int,
        seed: int,
    ) -> None:
        self.cls, self.purchase, self.rfm, self.horizon, self.margin, self.level, self.seed = (
            cls, purchase, rfm, horizon, margin, level, seed
        )  # fmt: skip
        x, t_x, T = rfm_arrays(rfm)
        (self.ux, self.ut, self.uT), self.inverse = _sorted_histories(x, t_x, T)
        self.p_draws, self.s_draws = _pair(purchase, spend, n_draws, seed)
        self.n = n = len(self.p_draws)
        has_spend = spend is not None
        self.m_all = (
            np.where(x > 0, rfm["monetary_value"].to_numpy(dtype=float), 0.0) if has_spend else np.zeros(x.size)
        )
        self.counts = np.bincount(self.inverse, minlength=self.ux.size).astype(float)
        self.spend_sums = np.bincount(self.inverse, weights=self.m_all, minlength=self.ux.size)
        # Value rows: customers with the same history and mean spend have the same predictions (all customers
        # without repeat purchases of a history share one); per-customer work is done once per value row.
        (vh, self.vm), self.vinv, self.v_counts = unique_rows(self.inverse.astype(float), self.m_all)
        self.vh: NDArray[np.intp] = vh.astype(np.intp)
        self.order = np.argsort(self.vh, kind="stable")
        self.first = np.searchsorted(self.vh[self.order], np.arange(self.ux.size + 1))  # value rows of history u
        self.vx = self.ux[self.vh]
        self.delta = continuous_rate_per_unit(annual_discount_rate, unit)
        self.edges = month_edges(horizon, unit)
        self.points = np.concatenate([self.edges, (self.edges[:-1] + self.edges[1:]) / 2.0])
        months = self.edges.size - 1
        self.monthly = {k: np.zeros((n, months)) for k in ("purchases", "revenue", "profit")}
        self.process_var = {"purchases": 0.0, "revenue": 0.0}
        self.schedule = np.zeros((2, self.ux.size, months))
        self.acc = _Accumulator(self.vh.size)
        self.clv_draws, self.tmp = _clv_storage(self.vh.size, n)

    def _draw(
        self, d: int, u0: int, u1: int, frame: pd.DataFrame, out: dict[str, Any], rng: np.random.Generator
    ) -> None:
        """Draw d on histories u0..u1: P(alive), expectations, discounted purchases, a simulated count, and the
        draw's monthly totals (everything after the alive curve is linear in it: work per (x, T) group, then
        scale by P(alive))."""
        edges, rows = self.edges, slice(u0, u1)
        model = _model(self.cls, self.purchase, self.p_draws[d])
        alive, group, curve = model.alive_curve(frame, self.points)
        per_month = np.diff(curve[:, : edges.size], axis=1)
        discounted = discounted_increments(curve[:, : edges.size], curve[:, edges.size :], edges, self.delta)
        out["pa"][:, d] = alive
        out["eh"][:, d] = alive * curve[group, edges.size - 1]
        out["disc"][:, d] = alive * discounted.sum(axis=1)[group]
        out["sims"][:, d] = model.simulate_purchases(frame, self.horizon, rng)
        groups = curve.shape[0]
        weights = np.bincount(group, weights=self.counts[rows] * alive, minlength=groups)
        out["purchases"][d] += weights @ per_month
        row_months = alive[:, None] * per_month[group]
        if self.s_draws is None:
            self.schedule[0, rows] += row_months
            out["profit"][d] += weights @ discounted
            return
        p, q, v = self.s_draws[d]
        ux = self.ux[rows]
        denominator = p * ux + q - 1.0
        self.schedule[0, rows] += (p * v / denominator)[:, None] * row_months
        self.schedule[1, rows] += (p * ux / denominator)[:, None] * row_months
        totals = p * (self.counts[rows] * v + ux * self.spend_sums[rows]) / denominator
        per_group = np.bincount(group, weights=totals * alive, minlength=groups)
        out["revenue"][d] += per_group @ per_month
        out["profit"][d] += self.margin * (per_group @ discounted)

    def block(self, u0: int, stream: np.random.SeedSequence) -> tuple[dict[str, FloatArray], dict[str, float]]:
        """Histories u0 .. u0 + block: every draw, then the summaries of their value rows."""
        rng = np.random.default_rng(stream)
        u1 = min(u0 + _BLOCK, self.ux.size)
        frame = pd.DataFrame({"frequency": self.ux[u0:u1], "recency": self.ut[u0:u1], "T": self.uT[u0:u1]})
        out: dict[str, Any] = {k: np.empty((u1 - u0, self.n)) for k in ("pa", "eh", "disc", "sims")}
        out |= {k: np.zeros_like(v) for k, v in self.monthly.items()}
        for d in range(self.n):
            self._draw(d, u0, u1, frame, out, rng)
        rows = self.order[self.first[u0] : self.first[u1]]
        local = self.vh[rows] - u0
        acc, level = self.acc, self.level
        acc.put(rows, "p_alive", _gather(_summaries(out["pa"], level), local))
        acc.put(rows, "expected_purchases", _gather(_summaries(out["eh"], level), local))
        acc.put(rows, "purchases_predicted", _gather(_summaries(out["sims"], level, True), local))
        spread = np.maximum(out["sims"].var(axis=1) - out["eh"].var(axis=1), 0.0)
        process = {"purchases": float(self.counts[u0:u1] @ spread), "revenue": 0.0}
        ratio = None if self.s_draws is None else _spend_ratio(out["sims"], self.ux[u0:u1], self.s_draws, rng)
        for c0 in range(0, rows.size, _BLOCK):
            block, lb = rows[c0 : c0 + _BLOCK], local[c0 : c0 + _BLOCK]
            if ratio is None or self.s_draws is None:
                acc.put(block, "clv", _summaries(out["disc"][lb], level))
                self.clv_draws[block] = out["disc"][lb]
                continue
            variance = _customer_block(
                block, lb, self.vx, self.vm, self.s_draws, out["disc"], out["eh"], ratio, self.margin, level, acc,
                self.clv_draws,
            )  # fmt: skip
            process["revenue"] += float(self.v_counts[block] @ variance)
        return {k: out[k] for k in self.monthly}, process

    def finish(self) -> BayesValue:
        self.acc.expand(self.vinv)
        has_spend = self.s_draws is not None
        result = _finish(
            self.acc, self.rfm, self.monthly, self.process_var, self.edges, self.level, self.n, self.clv_draws,
            self.vinv, self.tmp, has_spend, self.seed,
        )  # fmt: skip
        result.schedule_base, result.schedule_slope = self.schedule[0] / self.n, self.schedule[1] / self.n
        result.history, result.mean_spend = self.inverse, self.m_all
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
