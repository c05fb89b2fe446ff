"""The data step on Spark: the log validated, cleaned and summarised to RFM where it lives, by the local code.

The log's rows are shuffled by customer id, so that each Spark partition holds every row of its customers; each
partition then runs the local engine's own DuckDB code on its rows (`clv.data.transactions.clean_part`, then
`rfm_summary`, the profile and the period's facts), one Arrow batch in and out (`mapInArrow`). Every rule of the
local engine is a customer's own (same-day merge, duplicates, returns netting, the RFM columns), so the parts
give the local numbers exactly; what only the whole log can judge (the share of invalid rows, the refusals under
the `fail` policies, a mix of time zones, an invoice of two customers, day/month order) is decided here, on the
driver, from the parts' counts added up, in the local engine's order and with its messages. Problems are named
by file and customer id (Spark does not keep the files' line numbers); rejected rows are written as Parquet.

The config's split's customer rows stay on Spark (`clv.spark.rows.SparkRows`), with the profile's regularity
counted there; the other splits' rows (`clv evaluate`, the forecast band) and the customers first seen after a
calibration end are brought to the driver, up to `spark.max_collected_rows` rows a table: more is refused with
the count and the remedy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from clv.config import DataConfig, RunConfig
from clv.data.date_formats import DateOrderFacts, date_order_problem
from clv.data.duplicates import DuplicateCount, duplicates_problem
from clv.data.period import PeriodFacts, judge_period, period_facts
from clv.data.profile import DataProfile, profile_transactions
from clv.data.regularity import RegularityEstimate, customer_gaps, customer_shapes, regularity_estimates
from clv.data.rfm import HOLDOUT_COLUMNS, NEW_CUSTOMER_COLUMNS, RfmSummary, rfm_summary
from clv.data.tracking import RepeatTracking, tracking_counts, tracking_from_counts
from clv.data.transactions import (
    FILE_COLUMN,
    MIXED_ZONES_HINT,
    ROW_COLUMN,
    SHARED_TID_COLUMN,
    RowProblem,
    ValidationReport,
    clean_part,
    invoice_problem,
    padded_ids_warning,
    price_problem,
    problem_cause,
    problem_error,
    returns_problem,
)
from clv.errors import DataError, DataWarning, first_ids
from clv.spark.rows import SparkRows, collected, typed_rows
from clv.spark.session import is_connect, parallelism

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from clv.pipeline import DataStep, Split

__all__ = ["spark_data_step"]

_GAPS = ("n", "total", "sum_log", "last", "previous", "shape")
_SHOWN = 20
#: problems brought to the driver for the error's examples and its hint at the cause
_PROBLEMS_COLLECTED = 2000


def _arrow_schema() -> pa.Schema:
    """The parts' output rows: one `kind` of row each (module docstring), the other columns null."""
    double, long, text = pa.float64(), pa.int64(), pa.string()
    return pa.schema(
        [
            ("kind", text),
            ("split", long),
            ("customer_id", text),
            ("frequency", long),
            ("recency", double),
            ("T", double),
            ("monetary_value", double),
            ("sum_log_intervals", double),
            ("frequency_holdout", long),
            ("monetary_value_holdout", double),
            ("first_purchase", pa.date32()),
            *((f"gap_{g}", double) for g in _GAPS),
            ("line", long),
            ("column", text),
            ("value", text),
            ("reason", text),
            ("file", text),
            ("payload", text),
        ]
    )


def _out_schema() -> Any:
    """`_arrow_schema` as Spark types it."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(_arrow_schema())


def _batch(kind: str, frame: pd.DataFrame, schema: pa.Schema, split: int = 0) -> pa.RecordBatch:
    """`frame`'s columns under the output schema (the others null), as one batch of `kind` rows of `split`."""
    n = len(frame)
    arrays = []
    for name, typ in zip(schema.names, schema.types, strict=True):
        if name == "kind":
            arrays.append(pa.array([kind] * n, typ))
        elif name == "split":
            arrays.append(pa.array([split] * n, typ))
        elif name in frame:
            column = frame[name]
            values = column.astype(object).where(column.notna(), None) if typ == pa.string() else column
            arrays.append(pa.array(values, typ, from_pandas=True))
        else:
            arrays.append(pa.nulls(n, typ))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _json_default(value: object) -> object:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def _new_rows(rfm: RfmSummary) -> pd.DataFrame | None:
    if rfm.new_customers is None or not len(rfm.new_customers):
        return None
    new = rfm.new_customers.rename(columns={"purchases_holdout": "frequency_holdout"})
    return new.rename(columns={"value_holdout": "monetary_value_holdout"}) if "value_holdout" in new else new


