"""The transaction log as a Spark DataFrame: Parquet or CSV files, folders and globs, a table of the session's
catalog (`table:schema.name`), or a DataFrame the caller passes. CSV columns are read as text, as the local
engine reads them (`clv.data.transactions`): nothing is coerced before clv validates it. Each row is given a row
id unique in the log and the path of its file, for the problems found in it."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from clv.data.datasets import EMBEDDED_DATASETS, dataset_path
from clv.data.transactions import FILE_COLUMN, ROW_COLUMN
from clv.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["TABLE_PREFIX", "read_source"]

#: a source naming a table of the session's catalog: table:schema.name
TABLE_PREFIX = "table:"


def _is_parquet(name: str) -> bool:
    suffixes = "".join(Path(name).suffixes).lower()
    return ".parquet" in suffixes or suffixes.endswith(".pq")


def _local_files(source: str) -> list[str] | None:
    """The local files a path, folder or glob names (None for a URI such as s3://..., which Spark resolves)."""
    if "://" in source and not source.startswith("file://"):
        return None
    path = source.removeprefix("file://")
    if any(ch in path for ch in "*?["):
        return sorted(glob.glob(path))  # noqa: PTH207 - the pattern may be absolute, which Path.glob refuses
    if Path(path).is_dir():
        return sorted(str(p) for p in Path(path).rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    return [path] if Path(path).is_file() else []


def _csv_dialect(first: str | None) -> dict[str, str]:
    """Delimiter and quote of the first file, sniffed by DuckDB as the local engine does (',' and '"' when the
    file cannot be sniffed here, e.g. on object storage)."""
    options = {"sep": ",", "quote": '"', "escape": '"'}
    if first is None:
        return options
    try:
        with duckdb.connect() as con:
            row = con.execute("SELECT Delimiter, Quote FROM sniff_csv(?, header = true)", [first]).fetchone()
    except duckdb.Error:
        return options
    if row is not None:
        delim, quote = row
        options["sep"] = str(delim)
        if quote and quote != "(empty)":
            options["quote"] = options["escape"] = str(quote)
    return options


def read_source(spark: SparkSession, source: str | DataFrame) -> tuple[DataFrame, str]:
    """The log as a DataFrame with the row id and file columns, and its label for messages."""
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import functions as F

    if isinstance(source, SparkFrame):
        frame, label, file = source, "data frame", F.lit("data frame")
    elif source.startswith(TABLE_PREFIX):
        name = source.removeprefix(TABLE_PREFIX)
        if not spark.catalog.tableExists(name):
            raise DataError(f"data.source {source!r}: no table {name!r} in the session's catalog")
        frame, label, file = spark.table(name), source, F.lit(name)
    else:
        frame, label = _read_files(spark, source), source
        file = F.col("_metadata.file_path")
    return frame.withColumn(ROW_COLUMN, F.monotonically_increasing_id()).withColumn(FILE_COLUMN, file), label


def _read_files(spark: SparkSession, source: str) -> DataFrame:
    path = str(dataset_path(source)) if source in EMBEDDED_DATASETS else source
    files = _local_files(path)
    if files is not None and not files:
        known = ", ".join(sorted(EMBEDDED_DATASETS))
        raise DataError(
            f"data.source {source!r}: no such file, folder or glob match, and not an embedded data set",
            hint=f"give CSV or Parquet files (a path, a folder or a glob) or one of: {known}; a table of the "
            f"session's catalog is {TABLE_PREFIX}schema.name",
        )
    parquet = _is_parquet(path) or (files is not None and all(_is_parquet(f) for f in files))
    try:
        if parquet:
            return spark.read.parquet(path)
        options = _csv_dialect(files[0] if files else None)
        return spark.read.options(header="true", inferSchema="false", mode="PERMISSIVE", **options).csv(path)
    except Exception as exc:  # Spark's AnalysisException and the JVM's errors: said as a DataError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{source}: cannot be read as {'Parquet' if parquet else 'CSV'}: {first}") from None
