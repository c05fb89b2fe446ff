"""Posterior predictions: per-customer means and intervals, and the portfolio's revenue distribution.

Every quantity is computed per posterior draw on unique (frequency, recency, T) histories, a block of them at
a time, and summarised before the next block: memory is (block x draws), never customers x draws (the CLV draws
that tier probabilities need are written to a temporary file when they are large: `clv.draw_store`).

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

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv import seeds
from clv.bayes.posterior import CustomerLayout, Posterior
from clv.compress import unique_rows
from clv.draw_store import DrawStore
from clv.model import check_finite_frame
from clv.purchase.base import PurchaseModel, rfm_arrays
from clv.units import TimeUnit, continuous_rate_per_unit
from clv.value import discounted_increments, forecast_months, schedule_columns

__all__ = [
    "BayesValue",
    "Block",
    "DrawOptions",
    "Portfolio",
    "PredictiveParts",
    "ValueOptions",
    "forecast_frame",
    "history_blocks",
    "history_keys",
    "part_blocks",
    "portfolio_totals",
    "posterior_predict",
    "predictive_parts",
    "predictive_purchases",
    "predictive_total",
    "sorted_histories",
    "value_posterior",
]

FloatArray = NDArray[np.float64]
_BLOCK = 20_000  # unique histories (and customers) per block, at most
_FLOATS = 1_250_000  # floats per (histories x draws) array of a block (10 MB)
_STEP_FLOATS = 250_000  # floats per (draws x histories x points) array of a step of draws (2 MB)

#: a block of histories: the first, the end (histories in `sorted_histories` order) and the key of its random
#: stream (`SeedSequence(root, spawn_key=(key,))`, the key-th child of the root's `spawn`)
Block = tuple[int, int, int]


@dataclass(frozen=True)
class DrawOptions:
    """How a posterior prediction is drawn and summarised: the central interval's level, the number of
    posterior draws, and the seed of its random streams (`clv.seeds`)."""

    level: float = 0.9
    n_draws: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class ValueOptions:
    """What `value_posterior` values: the horizon (in `unit`, from the calibration end), the discounting and
    margin, the draws, the number of threads, and the calibration end's date (calendar months in the forecast,
    as in `clv.value.forecast_months`)."""

    horizon: float
    annual_discount_rate: float
    margin: float
    unit: TimeUnit
    draws: DrawOptions = DrawOptions()
    workers: int = 2
    calibration_end: dt.date | None = None


def _bounds(level: float) -> tuple[float, float]:
    return (1.0 - level) / 2.0, (1.0 + level) / 2.0


def _summaries(values: FloatArray, level: float, discrete: bool = False) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Mean, lower and upper bound of each row over the draws (columns). Counts use the inverted CDF so that
    their bounds are counts."""
    lo, hi = _bounds(level)
    method = "inverted_cdf" if discrete else "linear"
    q = np.quantile(values, np.array([lo, hi]), axis=1, method=method)  # type: ignore[call-overload]
    return values.mean(axis=1), q[0], q[1]


def _pair(purchase: Posterior, spend: Posterior | None, draws: DrawOptions) -> tuple[FloatArray, FloatArray | None]:
    """The same number of draws from each posterior (independent fits: pairing by position is a joint draw)."""
    p_draws = purchase.subsample(draws.n_draws, seeds.stream_seed(draws.seed, "purchase_draws"))
    if spend is None:
        return p_draws, None
    s_draws = spend.subsample(draws.n_draws, seeds.stream_seed(draws.seed, "spend_draws"))
    k = min(len(p_draws), len(s_draws))
    return p_draws[:k], s_draws[:k]


def posterior_predict(
    cls: type[PurchaseModel],
    posterior: Posterior,
    rfm: pd.DataFrame,
    method: str,
    draws: DrawOptions = DrawOptions(),
    **kwargs: Any,
) -> pd.DataFrame:
    """Posterior mean and central credible interval of any per-row prediction of the model (e.g.
    `probability_alive`, `expected_purchases` with horizon=...), computed per draw on unique histories.

    Usage, with a posterior from `clv.bayes.fit.fit_posterior` (sampling takes too long for a doctest):

        frame = posterior_predict(BetaGeoModel, posterior, rfm, "expected_purchases", DrawOptions(), horizon=52)
        frame.columns  # mean, lo, hi
    """
    params = posterior.subsample(draws.n_draws, seeds.stream_seed(draws.seed, "purchase_draws"))
    if cls.customer_latents:  # one pass: the customers' latents are drawn along the posterior draws
        seed = seeds.stream_seed(draws.seed, "purchase_latents")
        values = cls.predict_draws(params, rfm, method, seed=seed, **kwargs).T
        mean, lo, hi = _summaries(values, draws.level)
        return pd.DataFrame({"mean": mean, "lo": lo, "hi": hi}, index=rfm.index)
    out = np.empty((3, len(rfm)))
    for rows, pattern in _patterns(posterior, rfm, params):
        out[:, rows] = _predict_rows(cls, pattern, rfm.iloc[rows], method, draws.level, kwargs)
    return pd.DataFrame({"mean": out[0], "lo": out[1], "hi": out[2]}, index=rfm.index)


