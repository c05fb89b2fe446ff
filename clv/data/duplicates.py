"""Duplicate rows: counted, reported, and (by default) dropped, in SQL over the parsed rows.

What a duplicate is, from the most explicit key to the least:

1. With `data.transaction_id`, a row repeating the transaction id of another row (rows without one are never
   duplicates). Rows sharing an id but differing in customer, date or value are a conflict, refused under `drop`:
   which of them is right cannot be known.
2. With `data.invoice`, the extra copies of an invoice repeated whole: every line of the invoice appears the same
   number of times k >= 2, identical in every column of the file. Identical lines within an invoice that has
   other lines are kept and counted: a basket where the same item was added twice (the online retail export
   has 5,220 such lines of customers with an id, often beside lines of the same item in other quantities).
3. Otherwise, a row identical in every column of the file to another row.

Rows are compared on a 64-bit hash of all their columns together with the parsed customer, timestamp and value.
`data.duplicates`: drop (default) keeps one row of each group, keep keeps them all (counted), fail refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from clv.config import DataConfig
from clv.data.returns import MONEY
from clv.errors import DataError, first_ids

__all__ = ["DuplicateCount", "apply_duplicates", "duplicates_problem"]

_GROUPS = "clv_duplicate_groups"


@dataclass
class DuplicateCount:
    """What the duplicate rule found: `rows` extra copies (dropped under `drop`), by which key, whose."""

    key: str = "row"
    policy: str = "drop"
    rows: int = 0
    dropped: int = 0
    invoices: int = 0
    identical_invoice_lines: int = 0
    first_customer_ids: list[str] = field(default_factory=list)
    value: float | None = None
    #: transaction ids on rows that differ in customer, date or value (refused under `drop`), and the first
    conflicts: int = 0
    first_conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "policy": self.policy,
            "rows": self.rows,
            "dropped": self.dropped,
            "invoices": self.invoices,
            "identical_invoice_lines_kept": self.identical_invoice_lines,
            "first_customer_ids": self.first_customer_ids,
            "value": self.value,
        }


def _key(spec: DataConfig) -> str:
    if spec.transaction_id is not None:
        return "transaction_id"
    return "invoice" if spec.invoice is not None else "row"


def _group_table(con: duckdb.DuckDBPyConnection, table: str, key: str) -> None:
    """clv_duplicate_groups: one row per group of identical rows (per transaction id), n its size, dup_invoice
    whether its invoice is repeated whole."""
    if key == "transaction_id":
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {_GROUPS} AS
            SELECT tid, min(cid) AS cid, count(*) AS n, count(DISTINCT (cid, ts, amt, inv, price)) AS variants,
                   NULL AS inv, true AS dup_invoice
            FROM {table} WHERE tid IS NOT NULL GROUP BY tid HAVING count(*) > 1
            """
        )
        return
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_GROUPS} AS
        WITH g AS (SELECT row_hash, cid, ts, amt, inv, count(*) AS n FROM {table} GROUP BY ALL)
        SELECT *, 1 AS variants,
               {"min(n) OVER (PARTITION BY inv) = max(n) OVER (PARTITION BY inv)" if key == "invoice" else "true"}
                   AS dup_invoice
        FROM g
        """
    )
    con.execute(f"DELETE FROM {_GROUPS} WHERE n = 1 AND dup_invoice")  # lone rows: nothing to count
    if key == "invoice":
        con.execute(f"DELETE FROM {_GROUPS} WHERE inv IN (SELECT inv FROM {_GROUPS} GROUP BY 1 HAVING max(n) = 1)")


def _count(con: duckdb.DuckDBPyConnection, key: str, spec: DataConfig, named: str) -> DuplicateCount:
    row = con.execute(
        f"""
        SELECT coalesce(sum(n - 1) FILTER (dup_invoice), 0), count(DISTINCT inv) FILTER (dup_invoice),
               coalesce(sum(n - 1) FILTER (NOT dup_invoice), 0),
               (list(DISTINCT cid ORDER BY cid) FILTER (dup_invoice AND {named}))[1:5], count(*) FILTER (variants > 1),
               (list(tid ORDER BY tid) FILTER (variants > 1))[1:5]
        FROM (SELECT *, {"tid" if key == "transaction_id" else "NULL AS tid"} FROM {_GROUPS})
        """
    ).fetchone() or (0, 0, 0, [], 0, [])
    rows, invoices, identical, ids, conflicts, conflict_ids = row
    return DuplicateCount(
        key=key,
        policy=spec.duplicates,
        rows=int(rows),
        invoices=int(invoices) if key == "invoice" else 0,
        identical_invoice_lines=int(identical) if key == "invoice" else 0,
        first_customer_ids=[str(i) for i in ids or []],
        conflicts=int(conflicts),
        first_conflicts=[str(i) for i in conflict_ids or []],
    )


def _drop(con: duckdb.DuckDBPyConnection, table: str, key: str) -> None:
    if key == "transaction_id":
        keep = f"SELECT DISTINCT ON (tid) * FROM {table} WHERE tid IS NOT NULL UNION ALL " + (
            f"SELECT * FROM {table} WHERE tid IS NULL"
        )
    elif key == "invoice":
        repeated = f"(SELECT DISTINCT inv FROM {_GROUPS} WHERE dup_invoice)"
        keep = (
            f"SELECT DISTINCT * FROM {table} WHERE inv IN {repeated} UNION ALL "
            f"SELECT * FROM {table} WHERE inv NOT IN {repeated}"
        )
    else:
        keep = f"SELECT DISTINCT * FROM {table}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {keep}")


def _value(con: duckdb.DuckDBPyConnection, table: str) -> Decimal:
    """The value of the rows of `table`, summed exactly (DECIMAL, as clv.data.returns sums money)."""
    (total,) = con.execute(f"SELECT coalesce(sum(CAST(amt AS {MONEY})), 0) FROM {table}").fetchone() or (0,)
    return Decimal(total)


def duplicates_problem(count: DuplicateCount, spec: DataConfig, label: str) -> DataError | None:
    """The refusal the duplicates found call for under `data.duplicates`, or None: conflicting transaction ids
    under `drop`, any duplicate under `fail`."""
    if count.conflicts and spec.duplicates == "drop":
        return DataError(
            f"{count.conflicts:,} transaction id(s) of column {spec.transaction_id!r} appear on rows that differ in "
            f"customer, date or value (first: {first_ids(count.first_conflicts)}): which row is right cannot be known",
            hint="fix those rows, or set data.duplicates: keep to keep every row",
        )
    if count.rows and spec.duplicates == "fail":
        what = {"transaction_id": "rows repeat a transaction id", "invoice": "lines repeat an invoice whole"}
        return DataError(
            f"{label}: {count.rows:,} duplicate row(s): {what.get(count.key, 'rows identical to an earlier row')} "
            f"(customers {first_ids(count.first_customer_ids)})",
            hint="set data.duplicates: drop to keep one copy of each, or keep to keep them all",
        )
    return None


def apply_duplicates(
    con: duckdb.DuckDBPyConnection,
    table: str,
    spec: DataConfig,
    label: str,
    decide: bool = True,
    unnamed_tids: str | None = None,
) -> DuplicateCount:
    """Count the duplicates of the parsed rows in `table` (columns cid, ts, amt, inv, price, row_hash, tid), then
    drop them, keep them, or refuse them (`data.duplicates`); the counts say what was done. `decide=False` (a
    part of a log, `clv.spark`): never refuse, and drop only what `drop` drops; the caller judges the whole
    log's counts with `duplicates_problem`. A group of rows sharing a transaction id is named by its smallest
    customer id; `unnamed_tids` (a SQL query of transaction ids: a part's ids that other parts hold too) leaves
    their groups' customers out of `first_customer_ids`, for the caller to name over the whole log."""
    key = _key(spec)
    _group_table(con, table, key)
    named = "true" if unnamed_tids is None or key != "transaction_id" else f"tid NOT IN ({unnamed_tids})"
    count = _count(con, key, spec, named)
    problem = duplicates_problem(count, spec, label)
    if problem is not None and decide:
        con.execute(f"DROP TABLE {_GROUPS}")
        raise problem
    if count.rows and spec.duplicates == "drop" and not count.conflicts:
        before = _value(con, table)
        _drop(con, table, key)
        count.dropped = count.rows
        if spec.has_values:
            count.value = float(before - _value(con, table))
    con.execute(f"DROP TABLE {_GROUPS}")
    return count
