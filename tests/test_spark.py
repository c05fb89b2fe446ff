"""engine: spark against engine: local: the same RFM rows, report, parameters, predictions and tiers, and the
same refusals, on CDNOW, a messy log and a synthetic one. One local Spark session serves the run (conftest)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest

from clv import pipeline
from clv.config import parse_config
from clv.errors import DataError, DataWarning
from clv.report.outputs import CUSTOMERS_BY_TIER, read_by_tier, rebuild_report, write_outputs
from clv.simulate import simulate_bgnbd_log
from clv.store import data_fingerprint

CDNOW = {
    "name": "cdnow",
    "data": {"source": "cdnow", "currency": "USD", "duplicates": "keep"},
    "time": {"unit": "W", "calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
}


def _config(raw: dict, engine: str, tmp_path=None):
    extra = {"output": {"reports_dir": str(tmp_path / "r"), "models_dir": str(tmp_path / "m")}} if tmp_path else {}
    return parse_config(raw | extra | {"engine": engine, "spark": {"master": "local[2]"}})


def _data_steps(raw: dict):
    local = pipeline.prepare_data(_config(raw, "local"))
    on_spark = pipeline.prepare_data(_config(raw, "spark"))
    return local, on_spark


def _same_rfm(local, on_spark) -> None:
    a, b = local.rfm.frame, on_spark.rfm.frame
    assert list(a.columns) == list(b.columns)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    for column in a.columns[1:]:
        if a[column].dtype.kind == "i":
            assert (a[column].to_numpy() == b[column].to_numpy()).all(), column
        else:
            np.testing.assert_allclose(b[column].to_numpy(), a[column].to_numpy(), rtol=1e-12, atol=0, err_msg=column)
    pd.testing.assert_frame_equal(local.rfm.new_customers, on_spark.rfm.new_customers)
    assert (local.rfm.late_customers, local.rfm.days_after_end) == (
        on_spark.rfm.late_customers,
        on_spark.rfm.days_after_end,
    )


def _same_report(local, on_spark, skip=()) -> None:
    a, b = dataclasses.asdict(local.report), dataclasses.asdict(on_spark.report)
    skipped = {"location", "first_problems", "first_lines", "source", *skip}
    for key in a.keys() - skipped:
        if isinstance(a[key], float) or key in ("returns", "guest", "cancellations"):
            assert a[key] == pytest.approx(b[key], rel=1e-12), key
        else:
            assert a[key] == b[key], key
    assert on_spark.report.location == "row"


def test_cdnow_run_on_spark_gives_the_local_numbers(spark, tmp_path):
    local = pipeline.run(_config(CDNOW, "local", tmp_path))
    on_spark = pipeline.run(_config(CDNOW, "spark", tmp_path))
    _same_rfm(local.data, on_spark.data)
    _same_report(local.data, on_spark.data)
    pa, pb = dataclasses.asdict(local.data.profile), dataclasses.asdict(on_spark.data.profile)
    assert {k: v for k, v in pa.items() if k not in ("total_amount", "regularity", "source")} == {
        k: v for k, v in pb.items() if k not in ("total_amount", "regularity", "source")
    }
    assert pb["total_amount"] == pytest.approx(pa["total_amount"], rel=1e-12)
    for ours, theirs in zip(pa["regularity"], pb["regularity"], strict=True):  # from counted pairs, shape median
        exact = ("method", "customers", "min_gaps", "period_end", "note")
        assert {k: theirs[k] for k in exact} == {k: ours[k] for k in exact}
        assert theirs["k"] == pytest.approx(ours["k"], rel=1e-9)
    for model in ("purchase", "spend"):
        ours, theirs = getattr(local, model).params_, getattr(on_spark, model).params_
        for name in ours:
            assert theirs[name] == pytest.approx(ours[name], rel=1e-8), name
    # scored per partition: every column of every customer as locally (1e-9), the same tier, segment and RFM
    # scores; the table stays on Spark (customers is None), the driver has each customer's tier
    a, b = local.customers, on_spark.value.customers()
    assert on_spark.customers is None and list(a.columns) == list(b.columns)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    for column in a.columns:
        if a[column].dtype.kind == "f":
            np.testing.assert_allclose(b[column].to_numpy(float), a[column].to_numpy(float), rtol=1e-9, err_msg=column)
        else:
            assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column
    assert on_spark.customer_tiers.set_index("customer_id")["tier"].loc[a["customer_id"]].tolist() == a["tier"].tolist()
    pd.testing.assert_frame_equal(local.tiers, on_spark.tiers, rtol=1e-9)
    pd.testing.assert_frame_equal(local.value.forecast, on_spark.value.forecast, rtol=1e-9)
    assert (
        on_spark.holdout is not None and local.holdout is not None and on_spark.holdout.keys() == local.holdout.keys()
    )
    for key, figure in local.holdout.items():
        assert on_spark.holdout[key] == (pytest.approx(figure, rel=1e-9) if isinstance(figure, float) else figure), key
    assert on_spark.digest.segments.keys() == local.digest.segments.keys()
    # the outputs: the customer table as Parquet partitioned by tier (no CSV), written by Spark, and the schedule
    # as a Parquet folder; the small files as locally
    folder = write_outputs(on_spark)
    schedule = pd.read_parquet(folder / "revenue_schedule.parquet").sort_values("customer_id", ignore_index=True)
    expected = local.value.schedule().sort_values("customer_id", ignore_index=True)
    assert not (folder / "customers.csv").exists() and list(schedule.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(schedule, expected, check_dtype=False, rtol=1e-9)
    parts = sorted(unquote(p.name) for p in (folder / CUSTOMERS_BY_TIER).iterdir() if p.is_dir())  # %-escaped
    assert parts == sorted(f"tier={t}" for t in set(a["tier"]))
    written = read_by_tier(folder / CUSTOMERS_BY_TIER)
    pd.testing.assert_frame_equal(written, a, check_dtype=False, rtol=1e-9)
    assert [str(written[c].dtype) for c in ("r_score", "f_score", "m_score")] == ["int64"] * 3
    for name in ("tiers.csv", "forecast.csv", "at_risk.csv", "summary.json", "report.html"):
        assert (folder / name).is_file(), name
    local_folder = write_outputs(dataclasses.replace(local, config=_config(CDNOW, "local", tmp_path / "local")))
    for name in ("at_risk.csv", "tiers.csv", "forecast.csv"):
        ours, theirs = pd.read_csv(folder / name), pd.read_csv(local_folder / name)
        pd.testing.assert_frame_equal(ours, theirs, rtol=1e-9, obj=name)
    # rebuilt with the saved table digested on Spark: the same report but for the charts' images
    images = re.compile(r'src="data:image/png;base64,[^"]*"')
    written = images.sub("", (folder / "report.html").read_text())
    assert images.sub("", rebuild_report(_config(CDNOW, "spark", tmp_path)).read_text()) == written


def _messy() -> pd.DataFrame:
    """Every rule at work: guests, invalid rows, a duplicate, a return netted, same-day rows, padded ids, ids
    with leading zeros, a late customer."""
    rows = [
        ("0001", "2020-01-02", "10.00"),
        ("0001", "2020-01-02", "5.00"),  # same day
        ("0001", "2020-02-10", "20.00"),
        ("0001", "2020-02-10", "20.00"),  # duplicate row
        ("0001", "2020-03-01", "-8.00"),  # return netted against 2020-02-10
        ("1", "2020-01-05", "7.50"),  # another customer than 0001
        ("1", "2020-04-01", "3.25"),
        (" 2", "2020-01-09", "4.00"),  # padded id, kept as written
        ("2", "2020-02-09", "6.00"),
        ("3", "2020-01-20", "abc"),  # not a number
        ("3", "2020-02-20", "12.00"),
        ("3", "2020-05-20", "9.00"),  # holdout
        ("", "2020-01-21", "99.00"),  # guest line
        ("4", "2020-13-40", "1.00"),  # not a date
        ("5", "2020-05-02", "30.00"),  # first seen after calibration end: a late customer
    ]
    rows += [(f"c{i:03d}", f"2020-0{1 + i % 3}-1{i % 9}", f"{1 + i % 7}.00") for i in range(200)]
    rows += [(f"c{i:03d}", f"2020-0{4 + i % 2}-0{1 + i % 8}", f"{2 + i % 5}.50") for i in range(0, 200, 3)]
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


def _messy_config(path, **data) -> dict:
    return {
        "name": "messy",
        "data": {"source": str(path), "missing_customer": "drop", "invalid_rows": "drop", "max_invalid_share": 0.05}
        | data,
        "time": {"unit": "D", "calibration_end": "2020-03-31", "holdout_end": "2020-05-31"},
    }


def test_a_messy_log_gets_the_same_report_and_rows(spark, tmp_path):
    path = tmp_path / "messy.parquet"
    _messy().to_parquet(path)
    raw = _messy_config(path)
    with pytest.warns(DataWarning, match="leading or trailing spaces"):
        local, on_spark = _data_steps(raw)
    _same_rfm(local, on_spark)
    _same_report(local, on_spark)
    assert on_spark.report.rows_rejected == 2 and on_spark.report.duplicates.rows == 1
    assert on_spark.rfm.late_customers == 1
    shown = {(p.customer_id, p.reason) for p in on_spark.report.first_problems}
    assert shown == {(p.customer_id, p.reason) for p in local.report.first_problems}
    assert all(p.file and p.file.endswith("messy.parquet") for p in on_spark.report.first_problems)


def test_rejected_rows_are_written_as_parquet(spark, tmp_path):
    path = tmp_path / "messy.csv"
    _messy().to_csv(path, index=False)
    target = tmp_path / "out" / "rejected"
    config = _config(_messy_config(path, rejected_rows=str(target)), "spark")
    pipeline.prepare_data(config)
    rejected = pd.read_parquet(target)
    assert sorted(rejected["reason"]) == ["not a date", "not a number"]
    assert sorted(rejected["customer_id"]) == ["3", "4"]
    assert rejected["file"].str.endswith("messy.csv").all()


def _refusal(raw: dict, engine: str) -> str:
    with pytest.raises(DataError) as caught:
        pipeline.prepare_data(_config(raw, engine))
    return caught.value.message


@pytest.mark.parametrize(
    ("change", "frame_change", "expected"),
    [
        ({"invalid_rows": "fail"}, None, "2 invalid row(s) of 282"),
        ({"max_invalid_share": 0.001}, None, "more than data.max_invalid_share"),
        ({"duplicates": "fail"}, None, "1 duplicate row(s)"),
        ({"returns": "fail"}, None, "1 row(s) with a non-positive amount"),
        ({}, "day_first", "written day or month first"),
        ({}, "mixed_zones", "mix time-zone-aware and naive"),
    ],
)
def test_refusals_say_what_the_local_engine_says(spark, tmp_path, change, frame_change, expected):
    frame = _messy()
    if frame_change == "day_first":
        frame.loc[frame.index[-5:], "date"] = "13/01/2020"
    if frame_change == "mixed_zones":
        frame.loc[frame.index[-1], "date"] = "2020-01-15 10:00:00+02:00"
    path = tmp_path / "refused.parquet"
    frame.to_parquet(path)
    raw = _messy_config(path, **change)
    local, on_spark = _refusal(raw, "local"), _refusal(raw, "spark")
    assert expected in local and expected in on_spark
    # the counts agree; the examples are named by customer on Spark, where lines are unknown
    assert on_spark.split("first")[0] == local.split("first")[0]


def test_an_invoice_of_two_customers_is_refused_on_spark(spark, tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c"],
            "date": ["2020-01-01", "2020-01-01", "2020-01-01", "2020-02-01"],
            "amount": ["1", "2", "3", "4"],
            "invoice": ["I1", "I1", "I1", "I2"],
        }
    )
    path = tmp_path / "invoices.parquet"
    frame.to_parquet(path)
    raw = {
        "name": "inv",
        "data": {"source": str(path), "invoice": "invoice"},
        "time": {"calibration_end": "2020-02-15"},
    }
    local, on_spark = _refusal(raw, "local"), _refusal(raw, "spark")
    assert "1 invoice(s) carry lines of more than one customer id; first: I1 (customers a, b)" in local
    assert on_spark == local


def test_invoices_read_are_counted_once_across_parts(spark, tmp_path):
    """An invoice with a guest line and a customer's lines, and one with a customer's line and another's bad line,
    are in two parts each (guests are a part of their own): read once each, as locally."""
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "", "b", "c", "d", "d"],
            "date": ["2020-01-01", "2020-01-01", "2020-01-01", "2020-01-03", "2020-01-03", "2020-01-04", "2020-02-01"],
            "amount": ["1", "2", "3", "4", "x", "5", "6"],
            "invoice": ["I1", "I1", "I1", "I2", "I2", "I3", "I4"],
        }
    )
    path = tmp_path / "invoices.parquet"
    frame.to_parquet(path)
    raw = _messy_config(path, invoice="invoice", max_invalid_share=0.5) | {"time": {"calibration_end": "2020-02-15"}}
    local, on_spark = _data_steps(raw)
    assert (local.report.invoices, local.report.invoices_kept, local.report.guest["invoices"]) == (4, 4, 1)
    _same_report(local, on_spark)
    _same_rfm(local, on_spark)


def test_a_transaction_id_of_two_customers_counts_as_locally_on_spark(spark, tmp_path):
    """The parts split the customers, so an id on two customers' rows is in two parts: the rows of such ids are
    counted over the parts, and every policy gives the local engine's refusal or report. t7 is on c0's and c7's
    rows; t9 on c9's twice (a plain duplicate, in one part) and c1's; t3 on c3's row and on a bad row of c4's
    (left out as invalid, so no conflict); t5 twice on c5's rows that differ (a conflict within one part)."""
    n = 40
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)] + ["c0", "c9", "c1", "c4", "c5"],
            "date": ["2020-01-01"] * n + ["2020-01-05", "2020-01-01", "2020-01-06", "2020-01-07", "2020-01-08"],
            "amount": ["1"] * n + ["1", "1", "1", "x", "2"],
            "tid": [f"t{i}" for i in range(n)] + ["t7", "t9", "t9", "t3", "t5"],
        }
    )
    path = tmp_path / "tids.parquet"
    frame.to_parquet(path)
    raw = {
        "name": "tid",
        "data": {"source": str(path), "transaction_id": "tid", "max_invalid_share": 0.1, "invalid_rows": "drop"},
        "time": {"calibration_end": "2020-02-15"},
    }
    local = _refusal(raw, "local")
    assert "3 transaction id(s) of column 'tid' appear on rows that differ" in local and "t5, t7, t9" in local
    assert _refusal(raw, "spark") == local
    fail = raw | {"data": raw["data"] | {"duplicates": "fail"}}
    local = _refusal(fail, "local")
    assert "4 duplicate row(s): rows repeat a transaction id" in local
    assert _refusal(fail, "spark") == local
    keep = raw | {"data": raw["data"] | {"duplicates": "keep"}}
    local, on_spark = _data_steps(keep)
    assert local.report.duplicates.rows == 4
    _same_report(local, on_spark)
    _same_rfm(local, on_spark)


