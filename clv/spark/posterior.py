"""Bayesian scoring on Spark: the posterior's draws broadcast, the customers scored per partition.

A Bayesian fit on Spark is fitted on the driver from the distinct histories and spends (`clv.spark.rows`); its
scoring runs where the customers' rows are, with the local engine's code (`clv.bayes.predict`). The local
engine values the data's distinct histories in blocks (`history_blocks`), each with a random stream of its own
(the predictive draws of purchases and revenue); the driver numbers the blocks from the distinct histories it
already has (`history_keys`), the rows are partitioned by block, and each partition values its whole blocks with
their keys (`part_blocks`): every customer gets the local numbers, predictive intervals included, bit for bit
for the same posterior. Per partition, beside the customers' rows:

- each value row's CLV draws (float32, on the row of its first customer), for the tier probabilities: with
  share tiers, each draw's cut-offs are order statistics over all customers, found exactly by a radix selection
  on the draws' bits (four passes of 256 counts per draw and cut-off, summed on Spark: `_share_cut_offs`); then
  each value row's P(tier) (`clv.tiers.tier_shares`), joined to its customers;
- the partition's portfolio sums per draw and its part of the holdout's predictive total (on its first row),
  which the driver adds up into the forecast's distribution and the horizon totals.

What needs the customers on the driver stays there: a posterior with covariates or pooled groups, and Pareto/GGG
(customer latents drawn along every customer in one stream); `posterior_on_spark` says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.bayes.predict import (
    Portfolio,
    PredictiveParts,
    forecast_frame,
    history_keys,
    part_blocks,
    portfolio_totals,
    predictive_parts,
    predictive_total,
)
from clv.config import RunConfig
from clv.errors import ClvError
from clv.spark.rows import SparkRows, typed_rows
from clv.spark.session import scoring_partitions
from clv.spend.outliers import SpendOutliers
from clv.store import FittedModels
from clv.tiers import share_cut_positions, tier_cut_offs, tier_shares
from clv.value import forecast_months

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from clv.data.rfm import RfmSummary

__all__ = [
    "PosteriorScoring",
    "RadixSelection",
    "holdout_interval",
    "posterior_on_spark",
    "posterior_rows",
    "posterior_value_columns",
    "score_posterior_parts",
    "sortable",
    "unsortable",
]

#: each customer's block of histories, joined to the rows from the driver's table of distinct histories
_BLOCK = "__block"
#: value row key (the partition's first block << 32 | its row), the first customer's CLV draws and count of
#: customers of the value row, and the partition's sums (on its first row)
_KEY, _DRAWS, _COUNT, _SUMS = "__key", "__draws", "__count", "__sums"
#: most customers in a partition: a partition's CLV draws are (value rows x draws) float32 (40 MB at 500 draws)
_PART_ROWS = 20_000
_HISTORY = ["frequency", "recency", "T"]


def posterior_on_spark(fitted: FittedModels, rfm: RfmSummary) -> bool:
    """Whether a posterior's scoring runs per partition: the rows are kept on Spark and the posterior has no
    covariates, pooled groups or customer latents (those are scored on the driver, from the collected rows)."""
    purchase, spend = fitted.purchase_posterior, fitted.spend_posterior
    return (
        purchase is not None
        and isinstance(rfm.remote, SparkRows)
        and purchase.layout is None
        and (spend is None or spend.layout is None)
        and not type(fitted.purchase).customer_latents
    )


@dataclass(frozen=True)
class PosteriorScoring:
    """A posterior's scoring on Spark: the customers' rows (as `clv.spark.score.scored_rows` gives a point
    fit's, with the monthly schedule's `__s_k` terms and each customer's `p_tier_*`, persisted), the monthly
    forecast with its distribution, the horizon totals, the holdout's predictive parts, and the frames to
    unpersist when done."""

    scored: DataFrame
    forecast: pd.DataFrame
    totals: dict[str, Any]
    holdout: PredictiveParts | None
    persisted: list[DataFrame]


def posterior_rows(
    config: RunConfig,
    fitted: FittedModels,
    rfm: pd.DataFrame,
    keys: NDArray[np.int64],
    outliers: SpendOutliers | None,
    length: float | None,
) -> pd.DataFrame:
    """A part's scored rows (the part holds whole blocks of histories, `keys` each customer's block): the
    customer rows of `clv.pipeline.customer_rows` and the schedule's `__s_k` terms, each customer's value row key
    (`__key`), on each value row's first customer its CLV draws and count of customers, and on the first row the
    part's sums (`_pack`)."""
    from clv.bayes.predict import BayesValue
    from clv.pipeline import customer_rows, holdout_draws, holdout_rows, value_models

    blocks = part_blocks(rfm, keys)
    value = value_models(config, fitted, rfm, outliers=outliers, blocks=blocks)
    assert isinstance(value, BayesValue) and fitted.purchase_posterior is not None
    held, holdout = None, None
    if length is not None and "frequency_holdout" in rfm:
        cls, posterior = type(fitted.purchase), fitted.purchase_posterior
        options = holdout_draws(config)
        intervals, held = predictive_parts(cls, posterior, rfm, length, options, config.bayes.cores, blocks)
        holdout = holdout_rows(rfm["customer_id"].to_numpy(), intervals["expected"].to_numpy(), intervals)
    rows = customer_rows(config, rfm, fitted, value, holdout)
    schedule = value.schedule()
    assert (schedule["customer_id"].to_numpy() == rows["customer_id"].to_numpy()).all()
    terms = {f"__s_{k}": schedule[c].to_numpy() for k, c in enumerate(schedule.columns[1:])}
    n = len(rows)
    index = value.clv_index
    first = np.unique(index, return_index=True)[1]
    counts = np.bincount(index, minlength=value.clv_draws.shape[0])
    draws = value.clv_draws.read_rows(0, value.clv_draws.shape[0])
    blob = np.full(n, None, dtype=object)
    blob[first] = [draws[index[i]].tobytes() for i in first]
    count = pd.array(np.full(n, pd.NA), dtype="Int64")
    count[first] = counts[index[first]]
    sums = np.full(n, None, dtype=object)
    sums[0] = _pack(value.portfolio, held)
    extra = {
        **terms,
        _KEY: (int(keys.min()) << 32) | index.astype(np.int64),
        _DRAWS: blob,
        _COUNT: count,
        _SUMS: sums,
    }
    return pd.concat([rows, pd.DataFrame(extra, index=rows.index)], axis=1)


