"""The files of reports/<name>/, written whole or not at all, and the report rebuilt from them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clv.config import RunConfig, config_hash
from clv.data.rfm import NEW_CUSTOMER_COLUMNS
from clv.digest import digest_customers
from clv.drivers import DRIVER_UNITS, Valuation, drivers_table, posterior_intervals
from clv.errors import ClvError
from clv.model import DROPOUT
from clv.report.files import staged_folder
from clv.report.html import build_report
from clv.spark.score import SparkValue
from clv.spend.outliers import spend_value_frame
from clv.tiers import at_risk, churn_column, churn_window
from clv.value import column_units
from clv.versions import package_versions

if TYPE_CHECKING:
    from clv.pipeline import RunResult

__all__ = [
    "COLUMNS_FILE",
    "CUSTOMERS_BY_TIER",
    "NO_MONEY_NAMES",
    "RFM_COLUMNS",
    "drivers_file",
    "file_columns",
    "forecast_table",
    "new_customers_table",
    "read_by_tier",
    "read_drivers",
    "rebuild_report",
    "round_to_total",
    "schedule_file",
    "summary_dict",
    "write_by_tier",
    "write_outputs",
]


#: forecast columns that are quantiles of a monthly total: rounded each on its own (they do not add up)
_QUANTILE_SUFFIXES = ("_p10", "_p50", "_p90")


def round_to_total(values: np.ndarray, decimals: int = 2) -> np.ndarray:
    """Round values so that they add up to their total rounded: each is the difference of the rounded running
    totals (the largest change of a value is under one unit of the last decimal, e.g. a cent)."""
    running = np.round(np.cumsum(np.asarray(values, dtype=float)), decimals)
    return np.round(np.diff(running, prepend=0.0), decimals)


def forecast_table(result: RunResult) -> pd.DataFrame:
    """forecast.csv: per future calendar month its label (`YYYY-MM`), its first and last dates in the forecast
    (ISO, inclusive), the days it covers and whether that is only part of the month (the first month when the
    calibration end is inside a month, the last when the horizon ends inside one); expected purchases, expected
    revenue and discounted profit rounded to cents so that the months add up to summary.json's totals rounded
    (`round_to_total`); the P10 / P50 / P90 of a posterior rounded each; with prediction.band the band of each
    month's purchases and revenue (`clv.evaluate.band.ForecastBand.columns`, rounded each); and `currency` when
    data.currency is set and the data has amounts."""
    forecast = result.value.forecast.drop(columns=["start", "end"])
    days = forecast["days"].to_numpy(dtype=float)
    if np.all(days == np.round(days)):
        forecast["days"] = days.astype(np.int64)
    for column in forecast.columns.drop(["month", "start_date", "end_date", "days", "partial"], errors="ignore"):
        values = forecast[column].to_numpy(dtype=float)
        quantile = column.endswith(_QUANTILE_SUFFIXES)
        forecast[column] = np.round(values, 2) if quantile else round_to_total(values)
    if result.forecast_band is not None:
        band = result.forecast_band.columns()
        for column in band.columns:
            values = band[column].to_numpy()
            forecast[column] = np.round(values.astype(float), 2) if column.endswith(("_lo", "_hi")) else values
    currency = result.config.data.currency
    if currency and "expected_revenue" in forecast:
        forecast["currency"] = currency
    return forecast


def new_customers_table(result: RunResult) -> pd.DataFrame:
    """new_customers.csv: the customers first seen after the calibration end (not in the forecast), with their
    first purchase date and their purchases (and value) in the holdout (`clv.data.rfm.new_customers`)."""
    new = result.data.rfm.new_customers
    if new is None:  # an RFM table: no customer is first seen after the calibration end
        columns = NEW_CUSTOMER_COLUMNS if result.config.data.has_values else NEW_CUSTOMER_COLUMNS[:3]
        return pd.DataFrame(columns=list(columns))
    return new.assign(value_holdout=new["value_holdout"].round(2)) if "value_holdout" in new else new


def drivers_file(result: RunResult) -> pd.DataFrame | None:
    """drivers.csv (`clv.drivers.drivers_table`): what drives value, when the run's fitted models have
    covariates (None otherwise), valued as the run values its customers (`clv.pipeline.value_models`: its
    horizon, discounting and margin, and the spend outliers' capped spend under `model.spend_outliers: cap`)."""
    fitted = result.fitted
    if all(m is None or m.covariates_ is None for m in (fitted.purchase, fitted.spend)):
        return None
    rfm = result.data.rfm.frame
    if result.spend_outliers is not None:
        rfm = spend_value_frame(rfm, result.spend_outliers)
    estimates = None
    if fitted.purchase_posterior is not None:  # a Bayesian fit: posterior intervals, not Wald ones
        estimates = posterior_intervals(fitted.purchase_posterior)
        if fitted.spend_posterior is not None:
            estimates |= posterior_intervals(fitted.spend_posterior)
    return drivers_table(fitted.purchase, fitted.spend, rfm, Valuation.of(result.config), estimates)


def _drivers_block(result: RunResult, drivers: pd.DataFrame | None) -> dict[str, Any] | None:
    """summary.json's pointer to drivers.csv: its file, interval, what its columns measure, and the sentences."""
    if drivers is None:
        return None
    return {
        "file": "drivers.csv",
        "rows": len(drivers),
        "interval_level": float(drivers["interval_level"].iloc[0]),
        "interval_method": str(drivers["interval_method"].iloc[0]),
        "horizon": str(drivers["horizon"].iloc[0]),
        "units": dict(DRIVER_UNITS),
        "sentences": list(dict.fromkeys(drivers["sentence"].tolist())),
    }


def _new_customers_block(result: RunResult) -> dict[str, Any]:
    """summary.json's count of the new customers, with their holdout purchases and value."""
    new = result.data.rfm.new_customers
    block: dict[str, Any] = {"customers": result.data.rfm.late_customers, "file": "new_customers.csv"}
    if new is not None:
        block["purchases_holdout"] = int(new["purchases_holdout"].sum())
        if "value_holdout" in new:
            block["value_holdout"] = round(float(new["value_holdout"].sum()), 2)
    return block


def _model_block(result: RunResult, which: str) -> dict[str, Any] | None:
    model = result.fitted.purchase if which == "purchase" else result.fitted.spend
    if model is None:
        return None
    block = model.summary()
    block["method"] = result.fitted.method
    posterior = result.fitted.purchase_posterior if which == "purchase" else result.fitted.spend_posterior
    if posterior is not None:
        summary = posterior.summary(result.config.bayes.interval)
        block["posterior"] = summary["posterior"]
        block["diagnostics"] = summary["diagnostics"]
        block["maximum_likelihood"] = summary["maximum_likelihood"]
        block["priors"] = summary["priors"]
        if summary.get("pooling"):
            block["pooling"] = summary["pooling"]
        if summary.get("held"):  # parameters held fixed, not sampled (the regularity models' k), and how
            block["held"] = summary["held"]
    return block


def _churn_risk(result: RunResult) -> dict[str, Any]:
    """The churn-risk measure (the column, its window in time units and the at-risk threshold), and whether
    P(alive) and the churn-risk segments mean anything for this fit, and why not."""
    caveat = result.fitted.purchase.not_identified_.get(DROPOUT)
    config = result.config
    window = churn_window(config.tiers, config.time.unit)
    return {
        "identified": caveat is None,
        "reason": caveat,
        "column": churn_column(window, config.time.unit),
        "window": window,
        "unit": config.time.unit,
        "at_risk_p_purchase": config.tiers.at_risk_p_purchase,
    }


def _units(result: RunResult) -> dict[str, str]:
    """summary.json's column units: times in the run's unit, money in data.currency (when the config has it),
    CLV in discounted purchases for data without amounts."""
    config = result.config
    window = churn_window(config.tiers, config.time.unit)
    units = column_units(
        result.fitted.spend is not None,
        config.time.unit,
        getattr(config.data, "currency", None),
        (churn_column(window, config.time.unit), window),
    )
    if result.fitted.spend is None:
        units = {NO_MONEY_NAMES.get(k, k): v for k, v in units.items()}
    band = result.forecast_band
    if band is not None:
        money = config.data.currency or "currency of the data"
        for kind in band.kinds:
            what = "repeat purchases" if kind == "purchases" else f"revenue ({money}, not discounted)"
            for end, word in (("lo", "lower"), ("hi", "upper")):
                units[f"{kind}_band_{end}"] = (
                    f"{what} in the month: {word} end of the central {band.level:.0%} band of the actual total"
                )
    return units | {"time": config.time.unit}


def summary_dict(
    result: RunResult, model_dir: Path | None = None, drivers: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Everything summary.json records (`model_dir`: where the run's models were saved, if they were; `drivers`:
    the run's drivers table, `drivers_file`)."""
    config = result.config
    digest = result.digest
    forecast = result.value.forecast
    data = result.data
    totals: dict[str, Any] = {
        "horizon": config.prediction.horizon,
        "horizon_label": config.horizon_label(),
        "horizon_days": round(float(forecast["days"].sum()), 6),
        "horizon_units": config.horizon_units(),
        "months": len(forecast),
        "first_month": str(forecast["month"].iloc[0]),
        "last_month": str(forecast["month"].iloc[-1]),
        "unit": config.time.unit,
        "currency": config.data.currency if "expected_revenue" in forecast else None,
        "expected_purchases": float(forecast["expected_purchases"].sum()),
        "expected_revenue": float(forecast["expected_revenue"].sum()) if "expected_revenue" in forecast else None,
        "total_clv": digest.total_clv,
    }
    if digest.total_residual_clv is not None:
        totals["total_residual_clv"] = digest.total_residual_clv
    distribution = getattr(result.value, "totals", None)
    if distribution is not None:
        totals["distribution"] = distribution
    return {
        "name": config.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config.resolved(),
        "config_hash": config_hash(config),
        "data": {
            "source_kind": "rfm_table" if data.report is None else "transactions",
            "profile": data.profile.to_dict() if data.profile is not None else None,
            "validation": None
            if data.report is None
            else {
                "rows_read": data.report.rows_read,
                "rows_rejected": data.report.rows_rejected,
                "invalid_share": data.report.invalid_share,
                "max_invalid_share": data.report.max_invalid_share,
                "duplicates": data.report.duplicates.to_dict(),
                "ids_with_spaces": data.report.padded_ids,
                "currency": config.data.currency,
                "problems_by_reason": data.report.problems_by_reason,
                "returns_policy": data.report.returns_policy,
                "returns": data.report.returns,
                "invoices": data.report.invoices,
                "guest": data.report.guest,
                "non_positive_price_lines": data.report.non_positive_price_lines,
                "cancellations": data.report.cancellations,
                "summary": data.report.summary_lines(),
            },
            "rfm_customers": data.rfm.customers,
            "customer_table": data.customers.to_dict() if data.customers is not None else None,
            "customers_first_seen_after_calibration": data.rfm.late_customers,
            "new_customers": _new_customers_block(result),
        },
        "purchase_model": _model_block(result, "purchase"),
        "model_choice": result.model_choice.to_dict() if result.model_choice is not None else None,
        "spend_model": _model_block(result, "spend"),
        "model_dir": str(model_dir) if model_dir else None,
        "model_run_id": result.fitted.metadata.get("run_id") if result.fitted.metadata else None,
        "tiers": result.tiers.to_dict(orient="records"),
        "segments": digest.segment_counts(),
        "churn_risk": _churn_risk(result),
        "drivers": _drivers_block(result, drivers),
        "spend_outliers": None
        if result.spend_outliers is None
        else result.spend_outliers.to_dict()
        | {"sentence": result.spend_outliers.sentence(result.config.data.currency)},
        "forecast_totals": totals,
        "forecast_band": None if result.forecast_band is None else result.forecast_band.to_dict(),
        "holdout": result.holdout,
        "units": _units(result),
        "warnings": result.warnings,
        "versions": package_versions(),
        "timings_seconds": result.timings,
    }


#: the value columns' names in the files of a run without amounts: the unit in the header, no money word
NO_MONEY_NAMES: dict[str, str] = {
    name: f"{name}_discounted_purchases" for name in ("clv", "residual_clv", "total_clv", "min_clv", "max_clv")
}
_MONEY_NAMES = {v: k for k, v in NO_MONEY_NAMES.items()}
#: the RFM view's columns, left out of at_risk.csv (the action list follows the forecast, not past quintiles)
RFM_COLUMNS = ("r_score", "f_score", "m_score", "rfm_score", "rfm_segment")


def file_columns(frame: pd.DataFrame, money: bool) -> pd.DataFrame:
    """`frame` with the column names its files carry: as they are with amounts, with the unit (discounted
    purchases) in the value columns' names without."""
    return frame if money else frame.rename(columns=NO_MONEY_NAMES)


def schedule_file(money: bool, kind: str = "csv") -> str:
    """The per-customer monthly schedule's file: revenue with amounts, purchases without (Parquet under
    `engine: spark`)."""
    return f"revenue_schedule.{kind}" if money else f"purchase_schedule.{kind}"


_COLUMN_ORDER = b"clv.columns"
#: under `engine: spark`, the customer table's folder: Parquet partitioned by tier (`tier=<label>/`), no CSV
CUSTOMERS_BY_TIER = "customers"
#: in a customer table's folder written by Spark, the table's columns in their order (a JSON list); readers of
#: Parquet datasets skip files whose names start with an underscore
COLUMNS_FILE = "_clv_columns.json"


def write_by_tier(customers: pd.DataFrame, folder: Path) -> None:
    """The customer table as Parquet partitioned by tier (hive style, `tier=<label>/part-0.parquet`), each
    part in the table's order (highest CLV first); `read_by_tier` reads it back."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    table = pa.Table.from_pandas(customers, preserve_index=False)
    order = json.dumps(list(customers.columns)).encode()
    table = table.replace_schema_metadata((table.schema.metadata or {}) | {_COLUMN_ORDER: order})
    ds.write_dataset(
        table,
        folder,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("tier", pa.string())]), flavor="hive"),
        basename_template="part-{i}.parquet",
        existing_data_behavior="error",
    )


def read_by_tier(folder: Path) -> pd.DataFrame:
    """`write_by_tier`'s folder as the customer table: its columns in their order, highest CLV first (ties by
    id), the tier as text."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    table = dataset.to_table()
    frame = table.to_pandas()
    frame["tier"] = frame["tier"].astype(str)
    order = (table.schema.metadata or {}).get(_COLUMN_ORDER)
    if order is None and (folder / COLUMNS_FILE).is_file():  # written by Spark: the order beside the parts
        order = (folder / COLUMNS_FILE).read_bytes()
    if order is not None:
        frame = frame[json.loads(order)]
    value = "clv" if "clv" in frame else NO_MONEY_NAMES["clv"]
    frame = frame.sort_values([value, "customer_id"], ascending=[False, True], kind="stable")
    return frame.reset_index(drop=True)


def write_outputs(result: RunResult, model_dir: Path | None = None) -> Path:
    """Write reports/<name>/ whole or not at all (the `evaluation/` folder of `clv evaluate` is kept) and return
    its path; `model_dir` is where the run's models were saved, recorded in summary.json."""
    target = Path(result.config.output.reports_dir) / result.config.name
    money = result.fitted.spend is not None
    spark = result.config.engine == "spark"
    with staged_folder(target, keep=("evaluation",)) as staging:
        if result.customers is None:  # scored on Spark: the big tables are written from there
            from clv.spark.score import write_spark_tables

            assert isinstance(result.value, SparkValue)
            action_list = write_spark_tables(result.value, staging, money, result.config.spark.max_collected_rows)
        else:
            action_list = _write_tables(result, staging, money, spark)
        action_list.drop(columns=[c for c in RFM_COLUMNS if c in action_list]).to_csv(
            staging / "at_risk.csv", index=False
        )
        file_columns(result.tiers, money).to_csv(staging / "tiers.csv", index=False)
        forecast = forecast_table(result)
        forecast.to_csv(staging / "forecast.csv", index=False, float_format="%.2f")
        new_customers_table(result).to_csv(staging / "new_customers.csv", index=False, float_format="%.2f")
        if result.migration is not None:
            result.migration.to_csv(staging / "migration.csv")
        drivers = drivers_file(result)
        if drivers is not None:
            drivers.to_csv(staging / "drivers.csv", index=False)
        summary = summary_dict(result, model_dir, drivers)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        html = build_report(summary, result.digest, forecast, result.tiers, result.migration, drivers)
        (staging / "report.html").write_text(html, encoding="utf-8")
    return target


def _write_tables(result: RunResult, staging: Path, money: bool, spark: bool) -> pd.DataFrame:
    """The customer table and the schedule from the driver (CSV and Parquet; by tier and Parquet under
    `engine: spark`); the at-risk rows, for at_risk.csv."""
    assert result.customers is not None and not isinstance(result.value, SparkValue)
    in_files = file_columns(result.customers, money)
    if spark:
        write_by_tier(in_files, staging / CUSTOMERS_BY_TIER)
        result.value.schedule().to_parquet(staging / schedule_file(money, "parquet"), index=False)
    else:
        in_files.to_csv(staging / "customers.csv", index=False)
        in_files.to_parquet(staging / "customers.parquet", index=False)
        result.value.schedule().to_csv(staging / schedule_file(money), index=False)
    return at_risk(in_files)


def read_drivers(path: Path) -> pd.DataFrame:
    """A saved drivers.csv, its labels as text exactly as written (a level `01` stays `01`)."""
    labels = ("covariate", "level", "reference_level", "contrast", "design", "distinguishable")
    unknown = ("standard_error", "coefficient_lo", "coefficient_hi", "exp_coefficient_lo", "exp_coefficient_hi")
    return pd.read_csv(
        path, dtype=dict.fromkeys(labels, str), keep_default_na=False, na_values={key: [""] for key in unknown}
    )


def rebuild_report(config: RunConfig) -> Path:
    """Rebuild report.html from the saved outputs of reports/<name>/ (no data read, nothing refitted). Under
    `engine: spark` a customer table saved by tier is digested on Spark (`clv.spark.digest.saved_digest`)."""
    folder = Path(config.output.reports_dir) / config.name
    by_tier = (folder / CUSTOMERS_BY_TIER).is_dir()
    needed = ["summary.json", *([] if by_tier else ["customers.parquet"]), "forecast.csv", "tiers.csv"]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise ClvError(
            f"{folder} lacks {', '.join(missing)}: there are no saved outputs to build the report from",
            hint=f"run `clv run` with this config first (it writes {folder}/)",
        )
    summary = json.loads((folder / "summary.json").read_text())
    churn = (summary.get("churn_risk") or {}).get("column")
    if by_tier and config.engine == "spark":  # digested where the table is read, never brought to the driver
        from clv.spark.digest import saved_digest

        digest = saved_digest(config, folder / CUSTOMERS_BY_TIER, churn, _MONEY_NAMES)
    else:
        customers = (
            read_by_tier(folder / CUSTOMERS_BY_TIER) if by_tier else pd.read_parquet(folder / "customers.parquet")
        )
        digest = digest_customers(file_columns(customers.rename(columns=_MONEY_NAMES), True), churn)
    forecast = pd.read_csv(folder / "forecast.csv")
    tiers = pd.read_csv(folder / "tiers.csv").rename(columns=_MONEY_NAMES)
    migration = pd.read_csv(folder / "migration.csv", index_col=0) if (folder / "migration.csv").is_file() else None
    drivers = read_drivers(folder / "drivers.csv") if (folder / "drivers.csv").is_file() else None
    html = build_report(summary, digest, forecast, tiers, migration, drivers)
    tmp = folder / ".report.html.tmp"
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(folder / "report.html")
    return folder / "report.html"