def _patterns(posterior: Posterior, rfm: pd.DataFrame, params: FloatArray) -> list[tuple[NDArray[np.intp], FloatArray]]:
    """The customers of each covariate pattern (or pooled group) with that pattern's parameter draws (draws, k)
    (`clv.bayes.posterior.CustomerLayout`); all customers with `params` for a posterior without a layout."""
    layout = posterior.layout
    if layout is None:
        return [(np.arange(len(rfm)), params)]
    codes, rows = layout.patterns(rfm)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [(group, layout.pattern_draws(params, rows[codes[group[0]]])) for group in np.split(order, bounds)]


def _predict_rows(
    cls: type[PurchaseModel], params: FloatArray, rfm: pd.DataFrame, method: str, level: float, kwargs: dict[str, Any]
) -> FloatArray:
    """Mean, lower and upper bound (3, rows) of a prediction under the draws `params`, on unique histories."""
    x, t_x, T = rfm_arrays(rfm)
    (ux, ut, uT), inverse, _ = unique_rows(x, t_x, T)
    out = np.empty((3, ux.size))
    block = _history_block(ux.size, len(params), 1)
    for start in range(0, ux.size, block):
        end = min(start + block, ux.size)
        frame = pd.DataFrame({"frequency": ux[start:end], "recency": ut[start:end], "T": uT[start:end]})
        values = np.empty((end - start, len(params)))
        step = _draw_step(end - start, 1)
        for d0 in range(0, len(params), step):
            values[:, d0 : d0 + step] = cls.predict_draws(params[d0 : d0 + step], frame, method, **kwargs).T
        out[:, start:end] = _summaries(values, level)
    return out[:, inverse]


@dataclass
class BayesValue:
    """Per-customer means and intervals, the monthly forecast with its distribution, and horizon totals."""

    customers: pd.DataFrame
    forecast: pd.DataFrame
    totals: dict[str, Any]
    #: CLV per draw of each value row (customers sharing a history and mean spend), the rows in the order of their
    #: histories; customer i is row clv_index[i]
    clv_draws: DrawStore
    clv_index: NDArray[np.intp]
    level: float
    n_draws: int
    #: posterior-mean monthly schedule per history: revenue of customer i in month k is
    #: schedule_base[h_i, k] + m_i * schedule_slope[h_i, k] (purchases when there is no spend model)
    schedule_base: FloatArray
    schedule_slope: FloatArray
    history: NDArray[np.intp]
    mean_spend: FloatArray
    #: the sums over customers per draw that `forecast` and `totals` summarise (`forecast_frame`, `portfolio_totals`)
    portfolio: Portfolio

    def schedule(self) -> pd.DataFrame:
        """Posterior mean of expected revenue (purchases without a spend model) per customer and future month."""
        values = self.schedule_base[self.history] + self.mean_spend[:, None] * self.schedule_slope[self.history]
        frame = pd.DataFrame(values, columns=schedule_columns(self.forecast))
        frame.insert(0, "customer_id", self.customers["customer_id"].to_numpy())
        return frame


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


@dataclass(frozen=True)
class _BlockDraws:
    """A block's quantities per posterior draw, filled draw by draw: per history (rows) and draw (columns),
    P(alive), expected and discounted purchases over the horizon and a simulated count of purchases; per draw
    (rows) and future month (columns), the block's customers' expected purchases, expected revenue and
    discounted profit (discounted purchases without a spend model)."""

    p_alive: FloatArray
    expected_purchases: FloatArray
    discounted_purchases: FloatArray
    simulated_purchases: FloatArray
    monthly_purchases: FloatArray
    monthly_revenue: FloatArray
    monthly_profit: FloatArray

    @classmethod
    def empty(cls, histories: int, draws: int, months: int) -> _BlockDraws:
        h, m = (histories, draws), (draws, months)
        return cls(np.empty(h), np.empty(h), np.empty(h), np.empty(h), np.zeros(m), np.zeros(m), np.zeros(m))


@dataclass(frozen=True)
class Portfolio:
    """Sums over customers per draw (added up over blocks of histories, or over parts of the customers):
    expected purchases, expected revenue and discounted profit (discounted purchases without a spend model) per
    future month (draws x months); and the process variance of the horizon's purchases and revenue (module
    docstring)."""

    monthly_purchases: FloatArray
    monthly_revenue: FloatArray
    monthly_profit: FloatArray
    purchases_variance: float
    revenue_variance: float

    @classmethod
    def zeros(cls, draws: int, months: int) -> Portfolio:
        shape = (draws, months)
        return cls(np.zeros(shape), np.zeros(shape), np.zeros(shape), 0.0, 0.0)

    def __add__(self, other: Portfolio) -> Portfolio:
        return Portfolio(
            self.monthly_purchases + other.monthly_purchases,
            self.monthly_revenue + other.monthly_revenue,
            self.monthly_profit + other.monthly_profit,
            self.purchases_variance + other.purchases_variance,
            self.revenue_variance + other.revenue_variance,
        )

    def kinds(self, has_spend: bool) -> list[tuple[str, FloatArray, float]]:
        """(name, monthly sums, process variance) of purchases, and of revenue when there is a spend model."""
        kinds = [("purchases", self.monthly_purchases, self.purchases_variance)]
        if has_spend:
            kinds.append(("revenue", self.monthly_revenue, self.revenue_variance))
        return kinds