def _pack(portfolio: Portfolio, held: PredictiveParts | None) -> bytes:
    """A part's sums as float64 bytes: draws and months, the three monthly sums (draws x months each), the two
    process variances, and with a holdout its expected total per draw and process variance."""
    draws, months = portfolio.monthly_purchases.shape
    parts = [
        np.array([draws, months, 1.0 if held is not None else 0.0]),
        portfolio.monthly_purchases.ravel(),
        portfolio.monthly_revenue.ravel(),
        portfolio.monthly_profit.ravel(),
        np.array([portfolio.purchases_variance, portfolio.revenue_variance]),
    ]
    if held is not None:
        parts += [held.expected_total, np.array([held.process])]
    return np.concatenate(parts).astype(np.float64).tobytes()


def _unpack(blob: bytes) -> tuple[Portfolio, PredictiveParts | None]:
    values = np.frombuffer(blob, dtype=np.float64)
    draws, months, has_held = int(values[0]), int(values[1]), bool(values[2])
    at, size = 3, draws * months
    monthly = [values[at + i * size : at + (i + 1) * size].reshape(draws, months) for i in range(3)]
    at += 3 * size
    purchases, revenue, profit = (m.copy() for m in monthly)
    portfolio = Portfolio(purchases, revenue, profit, float(values[at]), float(values[at + 1]))
    at += 2
    held = PredictiveParts(values[at : at + draws].copy(), float(values[at + draws])) if has_held else None
    return portfolio, held


