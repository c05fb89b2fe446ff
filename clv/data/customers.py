"""The customer table: static covariates per customer (a CSV or Parquet file, or columns of an RFM table),
read, checked and joined to the RFM summary.

Ids are text exactly as written, trimmed only as the transaction reader trims them (`data.trim_ids`; see
`clv.data.transactions`), so that a customer of the log and of the table are the same customer or visibly not.
A CSV file is read as text (nothing is coerced before it is checked): a column that is not declared categorical
and whose values all read as numbers is numeric, one whose values are all text is categorical, and a column
mixing the two is an error naming the values. Blank cells are missing.

The join keeps the RFM summary's rows and order. Every customer of the summary needs every covariate: a customer
missing from the table is an error naming the first ids and the count, unless every covariate has a declared fill
value (`covariates.fill`), when the customers get those, loudly; a blank cell takes its column's fill value or is
an error. Customers of the table who are not in the summary (no purchase by the calibration end) are left out,
and counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from clv.config import CovariatesConfig, RunConfig
from clv.data.rfm import RfmSummary
from clv.data.rfm_table import is_rfm_table
from clv.data.transactions import _csv_scan, _id_expr, _literal, _quote
from clv.errors import ConfigError, DataError, first_ids

__all__ = ["CustomerTable", "attach_covariates", "check_covariate_source", "join_covariates", "read_customer_table"]

_TABLE = "clv_customers"


@dataclass(frozen=True)
class CustomerTable:
    """What the join of the customer table did: its source and covariate columns, the customers it has, how many
    of them are in the RFM summary, how many are not (left out), the summary's customers it lacks (given the
    fill values), and the blank cells filled per column."""

    source: str
    columns: tuple[str, ...]
    customers: int
    matched: int
    not_in_summary: int
    filled_customers: int = 0
    filled_cells: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for summary.json."""
        return dataclasses.asdict(self) | {"columns": list(self.columns)}


def _scan(con: duckdb.DuckDBPyConnection, source: str) -> str:
    path = Path(source)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(
            f"covariates.source {source!r}: {what}",
            hint="give the customer table as a CSV or Parquet path, or `rfm` for columns of an RFM-table data.source",
        )
    suffixes = "".join(path.suffixes).lower()
    if ".parquet" in suffixes or suffixes.endswith(".pq"):
        return f"read_parquet({_literal(str(path))})"
    return _csv_scan(con, path)


def _value_expr(column: str, column_type: str) -> str:
    """SQL for a covariate value: text as written with a blank cell missing; other types as they are."""
    quoted = _quote(column)
    if column_type == "VARCHAR":
        return f"CASE WHEN trim({quoted}) = '' THEN NULL ELSE {quoted} END AS {quoted}"
    return quoted


def read_customer_table(source: str, id_column: str, columns: Sequence[str], trim_ids: bool) -> pd.DataFrame:
    """The customer table's `customer_id` (text, see the module docstring) and covariate `columns` (text from a
    CSV file, typed from Parquet); DataError for a missing column, a row without an id or a repeated id."""
    with duckdb.connect() as con:
        try:
            con.execute(f"CREATE TEMP VIEW {_TABLE} AS SELECT * FROM {_scan(con, source)}")
            types = {row[0]: str(row[1]) for row in con.execute(f"DESCRIBE {_TABLE}").fetchall()}
        except duckdb.Error as exc:
            raise DataError(f"covariates.source {source}: cannot be read: {str(exc).splitlines()[0]}") from None
        absent = [c for c in (id_column, *columns) if c not in types]
        if absent:
            raise DataError(
                f"covariates.source {source}: column(s) not found: {', '.join(map(repr, absent))}; the table has "
                f"{', '.join(map(repr, list(types)[:20]))}",
                hint="set covariates.id_column and the covariate lists to the table's column names",
            )
        select = ", ".join(
            [f"{_id_expr(_quote(id_column), types[id_column], trim_ids)} AS customer_id"]
            + [_value_expr(c, types[c]) for c in columns]
        )
        table = con.execute(f"SELECT {select} FROM {_TABLE}").df()
    _check_ids(table, source, id_column)
    return table


