"""The command line, through Typer's CliRunner: exit codes, messages, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clv.cli import app

from . import reference_values as ref
from .conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def write_config(tmp_path: Path, **overrides: str) -> Path:
    text = (ROOT / "configs" / "cdnow.yaml").read_text()
    text = text.replace("reports_dir: reports", f"reports_dir: {tmp_path / 'reports'}")
    text = text.replace("models_dir: models", f"models_dir: {tmp_path / 'models'}")
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_check_config_prints_resolved_config_and_hash():
    result = invoke("check-config", str(ROOT / "configs" / "cdnow.yaml"), "--set", "model.purchase=pareto_nbd")
    assert result.exit_code == 0
    assert "purchase: pareto_nbd" in result.stdout
    assert "starts: 4" in result.stdout  # defaults filled in
    assert "# config hash: " in result.stdout


def test_bad_config_exits_2_with_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {source: cdnow, colour: red}\ntime: {calibration_end: 1997-09-30}\n")
    result = invoke("check-config", str(bad))
    assert result.exit_code == 2
    assert "data.colour: unknown key" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_exits_2():
    result = invoke("run", "nope.yaml")
    assert result.exit_code == 2 and "config file not found" in result.stderr


def test_bad_data_exits_1_with_lines(tmp_path):
    config = write_config(tmp_path)
    result = invoke("run", str(config), "--set", f"data.source={FIXTURES / 'bad_dates.csv'}", "-q")
    assert result.exit_code == 1
    assert "line 3 (customer 1)" in result.stderr
    assert not (tmp_path / "reports" / "cdnow").exists()  # nothing half-written


def test_verbose_shows_the_traceback(tmp_path):
    config = write_config(tmp_path)
    result = invoke("run", str(config), "--set", "data.source=missing.csv", "--verbose")
    from clv.errors import DataError

    # with --verbose the error propagates with its traceback instead of the one-line message
    assert result.exit_code != 0 and isinstance(result.exception, DataError)
    assert "missing.csv" in str(result.exception) and result.exc_info[2] is not None
    assert "error:" not in result.stderr


def test_data_summarize(tmp_path):
    result = invoke("data", "summarize", str(ROOT / "configs" / "cdnow.yaml"), "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["customers"] == ref.CDNOW_CUSTOMERS
    assert info["rows_read"] == ref.CDNOW_TRANSACTIONS
    assert info["repeat_purchases_calibration"] == ref.CDNOW_CALIBRATION_REPEATS
    assert info["repeat_purchases_holdout"] == ref.CDNOW_HOLDOUT_REPEATS
    assert info["same_day_duplicates"] == 223  # 6,919 rows less the 6,696 of the merged file (shared README)
    assert info["customers_first_seen_after_calibration"] == 0


def test_data_summarize_reports_late_customers():
    result = invoke(
        "data",
        "summarize",
        str(ROOT / "configs" / "cdnow.yaml"),
        "--json",
        "--set",
        "time.calibration_end=1997-02-15",
        "--set",
        "time.holdout_end=null",
    )
    info = json.loads(result.stdout)
    assert info["customers_first_seen_after_calibration"] > 0
    assert info["rfm_customers"] + info["customers_first_seen_after_calibration"] == ref.CDNOW_CUSTOMERS
    assert len(info["late_customer_ids"]) == 10


@pytest.mark.parametrize("purchase", ["bgnbd", "pareto_nbd", "mbgnbd"])
def test_run_writes_outputs(tmp_path, purchase):
    config = write_config(tmp_path)
    result = invoke("run", str(config), "--set", f"model.purchase={purchase}")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "reports" / "cdnow"
    assert f"outputs written to {out}/" in result.stdout
    customers = pd.read_csv(out / "customers.csv", dtype={"rfm_score": str, "customer_id": str})
    assert len(customers) == ref.CDNOW_CUSTOMERS
    assert customers["clv"].is_monotonic_decreasing
    for column in (
        "customer_id",
        "frequency",
        "recency",
        "T",
        "monetary_value",
        "frequency_holdout",
        "p_alive",
        "p_churn",
        "expected_purchases",
        "expected_spend",
        "clv",
    ):
        assert column in customers
    pd.testing.assert_frame_equal(pd.read_parquet(out / "customers.parquet"), customers, check_dtype=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["purchase_model"]["name"] == purchase
    assert summary["purchase_model"]["method"] == "mle"
    assert summary["config"]["model"]["purchase"] == purchase
    assert len(summary["config_hash"]) == 64
    assert summary["holdout"]["actual_repeat_purchases"] == ref.CDNOW_HOLDOUT_REPEATS
    forecast = pd.read_csv(out / "forecast.csv")
    # months rounded to cents add up to the total rounded to cents
    total = round(customers["expected_purchases"].sum(), 2)
    assert forecast["expected_purchases"].sum() == pytest.approx(total, abs=1e-9)


def test_demo_runs_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("demo", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "reports" / "cdnow" / "summary.json").exists()


@pytest.mark.parametrize(
    "command",
    [["run"], ["train"], ["score"], ["report"], ["demo"], ["evaluate"], ["check-config"], ["data", "summarize"]],
)
def test_help_states_units_and_ends_with_an_example(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example: clv" in result.stdout


LEAD = ["customer_id", "first_purchase", "last_purchase", "days_since_last_purchase", "frequency", "recency", "T"]
LEAD += ["monetary_value", "frequency_holdout", "monetary_value_holdout", "p_alive", "p_churn", "p_purchase_next_13w"]
LEAD += ["expected_purchases", "expected_spend", "clv", "tier", "segment", "rfm_score"]


def test_run_writes_tiers_segments_report_and_model(tmp_path):
    config = write_config(tmp_path)
    result = invoke("run", str(config), "-q")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "reports" / "cdnow"
    customers = pd.read_csv(out / "customers.csv")
    assert list(customers.columns[: len(LEAD)]) == LEAD
    tiers = pd.read_csv(out / "tiers.csv")
    assert tiers["tier"].tolist() == ["top 5%", "next 15%", "next 30%", "rest"]
    assert tiers["customers"].tolist() == [118, 353, 707, 1179]
    assert tiers["share_of_clv"].sum() == pytest.approx(1.0)
    assert tiers["total_clv"].sum() == pytest.approx(customers["clv"].sum())
    at_risk = pd.read_csv(out / "at_risk.csv")
    assert (at_risk["segment"] == "high value, slipping away").all()
    assert at_risk["tier"].isin(["top 5%", "next 15%"]).all() and (at_risk["p_purchase_next_13w"] < 0.3).all()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    assert "http://" not in html and "https://" not in html  # self-contained
    for heading in (
        "Value tiers",
        "Forecast",
        "Churn risk and segments",
        "RFM view",
        "CLV distribution",
        "slipping away",
        "Models",
        "Holdout",
    ):
        assert heading in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiers"][0]["tier"] == "top 5%" and summary["model_dir"]
    model_dir = Path(summary["model_dir"])
    assert (model_dir / "model.json").is_file() and (model_dir.parent / "latest").is_file()
    assert not (out / "migration.csv").exists()
    again = invoke("run", str(config), "-q")
    assert again.exit_code == 0
    migration = pd.read_csv(out / "migration.csv", index_col=0)
    # 118: clv's own output on CDNOW (a regression value, not a published figure)
    assert migration.loc["top 5%", "top 5%"] == 118 and migration.to_numpy().sum() == len(customers)


def test_train_then_score_needs_no_refit(tmp_path, monkeypatch):
    config = write_config(tmp_path)
    assert invoke("train", str(config), "-q").exit_code == 0
    from clv.store import resolve_model_dir

    trained = pd.read_parquet(resolve_model_dir(tmp_path / "models" / "cdnow") / "customer_tiers.parquet")
    import clv.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("score must not fit")

    monkeypatch.setattr(clv.pipeline, "fit_models", refuse)
    result = invoke("score", str(config), "--model", str(tmp_path / "models" / "cdnow"), "-q")
    assert result.exit_code == 0, result.stderr
    scored = pd.read_csv(tmp_path / "reports" / "cdnow" / "customers.csv", dtype={"customer_id": str})
    # clv's own output (regression value) over the default horizon, 12 calendar months (365 days)
    assert scored["clv"].sum() == pytest.approx(72656.08, abs=0.01)
    monkeypatch.undo()
    assert invoke("run", str(config), "-q").exit_code == 0
    fresh = pd.read_csv(tmp_path / "reports" / "cdnow" / "customers.csv", dtype={"customer_id": str})
    pd.testing.assert_frame_equal(scored, fresh)  # the same customer table, without refitting
    # train tiers the customers without scoring them whole: the same tiers as the full run's
    by_id = fresh.set_index("customer_id")["tier"]
    assert (trained.set_index("customer_id")["tier"] == by_id.loc[trained["customer_id"]].to_numpy()).all()
    assert len(trained) == len(fresh)
    other = invoke(
        "score", str(config), "--model", str(tmp_path / "models" / "cdnow"), "--set", "model.purchase=mbgnbd"
    )
    assert other.exit_code == 0 and "scoring with the saved bgnbd model; the config names mbgnbd" in other.stderr


def test_score_refuses_another_time_unit(tmp_path):
    config = write_config(tmp_path)
    assert invoke("train", str(config), "-q").exit_code == 0
    result = invoke("score", str(config), "--model", str(tmp_path / "models" / "cdnow"), "--set", "time.unit=D", "-q")
    assert result.exit_code == 2  # a model and config that do not match: refused before anything is written
    assert "fitted in unit W" in result.stderr and "hint:" in result.stderr


def test_score_with_a_missing_model(tmp_path):
    result = invoke("score", str(write_config(tmp_path)), "--model", str(tmp_path / "nowhere"), "-q")
    assert result.exit_code == 1 and "no saved model" in result.stderr


def test_report_is_rebuilt_from_saved_outputs(tmp_path):
    config = write_config(tmp_path)
    missing = invoke("report", str(config))
    assert missing.exit_code == 1 and "no saved outputs" in missing.stderr
    assert invoke("run", str(config), "-q").exit_code == 0
    page = tmp_path / "reports" / "cdnow" / "report.html"
    page.unlink()
    result = invoke("report", str(config))
    assert result.exit_code == 0 and page.is_file() and "Value tiers" in page.read_text()


def test_an_rfm_table_is_a_data_source(tmp_path, cdnow_rfm):
    table = tmp_path / "rfm.csv"
    cdnow_rfm.to_csv(table, index=False)
    config = write_config(tmp_path)
    # a bare horizon keeps its meaning in time.unit: 52 weeks, the value before horizons were durations
    result = invoke("run", str(config), "--set", f"data.source={table}", "--set", "prediction.horizon=52", "-q")
    assert result.exit_code == 0, result.stderr
    customers = pd.read_csv(tmp_path / "reports" / "cdnow" / "customers.csv")
    assert customers["clv"].sum() == pytest.approx(72505.66, abs=0.01)  # clv's own output (regression value)
    summary = json.loads((tmp_path / "reports" / "cdnow" / "summary.json").read_text())
    assert summary["data"]["source_kind"] == "rfm_table"
    assert summary["holdout"]["actual_repeat_purchases"] == ref.CDNOW_HOLDOUT_REPEATS


def test_a_bad_rfm_table_names_the_customers(tmp_path, cdnow_rfm):
    table = tmp_path / "rfm.parquet"
    bad = cdnow_rfm.copy()
    bad.loc[3, "recency"] = bad.loc[3, "T"] + 1
    bad.to_parquet(table, index=False)
    result = invoke("run", str(write_config(tmp_path)), "--set", f"data.source={table}", "-q")
    assert result.exit_code == 1
    assert "recency must be <= T" in result.stderr and f"first ids: {bad.loc[3, 'customer_id']})" in result.stderr


def test_bayes_run_with_laplace_writes_intervals(tmp_path):
    config = write_config(tmp_path)
    result = invoke(
        "run",
        str(config),
        "--set",
        "model.method=bayes",
        "--set",
        "bayes.inference=laplace",
        "--set",
        "bayes.prediction_draws=200",
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "reports" / "cdnow"
    customers = pd.read_csv(out / "customers.csv")
    for column in ("p_alive", "expected_purchases", "expected_spend", "clv"):
        assert (customers[f"{column}_lo"] <= customers[column] + 1e-9).all()
        assert (customers[column] <= customers[f"{column}_hi"] + 1e-9).all()
    assert {"purchases_predicted_lo", "revenue_predicted_hi", "p_tier_top_5"} <= set(customers.columns)
    tier_columns = [c for c in customers.columns if c.startswith("p_tier_")]
    np.testing.assert_allclose(customers[tier_columns].sum(axis=1), 1.0)
    forecast = pd.read_csv(out / "forecast.csv")
    assert (forecast["expected_revenue_p10"] <= forecast["expected_revenue_p90"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["purchase_model"]["method"] == "bayes"
    assert summary["purchase_model"]["diagnostics"]["inference"] == "laplace"
    holdout = summary["holdout"]
    assert 0.85 <= holdout["customer_interval_coverage"] <= 1.0
    assert holdout["actual_total_inside_interval"] is False  # BG/NBD under-forecasts CDNOW's holdout by 12%
    model_dir = Path(summary["model_dir"])
    assert (model_dir / "bgnbd_posterior.nc").is_file() and (model_dir / "gamma_gamma_posterior.nc").is_file()
    scored = invoke("score", str(config), "--model", str(model_dir), "--set", "bayes.prediction_draws=200", "-q")
    assert scored.exit_code == 0, scored.stderr
    rescored = pd.read_csv(out / "customers.csv")
    np.testing.assert_allclose(rescored["clv"].sum(), customers["clv"].sum(), rtol=1e-9)


@pytest.mark.slow
def test_bayes_run_with_nuts(tmp_path):
    result = invoke("run", str(write_config(tmp_path)), "--set", "model.method=bayes", "--strict", "-q")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "reports" / "cdnow" / "summary.json").read_text())
    diagnostics = summary["purchase_model"]["diagnostics"]
    assert diagnostics["passed"] and diagnostics["r_hat_max"] <= 1.01


def test_a_prior_on_an_unknown_parameter_is_a_config_error(tmp_path):
    result = invoke(
        "run",
        str(write_config(tmp_path)),
        "--set",
        "model.method=bayes",
        "--set",
        "bayes.inference=laplace",
        "--set",
        "bayes.priors.s.distribution=gamma",
        "-q",
    )
    assert result.exit_code == 2
    assert "bayes.priors names s" in result.stderr and "r, alpha, a, b" in result.stderr


# ---------- dates and periods ----------


def test_a_ten_year_typo_in_the_calibration_end_is_refused(tmp_path):
    """It exited 0 with a total CLV of 601 instead of 72,506."""
    config = write_config(tmp_path)
    result = invoke(
        "run", str(config), "--set", "time.calibration_end=2007-09-30", "--set", "time.holdout_end=2008-06-30"
    )
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: time.calibration_end 2007-09-30 is 3,379 days after the last transaction (1998-06-30), more than "
        "time.max_gap 90D: every customer would look lost for the whole gap"
    ]
    assert "hint: set time.calibration_end to a date within the data" in result.stderr
    assert not (tmp_path / "reports").exists() and not (tmp_path / "models").exists()


def test_data_after_the_calibration_end_needs_a_holdout_or_allow_gap(tmp_path):
    """Dropping time.holdout_end silently left out CDNOW's 1,959 rows after the calibration end."""
    config = write_config(tmp_path)
    result = invoke("run", str(config), "--set", "time.holdout_end=null", "-q")
    assert result.exit_code == 2
    assert (
        "error: 1,959 row(s) of 684 customer(s) are dated after time.calibration_end 1997-09-30 (up to "
        "1998-06-30) and time.holdout_end is not set: nothing uses them" in result.stderr
    )
    allowed = invoke("run", str(config), "--set", "time.holdout_end=null", "--set", "time.allow_gap=true", "-q")
    assert allowed.exit_code == 0, allowed.stderr
    assert "warning: time.allow_gap: 1,959 row(s)" in allowed.stderr
    summary = json.loads((tmp_path / "reports" / "cdnow" / "summary.json").read_text())
    assert summary["warnings"][0].startswith("time.allow_gap: 1,959 row(s)")