def _posterior_batches(
    batches: Iterator[pd.DataFrame],
    config: RunConfig,
    fitted: FittedModels,
    outliers: SpendOutliers | None,
    length: float | None,
) -> Iterator[pd.DataFrame]:
    """The mapInPandas function: the partition's rows (whole blocks of histories) scored together, sent back in
    batches of 20,000 rows."""
    parts = [batch for batch in batches if len(batch)]
    if not parts:
        return
    rfm = pd.concat(parts, ignore_index=True)
    keys = rfm.pop(_BLOCK)
    if keys.isna().any():
        raise ClvError(f"{int(keys.isna().sum())} customers' histories are not in the driver's table of histories")
    scored = posterior_rows(config, fitted, rfm, keys.to_numpy(dtype=np.int64), outliers, length)
    for start in range(0, len(scored), 20_000):
        yield scored.iloc[start : start + 20_000]


def _worker_fit(fitted: FittedModels) -> FittedModels:
    """What the workers need of the fit: the models and the posteriors' draws (no InferenceData)."""
    purchase = fitted.purchase_posterior
    spend = fitted.spend_posterior
    return FittedModels(
        fitted.purchase,
        fitted.spend,
        fitted.method,
        None if purchase is None else dataclasses.replace(purchase, idata=None),
        None if spend is None else dataclasses.replace(spend, idata=None),
        {},
    )


def score_posterior_parts(
    spark: SparkSession, config: RunConfig, fitted: FittedModels, rfm: RfmSummary, outliers: SpendOutliers | None
) -> PosteriorScoring:
    """A posterior's scoring on Spark (`posterior_on_spark` must hold): the rows partitioned by block of
    histories and scored per partition (`posterior_rows`), the parts' sums added up on the driver into the
    forecast and totals, and each customer's tier probabilities (`_tier_probabilities`)."""
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from clv.pipeline import value_draws

    remote = rfm.remote
    assert isinstance(remote, SparkRows)
    histories, _ = remote.histories()
    distinct = histories[_HISTORY].reset_index(drop=True)
    keys = history_keys(distinct, config.bayes.prediction_draws, config.bayes.cores)
    types = dict(remote.table.dtypes)
    keyed = spark.createDataFrame(distinct.assign(**{_BLOCK: keys})).select(
        *(F.col(c).cast(types[c]).alias(c) for c in _HISTORY), F.col(_BLOCK).cast("long")
    )
    table = remote.table.join(F.broadcast(keyed), _HISTORY, "left")
    table = table.select(*remote.table.columns, _BLOCK)
    length = rfm.holdout_length
    worker = _worker_fit(fitted)
    head = typed_rows(remote.table.limit(8).toPandas())
    head_keys = history_keys(head[_HISTORY].drop_duplicates(), config.bayes.prediction_draws, config.bayes.cores)
    head_keyed = head.merge(head[_HISTORY].drop_duplicates().assign(__k=head_keys), on=_HISTORY, how="left")
    sample = posterior_rows(config, worker, head, head_keyed["__k"].to_numpy(np.int64), outliers, length)
    schema = from_arrow_schema(pa.Schema.from_pandas(sample, preserve_index=False))
    parts = scoring_partitions(spark, config, rfm.customers, _PART_ROWS)
    scored = table.repartition(parts, _BLOCK).mapInPandas(
        lambda batches: _posterior_batches(batches, config, worker, outliers, length), schema
    )
    persisted: list[DataFrame] = []
    try:
        scored = scored.persist()
        persisted.append(scored)
        portfolio, held = _sums(scored)
        draws = value_draws(config)
        money = fitted.spend is not None
        end = config.time.calibration_end
        months = forecast_months(config.horizon_units(end), config.time.unit, end)
        forecast = forecast_frame(portfolio, months, money)
        totals = portfolio_totals(portfolio, draws, money)
        customers = _with_tier_probabilities(scored, config, rfm.customers, portfolio.monthly_purchases.shape[0])
        customers = customers.persist()
        persisted.append(customers)
        customers.count()
        scored.unpersist()
        persisted.remove(scored)
        return PosteriorScoring(customers, forecast, totals, held, persisted)
    except BaseException:
        for frame in persisted:
            frame.unpersist()
        raise


def _sums(scored: DataFrame) -> tuple[Portfolio, PredictiveParts | None]:
    """The parts' portfolios and holdout parts, added up."""
    from pyspark.sql import functions as F

    blobs = [row[_SUMS] for row in scored.filter(F.col(_SUMS).isNotNull()).select(_SUMS).collect()]
    unpacked = [_unpack(bytes(b)) for b in blobs]
    portfolio = unpacked[0][0]
    for more, _ in unpacked[1:]:
        portfolio = portfolio + more
    helds = [h for _, h in unpacked if h is not None]
    held = None
    if helds:
        held = helds[0]
        for more_held in helds[1:]:
            held = held + more_held
    return portfolio, held