def _check_ids(table: pd.DataFrame, source: str, id_column: str) -> None:
    ids = table["customer_id"]
    if ids.isna().any():
        raise DataError(
            f"covariates.source {source}: {int(ids.isna().sum()):,} row(s) have no customer id in {id_column!r}",
            hint="every row of the customer table names its customer",
        )
    repeated = ids[ids.duplicated(keep=False)]
    if len(repeated):
        distinct = list(dict.fromkeys(repeated.tolist()))
        raise DataError(
            f"covariates.source {source}: {len(distinct):,} customer id(s) appear more than once in the customer "
            f"table (first: {first_ids(distinct)})",
            hint="the customer table has one row per customer: merge or remove the repeated rows",
        )


def _typed(values: pd.Series, name: str, categorical: bool, ids: pd.Series, source: str) -> pd.Series:
    """A text column as numbers when every value reads as one (and it is not declared categorical); a column
    mixing numbers and text is refused."""
    if categorical or not (pd.api.types.is_string_dtype(values) or values.dtype == object):
        return values
    present = values.notna()
    numbers = pd.to_numeric(values.where(present).str.strip(), errors="coerce")
    text = present & numbers.isna()
    if not text.any():
        return numbers.astype(float)
    if text.all() or not (present & ~text).any():
        return values
    shown = ", ".join(repr(v) for v in dict.fromkeys(values[text].head(20).tolist()))
    raise DataError(
        f"covariates.source {source}: covariate {name!r} mixes numbers and text: {int(text.sum()):,} customer(s) "
        f"have text ({shown}; first ids: {first_ids(ids[text].tolist())})",
        hint=f"fix those values, or declare the column categorical (covariates.categorical: {{{name}: null}})",
    )


def _fill_value(value: float | str, values: pd.Series, name: str) -> float | str:
    """A declared fill value in the column's type: a number for a numeric column, else text as a level is
    written (0 is "0")."""
    if not pd.api.types.is_numeric_dtype(values):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"covariates.fill.{name}: {value!r} is not a number, and {name!r} is numeric") from None


def join_covariates(
    rfm: pd.DataFrame, table: pd.DataFrame, spec: CovariatesConfig, source: str, groups: Sequence[str] = ()
) -> tuple[pd.DataFrame, CustomerTable, list[str]]:
    """The RFM frame (its rows and order) with the covariate columns of the customer table (`read_customer_table`),
    and the categorical `groups` columns (model.pool_by: never filled), what the join did, and the warnings it gives
    (see the module docstring)."""
    columns = [*spec.columns, *[g for g in groups if g not in spec.columns]]
    in_summary = table["customer_id"].isin(rfm["customer_id"])
    typed = table.assign(
        **{c: _typed(table[c], c, c in spec.categorical or c in groups, table["customer_id"], source) for c in columns}
    )
    joined = rfm.merge(typed, on="customer_id", how="left", validate="one_to_one", indicator=True)
    absent = (joined.pop("_merge") == "left_only").to_numpy()
    notes: list[str] = []
    if absent.any():
        _missing_customers(joined, absent, spec, source, notes, groups, _unmatched(table, rfm))
    filled: dict[str, int] = {}
    for c in columns:
        blank = joined[c].isna().to_numpy() & ~absent
        if blank.any():
            filled[c] = _fill_blanks(joined, c, blank, spec, source)
    if filled:
        notes.append(
            "covariates: blank cells of the customer table given their fill values: "
            + ", ".join(f"{c} {n:,}" for c, n in filled.items())
        )
    joined.index = rfm.index
    info = CustomerTable(
        source=source,
        columns=tuple(columns),
        customers=len(table),
        matched=int(in_summary.sum()),
        not_in_summary=int((~in_summary).sum()),
        filled_customers=int(absent.sum()),
        filled_cells=filled,
    )
    return joined, info, notes


def _unmatched(table: pd.DataFrame, rfm: pd.DataFrame) -> list[str]:
    """The customer table's ids that are not customers of the summary."""
    return [str(i) for i in table.loc[~table["customer_id"].isin(rfm["customer_id"]), "customer_id"]]


