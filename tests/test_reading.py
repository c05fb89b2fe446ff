"""Reading a transaction log a person trusts (issue 11, "Identity and data loss"): ids as written, no row lost
silently, no day/month swap, duplicates counted, spreadsheet amounts, returns netted. One fixture per case."""

from __future__ import annotations

import datetime as dt
import json
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clv.cli import app
from clv.config import DataConfig
from clv.data import dataset_path, load_transactions, rfm_summary
from clv.errors import DataError, DataWarning

from .conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
CAL, HOLD = dt.date(1997, 9, 30), dt.date(1998, 6, 30)


def load(source: str | pd.DataFrame, **kw):
    name = source if isinstance(source, str) else "frame"
    return load_transactions(source, DataConfig(source=name, **kw))


def fixture(name: str) -> str:
    return str(FIXTURES / name)


def write_config(tmp_path: Path, source: Path | str, **data: str) -> Path:
    """configs/cdnow.yaml reading `source`, writing under tmp_path, with `data` keys replaced or added."""
    text = (ROOT / "configs" / "cdnow.yaml").read_text()
    text = text.replace("reports_dir: reports", f"reports_dir: {tmp_path / 'reports'}")
    text = text.replace("models_dir: models", f"models_dir: {tmp_path / 'models'}")
    lines = [line for line in text.splitlines() if not any(line.startswith(f"  {k}:") for k in ("source", *data))]
    at = lines.index("data:") + 1
    lines[at:at] = [f"  source: {source}", *(f"  {k}: {json.dumps(v)}" for k, v in data.items())]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "run.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cdnow_raw() -> pd.DataFrame:
    return pd.read_csv(dataset_path("cdnow"), dtype=str, keep_default_na=False)


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def outputs(tmp_path: Path) -> dict[str, pd.DataFrame]:
    folder = tmp_path / "reports" / "cdnow"
    return {
        name: pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)
        for name in ("customers", "at_risk", "revenue_schedule")
    }


# --- ids are text, exactly as written -------------------------------------------------------------------------


def test_ids_keep_their_zeros_and_00002_is_not_2():
    tx = load(fixture("european_export.csv"), customer_id="Kundennummer", date="Datum", amount="Betrag",
              date_format="%d.%m.%Y", decimal=",", thousands=".", currency="EUR")  # fmt: skip
    rfm = rfm_summary(tx, dt.date(1998, 12, 31)).frame
    assert rfm["customer_id"].tolist() == ["00002", "0007", "00509", "2"]  # text order, each as written


def test_parquet_string_ids_keep_zeros_and_integer_ids_are_their_decimal_text(tmp_path):
    frame = pd.DataFrame({"customer_id": ["00509", "00002", "2"], "date": ["2024-01-01"] * 3, "amount": 1.0})
    frame.to_parquet(tmp_path / "text.parquet")
    assert sorted(load(str(tmp_path / "text.parquet")).to_frame()["customer_id"]) == ["00002", "00509", "2"]
    frame.assign(customer_id=[509, 2, 3]).to_parquet(tmp_path / "int.parquet")
    assert sorted(load(str(tmp_path / "int.parquet")).to_frame()["customer_id"]) == ["2", "3", "509"]
    # a whole-number float column (an integer column with gaps, as pandas keeps it) is not '509.0'
    floats = frame.assign(customer_id=[509.0, 2.0, 3.5])
    assert sorted(load(floats).to_frame()["customer_id"]) == ["2", "3.5", "509"]