def part_rows(
    batches: Iterator[pa.RecordBatch], config_json: str, label: str, splits_json: str = "[]", tracking: bool = False
) -> Iterator[pa.RecordBatch]:
    """One Spark partition's rows (every row of its customers) to its output: the RFM rows (split 0, the
    config's) with the customers' inter-purchase gaps, the new customers, the problems, the invoices, and one
    `part` row of counts; then the RFM and new customers' rows at each of `splits_json`'s other splits
    ([calibration_end, holdout_end] pairs, split 1, 2, ...) and, with `tracking`, the counts of the config's
    split's weekly repeat tracking (`cohort` and `repeat` rows, `clv.data.tracking.tracking_counts`)."""
    schema = _arrow_schema()
    parts = list(batches)
    if not parts or sum(b.num_rows for b in parts) == 0:
        return
    config = RunConfig.model_validate_json(config_json)
    time = config.time
    report, tx, facts = clean_part(pa.Table.from_batches(parts), config.data, label)
    payload: dict[str, Any] = {
        "report": dataclasses.asdict(report),
        "facts": {
            k: v for k, v in dataclasses.asdict(facts).items() if k not in ("invoices", "problems", "shared_tids")
        },
    }
    if facts.problems is not None:
        yield _batch("problem", facts.problems, schema)
    if facts.invoices is not None:
        invoices = pd.DataFrame(
            {
                "customer_id": facts.invoices["invoice"],
                "payload": [json.dumps(list(c)) for c in facts.invoices["customers"]],
            }
        )
        yield _batch("invoice", invoices, schema)
    if facts.shared_tids is not None and len(facts.shared_tids):
        shared = facts.shared_tids
        tids = pd.DataFrame(
            {
                "customer_id": shared["tid"],
                "frequency": shared["n"],
                "payload": [
                    json.dumps({"customers": list(c), "conflict": bool(k)})
                    for c, k in zip(shared["customers"], shared["conflict"], strict=True)
                ],
            }
        )
        yield _batch("shared_tid", tids, schema)
    if tx is not None:
        rfm = rfm_summary(tx, time.calibration_end, time.holdout_end, time.unit, allow_empty=True)
        gaps = customer_gaps(tx, time.calibration_end)
        gaps["shape"] = customer_shapes(gaps)  # each customer's own: the driver takes their median on Spark
        gaps = gaps.rename(columns={g: f"gap_{g}" for g in _GAPS})
        yield _batch("rfm", rfm.frame.merge(gaps, on="customer_id", how="left"), schema)
        new = _new_rows(rfm)
        if new is not None:
            yield _batch("new", new, schema)
        last = time.holdout_end or time.calibration_end
        profile = profile_transactions(tx, time.calibration_end, last, regularity=False)
        after = [rfm.days_after_end]
        for i, (calibration_end, holdout_end) in enumerate(json.loads(splits_json), start=1):
            at = rfm_summary(
                tx, dt.date.fromisoformat(calibration_end), dt.date.fromisoformat(holdout_end), time.unit, True
            )
            yield _batch("rfm", at.frame, schema, i)
            new = _new_rows(at)
            if new is not None:
                yield _batch("new", new, schema, i)
            after.append(at.days_after_end)
        if tracking:
            cohort, repeats = tracking_counts(tx, time.calibration_end, last)
            cohort = cohort.rename(columns={"first_day": "first_purchase", "customers": "frequency"})
            yield _batch("cohort", cohort, schema)
            yield _batch("repeat", repeats.rename(columns={"day": "first_purchase", "purchases": "frequency"}), schema)
        payload |= {
            "profile": dataclasses.asdict(profile),
            "period": dataclasses.asdict(period_facts(tx, time)),
            "days_after_end": after,
        }
    yield _batch("part", pd.DataFrame({"payload": [json.dumps(payload, default=_json_default)]}), schema)


