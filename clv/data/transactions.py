"""Reading and validating a transaction log with DuckDB, out of core.

One path for every source: an embedded data set, a CSV file, a Parquet file or a pandas frame becomes a DuckDB
view with a line number; every row is parsed (customer id, date, amount) and every problem is collected before
anything is computed; the clean rows are merged to one row per customer and day in the table `clv_tx`
(customer_id, day, amount, n_rows), which the RFM summary and the data profile read.

Line numbers count the header as line 1 of a CSV file (one record per line); for Parquet files and frames they
are 1-based row numbers.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd

from clv.config import DataConfig
from clv.data.datasets import EMBEDDED_DATASETS, dataset_path
from clv.errors import DataError, first_ids

__all__ = ["RowProblem", "Transactions", "ValidationReport", "load_transactions"]

_SRC = "clv_src"
_SRC_LINES = "clv_src_lines"
_PARSED = "clv_parsed"
_PROBLEMS = "clv_problems"
TX_TABLE = "clv_tx"

# A time of day followed by a UTC offset or Z: the mark of a time-zone-aware timestamp string. A bare date
# (1997-01-01) must not match, so the offset has to follow a clock time.
_AWARE_PATTERN = r"\d:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)$"
_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
    "UBIGINT",
)
_SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class RowProblem:
    """One problem with one row: where, whose, which column, what value, and why."""

    line: int
    customer_id: str | None
    column: str
    value: str | None
    reason: str

    def describe(self, location: str) -> str:
        who = f"customer {self.customer_id}" if self.customer_id is not None else "no customer id"
        return f"{location} {self.line} ({who}): {self.column} {self.value!r} {self.reason}"


@dataclass
class ValidationReport:
    """What reading and cleaning did, rule by rule, in rows."""

    source: str
    location: Literal["line", "row"]
    rows_read: int = 0
    rows_rejected: int = 0
    problems_by_reason: dict[str, int] = field(default_factory=dict)
    first_problems: list[RowProblem] = field(default_factory=list)
    returns_policy: str = "net"
    returns: dict[str, int] = field(default_factory=dict)
    aware_timestamps: bool = False
    rows_kept: int = 0
    customer_days: int = 0

    @property
    def same_day_merged(self) -> int:
        """Rows merged into another row of the same customer and day."""
        return self.rows_kept - self.customer_days


@dataclass
class Transactions:
    """Validated transactions in DuckDB: table `clv_tx` holds one row per customer and day."""

    con: duckdb.DuckDBPyConnection
    report: ValidationReport
    has_amount: bool
    integer_ids: bool
    table: str = TX_TABLE

    def to_frame(self) -> pd.DataFrame:
        """The merged customer-day rows as a frame (for small data and tests)."""
        return self.con.sql(f"SELECT * FROM {self.table} ORDER BY customer_id, day").df()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _resolve_source(source: str) -> tuple[Path, str]:
    if source in EMBEDDED_DATASETS:
        return dataset_path(source), "csv"
    path = Path(source)
    if not path.is_file():
        known = ", ".join(sorted(EMBEDDED_DATASETS))
        raise DataError(
            f"data.source {source!r}: no such file, and not an embedded data set",
            hint=f"give a CSV or Parquet path (relative to the working directory) or one of: {known}",
        )
    suffixes = "".join(path.suffixes).lower()
    if ".parquet" in suffixes or suffixes.endswith(".pq"):
        return path, "parquet"
    return path, "csv"


def _open_source(con: duckdb.DuckDBPyConnection, source: str | pd.DataFrame) -> tuple[str, str]:
    """Create two views of the source: clv_src (the columns, scanned in parallel) and clv_src_lines (the same
    with a line number, whose numbering forces an ordered scan; only the diagnostics read it)."""
    if isinstance(source, pd.DataFrame):
        con.register("clv_input_frame", source.reset_index(drop=True))
        con.execute(f"CREATE TEMP VIEW {_SRC} AS SELECT * FROM clv_input_frame")
        con.execute(f"CREATE TEMP VIEW {_SRC_LINES} AS SELECT row_number() OVER () AS line, * FROM clv_input_frame")
        return "data frame", "row"
    path, kind = _resolve_source(source)
    if kind == "parquet":
        scan = f"read_parquet({_literal(str(path))}, file_row_number = true)"
        con.execute(f"CREATE TEMP VIEW {_SRC} AS SELECT * EXCLUDE (file_row_number) FROM {scan}")
        con.execute(
            f"CREATE TEMP VIEW {_SRC_LINES} AS SELECT file_row_number + 1 AS line, * EXCLUDE (file_row_number) "
            f"FROM {scan}"
        )
        label = "row"
    else:
        # all_varchar: nothing is coerced (or silently nulled) before we validate it ourselves.
        scan = f"read_csv({_literal(str(path))}, all_varchar = true, header = true)"
        con.execute(f"CREATE TEMP VIEW {_SRC} AS SELECT * FROM {scan}")
        con.execute(f"CREATE TEMP VIEW {_SRC_LINES} AS SELECT row_number() OVER () + 1 AS line, * FROM {scan}")
        label = "line"
    try:
        con.execute(f"SELECT * FROM {_SRC} LIMIT 1").fetchall()
    except duckdb.Error as exc:
        raise DataError(f"{source}: cannot be read as {kind.upper()}: {str(exc).splitlines()[0]}") from None
    return str(source), label


def _column_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {row[0]: str(row[1]) for row in con.execute(f"DESCRIBE {_SRC}").fetchall()}


def _check_columns(types: dict[str, str], spec: DataConfig, label: str) -> None:
    wanted = {"data.customer_id": spec.customer_id, "data.date": spec.date}
    if spec.amount is not None:
        wanted["data.amount"] = spec.amount
    missing = [f"{key}={name!r}" for key, name in wanted.items() if name not in types]
    if missing:
        available = ", ".join(repr(c) for c in types if c != "line")
        raise DataError(
            f"{label}: column(s) not found: {', '.join(missing)}; the file has {available}",
            hint="set data.customer_id / data.date / data.amount to the file's column names",
        )


def _timestamp_expr(col: str, col_type: str, spec: DataConfig) -> tuple[str, str]:
    """SQL for (local timestamp, is-aware flag) of one row's date value."""
    tz = _literal(spec.timezone or "UTC")
    if col_type.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"timezone({tz}, {col})", "true"
    if col_type == "DATE" or col_type.startswith("TIMESTAMP"):
        return f"CAST({col} AS TIMESTAMP)", "false"
    raw = f"trim(CAST({col} AS VARCHAR))"
    if spec.date_format is not None:
        fmt = _literal(spec.date_format)
        if "%z" in spec.date_format or "%Z" in spec.date_format:
            return f"timezone({tz}, try_strptime({raw}, {fmt}))", "true"
        return f"try_strptime({raw}, {fmt})", "false"
    # A bare date (10 characters or fewer) can carry no offset: skip the regular expression and the timestamp parser.
    short = f"length({raw}) <= 10"
    aware = f"(NOT {short} AND regexp_matches({raw}, {_literal(_AWARE_PATTERN)}))"
    stamp = (
        f"CASE WHEN {short} THEN CAST(try_cast({raw} AS DATE) AS TIMESTAMP) "
        f"WHEN {aware} THEN timezone({tz}, try_cast({raw} AS TIMESTAMPTZ)) ELSE try_cast({raw} AS TIMESTAMP) END"
    )
    return stamp, aware