def test_sources_on_spark_globs_folders_tables_and_frames(spark, tmp_path):
    import clv.spark

    frame = _messy()
    half = len(frame) // 2
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:half].to_csv(folder / "a.csv", index=False)
    frame.iloc[half:].to_csv(folder / "b.csv", index=False)
    frame.to_csv(tmp_path / "whole.csv", index=False)
    local = pipeline.prepare_data(_config(_messy_config(tmp_path / "whole.csv"), "local"))
    for source in (str(folder / "*.csv"), str(folder)):
        _same_rfm(local, pipeline.prepare_data(_config(_messy_config(source), "spark")))
    given = spark.createDataFrame(frame.astype(str))
    given.createOrReplaceTempView("clv_test_log")
    _same_rfm(local, pipeline.prepare_data(_config(_messy_config("table:clv_test_log"), "spark")))
    step = clv.spark.prepare_data(_config(_messy_config("ignored.csv"), "local"), spark, given)
    _same_rfm(local, step)
    assert step.report.source == "data frame"


def test_a_point_fit_keeps_the_customers_off_the_driver_and_refuses_past_the_bound(spark, tmp_path):
    """CDNOW's 2,357 customers have 1,016 distinct histories and 830 distinct repeat-buyer spends: with the driver
    bound at 2,000 rows the run fits, scores and tiers them without the customer frame (or their tiers) coming
    to the driver; reading the frame, or a bound under the distinct rows, is refused with the count and the
    remedy."""
    bound = {"spark": {"master": "local[2]", "max_collected_rows": 2000}}
    extra = {"output": {"reports_dir": str(tmp_path / "r"), "models_dir": str(tmp_path / "m")}}
    local = pipeline.run(_config(CDNOW, "local"))
    result = pipeline.run(parse_config(CDNOW | extra | bound | {"engine": "spark"}))
    rfm = result.data.rfm
    assert rfm.remote is not None and rfm._collected is None  # never collected
    assert rfm.customers == 2357 and result.customers is None
    assert result.purchase.n_customers_ == local.purchase.n_customers_ == 2357
    assert (
        result.spend.summary()["assumption_checks"]["buyers_fitted"]
        == local.spend.summary()["assumption_checks"]["buyers_fitted"]
    )
    assert result.spend_outliers == local.spend_outliers
    tiers = result.value.tiers.toPandas().sort_values("customer_id").reset_index(drop=True)
    expected = local.customers[["customer_id", "tier"]].sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(tiers, expected, check_dtype=False)
    with pytest.raises(DataError, match=r"2,357 customers' tiers, more than spark.max_collected_rows 2,000"):
        _ = result.customer_tiers  # asked for on the driver: bounded too
    # what clv train saves: the tiers (scored, tiered and written on Spark) and the data's fingerprint, as locally
    write = pipeline.customer_tiers(result.config, result.fitted, rfm)
    assert callable(write)
    write(tmp_path / "customer_tiers.parquet")
    trained = pd.read_parquet(tmp_path / "customer_tiers.parquet").sort_values("customer_id")
    pd.testing.assert_frame_equal(trained.reset_index(drop=True), expected, check_dtype=False)
    assert rfm.remote.fingerprint() == data_fingerprint(local.data.rfm.frame) | {
        k: pytest.approx(v, rel=1e-13)
        for k, v in data_fingerprint(local.data.rfm.frame).items()
        if k.startswith("sum_")
    }
    assert rfm._collected is None
    with pytest.raises(DataError, match=r"2,357 customers, more than spark.max_collected_rows 2,000") as caught:
        _ = rfm.frame
    assert "raise spark.max_collected_rows" in (caught.value.hint or "")
    small = {"spark": {"master": "local[2]", "max_collected_rows": 1000}}
    with pytest.raises(DataError, match=r"1,016 distinct customer histories, more than spark.max_collected_rows"):
        pipeline.run(parse_config(CDNOW | extra | small | {"engine": "spark"}))


