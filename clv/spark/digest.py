"""The customer digest (`clv.digest.CustomerDigest`) of a customer table that is a Spark DataFrame: every
figure computed where the table lives, and only the digest brought to the driver.

Group figures are Spark aggregates; the quantiles are exact order statistics (`order_statistics`: a bracket from
Spark's approximate quantiles, the rows inside it counted and sorted exactly), interpolated as numpy's default
(linear) quantile; the at-risk rows are the first in the table's order (highest CLV first, ties by customer id).
The concentration curve's points sit at Spark's approximate quantiles of the CLV instead of exact ones: each point
is still exact (the share of the CLV held by the customers above the value), only where along the curve it falls
may differ; the top 5 / 20 / 50% marks are exact.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.config import RunConfig
from clv.digest import (
    AT_RISK_LEAD,
    AT_RISK_ROWS,
    AT_RISK_TAIL,
    CURVE_TOPS,
    ClvShape,
    CustomerDigest,
    GroupFigures,
    churn_of,
    curve_probabilities,
    histogram_edges,
)
from clv.errors import ClvError
from clv.evaluate.scores import FREQUENCY_TOP
from clv.tiers import AT_RISK

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = [
    "MAX_BRACKET_ROWS",
    "order_keys",
    "order_statistics",
    "saved_digest",
    "spark_digest",
    "spark_quantile",
    "table_cells",
]

FloatArray = NDArray[np.float64]

#: most rows an order statistic's bracket may bring to the driver (`order_statistics`)
MAX_BRACKET_ROWS = 5_000_000
#: the relative rank error of the approximate quantiles that bracket an order statistic
_BRACKET_ERROR = 1e-4


def order_statistics(frame: DataFrame, value: Column, ranks: Sequence[int], count: int) -> list[float]:
    """The values at 0-based `ranks` of `value` over the `count` rows of `frame`, in ascending order: exact
    (`order_keys`)."""
    return [v for v, _ in order_keys(frame, value, ranks, count)]


def order_keys(
    frame: DataFrame, value: Column, ranks: Sequence[int], count: int, tie: str | None = None
) -> list[tuple[float, Any]]:
    """The (value, `tie`) keys at 0-based `ranks` over the `count` rows of `frame`, in ascending order of
    (value, tie) (tie None without a tie column): exact. Each rank is bracketed by Spark's approximate quantiles
    (relative rank error 1e-4) and the rows below and inside the bracket counted; a bracket that misses its rank
    (which the quantiles' guarantee rules out) is widened to every row. A rank inside a run of equal values at
    either end of its bracket takes that value, and its tie by a sort of the run alone; any other bracket's rows
    are sorted on the driver. Raises ClvError when such a bracket holds more than MAX_BRACKET_ROWS rows."""
    from pyspark.sql import functions as F

    if not ranks:
        return []
    if any(not 0 <= r < count for r in ranks):
        raise ValueError(f"ranks must be in [0, {count}), got {list(ranks)}")
    keyed = frame.select(value.cast("double").alias("v"), *([F.col(tie).alias("t")] if tie else []))
    slack = 2 * _BRACKET_ERROR
    probabilities = [max(0.0, r / count - slack) for r in ranks] + [min(1.0, (r + 1) / count + slack) for r in ranks]
    quantiles = keyed.approxQuantile("v", probabilities, _BRACKET_ERROR)
    k = len(ranks)
    bounds = [(quantiles[i], quantiles[k + i]) for i in range(k)]
    below, inside, at_lo, at_hi = _bracket_counts(keyed, bounds)
    missed = [i for i in range(k) if not below[i] <= ranks[i] < below[i] + inside[i]]
    if missed:  # outside the quantiles' guarantee: every row is in the bracket
        for i in missed:
            bounds[i] = (-math.inf, math.inf)
        below, inside, at_lo, at_hi = _bracket_counts(keyed, bounds)
    out: dict[int, tuple[float, Any]] = {}
    sorted_here = []
    for i, (lo, hi) in enumerate(bounds):
        r = ranks[i] - below[i]  # the rank inside the bracket
        if r < at_lo[i]:  # in the run of rows equal to the bracket's low end
            out[i] = (float(lo), _run_tie(keyed, lo, r) if tie else None)
        elif r >= inside[i] - at_hi[i]:  # in the run equal to its high end
            out[i] = (float(hi), _run_tie(keyed, hi, r - (inside[i] - at_hi[i])) if tie else None)
        else:
            sorted_here.append(i)
    if sorted_here:
        largest = max(inside[i] - at_lo[i] - at_hi[i] for i in sorted_here)
        if largest > MAX_BRACKET_ROWS:
            raise ClvError(
                f"an order statistic's bracket holds {largest:,} rows, more than {MAX_BRACKET_ROWS:,}",
                hint="a column with that many nearly equal values at one rank: report it (issue tracker)",
            )
        v = F.col("v")
        wanted = functools.reduce(lambda a, b: a | b, [(v > bounds[i][0]) & (v < bounds[i][1]) for i in sorted_here])
        rows = keyed.filter(wanted).toPandas().sort_values(["v", "t"] if tie else ["v"], kind="stable")
        values = rows["v"].to_numpy(dtype=float)
        ties = rows["t"].to_numpy() if tie else None
        for i in sorted_here:  # the bracket's inner rows, in order: the rank's row is past the low end's run
            j = int(np.searchsorted(values, bounds[i][0], side="right")) + ranks[i] - below[i] - at_lo[i]
            out[i] = (float(values[j]), ties[j] if ties is not None else None)
    return [out[i] for i in range(k)]


def _run_tie(keyed: DataFrame, value: float, offset: int) -> Any:
    """The tie of the row `offset` places into the run of rows whose value is `value`, in the tie's order."""
    from pyspark.sql import functions as F

    row = keyed.filter(F.col("v") == value).orderBy("t").offset(offset).limit(1).first()
    assert row is not None
    return row["t"]


def _bracket_counts(
    keyed: DataFrame, bounds: list[tuple[float, float]]
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Per bracket, in one pass: the rows below it, inside it (ends included), equal to its low end and equal
    to its high end (0 when the ends are one value: the run is counted once, as the low end's)."""
    from pyspark.sql import functions as F

    v = F.col("v")
    columns = []
    for i, (lo, hi) in enumerate(bounds):
        columns.append(F.sum((v < lo).cast("long")).alias(f"b{i}"))
        columns.append(F.sum(((v >= lo) & (v <= hi)).cast("long")).alias(f"i{i}"))
        columns.append(F.sum((v == lo).cast("long")).alias(f"l{i}"))
        columns.append(F.sum(((v == hi) & F.lit(hi != lo)).cast("long")).alias(f"h{i}"))
    row = keyed.agg(*columns).first()
    assert row is not None
    return tuple(  # type: ignore[return-value]
        [int(row[f"{c}{i}"] or 0) for i in range(len(bounds))] for c in "bilh"
    )


def spark_quantile(frame: DataFrame, value: Column, probability: float, count: int) -> float:
    """numpy's default (linear) quantile of `value` over the `count` rows, from two exact order statistics."""
    position = (count - 1) * probability
    low = math.floor(position)
    ranks = [low] if low + 1 >= count else [low, low + 1]
    values = order_statistics(frame, value, ranks, count)
    if len(values) == 1:
        return values[0]
    a, b, t = values[0], values[1], position - low
    return b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t  # numpy's _lerp, to the last bit


def table_cells(customers: DataFrame, churn: str | None) -> pd.DataFrame:
    """The customer table's sums by (tier, segment, RFM segment), in one pass: customers, CLV (sum, least,
    largest), and the sums of P(alive), the churn risk, the holdout buyers, expected purchases, residual CLV and
    expected spend where the table has them. At most tiers x segments x RFM segments rows; every group figure of
    the digest and the tier table is a sum of these cells."""
    from pyspark.sql import functions as F

    columns = customers.columns
    keys = [
        F.col("tier").cast("string").alias("tier"),
        (F.col("segment").cast("string") if "segment" in columns else F.lit("")).alias("segment"),
        (F.col("rfm_segment").cast("string") if "rfm_segment" in columns else F.lit("")).alias("rfm_segment"),
    ]
    sums = {
        "p_alive": F.col("p_alive"),
        "expected_purchases": F.col("expected_purchases"),
        **({"churn": F.col(churn)} if churn else {}),
        **({"bought": (F.col("frequency_holdout") > 0).cast("double")} if "frequency_holdout" in columns else {}),
        **({"residual_clv": F.col("residual_clv")} if "residual_clv" in columns else {}),
        **({"expected_spend": F.col("expected_spend")} if "expected_spend" in columns else {}),
    }
    figures = [
        F.count(F.lit(1)).alias("n"),
        F.sum("clv").alias("clv"),
        F.min("clv").alias("min_clv"),
        F.max("clv").alias("max_clv"),
        *(F.sum(value).alias(name) for name, value in sums.items()),
    ]
    with_keys = customers.groupBy(*keys).agg(*figures).toPandas()
    return with_keys.sort_values(["tier", "segment", "rfm_segment"], ignore_index=True)


def spark_digest(customers: DataFrame, churn: str | None = None, cells: pd.DataFrame | None = None) -> CustomerDigest:
    """The digest of a Spark customer table (the columns of `clv.pipeline`'s customer table); `churn` names its
    churn-risk column (found by its name when not given); `cells` are its `table_cells` when already summed. The
    same figures as `clv.digest.digest_customers` of the table brought to pandas (see the module docstring for
    the concentration curve)."""
    from pyspark.sql import functions as F

    columns = list(customers.columns)
    churn = churn if churn is not None else churn_of(columns)
    churn = churn if churn in columns else None
    holdout = "frequency_holdout" in columns
    cells = table_cells(customers, churn) if cells is None else cells
    n = int(cells["n"].sum())
    rfm = "rfm_segment" in columns
    return CustomerDigest(
        customers=n,
        columns=tuple(columns),
        churn=churn,
        total_clv=float(cells["clv"].sum()),
        total_residual_clv=float(cells["residual_clv"].sum()) if "residual_clv" in columns else None,
        expected_purchases=float(cells["expected_purchases"].sum()),
        mean_p_alive=float(cells["p_alive"].sum()) / n if n else float("nan"),
        mean_churn=float(cells["churn"].sum()) / n if churn and n else None,
        segments=_groups(cells, "segment", churn is not None, holdout),
        rfm_segments=_groups(cells, "rfm_segment", churn is not None, holdout) if rfm else None,
        rfm_by_segment=_crossed(cells) if rfm else None,
        T_p90=spark_quantile(customers, F.col("T"), 0.9, n) if n else 0.0,
        frequency_p99=spark_quantile(customers, F.col("frequency"), 0.99, n) if n else 0.0,
        at_risk_customers=int(cells.loc[cells["segment"] == AT_RISK, "n"].sum()),
        at_risk_top=_at_risk_top(customers, churn),
        holdout_by_frequency=_by_frequency(customers) if holdout and "expected_purchases_holdout" in columns else None,
        clv_shape=_clv_shape(customers, n),
    )


def _groups(cells: pd.DataFrame, by: str, churn: bool, holdout: bool) -> dict[str, GroupFigures]:
    """Per value of `by`, the largest group first (ties by name): its figures, from the table's cells."""
    wanted = ["n", "clv", *(["churn"] if churn else []), *(["bought"] if holdout else [])]
    sums: dict[Any, dict[Any, Any]] = cells.groupby(by, sort=True)[wanted].sum().to_dict("index")
    order = sorted(sums, key=lambda name: (-int(sums[name]["n"]), str(name)))
    return {
        str(name): GroupFigures(
            customers=int(sums[name]["n"]),
            clv=float(sums[name]["clv"]),
            p_purchase=float(sums[name]["churn"]) / int(sums[name]["n"]) if churn else None,
            bought=float(sums[name]["bought"]) / int(sums[name]["n"]) if holdout else None,
        )
        for name in order
    }


def _crossed(cells: pd.DataFrame) -> pd.DataFrame:
    """Customers by RFM segment (rows) and churn-risk segment (columns), from the table's cells."""
    table = cells.pivot_table(index="rfm_segment", columns="segment", values="n", aggfunc="sum", fill_value=0)
    table = table.astype(np.int64).sort_index().sort_index(axis=1)
    table.index.name, table.columns.name = "rfm_segment", "segment"
    return table


def _at_risk_top(customers: DataFrame, churn: str | None) -> pd.DataFrame:
    from pyspark.sql import functions as F

    lead = [*AT_RISK_LEAD, *([churn] if churn else []), *AT_RISK_TAIL]
    wanted = [c for c in lead if c in customers.columns]
    slipping = customers.filter(F.col("segment") == AT_RISK)
    top = slipping.orderBy(F.col("clv").desc(), F.col("customer_id").asc()).limit(AT_RISK_ROWS).select(*wanted)
    return top.toPandas().reset_index(drop=True)


def _by_frequency(customers: DataFrame) -> pd.DataFrame:
    """`clv.evaluate.scores.by_frequency`'s table, aggregated in Spark."""
    from pyspark.sql import functions as F

    group = F.least(F.col("frequency").cast("long"), F.lit(FREQUENCY_TOP)).alias("frequency")
    table = (
        customers.groupBy(group)
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.avg("expected_purchases_holdout").alias("mean_predicted"),
            F.avg("frequency_holdout").alias("mean_actual"),
        )
        .toPandas()
        .sort_values("frequency")
        .reset_index(drop=True)
    )
    table["frequency"] = [str(k) if k < FREQUENCY_TOP else f"{FREQUENCY_TOP}+" for k in table["frequency"]]
    return table


def _clv_shape(customers: DataFrame, n: int) -> ClvShape:
    """`clv.digest.clv_shape` in Spark: the histogram's edges from exact order statistics of the positive CLVs,
    its counts and the curve's points by conditional sums (see the module docstring)."""
    from pyspark.sql import functions as F

    clv = F.col("clv").cast("double")
    positive = customers.filter(clv > 0)
    facts = positive.agg(F.count(F.lit(1)).alias("m"), F.max(clv).alias("top")).first()
    assert facts is not None
    m = int(facts["m"])
    edges, counts = np.zeros(0), np.zeros(0, dtype=np.int64)
    if m:
        top = float(facts["top"])
        low = max(spark_quantile(positive, clv, 0.001, m), top * 1e-6)
        edges = histogram_edges(low, top)
        # np.histogram's bins: [e0, e1), ..., [e_last-1, e_last]: the bin is the count of inner edges reached
        counts = _bucket_sums(positive, F.greatest(clv, F.lit(low)), edges[1:-1], "right")[0]
    worth = F.greatest(clv, F.lit(0.0))
    total_row = customers.agg(F.sum(worth).alias("total")).first()
    total = float(total_row["total"] or 0.0) if total_row is not None else 0.0
    if not n or total <= 0:
        return ClvShape(edges, counts, np.zeros((0, 2)), {})
    quantiles = customers.select(worth.alias("w")).approxQuantile("w", curve_probabilities(), 1e-5)
    thresholds = np.array(sorted(set(quantiles)))
    # bucket k: the customers above k thresholds; those above threshold i are the buckets past i
    sizes, sums = _bucket_sums(customers, worth, thresholds, "left")
    above = np.cumsum(sizes[::-1])[::-1][1:]
    above_sum = np.cumsum(sums[::-1])[::-1][1:]
    points = np.column_stack([100.0 * above / n, 100.0 * above_sum / total])
    curve = np.vstack([[0.0, 0.0], points[::-1], [100.0, 100.0]])
    curve = curve[np.r_[True, np.any(np.diff(curve, axis=0) != 0, axis=1)]]
    return ClvShape(edges, counts, curve, _tops(customers, worth, n, total))


def _bucket_sums(
    frame: DataFrame, value: Column, boundaries: FloatArray, side: Literal["left", "right"]
) -> tuple[NDArray[np.int64], FloatArray]:
    """Per bucket k = 0 .. len(boundaries): the rows whose value v has np.searchsorted(boundaries, v, side) == k,
    and the sum of their values, in one pass (each pandas batch bucketed by numpy, the buckets added in Spark)."""
    from pyspark.sql import functions as F

    size = boundaries.size + 1
    bounds = boundaries.tolist()

    def buckets(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        edges = np.asarray(bounds, dtype=float)
        for batch in batches:
            v = batch["v"].to_numpy(dtype=float)
            k = np.searchsorted(edges, v, side=side)
            n, s = np.bincount(k, minlength=size), np.bincount(k, weights=v, minlength=size)
            yield pd.DataFrame({"k": np.arange(size), "n": n, "s": s})

    keyed = frame.select(value.cast("double").alias("v"))
    rows = keyed.mapInPandas(buckets, "k long, n long, s double").groupBy("k").agg(F.sum("n"), F.sum("s")).collect()
    counts, sums = np.zeros(size, dtype=np.int64), np.zeros(size)
    for r in rows:
        counts[int(r[0])], sums[int(r[0])] = int(r[1]), float(r[2])
    return counts, sums


def _tops(customers: DataFrame, worth: Column, n: int, total: float) -> dict[int, tuple[float, float]]:
    """The share of the CLV of the top k customers: the k-th largest value v (exact), then the sum above v and
    v for each of the customers at v that make up k."""
    from pyspark.sql import functions as F

    ks = [max(1, round(n * top / 100)) for top in CURVE_TOPS]
    values = [-v for v in order_statistics(customers, -worth, [k - 1 for k in ks], n)]
    row: Any = customers.agg(
        *(F.sum((worth > v).cast("long")).alias(f"c{i}") for i, v in enumerate(values)),
        *(F.sum(F.when(worth > v, worth).otherwise(0.0)).alias(f"s{i}") for i, v in enumerate(values)),
    ).first()
    out: dict[int, tuple[float, float]] = {}
    for i, (top, k, v) in enumerate(zip(CURVE_TOPS, ks, values, strict=True)):
        above, above_sum = int(row[f"c{i}"] or 0), float(row[f"s{i}"] or 0.0)
        out[top] = (100.0 * k / n, 100.0 * (above_sum + (k - above) * v) / total)
    return out


def _tier_labels(customers: DataFrame, labels: list[str]) -> DataFrame:
    """The tier column as written: pyarrow percent-encodes a label's UTF-8 bytes in the folder names, and Spark
    decodes each %XX to one character ("Très" reads as "TrÃ¨s"); a value whose bytes are a configured label's
    UTF-8 is that label."""
    found = [str(r[0]) for r in customers.select("tier").distinct().collect()]
    mapping: dict[bool | float | int | str, bool | float | int | str | None] = {}
    for value in found:
        try:
            fixed = value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if fixed != value and fixed in labels and value not in labels:
            mapping[value] = fixed
    return customers.replace(mapping, subset=["tier"]) if mapping else customers


def saved_digest(config: RunConfig, folder: Path, churn: str | None, renames: dict[str, str]) -> CustomerDigest:
    """The digest of a saved customer table (`clv.report.outputs.write_by_tier`'s folder: Parquet by tier) read
    and digested on Spark, for `clv report` under `engine: spark`: the table is never brought to the driver.
    The tiers are read as text, exactly as written (partition values are not typed); `renames` maps a saved
    column's name to the report's (the value columns of a run without amounts)."""
    from clv.spark.session import ARROW_EXCHANGE, pandas_notices_quieted, session_conf, spark_session

    with pandas_notices_quieted():
        spark = spark_session(config)
        untyped = {"spark.sql.sources.partitionColumnTypeInference.enabled": "false"}
        with session_conf(spark, untyped | ARROW_EXCHANGE):
            table = spark.read.parquet(folder.resolve().as_uri())
            customers = _tier_labels(table, [level.label for level in config.tiers.levels])
            for saved, name in renames.items():
                if saved in customers.columns:
                    customers = customers.withColumnRenamed(saved, name)
            return spark_digest(customers, churn)