def test_ids_with_spaces_are_kept_as_written_with_a_loud_warning():
    with pytest.warns(DataWarning, match=r"2 line\(s\) have a customer id with leading or trailing spaces") as seen:
        tx = load(fixture("ids_padded.csv"))
    message = str(seen[0].message)
    assert "' 7', '42 '" in message and "2 of them equal another id once trimmed" in message
    assert "data.trim_ids: true" in message
    assert tx.report.padded_ids == {"rows": 2, "ids": 2, "equal_to_another_once_trimmed": 2}
    assert tx.report.warnings == [message]
    assert sorted(set(tx.to_frame()["customer_id"])) == [" 7", "42", "42 ", "7", "9"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        trimmed = load(fixture("ids_padded.csv"), trim_ids=True)
    assert sorted(set(trimmed.to_frame()["customer_id"])) == ["42", "7", "9"]


@pytest.fixture(scope="module")
def zero_padded_run(tmp_path_factory):
    """`clv run` on CDNOW with five-digit ids (00001 ...) and customer 4 renamed 3: '00003' and '3' are two."""
    tmp_path = tmp_path_factory.mktemp("ids")
    raw = cdnow_raw()
    raw["customer_id"] = raw["customer_id"].str.zfill(5).replace({"00004": "3"})
    raw.to_csv(tmp_path / "padded.csv", index=False)
    config = write_config(tmp_path, tmp_path / "padded.csv", duplicates="keep")
    first = run_cli("run", str(config))
    second = run_cli("run", str(config), "-q")  # the second run has the first's tiers: the migration
    return tmp_path, first, second


def test_clv_run_keeps_ids_as_written_in_every_output(zero_padded_run):
    tmp_path, first, second = zero_padded_run
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    out = outputs(tmp_path)
    customers = out["customers"]
    assert len(customers) == 2357 and customers["customer_id"].is_unique
    assert {"00003", "3", "00509", "02357"} <= set(customers["customer_id"])
    assert "00004" not in set(customers["customer_id"])
    assert customers["customer_id"].str.fullmatch(r"\d{5}|3").all()
    assert set(out["at_risk"]["customer_id"]) <= set(customers["customer_id"])
    assert out["at_risk"]["customer_id"].str.len().eq(5).all()
    assert sorted(out["revenue_schedule"]["customer_id"]) == sorted(customers["customer_id"])
    migration = pd.read_csv(tmp_path / "reports" / "cdnow" / "migration.csv", index_col=0)
    assert migration.loc["(new)"].sum() == 0 and migration["(gone)"].sum() == 0  # every id matched its own
    html = (tmp_path / "reports" / "cdnow" / "report.html").read_text()
    top = out["at_risk"].iloc[0]["customer_id"]
    assert re.search(rf"<td[^>]*>{top}</td>", html) and top.startswith("0")


def test_the_same_ids_as_numbers_give_the_same_values(zero_padded_run, cdnow_rfm):
    tmp_path, _, _ = zero_padded_run
    customers = outputs(tmp_path)["customers"]
    padded = customers.set_index("customer_id")["frequency"].astype(int)
    plain = cdnow_rfm.set_index("customer_id")["frequency"]
    assert padded["00509"] == plain["509"] and padded["3"] == plain["4"] and padded["00003"] == plain["3"]


# --- rows lost are never silent -------------------------------------------------------------------------------


def test_a_sixty_percent_dropped_file_is_refused_even_under_drop(tmp_path):
    with pytest.raises(DataError) as info:
        load(fixture("sixty_percent_bad.csv"), invalid_rows="drop")
    error = info.value
    assert "6 invalid row(s) of 10 (60.0%, more than data.max_invalid_share 1.0%)" in error.message
    assert "not a date: 3" in error.message and "not a number: 2" in error.message
    assert "missing amount: 1" in error.message
    assert "invalid_rows: drop" not in (error.hint or "")
    assert "raise data.max_invalid_share" in (error.hint or "")
    # under the default invalid_rows: fail, raising the share alone would only lead to a second refusal
    with pytest.raises(DataError) as info:
        load(fixture("sixty_percent_bad.csv"))
    assert "set data.invalid_rows: drop and raise data.max_invalid_share" in (info.value.hint or "")
    config = write_config(tmp_path, fixture("sixty_percent_bad.csv"), invalid_rows="drop")
    result = run_cli("run", str(config))
    assert result.exit_code == 1
    assert result.stderr.count("error:") == 1 and "60.0%" in result.stderr and "Traceback" not in result.stderr


def test_below_the_threshold_the_dropped_rows_are_counted_and_said(tmp_path):
    raw = cdnow_raw()
    raw.loc[[10, 20], "amount"] = "n/a"
    raw.to_csv(tmp_path / "two_bad.csv", index=False)
    tx = load(str(tmp_path / "two_bad.csv"), invalid_rows="drop", duplicates="keep")
    assert tx.report.rows_rejected == 2 and tx.report.invalid_share == pytest.approx(2 / 6919)
    assert "2 invalid lines dropped (0.03% of those read)" in tx.report.summary_lines()[0]
    config = write_config(tmp_path, tmp_path / "two_bad.csv", invalid_rows="drop", duplicates="keep")
    result = run_cli("run", str(config))
    assert result.exit_code == 0, result.output
    assert "2 invalid lines dropped (0.03% of those read)" in result.stderr
    summary = json.loads((tmp_path / "reports" / "cdnow" / "summary.json").read_text())
    validation = summary["data"]["validation"]
    assert validation["rows_rejected"] == 2 and validation["max_invalid_share"] == 0.01
    assert validation["invalid_share"] == pytest.approx(2 / 6919)


def test_when_every_date_fails_the_hint_names_the_date_format():
    with pytest.raises(DataError) as info:
        load(fixture("dates_all_bad.csv"), invalid_rows="drop")
    hint = info.value.hint or ""
    assert "dates like '31-Dec-1997', '15-Jan-1998', '02-Jan-1998' do not parse as ISO dates" in hint
    assert "set data.date_format, e.g. '%d-%b-%Y' (3 of the first 3)" in hint
    assert "invalid_rows" not in hint and "max_invalid_share" not in hint


def test_when_every_amount_fails_the_hint_names_the_decimal_separator():
    with pytest.raises(DataError) as info:
        load(fixture("comma_amounts.csv"))
    hint = info.value.hint or ""
    assert "numbers like '29,33', '12,50', '5,00' do not parse" in hint and "set data.decimal: ','" in hint
    assert "data.thousands not set, data.currency not set" in hint and "None" not in hint
    assert "invalid_rows" not in hint
    tx = load(fixture("comma_amounts.csv"), decimal=",")
    assert tx.to_frame()["amount"].tolist() == [29.33, 12.5, 5.0]


# --- no silent day/month swap ---------------------------------------------------------------------------------


def test_a_swapped_date_format_is_refused_with_both_formats_named():
    with pytest.raises(DataError) as info:
        load(fixture("us_dates.csv"), date_format="%d/%m/%Y", invalid_rows="drop")
    message = info.value.message
    assert "data.date_format '%d/%m/%Y' parses 3 date(s) of column 'date', but '%m/%d/%Y' parses 6" in message
    assert "set data.date_format: '%m/%d/%Y'" in (info.value.hint or "")
    tx = load(fixture("us_dates.csv"), date_format="%m/%d/%Y")
    assert pd.to_datetime(tx.to_frame()["day"]).dt.strftime("%m-%d").tolist()[:2] == ["01-05", "01-20"]


def test_day_or_month_first_dates_need_a_date_format():
    with pytest.raises(DataError) as info:
        load(fixture("us_dates.csv"))
    message = info.value.message
    assert "6 date(s) in column 'date' are written day or month first ('01/05/2024', '01/20/2024'" in message
    assert "'%m/%d/%Y' (6 of 6)" in message
    assert "data.date_format" in (info.value.hint or "")
    # DuckDB alone would read 3/4/20 as the year 3
    frame = pd.DataFrame({"customer_id": ["1"], "date": ["3/4/20"], "amount": [1.0]})
    with pytest.raises(DataError, match="written day or month first"):
        load(frame)


# --- duplicates -----------------------------------------------------------------------------------------------


def _duplicated_cdnow(tmp_path: Path) -> Path:
    raw = cdnow_raw()
    extra = raw.sample(500, random_state=11)
    path = tmp_path / "cdnow_500_duplicated.csv"
    pd.concat([raw, extra]).sort_values(["customer_id", "date"], kind="stable").to_csv(path, index=False)
    return path


def test_500_duplicated_rows_no_longer_change_total_clv(tmp_path):
    path = _duplicated_cdnow(tmp_path)
    plain = load(str(dataset_path("cdnow")))
    doubled = load(str(path))
    assert plain.report.duplicates.rows == 21  # CDNOW's own identical rows
    assert doubled.report.duplicates.rows == doubled.report.duplicates.dropped == 521
    assert "521 duplicate lines (identical to another) dropped" in doubled.report.summary_lines()[0]
    pd.testing.assert_frame_equal(rfm_summary(doubled, CAL, HOLD).frame, rfm_summary(plain, CAL, HOLD).frame)
    totals = {}
    for name, source in (("plain", dataset_path("cdnow")), ("doubled", path)):
        folder = tmp_path / name
        result = run_cli("run", str(write_config(folder, source, duplicates="drop")), "-q")
        assert result.exit_code == 0, result.output
        summary = json.loads((folder / "reports" / "cdnow" / "summary.json").read_text())
        assert summary["data"]["validation"]["duplicates"]["dropped"] == (21 if name == "plain" else 521)
        totals[name] = summary["forecast_totals"]["total_clv"]
    assert totals["doubled"] == pytest.approx(totals["plain"], rel=1e-12)
    # the report names them too, with the value they carried, and its lines add up without an "other" row
    raw = pd.concat([cdnow_raw(), cdnow_raw()]).drop_duplicates()
    copies = pd.read_csv(path, dtype=str)
    dropped_value = copies["amount"].astype(float).sum() - raw["amount"].astype(float).sum()
    doubled_summary = json.loads((tmp_path / "doubled" / "reports" / "cdnow" / "summary.json").read_text())
    assert doubled_summary["data"]["validation"]["duplicates"]["value"] == pytest.approx(dropped_value, abs=0.005)
    html = (tmp_path / "doubled" / "reports" / "cdnow" / "report.html").read_text()
    assert re.search(r"duplicate lines dropped[^<]*</td><td[^>]*>521</td>", html)
    assert "other lines left out" not in html


def test_duplicates_keep_counts_them_and_fail_refuses_them(tmp_path):
    path = _duplicated_cdnow(tmp_path)
    kept = load(str(path), duplicates="keep")
    assert kept.report.duplicates.rows == 521 and kept.report.duplicates.dropped == 0
    assert "521 duplicate lines (identical to another) kept (data.duplicates: keep)" in kept.report.summary_lines()[0]
    assert kept.report.rows_kept == 6919 + 500
    with pytest.raises(DataError, match=r"521 duplicate row\(s\): rows identical to an earlier row"):
        load(str(path), duplicates="fail")


def test_rows_repeating_a_transaction_id_are_duplicates():
    frame = pd.DataFrame(
        {
            "order": ["A1", "A1", "A2", "A3", None],
            "customer_id": ["1", "1", "1", "2", "2"],
            "date": ["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-02", "2024-01-02"],
            "amount": [10.0, 10.0, 10.0, 5.0, 5.0],
            "loaded_at": ["t1", "t2", "t1", "t1", "t1"],  # a re-load: not identical rows, the same transaction
        }
    )
    tx = load(frame, transaction_id="order")
    assert tx.report.duplicates.key == "transaction_id" and tx.report.duplicates.dropped == 1
    assert tx.to_frame()["amount"].tolist() == [20.0, 10.0]  # A1 once, A2; A3 and the row without an id
    conflicting = frame.assign(amount=[10.0, 11.0, 10.0, 5.0, 5.0])
    with pytest.raises(DataError, match=r"1 transaction id\(s\) of column 'order' appear on rows that differ"):
        load(conflicting, transaction_id="order")


# --- spreadsheet amounts --------------------------------------------------------------------------------------


EUROPEAN = {
    "customer_id": "Kundennummer",
    "date": "Datum",
    "amount": "Betrag",
    "date_format": "%d.%m.%Y",
    "decimal": ",",
    "thousands": ".",
    "currency": "EUR",
}


def test_a_european_excel_export_reads_correctly():
    """UTF-8 BOM, CRLF, ';', decimal comma, '.' thousands, '€' before or after the amount, 'EUR 12,00'."""
    tx = load(fixture("european_export.csv"), **EUROPEAN)
    frame = tx.to_frame()
    days = pd.to_datetime(frame["day"]).dt.strftime("%Y-%m-%d")
    got = list(zip(frame["customer_id"], days, frame["amount"].round(2), strict=True))
    assert got == [
        ("00002", "1998-01-02", 1266.80),
        ("0007", "1998-03-05", 0.99),
        ("00509", "1997-12-31", 29.33),
        ("00509", "1998-01-15", 1266.80),
        ("2", "1998-01-02", 0.0),  # the -12,00 of 20.02.1998 is a return, netted against the purchase
    ]
    assert tx.report.rows_rejected == 0 and tx.report.returns["netted_value"] == pytest.approx(12.0)


def test_an_amount_that_still_does_not_parse_names_its_line(tmp_path):
    text = (FIXTURES / "european_export.csv").read_bytes().replace(b"0,99", b"$0,99")
    (tmp_path / "export.csv").write_bytes(text)
    with pytest.raises(DataError) as info:
        load(str(tmp_path / "export.csv"), **EUROPEAN)
    assert "line 7 (customer 0007): Betrag '$0,99' not a number" in info.value.message
    # '1.266,80' without data.thousands is not read as 1.26680 or 1266.80: it is not a number
    with pytest.raises(DataError, match=r"'€1\.266,80' not a number"):
        load(fixture("european_export.csv"), **(EUROPEAN | {"thousands": None}))


def test_clv_run_on_cdnow_as_a_european_export_gives_the_cdnow_values(tmp_path):
    raw = cdnow_raw()
    amount = pd.to_numeric(raw["amount"])
    export = pd.DataFrame(
        {
            "Kundennummer": raw["customer_id"].str.zfill(5),
            "Datum": pd.to_datetime(raw["date"]).dt.strftime("%d.%m.%Y"),
            "Betrag": ["€" + f"{a:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".") for a in amount],
        }
    )
    path = tmp_path / "export.csv"
    path.write_bytes(b"\xef\xbb\xbf" + export.to_csv(sep=";", index=False, lineterminator="\r\n").encode())
    runs = {}
    for name, source, keys in (("export", path, EUROPEAN), ("plain", dataset_path("cdnow"), {})):
        result = run_cli("run", str(write_config(tmp_path / name, source, **keys)), "-q")
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / name / "reports" / "cdnow" / "summary.json").read_text())
    assert runs["export"]["forecast_totals"]["total_clv"] == pytest.approx(
        runs["plain"]["forecast_totals"]["total_clv"]
    )
    assert runs["export"]["data"]["validation"]["currency"] == "EUR"
    customers = pd.read_csv(tmp_path / "export" / "reports" / "cdnow" / "customers.csv", dtype=str)
    assert customers["customer_id"].str.len().eq(5).all()