def test_the_saved_tiers_and_the_migration_on_spark_are_the_local_ones(spark, tmp_path):
    """A run scored on Spark saves its customers' tiers written by Spark (one Parquet file, hashed by the store);
    the next run's migration table, joined and counted on Spark, is the local engine's from the same file."""
    first = pipeline.run(_config(CDNOW, "spark", tmp_path))
    path = pipeline.save_fitted(first)
    saved = pd.read_parquet(path / "customer_tiers.parquet").sort_values("customer_id").reset_index(drop=True)
    local = pipeline.run(_config(CDNOW, "local", tmp_path))  # its previous tiers: the file Spark wrote
    expected = local.customers[["customer_id", "tier"]].sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(saved, expected, check_dtype=False)
    assert pipeline.load_fitted(path).purchase.params_ == first.purchase.params_  # the store's hashes hold
    again = pipeline.run(_config(CDNOW, "spark", tmp_path))
    assert local.migration is not None and int(np.trace(local.migration.to_numpy()[:-1, :-1])) == 2357
    pd.testing.assert_frame_equal(again.migration, local.migration)
    moved = saved.assign(tier=np.where(saved["tier"] == saved["tier"].iloc[0], saved["tier"].iloc[-1], saved["tier"]))
    moved = pd.concat([moved.iloc[5:], pd.DataFrame({"customer_id": ["gone-1"], "tier": [saved["tier"].iloc[0]]})])
    config = _config(CDNOW, "spark", tmp_path)
    ours = pipeline.score(config, again.fitted, again.data, moved)
    theirs = pipeline.score(_config(CDNOW, "local", tmp_path), local.fitted, local.data, moved)
    pd.testing.assert_frame_equal(ours.migration, theirs.migration)
    assert int(ours.migration.loc["(new)"].sum()) == 5 and int(ours.migration["(gone)"].sum()) == 1