def value_posterior(
    cls: type[PurchaseModel],
    purchase: Posterior,
    spend: Posterior | None,
    rfm: pd.DataFrame,
    options: ValueOptions,
    blocks: Sequence[Block] | None = None,
) -> BayesValue:
    """Per-customer posterior means and intervals of P(alive), expected purchases, expected spend and CLV;
    predictive intervals of purchases and revenue over the horizon; the monthly forecast's distribution; and
    the horizon totals. Units as in `clv.value.VALUE_UNITS`. Blocks of histories run on `options.workers`
    threads (the array work releases the GIL), each with its own random stream spawned from the draws' seed:
    the result does not depend on the number of workers.

    `blocks` (default `history_blocks` of the frame's histories) are the blocks of the frame's histories in
    `sorted_histories` order, each with its stream's key: a part of the customers that holds whole blocks of
    the whole data's histories (`clv.spark.posterior`), given their keys, gets the whole data's numbers for its
    customers, bit for bit; its forecast and totals are its own customers' share."""
    job = _ValueJob(cls, purchase, spend, rfm, options, blocks)
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        parts = list(pool.map(job.block, job.blocks))
    return job.finish(sum(parts, Portfolio.zeros(job.n, job.months)))


def history_blocks(histories: int, draws: int, workers: int) -> list[Block]:
    """The blocks of `histories` histories (in `sorted_histories` order) that `value_posterior` and
    `predictive_purchases` compute one at a time, numbered in order: `_history_block` histories each, for the
    `draws` asked for (`DrawOptions.n_draws`) and `workers` threads."""
    size = _history_block(histories, draws, workers)
    return [(u0, min(u0 + size, histories), k) for k, u0 in enumerate(range(0, histories, size))]


def history_keys(histories: pd.DataFrame, draws: int, workers: int) -> NDArray[np.int64]:
    """The key of the block (`history_blocks`) of each of the whole data's distinct (frequency, recency, T)
    histories, each given once (no covariate patterns, no customer latents): what a part of the customers
    needs to compute its share of `value_posterior` and `predictive_parts` as the whole data does
    (`part_blocks`)."""
    x, t_x, T = rfm_arrays(histories)
    zeros = np.zeros(x.size, dtype=np.intp)
    (ux, _, _, _, _), inverse = sorted_histories(x, t_x, T, zeros, zeros)
    if ux.size != x.size:
        raise ValueError(f"history_keys needs distinct histories: {x.size - ux.size} repeated")
    keys = np.empty(ux.size, dtype=np.int64)
    for u0, u1, key in history_blocks(ux.size, draws, workers):
        keys[u0:u1] = key
    return keys[inverse]


def part_blocks(rfm: pd.DataFrame, keys: NDArray[np.int64]) -> list[Block]:
    """The blocks of a part of the customers (no covariate patterns, no customer latents) from each customer's
    block key (`history_keys` of its history): the runs of one key over the part's histories in
    `sorted_histories` order. Raises ValueError unless the part holds whole blocks (each key one run)."""
    x, t_x, T = rfm_arrays(rfm)
    zeros = np.zeros(x.size, dtype=np.intp)
    (ux, _, _, _, _), inverse = sorted_histories(x, t_x, T, zeros, zeros)
    of_history = np.empty(ux.size, dtype=np.int64)
    of_history[inverse] = keys
    if not np.array_equal(of_history[inverse], keys):
        raise ValueError("customers with the same history have different block keys")
    starts = np.flatnonzero(np.diff(of_history)) + 1
    bounds = [0, *starts.tolist(), ux.size]
    blocks = [(a, b, int(of_history[a])) for a, b in itertools.pairwise(bounds)]
    if len({key for _, _, key in blocks}) != len(blocks) or np.any(np.diff(of_history) < 0):
        raise ValueError("a part's histories are not whole blocks in order")
    return blocks


def _stream(root: int, key: int) -> np.random.Generator:
    """The generator of a block's random stream: the key-th child of the root seed's `SeedSequence.spawn`."""
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=(key,)))


