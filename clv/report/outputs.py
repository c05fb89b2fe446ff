"""The files of reports/<name>/, written whole or not at all, and the report rebuilt from them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clv.config import RunConfig, config_hash
from clv.errors import ClvError
from clv.model import DROPOUT
from clv.report.files import staged_folder
from clv.report.html import build_report
from clv.tiers import at_risk
from clv.units import days_per_unit
from clv.value import VALUE_UNITS
from clv.versions import package_versions

if TYPE_CHECKING:
    from clv.pipeline import RunResult

__all__ = ["rebuild_report", "summary_dict", "write_outputs"]


def forecast_table(result: RunResult) -> pd.DataFrame:
    """The monthly forecast with calendar dates of each month's start and end."""
    forecast = result.value.forecast.copy()
    end = result.config.time.calibration_end
    per_unit = days_per_unit(result.config.time.unit)
    for position, (name, column) in enumerate((("start_date", "start"), ("end_date", "end")), start=1):
        forecast.insert(
            position, name, [(end + dt.timedelta(days=float(v) * per_unit)).isoformat() for v in forecast[column]]
        )
    return forecast


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
    return block


def _churn_risk(result: RunResult) -> dict[str, Any]:
    """Whether P(alive) and the churn-risk segments mean anything for this fit, and why not."""
    caveat = result.fitted.purchase.not_identified_.get(DROPOUT)
    return {"identified": caveat is None, "reason": caveat}


def summary_dict(result: RunResult, model_dir: Path | None = None) -> dict[str, Any]:
    """Everything summary.json records (`model_dir`: where the run's models were saved, if they were)."""
    config = result.config
    customers = result.customers
    forecast = result.value.forecast
    data = result.data
    totals: dict[str, Any] = {
        "horizon": config.prediction.horizon,
        "unit": config.time.unit,
        "expected_purchases": float(forecast["expected_purchases"].sum()),
        "expected_revenue": float(forecast["expected_revenue"].sum()) if "expected_revenue" in forecast else None,
        "total_clv": float(customers["clv"].sum()),
    }
    if "residual_clv" in customers:
        totals["total_residual_clv"] = float(customers["residual_clv"].sum())
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
            "rfm_customers": len(data.rfm.frame),
            "customers_first_seen_after_calibration": data.rfm.late_customers,
        },
        "purchase_model": _model_block(result, "purchase"),
        "spend_model": _model_block(result, "spend"),
        "model_dir": str(model_dir) if model_dir else None,
        "model_run_id": result.fitted.metadata.get("run_id") if result.fitted.metadata else None,
        "tiers": result.tiers.to_dict(orient="records"),
        "segments": customers["segment"].value_counts().to_dict(),
        "churn_risk": _churn_risk(result),
        "spend_outliers": None
        if result.spend_outliers is None
        else result.spend_outliers.to_dict() | {"sentence": result.spend_outliers.sentence()},
        "forecast_totals": totals,
        "holdout": result.holdout,
        "units": VALUE_UNITS | {"time": config.time.unit},
        "warnings": result.warnings,
        "versions": package_versions(),
        "timings_seconds": result.timings,
    }


def write_outputs(result: RunResult, model_dir: Path | None = None) -> Path:
    """Write reports/<name>/ whole or not at all (the `evaluation/` folder of `clv evaluate` is kept) and return
    its path; `model_dir` is where the run's models were saved, recorded in summary.json."""
    target = Path(result.config.output.reports_dir) / result.config.name
    with staged_folder(target, keep=("evaluation",)) as staging:
        customers = result.customers
        customers.to_csv(staging / "customers.csv", index=False)
        customers.to_parquet(staging / "customers.parquet", index=False)
        result.tiers.to_csv(staging / "tiers.csv", index=False)
        at_risk(customers).to_csv(staging / "at_risk.csv", index=False)
        forecast = forecast_table(result)
        forecast.to_csv(staging / "forecast.csv", index=False)
        result.value.schedule().to_csv(staging / "revenue_schedule.csv", index=False)
        if result.migration is not None:
            result.migration.to_csv(staging / "migration.csv")
        summary = summary_dict(result, model_dir)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        html = build_report(summary, customers, forecast, result.tiers, result.migration)
        (staging / "report.html").write_text(html, encoding="utf-8")
    return target


def rebuild_report(config: RunConfig) -> Path:
    """Rebuild report.html from the saved outputs of reports/<name>/ (no data read, nothing refitted)."""
    folder = Path(config.output.reports_dir) / config.name
    needed = ["summary.json", "customers.parquet", "forecast.csv", "tiers.csv"]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise ClvError(
            f"{folder} lacks {', '.join(missing)}: there are no saved outputs to build the report from",
            hint=f"run `clv run` with this config first (it writes {folder}/)",
        )
    summary = json.loads((folder / "summary.json").read_text())
    customers = pd.read_parquet(folder / "customers.parquet")
    forecast = pd.read_csv(folder / "forecast.csv")
    tiers = pd.read_csv(folder / "tiers.csv")
    migration = pd.read_csv(folder / "migration.csv", index_col=0) if (folder / "migration.csv").is_file() else None
    html = build_report(summary, customers, forecast, tiers, migration)
    tmp = folder / ".report.html.tmp"
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(folder / "report.html")
    return folder / "report.html"