def test_a_bayesian_fit_from_the_compressed_rows_is_the_local_one(spark, tmp_path, monkeypatch):
    """A Bayesian run on Spark is fitted from the distinct histories and spends with counts (Laplace here: no
    sampling noise): the local posterior means and log-likelihood. It is scored per partition with the posterior
    draws broadcast, the rows partitioned by block of histories (`_BLOCK` lowered: 11 blocks on CDNOW, the
    driver numbers them, the workers follow): every column of every customer, predictive intervals and tier
    probabilities included, the forecast's distribution, the horizon totals and the holdout's coverage are the
    local engine's scoring of the same posterior, bit for bit but for sums added in another order."""
    from clv.bayes import predict

    monkeypatch.setattr(predict, "_BLOCK", 100)
    raw = CDNOW | {"model": {"method": "bayes"}, "bayes": {"inference": "laplace", "progress": False}}
    local = pipeline.run(_config(raw, "local", tmp_path))
    on_spark = pipeline.run(_config(raw, "spark", tmp_path))
    for model in ("purchase", "spend"):
        ours, theirs = getattr(local, model), getattr(on_spark, model)
        for name, value in ours.params_.items():
            assert theirs.params_[name] == pytest.approx(value, rel=1e-8), name
        assert theirs.log_likelihood_ == pytest.approx(ours.log_likelihood_, rel=1e-10)
        assert theirs.n_customers_ == ours.n_customers_
    assert on_spark.digest.total_clv == pytest.approx(local.digest.total_clv, rel=1e-7)
    rfm = on_spark.data.rfm
    assert on_spark.customers is None and rfm._collected is None  # scored where the rows are
    same = pipeline.score(_config(raw, "local", tmp_path), on_spark.fitted, local.data)  # the same posterior
    a, b = same.customers, on_spark.value.customers()
    assert list(a.columns) == list(b.columns) and a["customer_id"].tolist() == b["customer_id"].tolist()
    assert {"purchases_predicted_lo", "revenue_predicted_hi", "purchases_holdout_hi", "p_tier_top_5"} <= set(a)
    for column in a.columns:
        if a[column].dtype.kind == "f":
            np.testing.assert_array_equal(b[column].to_numpy(float), a[column].to_numpy(float), err_msg=column)
        else:
            assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column
    assert 0.0 < a["p_tier_top_5"].mean() < 1.0 and a["p_tier_top_5"].nunique() > 10  # not a tier's 0 / 1
    pd.testing.assert_frame_equal(on_spark.value.forecast, same.value.forecast, rtol=1e-12)
    totals = on_spark.value.totals
    assert totals is not None and totals.keys() == same.value.totals.keys()
    for key, figure in same.value.totals.items():
        assert totals[key] == (pytest.approx(figure, rel=1e-12) if isinstance(figure, dict) else figure), key
    assert on_spark.holdout is not None and same.holdout is not None
    assert on_spark.holdout.keys() == same.holdout.keys()
    for key, figure in same.holdout.items():
        expected = pytest.approx(figure, rel=1e-12) if isinstance(figure, float | dict) else figure  # flat dicts
        assert on_spark.holdout[key] == expected, key
    pd.testing.assert_frame_equal(on_spark.tiers, same.tiers, rtol=1e-12)
    # the outputs as for a point fit: the table by tier, the schedule, summary.json's distribution
    folder = write_outputs(on_spark)
    written = read_by_tier(folder / CUSTOMERS_BY_TIER)
    pd.testing.assert_frame_equal(written, a, check_dtype=False, rtol=1e-12)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["forecast_totals"]["distribution"]["clv"]["p90"] == pytest.approx(same.value.totals["clv"]["p90"])
    # what clv train saves: each customer's tier, from the posterior scored and tiered on Spark
    write = pipeline.customer_tiers(on_spark.config, on_spark.fitted, rfm)
    assert callable(write) and rfm._collected is None
    write(tmp_path / "customer_tiers.parquet")
    trained = pd.read_parquet(tmp_path / "customer_tiers.parquet").sort_values("customer_id", ignore_index=True)
    expected = a[["customer_id", "tier"]].sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(trained, expected, check_dtype=False)