def test_forecast_csv_is_per_calendar_month_and_adds_up(tmp_path):
    config = write_config(tmp_path)
    result = invoke("run", str(config), "--set", "data.currency=USD")
    assert result.exit_code == 0, result.stderr
    assert "expected purchases, next 12 M (365 days)" in result.stdout
    out = tmp_path / "reports" / "cdnow"
    forecast = pd.read_csv(out / "forecast.csv")
    assert list(forecast.columns) == [
        "month",
        "start_date",
        "end_date",
        "days",
        "partial",
        "expected_purchases",
        "expected_revenue",
        "discounted_profit",
        "currency",
    ]
    assert forecast["month"].tolist() == ["1997-10", "1997-11", "1997-12"] + [f"1998-{m:02d}" for m in range(1, 10)]
    assert forecast.iloc[0][["start_date", "end_date", "days"]].tolist() == ["1997-10-01", "1997-10-31", 31]
    assert forecast["end_date"].iloc[-1] == "1998-09-30" and not forecast["partial"].any()
    assert (forecast["currency"] == "USD").all()
    money = forecast[["expected_revenue", "discounted_profit"]].to_numpy()
    assert np.array_equal(money, np.round(money, 2))  # cents
    totals = json.loads((out / "summary.json").read_text())["forecast_totals"]
    assert totals["horizon"] == "12M" and totals["horizon_days"] == 365 and totals["currency"] == "USD"
    for column in ("expected_purchases", "expected_revenue"):
        assert forecast[column].sum() == pytest.approx(round(totals[column], 2), abs=1e-9)
    assert forecast["discounted_profit"].sum() == pytest.approx(round(totals["total_clv"], 2), abs=1e-9)
    schedule = pd.read_csv(out / "revenue_schedule.csv", nrows=2)
    assert list(schedule.columns) == ["customer_id", *forecast["month"]]
    assert "horizon 12 M (365 days)" in (out / "report.html").read_text()