def _amount_expr(col: str, col_type: str) -> str:
    if col_type.split("(")[0] in _NUMERIC_TYPES:
        return f"CAST({col} AS DOUBLE)"
    return f"try_cast(trim(CAST({col} AS VARCHAR)) AS DOUBLE)"


def _parsed_columns(spec: DataConfig, types: dict[str, str]) -> str:
    """The SELECT list that parses one row: cid, ts, aware, amt, valid, and the raw text of date and amount."""
    cid, dcol = _quote(spec.customer_id), _quote(spec.date)
    stamp, aware = _timestamp_expr(dcol, types[spec.date], spec)
    if spec.amount is not None:
        acol = _quote(spec.amount)
        amount, raw_amount = _amount_expr(acol, types[spec.amount]), f"CAST({acol} AS VARCHAR)"
    else:
        amount, raw_amount = "CAST(1.0 AS DOUBLE)", "NULL"
    return f"""
        NULLIF(trim(CAST({cid} AS VARCHAR)), '') AS cid,
        {stamp} AS ts,
        {aware} AS aware,
        {amount} AS amt,
        CAST({dcol} AS VARCHAR) AS raw_date,
        {raw_amount} AS raw_amount
    """


_VALID = "cid IS NOT NULL AND ts IS NOT NULL AND amt IS NOT NULL AND isfinite(amt)"


def _parse(con: duckdb.DuckDBPyConnection, spec: DataConfig, types: dict[str, str]) -> None:
    """Materialise clv_parsed (cid, ts, aware, amt, valid) in one parallel scan, without line numbers."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_PARSED} AS
        SELECT cid, ts, aware, amt, {_VALID} AS valid
        FROM (SELECT {_parsed_columns(spec, types)} FROM {_SRC})
        """
    )


