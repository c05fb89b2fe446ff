"""Value tiers, segments and RFM scores of a Spark customer table, exactly as `clv.tiers` gives them, and the
tier table.

Share tiers cut the customers, highest CLV first and ties by customer id, at the rounded cumulative shares: the
customer at each cut is found by an exact order statistic of (-clv, customer_id) (`clv.spark.digest.order_keys`),
and a customer's tier is the number of cuts its own key lies past, a column expression evaluated where the rows
are. Threshold tiers compare the CLV with the configured thresholds. Ids compare as text in both engines (Spark by
UTF-8 bytes, Python by code points: the same order). Segments are a column expression of the tier and the
churn risk; RFM scores compare each value with its four quintile thresholds (`quintile_thresholds`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from clv.config import TiersConfig
from clv.spark.digest import order_keys, order_statistics, table_cells
from clv.tiers import RFM_SEGMENTS, SEGMENTS, UNIDENTIFIED_SEGMENTS, check_tier_sizes, share_boundaries

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = [
    "quintile_thresholds",
    "rfm_score_columns",
    "segment_column",
    "spark_tier_table",
    "tier_index",
]


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


def spark_tier_table(
    customers: DataFrame, config: TiersConfig, churn: str | None = None, cells: pd.DataFrame | None = None
) -> pd.DataFrame:
    """`clv.tiers.tier_table` of a Spark customer table (with its tier column): the same columns, from its
    `clv.spark.digest.table_cells` (summed here when not given)."""
    cells = table_cells(customers, churn) if cells is None else cells
    money = "expected_spend" in customers.columns
    grouped = cells.groupby("tier")
    sums: dict[Any, dict[Any, Any]] = grouped.sum(numeric_only=True).to_dict("index")
    least, largest = grouped["min_clv"].min().to_dict(), grouped["max_clv"].max().to_dict()
    n, total = int(cells["n"].sum()), float(cells["clv"].sum())
    nan = float("nan")
    rows = []
    for level in config.levels:
        found = sums.get(level.label)
        size = int(found["n"]) if found else 0
        clv = float(found["clv"]) if found else 0.0

        def mean(column: str, found: dict[Any, Any] | None = found, size: int = size) -> float:
            return float(found[column]) / size if found else nan

        row = {
            "tier": level.label,
            "customers": size,
            "share_of_customers": size / n if n else 0.0,
            "total_clv": clv,
            "share_of_clv": clv / total if total else 0.0,
            "min_clv": float(least[level.label]) if found else nan,
            "max_clv": float(largest[level.label]) if found else nan,
            "mean_p_alive": mean("p_alive"),
            **({f"mean_{churn}": mean("churn")} if churn else {}),
            "expected_purchases": float(found["expected_purchases"]) if found else 0.0,
        }
        if money:
            row["mean_expected_spend"] = mean("expected_spend")
        rows.append(row)
    return pd.DataFrame(rows)


def segment_column(tier: Column, p_purchase: Column, config: TiersConfig, churn_identified: bool = True) -> Column:
    """`clv.tiers.segments` as a column expression: the churn-risk x value segment from the tier index and
    P(at least one purchase in the churn window)."""
    from pyspark.sql import functions as F

    high = tier < F.lit(config.high_value_tiers)
    if not churn_identified:
        return F.when(high, F.lit(UNIDENTIFIED_SEGMENTS[0])).otherwise(F.lit(UNIDENTIFIED_SEGMENTS[1]))
    alive = p_purchase >= F.lit(config.at_risk_p_purchase)
    return (
        F.when(high & alive, F.lit(SEGMENTS[0]))
        .when(high, F.lit(SEGMENTS[1]))
        .when(alive, F.lit(SEGMENTS[2]))
        .otherwise(F.lit(SEGMENTS[3]))
    )


def rfm_score_columns(customers: DataFrame, count: int) -> dict[str, Column]:
    """`clv.tiers.rfm_scores` as column expressions (r_score, f_score, m_score with amounts, rfm_score,
    rfm_segment) over the `count` customers: each 1-5 score is 1 plus the number of quintile thresholds the
    value reaches (`quintile_thresholds`)."""
    from pyspark.sql import functions as F

    values = {"r_score": F.col("recency") - F.col("T"), "f_score": F.col("frequency")}
    if "monetary_value" in customers.columns:
        values["m_score"] = F.col("monetary_value")
    scores: dict[str, Column] = {}
    for name, value in values.items():
        thresholds = quintile_thresholds(customers, value, count)
        reached = [(value.cast("double") >= F.lit(t)).cast("int") for t in thresholds if math.isfinite(t)]
        scores[name] = sum(reached, F.lit(1)).cast("long")  # int64, as the local scores
    r, f = scores["r_score"], scores["f_score"]
    segment: Column = F.lit("other")
    for r_set, f_set, label in RFM_SEGMENTS:  # the last named segment that matches wins, as in rfm_scores
        hit = r.isin([int(c) for c in r_set]) & f.isin([int(c) for c in f_set])
        segment = F.when(hit, F.lit(label)).otherwise(segment)
    digits = [scores[name].cast("string") for name in values]
    return scores | {"rfm_score": F.concat(*digits), "rfm_segment": segment}


def _quintile(below: int, run: int, count: int) -> int:
    """`clv.tiers._quintile_score` of a value whose run of equal values starts at 0-based position `below` and
    holds `run` values: pandas' average rank as a share of `count`, in the same float operations."""
    pct = ((below + 1 + below + run) / 2) / count
    return int(min(max(math.ceil(pct * 5.0), 1), 5))


