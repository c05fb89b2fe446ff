"""The steps chained from a config: read and validate, summarise, fit, predict, value, write the outputs.

Each step is a function a library user can call alone; `run` chains them; the CLI only adds progress and maps
errors to exit codes.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from clv.config import RunConfig, config_hash
from clv.data.profile import DataProfile, profile_transactions
from clv.data.rfm import RfmSummary, rfm_summary
from clv.data.transactions import ValidationReport, load_transactions
from clv.errors import ConvergenceWarning, UsageError
from clv.mle import single_threaded_blas
from clv.purchase import PURCHASE_MODELS, PurchaseModel
from clv.spend.gamma_gamma import GammaGammaModel
from clv.units import days_per_unit
from clv.value import VALUE_UNITS, ValueResult, value_customers

__all__ = ["DataStep", "RunResult", "fit_models", "fit_together", "prepare_data", "run", "write_outputs"]

Progress = Callable[[str], None]


@dataclass
class DataStep:
    """What the data steps produce: the validation report, a profile, and the RFM summary."""

    report: ValidationReport
    profile: DataProfile
    rfm: RfmSummary


@dataclass
class RunResult:
    """Everything one run produced, before and after it is written."""

    config: RunConfig
    data: DataStep
    purchase: PurchaseModel
    spend: GammaGammaModel | None
    value: ValueResult
    holdout: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    output_dir: Path | None = None


@contextmanager
def _timed(timings: dict[str, float], step: str, progress: Progress | None) -> Iterator[None]:
    if progress is not None:
        progress(step)
    start = time.perf_counter()
    yield
    timings[step] = round(time.perf_counter() - start, 4)


def prepare_data(config: RunConfig) -> DataStep:
    """Read and validate the transactions, profile them, and summarise them to RFM."""
    con = duckdb.connect()
    tx = load_transactions(config.data.source, config.data, con)
    last = config.time.holdout_end or config.time.calibration_end
    profile = profile_transactions(tx, config.time.calibration_end, last)
    rfm = rfm_summary(tx, config.time.calibration_end, config.time.holdout_end, config.time.unit)
    con.close()
    return DataStep(report=tx.report, profile=profile, rfm=rfm)


def fit_models(config: RunConfig, rfm: pd.DataFrame) -> tuple[PurchaseModel, GammaGammaModel | None]:
    """Fit the configured purchase model, and Gamma-Gamma when the data has amounts."""
    if config.model.method != "mle":
        raise UsageError(
            "model.method=bayes is not available in this version: only maximum likelihood (mle) is",
            hint="run with --set model.method=mle",
        )
    options = {"starts": config.model.starts, "seed": config.model.seed}
    purchase = PURCHASE_MODELS[config.model.purchase](**options)
    spend = GammaGammaModel(**options) if "monetary_value" in rfm else None
    return fit_together(purchase, spend, rfm)


def fit_together(
    purchase: PurchaseModel, spend: GammaGammaModel | None, rfm: pd.DataFrame
) -> tuple[PurchaseModel, GammaGammaModel | None]:
    """Fit the purchase and spend models at the same time: they are independent, and their array work
    releases the GIL, so on two cores the two fits overlap. Warnings raised in either reach the caller."""
    if spend is None:
        return purchase.fit(rfm), None
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_fit_recording, model, rfm) for model in (purchase, spend)]
        results = [job.result() for job in jobs]
    for _, caught in results:
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return purchase, spend


def _fit_recording(
    model: PurchaseModel | GammaGammaModel, rfm: pd.DataFrame
) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=ConvergenceWarning)
        model.fit(rfm)
    return model, list(caught)


def _holdout(config: RunConfig, data: DataStep, purchase: PurchaseModel) -> dict[str, Any] | None:
    length = data.rfm.holdout_length
    frame = data.rfm.frame
    if length is None:
        return None
    predicted = purchase.expected_purchases(frame, length)
    actual = frame["frequency_holdout"].to_numpy(dtype=float)
    total_pred, total_act = float(predicted.sum()), float(actual.sum())
    return {
        "holdout_length": length,
        "unit": config.time.unit,
        "predicted_repeat_purchases": total_pred,
        "actual_repeat_purchases": total_act,
        "percent_error": 100.0 * (total_pred - total_act) / total_act if total_act else None,
        "mae_per_customer": float(np.mean(np.abs(predicted - actual))),
    }


def run(config: RunConfig, progress: Progress | None = None) -> RunResult:
    """The whole job: data, fit, predict, value. Warnings of the fits are collected, not printed."""
    timings: dict[str, float] = {}
    with _timed(timings, "read, validate and summarise", progress):
        data = prepare_data(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=ConvergenceWarning)
        with _timed(timings, "fit", progress):
            purchase, spend = fit_models(config, data.rfm.frame)
    with _timed(timings, "predict and value", progress):
        p = config.prediction
        value = value_customers(
            purchase, spend, data.rfm.frame, p.horizon, p.annual_discount_rate, p.margin, config.time.unit
        )
        holdout = _holdout(config, data, purchase)
    return RunResult(
        config=config,
        data=data,
        purchase=purchase,
        spend=spend,
        value=value,
        holdout=holdout,
        warnings=[str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)],
        timings=timings,
    )


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("clv", "numpy", "scipy", "pandas", "duckdb", "pyarrow"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


def customer_table(result: RunResult) -> pd.DataFrame:
    """One row per customer: the RFM columns, then the predictions and value, sorted by clv descending."""
    rfm = result.data.rfm.frame
    table = rfm.merge(result.value.customers, on="customer_id", how="left", validate="one_to_one")
    return table.sort_values(["clv", "customer_id"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _forecast_table(result: RunResult) -> pd.DataFrame:
    forecast = result.value.forecast.copy()
    end = result.config.time.calibration_end
    per_unit = days_per_unit(result.config.time.unit)
    forecast.insert(
        1,
        "start_date",
        [(end + dt.timedelta(days=float(s) * per_unit)).isoformat() for s in forecast["start"]],
    )
    forecast.insert(
        2, "end_date", [(end + dt.timedelta(days=float(e) * per_unit)).isoformat() for e in forecast["end"]]
    )
    return forecast


def summary_dict(result: RunResult) -> dict[str, Any]:
    """Everything summary.json records."""
    config = result.config
    customers = result.value.customers
    models = {"purchase_model": result.purchase.summary()} | (
        {"spend_model": result.spend.summary()} if result.spend is not None else {}
    )
    for block, model in zip(models.values(), (result.purchase, result.spend), strict=False):
        block["method"] = config.model.method
        block["n_customers"] = getattr(model, "n_customers_", None)
    forecast = result.value.forecast
    return {
        "name": config.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config.resolved(),
        "config_hash": config_hash(config),
        "data": {
            "profile": result.data.profile.to_dict(),
            "validation": {
                "rows_read": result.data.report.rows_read,
                "rows_rejected": result.data.report.rows_rejected,
                "problems_by_reason": result.data.report.problems_by_reason,
                "returns_policy": result.data.report.returns_policy,
                "returns": result.data.report.returns,
            },
            "rfm_customers": len(result.data.rfm.frame),
            "customers_first_seen_after_calibration": result.data.rfm.late_customers,
        },
        **models,
        "forecast_totals": {
            "horizon": config.prediction.horizon,
            "unit": config.time.unit,
            "expected_purchases": float(forecast["expected_purchases"].sum()),
            "expected_revenue": float(forecast["expected_revenue"].sum()) if "expected_revenue" in forecast else None,
            "total_clv": float(customers["clv"].sum()),
            "total_residual_clv": float(customers["residual_clv"].sum()),
        },
        "holdout": result.holdout,
        "units": VALUE_UNITS | {"time": config.time.unit},
        "warnings": result.warnings,
        "versions": _versions(),
        "timings_seconds": result.timings,
    }


def write_outputs(result: RunResult) -> Path:
    """Write reports/<name>/ whole or not at all: build it in a temporary folder beside it, then swap it in."""
    target = Path(result.config.output.reports_dir) / result.config.name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{result.config.name}.", dir=target.parent))
    try:
        table = customer_table(result)
        table.to_csv(staging / "customers.csv", index=False)
        table.to_parquet(staging / "customers.parquet", index=False)
        _forecast_table(result).to_csv(staging / "forecast.csv", index=False)
        result.value.schedule().to_csv(staging / "revenue_schedule.csv", index=False)
        (staging / "summary.json").write_text(json.dumps(summary_dict(result), indent=2, default=str) + "\n")
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.output_dir = target
    return target