def _collect_problems(con: duckdb.DuckDBPyConnection, spec: DataConfig, types: dict[str, str]) -> None:
    """The diagnostic pass: parse again with line numbers, keeping the invalid rows with their raw values."""
    amount_col = _literal(spec.amount or "")
    amount_rules = (
        f"""
        UNION ALL
        SELECT line, cid, {amount_col}, raw_amount,
               CASE WHEN raw_amount IS NULL OR trim(raw_amount) = '' THEN 'missing amount'
                    WHEN amt IS NULL THEN 'not a number'
                    ELSE 'not a finite number' END
        FROM bad WHERE amt IS NULL OR NOT isfinite(amt)
        """
        if spec.amount is not None
        else ""
    )
    date_reason = _literal(f" in format {spec.date_format}" if spec.date_format else "")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_PROBLEMS} AS
        WITH bad AS (
            SELECT * FROM (SELECT line, {_parsed_columns(spec, types)} FROM {_SRC_LINES}) WHERE NOT ({_VALID})
        )
        SELECT * FROM (
            SELECT line, cid AS customer_id, {_literal(spec.customer_id)} AS "column", NULL AS value,
                   'missing customer id' AS reason
            FROM bad WHERE cid IS NULL
            UNION ALL
            SELECT line, cid, {_literal(spec.date)}, raw_date,
                   CASE WHEN raw_date IS NULL OR trim(raw_date) = '' THEN 'missing date'
                        ELSE 'not a date' || {date_reason} END
            FROM bad WHERE ts IS NULL
            {amount_rules}
        ) ORDER BY line, "column"
        """
    )


def _fill_problem_report(con: duckdb.DuckDBPyConnection, report: ValidationReport) -> None:
    counts = con.execute(f"SELECT reason, count(*) FROM {_PROBLEMS} GROUP BY 1 ORDER BY 2 DESC").fetchall()
    report.problems_by_reason = {str(r): int(n) for r, n in counts}
    rows = con.execute(f"SELECT * FROM {_PROBLEMS} LIMIT {_SHOWN_PROBLEMS}").fetchall()
    report.first_problems = [RowProblem(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
    (rejected,) = con.execute(f"SELECT count(DISTINCT line) FROM {_PROBLEMS}").fetchone() or (0,)
    report.rows_rejected = int(rejected)


def _write_rejected(con: duckdb.DuckDBPyConnection, target: str) -> None:
    """Write every problem to CSV through a temporary file, so the target is whole or absent."""
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".rejected-", suffix=".csv", dir=path.parent)
    os.close(fd)
    try:
        con.execute(f"COPY {_PROBLEMS} TO {_literal(tmp)} (HEADER, DELIMITER ',')")
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _problem_error(report: ValidationReport) -> DataError:
    reasons = ", ".join(f"{reason}: {n}" for reason, n in report.problems_by_reason.items())
    shown = "; ".join(p.describe(report.location) for p in report.first_problems[:5])
    return DataError(
        f"{report.source}: {report.rows_rejected} invalid row(s) of {report.rows_read} ({reasons}); first: {shown}",
        hint="fix those rows, or set data.invalid_rows: drop to leave them out "
        "(data.rejected_rows: PATH writes them all to a file)",
    )


def _check_awareness(
    con: duckdb.DuckDBPyConnection, spec: DataConfig, types: dict[str, str], report: ValidationReport
) -> None:
    n_aware, n_naive = con.execute(
        f"SELECT count(*) FILTER (aware), count(*) FILTER (NOT aware) FROM {_PARSED} WHERE ts IS NOT NULL"
    ).fetchone() or (0, 0)
    if n_aware and n_naive:
        lines = con.execute(
            f"""
            WITH parsed AS (SELECT line, {_parsed_columns(spec, types)} FROM {_SRC_LINES})
            SELECT (SELECT list(line ORDER BY line) FROM (SELECT line FROM parsed WHERE aware AND ts IS NOT NULL
                                                         ORDER BY line LIMIT 5)),
                   (SELECT list(line ORDER BY line) FROM (SELECT line FROM parsed WHERE NOT aware AND ts IS NOT NULL
                                                         ORDER BY line LIMIT 5))
            """
        ).fetchone() or ([], [])
        raise DataError(
            f"{report.source}: dates mix time-zone-aware and naive timestamps ({n_aware} aware, first at "
            f"{report.location}s {first_ids(lines[0])}; {n_naive} naive, first at {report.location}s "
            f"{first_ids(lines[1])})",
            hint="give every timestamp a UTC offset, or none, so that days are binned in one time zone",
        )
    report.aware_timestamps = bool(n_aware)


def _apply_returns(
    con: duckdb.DuckDBPyConnection, spec: DataConfig, types: dict[str, str], report: ValidationReport
) -> str:
    """Apply the non-positive amount policy; returns the row filter of the merge.

    `net`: negative rows (returns, refunds) are summed into the customer's day; a day whose net amount is
    negative is a return of an earlier purchase and is dropped; a day netting to zero stays a purchase day of zero
    value (CDNOW has such free purchases, and BTYD counts them). `drop`: rows with amount <= 0 are dropped.
    `fail`: any row with amount <= 0 is an error.
    """
    report.returns_policy = spec.returns
    if spec.amount is None:
        return ""
    n_zero, n_negative = con.execute(
        f"SELECT count(*) FILTER (amt = 0), count(*) FILTER (amt < 0) FROM {_PARSED} WHERE valid"
    ).fetchone() or (0, 0)
    n_nonpos = int(n_zero) + int(n_negative)
    report.returns.update(
        non_positive_rows=n_nonpos, zero_amount_rows=int(n_zero), negative_amount_rows=int(n_negative)
    )
    if n_nonpos and spec.returns == "fail":
        rows = con.execute(
            f"SELECT line, cid FROM (SELECT line, {_parsed_columns(spec, types)} FROM {_SRC_LINES}) "
            f"WHERE {_VALID} AND amt <= 0 ORDER BY line LIMIT 5"
        ).fetchall()
        shown = "; ".join(f"{report.location} {line} (customer {cid})" for line, cid in rows)
        raise DataError(
            f"{report.source}: {n_nonpos} row(s) with a non-positive amount (returns or refunds); first: {shown}",
            hint="set data.returns: net to net them within the customer's day, or drop to leave them out",
        )
    if spec.returns == "drop":
        report.returns["dropped_rows"] = int(n_nonpos)
        return "AND amt > 0"
    return ""


def _merge_days(con: duckdb.DuckDBPyConnection, spec: DataConfig, row_filter: str, report: ValidationReport) -> None:
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {TX_TABLE} AS
        SELECT cid AS customer_id, CAST(ts AS DATE) AS day, sum(amt) AS amount, count(*) AS n_rows
        FROM {_PARSED} WHERE valid {row_filter}
        GROUP BY 1, 2
        """
    )
    if spec.amount is not None and spec.returns == "net":
        dropped = con.execute(
            f"SELECT count(*), coalesce(sum(n_rows), 0) FROM {TX_TABLE} WHERE amount < 0"
        ).fetchone() or (0, 0)
        report.returns["days_dropped_net_negative"] = int(dropped[0])
        report.returns["rows_in_dropped_days"] = int(dropped[1])
        con.execute(f"DELETE FROM {TX_TABLE} WHERE amount < 0")
    kept = con.execute(f"SELECT count(*), coalesce(sum(n_rows), 0) FROM {TX_TABLE}").fetchone() or (0, 0)
    report.customer_days, report.rows_kept = int(kept[0]), int(kept[1])