class _ValueJob:
    """The shared state of `value_posterior`: inputs, paired draws, and the outputs that blocks fill (each
    block writes its own rows, and returns its portfolio sums to be added up)."""

    def __init__(
        self,
        cls: type[PurchaseModel],
        purchase: Posterior,
        spend: Posterior | None,
        rfm: pd.DataFrame,
        options: ValueOptions,
        blocks: Sequence[Block] | None = None,
    ) -> None:
        self.cls, self.purchase, self.rfm, self.options = cls, purchase, rfm, options
        self.level = options.draws.level
        x, t_x, T = rfm_arrays(rfm)
        # customers of one covariate pattern (or pooled group) share parameters: a history is (x, t_x, T) and
        # the purchase and spend models' patterns, whose design rows give the draws' parameters
        self.p_layout, self.s_layout = purchase.layout, None if spend is None else spend.layout
        p_codes, self.p_rows = _layout_patterns(self.p_layout, rfm)
        s_codes, self.s_rows = _layout_patterns(self.s_layout, rfm)
        if cls.customer_latents:  # histories differ by their sum of log intervals too (`_latent_draws`)
            S = rfm["sum_log_intervals"].to_numpy(dtype=float)
            unique_S, p_codes = np.unique(S, return_inverse=True)
        (self.ux, self.ut, self.uT, self.hp, self.hs), self.inverse = sorted_histories(x, t_x, T, p_codes, s_codes)
        self.p_draws, self.s_draws = _pair(purchase, spend, options.draws)
        self.latents = None
        if cls.customer_latents:
            seed = seeds.stream_seed(options.draws.seed, "purchase_latents")
            self.latents = cls.latents_for(self.p_draws, self.ux, self.ut, self.uT, unique_S[self.hp], seed)
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
        self.delta = continuous_rate_per_unit(options.annual_discount_rate, options.unit)
        self.month_frame = forecast_months(options.horizon, options.unit, options.calibration_end)
        self.edges = np.append(self.month_frame["start"].to_numpy(dtype=float), options.horizon)
        self.points = np.concatenate([self.edges, (self.edges[:-1] + self.edges[1:]) / 2.0])
        self.months = self.edges.size - 1
        self.schedule = np.zeros((2, self.ux.size, self.months))
        self.acc = _Accumulator(self.vh.size)
        self.clv_draws = DrawStore(self.vh.size, n)
        self.horizon = options.horizon
        plan = history_blocks(self.ux.size, options.draws.n_draws, max(1, options.workers))
        self.blocks = list(blocks) if blocks is not None else plan
        self.root = seeds.stream_seed(options.draws.seed, "purchase_simulation")

    def _draws(self, d0: int, d1: int, u0: int, u1: int, out: _BlockDraws, rng: np.random.Generator) -> None:
        """Draws d0..d1 on histories u0..u1, all at once: P(alive), expectations, discounted purchases, a
        simulated count, and the draws' monthly totals (everything after the alive curve is linear in it: work
        per (x, T) group, then scale by P(alive))."""
        edges, rows, draws = self.edges, slice(u0, u1), slice(d0, d1)
        e = edges.size
        x = self.ux[rows]
        if self.latents is None:
            segments = self._segments(self.p_draws[draws], u0, u1)
            alive, group, curve = self._alive_curve(segments)
            simulated = np.concatenate(
                [
                    self.cls.simulate_purchases_draws(P, *h, self.horizon, rng, p_alive=alive[:, a - u0 : b - u0])
                    for a, b, P, h in segments
                ],
                axis=1,
            )
        else:
            k, lam, mu = self.latents
            latents = (k[draws, rows], lam[draws, rows], mu[draws, rows])
            alive, group, curve, simulated = self.cls.latent_curve_draws(
                latents, self.ut[rows], self.uT[rows], self.points, self.horizon, rng
            )
        per_month = np.diff(curve[..., :e], axis=-1)  # (draws, groups, months)
        discounted = discounted_increments(curve[..., :e], curve[..., e:], edges, self.delta)
        out.p_alive[:, draws] = alive.T
        out.expected_purchases[:, draws] = (alive * curve[:, group, e - 1]).T
        out.discounted_purchases[:, draws] = (alive * discounted.sum(axis=-1)[:, group]).T
        out.simulated_purchases[:, draws] = simulated.T
        groups = curve.shape[1]
        weights = _group_sums(self.counts[rows] * alive, group, groups)
        out.monthly_purchases[draws] += np.einsum("dg,dgm->dm", weights, per_month)
        row_months = alive[:, :, None] * per_month[:, group]  # (draws, histories, months)
        if self.s_draws is None:
            self.schedule[0, rows] += row_months.sum(axis=0)
            out.monthly_profit[draws] += np.einsum("dg,dgm->dm", weights, discounted)
            return
        p, q, v = self._spend_params(draws, self.hs[rows])
        denominator = p * x + q - 1.0
        self.schedule[0, rows] += np.einsum("dh,dhm->hm", p * v / denominator, row_months)
        self.schedule[1, rows] += np.einsum("dh,dhm->hm", p * x / denominator, row_months)
        totals = p * (self.counts[rows] * v + x * self.spend_sums[rows]) / denominator
        per_group = _group_sums(totals * alive, group, groups)
        out.monthly_revenue[draws] += np.einsum("dg,dgm->dm", per_group, per_month)
        out.monthly_profit[draws] += self.options.margin * np.einsum("dg,dgm->dm", per_group, discounted)

    def _segments(
        self, params: FloatArray, u0: int, u1: int
    ) -> list[tuple[int, int, FloatArray, tuple[FloatArray, FloatArray, FloatArray]]]:
        """Histories u0..u1 in runs of one purchase pattern (histories are sorted by pattern): each run's bounds,
        its parameter draws and its (x, t_x, T)."""
        if self.p_layout is None:
            return [(u0, u1, params, (self.ux[u0:u1], self.ut[u0:u1], self.uT[u0:u1]))]
        codes = self.hp[u0:u1]
        bounds = [u0, *(u0 + np.flatnonzero(np.diff(codes)) + 1), u1]
        return [
            (
                a,
                b,
                self.p_layout.pattern_draws(params, self.p_rows[self.hp[a]]),
                (self.ux[a:b], self.ut[a:b], self.uT[a:b]),
            )
            for a, b in itertools.pairwise(bounds)
        ]

    def _alive_curve(
        self, segments: list[tuple[int, int, FloatArray, tuple[FloatArray, FloatArray, FloatArray]]]
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
        """`alive_curve_draws` over runs of patterns, their groups numbered one after another."""
        parts = [self.cls.alive_curve_draws(P, *h, self.points) for _, _, P, h in segments]
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [c.shape[1] for _, _, c in parts[:-1]])
        group = np.concatenate([g + o for (_, g, _), o in zip(parts, offsets, strict=True)])
        return np.concatenate([a for a, _, _ in parts], axis=1), group, np.concatenate([c for _, _, c in parts], axis=1)

    def _spend_params(self, draws: slice, patterns: NDArray[np.intp]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Gamma-Gamma's p, q, v under draws `draws` for rows of spend patterns `patterns`: (draws, 1) each
        without a layout, else (draws, rows)."""
        assert self.s_draws is not None
        if self.s_layout is None:
            return tuple(self.s_draws[draws, j][:, None] for j in range(3))  # type: ignore[return-value]
        P = self.s_layout.row_draws(self.s_draws[draws], self.s_rows[patterns])
        return P[..., 0], P[..., 1], P[..., 2]

    def block(self, block: Block) -> Portfolio:
        """A block's histories u0 .. u1: the draws in steps of `_draw_step`, then the summaries of their value
        rows; random numbers from the block's own stream."""
        u0, u1, key = block
        rng = _stream(self.root, key)
        out = _BlockDraws.empty(u1 - u0, self.n, self.months)
        step = _draw_step(u1 - u0, self.points.size)
        for d0 in range(0, self.n, step):
            self._draws(d0, min(d0 + step, self.n), u0, u1, out, rng)
        rows = self.order[self.first[u0] : self.first[u1]]
        local = self.vh[rows] - u0
        acc, level = self.acc, self.level
        acc.put(rows, "p_alive", _gather(_summaries(out.p_alive, level), local))
        acc.put(rows, "expected_purchases", _gather(_summaries(out.expected_purchases, level), local))
        acc.put(rows, "purchases_predicted", _gather(_summaries(out.simulated_purchases, level, True), local))
        spread = np.maximum(out.simulated_purchases.var(axis=1) - out.expected_purchases.var(axis=1), 0.0)
        ratio = (
            None
            if self.s_draws is None
            else _spend_ratio(
                out.simulated_purchases, self.ux[u0:u1], self._spend_params(slice(None), self.hs[u0:u1])[:2], rng
            )
        )
        return Portfolio(
            out.monthly_purchases,
            out.monthly_revenue,
            out.monthly_profit,
            float(self.counts[u0:u1] @ spread),
            self._value_rows(rows, local, out, ratio, int(self.first[u0])),
        )

    def _value_rows(
        self, rows: NDArray[np.intp], local: NDArray[np.intp], out: _BlockDraws, ratio: FloatArray | None, at: int
    ) -> float:
        """CLV (and with a spend model, spend and predictive revenue from the spend ratios) of a block's value
        rows, `local` their histories in the block, `at` the first one's place in history order (where their CLV
        draws are stored); returns their process variance of revenue."""
        revenue_variance = 0.0
        step = max(64, _FLOATS // (4 * max(self.n, 1)))  # value rows per chunk: their (rows x draws) arrays stay small
        for c0 in range(0, rows.size, step):
            block, lb = rows[c0 : c0 + step], local[c0 : c0 + step]
            if ratio is None:
                self.acc.put(block, "clv", _summaries(out.discounted_purchases[lb], self.level))
                self.clv_draws.write(at + c0, out.discounted_purchases[lb])
                continue
            variance, clv = self._spend_rows(block, out.discounted_purchases[lb], out.expected_purchases[lb], ratio[lb])
            self.clv_draws.write(at + c0, clv)
            revenue_variance += float(self.v_counts[block] @ variance)
        return revenue_variance

    def _spend_rows(
        self, rows: NDArray[np.intp], discounted: FloatArray, expected: FloatArray, ratio: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Spend, CLV and predictive revenue of value rows over the draws, given their discounted and expected
        purchases and spend ratios per draw; returns their process variance of revenue, and their CLV draws."""
        assert self.s_draws is not None  # value rows have spend only with a spend model
        p, q, v = (value.T for value in self._spend_params(slice(None), self.hs[self.vh[rows]]))
        xi, mi = self.vx[rows][:, None], self.vm[rows][:, None]
        scale = v + xi * mi
        spend = p * scale / (p * xi + q - 1.0)
        clv = self.options.margin * spend * discounted
        revenue = scale * ratio
        self.acc.put(rows, "expected_spend", _summaries(spend, self.level))
        self.acc.put(rows, "clv", _summaries(clv, self.level))
        self.acc.put(rows, "revenue_predicted", _summaries(revenue, self.level))
        expected_revenue = spend * expected
        return np.maximum(revenue.var(axis=1) - expected_revenue.var(axis=1), 0.0), clv

    def finish(self, portfolio: Portfolio) -> BayesValue:
        self.acc.expand(self.vinv)
        has_spend = self.s_draws is not None
        return BayesValue(
            customers=_customer_frame(self.acc, self.rfm, has_spend),
            forecast=forecast_frame(portfolio, self.month_frame, has_spend),
            totals=portfolio_totals(portfolio, self.options.draws, has_spend),
            clv_draws=self.clv_draws,
            clv_index=np.argsort(self.order)[self.vinv],  # value row -> its place in history order
            level=self.level,
            n_draws=self.n,
            schedule_base=self.schedule[0] / self.n,
            schedule_slope=self.schedule[1] / self.n,
            history=self.inverse,
            mean_spend=self.m_all,
            portfolio=portfolio,
        )


def _history_block(histories: int, draws: int, workers: int) -> int:
    """Histories per block: a block keeps a few (histories x draws) arrays, each bounded by `_FLOATS` floats;
    at least one block per worker when there are enough histories, and blocks of equal size."""
    largest = int(min(_BLOCK, max(256, _FLOATS // max(draws, 1))))
    blocks = max(-(-histories // largest), min(workers, histories // 256))
    return max(1, -(-histories // max(blocks, 1)))


def _draw_step(histories: int, points: int) -> int:
    """Draws per step in a block: (draws x histories x points) arrays stay under `_STEP_FLOATS` floats."""
    return int(max(1, _STEP_FLOATS // max(histories * points, 1)))


def _group_sums(values: FloatArray, group: NDArray[np.intp], groups: int) -> FloatArray:
    """Sums of values (draws, rows) over the rows of each group, shape (draws, groups): one `bincount` over
    (draw, group) cells. Not a product with a one-hot matrix: OpenBLAS runs products of this size on threads,
    which on a loaded machine wait for each other (16 ms a product on 2 busy cores, 0.1 ms on one thread)."""
    draws = values.shape[0]
    cells = (np.arange(draws)[:, None] * groups + group[None, :]).ravel()
    sums = np.bincount(cells, weights=values.ravel(), minlength=draws * groups)
    return np.asarray(sums, dtype=float).reshape(draws, groups)


def _gather(
    values: tuple[FloatArray, FloatArray, FloatArray], index: NDArray[np.intp]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    return values[0][index], values[1][index], values[2][index]


def _layout_patterns(layout: CustomerLayout | None, rfm: pd.DataFrame) -> tuple[NDArray[np.intp], FloatArray]:
    """Each customer's pattern and the patterns' design rows (`CustomerLayout.patterns`); one pattern without."""
    if layout is None:
        return np.zeros(len(rfm), dtype=np.intp), np.zeros((1, 0))
    return layout.patterns(rfm)


def sorted_histories(
    x: FloatArray, t_x: FloatArray, T: FloatArray, p_code: NDArray[np.intp], s_code: NDArray[np.intp]
) -> tuple[tuple[FloatArray, FloatArray, FloatArray, NDArray[np.intp], NDArray[np.intp]], NDArray[np.intp]]:
    """Unique (x, t_x, T, purchase pattern, spend pattern) histories ordered by (purchase pattern, x, T, t_x),
    and each customer's index into them: blocks of consecutive histories then share few patterns and (x, T)
    pairs, on which the expensive expectations are computed."""
    (ux, ut, uT, up, us), inverse, _ = unique_rows(x, t_x, T, p_code.astype(float), s_code.astype(float))
    order = np.lexsort((ut, uT, ux, us, up))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    codes = up[order].astype(np.intp), us[order].astype(np.intp)
    return (ux[order], ut[order], uT[order], *codes), rank[inverse]


def _spend_ratio(
    sims: FloatArray, xu: FloatArray, pq: tuple[FloatArray, FloatArray], rng: np.random.Generator
) -> FloatArray:
    """G1 / G2 per history and draw: the predictive revenue is (v + x m) times it (module docstring). `pq`: p
    and q, (draws, 1) or (draws, histories)."""
    p, q = (np.broadcast_to(value.T, sims.shape) for value in pq)
    ratio = np.zeros(sims.shape)
    buying = np.flatnonzero(sims)  # no purchases, no revenue: only the cells with some draw the two gammas
    h, d = np.divmod(buying, sims.shape[1])
    g1 = rng.gamma(sims.reshape(-1)[buying] * p[h, d])
    g2 = rng.gamma(p[h, d] * xu[h] + q[h, d])
    ratio.reshape(-1)[buying] = g1 / g2
    return ratio


def _quantiles(values: FloatArray) -> dict[str, float]:
    q = np.quantile(values, [0.1, 0.5, 0.9])
    return {"mean": float(values.mean()), "p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}


def _customer_frame(acc: _Accumulator, rfm: pd.DataFrame, has_spend: bool) -> pd.DataFrame:
    """The per-customer columns, with P(churn) beside P(alive); refuses predictions that are not finite."""
    ids = rfm["customer_id"].to_numpy() if "customer_id" in rfm else np.arange(len(rfm))
    customers = pd.DataFrame({"customer_id": ids, **acc.columns})
    customers.insert(4, "p_churn", 1.0 - customers["p_alive"])
    customers.insert(5, "p_churn_lo", 1.0 - customers["p_alive_hi"])
    customers.insert(6, "p_churn_hi", 1.0 - customers["p_alive_lo"])
    if has_spend:
        customers["spend_is_population_mean"] = rfm["frequency"].to_numpy() == 0
    return check_finite_frame(customers, "a posterior prediction")


def forecast_frame(portfolio: Portfolio, months: pd.DataFrame, has_spend: bool) -> pd.DataFrame:
    """Per future month (`months`, from `clv.value.forecast_months`): the posterior mean and P10 / P50 / P90 of
    expected purchases (and revenue), and the mean discounted profit (purchases without a spend model)."""
    forecast = months.copy()
    for kind, monthly, _ in portfolio.kinds(has_spend):
        q = np.quantile(monthly, [0.1, 0.5, 0.9], axis=0)
        forecast[f"expected_{kind}"] = monthly.mean(axis=0)
        for label, row in zip(("p10", "p50", "p90"), q, strict=True):
            forecast[f"expected_{kind}_{label}"] = row
    profit_name = "discounted_profit" if has_spend else "discounted_purchases"
    forecast[profit_name] = portfolio.monthly_profit.mean(axis=0)
    return forecast


def portfolio_totals(portfolio: Portfolio, draws: DrawOptions, has_spend: bool) -> dict[str, Any]:
    """The horizon's totals over the portfolio's draws: CLV, and expected and predicted purchases (and revenue)."""
    n = portfolio.monthly_purchases.shape[0]
    rng = seeds.rng(draws.seed, "portfolio_noise")
    totals: dict[str, Any] = {
        "draws": n,
        "interval": draws.level,
        "clv": _quantiles(portfolio.monthly_profit.sum(axis=1)),
    }
    for kind, monthly, variance in portfolio.kinds(has_spend):
        expected = monthly.sum(axis=1)
        noise = math.sqrt(variance) * rng.standard_normal(n)
        totals[f"expected_{kind}"] = _quantiles(expected)
        totals[f"predicted_{kind}"] = _quantiles(expected + noise) | {"process_sd": math.sqrt(variance)}
    return totals


@dataclass(frozen=True)
class PredictiveParts:
    """What a predictive total over customers adds up: the expected total per draw and the sum of the customers'
    process variances (the module docstring's normal term); parts of the customers add up."""

    expected_total: FloatArray
    process: float

    def __add__(self, other: PredictiveParts) -> PredictiveParts:
        return PredictiveParts(self.expected_total + other.expected_total, self.process + other.process)


def predictive_purchases(
    cls: type[PurchaseModel],
    purchase: Posterior,
    rfm: pd.DataFrame,
    horizon: float,
    draws: DrawOptions = DrawOptions(),
    workers: int = 1,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per customer: posterior mean of expected purchases over `horizon` and the predictive interval of the
    purchases actually made; and the total's predictive distribution (P10 / P50 / P90 and the interval at
    `draws.level`). For holdout checks. The histories' blocks are `history_blocks(histories, draws, workers)`:
    `value_posterior`'s with the same workers."""
    frame, parts = predictive_parts(cls, purchase, rfm, horizon, draws, workers)
    return frame, predictive_total(parts, draws)


def predictive_total(parts: PredictiveParts, draws: DrawOptions) -> dict[str, float]:
    """The predictive total's P10 / P50 / P90, mean and central interval at `draws.level`: the expected total
    plus its normal process term (the `predictive_noise` stream)."""
    rng = seeds.rng(draws.seed, "predictive_noise")
    n = parts.expected_total.size
    total = parts.expected_total + math.sqrt(parts.process) * rng.standard_normal(n)
    lo_q, hi_q = _bounds(draws.level)
    return _quantiles(total) | {"lo": float(np.quantile(total, lo_q)), "hi": float(np.quantile(total, hi_q))}


def predictive_parts(
    cls: type[PurchaseModel],
    purchase: Posterior,
    rfm: pd.DataFrame,
    horizon: float,
    draws: DrawOptions = DrawOptions(),
    workers: int = 1,
    blocks: Sequence[Block] | None = None,
) -> tuple[pd.DataFrame, PredictiveParts]:
    """`predictive_purchases`' per-customer frame and the parts of its total. Histories are taken in
    `sorted_histories` order, in `blocks` (default `history_blocks`), each block's simulated counts from its
    own stream: as in `value_posterior`, a part of the customers holding whole blocks, with their keys, gets
    the whole data's numbers. A model with customer latents draws them along every customer (one stream)."""
    params = purchase.subsample(draws.n_draws, seeds.stream_seed(draws.seed, "purchase_draws"))
    if cls.customer_latents:
        rng = seeds.rng(draws.seed, "purchase_simulation")
        values, expected_total, process = _latent_predictive(cls, params, rfm, horizon, draws, rng)
        frame = pd.DataFrame({"expected": values[0], "lo": values[1], "hi": values[2]}, index=rfm.index)
        return frame, PredictiveParts(expected_total, process)
    x, t_x, T = rfm_arrays(rfm)
    layout = purchase.layout
    p_codes, p_rows = _layout_patterns(layout, rfm)
    (ux, ut, uT, hp, _), inverse = sorted_histories(x, t_x, T, p_codes, np.zeros_like(p_codes))
    counts = np.bincount(inverse, minlength=ux.size).astype(float)
    plan = list(blocks) if blocks is not None else history_blocks(ux.size, draws.n_draws, max(1, workers))
    root = seeds.stream_seed(draws.seed, "purchase_simulation")
    out = np.empty((3, ux.size))
    expected_total = np.zeros(len(params))
    process = 0.0
    for u0, u1, key in plan:
        rng = _stream(root, key)
        codes = hp[u0:u1]
        runs = [u0, *(u0 + np.flatnonzero(np.diff(codes)) + 1), u1]  # one parameter pattern each
        for a, b in itertools.pairwise(runs):
            pattern = params if layout is None else layout.pattern_draws(params, p_rows[hp[a]])
            rows = slice(a, b)
            expected, simulated = _expected_and_simulated(cls, pattern, (ux[rows], ut[rows], uT[rows]), horizon, rng)
            expected_total += counts[rows] @ expected
            process += float(counts[rows] @ np.maximum(simulated.var(axis=1) - expected.var(axis=1), 0.0))
            _, lo, hi = _summaries(simulated, draws.level, discrete=True)
            out[:, rows] = expected.mean(axis=1), lo, hi
    out = out[:, inverse]
    frame = pd.DataFrame({"expected": out[0], "lo": out[1], "hi": out[2]}, index=rfm.index)
    return frame, PredictiveParts(expected_total, process)


def _latent_predictive(
    cls: type[PurchaseModel],
    params: FloatArray,
    rfm: pd.DataFrame,
    horizon: float,
    draws: DrawOptions,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray, float]:
    """`_predictive_rows` for a model with customer latents (`PurchaseModel.customer_latents`): every customer's
    latents along the draws, then their expected and one simulated count of purchases per draw."""
    x, t_x, T = rfm_arrays(rfm)
    S = rfm["sum_log_intervals"].to_numpy(dtype=float)
    latents = cls.latents_for(params, x, t_x, T, S, seeds.stream_seed(draws.seed, "purchase_latents"))
    alive, _, curve, simulated = cls.latent_curve_draws(latents, t_x, T, np.array([horizon]), horizon, rng)
    expected = (alive * curve[..., 0]).T  # (customers, draws)
    process = float(np.maximum(simulated.T.var(axis=1) - expected.var(axis=1), 0.0).sum())
    _, lo, hi = _summaries(simulated.T, draws.level, discrete=True)
    return np.stack([expected.mean(axis=1), lo, hi]), expected.sum(axis=0), process


def _expected_and_simulated(
    cls: type[PurchaseModel],
    params: FloatArray,
    history: tuple[FloatArray, FloatArray, FloatArray],
    horizon: float,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """Expected and one simulated count of purchases over `horizon` per history (rows) and draw (columns), the
    draws in steps of `_draw_step`."""
    x, t_x, T = history
    expected, simulated = np.empty((x.size, len(params))), np.empty((x.size, len(params)))
    step = _draw_step(x.size, 1)
    for d0 in range(0, len(params), step):
        draws = slice(d0, d0 + step)
        alive, group, curve = cls.alive_curve_draws(params[draws], x, t_x, T, np.array([horizon]))
        expected[:, draws] = (alive * curve[:, group, 0]).T
        simulated[:, draws] = cls.simulate_purchases_draws(params[draws], x, t_x, T, horizon, rng, p_alive=alive).T
    return expected, simulated
