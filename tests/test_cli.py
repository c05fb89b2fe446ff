"""The command line, through Typer's CliRunner: exit codes, messages, outputs."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert result.exit_code != 0 and result.exception is not None


def test_bayes_is_refused_clearly(tmp_path):
    result = invoke("run", str(write_config(tmp_path)), "--set", "model.method=bayes", "-q")
    assert result.exit_code == 2 and "model.method=bayes is not available" in result.stderr


def test_data_summarize(tmp_path):
    result = invoke("data", "summarize", str(ROOT / "configs" / "cdnow.yaml"), "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["customers"] == ref.CDNOW_CUSTOMERS
    assert info["rows_read"] == ref.CDNOW_TRANSACTIONS
    assert info["repeat_purchases_calibration"] == ref.CDNOW_CALIBRATION_REPEATS
    assert info["repeat_purchases_holdout"] == ref.CDNOW_HOLDOUT_REPEATS
    assert info["same_day_duplicates"] == 223
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
    customers = pd.read_csv(out / "customers.csv")
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
    assert forecast["expected_purchases"].sum() == pytest.approx(customers["expected_purchases"].sum(), rel=1e-9)


def test_demo_runs_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("demo", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "reports" / "cdnow" / "summary.json").exists()


@pytest.mark.parametrize("command", [["run"], ["demo"], ["check-config"], ["data", "summarize"]])
def test_help_states_units_and_ends_with_an_example(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example: clv" in result.stdout
