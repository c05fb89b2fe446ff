"""Scoring on Spark, per partition: the customer table and the revenue schedule computed where the rows are.

The fitted point models go to the workers as the JSON of their model.json blocks (`clv.store.point_models_json`),
with the config and the spend outliers of the whole data (a cap's threshold is the data's, not a partition's).
Each partition runs the local engine's own code on its customers (`clv.pipeline.value_models` and
`customer_rows`: predictions, value, holdout prediction, purchase dates, churn risk), one pandas batch at a time
(`mapInPandas`), and adds each customer's schedule and the month terms of the forecast. What ranks customers
against each other is then computed over the whole table: tiers from exact global ranks with the local tie rule,
segments and RFM scores (`clv.spark.tiers`), the forecast and tier table as sums, the digest the report reads
(`clv.spark.digest`). The driver keeps the compressed rows it fitted on and the small tables; each customer's
tier (for the model store and the migration table) stays on Spark, and so do the customer table and the schedule.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clv.config import RunConfig
from clv.digest import CustomerDigest
from clv.errors import ClvError, DataError
from clv.spark.rows import SparkRows, typed_rows
from clv.spark.session import scoring_partitions
from clv.spend.outliers import SpendOutliers
from clv.store import FittedModels, point_models_from_json, point_models_json
from clv.tiers import churn_column, churn_window
from clv.value import ValueResult, forecast_months, schedule_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from clv.data.rfm import RfmSummary
    from clv.pipeline import DataStep

__all__ = ["SparkValue", "score_on_spark", "score_parts", "scored_rows", "write_spark_tables"]

#: the scored rows' month terms, dropped from the outputs: purchases, schedule (revenue or purchases), discounted
_TERMS = ("__p", "__s", "__d")
#: rows per pandas batch of the scoring (Spark's default is 10,000): fewer, larger vectorised steps
_BATCHES = {"spark.sql.execution.arrow.maxRecordsPerBatch": "100000"}
#: most customers in a scoring partition, which a worker scores as one frame (about 0.5 GB of Python memory)
_PART_ROWS = 1_000_000
#: scored rows per batch sent back to Spark
_OUT_ROWS = 100_000


@dataclass(frozen=True)
class SparkValue:
    """A scoring on Spark: the customer table, the per-customer schedule and each customer's tier (customer_id,
    tier) as Spark DataFrames (the scored rows stay persisted until `release`), and the monthly forecast summed
    there (as `clv.value.ValueResult.forecast`, or for a posterior `clv.bayes.predict.BayesValue.forecast`,
    with its horizon totals)."""

    table: DataFrame
    schedule: DataFrame
    forecast: pd.DataFrame
    tiers: DataFrame
    scored: DataFrame
    #: a posterior's horizon totals (`clv.bayes.predict.portfolio_totals`); None for a point fit
    totals: dict[str, Any] | None = None

    def customers(self) -> pd.DataFrame:
        """The customer table brought to the driver, highest CLV first (ties by id): for small tables."""
        from clv.spark.session import ARROW_EXCHANGE, pandas_notices_quieted, session_conf

        with pandas_notices_quieted(), session_conf(self.table.sparkSession, ARROW_EXCHANGE):
            frame = self.table.toPandas()
        frame = frame.sort_values(["clv", "customer_id"], ascending=[False, True], kind="stable")
        return frame.reset_index(drop=True)

    def release(self) -> None:
        """Unpersist the scored rows (after the outputs are written)."""
        self.scored.unpersist()


def scored_rows(
    config: RunConfig, fitted: FittedModels, rfm: pd.DataFrame, outliers: SpendOutliers | None, length: float | None
) -> pd.DataFrame:
    """A part's scored rows: `clv.pipeline.customer_rows` of its customers, then per future month k the
    customer's expected purchases (`__p_k`), schedule value (`__s_k`: revenue with amounts, purchases without)
    and discounted value (`__d_k`: margin x spend x discounted purchases, or discounted purchases)."""
    from clv.pipeline import customer_rows, value_models

    value = value_models(config, fitted, rfm, outliers=outliers)
    assert isinstance(value, ValueResult)
    holdout = None
    if length is not None and "frequency_holdout" in rfm:
        predicted = fitted.purchase.expected_purchases(rfm, length)
        holdout = pd.DataFrame({"customer_id": rfm["customer_id"].to_numpy(), "expected_purchases_holdout": predicted})
    rows = customer_rows(config, rfm, fitted, value, holdout)
    purchases = value.per_month_unique[value.inverse]
    discounted = value.discounted_unique[value.inverse]
    schedule = purchases
    if value.spend is not None:
        schedule = purchases * value.spend[:, None]
        discounted = config.prediction.margin * value.spend[:, None] * discounted
    months = purchases.shape[1]
    blocks = zip(_TERMS, (purchases, schedule, discounted), strict=True)
    terms = {f"{t}_{k}": block[:, k] for t, block in blocks for k in range(months)}
    return pd.concat([rows, pd.DataFrame(terms, index=rows.index)], axis=1)


def _score_batches(
    batches: Iterator[pd.DataFrame], config_json: str, models_json: str, method: str, outliers_json: str, length: Any
) -> Iterator[pd.DataFrame]:
    """The mapInPandas function: the partition's RFM rows scored together (`scored_rows`, the models rebuilt
    from their JSON), as local scoring scores a whole frame: identical histories, which the partitioning keeps
    together, share one computed value, so their CLVs tie exactly and the id decides between them, as locally
    (a model's numerics may depend on the frame, e.g. its quadrature on the largest T, by the last bit). The
    scored rows go out in batches of `_OUT_ROWS`."""
    config = RunConfig.model_validate_json(config_json)
    purchase, spend = point_models_from_json(models_json)
    fitted = FittedModels(purchase, spend, method, None, None, {})
    found = json.loads(outliers_json)
    outliers = SpendOutliers(**found) if found else None
    parts = [batch for batch in batches if len(batch)]
    if not parts:
        return
    scored = scored_rows(config, fitted, pd.concat(parts, ignore_index=True), outliers, length)
    for start in range(0, len(scored), _OUT_ROWS):
        yield scored.iloc[start : start + _OUT_ROWS]


def score_parts(
    spark: SparkSession, config: RunConfig, fitted: FittedModels, rfm: RfmSummary, outliers: SpendOutliers | None
) -> DataFrame:
    """The RFM rows (kept on Spark, or a frame sent there) scored per partition (`scored_rows`), persisted. The
    output's schema is that of the driver's own scoring of the first rows, so both engines give the same
    columns and types."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    remote = rfm.remote
    if isinstance(remote, SparkRows):
        frame = remote.table
        head = typed_rows(frame.limit(8).toPandas())
    else:
        frame = spark.createDataFrame(rfm.frame)
        head = rfm.frame.head(8)
    length = rfm.holdout_length
    sample = scored_rows(config, fitted, head.reset_index(drop=True), outliers, length)
    schema = from_arrow_schema(pa.Schema.from_pandas(sample, preserve_index=False))
    config_json = config.model_dump_json()
    models_json = point_models_json(fitted)
    outliers_json = json.dumps(dataclasses.asdict(outliers) if outliers is not None else None)
    method = fitted.method
    # partitions of at most about _PART_ROWS customers (each is scored as one frame), by frequency and T: identical
    # histories are in one partition, and so are those a model without dropout values alike whatever the recency
    parts = scoring_partitions(spark, config, rfm.customers, _PART_ROWS)
    scored = frame.repartition(parts, "frequency", "T").mapInPandas(
        lambda batches: _score_batches(batches, config_json, models_json, method, outliers_json, length), schema
    )
    return scored.persist()


def forecast_sums(scored: DataFrame, config: RunConfig, money: bool) -> pd.DataFrame:
    """`clv.value.value_customers`' forecast, its month sums added up over the scored rows."""
    from pyspark.sql import functions as F

    months = forecast_months(
        config.horizon_units(config.time.calibration_end), config.time.unit, config.time.calibration_end
    )
    k = len(months)
    row: Any = scored.agg(*(F.sum(f"{t}_{m}").alias(f"{t}_{m}") for t in _TERMS for m in range(k))).first()
    totals = {t: np.array([float(row[f"{t}_{m}"] or 0.0) for m in range(k)]) for t in _TERMS}
    forecast = months.assign(expected_purchases=totals["__p"])
    if money:
        forecast["expected_revenue"] = totals["__s"]
        forecast["discounted_profit"] = totals["__d"]
    else:
        forecast["discounted_purchases"] = totals["__d"]
    return forecast


def schedule_frame(scored: DataFrame, forecast: pd.DataFrame) -> DataFrame:
    """The per-customer schedule (customer_id and a column per month, as `ValueResult.schedule`)."""
    from pyspark.sql import functions as F

    names = schedule_columns(forecast)
    return scored.select("customer_id", *(F.col(f"__s_{m}").alias(name) for m, name in enumerate(names)))


def churn_name(config: RunConfig) -> str:
    """The run's churn-risk column (`p_purchase_next_13w`)."""
    return churn_column(churn_window(config.tiers, config.time.unit), config.time.unit)


def score_on_spark(
    spark: SparkSession, config: RunConfig, fitted: FittedModels, data: DataStep, outliers: SpendOutliers | None
) -> tuple[SparkValue, CustomerDigest, pd.DataFrame, dict[str, Any] | None]:
    """`clv.pipeline.score`'s predictions, value, tiers and segments on Spark for point fits: the scored table
    (`SparkValue`), its digest, the tier table and the holdout figures, with the local engine's numbers;
    `outliers` are the whole data's spend outliers (`clv.pipeline.spend_outliers`, None without a spend model)."""
    from clv.spark.session import ARROW_EXCHANGE, pandas_notices_quieted, session_conf

    persisted: list[DataFrame] = []
    try:
        with _worker_errors(), pandas_notices_quieted(), session_conf(spark, ARROW_EXCHANGE | _BATCHES):
            return _scored_table(spark, config, fitted, data, outliers, persisted)
    except BaseException:
        for frame in persisted:
            frame.unpersist()
        raise


@contextmanager
def _worker_errors() -> Iterator[None]:
    """A worker's error (a PythonException) as a one-line ClvError: its last line, which names the clv error
    and its message."""
    from pyspark.errors import PythonException

    try:
        yield
    except PythonException as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise ClvError(
            f"scoring on Spark failed in a worker: {lines[-1].strip() if lines else exc}",
            hint="the worker's full error is in the Spark log; run with engine: local on a sample to see it whole",
        ) from None


def _scored_table(
    spark: SparkSession,
    config: RunConfig,
    fitted: FittedModels,
    data: DataStep,
    outliers: SpendOutliers | None,
    persisted: list[DataFrame],
) -> tuple[SparkValue, CustomerDigest, pd.DataFrame, dict[str, Any] | None]:
    """`score_on_spark`'s work; every frame it persists is in `persisted` (unpersisted on an error)."""
    from pyspark.sql import functions as F

    if fitted.purchase_posterior is not None:
        return _posterior_table(spark, config, fitted, data, outliers, persisted)
    terms = score_parts(spark, config, fitted, data.rfm, outliers)
    persisted.append(terms)
    forecast = forecast_sums(terms, config, fitted.spend is not None)
    # the month terms summed, the rows kept without them: the table's columns and the schedule
    kept = [F.col(f"`{c}`") for c in terms.columns if not c.startswith(("__p_", "__d_"))]
    scored = terms.select(*kept).persist()
    persisted.append(scored)
    scored.count()
    terms.unpersist()
    value, digest, tier_table = _ranked(scored, config, fitted, data.rfm.customers, forecast, None, [])
    return value, digest, tier_table, _holdout_figures(scored, config, data.rfm.holdout_length)


def _posterior_table(
    spark: SparkSession,
    config: RunConfig,
    fitted: FittedModels,
    data: DataStep,
    outliers: SpendOutliers | None,
    persisted: list[DataFrame],
) -> tuple[SparkValue, CustomerDigest, pd.DataFrame, dict[str, Any] | None]:
    """`_scored_table` for a posterior: the customers scored per partition with the draws broadcast
    (`clv.spark.posterior`), the forecast's distribution and the totals from the parts' sums."""
    from pyspark.sql import functions as F

    from clv.pipeline import holdout_figures
    from clv.spark.posterior import holdout_interval, posterior_value_columns, score_posterior_parts

    scoring = score_posterior_parts(spark, config, fitted, data.rfm, outliers)
    persisted.extend(scoring.persisted)
    scored = scoring.scored
    ranked = _ranked(
        scored, config, fitted, data.rfm.customers, scoring.forecast, scoring.totals, posterior_value_columns(config)
    )
    holdout = None
    length = data.rfm.holdout_length
    if length is not None and scoring.holdout is not None:
        predicted, actual = F.col("expected_purchases_holdout"), F.col("frequency_holdout").cast("double")
        row: Any = scored.agg(
            F.sum(predicted).alias("p"), F.sum(actual).alias("a"), F.avg(F.abs(predicted - actual)).alias("mae")
        ).first()
        interval = holdout_interval(scored, config, scoring.holdout)
        holdout = holdout_figures(config, length, float(row["p"]), float(row["a"]), float(row["mae"]), interval)
    return (*ranked, holdout)


def _ranked(
    scored: DataFrame,
    config: RunConfig,
    fitted: FittedModels,
    n: int,
    forecast: pd.DataFrame,
    totals: dict[str, Any] | None,
    last: list[str],
) -> tuple[SparkValue, CustomerDigest, pd.DataFrame]:
    """The scored customers (each one's own columns and the schedule's `__s_k` terms, persisted) ranked
    against each other: tiers from exact global ranks, segments and RFM scores, in the local table's column
    order (`last`: columns the local table adds after the ranks, a posterior's tier probabilities); the table's
    digest and its tier table."""
    from pyspark.sql import functions as F

    from clv.model import DROPOUT
    from clv.pipeline import _column_order
    from clv.spark.digest import spark_digest, table_cells
    from clv.spark.tiers import rfm_score_columns, segment_column, spark_tier_table, tier_index

    churn = churn_name(config)
    index = tier_index(scored, config.tiers, n)
    label = _tier_label(index, config)
    identified = DROPOUT not in fitted.purchase.not_identified_
    ranked = {
        "tier": label,
        "segment": segment_column(index, F.col(churn), config.tiers, identified),
        **rfm_score_columns(scored, n),
    }
    own = [c for c in scored.columns if not c.startswith(_TERMS) and c not in last]
    order = _column_order([*own, *ranked, *last])
    table = scored.select(*(ranked[c].alias(c) if c in ranked else F.col(f"`{c}`") for c in order))
    tiers = table.select("customer_id", "tier")
    value = SparkValue(table, schedule_frame(scored, forecast), forecast, tiers, scored, totals)
    cells = table_cells(table, churn)
    digest = spark_digest(table, churn, cells)
    return value, digest, spark_tier_table(table, config.tiers, churn, cells)


def _tier_label(index: Any, config: RunConfig) -> Any:
    """The tier's label from its index (`clv.spark.tiers.tier_index`), as a column."""
    from pyspark.sql import functions as F

    label = F.when(F.lit(False), F.lit(None).cast("string"))
    for k, level in enumerate(config.tiers.levels):
        label = label.when(index == F.lit(k), F.lit(level.label))
    return label


def spark_customer_tiers(
    spark: SparkSession, config: RunConfig, fitted: FittedModels, rfm: RfmSummary, outliers: SpendOutliers | None
) -> Callable[[Path], None]:
    """`clv.pipeline.customer_tiers` for rows kept on Spark (a point fit, or a posterior that
    `clv.spark.posterior` scores): the customers scored per partition and tiered there (`tier_index`: the local
    tiers and tie rule), kept on Spark; the writer of their customer_tiers.parquet (`tiers_file_writer`), which
    releases them once written."""
    from clv.spark.session import ARROW_EXCHANGE, pandas_notices_quieted, session_conf
    from clv.spark.tiers import tier_index

    with _worker_errors(), pandas_notices_quieted(), session_conf(spark, ARROW_EXCHANGE | _BATCHES):
        if fitted.purchase_posterior is not None:
            from clv.spark.posterior import score_posterior_parts

            scoring = score_posterior_parts(spark, config, fitted, rfm, outliers)
            scored, kept = scoring.scored, scoring.persisted
        else:
            scored = score_parts(spark, config, fitted, rfm, outliers)
            kept = [scored]
        try:
            label = _tier_label(tier_index(scored, config.tiers, rfm.customers), config)
            tiers = scored.select("customer_id", label.alias("tier")).persist()
            try:
                tiers.count()
            except BaseException:
                tiers.unpersist()
                raise
        finally:
            for frame in kept:
                frame.unpersist()
    write = tiers_file_writer(tiers)

    def write_and_release(target: Path) -> None:
        try:
            write(target)
        finally:
            tiers.unpersist()

    return write_and_release


def tiers_file_writer(tiers: DataFrame) -> Callable[[Path], None]:
    """A writer of each customer's tier (customer_id, tier) as one Parquet file at the path it is given (the
    model store's customer_tiers.parquet), written by Spark, never collected: one task writes the file beside
    the target, which is then moved into place."""
    from pyspark.sql import functions as F

    def write(target: Path) -> None:
        parts = target.parent / f".{target.name}.parts"
        try:
            rows = tiers.select(F.col("customer_id").cast("string"), F.col("tier").cast("string"))
            rows.repartition(1).write.mode("overwrite").parquet(_uri(parts))
            files = sorted(parts.glob("part-*.parquet"))
            if not (parts / "_SUCCESS").is_file() or len(files) != 1:
                raise ClvError(
                    f"Spark's workers wrote {target.name} where the driver does not see it ({parts})",
                    hint="output.models_dir must be a path the driver and every worker share",
                )
            files[0].replace(target)
        finally:
            shutil.rmtree(parts, ignore_errors=True)

    return write


def spark_migration(previous: DataFrame, tiers: DataFrame, labels: list[str]) -> pd.DataFrame | None:
    """`clv.pipeline._migration` on Spark: the previous run's tiers (customer_id, tier) joined to this run's
    there and the customers counted by move (`clv.tiers.migration_from_counts`); None when there are no
    previous tiers or they name other tiers."""
    from pyspark.sql import functions as F

    from clv.tiers import GONE, NEW, migration_from_counts

    named = {r["tier"] for r in previous.select(F.col("tier").cast("string").alias("tier")).distinct().collect()}
    if named - set(labels):
        return None
    before = previous.select(F.col("customer_id").cast("string").alias("customer_id"), F.col("tier").alias("__b"))
    after = tiers.select(F.col("customer_id").cast("string").alias("customer_id"), F.col("tier").alias("__a"))
    moves = before.join(after, "customer_id", "full_outer").select(
        F.coalesce("__b", F.lit(NEW)).alias("before"), F.coalesce("__a", F.lit(GONE)).alias("after")
    )
    counts = moves.groupBy("before", "after").agg(F.count(F.lit(1)).alias("customers")).toPandas()
    return migration_from_counts(counts, labels)


def _holdout_figures(scored: DataFrame, config: RunConfig, length: float | None) -> dict[str, Any] | None:
    """`clv.pipeline._holdout`'s figures for a point fit, summed over the scored rows."""
    from pyspark.sql import functions as F

    if length is None or "expected_purchases_holdout" not in scored.columns:
        return None
    predicted, actual = F.col("expected_purchases_holdout"), F.col("frequency_holdout").cast("double")
    row: Any = scored.agg(
        F.sum(predicted).alias("p"), F.sum(actual).alias("a"), F.avg(F.abs(predicted - actual)).alias("mae")
    ).first()
    from clv.pipeline import holdout_figures

    return holdout_figures(config, length, float(row["p"]), float(row["a"]), float(row["mae"]))


def write_spark_tables(value: SparkValue, staging: Path, money: bool, limit: int) -> pd.DataFrame:
    """The customer table (Parquet by tier, highest CLV first in each part, its column order beside the parts)
    and the schedule (a Parquet folder) written from Spark into the staged outputs folder; the at-risk rows
    brought to the driver for at_risk.csv, in the table's order (refused past `limit` rows, before they are
    collected)."""
    from pyspark.sql import functions as F

    from clv.report.outputs import COLUMNS_FILE, CUSTOMERS_BY_TIER, NO_MONEY_NAMES, schedule_file
    from clv.spark.session import ARROW_EXCHANGE, pandas_notices_quieted, session_conf
    from clv.tiers import AT_RISK

    table = value.table
    if not money:
        for name, saved in NO_MONEY_NAMES.items():
            if name in table.columns:
                table = table.withColumnRenamed(name, saved)
    worth = "clv" if money else NO_MONEY_NAMES["clv"]
    ordered = table.orderBy(F.col(worth).desc(), F.col("customer_id").asc())
    folder = staging / CUSTOMERS_BY_TIER
    ordered.write.partitionBy("tier").parquet(_uri(folder))
    schedule = staging / schedule_file(money, "parquet")
    value.schedule.write.parquet(_uri(schedule))
    for written in (folder, schedule):  # what the workers wrote must be where the driver moves the folder from
        if not (written / "_SUCCESS").is_file():
            raise ClvError(
                f"Spark's workers wrote {written.name} where the driver does not see it ({written})",
                hint="output.reports_dir must be a path the driver and every worker share (a local path in local "
                "mode; on a cluster a mounted one, such as /dbfs/...)",
            )
    (folder / COLUMNS_FILE).write_text(json.dumps(list(table.columns)))
    at_risk = table.filter(F.col("segment") == AT_RISK).count()
    if at_risk > limit:
        raise DataError(
            f"the run has {at_risk:,} customers in the {AT_RISK} segment, more than spark.max_collected_rows "
            f"{limit:,} brought to the driver for at_risk.csv",
            hint=f"raise spark.max_collected_rows; the whole segment is in the customers/ folder "
            f"(segment = '{AT_RISK}')",
        )
    with pandas_notices_quieted(), session_conf(table.sparkSession, ARROW_EXCHANGE):
        slipping = ordered.filter(F.col("segment") == AT_RISK).toPandas()
    return slipping.reset_index(drop=True)


def _uri(path: Path) -> str:
    """A local path as a file URI: Spark writes there whatever the cluster's default file system."""
    return path.resolve().as_uri()
