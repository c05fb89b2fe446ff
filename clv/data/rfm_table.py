"""Already-summarised RFM tables as a data source, for teams that summarise in their warehouse.

A CSV or Parquet file whose columns include customer_id, frequency, recency and T (and monetary_value for
spend; frequency_holdout and monetary_value_holdout for a holdout; sum_log_intervals for the regularity models,
MBG/CNBD-k and BG/CNBD-k) is an RFM table in `time.unit`, recognised by
those columns; anything else is a transaction log.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from clv.config import RunConfig
from clv.data.rfm import RfmSummary, validate_rfm
from clv.errors import DataError

__all__ = ["RFM_TABLE_COLUMNS", "is_rfm_table", "load_rfm_table"]

RFM_TABLE_COLUMNS = ("customer_id", "frequency", "recency", "T")
_OPTIONAL = ("monetary_value", "frequency_holdout", "monetary_value_holdout", "sum_log_intervals")


def _columns(path: Path) -> list[str]:
    if path.suffix.lower() in (".parquet", ".pq"):
        return list(pq.read_schema(path).names)
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
        return []


def is_rfm_table(source: str) -> bool:
    """Whether `source` is a file with the RFM table's columns."""
    path = Path(source)
    return path.is_file() and set(RFM_TABLE_COLUMNS) <= set(_columns(path))


def load_rfm_table(config: RunConfig) -> RfmSummary:
    """Read and validate an RFM table; its times are in the config's time.unit."""
    path = Path(config.data.source)
    wanted = [c for c in (*RFM_TABLE_COLUMNS, *_OPTIONAL) if c in _columns(path)]
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pd.read_parquet(path, columns=wanted)
    else:
        # ids as written: no "NA" or "null" id read as missing (the numbers are coerced and checked below)
        frame = pd.read_csv(path, usecols=wanted, dtype={"customer_id": str}, keep_default_na=False)
    ids = frame["customer_id"]
    if pd.api.types.is_float_dtype(ids) and bool((ids == ids.round()).all()):
        ids = ids.astype(pd.Int64Dtype())  # a whole-number float column is its integers' text, not '509.0'
    frame["customer_id"] = ids.astype(str)
    duplicated = frame["customer_id"].duplicated()
    if duplicated.any():
        shown = ", ".join(frame.loc[duplicated, "customer_id"].head(5))
        n = int(duplicated.sum())
        raise DataError(
            f"{path}: {n} customer id(s) appear twice in the RFM table (first: {shown})",
            hint="an RFM table has one row per customer: merge or remove the repeated rows",
        )
    has_amounts = config.data.has_values and "monetary_value" in frame
    if not has_amounts:
        frame = frame.drop(columns=["monetary_value", "monetary_value_holdout"], errors="ignore")
    for column in frame.columns.drop("customer_id"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    try:
        validate_rfm(frame, need_monetary=has_amounts)
    except DataError as exc:
        raise DataError(f"{path}: {exc.message}") from None
    holdout = "frequency_holdout" in frame
    return RfmSummary(
        rows=frame,
        unit=config.time.unit,
        calibration_end=config.time.calibration_end,
        holdout_end=config.time.holdout_end if holdout else None,
    )
