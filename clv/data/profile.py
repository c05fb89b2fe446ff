"""A data set described for a human: what `clv data summarize` prints."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from clv.data.regularity import RegularityEstimate, estimate_regularity, regularity_reading
from clv.data.rfm import late_customers
from clv.data.transactions import Transactions, sql_date

__all__ = ["DataProfile", "profile_transactions"]


@dataclass
class DataProfile:
    """Counts that tell whether a transaction log is what the analyst thinks it is. `customers` have a purchase
    day; `customer_ids` are the ids the lines read name; `guest` and `cancellations` as in ValidationReport;
    money in the data's unit. `regularity`: the Gamma shape k of the inter-purchase times up to the calibration end
    (`clv.data.regularity`), by Wheat & Morrison's method and as the median of per-customer maximum likelihood."""

    source: str
    rows_read: int
    rows_rejected: int
    rows_kept: int
    customers: int
    customer_days: int
    first_date: dt.date
    last_date: dt.date
    repeat_buyers: int
    same_day_duplicates: int
    non_positive_rows: int
    total_amount: float | None
    customers_first_seen_after_calibration: int = 0
    late_customer_ids: list[str] = field(default_factory=list)
    rows_after_period_end: int = 0
    invoices: int | None = None
    invoices_kept: int | None = None
    customer_ids: int = 0
    guest: dict[str, float] = field(default_factory=dict)
    non_positive_price_lines: int = 0
    cancellations: dict[str, float] = field(default_factory=dict)
    returns_netted: float | None = None
    returns_unmatched: float | None = None
    regularity: list[RegularityEstimate] = field(default_factory=list)

    @property
    def repeat_buyer_share(self) -> float:
        """Share of customers with purchases on two or more days."""
        return self.repeat_buyers / self.customers if self.customers else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["first_date"] = self.first_date.isoformat()
        out["last_date"] = self.last_date.isoformat()
        out["repeat_buyer_share"] = self.repeat_buyer_share
        out["regularity_reading"] = regularity_reading(self.regularity[0]) if self.regularity else None
        return out


def profile_transactions(
    tx: Transactions,
    calibration_end: dt.date | None = None,
    last_date: dt.date | None = None,
    regularity: bool = True,
) -> DataProfile:
    """Profile validated transactions; with `calibration_end`, count the customers first seen after it.
    `regularity=False` leaves the regularity estimates out (a part of a log, whose gaps the caller pools)."""
    row = tx.con.execute(
        f"""
        SELECT count(DISTINCT customer_id), count(*), min(day), max(day), sum(amount),
               (SELECT count(*) FROM (SELECT customer_id FROM {tx.table} GROUP BY 1 HAVING count(*) > 1))
        FROM {tx.table}
        """
    ).fetchone()
    assert row is not None
    customers, days, first, last, total, repeaters = row
    late, after = 0, 0
    late_ids: list[object] = []
    if calibration_end is not None:
        late, late_ids = late_customers(tx, calibration_end)
    if last_date is not None:
        (after,) = tx.con.execute(
            f"SELECT coalesce(sum(n_rows), 0) FROM {tx.table} WHERE day > {sql_date(last_date)}"
        ).fetchone() or (0,)
    rep = tx.report
    return DataProfile(
        source=rep.source,
        rows_read=rep.rows_read,
        rows_rejected=rep.rows_rejected,
        rows_kept=rep.rows_kept,
        customers=int(customers),
        customer_days=int(days),
        first_date=first,
        last_date=last,
        repeat_buyers=int(repeaters),
        same_day_duplicates=rep.same_day_merged,
        non_positive_rows=int(rep.returns.get("non_positive_rows", 0)),
        total_amount=float(total) if tx.has_amount else None,
        customers_first_seen_after_calibration=int(late),
        late_customer_ids=[str(i) for i in late_ids],
        rows_after_period_end=int(after),
        invoices=rep.invoices,
        invoices_kept=rep.invoices_kept,
        customer_ids=rep.customer_ids,
        guest=dict(rep.guest),
        non_positive_price_lines=rep.non_positive_price_lines,
        cancellations=dict(rep.cancellations),
        returns_netted=rep.returns.get("netted_value"),
        returns_unmatched=rep.returns.get("unmatched_value"),
        regularity=estimate_regularity(tx, calibration_end) if regularity else [],
    )