def quintile_thresholds(customers: DataFrame, value: Column, count: int) -> list[float]:
    """For s = 1..4, the least value whose quintile score (`clv.tiers._quintile_score`) exceeds s, +inf when
    none does. The score grows with the value, so the least value above s is in the run of values at position
    floor(s n / 5) or the next run (the run before is checked too, against rounding): three candidates per s,
    found by an exact order statistic and two passes of counts."""
    from pyspark.sql import functions as F

    keyed = customers.select(value.cast("double").alias("v"))
    v = F.col("v")
    positions = [min(count - 1, math.floor(s * count / 5)) for s in range(1, 5)]
    at = order_statistics(keyed, v, positions, count)
    first: Any = keyed.agg(
        *(F.sum((v < q).cast("long")).alias(f"a{i}") for i, q in enumerate(at)),
        *(F.sum((v == q).cast("long")).alias(f"e{i}") for i, q in enumerate(at)),
        *(F.max(F.when(v < q, v)).alias(f"p{i}") for i, q in enumerate(at)),
        *(F.min(F.when(v > q, v)).alias(f"n{i}") for i, q in enumerate(at)),
    ).first()
    second: Any = keyed.agg(
        *(F.sum((v < F.lit(first[f"p{i}"])).cast("long")).alias(f"a{i}") for i in range(len(at))),
        *(F.sum((v == F.lit(first[f"n{i}"])).cast("long")).alias(f"e{i}") for i in range(len(at))),
    ).first()
    thresholds = []
    for i, q in enumerate(at):
        s = i + 1
        a, e = int(first[f"a{i}"]), int(first[f"e{i}"])
        candidates: list[tuple[float, int, int]] = []
        if first[f"p{i}"] is not None:
            start = int(second[f"a{i}"] or 0)
            candidates.append((float(first[f"p{i}"]), start, a - start))
        candidates.append((q, a, e))
        if first[f"n{i}"] is not None:
            candidates.append((float(first[f"n{i}"]), a + e, int(second[f"e{i}"] or 0)))
        thresholds.append(next((c for c, below, run in candidates if _quintile(below, run, count) > s), math.inf))
    return thresholds