def test_a_calibration_end_inside_a_month_makes_partial_months(tmp_path):
    config = write_config(tmp_path)
    result = invoke("run", str(config), "--set", "time.calibration_end=1997-09-15", "--set", "prediction.horizon=52w")
    assert result.exit_code == 0, result.stderr
    assert "expected purchases, next 52 W (364 days)" in result.stdout
    forecast = pd.read_csv(tmp_path / "reports" / "cdnow" / "forecast.csv")
    first, last = forecast.iloc[0], forecast.iloc[-1]
    assert [first["month"], first["start_date"], first["end_date"], first["days"]] == [
        "1997-09",
        "1997-09-16",
        "1997-09-30",
        15,
    ]
    assert [last["month"], last["end_date"], last["days"]] == ["1998-09", "1998-09-14", 14]
    assert forecast["partial"].tolist() == [True] + [False] * 11 + [True]
    assert forecast["days"].sum() == 364 and set(forecast["currency"]) == {"USD"}  # configs/cdnow.yaml


def test_customers_first_seen_after_the_calibration_end_are_listed(tmp_path):
    config = write_config(tmp_path)
    result = invoke(
        "run", str(config), "--set", "time.calibration_end=1997-02-28", "--set", "time.holdout_end=1997-06-30", "-q"
    )
    assert result.exit_code == 0, result.stderr
    assert "719 customer(s) first seen after the calibration end (1997-02-28) are not in the forecast (listed " in (
        result.stderr
    )
    assert "row(s) dated after time.holdout_end 1997-06-30 (up to 1998-06-30) are not used" in result.stderr
    out = tmp_path / "reports" / "cdnow"
    new = pd.read_csv(out / "new_customers.csv", dtype={"customer_id": str})
    assert list(new.columns) == ["customer_id", "first_purchase", "purchases_holdout", "value_holdout"]
    assert len(new) == 719 and new["first_purchase"].between("1997-03-01", "1997-03-31").all()
    assert new["purchases_holdout"].min() >= 1 and new["customer_id"].iloc[0] == "1639"
    block = json.loads((out / "summary.json").read_text())["data"]["new_customers"]
    assert block["customers"] == 719 and block["purchases_holdout"] == new["purchases_holdout"].sum()
    assert "new_customers.csv" in (out / "report.html").read_text()


