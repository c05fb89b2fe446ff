"""Line-item exports: quantity x price, invoices, cancellations, returns netted against earlier days, guest lines,
non-positive prices; small CSV fixtures written here, expected values computed by hand or with pandas."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from clv.cli import app
from clv.config import DataConfig, load_config, parse_config
from clv.data import dataset_path, load_transactions, rfm_summary
from clv.errors import ConfigError, DataError

from .conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
HEADER = "invoice,customer,date,qty,price"


def write(tmp_path: Path, lines: list[str], header: str = HEADER, name: str = "lines.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def items(path: Path, **kw) -> DataConfig:
    options = {
        "customer_id": "customer",
        "date": "date",
        "quantity": "qty",
        "price": "price",
        "invoice": "invoice",
        "cancellation_prefix": "C",
    } | kw
    return DataConfig(source=str(path), **options)


def load(path: Path, **kw):
    return load_transactions(str(path), items(path, **kw))


def by_day(tx) -> dict[tuple[str, str], float]:
    frame = tx.to_frame()
    days = pd.to_datetime(frame["day"]).dt.strftime("%Y-%m-%d")
    return dict(zip(zip(frame["customer_id"], days, strict=True), frame["amount"], strict=True))


# --- line values and invoices ---------------------------------------------------------------------------------


def test_line_value_is_quantity_times_price(tmp_path):
    path = write(tmp_path, ["1,a,2024-01-05 10:00,2,1.25", "1,a,2024-01-05 10:00,3,0.1", "2,b,2024-01-06 09:00,4,2.5"])
    tx = load(path)
    expected = pd.read_csv(path, dtype={"customer": str}).assign(v=lambda f: f["qty"] * f["price"])
    assert by_day(tx) == {("a", "2024-01-05"): 2.8, ("b", "2024-01-06"): 10.0}  # 2.5 + 0.3, exactly
    assert sum(by_day(tx).values()) == pytest.approx(expected["v"].sum())
    assert tx.has_amount and tx.report.rows_read == 3 and tx.report.invoices == 2
    assert tx.report.customer_days == 2 and tx.report.customers == 2


def test_an_invoice_is_one_transaction_dated_at_its_first_timestamp(tmp_path):
    lines = [
        "100,a,2024-01-05 23:50,1,10",  # invoice 100 crosses midnight: one transaction on 01-05
        "100,a,2024-01-06 00:10,1,5",
        "101,a,2024-01-05 08:00,1,1",  # another invoice the same day: merged with 100 (same-day merge)
        "102,a,2024-01-06 12:00,1,2",  # a real 01-06 purchase
    ]
    path = write(tmp_path, lines)
    tx = load(path)
    assert by_day(tx) == {("a", "2024-01-05"): 16.0, ("a", "2024-01-06"): 2.0}
    assert tx.to_frame()["n_rows"].tolist() == [3, 1]
    assert tx.report.invoices == 3 and tx.report.invoices_kept == 3 and tx.report.customer_days == 2
    without = load_transactions(str(path), items(path, invoice=None, cancellation_prefix=None))
    assert by_day(without) == {("a", "2024-01-05"): 11.0, ("a", "2024-01-06"): 7.0}


def test_an_invoice_with_two_customer_ids_is_an_error(tmp_path):
    path = write(tmp_path, ["7,a,2024-01-05,1,1", "8,b,2024-01-05,1,1", "8,c,2024-01-05,1,1", "9,d,2024-01-05,1,1"])
    with pytest.raises(
        DataError, match=r"1 invoice\(s\) carry lines of more than one customer id; first: 8 \(customers b, c\)"
    ):
        load(path)


def test_bad_quantities_and_prices_are_invalid_rows_with_lines(tmp_path):
    path = write(
        tmp_path,
        [
            "1,a,2024-01-05,abc,1",
            "2,b,2024-01-05,1,",
            "3,c,2024-01-05,1,inf",
            "4,d,2024-01-05,1,1",
            ",e,2024-01-05,1,1",
        ],
    )
    with pytest.raises(DataError) as info:
        load(path)
    msg = info.value.message
    assert "4 invalid row(s) of 5" in msg
    assert "line 2 (customer a): qty 'abc' not a number" in msg
    assert "line 3 (customer b): price None missing price" in msg
    assert "line 4 (customer c): price 'inf' not a finite number" in msg
    assert "line 6 (customer e): invoice None missing invoice" in msg


# --- cancellations and returns --------------------------------------------------------------------------------


CANCELLATIONS = [
    "1,a,2024-01-05 10:00,10,1.0",  # a buys 10
    "C2,a,2024-01-05 11:00,-2,1.0",  # and cancels 2 the same day: the day nets to 8
    "3,b,2024-01-07 10:00,5,1.0",  # b buys 5
    "C4,b,2024-01-09 10:00,-1,0.5",  # a day of only a cancellation: never a purchase; 0.5 comes off 01-07
    "5,c,2024-01-07 10:00,3,1.0",  # c buys 3
    "C6,c,2024-01-08 10:00,2,3.0",  # a prefixed line of positive value: still no purchase (and no value)
    "7,d,2024-01-07 10:00,4,2.0",  # d buys 8
    "8,d,2024-01-08 10:00,-1,2.0",  # negative quantity without the prefix (a stock adjustment): a return of 2
    "9,d,2024-01-08 10:00,1,1.0",  # ... on a day that also has a purchase line: the day nets to -1
]


def test_cancellations_are_never_purchases_and_net_against_spend(tmp_path):
    tx = load(write(tmp_path, CANCELLATIONS))
    assert by_day(tx) == {
        ("a", "2024-01-05"): 8.0,
        ("b", "2024-01-07"): 4.5,
        ("c", "2024-01-07"): 3.0,
        ("d", "2024-01-07"): 7.0,
    }
    report = tx.report
    assert report.cancellations == {"lines": 4, "invoices": 4, "value": 2.0 + 0.5 - 6.0 + 2.0}
    assert report.returns["return_days"] == 3  # b 01-09, c 01-08, d 01-08
    assert report.returns["cancellation_days_positive_value"] == 1
    assert report.returns["netted_value"] == 1.5 and report.returns["unmatched_value"] == 0.0


def test_returns_drop_and_fail_with_cancellations(tmp_path):
    path = write(tmp_path, CANCELLATIONS)
    dropped = load(path, returns="drop")
    assert by_day(dropped) == {
        ("a", "2024-01-05"): 10.0,
        ("b", "2024-01-07"): 5.0,
        ("c", "2024-01-07"): 3.0,
        ("d", "2024-01-07"): 8.0,
        ("d", "2024-01-08"): 1.0,
    }
    assert dropped.report.returns["dropped_rows"] == 4
    with pytest.raises(
        DataError, match=r"4 row\(s\) with a non-positive amount or marked as cancellations.*line 3 \(customer a\)"
    ):
        load(path, returns="fail")


def test_returns_come_off_the_most_recent_earlier_days_first():
    frame = pd.DataFrame(
        {
            "customer_id": ["A"] * 5 + ["B"] * 3 + ["C"],
            "date": [f"2024-01-0{d}" for d in (1, 2, 3, 4, 5, 1, 2, 3, 1)],
            "amount": [10.0, 8.0, -9.0, 5.0, -7.0, -3.0, 4.0, -6.0, -5.0],
        }
    )
    tx = load_transactions(frame, DataConfig(source="frame"))
    # A: -9 takes 8 off 01-02 and 1 off 01-01; -7 takes 5 off 01-04 and 2 off 01-01 (01-02 is empty): 10 - 1 - 2 = 7.
    # B: -3 comes before any purchase (unmatched 3); -6 takes 4 off 01-02, 2 unmatched. C: a return and nothing else.
    assert by_day(tx) == {
        ("A", "2024-01-01"): 7.0,
        ("A", "2024-01-02"): 0.0,
        ("A", "2024-01-04"): 0.0,
        ("B", "2024-01-02"): 0.0,
    }
    r = tx.report.returns
    assert r["return_days"] == 5 and r["return_value"] == 9 + 7 + 3 + 6 + 5
    assert r["netted_value"] == 9 + 7 + 4 and r["unmatched_value"] == 3 + 2 + 5
    assert r["unmatched_return_days"] == 3 and r["days_reduced"] == 4 and r["days_reduced_to_zero"] == 3
    assert r["customers_without_purchase"] == 1
    rfm = rfm_summary(tx, dt.date(2024, 1, 31), None, "D").frame.set_index("customer_id")
    assert rfm.loc["A", "frequency"] == 2  # days reduced to 0 stay purchase days
    assert rfm.loc["A", "monetary_value"] == 0.0


def _stack_reference(values: list[int]) -> tuple[list[int], int]:
    """What is left of each purchase day (value >= 0) after the later return days (< 0) took from the most
    recent purchases first; and the unmatched total. The plain loop the SQL must agree with."""
    left: list[int] = []
    purchases: list[int] = []
    unmatched = 0
    for v in values:
        if v >= 0:
            purchases.append(len(left))
            left.append(v)
            continue
        need = -v
        for k in reversed(purchases):
            take = min(need, left[k])
            left[k] -= take
            need -= take
        unmatched += need
    return left, unmatched


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-20, 20), min_size=1, max_size=12))
def test_netting_agrees_with_a_plain_stack(values):
    frame = pd.DataFrame(
        {
            "customer_id": "x",
            "date": [(dt.date(2024, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(len(values))],
            "amount": [float(v) for v in values],
        }
    )
    left, unmatched = _stack_reference(values)
    if not left:
        with pytest.raises(DataError, match="no valid transactions"):
            load_transactions(frame, DataConfig(source="frame"))
        return
    tx = load_transactions(frame, DataConfig(source="frame"))
    assert tx.to_frame()["amount"].tolist() == [float(v) for v in left]
    assert tx.report.returns["unmatched_value"] == unmatched


# --- guest lines ----------------------------------------------------------------------------------------------


GUESTS = [
    "1,a,2024-01-05,2,3.0",
    "2,,2024-01-05,1,4.0",  # guest invoice 2: 4 + 6 - 1.5
    "2,,2024-01-05,3,2.0",
    "C3,,2024-01-06,-1,1.5",  # a guest cancellation nets into the guest value
    "4,b,2024-01-06,1,1.0",
    "5,,2024-01-07,1,bad",  # a guest line with a bad price: dropped with the guests, before validation
]


def test_guest_lines_dropped_are_counted_apart_with_their_value(tmp_path):
    path = write(tmp_path, GUESTS)
    tx = load(path, missing_customer="drop")
    raw = pd.read_csv(path, dtype={"customer": str})
    guests = raw[raw["customer"].isna()]
    value = float((guests["qty"] * pd.to_numeric(guests["price"], errors="coerce")).sum())  # 8.5
    assert tx.report.guest == {"lines": len(guests), "invoices": 3, "value": value, "cancellation_lines": 1}
    assert tx.report.rows_rejected == 0 and tx.report.problems_by_reason == {}
    assert by_day(tx) == {("a", "2024-01-05"): 6.0, ("b", "2024-01-06"): 1.0}
    assert tx.report.summary_lines()[1] == "4 guest lines (no customer id) dropped carrying 8.50 (not in the forecast)"


def test_guest_lines_fail_by_default_with_a_hint(tmp_path):
    with pytest.raises(DataError) as info:
        load(write(tmp_path, GUESTS))
    assert "4 line(s) lack a customer id (first at lines 3, 4, 5, 7)" in info.value.message
    assert "data.missing_customer: drop" in (info.value.hint or "")


# --- non-positive prices --------------------------------------------------------------------------------------


PRICES = [
    "1,a,2024-01-05,2,3.0",
    "1,a,2024-01-05,1,0",  # a free sample on a purchase
    "2,a,2024-01-09,1,0.0",  # a day of only a zero-priced line
    "3,b,2024-01-06,4,1.0",
    "4,b,2024-01-07,1,-2.5",  # an adjustment priced below zero
]


def test_non_positive_prices_are_dropped_by_default(tmp_path):
    tx = load(write(tmp_path, PRICES))
    assert tx.report.non_positive_price_lines == 3
    assert by_day(tx) == {("a", "2024-01-05"): 6.0, ("b", "2024-01-06"): 4.0}
    assert tx.report.rows_kept == 2
    assert "3 lines priced <= 0 dropped" in tx.report.summary_lines()[0]


def test_non_positive_prices_kept_or_refused(tmp_path):
    path = write(tmp_path, PRICES)
    kept = load(path, non_positive_price="keep")
    # a zero-priced day is a purchase of value 0; the negative adjustment is a return day taken off b's 01-06
    assert by_day(kept) == {("a", "2024-01-05"): 6.0, ("a", "2024-01-09"): 0.0, ("b", "2024-01-06"): 1.5}
    assert kept.report.non_positive_price_lines == 3
    with pytest.raises(
        DataError, match=r"3 line\(s\) with a price <= 0 \(price\); first: line 3 \(customer a\); line 4"
    ):
        load(path, non_positive_price="fail")


# --- config ---------------------------------------------------------------------------------------------------

BASE = {"name": "t", "time": {"calibration_end": "2024-06-30"}}


def test_quantity_and_price_come_together_instead_of_amount():
    cfg = parse_config(BASE | {"data": {"source": "x.csv", "quantity": "q", "price": "p"}})
    assert cfg.data.amount is None and cfg.data.line_items and cfg.data.has_values
    with pytest.raises(ConfigError, match=r"data\.quantity needs data\.price"):
        parse_config(BASE | {"data": {"source": "x.csv", "quantity": "q"}})
    with pytest.raises(ConfigError, match=r"data\.price needs data\.quantity"):
        parse_config(BASE | {"data": {"source": "x.csv", "price": "p", "amount": None}})
    with pytest.raises(ConfigError, match=r"give data\.amount or data\.quantity \+ data\.price, not both"):
        parse_config(BASE | {"data": {"source": "x.csv", "quantity": "q", "price": "p", "amount": "amount"}})
    with pytest.raises(ConfigError, match=r"data\.cancellation_prefix needs data\.invoice"):
        parse_config(BASE | {"data": {"source": "x.csv", "cancellation_prefix": "C"}})


def test_amount_and_quantity_is_a_usage_error_on_the_command_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: t\ndata: {source: x.csv, amount: amount, quantity: q, price: p}\ntime: {calibration_end: 2024-06-30}\n"
    )
    result = CliRunner().invoke(app, ["check-config", str(config)])
    assert result.exit_code == 2 and "not both" in result.stderr


# --- the command line on a line-item export ------------------------------------------------------------------


def _cdnow_as_line_items(tmp_path: Path) -> tuple[Path, float]:
    """CDNOW's cohort as a line-item export: each transaction two lines on an invoice, 30 guest lines, and on 40
    days the next day a cancellation of one line of that day's invoice (on days when the customer buys nothing
    else). Returns the file and the guest value."""
    tx = pd.read_csv(dataset_path("cdnow"), dtype={"customer_id": str})
    tx = tx[tx["amount"] > 0].reset_index(drop=True)
    tx["invoice"] = (100000 + tx.index).astype(str)
    half = {"InvoiceNo": tx["invoice"], "CustomerID": tx["customer_id"], "InvoiceDate": tx["date"] + " 10:00"}
    lines = pd.DataFrame(half | {"Quantity": 1.0, "UnitPrice": tx["amount"] / 2})
    tx["next_day"] = (pd.to_datetime(tx["date"]) + pd.Timedelta(days=1)).dt.strftime("%Y-%m-%d")
    bought = set(zip(tx["customer_id"], tx["date"], strict=True))
    free = pd.Series([(c, d) not in bought for c, d in zip(tx["customer_id"], tx["next_day"], strict=True)])
    first = tx[free & ~tx.duplicated(["customer_id", "date"], keep=False)].head(40)
    cancels = pd.DataFrame(
        {
            "InvoiceNo": "C" + first["invoice"],
            "CustomerID": first["customer_id"],
            "InvoiceDate": first["next_day"] + " 09:00",
            "Quantity": -1.0,
            "UnitPrice": first["amount"] / 2,
        }
    )
    guests = pd.DataFrame(
        {"InvoiceNo": [f"9{k // 3:05d}" for k in range(30)], "CustomerID": "", "InvoiceDate": "1997-03-01 12:00"}
        | {"Quantity": 2.0, "UnitPrice": [1.25 * (k + 1) for k in range(30)]}
    )
    frame = pd.concat([lines, lines, cancels, guests], ignore_index=True)
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    return path, float((guests["Quantity"] * guests["UnitPrice"]).sum())


def test_run_states_the_guest_lines_and_summary_json_counts_them(tmp_path):
    path, guest_value = _cdnow_as_line_items(tmp_path)
    config = tmp_path / "export.yaml"
    config.write_text(
        f"""name: export