# --- returns --------------------------------------------------------------------------------------------------


def test_a_later_return_reduces_the_spend_and_the_cli_says_so(tmp_path):
    tx = load(fixture("returns.csv"))
    frame = tx.to_frame()
    amounts = dict(zip(pd.to_datetime(frame["day"]).dt.strftime("%m-%d"), frame["amount"], strict=True))
    assert amounts["01-20"] == 0.0  # 8 bought on 01-20, 9 returned on 02-10: 8 taken off 01-20, 1 off 01-05
    assert amounts["01-05"] == 5.0  # 10 - 4 the same day - 1 of the later return
    line = tx.report.summary_lines()[0]
    assert "1 return day: 9.00 taken off earlier purchases, 0.00 unmatched" in line
    raw = cdnow_raw()
    returns = pd.DataFrame({"customer_id": ["1", "2"], "date": "1998-06-01", "cds": "1", "amount": "-5.00"})
    raw_path = tmp_path / "with_returns.csv"
    pd.concat([raw, returns]).to_csv(raw_path, index=False)
    result = run_cli("run", str(write_config(tmp_path, raw_path, duplicates="keep")))
    assert result.exit_code == 0, result.output
    assert "2 return days: 10.00 taken off earlier purchases, 0.00 unmatched" in result.stderr


