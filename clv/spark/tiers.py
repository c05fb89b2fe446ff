"""Value tiers of a Spark customer table, exactly as `clv.tiers.assign_tiers` gives them, and the tier table.

Share tiers cut the customers, highest CLV first and ties by customer id, at the rounded cumulative shares: the
customer at each cut is found by an exact order statistic of (-clv, customer_id) (`clv.spark.digest.order_keys`),
and a customer's tier is the number of cuts its own key lies past, a column expression evaluated where the rows
are. Threshold tiers compare the CLV with the configured thresholds. Ids compare as text in both engines (Spark by
UTF-8 bytes, Python by code points: the same order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from clv.config import TiersConfig
from clv.spark.digest import order_keys
from clv.tiers import check_tier_sizes, share_boundaries

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["spark_tier_table", "tier_index"]


def tier_index(customers: DataFrame, config: TiersConfig, count: int) -> Column:
    """The tier index (0 = the highest tier) of each of the `count` customers of `customers` (columns clv and
    customer_id), as a column expression; raises DataError, as `assign_tiers`, when a tier holds fewer than
    tiers.min_size customers."""
    from pyspark.sql import functions as F

    clv = F.col("clv").cast("double")
    if config.levels[0].share is not None:
        ends = [int(e) for e in share_boundaries(count, config)[:-1]]
        inner = sorted({e - 1 for e in ends if 0 < e < count})
        keys = dict(zip(inner, order_keys(customers, -clv, inner, count, tie="customer_id"), strict=True))
        key, ident = -clv, F.col("customer_id")
        past = []
        for end in ends:  # the customer's position reaches the cut: its key lies past the cut's last customer
            if end <= 0:
                past.append(F.lit(1))
            elif end >= count:
                past.append(F.lit(0))
            else:
                v, t = keys[end - 1]
                past.append(((key > F.lit(v)) | ((key == F.lit(v)) & (ident > F.lit(t)))).cast("int"))
    else:
        thresholds = [float(level.min_clv or 0.0) for level in config.levels[:-1]]
        past = [(F.lit(t) > clv).cast("int") for t in thresholds]  # thresholds above the CLV
    index = sum(past[1:], past[0]) if past else F.lit(0)
    sizes = {int(r["k"]): int(r["count"]) for r in customers.groupBy(index.alias("k")).count().collect()}
    check_tier_sizes([sizes.get(k, 0) for k in range(len(config.levels))], config)
    return index


def spark_tier_table(customers: DataFrame, config: TiersConfig, churn: str | None = None) -> pd.DataFrame:
    """`clv.tiers.tier_table` of a Spark customer table (with its tier column): the same columns, aggregated
    in Spark."""
    from pyspark.sql import functions as F

    columns = customers.columns
    figures = [
        F.count(F.lit(1)).alias("customers"),
        F.sum("clv").alias("total_clv"),
        F.min("clv").alias("min_clv"),
        F.max("clv").alias("max_clv"),
        F.avg("p_alive").alias("mean_p_alive"),
        *([F.avg(churn).alias(f"mean_{churn}")] if churn else []),
        F.sum("expected_purchases").alias("expected_purchases"),
        *([F.avg("expected_spend").alias("mean_expected_spend")] if "expected_spend" in columns else []),
    ]
    found = {
        str(r["tier"]): r for r in customers.groupBy(F.col("tier").cast("string").alias("tier")).agg(*figures).collect()
    }
    n = sum(int(r["customers"]) for r in found.values())
    total = sum(float(r["total_clv"]) for r in found.values())
    rows = []
    for level in config.levels:
        r = found.get(level.label)
        size = int(r["customers"]) if r is not None else 0
        clv = float(r["total_clv"]) if r is not None else 0.0
        nan = float("nan")
        row = {
            "tier": level.label,
            "customers": size,
            "share_of_customers": size / n if n else 0.0,
            "total_clv": clv,
            "share_of_clv": clv / total if total else 0.0,
            "min_clv": float(r["min_clv"]) if r is not None else nan,
            "max_clv": float(r["max_clv"]) if r is not None else nan,
            "mean_p_alive": float(r["mean_p_alive"]) if r is not None else nan,
            **({f"mean_{churn}": float(r[f"mean_{churn}"]) if r is not None else nan} if churn else {}),
            "expected_purchases": float(r["expected_purchases"]) if r is not None else 0.0,
        }
        if "expected_spend" in columns:
            row["mean_expected_spend"] = float(r["mean_expected_spend"]) if r is not None else nan
        rows.append(row)
    return pd.DataFrame(rows)