def test_time_unit_in_lower_case(tmp_path):
    result = invoke(
        "check-config", str(write_config(tmp_path)), "--set", "time.unit=d", "--set", "prediction.horizon=90"
    )
    assert result.exit_code == 0 and "unit: D" in result.stdout and "horizon: 90D" in result.stdout


def test_score_and_summarize_check_the_period_too(tmp_path):
    config = write_config(tmp_path)
    assert invoke("train", str(config), "-q").exit_code == 0
    typo = ["--set", "time.calibration_end=2007-09-30", "--set", "time.holdout_end=2008-06-30"]
    scored = invoke("score", str(config), "--model", str(tmp_path / "models" / "cdnow"), *typo, "-q")
    assert scored.exit_code == 2 and "3,379 days after the last transaction (1998-06-30)" in scored.stderr
    assert not (tmp_path / "reports").exists()
    looked = invoke("data", "summarize", str(config), *typo, "--json")
    assert looked.exit_code == 0 and "warning: time.calibration_end 2007-09-30 is 3,379 days" in looked.stderr
    assert json.loads(looked.stdout)["last_date"] == "1998-06-30"
    # the warning printed is in the summary too, not "warnings: none" beside it
    assert any("3,379 days" in w for w in json.loads(looked.stdout)["warnings"])
    dropped = invoke("data", "summarize", str(config), "--set", "time.holdout_end=null", "--json")
    info = json.loads(dropped.stdout)
    assert any("1,959 row(s)" in w for w in info["warnings"]) and info["rows_after_period_end"] == 1959
