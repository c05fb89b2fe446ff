"""clv on Apache Spark: the same job where the data lives (`engine: spark`).

`run`, `train` and `prepare_data` take the caller's SparkSession (a notebook's, a `spark-submit` job's, a Spark
Connect session) and a config, and optionally the log as a DataFrame; without a session they use the active one,
or start one from the config's `spark` section. The data step runs on Spark (`clv.spark.data`) and leaves the
customers' rows there (`clv.spark.rows`); the fit runs on the driver, with the local engine's code, from their
distinct histories and spends with counts; a maximum-likelihood fit scores per partition (`clv.spark.score`), and so
does a posterior, its draws broadcast (`clv.spark.posterior`). `clv evaluate` and the forecast band
summarise the log at all their splits in the same one pass (`spark_log_splits`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from clv.config import RunConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from clv.data.rfm import RfmSummary
    from clv.data.tracking import RepeatTracking
    from clv.errors import DataError
    from clv.pipeline import DataStep, Progress, RunResult, Split
    from clv.store import FittedModels

__all__ = ["prepare_data", "run", "session_for", "spark_data", "spark_log_splits", "train"]

#: the caller's session and log, for the pipeline's data step under `engine: spark` (`spark_data`)
_CALLER: ContextVar[tuple[Any, Any] | None] = ContextVar("clv_spark_caller", default=None)


@contextmanager
def _given(spark: SparkSession | None, source: DataFrame | None) -> Iterator[None]:
    token = _CALLER.set((spark, source))
    try:
        yield
    finally:
        _CALLER.reset(token)


def _on_spark(config: RunConfig) -> RunConfig:
    return config if config.engine == "spark" else config.model_copy(update={"engine": "spark"})


def session_for(config: RunConfig) -> SparkSession:
    """The session of the caller of `run` / `train` / `prepare_data`, or the active one (or a new one from
    `config.spark`)."""
    from clv.spark.session import spark_session

    spark, _ = _CALLER.get() or (None, None)
    return spark or spark_session(config)


def spark_data(config: RunConfig, check_period: bool = True) -> DataStep:
    """The pipeline's data step on Spark: with the session and log the caller gave `run` / `train` /
    `prepare_data`, or the active session (or a new one from `config.spark`) and `config.data.source`."""
    from clv.spark.data import spark_data_step
    from clv.spark.session import pandas_notices_quieted, spark_session

    spark, source = _CALLER.get() or (None, None)
    with pandas_notices_quieted():
        return spark_data_step(spark or spark_session(config), config, source, check_period)


def spark_log_splits(
    config: RunConfig, splits: list[Split], main: bool, tracking: bool
) -> tuple[DataStep | None, RepeatTracking | None, dict[Split, RfmSummary | DataError]]:
    """`clv.pipeline.log_splits` on Spark (`clv evaluate`, the forecast band): one pass over the log gives the
    data step (with `main`), the weekly repeat tracking (with `tracking`) and the RFM summary at each split."""
    from clv.spark.data import spark_log_step
    from clv.spark.session import pandas_notices_quieted, spark_session

    spark, source = _CALLER.get() or (None, None)
    with pandas_notices_quieted():
        return spark_log_step(spark or spark_session(config), config, source, splits, main, tracking)


def prepare_data(config: RunConfig, spark: SparkSession | None = None, source: DataFrame | None = None) -> DataStep:
    """`clv.pipeline.prepare_data` on Spark: validation report, profile and RFM summary of `source` (a
    DataFrame) or `config.data.source`."""
    from clv import pipeline

    with _given(spark, source):
        return pipeline.prepare_data(_on_spark(config))


def train(
    config: RunConfig,
    spark: SparkSession | None = None,
    source: DataFrame | None = None,
    progress: Progress | None = None,
    strict: bool = False,
) -> tuple[DataStep, FittedModels, list[str], dict[str, float]]:
    """`clv.pipeline.train` on Spark: the data step there, the fit on the driver."""
    from clv import pipeline

    with _given(spark, source):
        return pipeline.train(_on_spark(config), progress, strict)


def run(
    config: RunConfig,
    spark: SparkSession | None = None,
    source: DataFrame | None = None,
    progress: Progress | None = None,
    strict: bool = False,
) -> RunResult:
    """`clv.pipeline.run` on Spark: the whole job, nothing written (`clv.report.outputs` writes the result)."""
    from clv import pipeline

    with _given(spark, source):
        return pipeline.run(_on_spark(config), progress, strict)
