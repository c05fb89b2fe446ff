"""The customers' RFM rows kept on Spark, and what the driver needs of them without collecting them.

The data step (`clv.spark.data`) leaves the summary's rows persisted on Spark, one row per customer with the
local frame's columns and types (`SparkRows.table`). The driver reads only what the fit and the checks need:

- the distinct (frequency, recency, T) histories with the number of customers sharing each (the purchase
  models' likelihood reads nothing else of a customer, so the fit on them, weighted, is the fit on the
  customers: `clv.purchase.base.PurchaseModel.likelihood_problem`);
- the distinct (frequency, monetary_value) pairs of the repeat buyers with their counts (the Gamma-Gamma
  likelihood, Fader & Hardie 2013 Eq. 5, reads nothing else; the spend outliers' median and threshold are order
  statistics of the same pairs);
- the first ids of the spend outliers, repeated ids, the data's fingerprint and a few sums.

Each collected table is ordered by the first (lowest) customer id of its rows, the order in which the local
engine's frame (by customer id) first meets them, so the weighted fits add their terms in the local order.
What needs every customer on the driver (a model with covariates, pooled groups, a regularity term or
customer-level latents (Pareto/GGG), for its fit or its scoring; the forecast band's simulation;
`model.purchase: auto` and `clv evaluate`, which fit every candidate on the customers) reads `collect()`: the
whole frame, refused past `spark.max_collected_rows` with the count and the remedy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from clv.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from numpy.typing import NDArray
    from pyspark.sql import DataFrame

__all__ = ["SparkRows", "collected", "typed_rows"]

_PAIRS = "distinct (frequency, mean spend) pairs of repeat buyers"
#: distinct rows and how many customers share each
_Distinct = tuple[pd.DataFrame, "NDArray[np.float64]"]
_HINT = "raise spark.max_collected_rows (and spark.driver.memory: about 200 bytes a row)"


def collected(
    rows: DataFrame, limit: int, what: str, count: int | None = None, order: list[str] | None = None
) -> pd.DataFrame:
    """`rows` brought to the driver as a pandas frame (through Arrow; sorted by `order`, stably, as pandas sorts
    text), refused with the count and the remedy past `limit` rows: with their `count` known, before anything
    is collected; otherwise once a row past the bound arrives (the driver holds at most the bound)."""
    if count is not None and count > limit:
        _refuse(count, limit, what)
    use = rows if count is not None else rows.limit(limit + 1)
    table = use.toArrow() if hasattr(use, "toArrow") else pa.Table.from_pandas(use.toPandas())
    if table.num_rows > limit:
        del table
        _refuse(rows.count(), limit, what)
    if order:  # Arrow orders text by its UTF-8 bytes, which is the code point order Python's sort uses
        table = table.sort_by([(c, "ascending") for c in order])
    return table.to_pandas()


def _refuse(count: int, limit: int, what: str) -> None:
    raise DataError(
        f"the log has {count:,} {what}, more than spark.max_collected_rows {limit:,} brought to the driver",
        hint=_HINT,
    )


class SparkRows:
    """One RFM summary's rows persisted on Spark (`table`: customer_id, frequency, recency, T[, monetary_value],
    sum_log_intervals[, holdout columns], as `clv.data.rfm.rfm_summary` gives them), with `customers` rows.
    A `clv.data.rfm.RemoteRows`: `collect()` brings the frame itself; `release()` unpersists the table."""

    def __init__(self, table: DataFrame, customers: int, limit: int) -> None:
        self.table = table
        self._customers = customers
        self._limit = limit
        self._compression: tuple[_Distinct, _Distinct | None] | None = None
        self._outlier_ids: dict[tuple[float, int], list[str]] = {}

    @property
    def customers(self) -> int:
        return self._customers

    @property
    def columns(self) -> list[str]:
        return list(self.table.columns)

    def collect(self) -> pd.DataFrame:
        """The whole frame on the driver, by customer id (`spark.max_collected_rows` at most)."""
        return typed_rows(collected(self.table, self._limit, "customers", self._customers, ["customer_id"]))

    def histories(self) -> tuple[pd.DataFrame, NDArray[np.float64]]:
        """The distinct (frequency, recency, T) histories (with `customer_id`, the first customer's id, to name
        them in messages) and how many customers share each, by first customer id (computed once)."""
        frame, counts = self._compressed()[0]
        return frame.copy(), counts.copy()

    def spend_pairs(self) -> tuple[pd.DataFrame, NDArray[np.float64]]:
        """The repeat buyers' distinct (frequency, monetary_value) pairs (with the first customer's id) and how
        many buyers share each, by first customer id: the spend model's data and its outliers' (computed once)."""
        pairs = self._compressed()[1]
        if pairs is None:
            raise DataError("the customers' rows have no monetary_value: there are no spends to compress")
        frame, counts = pairs
        return frame.copy(), counts.copy()

    def _compressed(self) -> tuple[_Distinct, _Distinct | None]:
        """The histories and (with amounts) the spend pairs, from one pass over the table (grouping sets)."""
        from pyspark.sql import functions as F

        if self._compression is not None:
            return self._compression
        history = ["frequency", "recency", "T"]
        pair = ["frequency", "monetary_value"]
        money = "monetary_value" in self.table.columns
        sets = [[F.col(c) for c in history], *([[F.col(c) for c in pair]] if money else [])]
        columns = [*history, "monetary_value"] if money else history
        counted = self.table.groupingSets(sets, *(F.col(c) for c in columns)).agg(
            F.min("customer_id").alias("customer_id"),
            F.count(F.lit(1)).alias("__customers"),
            F.grouping("recency").cast("boolean").alias("__pair"),  # the pairs' set leaves recency out
        )
        kept = counted.filter(~F.col("__pair") | (F.col("frequency") > 0))  # pairs of repeat buyers only
        # each table is bounded on its own: at most twice the bound arrives before the counts are known
        frame = collected(kept, 2 * self._limit, "distinct customer histories and spends", order=["customer_id"])
        pairs_mask = frame.pop("__pair").to_numpy(dtype=bool)
        for n, what in ((int((~pairs_mask).sum()), "distinct customer histories"), (int(pairs_mask.sum()), _PAIRS)):
            if n > self._limit:
                _refuse(n, self._limit, what)

        def part(mask: NDArray[np.bool_], keys: list[str]) -> _Distinct:
            chosen = frame.loc[mask].reset_index(drop=True)
            return typed_rows(chosen[["customer_id", *keys]].copy()), chosen["__customers"].to_numpy(dtype=float)

        self._compression = (part(~pairs_mask, history), part(pairs_mask, pair) if money else None)
        return self._compression

    def spend_outlier_ids(self, threshold: float, shown: int) -> list[str]:
        """The first `shown` ids of the repeat buyers whose mean spend exceeds `threshold`, highest spend first
        (ties by id), as `clv.spend.outliers.find_spend_outliers` lists them (computed once per question)."""
        from pyspark.sql import functions as F

        if (threshold, shown) not in self._outlier_ids:
            above = self.table.filter((F.col("frequency") > 0) & (F.col("monetary_value") > F.lit(threshold)))
            ordered = above.orderBy(F.col("monetary_value").desc(), F.col("customer_id").asc()).limit(shown)
            self._outlier_ids[(threshold, shown)] = [str(r["customer_id"]) for r in ordered.collect()]
        return list(self._outlier_ids[(threshold, shown)])

    def repeated_ids(self, shown: int) -> tuple[int, list[str]]:
        """How many customer ids have more than one row, and the first `shown` of them (by id)."""
        from pyspark.sql import functions as F

        repeated = self.table.groupBy("customer_id").count().filter(F.col("count") > 1).select("customer_id")
        n = repeated.count()
        if n == 0:
            return 0, []
        return n, [str(r["customer_id"]) for r in repeated.orderBy("customer_id").limit(shown).collect()]

    def sums(self, columns: list[str]) -> dict[str, float]:
        """The sums of some numeric columns over the customers, in one pass."""
        from pyspark.sql import functions as F

        row: Any = self.table.agg(*(F.sum(F.col(f"`{c}`")).alias(c) for c in columns)).first()
        return {c: float(row[c] or 0.0) for c in columns}

    def fingerprint(self) -> dict[str, Any]:
        """`clv.store.data_fingerprint` of the rows, its row hashes added up per partition on Spark."""
        from pyspark.sql import types as T

        from clv.store import FINGERPRINT_COLUMNS, fingerprint_from_parts, fingerprint_part

        columns = [c for c in FINGERPRINT_COLUMNS if c in self.table.columns]
        schema = T.StructType([T.StructField("part", T.StringType())])

        def parts(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            frames = [b for b in batches if len(b)]
            if frames:
                yield pd.DataFrame({"part": [fingerprint_part(typed_rows(pd.concat(frames, ignore_index=True)))]})

        from clv.spark.session import pandas_notices_quieted

        with pandas_notices_quieted():
            found = self.table.select(*columns).mapInPandas(parts, schema).collect()
        return fingerprint_from_parts([str(r["part"]) for r in found])

    def release(self) -> None:
        """Unpersist the table (the rows leave Spark's cache; reading them again recomputes them from the log)."""
        self.table.unpersist()


def typed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The local frame's types: integer purchase counts, float times and amounts, text ids."""
    for column in ("frequency", "frequency_holdout"):
        if column in frame:
            frame[column] = frame[column].astype(np.int64)
    if "customer_id" in frame and len(frame) == 0:
        frame["customer_id"] = frame["customer_id"].astype(object)
    return frame
