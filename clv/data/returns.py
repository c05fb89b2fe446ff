"""Returns and cancellations netted against a customer's spend: customer days in, purchase days out, in SQL.

The rule (`data.returns: net`), day by day for each customer:

1. Lines of one customer and day are summed first (same-day net), so a cancellation on the day of the purchase
   simply lowers that day's value.
2. A day is a purchase day when it has a purchase line (not a cancellation, value >= 0) and its net value is
   >= 0. Any other day (net negative, or only cancellation lines) is a return day and never a purchase.
3. A return day's value is taken off the customer's earlier purchase days, most recent first, never below zero
   per day; what no earlier purchase can absorb (a return before any purchase, or more than was bought) is
   unmatched: counted and its value reported, taken off nothing.
4. A purchase day reduced to 0 stays a purchase day of value 0: the purchase happened.

Taking returns off the most recent purchases first is a stack (last in, first out), and a stack's contents are
a running sum reflected at zero: with e_t the day's signed value (a purchase pushes its value, a return pops
its value), C_t = sum of e up to t, M_t = min(0, min of C up to t) and H_t = C_t - M_t the stack height, the
purchase of day k fills the stack from H_k - e_k to H_k, and what is left of it at the end is what the lowest
later height leaves: clip(min_{t >= k} H_t - (H_k - e_k), 0, e_k). The unmatched value of a return day is the
drop of M on that day. Window functions compute all of it for every customer at once; the money is summed as
DECIMAL (exact to 9 decimal places), so a day that nets to zero is zero and not -1e-15.
"""

from __future__ import annotations

import duckdb

__all__ = ["DAYS_TABLE", "MONEY", "net_returns"]

#: customer days: customer_id, day, value (DECIMAL), n_rows, purchase (bool)
DAYS_TABLE = "clv_days"
#: the exact type money is summed in: 29 digits before the point, 9 after
MONEY = "DECIMAL(38, 9)"
_NETTED = "clv_netted"

_WINDOWS = """
    WINDOW past AS (PARTITION BY customer_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
           future AS (PARTITION BY customer_id ORDER BY day ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
"""


def _allocate(con: duckdb.DuckDBPyConnection) -> None:
    """Table clv_netted: every customer day with `kept` (a purchase day's value after the returns taken off it,
    NULL on return days) and `unmatched` (a return day's value that no earlier purchase absorbed)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_NETTED} AS
        WITH events AS (
            SELECT *, CASE WHEN purchase THEN value ELSE least(value, 0) END AS e FROM {DAYS_TABLE}
        ), running AS (
            SELECT *, sum(e) OVER past AS c FROM events {_WINDOWS}
        ), reflected AS (
            SELECT *, least(min(c) OVER past, 0) AS m FROM running {_WINDOWS}
        ), stacked AS (
            SELECT *, c - m AS h FROM reflected
        ), floored AS (
            SELECT *, min(h) OVER future AS floor,
                   coalesce(lag(m) OVER past, 0) - m AS unmatched
            FROM stacked {_WINDOWS}
        )
        SELECT customer_id, day, n_rows, purchase, value, unmatched,
               CASE WHEN NOT purchase THEN NULL
                    WHEN floor >= h THEN value
                    ELSE greatest(floor - (h - value), 0) END AS kept
        FROM floored
        """
    )


def net_returns(con: duckdb.DuckDBPyConnection, target: str) -> dict[str, float]:
    """Net the return days of clv_days into the earlier purchase days (see the module docstring); write the
    purchase days to `target` (customer_id, day, amount DOUBLE, n_rows) and return the counts of the rule."""
    _allocate(con)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {target} AS
        SELECT customer_id, day, CAST(kept AS DOUBLE) AS amount, n_rows FROM {_NETTED} WHERE purchase
        """
    )
    row = con.execute(
        f"""
        SELECT count(*) FILTER (NOT purchase),
               coalesce(sum(n_rows) FILTER (NOT purchase), 0),
               coalesce(-sum(least(value, 0)) FILTER (NOT purchase), 0),
               coalesce(sum(unmatched), 0),
               count(*) FILTER (unmatched > 0),
               count(*) FILTER (purchase AND kept < value),
               count(*) FILTER (purchase AND kept = 0 AND value > 0),
               count(*) FILTER (NOT purchase AND value > 0),
               (SELECT count(*) FROM (SELECT customer_id FROM {_NETTED} GROUP BY 1 HAVING NOT bool_or(purchase)))
        FROM {_NETTED}
        """
    ).fetchone()
    assert row is not None
    con.execute(f"DROP TABLE {_NETTED}")
    returned, unmatched = float(row[2]), float(row[3])
    return {
        "return_days": int(row[0]),
        "rows_in_return_days": int(row[1]),
        "return_value": returned,
        "netted_value": float(row[2] - row[3]),
        "unmatched_value": unmatched,
        "unmatched_return_days": int(row[4]),
        "days_reduced": int(row[5]),
        "days_reduced_to_zero": int(row[6]),
        "cancellation_days_positive_value": int(row[7]),
        "customers_without_purchase": int(row[8]),
    }