def test_threshold_tiers_of_a_posterior_on_spark_are_the_local_ones(spark, tmp_path):
    """Threshold tiers: each draw's cut-offs are the thresholds (no selection); the tier probabilities are the
    local ones for the same posterior."""
    tiers = {"levels": [{"label": "gold", "min_clv": 60.0}, {"label": "silver", "min_clv": 15.0}, {"label": "rest"}]}
    raw = CDNOW | {
        "model": {"method": "bayes"},
        "bayes": {"inference": "laplace", "progress": False, "prediction_draws": 100},
        "tiers": tiers,
    }
    on_spark = pipeline.run(_config(raw, "spark", tmp_path))
    local_config = _config(raw, "local", tmp_path)
    same = pipeline.score(local_config, on_spark.fitted, pipeline.prepare_data(local_config))
    a, b = same.customers, on_spark.value.customers()
    for column in ("p_tier_gold", "p_tier_silver", "p_tier_rest", "clv_hi"):
        np.testing.assert_array_equal(b[column].to_numpy(), a[column].to_numpy(), err_msg=column)
    assert a["p_tier_gold"].between(0.0, 1.0).all() and a["p_tier_gold"].max() > 0.5


def test_a_missing_source_is_a_clear_error(spark):
    raw = CDNOW | {"data": {"source": "no/such/file.csv"}}
    with pytest.raises(DataError, match="no such file, folder or glob match"):
        pipeline.prepare_data(_config(raw, "spark"))


def test_engine_spark_without_pyspark_says_how_to_install_it(monkeypatch):
    import sys

    from clv.errors import UsageError
    from clv.spark.session import spark_session

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(UsageError, match="needs PySpark") as caught:
        spark_session(_config(CDNOW, "spark"))
    assert "pip install 'clv[spark]'" in (caught.value.hint or "")


@pytest.mark.slow
def test_a_200k_customer_synthetic_log_gives_the_local_numbers(spark, tmp_path):
    log = simulate_bgnbd_log(200_000, 0.25, 4.0, 0.8, 2.4, spend=(6.0, 4.0, 15.0), weeks=78, seed=3)
    path = tmp_path / "synthetic.parquet"
    log.to_parquet(path)
    end = dt.date(2020, 1, 1) + dt.timedelta(weeks=52)
    raw = {
        "name": "synthetic",
        "data": {"source": str(path)},
        "time": {"unit": "W", "calibration_end": end.isoformat(), "holdout_end": "2021-06-30", "allow_gap": True},
    }
    local = pipeline.run(_config(raw, "local", tmp_path))
    on_spark = pipeline.run(_config(raw, "spark", tmp_path))
    _same_rfm(local.data, on_spark.data)
    for model in ("purchase", "spend"):
        ours, theirs = getattr(local, model).params_, getattr(on_spark, model).params_
        for name in ours:
            assert theirs[name] == pytest.approx(ours[name], rel=1e-8), name
    scored = on_spark.value.customers()
    assert local.customers["customer_id"].tolist() == scored["customer_id"].tolist()
    for column in ("tier", "segment", "rfm_score"):
        assert local.customers[column].tolist() == scored[column].tolist(), column
    for column in ("p_alive", "expected_purchases", "clv"):
        a, b = local.customers[column].to_numpy(float), scored[column].to_numpy(float)
        np.testing.assert_allclose(b, a, rtol=1e-9, err_msg=column)