def load_transactions(
    source: str | pd.DataFrame,
    spec: DataConfig,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Transactions:
    """Read, validate and clean a transaction log; raise DataError listing every problem (policy permitting).

    `source` is an embedded data set name, a CSV / Parquet path, or a frame; `spec` names the columns and the
    policies. The result's table has one row per customer and (business-time-zone) day, amounts summed.
    """
    con = con if con is not None else duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    label, location = _open_source(con, source)
    report = ValidationReport(source=label, location=location)  # type: ignore[arg-type]
    types = _column_types(con)
    _check_columns(types, spec, label)
    if spec.timezone is not None:
        try:
            con.execute(f"SELECT timezone({_literal(spec.timezone)}, TIMESTAMPTZ '2000-01-01 00:00:00+00')")
        except duckdb.Error:
            raise DataError(f"data.timezone {spec.timezone!r} is not a known IANA time zone") from None
    try:
        _parse(con, spec, types)
    except duckdb.Error as exc:
        raise DataError(f"{label}: cannot be parsed: {str(exc).splitlines()[0]}") from None
    (report.rows_read,) = con.execute(f"SELECT count(*) FROM {_PARSED}").fetchone() or (0,)
    if report.rows_read == 0:
        raise DataError(f"{label}: no transactions (the file has a header and no rows)")
    (invalid,) = con.execute(f"SELECT count(*) FILTER (NOT valid) FROM {_PARSED}").fetchone() or (0,)
    if invalid:
        _collect_problems(con, spec, types)
        _fill_problem_report(con, report)
        if spec.rejected_rows:
            _write_rejected(con, spec.rejected_rows)
        if spec.invalid_rows == "fail":
            raise _problem_error(report)
    _check_awareness(con, spec, types, report)
    row_filter = _apply_returns(con, spec, types, report)
    _merge_days(con, spec, row_filter, report)
    if report.customer_days == 0:
        raise DataError(f"{label}: no valid transactions left after cleaning")
    (integer_ids,) = con.execute(
        f"SELECT bool_and(regexp_full_match(customer_id, '-?[0-9]{{1,18}}')) FROM {TX_TABLE}"
    ).fetchone() or (False,)
    con.execute(f"DROP TABLE {_PARSED}")
    return Transactions(con=con, report=report, has_amount=spec.amount is not None, integer_ids=bool(integer_ids))
