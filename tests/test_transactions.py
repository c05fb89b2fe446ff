"""Reading and validating transaction files: one fixture file per kind of problem."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from clv.config import DataConfig
from clv.data import load_transactions, rfm_summary
from clv.errors import DataError

from .conftest import FIXTURES


def spec(name: str, **kw) -> DataConfig:
    return DataConfig(source=str(FIXTURES / name), **kw)


def days(frame: pd.DataFrame) -> list[str]:
    return pd.to_datetime(frame["day"]).dt.strftime("%Y-%m-%d").tolist()


def load(name: str, **kw):
    return load_transactions(str(FIXTURES / name), spec(name, **kw))


def test_unparseable_dates_are_listed_with_lines():
    with pytest.raises(DataError) as info:
        load("bad_dates.csv")
    msg = info.value.message
    assert "3 invalid row(s) of 5" in msg
    assert "not a date: 2" in msg and "missing date: 1" in msg
    assert "line 3 (customer 1): date '2024-13-45' not a date" in msg
    assert "line 4 (customer 2)" in msg and "line 6 (customer 3)" in msg


def test_missing_ids():
    with pytest.raises(DataError, match=r"missing customer id: 2.*line 3 \(no customer id\)"):
        load("missing_ids.csv")


def test_non_finite_amounts():
    with pytest.raises(DataError) as info:
        load("bad_amounts.csv")
    msg = info.value.message
    assert "not a finite number: 2" in msg and "not a number: 1" in msg and "missing amount: 1" in msg
    assert "line 3 (customer 1): amount 'inf'" in msg


def test_drop_policy_keeps_good_rows_and_writes_rejects(tmp_path):
    rejected = tmp_path / "out" / "rejected.csv"
    tx = load("bad_amounts.csv", invalid_rows="drop", rejected_rows=str(rejected), max_invalid_share=1.0)
    assert tx.report.rows_rejected == 4 and tx.report.rows_kept == 1
    rows = pd.read_csv(rejected)
    assert list(rows.columns) == ["line", "customer_id", "column", "value", "reason"]
    assert rows["line"].tolist() == [3, 4, 5, 6]


def test_rejected_rows_are_written_even_when_failing(tmp_path):
    rejected = tmp_path / "rejected.csv"
    with pytest.raises(DataError):
        load("bad_dates.csv", rejected_rows=str(rejected))
    assert len(pd.read_csv(rejected)) == 3


def test_mixed_naive_and_aware_timestamps_are_refused():
    expected = r"mix time-zone-aware and naive.*1 aware, first at lines 3; 2 naive, first at lines 2, 4"
    with pytest.raises(DataError, match=expected):
        load("mixed_timezones.csv")


def test_aware_timestamps_convert_to_business_time_zone_before_binning():
    utc = load("aware_timestamps.csv").to_frame()
    assert days(utc) == ["2024-01-05", "2024-02-01"]  # both customer-1 rows on 01-05 UTC
    berlin = load("aware_timestamps.csv", timezone="Europe/Berlin").to_frame()
    assert days(berlin) == ["2024-01-06", "2024-02-01"]  # 23:30Z is 00:30 in Berlin
    assert berlin["n_rows"].tolist() == [2, 1]


def test_unknown_time_zone():
    with pytest.raises(DataError, match="not a known IANA time zone"):
        load("aware_timestamps.csv", timezone="Mars/Olympus")


def test_returns_net_within_day_then_against_earlier_days():
    tx = load("returns.csv")
    frame = tx.to_frame()
    amounts = dict(zip(zip(frame["customer_id"].astype(str), days(frame), strict=True), frame["amount"], strict=True))
    # customer 1: 01-05 nets 10 - 4 = 6; the return of 9 on 02-10 takes 8 off 01-20 (the most recent), then 1 off 01-05
    assert amounts[("1", "2024-01-05")] == 5.0
    assert amounts[("1", "2024-01-20")] == 0.0  # reduced to 0, still a purchase day
    assert ("1", "2024-02-10") not in amounts  # a pure return day is not a purchase
    assert amounts[("2", "2024-01-09")] == 0.0  # a zero-value purchase stays a purchase
    assert tx.report.returns["negative_amount_rows"] == 2
    assert tx.report.returns["zero_amount_rows"] == 1
    assert tx.report.returns["return_days"] == 1
    assert tx.report.returns["netted_value"] == 9.0 and tx.report.returns["unmatched_value"] == 0.0


def test_returns_drop_and_fail():
    dropped = load("returns.csv", returns="drop")
    assert dropped.report.returns["dropped_rows"] == 3
    assert len(dropped.to_frame()) == 3
    with pytest.raises(DataError, match=r"3 row\(s\) with a non-positive amount.*line 3 \(customer 1\)"):
        load("returns.csv", returns="fail")


def test_missing_columns_are_named():
    with pytest.raises(DataError, match=r"data.customer_id='customer_id'.*the file has 'cust', 'day', 'value'"):
        load("wrong_columns.csv")


def test_empty_file():
    with pytest.raises(DataError, match="no transactions"):
        load("empty.csv")


def test_missing_file():
    with pytest.raises(DataError, match="no such file"):
        load_transactions("nowhere.csv", DataConfig(source="nowhere.csv"))


def test_explicit_date_format():
    with pytest.raises(DataError, match=r"written day or month first .*'05/01/2024'.*'%d/%m/%Y' \(3 of 3\)"):
        load("day_first.csv")
    tx = load("day_first.csv", date_format="%d/%m/%Y")
    assert days(tx.to_frame()) == ["2024-01-05", "2024-01-20", "2024-01-07"]


def test_parquet_and_frame_sources_match_csv(tmp_path):
    frame = pd.read_csv(FIXTURES / "returns.csv")
    path = tmp_path / "tx.parquet"
    frame.assign(date=pd.to_datetime(frame["date"])).to_parquet(path)
    from_parquet = load_transactions(str(path), DataConfig(source=str(path))).to_frame()
    from_frame = load_transactions(frame, DataConfig(source="frame")).to_frame()
    from_csv = load("returns.csv").to_frame()
    pd.testing.assert_frame_equal(from_parquet, from_csv)
    pd.testing.assert_frame_equal(from_frame, from_csv)


def test_parquet_problems_are_reported_by_row(tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", None, "c"],
            "date": ["2024-01-01", "2024-01-02", "x"],
            "amount": [1.0, 2.0, 3.0],
        }
    )
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"row 2 \(no customer id\).*row 3 \(customer c\)"):
        load_transactions(str(path), DataConfig(source=str(path)))


def test_line_numbers_survive_a_large_parallel_read(tmp_path):
    n = 300_000
    frame = pd.DataFrame({"customer_id": range(n), "date": "2024-01-01", "amount": 1.0})
    frame.loc[[7, 150_001, n - 1], "date"] = "garbage"
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_transactions(str(path), DataConfig(source=str(path)))
    msg = info.value.message
    assert "line 9 (customer 7)" in msg and "line 150003 (customer 150001)" in msg and f"line {n + 1}" in msg


def test_customers_first_seen_after_calibration_are_reported(tmp_path):
    frame = pd.DataFrame({"customer_id": [1, 1, 2], "date": ["2024-01-01", "2024-02-01", "2024-03-01"], "amount": 1.0})
    tx = load_transactions(frame, DataConfig(source="frame"))
    summary = rfm_summary(tx, dt.date(2024, 2, 15), None, "D")
    assert summary.late_customers == 1 and summary.late_customer_ids == ["2"]
    assert summary.frame["customer_id"].tolist() == ["1"]