def test_clv_evaluate_on_spark_gives_the_local_leaderboard_tracking_and_rolling_origins(spark):
    """The rolling origins' summaries and the weekly tracking come from the same one pass over the log."""
    from clv.evaluate.job import evaluate

    raw = CDNOW | {"evaluation": {"models": ["bgnbd"], "methods": ["mle"], "rolling": 2}}
    local, on_spark = evaluate(_config(raw, "local")), evaluate(_config(raw, "spark"))
    assert on_spark.origins == local.origins and len(local.origins) == 2
    timed = [c for c in local.leaderboard if c.endswith("_seconds")]
    assert timed  # the one column a run on another engine may change
    pd.testing.assert_frame_equal(
        local.leaderboard.drop(columns=timed), on_spark.leaderboard.drop(columns=timed), rtol=1e-9
    )
    timed = [c for c in local.per_origin if c.endswith("_seconds")]
    pd.testing.assert_frame_equal(
        local.per_origin.drop(columns=timed), on_spark.per_origin.drop(columns=timed), rtol=1e-9
    )
    a, b = local.tracking.actual, on_spark.tracking.actual
    assert a.start == b.start and a.calibration_end == b.calibration_end
    for name in ("week_end", "weekly", "first_day", "first_day_customers"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name


def test_the_forecast_bands_backtests_on_spark_are_the_local_ones(spark, monkeypatch):
    """The band's backtests summarise the log at every origin and month end: all in one pass on Spark."""
    from clv.evaluate.band import _origins

    monkeypatch.setattr("clv.evaluate.band.BAND_DRAWS", 40)
    raw = CDNOW | {"prediction": {"horizon": "3M", "band": 0.8, "band_origins": 4}}
    (local, local_notes), (on_spark, spark_notes) = (_origins(_config(raw, e), 3) for e in ("local", "spark"))
    assert spark_notes == local_notes
    assert [(o.origin, o.customers, o.months) for o in on_spark] == [(o.origin, o.customers, o.months) for o in local]
    assert len(local) == 4
    for ours, theirs in zip(local, on_spark, strict=True):
        for kind in ours.actual:
            np.testing.assert_allclose(theirs.actual[kind], ours.actual[kind], rtol=1e-12, err_msg=kind)
            for side in ("month_lo", "month_hi", "expected"):
                got, want = getattr(theirs.band, side)[kind], getattr(ours.band, side)[kind]
                np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=f"{kind} {side}")


def test_the_driver_options_get_clvs_log_configuration_unless_they_name_one():
    from clv.spark.session import LOG_CONFIG, _with_log_config

    assert LOG_CONFIG.is_file()
    assert _with_log_config("") == f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"
    assert _with_log_config("-Xss4m").startswith("-Xss4m -Dlog4j2.configurationFile=")
    own = "-Dlog4j2.configurationFile=file:/etc/spark/log4j2.properties"
    assert _with_log_config(own) == own