def holdout_interval(scored: DataFrame, config: RunConfig, held: PredictiveParts) -> Any:
    """`clv.pipeline.HoldoutInterval` from the scored rows (the share of customers inside their interval) and
    the added-up predictive parts."""
    from pyspark.sql import functions as F

    from clv.pipeline import HoldoutInterval, holdout_draws

    actual = F.col("frequency_holdout").cast("double")
    inside = (actual >= F.col("purchases_holdout_lo")) & (actual <= F.col("purchases_holdout_hi"))
    row: Any = scored.agg(F.avg(inside.cast("double")).alias("c")).first()
    return HoldoutInterval(float(row["c"]), predictive_total(held, holdout_draws(config)))


def _with_tier_probabilities(scored: DataFrame, config: RunConfig, n: int, draws: int) -> DataFrame:
    """The scored customers (their draws and sums dropped) with each one's P(tier) (`p_tier_<label>`, as the
    local table): per draw the tiers' cut-offs (thresholds, or with share tiers `_share_cut_offs`), then each
    value row's share of draws in each tier, joined to its customers by value row key."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    rows = scored.filter(F.col(_DRAWS).isNotNull()).select(_KEY, _COUNT, _DRAWS)
    cut = tier_cut_offs(config.tiers, draws)
    if cut is None:
        cut = _share_cut_offs(rows, share_cut_positions(n, config.tiers), draws)
    names = posterior_value_columns(config)
    schema = StructType([StructField(_KEY, LongType()), *(StructField(c, DoubleType()) for c in names)])

    def shares(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if not len(batch):
                continue
            values = _decoded(batch[_DRAWS], draws)
            found = tier_shares(values, cut)
            yield pd.DataFrame({_KEY: batch[_KEY].to_numpy(), **{c: found[:, k] for k, c in enumerate(names)}})

    probabilities = rows.mapInPandas(shares, schema)
    customers = scored.drop(_DRAWS, _COUNT, _SUMS)
    return customers.join(probabilities, _KEY, "inner").drop(_KEY)


def _decoded(blobs: pd.Series, draws: int) -> NDArray[np.float32]:
    """Rows of CLV draws (float32 bytes) as a (rows, draws) array."""
    joined = b"".join(bytes(b) for b in blobs)
    return np.frombuffer(joined, dtype=np.float32).reshape(len(blobs), draws)


def _share_cut_offs(rows: DataFrame, positions: NDArray[np.intp], draws: int) -> NDArray[np.float64]:
    """Per draw (columns), the CLV at each 0-based rank of `positions` in ascending order over all customers
    (each value row counting its customers): exact, by a radix selection on the float32 draws' bits
    (`RadixSelection`), each pass's counts summed on Spark; the local engine's `np.partition` of the same
    float32 values gives the same numbers."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StructField, StructType

    selection = RadixSelection(positions, draws)
    schema = StructType([StructField("cell", LongType()), StructField("customers", LongType())])
    while not selection.done:

        def counted(batches: Iterator[pd.DataFrame], step: RadixSelection = selection) -> Iterator[pd.DataFrame]:
            total = np.zeros(step.cells, dtype=np.int64)
            for batch in batches:
                if len(batch):
                    keys = sortable(_decoded(batch[_DRAWS], draws))
                    total += step.counts(keys, batch[_COUNT].to_numpy(dtype=np.int64)).ravel()
            cells = np.flatnonzero(total)
            yield pd.DataFrame({"cell": cells.astype(np.int64), "customers": total[cells]})

        sums = rows.mapInPandas(counted, schema).groupBy("cell").agg(F.sum("customers").alias("customers")).toPandas()
        counts = np.zeros(selection.cells, dtype=np.int64)
        counts[sums["cell"].to_numpy(dtype=np.int64)] = sums["customers"].to_numpy(dtype=np.int64)
        selection = selection.next(counts)
    return selection.values()