data: {{source: {path}, customer_id: CustomerID, date: InvoiceDate, quantity: Quantity, price: UnitPrice,
        invoice: InvoiceNo, cancellation_prefix: C, missing_customer: drop}}
time: {{unit: W, calibration_end: 1997-09-30, holdout_end: 1998-06-30}}
output: {{reports_dir: {tmp_path / "reports"}, models_dir: {tmp_path / "models"}}}
"""
    )
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.stderr
    assert f"30 guest lines (no customer id) dropped carrying {guest_value:,.2f} (not in the forecast)" in result.stderr
    raw = pd.read_csv(path, dtype={"CustomerID": str})
    summary = json.loads((tmp_path / "reports" / "export" / "summary.json").read_text())
    validation, profile = summary["data"]["validation"], summary["data"]["profile"]
    assert validation["rows_read"] == profile["rows_read"] == len(raw)
    assert validation["invoices"] == profile["invoices"] == raw["InvoiceNo"].nunique()
    assert validation["guest"] == {"lines": 30, "invoices": 10, "value": guest_value, "cancellation_lines": 0}
    assert validation["cancellations"]["lines"] == profile["cancellations"]["lines"] == 40
    assert profile["customer_ids"] == raw["CustomerID"].nunique()
    assert validation["returns"]["return_days"] == 40  # the day after: one line of two returned each time
    html = (tmp_path / "reports" / "export" / "report.html").read_text()
    assert "<h2>Data</h2>" in html and "guest lines dropped" in html


# --- the real export ------------------------------------------------------------------------------------------

ONLINE_RETAIL = SHARED / "onlineretail.csv.gz"


@pytest.fixture(scope="module")
def retail_raw() -> pd.DataFrame:
    if not ONLINE_RETAIL.exists():
        pytest.skip("../shared/data/onlineretail.csv.gz is absent")
    return pd.read_csv(ONLINE_RETAIL, dtype=str, keep_default_na=False)


def test_the_online_retail_export_reads_as_published(retail_raw):
    cfg = load_config(ROOT / "configs" / "onlineretail.yaml", [f"data.source={ONLINE_RETAIL}"])
    report = load_transactions(cfg.data.source, cfg.data).report
    raw = retail_raw
    quantity, price = raw["Quantity"].astype(float), raw["UnitPrice"].astype(float)
    guest = raw["CustomerID"] == ""
    prefixed = raw["InvoiceNo"].str.startswith("C")
    # the published counts (/work/shared/data/README.md)
    assert report.rows_read == len(raw) == 541_909
    assert report.invoices == raw["InvoiceNo"].nunique() == 25_900
    assert report.customer_ids == raw.loc[~guest, "CustomerID"].nunique() == 4_372
    assert report.guest["lines"] == guest.sum() == 135_080
    assert report.guest["invoices"] == raw.loc[guest, "InvoiceNo"].nunique()
    # the guests' value, as the identified customers', leaves out the lines priced <= 0 (data.non_positive_price:
    # drop): "Adjust bad debt" lines of +-11,062.06 among them
    assert report.guest["value"] == pytest.approx(float((quantity * price)[guest & (price > 0)].sum()), abs=0.005)
    assert round(report.guest["value"]) == 1_469_806
    # duplicates: an invoice repeated whole (every line k >= 2 times, identical) counts once; identical lines
    # within an invoice that has other lines are kept (the same item added twice to a basket)
    ident = raw[~guest].groupby(list(raw.columns)).size()
    per_invoice = ident.groupby(level="InvoiceNo").agg(["min", "max"])
    repeated = per_invoice.index[(per_invoice["min"] == per_invoice["max"]) & (per_invoice["max"] > 1)]
    extra = raw.duplicated(keep="first") & raw["InvoiceNo"].isin(repeated) & ~guest
    assert report.duplicates.rows == report.duplicates.dropped == extra.sum() == 5
    assert report.duplicates.invoices == len(repeated) == 5
    in_repeated = ident.index.get_level_values("InvoiceNo").isin(repeated)
    assert report.duplicates.identical_invoice_lines == (ident[~in_repeated] - 1).sum() == 5_220
    # 9,288 cancellation lines: those of identified customers are kept and counted, the guests' go with them
    assert prefixed.sum() == 9_288
    kept = ~guest & (price > 0) & ~extra
    assert report.cancellations["lines"] == (prefixed & kept).sum() == (prefixed & ~guest & ~extra).sum()
    assert report.cancellations["invoices"] == raw.loc[prefixed & kept, "InvoiceNo"].nunique()
    assert report.cancellations["value"] == pytest.approx(-float((quantity * price)[prefixed & kept].sum()), abs=0.005)
    assert report.non_positive_price_lines == (~guest & (price <= 0)).sum()
    assert report.rows_rejected == 0
    returns = report.returns
    assert returns["netted_value"] + returns["unmatched_value"] == pytest.approx(returns["return_value"], abs=1e-6)