@pytest.mark.slow
def test_a_session_clv_starts_prints_none_of_sparks_start_up_warnings(tmp_path):
    """A fresh JVM (a subprocess): Spark's default logging prints its log4j profile, the hostname's address,
    the native library and a default log level on stderr before clv's first line."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_cli import write_config

    config = write_config(tmp_path)
    clv = Path(sys.executable).with_name("clv")
    done = subprocess.run(
        [str(clv), "data", "summarize", str(config), "--set", "engine=spark", "--set", "spark.master=local[1]"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for noise in ("log4j profile", "WARN Utils", "NativeCodeLoader", "Setting default log level"):
        assert noise not in done.stderr, noise
    assert "6,919 rows" in done.stderr + done.stdout


@pytest.mark.slow  # the digest's test below checks order statistics through its quantiles and top shares
def test_order_statistics_are_exact_with_ties(spark):
    from pyspark.sql import functions as F

    from clv.spark.digest import order_keys, order_statistics, spark_quantile

    rng = np.random.default_rng(11)
    # runs of equal values (rounded) and distinct ones (brackets sorted on the driver)
    for values in (np.round(rng.lognormal(2.0, 1.0, 8_000), 1), rng.random(200_000)):
        n = values.size
        ids = [f"i{k:06d}" for k in rng.permutation(n)]
        frame = spark.createDataFrame(pd.DataFrame({"v": values, "id": ids}))
        ranks = [0, 1, n // 8, n // 2, n - 2, n - 1]
        ordered = np.sort(values)
        assert order_statistics(frame, F.col("v"), ranks, n) == [float(ordered[r]) for r in ranks]
        keyed = pd.DataFrame({"neg": -values, "id": ids}).sort_values(["neg", "id"]).reset_index(drop=True)
        wanted = [(float(keyed["neg"][r]), keyed["id"][r]) for r in ranks]
        assert order_keys(frame, -F.col("v"), ranks, n, tie="id") == wanted
        for p in (0.001, 0.37, 0.99):
            assert spark_quantile(frame, F.col("v"), p, n) == np.quantile(values, p)


def test_digest_on_spark_gives_the_local_digest(spark, tmp_path):
    from clv.digest import digest_customers
    from clv.spark.digest import spark_digest

    result = pipeline.run(_config(CDNOW | {"tiers": {"min_size": 1}}, "local", tmp_path))
    customers = result.customers
    local = digest_customers(customers)
    ours = spark_digest(spark.createDataFrame(customers.sample(frac=1.0, random_state=1)))
    assert local.at_risk_customers > 25 and len(local.segments) == 4  # every part of the digest has rows
    for field in ("customers", "columns", "churn", "at_risk_customers"):
        assert getattr(ours, field) == getattr(local, field), field
    for field in ("total_clv", "total_residual_clv", "expected_purchases", "mean_p_alive", "mean_churn"):
        assert getattr(ours, field) == pytest.approx(getattr(local, field), rel=1e-12), field
    assert (ours.T_p90, ours.frequency_p99) == (local.T_p90, local.frequency_p99)
    for name in ("segments", "rfm_segments"):
        a, b = getattr(local, name), getattr(ours, name)
        assert list(a) == list(b)
        for key in a:
            assert a[key].customers == b[key].customers
            for figure in ("clv", "p_purchase", "bought"):
                assert getattr(b[key], figure) == pytest.approx(getattr(a[key], figure), rel=1e-12), (key, figure)
    pd.testing.assert_frame_equal(ours.rfm_by_segment, local.rfm_by_segment, check_dtype=False)
    pd.testing.assert_frame_equal(ours.at_risk_top, local.at_risk_top, check_dtype=False)
    pd.testing.assert_frame_equal(ours.holdout_by_frequency, local.holdout_by_frequency, check_dtype=False)
    a, b = local.clv_shape, ours.clv_shape
    np.testing.assert_allclose(b.edges, a.edges, rtol=1e-14)
    assert b.counts.tolist() == a.counts.tolist()
    for top in a.tops:
        assert b.tops[top] == pytest.approx(a.tops[top], rel=1e-12)
    # the curve's points at Spark's approximate quantiles: each exactly on the curve of the whole sorted table
    assert len(b.curve) > 100 and b.curve[0].tolist() == [0.0, 0.0] and b.curve[-1].tolist() == [100.0, 100.0]
    ordered = np.sort(np.maximum(customers["clv"].to_numpy(), 0.0))[::-1]
    x = np.r_[0.0, 100.0 * np.arange(1, ordered.size + 1) / ordered.size]
    y = np.r_[0.0, 100.0 * np.cumsum(ordered) / ordered.sum()]
    np.testing.assert_allclose(np.interp(b.curve[:, 0], x, y), b.curve[:, 1], atol=1e-9)
    _same_segments_and_rfm_scores(spark, result)


def _same_segments_and_rfm_scores(spark, result) -> None:
    """Segments and RFM scores as Spark expressions over the customer table: every customer's as the local run's
    (CDNOW: 60% of the frequencies are 0, so quintile runs of equal values cross the cuts)."""
    from pyspark.sql import functions as F

    from clv.spark.tiers import rfm_score_columns, segment_column

    local = result.customers
    labels = [level.label for level in result.config.tiers.levels]
    tiers = spark.createDataFrame(local.drop(columns=["r_score", "f_score", "m_score", "rfm_score", "rfm_segment"]))
    index = F.when(F.lit(False), F.lit(0))
    for k, label in enumerate(labels):
        index = index.when(F.col("tier") == label, F.lit(k))
    churn = next(c for c in local.columns if c.startswith("p_purchase_next_"))
    scored = tiers.select(
        "customer_id",
        segment_column(index, F.col(churn), result.config.tiers).alias("segment_again"),
        *(column.alias(name) for name, column in rfm_score_columns(tiers, len(local)).items()),
    ).toPandas()
    scored = scored.set_index("customer_id").loc[local["customer_id"]]
    assert (scored["segment_again"].to_numpy() == local["segment"].to_numpy()).all()
    for name in ("r_score", "f_score", "m_score", "rfm_score", "rfm_segment"):
        assert (scored[name].to_numpy() == local[name].to_numpy()).all(), name
    assert local["f_score"].nunique() > 1 and local["rfm_segment"].nunique() > 3


def test_tiers_on_spark_are_the_local_tiers_with_ties_at_the_cuts(spark):
    from clv.config import TiersConfig
    from clv.spark.tiers import spark_tier_table, tier_index
    from clv.tiers import assign_tiers, tier_table

    rng = np.random.default_rng(5)
    n = 3_000
    clv = rng.choice([0.0, 1.5, 7.25, 40.0], n, p=[0.5, 0.3, 0.15, 0.05])  # every cut inside a run of equal CLVs
    ids = np.array([f"{k:04d}" if k % 3 else f"x{k}" for k in rng.permutation(n)], dtype=object)
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "clv": clv,
            "p_alive": rng.random(n),
            "p_purchase_next_13w": rng.random(n),
            "expected_purchases": rng.random(n),
            "expected_spend": rng.random(n) * 30,
        }
    )
    table = spark.createDataFrame(frame)
    shares = TiersConfig()  # top 5% / next 15% / next 30% / rest
    thresholds = TiersConfig.model_validate(
        {"levels": [{"label": "A", "min_clv": 40.0}, {"label": "B", "min_clv": 1.5}, {"label": "C"}]}
    )
    for config in (shares, thresholds):
        expected = assign_tiers(clv, config, ids)
        labels = np.asarray([level.label for level in config.levels], dtype=object)
        got = table.select("customer_id", tier_index(table, config, n).alias("k")).toPandas()
        got = got.set_index("customer_id").loc[list(ids), "k"].to_numpy()
        assert (got == expected).all()
        with_tiers = frame.assign(tier=labels[expected])
        local = tier_table(with_tiers, config, "p_purchase_next_13w")
        ours = spark_tier_table(spark.createDataFrame(with_tiers), config, "p_purchase_next_13w")
        pd.testing.assert_frame_equal(ours, local, check_exact=False, rtol=1e-12)
    with pytest.raises(DataError, match="min_size"):
        tier_index(table, TiersConfig.model_validate({"min_size": 200}), n)


def test_the_radix_selection_finds_each_draws_order_statistics_exactly():
    """The tier cut-offs' selection on Spark (`clv.spark.posterior.RadixSelection`), its passes' counts added
    over parts of the rows as Spark adds them: every draw's values at the ranks asked for are np.partition's
    of the float32 values, with ties, negatives, zeros and rows that count several customers."""
    from clv.spark.posterior import RadixSelection, sortable, unsortable

    rng = np.random.default_rng(5)
    draws = 7
    values = rng.lognormal(3.0, 2.0, (400, draws)).astype(np.float32)
    values[:50] = values[50:100]  # ties
    values[100:120] = 0.0
    values[120:130] = -rng.random((10, draws)).astype(np.float32)
    weights = rng.integers(1, 4, 400)
    keys = sortable(values)
    np.testing.assert_array_equal(unsortable(keys), values)
    assert (np.argsort(keys[:, 0], kind="stable") == np.argsort(values[:, 0], kind="stable")).all()
    expanded = np.repeat(values, weights, axis=0)  # the customers
    ranks = np.array([int(expanded.shape[0] * q) for q in (0.5, 0.8, 0.95)] + [0, expanded.shape[0] - 1])
    selection = RadixSelection(ranks, draws)
    while not selection.done:
        parts = [selection.counts(keys[i : i + 150], weights[i : i + 150]) for i in range(0, 400, 150)]
        selection = selection.next(sum(parts))
    expected = np.partition(expanded, ranks, axis=0)[ranks].astype(np.float64)
    np.testing.assert_array_equal(selection.values(), expected)


_CONNECT_RUN = """
import json, os, sys
from pathlib import Path
os.environ["PYSPARK_PYTHON"] = sys.executable  # the local server's workers run this interpreter, which has clv
from pyspark.sql import SparkSession
import clv.spark
from clv import pipeline
from clv.config import parse_config
from clv.report.outputs import write_outputs