def _near_matches(missing: np.ndarray, unmatched: Sequence[str]) -> int:
    """How many missing ids equal an unmatched table id once spaces and leading zeros are taken off both."""

    def key(value: object) -> str:
        return str(value).strip().lstrip("0") or "0"

    keys = {key(u) for u in unmatched}
    return sum(key(m) in keys for m in missing)


def _missing_customers(
    joined: pd.DataFrame,
    absent: np.ndarray,
    spec: CovariatesConfig,
    source: str,
    notes: list[str],
    groups: Sequence[str] = (),
    unmatched: Sequence[str] = (),
) -> None:
    """Customers of the summary missing from the table: the fill values when every covariate has one (said in
    `notes`), else a DataError naming them (always for a pooling column: a customer's group is not guessed)."""
    ids = joined["customer_id"].to_numpy()[absent]
    unfilled = [c for c in [*spec.columns, *groups] if c not in spec.fill]
    near = _near_matches(ids, unmatched)
    if near:
        raise DataError(
            f"covariates.source {source}: {int(absent.sum()):,} customer(s) of the RFM summary are not in the "
            f"customer table (first ids: {first_ids(ids)}), and {near:,} of them are there written differently "
            "(leading zeros or spaces: ids are text and compared exactly)",
            hint="write the ids the same way in both files (data.trim_ids trims spaces in both)",
        )
    if unfilled:
        raise DataError(
            f"covariates.source {source}: {int(absent.sum()):,} customer(s) of the RFM summary are not in the "
            f"customer table (first ids: {first_ids(ids)}); every customer needs every covariate",
            hint="add them to the table, or declare a fill value for every covariate (covariates.fill; missing: "
            f"{', '.join(unfilled)})",
        )
    for c in spec.columns:
        joined.loc[absent, c] = _fill_value(spec.fill[c], joined[c], c)
    notes.append(
        f"covariates: {int(absent.sum()):,} customer(s) of the RFM summary are not in the customer table {source} "
        f"(first ids: {first_ids(ids)}): they were given the fill values "
        + ", ".join(f"{c}={v!r}" for c, v in spec.fill.items())
    )


def _fill_blanks(joined: pd.DataFrame, column: str, blank: np.ndarray, spec: CovariatesConfig, source: str) -> int:
    if column not in spec.fill:
        ids = joined["customer_id"].to_numpy()[blank]
        raise DataError(
            f"covariates.source {source}: covariate {column!r} is blank for {int(blank.sum()):,} customer(s) "
            f"(first ids: {first_ids(ids)}); every customer needs every covariate",
            hint=f"fill the column, or declare a fill value (covariates.fill: {{{column}: ...}})",
        )
    joined.loc[blank, column] = _fill_value(spec.fill[column], joined[column], column)
    return int(blank.sum())


def check_covariate_source(config: RunConfig) -> None:
    """Refuse `covariates.source: rfm` when data.source is a transaction log (before anything is read)."""
    spec = config.covariates
    if spec is not None and spec.from_rfm_table and not is_rfm_table(config.data.source):
        raise ConfigError(
            "covariates.source rfm reads the covariates from an RFM table, but data.source "
            f"{config.data.source!r} is a transaction log",
            hint="give covariates.source as the path of a customer table (CSV or Parquet)",
        )


def attach_covariates(config: RunConfig, rfm: RfmSummary) -> tuple[RfmSummary, CustomerTable | None, list[str]]:
    """The RFM summary with the config's covariate columns joined (unchanged without a covariates section), what
    the join did and its warnings. `covariates.source: rfm` reads them from the RFM table of data.source."""
    spec = config.covariates
    if spec is None:
        return rfm, None, []
    check_covariate_source(config)
    if spec.from_rfm_table:
        source, id_column, trim = config.data.source, spec.id_column or "customer_id", False
    else:
        source, id_column, trim = spec.source, spec.id_column or config.data.customer_id, config.data.trim_ids
    extra = [config.model.pool_by] if config.model.pool_by else []
    table = read_customer_table(source, id_column, [*spec.columns, *extra], trim)
    frame, info, notes = join_covariates(rfm.frame, table, spec, source, extra)
    return dataclasses.replace(rfm, rows=frame), info, notes