# ---------- the parts added up ----------


def _sum_dicts(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = out.get(key, 0) + value
    return out


def _first_sorted(lists: list[list[str]], limit: int = 5) -> list[str]:
    return sorted({v for values in lists for v in values})[:limit]


def _merge_duplicates(counts: list[dict[str, Any]], spec: DataConfig) -> DuplicateCount:
    values = [c["value"] for c in counts if c["value"] is not None]
    base = DuplicateCount(**counts[0]) if counts else DuplicateCount(policy=spec.duplicates)
    return dataclasses.replace(
        base,
        rows=sum(c["rows"] for c in counts),
        dropped=sum(c["dropped"] for c in counts),
        invoices=sum(c["invoices"] for c in counts),
        identical_invoice_lines=sum(c["identical_invoice_lines"] for c in counts),
        first_customer_ids=_first_sorted([c["first_customer_ids"] for c in counts]),
        value=float(sum(values)) if values else None,
        conflicts=sum(c["conflicts"] for c in counts),
        first_conflicts=_first_sorted([c["first_conflicts"] for c in counts]),
    )


def _merge_reports(reports: list[dict[str, Any]], spec: DataConfig, label: str) -> ValidationReport:
    """The whole log's report from its parts' (every count adds up: each customer is in one part)."""
    total = ValidationReport(source=label, location="row", returns_policy=spec.returns)
    total.max_invalid_share = spec.max_invalid_share
    for key in ("rows_read", "rows_rejected", "rows_kept", "customer_days", "customers", "customer_ids"):
        setattr(total, key, sum(r[key] for r in reports))
    total.non_positive_price_lines = sum(r["non_positive_price_lines"] for r in reports)
    if spec.invoice is not None:  # the invoices read: counted over the parts by `_decide`
        total.invoices = sum(r["invoices"] or 0 for r in reports)
        total.invoices_kept = sum(r["invoices_kept"] or 0 for r in reports)
    if spec.line_items:
        total.non_positive_price_policy = spec.non_positive_price
    reasons = _sum_dicts([r["problems_by_reason"] for r in reports])
    total.problems_by_reason = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    total.returns = _sum_dicts([r["returns"] for r in reports])
    total.guest = _sum_dicts([r["guest"] for r in reports])
    total.cancellations = _sum_dicts([r["cancellations"] for r in reports])
    total.aware_timestamps = any(r["aware_timestamps"] for r in reports)
    total.duplicates = _merge_duplicates([r["duplicates"] for r in reports], spec)
    padded = [r for r in reports if r["padded_ids"]]
    if padded:
        total.padded_ids = _sum_dicts([r["padded_ids"] for r in padded])
        total.padded_first_ids = _first_sorted([r["padded_first_ids"] for r in padded])
        total.warnings.append(padded_ids_warning(total))
    return total


def _merge_profiles(
    profiles: list[dict[str, Any]],
    report: ValidationReport,
    regularity: list[RegularityEstimate],
    new: pd.DataFrame,
    calibration_end: dt.date,
) -> DataProfile:
    first = profiles[0]
    total = first["total_amount"]
    return DataProfile(
        source=report.source,
        rows_read=report.rows_read,
        rows_rejected=report.rows_rejected,
        rows_kept=report.rows_kept,
        customers=sum(p["customers"] for p in profiles),
        customer_days=sum(p["customer_days"] for p in profiles),
        first_date=min(dt.date.fromisoformat(p["first_date"]) for p in profiles),
        last_date=max(dt.date.fromisoformat(p["last_date"]) for p in profiles),
        repeat_buyers=sum(p["repeat_buyers"] for p in profiles),
        same_day_duplicates=report.same_day_merged,
        non_positive_rows=int(report.returns.get("non_positive_rows", 0)),
        total_amount=None if total is None else float(sum(p["total_amount"] for p in profiles)),
        customers_first_seen_after_calibration=len(new),
        late_customer_ids=[str(i) for i in new["customer_id"].head(10)],
        rows_after_period_end=sum(p["rows_after_period_end"] for p in profiles),
        invoices=report.invoices,
        invoices_kept=report.invoices_kept,
        customer_ids=report.customer_ids,
        guest=dict(report.guest),
        non_positive_price_lines=report.non_positive_price_lines,
        cancellations=dict(report.cancellations),
        returns_netted=report.returns.get("netted_value"),
        returns_unmatched=report.returns.get("unmatched_value"),
        regularity=regularity,
    )


def _merge_period(periods: list[dict[str, Any]]) -> PeriodFacts:
    return PeriodFacts(
        last_day=max(dt.date.fromisoformat(p["last_day"]) for p in periods),
        rows_after_calibration=sum(p["rows_after_calibration"] for p in periods),
        customers_after_calibration=sum(p["customers_after_calibration"] for p in periods),
        rows_after_holdout=sum(p["rows_after_holdout"] for p in periods),
    )


# ---------- the whole log's decisions ----------


def _customers(ids: list[str]) -> str:
    return f"customers {first_ids(ids)}"


def _write_rejected(problems: DataFrame, target: str) -> None:
    """Every problem as Parquet at `target` (a folder of part files), written beside it and then moved in, so
    that the target is whole or absent (on a local file system; elsewhere Spark's own commit protocol)."""
    cols = ["line", "customer_id", "column", "value", "reason", "file"]
    frame = problems.select(*cols).withColumnRenamed("line", "row_id")
    if "://" in target and not target.startswith("file://"):
        frame.write.mode("overwrite").parquet(target)
        return
    path = Path(target.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rejected-", dir=path.parent))
    try:
        # a file:// URI: a plain path would name the cluster's default file system (HDFS), not this one
        frame.write.mode("overwrite").parquet((staging / "rows").resolve().as_uri())
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        (staging / "rows").replace(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _invalid_rows(out: DataFrame, report: ValidationReport, spec: DataConfig, con: duckdb.DuckDBPyConnection) -> None:
    """`load_transactions`'s `_validate` on the whole log: the first problems, the rejected rows, the refusal."""
    if not report.rows_rejected:
        return
    problems = out.filter("kind = 'problem'")
    first = problems.orderBy("file", "line", "column").limit(_PROBLEMS_COLLECTED).toPandas()
    report.first_problems = [
        RowProblem(
            None, _text(r["customer_id"]), str(r["column"]), _text(r["value"]), str(r["reason"]), _text(r["file"])
        )
        for r in first.head(_SHOWN).to_dict("records")
    ]
    if spec.rejected_rows:
        _write_rejected(problems, spec.rejected_rows)
    over = report.invalid_share > spec.max_invalid_share
    if over or spec.invalid_rows == "fail":
        con.register("clv_problems", first[["line", "customer_id", "column", "value", "reason"]])
        cause = problem_cause(con, spec, report) if over else None
        raise problem_error(report, cause, spec.max_invalid_share if over else None, spec.invalid_rows == "drop")


def _shared_invoices(out: DataFrame, spec: DataConfig, report: ValidationReport) -> None:
    """The refusal of invoices whose kept lines carry more than one customer id, over the whole log (the parts'
    ids together)."""
    from pyspark.sql import functions as F

    if spec.invoice is None:
        return
    ids = F.from_json(F.col("payload"), "array<string>")
    shared = (
        out.filter("kind = 'invoice'")
        .select(F.col("customer_id").alias("invoice"), F.explode(ids).alias("cid"))
        .groupBy("invoice")
        .agg(F.array_sort(F.collect_set("cid")).alias("ids"))
        .filter(F.size("ids") > 1)
    )
    count = shared.count()
    if count:
        first = [(r.invoice, list(r.ids)) for r in shared.orderBy("invoice").limit(5).collect()]
        raise invoice_problem(spec, report, count, first)


def _mark_shared_transaction_ids(frame: DataFrame, spec: DataConfig) -> DataFrame:
    """The log with SHARED_TID_COLUMN when some transaction id is on the rows of two customer ids (as written):
    the parts split the customers, so such an id is in two parts, and the parts report its rows apart
    (PartFacts.shared_tids) for `_shared_tid_duplicates` to count them as one group, as the local engine does.
    The ids are marked as Spark reads them, a superset of what the duplicate rule finds (that rule counts valid
    rows only, with the ids as the local engine reads them). The log as it is when no id is shared."""
    from pyspark.sql import functions as F

    if spec.transaction_id is None:
        return frame
    tid = F.trim(F.col(f"`{spec.transaction_id}`").cast("string"))
    rows = frame.select(tid.alias("tid"), F.col(f"`{spec.customer_id}`").cast("string").alias("cid"))
    shared = (
        rows.filter("tid <> ''")
        .groupBy("tid")
        .agg(F.countDistinct("cid").alias("ids"))
        .filter("ids > 1")
        .select("tid", F.lit(True).alias(SHARED_TID_COLUMN))
    )
    if shared.isEmpty():
        return frame
    marked = frame.withColumn("__clv_tid", tid).join(shared.withColumnRenamed("tid", "__clv_tid"), "__clv_tid", "left")
    return marked.drop("__clv_tid").fillna(False, subset=[SHARED_TID_COLUMN])


def _shared_tid_duplicates(out: DataFrame, count: DuplicateCount) -> DuplicateCount:
    """The parts' duplicate counts with the marked transaction ids (`_mark_shared_transaction_ids`) counted over
    the whole log, as the local engine counts them (`clv.data.duplicates`): an id whose valid rows are in two
    parts is one group, whose rows but one repeat it, and a conflict (the parts hold different customers); each
    marked group of two rows or more is named by its smallest customer id (the parts leave those unnamed)."""
    from pyspark.sql import functions as F

    payload = F.from_json(F.col("payload"), "customers array<string>, conflict boolean")
    groups = (
        out.filter("kind = 'shared_tid'")
        .select(F.col("customer_id").alias("tid"), F.col("frequency").alias("n"), payload.alias("p"))
        .groupBy("tid")
        .agg(
            F.count("*").alias("parts"),
            F.sum("n").alias("n"),
            F.sum(F.when(F.col("n") > 1, F.col("n") - 1).otherwise(0)).alias("counted"),
            F.sum(F.col("p.conflict").cast("long")).alias("conflicts_counted"),
            F.array_min(F.flatten(F.collect_list("p.customers"))).alias("first_customer"),
        )
        .filter("n > 1")
        .persist()
    )
    try:
        spread = groups.filter("parts > 1")
        totals = spread.agg(
            F.count("*").alias("tids"),
            F.sum(F.col("n") - 1 - F.col("counted")).alias("rows"),
            F.sum(1 - F.col("conflicts_counted")).alias("conflicts"),
        ).first()
        first_tids = [r.tid for r in spread.orderBy("tid").select("tid").limit(5).collect()]
        named = groups.select("first_customer").distinct().orderBy("first_customer").limit(5).collect()
    finally:
        groups.unpersist()
    spread_rows, spread_conflicts = (
        (int(totals["rows"]), int(totals["conflicts"])) if totals is not None and totals["tids"] else (0, 0)
    )
    return dataclasses.replace(
        count,
        rows=count.rows + spread_rows,
        conflicts=count.conflicts + spread_conflicts,
        first_conflicts=_first_sorted([count.first_conflicts, first_tids]),
        first_customer_ids=_first_sorted([count.first_customer_ids, [r.first_customer for r in named]]),
    )


def _decide(
    out: DataFrame,
    parts: list[dict[str, Any]],
    spec: DataConfig,
    types: dict[str, str],
    label: str,
) -> ValidationReport:
    """The whole log's report, and its refusals in the local engine's order (`load_transactions`)."""
    report = _merge_reports([p["report"] for p in parts], spec, label)
    if spec.invoice is not None:  # an invoice's lines may be in two parts (a guest's and a customer's): once each
        report.invoices = out.filter("kind = 'invoice'").select("customer_id").distinct().count()
    facts = [p["facts"] for p in parts]
    with duckdb.connect() as con:
        if types.get(spec.date) == "VARCHAR":
            order = DateOrderFacts()
            for f in facts:
                order = order.combine(DateOrderFacts(**f["date_order"]))
            problem = date_order_problem(con, order, spec.date_format, label, spec.date)
            if problem is not None:
                raise problem
        if report.rows_read == 0:
            raise DataError(
                f"{label}: no transactions (the source has no rows)",
                hint="check that data.source is the export with its rows (not an empty or truncated copy)",
            )
        _invalid_rows(out, report, spec, con)
    if spec.transaction_id is not None:
        report.duplicates = _shared_tid_duplicates(out, report.duplicates)
    duplicates = duplicates_problem(report.duplicates, spec, label)
    if duplicates is not None:
        raise duplicates
    aware, naive = sum(f["aware"] for f in facts), sum(f["naive"] for f in facts)
    if aware and naive:
        raise DataError(
            f"{label}: dates mix time-zone-aware and naive timestamps ({aware} aware, first of "
            f"{_customers(_first_sorted([f['first_aware'] for f in facts]))}; {naive} naive, first of "
            f"{_customers(_first_sorted([f['first_naive'] for f in facts]))})",
            hint=MIXED_ZONES_HINT,
        )
    if report.non_positive_price_lines and spec.non_positive_price == "fail":
        raise price_problem(spec, report, _customers(_first_sorted([f["first_non_positive_price"] for f in facts])))
    _shared_invoices(out, spec, report)
    returned = sum(f["returned"] for f in facts)
    if returned and spec.returns == "fail":
        raise returns_problem(report, returned, _customers(_first_sorted([f["first_returned"] for f in facts])))
    if spec.returns != "net":  # the parts net whatever their policy; only `net` reports it (as locally)
        report.returns = {k: v for k, v in report.returns.items() if k in _NOT_NETTING}
    if report.customer_days == 0:
        raise DataError(f"{label}: no valid transactions left after cleaning")
    for message in report.warnings:
        warnings.warn(message, DataWarning, stacklevel=3)
    return report


#: the keys of ValidationReport.returns that are not the netting's (`_apply_returns`'s own)
_NOT_NETTING = ("non_positive_rows", "zero_amount_rows", "negative_amount_rows", "dropped_rows")


# ---------- the step ----------


def _duckdb_types(frame: DataFrame) -> dict[str, str]:
    """The source's columns as DuckDB types them from Spark's Arrow batches (as the parts see them)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    # a timestamp column (Spark's TIMESTAMP, an instant) reaches the parts as an aware Arrow timestamp; its zone
    # names only how it is shown, and DuckDB types it TIMESTAMP WITH TIME ZONE whatever the zone
    schema = to_arrow_schema(frame.schema, timezone="UTC")
    with duckdb.connect() as con:
        con.register("clv_empty", schema.empty_table())
        return {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE clv_empty").fetchall()}


def _partitions(spark: SparkSession, frame: DataFrame, config: RunConfig) -> int:
    """The customer stage's partitions: `spark.partitions`, else the input's, at least the session's cores (on
    Spark Connect, whose client sees no partitions, the session's shuffle partitions: `parallelism`)."""
    if config.spark.partitions is not None:
        return config.spark.partitions
    inputs = 0 if is_connect(spark) else frame.rdd.getNumPartitions()
    return max(parallelism(spark), inputs)


def _customer_key(frame: DataFrame, types: dict[str, str], spec: DataConfig) -> Any:
    """A column equal for rows of one customer id (as `clv.data.transactions` reads ids): the id's trimmed text."""
    from pyspark.sql import functions as F

    return F.trim(F.col(f"`{spec.customer_id}`").cast("string"))


def _collect(out: DataFrame, kind: str, split: int, columns: list[str], limit: int, what: str) -> pd.DataFrame:
    return collected(out.filter(f"kind = '{kind}' AND split = {split}").select(*columns), limit, what)


def spark_data_step(
    spark: SparkSession, config: RunConfig, source: str | DataFrame | None = None, check_period: bool = True
) -> DataStep:
    """The data step of `clv.pipeline.prepare_data` (validation report, profile, RFM summary, notes) on Spark,
    with the local engine's numbers (module docstring); `check_period=False` makes the period's refusal a note."""
    data, _, _ = spark_log_step(spark, config, source, check_period=check_period)
    assert data is not None
    return data


def spark_log_step(
    spark: SparkSession,
    config: RunConfig,
    source: str | DataFrame | None = None,
    splits: list[Split] | None = None,
    main: bool = True,
    tracking: bool = False,
    check_period: bool = True,
) -> tuple[DataStep | None, RepeatTracking | None, dict[Split, RfmSummary | DataError]]:
    """The log read, validated and summarised on Spark in one pass: the data step at the config's split (with
    `main`), its weekly repeat tracking (with `tracking`), and the RFM summary at each of `splits` (or the
    DataError `rfm_summary` raises for a split without a customer), as `clv.pipeline.log_splits` gives them."""
    from clv.data.transactions import _check_columns
    from clv.spark.source import read_source

    spec = config.data
    splits = splits or []
    frame, label = read_source(spark, config.data.source if source is None else source)
    source_columns = [c for c in frame.columns if c not in (ROW_COLUMN, FILE_COLUMN)]
    types = _duckdb_types(frame.select(*source_columns))
    _check_columns(types, spec, label)
    marked = _mark_shared_transaction_ids(frame, spec)
    parts = marked.repartition(_partitions(spark, frame, config), _customer_key(marked, types, spec))
    config_json = config.model_dump_json()
    splits_json = json.dumps([[c.isoformat(), h.isoformat()] for c, h in splits])
    out = parts.mapInArrow(lambda batches: part_rows(batches, config_json, label, splits_json, tracking), _out_schema())
    out = out.persist()
    try:
        payloads = [json.loads(r.payload) for r in out.filter("kind = 'part'").select("payload").collect()]
        report = _decide(out, payloads, spec, types, label)
        with_tx = [p for p in payloads if "profile" in p]
        data = _summarised(out, with_tx, report, config, check_period) if main else None
        track = _tracking(out, config) if tracking else None
        summaries: dict[Split, RfmSummary | DataError] = {}
        for i, (calibration_end, holdout_end) in enumerate(splits, start=1):
            after = sum(p["days_after_end"][i] for p in with_tx)
            try:
                summaries[(calibration_end, holdout_end)] = _split_summary(
                    out, i, calibration_end, holdout_end, config, after
                )[0]
            except DataError as exc:
                summaries[(calibration_end, holdout_end)] = exc
        return data, track, summaries
    finally:
        out.unpersist()


def _tracking(out: DataFrame, config: RunConfig) -> RepeatTracking:
    """The config's split's weekly repeat tracking from the parts' counts (a row a day, summed in Spark)."""
    from pyspark.sql import functions as F

    def counts(kind: str, day: str, count: str) -> pd.DataFrame:
        rows = out.filter(f"kind = '{kind}'").groupBy("first_purchase").agg(F.sum("frequency").alias(count))
        frame = rows.toPandas().rename(columns={"first_purchase": day})
        frame[day] = pd.to_datetime(frame[day]).dt.date
        return frame

    time = config.time
    return tracking_from_counts(
        counts("cohort", "first_day", "customers"),
        counts("repeat", "day", "purchases"),
        time.calibration_end,
        time.holdout_end or time.calibration_end,
    )


def _split_summary(
    out: DataFrame,
    split: int,
    calibration_end: dt.date,
    holdout_end: dt.date | None,
    config: RunConfig,
    days_after_end: int,
) -> tuple[RfmSummary, list[RegularityEstimate] | None]:
    """`rfm_summary` at one split from the parts' rows of it: collected to the driver, or for split 0 (the
    config's own) kept on Spark (`clv.spark.rows.SparkRows`), with its regularity estimates (`_regularity`)."""
    from pyspark.sql import functions as F

    limit = config.spark.max_collected_rows
    columns = ["customer_id", "frequency", "recency", "T", "monetary_value", "sum_log_intervals", *HOLDOUT_COLUMNS]
    if holdout_end is None:
        columns = [c for c in columns if c not in HOLDOUT_COLUMNS]
    if not config.data.has_values:
        columns = [c for c in columns if c not in ("monetary_value", "monetary_value_holdout")]
    rows = out.filter(f"kind = 'rfm' AND split = {split}")
    if split == 0:
        typed = [F.col(c).cast("bigint").alias(c) if c.startswith("frequency") else F.col(c) for c in columns]
        table = rows.select(*typed).persist()
        try:
            n = table.count()
            if n == 0:
                raise DataError(f"no customer made a purchase on or before calibration_end {calibration_end}")
            regularity = _regularity(rows, limit, calibration_end)
            rfm = _summary(out, SparkRows(table, n, limit), split, calibration_end, holdout_end, config, days_after_end)
        except BaseException:
            table.unpersist()
            raise
        return rfm, regularity
    frame = typed_rows(collected(rows.select(*columns), limit, "customers", order=["customer_id"]))
    if frame.empty:
        raise DataError(f"no customer made a purchase on or before calibration_end {calibration_end}")
    return _summary(out, frame, split, calibration_end, holdout_end, config, days_after_end), None


def _regularity(rows: DataFrame, limit: int, calibration_end: dt.date) -> list[RegularityEstimate]:
    """`clv.data.regularity.regularity_from_gaps` from what its estimates read, counted on Spark: the distinct
    (last, previous) inter-purchase times with their customers, and the median of the customers' own Gamma shapes
    (computed in the parts) as exact order statistics, as np.median takes it."""
    from pyspark.sql import functions as F

    from clv.spark.digest import order_statistics

    with_gaps = rows.filter(F.col("gap_n").isNotNull())
    pairs = with_gaps.groupBy("gap_last", "gap_previous").agg(F.count(F.lit(1)).cast("double").alias("customers"))
    last_two = collected(pairs, limit, "distinct last two inter-purchase times")
    last_two = last_two.rename(columns={"gap_last": "last", "gap_previous": "previous"})
    last_two = last_two.sort_values(["last", "previous"], kind="stable").reset_index(drop=True)
    shaped = with_gaps.filter(F.col("gap_shape").isNotNull() & ~F.isnan("gap_shape"))
    n = shaped.count()
    middle = [(n - 1) // 2] if n % 2 else [n // 2 - 1, n // 2]
    median = float(np.mean(order_statistics(shaped, F.col("gap_shape"), middle, n))) if n else None
    return regularity_estimates(last_two, median, n, calibration_end)


def _summary(
    out: DataFrame,
    rows: pd.DataFrame | SparkRows,
    split: int,
    calibration_end: dt.date,
    holdout_end: dt.date | None,
    config: RunConfig,
    days_after_end: int,
) -> RfmSummary:
    """The summary of the split's `rows`, with the customers first seen after its calibration end collected."""
    new = _collect(
        out,
        "new",
        split,
        ["customer_id", "first_purchase", "frequency_holdout", "monetary_value_holdout"],
        config.spark.max_collected_rows,
        "customers first seen after the calibration end",
    ).rename(columns={"frequency_holdout": "purchases_holdout", "monetary_value_holdout": "value_holdout"})
    new = new.sort_values(["first_purchase", "customer_id"], kind="stable").reset_index(drop=True)
    new["first_purchase"] = pd.to_datetime(new["first_purchase"]).dt.date
    new["purchases_holdout"] = new["purchases_holdout"].astype(np.int64)
    if new.empty:  # as DuckDB gives an empty list (a text column otherwise)
        new["customer_id"] = new["customer_id"].astype(object)
    new = new[list(NEW_CUSTOMER_COLUMNS) if config.data.has_values else list(NEW_CUSTOMER_COLUMNS[:3])]
    return RfmSummary(
        rows=rows,
        unit=config.time.unit,
        calibration_end=calibration_end,
        holdout_end=holdout_end,
        late_customers=len(new),
        late_customer_ids=new["customer_id"].head(10).tolist(),
        days_after_end=days_after_end,
        new_customers=new,
    )


def _summarised(
    out: DataFrame, parts: list[dict[str, Any]], report: ValidationReport, config: RunConfig, check_period: bool
) -> DataStep:
    """`clv.pipeline.summarise` on the parts: the period's check, the profile and the RFM summary."""
    from clv.pipeline import DataStep

    time = config.time
    period = judge_period(_merge_period([p["period"] for p in parts]), time)
    if period.problem is not None and check_period:
        raise period.problem
    notes = period.notes if period.problem is None else [period.problem.message, *period.notes]
    after = sum(p["days_after_end"][0] for p in parts)
    rfm, regularity = _split_summary(out, 0, time.calibration_end, time.holdout_end, config, after)
    assert rfm.new_customers is not None and regularity is not None
    profiles = [p["profile"] for p in parts]
    profile = _merge_profiles(profiles, report, regularity, rfm.new_customers, time.calibration_end)
    return DataStep(report=report, profile=profile, rfm=rfm, notes=notes)