spark = SparkSession.builder.remote("local[2]").getOrCreate()
assert type(spark).__module__.startswith("pyspark.sql.connect"), type(spark)
config = parse_config(json.loads(sys.argv[1]))
result = clv.spark.run(config, spark)
with pipeline.staged_fitted(result.config, result.fitted, result.data.rfm, result.saved_tiers()) as model_dir:
    folder = write_outputs(result, model_dir)
result.release()
params = {m: getattr(result, m).params_ for m in ("purchase", "spend")}
Path(sys.argv[2]).write_text(json.dumps({"params": params, "folder": str(folder)}))
spark.stop()
"""


@pytest.mark.slow
def test_a_spark_connect_session_runs_the_job_with_the_local_numbers(spark, tmp_path):  # spark: Java and PySpark
    """clv.spark.run with a Spark Connect session (a local server in a subprocess of its own: a JVM apart from
    the tests' classic session): no SparkContext or RDD on the client, the same parameters, customers and tiers
    as the local engine, and the outputs and model written."""
    import json
    import subprocess
    import sys

    raw = CDNOW | {
        "engine": "spark",
        "output": {"reports_dir": str(tmp_path / "r"), "models_dir": str(tmp_path / "m")},
    }
    done = subprocess.run(
        [sys.executable, "-c", _CONNECT_RUN, json.dumps(raw), str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads((tmp_path / "out.json").read_text())
    local = pipeline.run(_config(CDNOW, "local", tmp_path / "local"))
    for model in ("purchase", "spend"):
        ours = getattr(local, model).params_
        for name, value in ours.items():
            assert out["params"][model][name] == pytest.approx(value, rel=1e-8), name
    written = read_by_tier(Path(out["folder"]) / CUSTOMERS_BY_TIER)
    a = local.customers
    assert written["customer_id"].tolist() == a["customer_id"].tolist()
    for column in a.columns:
        if a[column].dtype.kind == "f":
            np.testing.assert_allclose(written[column].to_numpy(float), a[column].to_numpy(float), rtol=1e-9)
        else:
            assert written[column].astype(str).tolist() == a[column].astype(str).tolist(), column
    saved = sorted(p for p in (tmp_path / "m").rglob("customer_tiers.parquet"))
    assert len(saved) == 1 and pd.read_parquet(saved[0]).sort_values("customer_id")["tier"].tolist() == (
        a.sort_values("customer_id")["tier"].tolist()
    )


@pytest.mark.parametrize("zone", [None, "Asia/Tokyo"])
def test_parquet_timestamps_read_on_spark_as_locally_whatever_the_sessions_zone(spark, tmp_path, zone):
    """A Parquet log whose dates are timestamps (naive, and instants in UTC), read by a session whose own
    time zone is not UTC (a caller's): the same RFM rows as locally, with and without data.timezone."""
    from clv.spark.session import session_conf

    rng = np.random.default_rng(3)
    n = 2_000
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24 * 60, n), unit="m")
    log = pd.DataFrame({"customer_id": rng.integers(0, 200, n).astype(str), "date": stamps, "amount": 10.0 + n % 7})
    log.to_parquet(tmp_path / "naive.parquet", index=False)
    log.assign(date=stamps.tz_localize("UTC")).to_parquet(tmp_path / "aware.parquet", index=False)
    for name in ("naive", "aware"):
        raw = {
            "name": "stamps",
            "data": {"source": str(tmp_path / f"{name}.parquet"), "currency": "USD", "timezone": zone},
            "time": {"unit": "W", "calibration_end": "2024-09-30", "holdout_end": "2024-12-31"},
        }
        local = pipeline.prepare_data(_config(raw, "local"))
        with session_conf(spark, {"spark.sql.session.timeZone": "America/Los_Angeles"}):
            on_spark = pipeline.prepare_data(_config(raw, "spark"))
        _same_rfm(local, on_spark)
        assert on_spark.report.aware_timestamps == local.report.aware_timestamps == (name == "aware")