class RadixSelection:
    """An exact selection of order statistics per draw, eight bits a pass: the values' keys (`sortable`) are
    counted, per draw and rank, by their next byte among those that share the bytes found so far; the byte
    whose cumulative count passes the rank is the next byte of the value at that rank. Four passes give every
    rank's value to the bit, whatever the ties. `ranks` are 0-based, in ascending order of value; the state is
    each (rank, draw)'s rank left to find among the values sharing its `prefix`, the bytes found so far, and the
    bit of the next byte (`shift`: 24, 16, 8, 0; below 0 when done)."""

    def __init__(
        self,
        ranks: NDArray[np.integer],
        draws: int,
        prefix: NDArray[np.uint32] | None = None,
        shift: int = 24,
    ) -> None:
        ranks = np.asarray(ranks, dtype=np.int64)
        self.ranks = ranks if ranks.ndim == 2 else np.repeat(ranks[:, None], draws, axis=1)
        self.prefix = np.zeros(self.ranks.shape, dtype=np.uint32) if prefix is None else prefix
        self.shift = shift

    @property
    def done(self) -> bool:
        return self.shift < 0

    @property
    def cells(self) -> int:
        """The counts of a pass: ranks x draws x 256."""
        return int(self.ranks.size * 256)

    def counts(self, keys: NDArray[np.uint32], weights: NDArray[np.int64]) -> NDArray[np.int64]:
        """This pass's counts (ranks, draws, 256) of rows of keys (rows, draws), each row counting `weights`."""
        ranks, draws = self.ranks.shape
        byte = ((keys >> np.uint32(self.shift)) & np.uint32(255)).astype(np.int64)
        cell = (np.arange(draws, dtype=np.int64)[None, :] * 256 + byte).ravel()
        weight = np.repeat(np.asarray(weights, dtype=np.float64), draws)
        out = np.zeros((ranks, draws * 256), dtype=np.int64)
        for r in range(ranks):
            if self.shift == 24:
                chosen = np.ones(cell.size, dtype=bool)
            else:
                above = np.uint32(self.shift + 8)
                chosen = ((keys >> above) == (self.prefix[r] >> above)[None, :]).ravel()
            found = np.bincount(cell[chosen], weights=weight[chosen], minlength=draws * 256)
            out[r] = np.rint(found).astype(np.int64)
        return out.reshape(ranks, draws, 256)

    def next(self, counts: NDArray[np.int64]) -> RadixSelection:
        """The selection after a pass with the counts of all the values (`counts`, summed over the parts)."""
        ranks, draws = self.ranks.shape
        counts = np.asarray(counts, dtype=np.int64).reshape(ranks, draws, 256)
        cumulative = np.cumsum(counts, axis=2)
        if not (cumulative[..., -1] > self.ranks).all():
            raise ClvError("the tier cut-offs' selection lost customers between its passes")
        byte = (cumulative > self.ranks[..., None]).argmax(axis=2)
        before = np.concatenate([np.zeros((ranks, draws, 1), np.int64), cumulative], axis=2)
        below = np.take_along_axis(before, byte[..., None], axis=2)[..., 0]
        prefix = self.prefix | (byte.astype(np.uint32) << np.uint32(self.shift))
        return RadixSelection(self.ranks - below, draws, prefix, self.shift - 8)

    def values(self) -> NDArray[np.float64]:
        """The values found (ranks, draws), once `done`."""
        assert self.done
        return unsortable(self.prefix).astype(np.float64)


def sortable(values: NDArray[np.float32]) -> NDArray[np.uint32]:
    """float32 values as unsigned integers in the same order (the sign bit flipped, negatives' bits inverted)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


def unsortable(keys: NDArray[np.uint32]) -> NDArray[np.float32]:
    """`sortable`'s inverse."""
    bits = np.where(keys >> np.uint32(31), keys & np.uint32(0x7FFFFFFF), ~keys).astype(np.uint32)
    return bits.view(np.float32)


def posterior_value_columns(config: RunConfig) -> list[str]:
    """The tier probability columns of a posterior's customer table, in the local table's order."""
    from clv.pipeline import _slug

    return [f"p_tier_{_slug(level.label)}" for level in config.tiers.levels]
