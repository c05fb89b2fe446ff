"""Reading and validating a transaction log with DuckDB, out of core.

One path for every source: an embedded data set, a CSV file, a Parquet file or a pandas frame becomes a DuckDB
view with a line number; every row is parsed (customer id, date, amount, or quantity and price, and invoice) and
every problem is collected before anything is computed; the clean rows are merged to one row per customer and
day in the table `clv_tx` (customer_id, day, amount, n_rows), which the RFM summary and the data profile read.

The rules, in order, each counted in the ValidationReport so that every line read is accounted for:

1. Guest lines (no customer id) with `data.missing_customer: drop` are removed first and counted apart (lines,
   invoices, the value they carry net of their own cancellations); with `fail` (default) they are invalid rows.
2. Invalid rows (missing id, bad date, bad amount / quantity / price, missing invoice) are listed by line; more
   than `data.max_invalid_share` of the rows read fails the run whatever `data.invalid_rows` says. Before that,
   dates written day or month first need a `data.date_format`, and a format whose day/month swap parses more
   rows is refused (clv.data.date_formats); numbers follow `data.decimal`, `data.thousands` and
   `data.currency` (clv.data.numbers). Customer ids are text as written (trimmed only with `data.trim_ids`).
   Then duplicates follow `data.duplicates` (clv.data.duplicates).
3. Line items priced <= 0 follow `data.non_positive_price` (default drop: not purchases, no value).
4. With `data.invoice`, an invoice's lines are one transaction dated at its first timestamp; an invoice whose
   lines carry two customer ids is an error naming it.
5. Cancellation lines (invoice starting with `data.cancellation_prefix`, or a negative quantity) and negative
   amounts are never purchases; `data.returns` nets them against the customer's spend (clv.data.returns), drops
   them, or refuses them.

Line numbers count the header as line 1 of a CSV file (one record per line); for Parquet files and frames they
are 1-based row numbers.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import duckdb
import pandas as pd

from clv.config import DataConfig
from clv.data.datasets import EMBEDDED_DATASETS, dataset_path
from clv.data.date_formats import DateOrderFacts, check_date_order, date_order_facts, suggest_date_formats
from clv.data.duplicates import DuplicateCount, apply_duplicates
from clv.data.numbers import number_expr, suggest_number_settings
from clv.data.returns import DAYS_TABLE, MONEY, net_returns
from clv.errors import DataError, DataWarning, first_ids

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "FILE_COLUMN",
    "ROW_COLUMN",
    "SHARED_TID_COLUMN",
    "PartFacts",
    "RowProblem",
    "Transactions",
    "ValidationReport",
    "clean_part",
    "exact_sum",
    "invoice_problem",
    "load_transactions",
    "padded_ids_warning",
    "price_problem",
    "problem_cause",
    "problem_error",
    "returns_problem",
    "sql_date",
]

_SRC = "clv_src"
_SRC_LINES = "clv_src_lines"
_LINES = "clv_lines"
_PARSED = "clv_parsed"
_PROBLEMS = "clv_problems"
_READ_INVOICES = "clv_read_invoices"
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
_MISSING_ID = "missing customer id"
# Money is summed exactly as DECIMAL(38, 9) (clv.data.returns); values this large could overflow the sums.
_MAX_VALUE = 1e18
MIXED_ZONES_HINT = "give every timestamp a UTC offset, or none, so that days are binned in one time zone"


@dataclass(frozen=True)
class RowProblem:
    """One problem with one row: where, whose, which column, what value, and why."""

    line: int | None
    customer_id: str | None
    column: str
    value: str | None
    reason: str
    #: the file of the row, where the line is not known (a part of a log read by Spark, `clv.spark`)
    file: str | None = None

    def describe(self, location: str) -> str:
        who = f"customer {self.customer_id}" if self.customer_id is not None else "no customer id"
        where = f"{location} {self.line}" if self.line is not None else f"{location} of {self.file or 'the source'}"
        return f"{where} ({who}): {self.column} {self.value!r} {self.reason}"


@dataclass
class ValidationReport:
    """What reading and cleaning did, rule by rule, in rows (lines of a CSV file). Money is in the data's unit.

    `guest`: lines without a customer id dropped apart (lines, invoices, value, cancellation_lines);
    `cancellations`: the kept lines marked as cancellations (lines, invoices, value taken back, as a positive
    amount); `returns`: what the returns policy did (with `net`: return days, value netted and unmatched).
    """

    source: str
    location: Literal["line", "row"]
    rows_read: int = 0
    rows_rejected: int = 0
    problems_by_reason: dict[str, int] = field(default_factory=dict)
    first_problems: list[RowProblem] = field(default_factory=list)
    first_lines: dict[str, list[int]] = field(default_factory=dict)
    returns_policy: str = "net"
    returns: dict[str, float] = field(default_factory=dict)
    aware_timestamps: bool = False
    rows_kept: int = 0
    customer_days: int = 0
    customers: int = 0
    invoices: int | None = None
    invoices_kept: int | None = None
    customer_ids: int = 0
    guest: dict[str, float] = field(default_factory=dict)
    non_positive_price_policy: str | None = None
    non_positive_price_lines: int = 0
    cancellations: dict[str, float] = field(default_factory=dict)
    max_invalid_share: float = 0.01
    duplicates: DuplicateCount = field(default_factory=DuplicateCount)
    padded_ids: dict[str, object] = field(default_factory=dict)
    padded_first_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def same_day_merged(self) -> int:
        """Rows merged into another row of the same customer and day."""
        return self.rows_kept - self.customer_days

    @property
    def invalid_share(self) -> float:
        """Share of the rows read that are invalid (dropped under `invalid_rows: drop`)."""
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0

    def _duplicates_part(self) -> str | None:
        d = self.duplicates
        if not d.rows and not d.identical_invoice_lines:
            return None
        what = {"transaction_id": "repeating a transaction id", "invoice": "repeating an invoice whole"}
        verb = "dropped" if d.dropped else "kept (data.duplicates: keep)"
        text = f"{d.rows:,} duplicate {self.location}s ({what.get(d.key, 'identical to another')}) {verb}"
        if d.identical_invoice_lines:
            text += f"; {d.identical_invoice_lines:,} identical {self.location}s within an invoice kept"
        return text

    def summary_lines(self) -> list[str]:
        """One or two sentences for a person: what was read, kept and left out (money in the data's unit)."""
        loc = self.location
        read = f"read {self.rows_read:,} {loc}s" + (f" ({self.invoices:,} invoices)" if self.invoices else "")
        parts = [f"{read}: {self.customer_days:,} transactions (customer-days) of {self.customers:,} customers"]
        if self.rows_rejected:
            parts.append(f"{self.rows_rejected:,} invalid {loc}s dropped ({self.invalid_share:.2%} of those read)")
        duplicates = self._duplicates_part()
        if duplicates:
            parts.append(duplicates)
        if self.non_positive_price_lines:
            verb = "kept" if self.non_positive_price_policy == "keep" else "dropped"
            parts.append(f"{self.non_positive_price_lines:,} {loc}s priced <= 0 {verb}")
        if self.cancellations.get("lines"):
            c = self.cancellations
            invoices = f" on {c['invoices']:,.0f} invoices" if "invoices" in c else ""
            value = f" taking back {c['value']:,.2f}" if "value" in c else ""
            parts.append(f"{c['lines']:,.0f} cancellation {loc}s{invoices}{value}")
        r = self.returns
        if self.returns_policy == "net" and r.get("return_value"):
            parts.append(
                f"{r['return_days']:,.0f} return day{'s' if r['return_days'] != 1 else ''}: "
                f"{r['netted_value']:,.2f} taken off earlier purchases, "
                f"{r['unmatched_value']:,.2f} unmatched"
            )
        elif r.get("dropped_rows"):
            parts.append(f"{r['dropped_rows']:,.0f} return or cancellation {loc}s dropped")
        lines = ["; ".join(parts)]
        if self.guest.get("lines"):
            g = self.guest
            value = f" carrying {g['value']:,.2f}" if "value" in g else ""
            lines.append(f"{g['lines']:,.0f} guest {loc}s (no customer id) dropped{value} (not in the forecast)")
        return lines


@dataclass
class Transactions:
    """Validated transactions in DuckDB: table `clv_tx` holds one row per customer (id as text, as written)
    and day."""

    con: duckdb.DuckDBPyConnection
    report: ValidationReport
    has_amount: bool
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
        what = "a folder, not a file" if path.is_dir() else "no such file, and not an embedded data set"
        raise DataError(
            f"data.source {source!r}: {what}",
            hint=f"give a CSV or Parquet path (relative to the working directory) or one of: {known}",
        )
    suffixes = "".join(path.suffixes).lower()
    if ".parquet" in suffixes or suffixes.endswith(".pq"):
        return path, "parquet"
    return path, "csv"


def _csv_scan(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """The read_csv call of a CSV file, every column as text: nothing is coerced (or silently nulled) before we
    validate it ourselves. The dialect is sniffed once and written out, so that the views over the file do not
    sniff it again each time a query binds them (0.2 s a time on a compressed 500,000-line file)."""
    auto = f"read_csv({_literal(str(path))}, all_varchar = true, header = true)"
    try:
        row = con.execute(
            "SELECT Delimiter, Quote, Escape, NewLineDelimiter, SkipRows, Columns "
            f"FROM sniff_csv({_literal(str(path))}, header = true)"
        ).fetchone()
    except duckdb.Error:
        return auto  # reading it fails the same way, with the message _open_source reports
    if row is None:
        return auto
    delim, quote, escape, newline, skip, columns = row
    dialect = {"delim": delim, "quote": quote, "escape": escape, "new_line": newline}
    options = ", ".join(f"{key} = {_literal('' if v == '(empty)' else str(v))}" for key, v in dialect.items())
    names = ", ".join(f"{_literal(c['name'])}: 'VARCHAR'" for c in columns)
    return (
        f"read_csv({_literal(str(path))}, auto_detect = false, header = true, skip = {int(skip)}, {options}, "
        f"columns = {{{names}}})"
    )


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
        scan = _csv_scan(con, path)
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


def _columns_of(spec: DataConfig) -> dict[str, str]:
    """The config keys that name columns, with the names (those that are set)."""
    keys = ("customer_id", "date", "amount", "quantity", "price", "invoice", "transaction_id")
    return {f"data.{key}": getattr(spec, key) for key in keys if getattr(spec, key) is not None}


def _check_columns(types: dict[str, str], spec: DataConfig, label: str) -> None:
    missing = [f"{key}={name!r}" for key, name in _columns_of(spec).items() if name not in types]
    if missing:
        available = ", ".join(repr(c) for c in types if c != "line")
        raise DataError(
            f"{label}: column(s) not found: {', '.join(missing)}; the file has {available}",
            hint="set " + " / ".join(_columns_of(spec)) + " to the file's column names",
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


def _amount_expr(col: str, col_type: str, spec: DataConfig) -> str:
    """SQL for a number column: numeric types as they are, text by the separators rule (clv.data.numbers)."""
    if col_type.split("(")[0] in _NUMERIC_TYPES:
        return f"CAST({col} AS DOUBLE)"
    return number_expr(f"CAST({col} AS VARCHAR)", spec)


def _number_columns(name: str | None, alias: str, types: dict[str, str], spec: DataConfig) -> str:
    """The parsed number and its raw text, as `alias` and `raw_alias` (NULL when the column is not set)."""
    if name is None:
        return f"CAST(NULL AS DOUBLE) AS {alias}, CAST(NULL AS VARCHAR) AS raw_{alias}"
    col = _quote(name)
    return f"{_amount_expr(col, types[name], spec)} AS {alias}, CAST({col} AS VARCHAR) AS raw_{alias}"


def _id_expr(col: str, col_type: str, trim: bool) -> str:
    """SQL for a customer id as text, exactly as written (Identity is sacred, STYLE 17): a text id keeps its
    zeros and, unless `trim`, its spaces; an integer column is its decimal text; a float column holding whole
    numbers (an integer column with gaps, as pandas stores it) is the integer's text, not '509.0'. An empty or
    blank id is missing."""
    if col_type in ("FLOAT", "DOUBLE"):
        whole = f"CAST(CAST({col} AS HUGEINT) AS VARCHAR)"
        text = f"CASE WHEN {col} = trunc({col}) THEN {whole} ELSE CAST({col} AS VARCHAR) END"
    else:
        text = f"CAST({col} AS VARCHAR)"
    return f"CASE WHEN trim({text}) = '' THEN NULL ELSE {f'trim({text})' if trim else text} END"


def _tid_expr(spec: DataConfig) -> str:
    """SQL: the row's transaction id as the duplicate rule reads it (trimmed text, NULL when empty or unset)."""
    if spec.transaction_id is None:
        return "CAST(NULL AS VARCHAR)"
    return f"NULLIF(trim(CAST({_quote(spec.transaction_id)} AS VARCHAR)), '')"


def _base_columns(spec: DataConfig, types: dict[str, str]) -> str:
    """The SELECT list that reads one row: cid, ts, aware, the numbers with their raw text, inv, raw_date, tid
    (the transaction id) and row_hash (of every column of the row, for the duplicate rule)."""
    cid, dcol = _quote(spec.customer_id), _quote(spec.date)
    stamp, aware = _timestamp_expr(dcol, types[spec.date], spec)
    inv = f"NULLIF(trim(CAST({_quote(spec.invoice)} AS VARCHAR)), '')" if spec.invoice else "CAST(NULL AS VARCHAR)"
    tid = _tid_expr(spec)
    row_hash = "hash(" + ", ".join(_quote(c) for c in types) + ")"
    return f"""
        {_id_expr(cid, types[spec.customer_id], spec.trim_ids)} AS cid,
        {tid} AS tid,
        {row_hash} AS row_hash,
        {stamp} AS ts,
        {aware} AS aware,
        {_number_columns(spec.amount, "amount", types, spec)},
        {_number_columns(spec.quantity, "qty", types, spec)},
        {_number_columns(spec.price, "price", types, spec)},
        {inv} AS inv,
        CAST({dcol} AS VARCHAR) AS raw_date
    """


def _cancel_expr(spec: DataConfig) -> str:
    """SQL for: the line is marked as a cancellation (invoice prefix or negative quantity)."""
    marks = []
    if spec.cancellation_prefix is not None:
        marks.append(f"coalesce(starts_with(inv, {_literal(spec.cancellation_prefix)}), false)")
    if spec.quantity is not None:
        marks.append("coalesce(qty < 0, false)")
    return " OR ".join(marks) or "false"


def _value_expr(spec: DataConfig) -> str:
    """SQL for a line's value: amount, quantity x price, or (no money) 1 a purchase line and 0 a cancellation."""
    if spec.line_items:
        return "qty * price"
    if spec.amount is not None:
        return "amount"
    return f"CASE WHEN {_cancel_expr(spec)} THEN 0.0 ELSE 1.0 END"


def _valid_expr(spec: DataConfig) -> str:
    rule = f"cid IS NOT NULL AND ts IS NOT NULL AND amt IS NOT NULL AND isfinite(amt) AND abs(amt) < {_MAX_VALUE}"
    return rule + (" AND inv IS NOT NULL" if spec.invoice is not None else "")


def _parsed_select(spec: DataConfig, types: dict[str, str], source: str, line: bool) -> str:
    """A SELECT of every row parsed: cid, ts, aware, amt (the value), qty, price, inv, cancel, valid, the raw
    texts, and with `line` the line number."""
    inner = f"SELECT {'line, ' if line else ''}{_base_columns(spec, types)} FROM {source}"
    value = f"SELECT *, {_value_expr(spec)} AS amt FROM ({inner})"
    return f"SELECT *, {_cancel_expr(spec)} AS cancel, {_valid_expr(spec)} AS valid FROM ({value})"


def _parse(con: duckdb.DuckDBPyConnection, spec: DataConfig, types: dict[str, str]) -> None:
    """Materialise clv_parsed in one parallel scan, without line numbers; and the view clv_lines, the same with
    line numbers for the diagnostics (without the guest lines when they are dropped)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_PARSED} AS
        SELECT cid, tid, row_hash, ts, aware, amt, price, inv, cancel, valid
        FROM ({_parsed_select(spec, types, _SRC, False)})
        """
    )
    guests = " WHERE cid IS NOT NULL" if spec.missing_customer == "drop" else ""
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {_LINES} AS "
        f"SELECT * FROM ({_parsed_select(spec, types, _SRC_LINES, True)}){guests}"
    )


def _money_sum(condition: str) -> str:
    """SQL: the exact sum of the values of the rows meeting `condition` (0 when none)."""
    return f"coalesce(sum(CAST(amt AS {MONEY})) FILTER ({condition}), 0)"


def _drop_guests(con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport) -> None:
    """`data.missing_customer: drop`: remove the lines without a customer id before validation, counted apart
    with the invoices they make and the value they carry (net of their own cancellations; without the lines
    priced <= 0 when `data.non_positive_price` drops those, as for the identified customers)."""
    if spec.missing_customer != "drop":
        return
    good = f"isfinite(amt) AND abs(amt) < {_MAX_VALUE}"
    if spec.line_items and spec.non_positive_price == "drop":
        good += " AND price > 0"
    row = con.execute(
        f"SELECT count(*), count(DISTINCT inv), {_money_sum(good)}, count(*) FILTER (cancel) "
        f"FROM {_PARSED} WHERE cid IS NULL"
    ).fetchone() or (0, 0, 0, 0)
    guest: dict[str, float] = {"lines": int(row[0])}
    if spec.invoice is not None:
        guest["invoices"] = int(row[1])
    if spec.has_values:
        guest["value"] = float(row[2])
    guest["cancellation_lines"] = int(row[3])
    report.guest = guest
    if guest["lines"]:
        con.execute(f"DELETE FROM {_PARSED} WHERE cid IS NULL")


def _number_rules(column: str | None, alias: str) -> str:
    """Problem rules of one number column: missing, not a number, not finite."""
    if column is None:
        return ""
    return f"""
        UNION ALL
        SELECT line, cid, {_literal(column)}, raw_{alias},
               CASE WHEN raw_{alias} IS NULL OR trim(raw_{alias}) = '' THEN 'missing {alias.replace("qty", "quantity")}'
                    WHEN {alias} IS NULL THEN 'not a number'
                    ELSE 'not a finite number' END
        FROM bad WHERE {alias} IS NULL OR NOT isfinite({alias})
    """


def _value_rules(spec: DataConfig) -> str:
    """Problem rules of the value (too large to sum exactly) and of the invoice (missing)."""
    rules = ""
    if spec.has_values:
        column = spec.amount or f"{spec.quantity} x {spec.price}"
        inputs = "isfinite(amount)" if spec.amount is not None else "isfinite(qty) AND isfinite(price)"
        too_large = f"out of range (magnitude {_MAX_VALUE:.0e} or more)"
        rules += f"""
            UNION ALL
            SELECT line, cid, {_literal(column)}, CAST(amt AS VARCHAR), {_literal(too_large)}
            FROM bad WHERE {inputs} AND NOT (isfinite(amt) AND abs(amt) < {_MAX_VALUE})
        """
    if spec.invoice is not None:
        rules += f"""
            UNION ALL
            SELECT line, cid, {_literal(spec.invoice)}, NULL, 'missing invoice' FROM bad WHERE inv IS NULL
        """
    return rules


def _collect_problems(con: duckdb.DuckDBPyConnection, spec: DataConfig) -> None:
    """The diagnostic pass: parse again with line numbers, keeping the invalid rows with their raw values."""
    date_reason = _literal(f" in format {spec.date_format}" if spec.date_format else "")
    numbers = "".join(
        _number_rules(column, alias)
        for column, alias in ((spec.amount, "amount"), (spec.quantity, "qty"), (spec.price, "price"))
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_PROBLEMS} AS
        WITH bad AS (SELECT * FROM {_LINES} WHERE NOT valid)
        SELECT * FROM (
            SELECT line, cid AS customer_id, {_literal(spec.customer_id)} AS "column", NULL AS value,
                   '{_MISSING_ID}' AS reason
            FROM bad WHERE cid IS NULL
            UNION ALL
            SELECT line, cid, {_literal(spec.date)}, raw_date,
                   CASE WHEN raw_date IS NULL OR trim(raw_date) = '' THEN 'missing date'
                        ELSE 'not a date' || {date_reason} END
            FROM bad WHERE ts IS NULL
            {numbers}
            {_value_rules(spec)}
        ) ORDER BY line, "column"
        """
    )


def _fill_problem_report(con: duckdb.DuckDBPyConnection, report: ValidationReport) -> None:
    counts = con.execute(f"SELECT reason, count(*) FROM {_PROBLEMS} GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    report.problems_by_reason = {str(r): int(n) for r, n in counts}
    rows = con.execute(f"SELECT * FROM {_PROBLEMS} LIMIT {_SHOWN_PROBLEMS}").fetchall()
    report.first_problems = [RowProblem(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
    lines = con.execute(f"SELECT reason, list(line ORDER BY line)[1:6] FROM {_PROBLEMS} GROUP BY 1").fetchall()
    report.first_lines = {str(r): [int(x) for x in ls] for r, ls in lines}
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


def _problem_values(con: duckdb.DuckDBPyConnection, condition: str) -> list[str]:
    """Up to 2,000 raw values of the problems meeting `condition`, in line order."""
    (values,) = con.execute(
        f"SELECT list(value ORDER BY line)[1:2000] FROM {_PROBLEMS} WHERE value IS NOT NULL AND ({condition})"
    ).fetchone() or ([],)
    return [str(v) for v in values or []]


def problem_cause(con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport) -> str | None:
    """When most problems are dates or numbers that do not parse, what to set: data.date_format (with the
    formats that parse the values seen), or data.decimal / data.thousands / data.currency. Only when a setting
    would read the values, or when every row fails (then the reading, not the rows, is the likely fault)."""
    counts = report.problems_by_reason
    dates = sum(n for r, n in counts.items() if r.startswith("not a date"))
    numbers = counts.get("not a number", 0)
    every = report.rows_rejected == report.rows_read
    if max(dates, numbers) * 2 < report.rows_rejected:
        return None
    if dates >= numbers:
        values = _problem_values(con, "reason LIKE 'not a date%'")
        found = suggest_date_formats(con, values)
        if not found and not every:
            return None
        shown = ", ".join(repr(v) for v in values[:3])
        given = f"data.date_format {spec.date_format!r}" if spec.date_format else "ISO dates (no data.date_format)"
        best = " or ".join(f"{f!r} ({n:,} of the first {len(values):,})" for f, n in found[:2])
        return f"dates like {shown} do not parse as {given}: " + (
            f"set data.date_format, e.g. {best}" if found else "set data.date_format to their strptime format"
        )
    return suggest_number_settings(_problem_values(con, "reason = 'not a number'"), spec, every)


def problem_error(
    report: ValidationReport, cause: str | None = None, over_share: float | None = None, drop: bool = False
) -> DataError:
    """The invalid rows as one error: counts by reason, the first rows, and what to do. `over_share`: the
    data.max_invalid_share the rows exceed (then dropping them alone is no remedy, and the hint does not offer
    it); `drop`: data.invalid_rows is drop already."""
    reasons = ", ".join(f"{reason}: {n:,}" for reason, n in report.problems_by_reason.items())
    shown = "; ".join(p.describe(report.location) for p in report.first_problems[:5])
    loc = report.location
    count = f"{report.rows_rejected:,} invalid row(s) of {report.rows_read:,}"
    if over_share is not None:
        count += f" ({report.invalid_share:.1%}, more than data.max_invalid_share {over_share:.1%})"
    message = f"{report.source}: {count} ({reasons}); first: {shown}"
    hint = "fix those rows, or set data.invalid_rows: drop to leave them out"
    if over_share is not None:
        every = report.rows_rejected == report.rows_read
        also = "" if drop else "set data.invalid_rows: drop and "
        hint = "fix those rows" + (
            "" if every else f", or {also}raise data.max_invalid_share if losing them is acceptable"
        )
    hint += " (data.rejected_rows: PATH writes them all to a file)"
    if cause is not None:
        hint = f"{cause}; otherwise {hint}"
    missing = report.problems_by_reason.get(_MISSING_ID, 0)
    if missing:
        lines = report.first_lines.get(_MISSING_ID, [])
        files = sorted({p.file or report.source for p in report.first_problems if p.reason == _MISSING_ID})
        where = f"{loc}s {first_ids(lines)}" if lines else f"{loc}s of {first_ids(files, 3)}"
        message += f"; {missing:,} {loc}(s) lack a customer id (first at {where})"
        hint = (
            "if lines without a customer id are guest purchases, set data.missing_customer: drop (they are "
            "counted apart, with their value, and left out of the forecast); otherwise " + hint
        )
    return DataError(message, hint=hint)


def _validate(con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport) -> None:
    """Count the invalid rows; list them (and write them to data.rejected_rows); fail or drop them. A share of
    the rows read above data.max_invalid_share fails whatever the policy (rows are never lost silently,
    STYLE 17), with a hint at the likely cause rather than at dropping them."""
    report.max_invalid_share = spec.max_invalid_share
    (invalid,) = con.execute(f"SELECT count(*) FILTER (NOT valid) FROM {_PARSED}").fetchone() or (0,)
    if not invalid:
        return
    _collect_problems(con, spec)
    _fill_problem_report(con, report)
    if spec.rejected_rows:
        _write_rejected(con, spec.rejected_rows)
    over = report.invalid_share > spec.max_invalid_share
    if over or spec.invalid_rows == "fail":
        cause = problem_cause(con, spec, report) if over else None
        raise problem_error(report, cause, spec.max_invalid_share if over else None, spec.invalid_rows == "drop")
    con.execute(f"DELETE FROM {_PARSED} WHERE NOT valid")


def _first_lines(con: duckdb.DuckDBPyConnection, condition: str, report: ValidationReport) -> str:
    """'line 3 (customer 1); line 7 (customer 2)': the first valid rows meeting `condition`."""
    rows = con.execute(f"SELECT line, cid FROM {_LINES} WHERE valid AND ({condition}) ORDER BY line LIMIT 5").fetchall()
    return "; ".join(f"{report.location} {line} (customer {cid})" for line, cid in rows)


def _check_padded_ids(con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport) -> None:
    """Ids with leading or trailing spaces are kept as written unless data.trim_ids: a loud warning with the
    count, the first ids, and how many equal another id once trimmed (two customers that may be one)."""
    if spec.trim_ids:
        return
    row = con.execute(
        f"""
        SELECT count(*), count(DISTINCT cid), (list(DISTINCT cid ORDER BY cid))[1:5],
               (SELECT count(DISTINCT p.cid) FROM {_PARSED} p SEMI JOIN {_PARSED} q ON trim(p.cid) = q.cid
                WHERE p.cid <> trim(p.cid))
        FROM {_PARSED} WHERE cid <> trim(cid)
        """
    ).fetchone() or (0, 0, [], 0)
    rows, ids, first, twins = row
    if not rows:
        return
    report.padded_ids = {"rows": int(rows), "ids": int(ids), "equal_to_another_once_trimmed": int(twins)}
    report.padded_first_ids = [str(i) for i in first or []]
    report.warnings.append(padded_ids_warning(report))


def padded_ids_warning(report: ValidationReport) -> str:
    """The warning on ids kept with their spaces, from `report.padded_ids`."""
    padded = report.padded_ids
    rows, ids, twins = (int(str(padded[k])) for k in ("rows", "ids", "equal_to_another_once_trimmed"))
    shown = ", ".join(repr(i) for i in report.padded_first_ids)
    twin_text = f"; {twins:,} of them equal another id once trimmed (now two customers)" if twins else ""
    return (
        f"{rows:,} {report.location}(s) have a customer id with leading or trailing spaces ({ids:,} ids, first: "
        f"{shown}); they are kept as written{twin_text}; set data.trim_ids: true to trim them"
    )


def _check_awareness(con: duckdb.DuckDBPyConnection, report: ValidationReport, decide: bool = True) -> tuple[int, int]:
    """The time-zone-aware and naive rows; a mix of both is refused (unless `decide=False`: a part of a log)."""
    n_aware, n_naive = con.execute(
        f"SELECT count(*) FILTER (aware), count(*) FILTER (NOT aware) FROM {_PARSED}"
    ).fetchone() or (0, 0)
    if n_aware and n_naive and decide:
        lines = con.execute(
            f"""
            SELECT (SELECT list(line ORDER BY line) FROM (SELECT line FROM {_LINES} WHERE valid AND aware
                                                         ORDER BY line LIMIT 5)),
                   (SELECT list(line ORDER BY line) FROM (SELECT line FROM {_LINES} WHERE valid AND NOT aware
                                                         ORDER BY line LIMIT 5))
            """
        ).fetchone() or ([], [])
        raise DataError(
            f"{report.source}: dates mix time-zone-aware and naive timestamps ({n_aware} aware, first at "
            f"{report.location}s {first_ids(lines[0])}; {n_naive} naive, first at {report.location}s "
            f"{first_ids(lines[1])})",
            hint=MIXED_ZONES_HINT,
        )
    report.aware_timestamps = bool(n_aware)
    return int(n_aware), int(n_naive)


def price_problem(spec: DataConfig, report: ValidationReport, first: str) -> DataError:
    """The refusal of line items priced <= 0 under `data.non_positive_price: fail` (`first`: the first rows)."""
    return DataError(
        f"{report.source}: {report.non_positive_price_lines} {report.location}(s) with a price <= 0 ({spec.price}); "
        f"first: {first}",
        hint="set data.non_positive_price: drop to leave them out (not purchases, no value), or keep",
    )


def _apply_price_policy(
    con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport, decide: bool = True
) -> None:
    """Line items priced <= 0 (adjustments, samples, postage corrections): drop (not purchases, no value),
    keep (their value quantity x price counts, a negative one as a return), or fail (not with `decide=False`)."""
    if not spec.line_items:
        return
    report.non_positive_price_policy = spec.non_positive_price
    (n,) = con.execute(f"SELECT count(*) FROM {_PARSED} WHERE price <= 0").fetchone() or (0,)
    report.non_positive_price_lines = int(n)
    if n and spec.non_positive_price == "fail" and decide:
        raise price_problem(spec, report, _first_lines(con, "price <= 0", report))
    if n and spec.non_positive_price == "drop":
        con.execute(f"DELETE FROM {_PARSED} WHERE price <= 0")


def invoice_problem(
    spec: DataConfig, report: ValidationReport, count: int, first: list[tuple[str, list[str]]]
) -> DataError:
    """The refusal of `count` invoices whose lines carry more than one customer id (`first`: invoice, ids)."""
    shown = "; ".join(f"{inv} (customers {first_ids(ids, 3)})" for inv, ids in first)
    return DataError(
        f"{report.source}: {count} invoice(s) carry lines of more than one customer id; first: {shown}",
        hint=f"an invoice is one customer's transaction: fix those invoices, or leave data.invoice unset to "
        f"group lines by customer and day (column {spec.invoice!r})",
    )


def _check_invoices(
    con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport, decide: bool = True
) -> None:
    """An invoice is one transaction of one customer: an invoice whose lines carry two ids is an error (judged
    by the caller with `decide=False`: a part of a log)."""
    if spec.invoice is None:
        return
    rows = con.execute(
        f"""
        SELECT inv, list(DISTINCT cid ORDER BY cid) AS ids, count(*) OVER () FROM {_PARSED}
        GROUP BY inv HAVING count(DISTINCT cid) > 1 ORDER BY inv LIMIT 5
        """
    ).fetchall()
    if rows and decide:
        raise invoice_problem(spec, report, int(rows[0][2]), [(str(inv), list(ids)) for inv, ids, _ in rows])
    (kept,) = con.execute(f"SELECT count(DISTINCT inv) FROM {_PARSED}").fetchone() or (0,)
    report.invoices_kept = int(kept)


def _count_cancellations(con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport) -> None:
    if spec.cancellation_prefix is None and spec.quantity is None:
        return
    row = con.execute(
        f"SELECT count(*) FILTER (cancel), count(DISTINCT inv) FILTER (cancel), -{_money_sum('cancel')} FROM {_PARSED}"
    ).fetchone() or (0, 0, 0)
    cancellations: dict[str, float] = {"lines": int(row[0])}
    if spec.invoice is not None:
        cancellations["invoices"] = int(row[1])
    if spec.has_values:
        cancellations["value"] = float(row[2])
    report.cancellations = cancellations


def returns_problem(report: ValidationReport, count: int, first: str) -> DataError:
    """The refusal of returns under `data.returns: fail` (`first`: the first rows)."""
    return DataError(
        f"{report.source}: {count} row(s) with a non-positive amount or marked as cancellations (returns or "
        f"refunds); first: {first}",
        hint="set data.returns: net to net them against the customer's spend, or drop to leave them out",
    )


def _apply_returns(
    con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport, decide: bool = True
) -> int:
    """Count the returns (rows of value <= 0, and cancellation lines); fail on them, drop them, or leave them
    to be netted (`net`, clv.data.returns). A zero-value purchase line is a return only to `drop` and `fail`."""
    report.returns_policy = spec.returns
    returned = "cancel OR amt <= 0" if spec.has_values else "cancel"
    row = con.execute(
        f"SELECT count(*) FILTER (NOT cancel AND amt = 0), count(*) FILTER (NOT cancel AND amt < 0), "
        f"count(*) FILTER ({returned}) FROM {_PARSED}"
    ).fetchone() or (0, 0, 0)
    if spec.has_values:
        report.returns.update(
            non_positive_rows=int(row[0]) + int(row[1]), zero_amount_rows=int(row[0]), negative_amount_rows=int(row[1])
        )
    n = int(row[2])
    if n and spec.returns == "fail" and decide:
        raise returns_problem(report, n, _first_lines(con, returned, report))
    if spec.returns == "drop":
        report.returns["dropped_rows"] = n
        con.execute(f"DELETE FROM {_PARSED} WHERE {returned}")
    return n


def _merge_days(con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport) -> None:
    """Lines to customer days (an invoice's lines on the day of its first timestamp), then the purchase days to
    clv_tx, with the return days netted into them under `returns: net`."""
    stamp = "min(ts) OVER (PARTITION BY inv)" if spec.invoice is not None else "ts"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {DAYS_TABLE} AS
        SELECT customer_id, day, value, n_rows, purchase_lines AND value >= 0 AS purchase FROM (
            SELECT cid AS customer_id, CAST(stamp AS DATE) AS day, sum(CAST(amt AS {MONEY})) AS value,
                   count(*) AS n_rows, bool_or(NOT cancel AND amt >= 0) AS purchase_lines
            FROM (SELECT cid, amt, cancel, {stamp} AS stamp FROM {_PARSED})
            GROUP BY 1, 2
        )
        """
    )
    counts = net_returns(con, TX_TABLE)
    if spec.returns == "net":
        report.returns.update(counts)
    con.execute(f"DROP TABLE {DAYS_TABLE}")
    kept = con.execute(
        f"SELECT count(*), coalesce(sum(n_rows), 0), count(DISTINCT customer_id) FROM {TX_TABLE}"
    ).fetchone() or (0, 0, 0)
    report.customer_days, report.rows_kept, report.customers = int(kept[0]), int(kept[1]), int(kept[2])


def _count_read(con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport) -> None:
    """Lines read, the invoices they make and the customer ids they name."""
    row = con.execute(f"SELECT count(*), count(DISTINCT inv), count(DISTINCT cid) FROM {_PARSED}").fetchone()
    assert row is not None
    report.rows_read, report.customer_ids = int(row[0]), int(row[2])
    if spec.invoice is not None:
        report.invoices = int(row[1])
    if report.rows_read == 0:
        raise DataError(
            f"{report.source}: no transactions (the file has a header and no rows)",
            hint="check that data.source is the export with its rows (not an empty or truncated copy)",
        )


def _check_time_zone(con: duckdb.DuckDBPyConnection, spec: DataConfig) -> None:
    if spec.timezone is not None:
        try:
            con.execute(f"SELECT timezone({_literal(spec.timezone)}, TIMESTAMPTZ '2000-01-01 00:00:00+00')")
        except duckdb.Error:
            raise DataError(f"data.timezone {spec.timezone!r} is not a known IANA time zone") from None


def load_transactions(
    source: str | pd.DataFrame,
    spec: DataConfig,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Transactions:
    """Read, validate and clean a transaction log; raise DataError listing every problem (policy permitting).

    `source` is an embedded data set name, a CSV / Parquet path, or a frame; `spec` names the columns and the
    policies. The result's table has one row per customer and (business-time-zone) day, amounts summed, returns
    netted (see the module docstring for the rules, in order).
    """
    con = con if con is not None else duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    label, location = _open_source(con, source)
    report = ValidationReport(source=label, location=location)  # type: ignore[arg-type]
    types = _column_types(con)
    _check_columns(types, spec, label)
    _check_time_zone(con, spec)
    if types[spec.date] == "VARCHAR":
        raw_date = f"trim({_quote(spec.date)})"
        check_date_order(con, raw_date, _SRC, spec.date_format, label, spec.date)
    try:
        _parse(con, spec, types)
    except duckdb.Error as exc:
        raise DataError(f"{label}: cannot be parsed: {str(exc).splitlines()[0]}") from None
    _count_read(con, spec, report)
    _drop_guests(con, spec, report)
    _validate(con, spec, report)
    report.duplicates = apply_duplicates(con, _PARSED, spec, label)
    _check_padded_ids(con, spec, report)
    _check_awareness(con, report)
    _apply_price_policy(con, spec, report)
    _check_invoices(con, spec, report)
    _count_cancellations(con, spec, report)
    _apply_returns(con, spec, report)
    _merge_days(con, spec, report)
    if report.customer_days == 0:
        raise DataError(f"{label}: no valid transactions left after cleaning")
    con.execute(f"DROP TABLE {_PARSED}")
    for message in report.warnings:
        warnings.warn(message, DataWarning, stacklevel=2)
    return Transactions(con=con, report=report, has_amount=spec.has_values)


def sql_date(value: dt.date) -> str:
    """`value` as a SQL date literal for the queries on a `Transactions` table: DATE '2026-01-31'."""
    return f"DATE '{value.isoformat()}'"


def exact_sum(expression: str, decimals: int, where: str | None = None) -> str:
    """SQL for the sum of a DOUBLE `expression` that is the same on every run: each value rounded to `decimals`
    places and added exactly as a DECIMAL(38, decimals), then a DOUBLE. DuckDB's parallel `sum` of doubles adds
    a group's values in an order that depends on the threads' scheduling, so its last bit varies between runs;
    an exact sum has no order. Money takes 9 places (the reading's own DECIMAL(38, 9), which a day's DOUBLE value
    returns to exactly); logs 18 (each within 5e-19 of the double). `where`: the rows summed (a FILTER)."""
    only = f" FILTER (WHERE {where})" if where else ""
    return f"CAST(sum(CAST({expression} AS DECIMAL(38, {decimals}))){only} AS DOUBLE)"


#: the columns a part of a log carries besides the source's own (`clv.spark`): a row id unique in the whole log,
#: and the row's file
ROW_COLUMN = "__clv_row"
FILE_COLUMN = "__clv_file"
#: and, when some transaction id is on the rows of two customer ids, whether the row's id is such an id
SHARED_TID_COLUMN = "__clv_shared_tid"


@dataclass
class PartFacts:
    """What cleaning a part of a log found that only the whole log can judge (`clean_part`). The parts' facts,
    like their reports, add up to the whole log's (`clv.spark.data`)."""

    date_order: DateOrderFacts = field(default_factory=DateOrderFacts)
    aware: int = 0
    naive: int = 0
    first_aware: list[str] = field(default_factory=list)
    first_naive: list[str] = field(default_factory=list)
    first_non_positive_price: list[str] = field(default_factory=list)
    returned: int = 0
    first_returned: list[str] = field(default_factory=list)
    #: invoice, customers: each invoice read in the part with the customer ids its kept lines carry there (none
    #: when every line of it there was left out)
    invoices: pd.DataFrame | None = None
    #: every problem of the part's invalid rows: line (the row id), customer_id, column, value, reason, file
    problems: pd.DataFrame | None = None
    #: tid, n, customers, conflict: each transaction id of the part's valid rows that is also on another
    #: customer id's rows in the log (SHARED_TID_COLUMN), with its rows here, their customer ids, and whether
    #: they differ (the duplicate rule's conflict within the part)
    shared_tids: pd.DataFrame | None = None


def _first_customers(con: duckdb.DuckDBPyConnection, condition: str) -> list[str]:
    rows = con.execute(f"SELECT DISTINCT cid FROM {_PARSED} WHERE {condition} ORDER BY cid LIMIT 5").fetchall()
    return [str(r[0]) for r in rows]


def clean_part(
    table: pa.Table, spec: DataConfig, label: str
) -> tuple[ValidationReport, Transactions | None, PartFacts]:
    """Read, validate and clean a part of a log exactly as `load_transactions` does, judging nothing that needs
    the whole log: invalid rows are listed and left out whatever the policy; the refusals (invalid rows,
    duplicates, prices <= 0, returns, mixed time zones, invoices of two customers, the date order) are left to
    the caller, with the facts they rest on; nothing is warned. `table` is a pyarrow Table of the source's
    columns with ROW_COLUMN and FILE_COLUMN, holding every row of its customers (the parts split the customers,
    so every rule but those refusals is a customer's own). The transactions are None when none is left."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("clv_part", table)
    marked = SHARED_TID_COLUMN in table.column_names
    extra = ", ".join((ROW_COLUMN, FILE_COLUMN, *((SHARED_TID_COLUMN,) if marked else ())))
    con.execute(f"CREATE TEMP VIEW {_SRC} AS SELECT * EXCLUDE ({extra}) FROM clv_part")
    con.execute(f"CREATE TEMP VIEW {_SRC_LINES} AS SELECT {ROW_COLUMN} AS line, * EXCLUDE ({extra}) FROM clv_part")
    report = ValidationReport(source=label, location="row")
    facts = PartFacts()
    types = _column_types(con)
    if types[spec.date] == "VARCHAR":
        facts.date_order = date_order_facts(con, f"trim({_quote(spec.date)})", _SRC, spec.date_format)
    _parse(con, spec, types)
    _count_read_part(con, spec, report)
    _drop_guests(con, spec, report)
    report.max_invalid_share = spec.max_invalid_share
    (invalid,) = con.execute(f"SELECT count(*) FILTER (NOT valid) FROM {_PARSED}").fetchone() or (0,)
    if invalid:
        _collect_problems(con, spec)
        _fill_problem_report(con, report)
        facts.problems = con.execute(
            f"SELECT p.*, f.{FILE_COLUMN} AS file FROM {_PROBLEMS} p "
            f'JOIN (SELECT {ROW_COLUMN} AS line, {FILE_COLUMN} FROM clv_part) f USING (line) ORDER BY line, "column"'
        ).df()
        con.execute(f"DELETE FROM {_PARSED} WHERE NOT valid")
    marked_tids = f"SELECT {_tid_expr(spec)} FROM clv_part WHERE {SHARED_TID_COLUMN}" if marked else None
    if marked_tids is not None:
        facts.shared_tids = _shared_tids(con, marked_tids)
    report.duplicates = apply_duplicates(con, _PARSED, spec, label, decide=False, unnamed_tids=marked_tids)
    _check_padded_ids(con, spec, report)
    facts.aware, facts.naive = _check_awareness(con, report, decide=False)
    if facts.aware and facts.naive:
        facts.first_aware, facts.first_naive = _first_customers(con, "aware"), _first_customers(con, "NOT aware")
    _apply_price_policy(con, spec, report, decide=False)
    if report.non_positive_price_lines and spec.non_positive_price == "fail":
        facts.first_non_positive_price = _first_customers(con, "price <= 0")
    if spec.invoice is not None:
        facts.invoices = con.execute(
            f"""
            SELECT r.inv AS invoice, coalesce(k.customers, []::VARCHAR[]) AS customers FROM {_READ_INVOICES} r
            LEFT JOIN (SELECT inv, list(DISTINCT cid ORDER BY cid) AS customers FROM {_PARSED} GROUP BY inv) k
            USING (inv)
            """
        ).df()
        report.invoices_kept = int((facts.invoices["customers"].map(len) > 0).sum())
    _count_cancellations(con, spec, report)
    facts.returned = _apply_returns(con, spec, report, decide=False)
    if facts.returned and spec.returns == "fail":
        facts.first_returned = _first_customers(con, "cancel OR amt <= 0" if spec.has_values else "cancel")
    _merge_days(con, spec, report)
    report.warnings.clear()
    con.execute(f"DROP TABLE {_PARSED}")
    if report.customer_days == 0:
        return report, None, facts
    return report, Transactions(con=con, report=report, has_amount=spec.has_values), facts


def _shared_tids(con: duckdb.DuckDBPyConnection, marked_tids: str) -> pd.DataFrame:
    """PartFacts.shared_tids: the marked transaction ids (`marked_tids`, a query of them as the duplicate rule
    reads them), over the part's valid rows, before the rule drops any."""
    return con.execute(
        f"""
        SELECT tid, count(*) AS n, list(DISTINCT cid ORDER BY cid) AS customers,
               count(DISTINCT (cid, ts, amt, inv, price)) > 1 AS conflict
        FROM {_PARSED} WHERE tid IN ({marked_tids})
        GROUP BY tid
        """
    ).df()


def _count_read_part(con: duckdb.DuckDBPyConnection, spec: DataConfig, report: ValidationReport) -> None:
    """As `_count_read`, and the part's invoices read kept aside (`_READ_INVOICES`): an invoice's lines may be in
    two parts (a guest line's part and a customer's, or two customers' when one's lines are invalid), so the
    whole log's count of invoices read is the distinct invoices over the parts, not the sum of theirs."""
    row = con.execute(f"SELECT count(*), count(DISTINCT inv), count(DISTINCT cid) FROM {_PARSED}").fetchone()
    assert row is not None
    report.rows_read, report.customer_ids = int(row[0]), int(row[2])
    if spec.invoice is not None:
        report.invoices = int(row[1])
        con.execute(f"CREATE TEMP TABLE {_READ_INVOICES} AS SELECT DISTINCT inv FROM {_PARSED} WHERE inv IS NOT NULL")