def test_an_rfm_table_keeps_its_ids_as_written(tmp_path):
    from clv.config import parse_config
    from clv.data.rfm_table import load_rfm_table

    table = pd.DataFrame({"customer_id": ["00509", "NA"], "frequency": [1, 0], "recency": [1.0, 0.0], "T": [2.0, 2.0]})
    table.to_csv(tmp_path / "rfm.csv", index=False)
    table.assign(customer_id=[509.0, 2.0]).to_parquet(tmp_path / "rfm.parquet")
    for name, expected in (("rfm.csv", ["00509", "NA"]), ("rfm.parquet", ["509", "2"])):
        raw = {"name": "x", "data": {"source": str(tmp_path / name), "amount": None}}
        config = parse_config(raw | {"time": {"calibration_end": "2020-01-01"}})
        assert load_rfm_table(config).frame["customer_id"].tolist() == expected


def test_a_currency_symbol_is_stated_by_its_code():
    from clv.config import DataConfig
    from clv.currency import currency_code

    assert DataConfig(source="x", currency="€").currency == "EUR" and currency_code("gbp") == "GBP"
    assert currency_code("kr") == "kr" and currency_code("Kč") == "Kč"  # shared or unknown: as written
    tx = load(fixture("european_export.csv"), **(EUROPEAN | {"currency": "€"}))
    assert tx.to_frame()["amount"].sum() == pytest.approx(
        load(fixture("european_export.csv"), **EUROPEAN).to_frame()["amount"].sum()
    )
