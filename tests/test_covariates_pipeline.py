"""Covariates end to end from a config (issue 13): the covariates section, the customer table and its join, the
pipeline's fits and predictions with covariates, scoring a saved model, the store, and `clv evaluate`'s
candidates. CLVTools' apparel values (tests/reference_values.py) are the end-to-end reference."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clv.cli import app
from clv.config import load_config, parse_config
from clv.data.customers import join_covariates, read_customer_table
from clv.errors import ClvWarning, ConfigError, DataError
from clv.evaluate.comparison import candidates, covariate_notes
from clv.evaluate.tracking import unconditional_cumulative
from clv.pipeline import fit_models, load_fitted, prepare_data, run, save_fitted
from clv.purchase import ParetoNBDModel
from tests import reference_values as ref
from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
MINIMAL = {"name": "t", "data": {"source": "cdnow"}, "time": {"calibration_end": "1997-09-30"}}
APPAREL_TX = SHARED / "clvtools_apparelTrans.csv"
APPAREL_COV = SHARED / "clvtools_apparelStaticCov.csv"


def _with(covariates: dict[str, Any], **top: Any) -> dict[str, Any]:
    return MINIMAL | {"covariates": covariates} | top


# ---------- the config section ----------


def test_the_section_parses_with_its_defaults():
    cfg = parse_config(_with({"source": "c.csv", "purchase": ["channel"], "dropout": ["channel", "age"]}))
    spec = cfg.covariates
    assert spec is not None and spec.id_column is None and not spec.standardise
    assert spec.penalty.purchase == spec.penalty.dropout == spec.penalty.spend == 0.0
    assert spec.columns == ["channel", "age"]
    assert spec.processes == {"purchase": ["channel"], "dropout": ["channel", "age"]}
    assert parse_config(MINIMAL).covariates is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"source": "c.csv", "purchase": ["a"], "colour": 1}, r"covariates\.colour: unknown key"),
        ({"source": "c.csv"}, "name at least one column"),
        ({"source": "c.csv", "purchase": ["a", "a"]}, r"covariates\.purchase repeats 'a'"),
        ({"source": "c.csv", "purchase": ["a"], "constrained": ["a"]}, r"listed in covariates\.purchase and"),
        ({"source": "c.csv", "purchase": ["a"], "categorical": {"b": None}}, r"covariates\.categorical names 'b'"),
        ({"source": "c.csv", "purchase": ["a"], "fill": {"b": 0}}, r"covariates\.fill names 'b'"),
        ({"source": "c.csv", "purchase": ["frequency"]}, "column of the RFM summary"),
        ({"source": "c.csv", "purchase": ["a"], "penalty": {"purchase": -1}}, r"penalty\.purchase"),
        ({"source": "c.csv", "purchase": ["a"], "id_column": "a"}, "id column 'a' cannot be a covariate"),
    ],
)
def test_bad_sections_are_config_errors_naming_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_with(section))


def test_spend_covariates_need_amounts():
    raw = _with({"source": "c.csv", "spend": ["a"]})
    raw["data"] = {"source": "cdnow", "amount": None}
    with pytest.raises(ConfigError, match=r"covariates\.spend needs amounts"):
        parse_config(raw)


def test_a_process_the_model_lacks_is_a_config_error_naming_it(monkeypatch):
    """Every configurable purchase model has both processes today, so one without a dropout process (as bgbb's
    covariates would be) is made by hiding Pareto/NBD's."""
    monkeypatch.setattr(ParetoNBDModel, "covariate_effects", {"purchase": (("alpha", -1.0),)})
    raw = _with({"source": "c.csv", "purchase": ["a"], "dropout": ["a"]}, model={"purchase": "pareto_nbd"})
    with pytest.raises(ConfigError, match=r"covariates\.dropout \(a\): pareto_nbd has no dropout process"):
        parse_config(raw)
    raw["model"] = {"purchase": "auto"}  # a candidate of auto may be chosen, and is then fitted with them
    with pytest.raises(ConfigError, match="pareto_nbd has no dropout process"):
        parse_config(raw)
    # `clv evaluate` compares a model without processes for the covariates without them, and says so
    raw["model"] = {"purchase": "bgnbd"}
    config = parse_config(raw)
    keys = [c.key for c in candidates(config)]
    assert "pareto_nbd_mle" in keys and "pareto_nbd_covariates_mle" not in keys and "bgnbd_covariates_mle" in keys
    assert covariate_notes(config) == ["pareto_nbd: no process for the covariates, compared without them"]


def test_the_apparel_config_validates():
    cfg = load_config(ROOT / "configs" / "apparel_covariates.yaml")
    assert cfg.covariates is not None and cfg.covariates.processes == {
        "purchase": ["Gender", "Channel"],
        "dropout": ["Gender", "Channel"],
    }
    assert cfg.time.calibration_end == dt.date(2006, 12, 31) and cfg.time.unit == "W"


# ---------- the customer table ----------


def _cdnow_ids() -> list[str]:
    return [str(i) for i in range(1, 2358)]


def _table(path: Path, ids: list[str], seed: int = 3, **columns: Any) -> Path:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"cid": ids})
    frame["channel"] = rng.choice(["web", "shop"], size=len(ids))
    frame["age"] = rng.choice([20, 30, 40, 50, 60], size=len(ids))
    for name, values in columns.items():
        frame[name] = values
    frame.to_csv(path, index=False)
    return path


def _config(tmp_path: Path, table: Path, covariates: dict[str, Any] | None = None, **sections: Any) -> Path:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "cdnow.yaml").read_text())
    raw["output"] = {"reports_dir": str(tmp_path / "reports"), "models_dir": str(tmp_path / "models")}
    raw["covariates"] = {"source": str(table), "id_column": "cid", "purchase": ["channel"], "dropout": ["channel"]}
    raw["covariates"] |= covariates or {}
    raw |= sections
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_join_keeps_the_summary_s_rows_and_order_and_counts_extra_customers(tmp_path):
    table = _table(tmp_path / "c.csv", [*reversed(_cdnow_ids()), "x1", "x2"])
    step = prepare_data(load_config(_config(tmp_path, table)))
    plain = prepare_data(load_config(ROOT / "configs" / "cdnow.yaml"))
    frame = step.rfm.frame
    assert frame["customer_id"].tolist() == plain.rfm.frame["customer_id"].tolist()
    pd.testing.assert_frame_equal(frame[plain.rfm.frame.columns], plain.rfm.frame)
    written = pd.read_csv(table, dtype={"cid": str}).set_index("cid")
    assert (frame["channel"].to_numpy() == written.loc[frame["customer_id"], "channel"].to_numpy()).all()
    assert step.customers is not None
    assert (step.customers.customers, step.customers.matched, step.customers.not_in_summary) == (2359, 2357, 2)
    assert step.customers.to_dict()["columns"] == ["channel"]
    shown = runner.invoke(app, ["data", "summarize", str(_config(tmp_path, table)), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["customer_table"]["not_in_summary"] == 2


def test_ids_are_text_as_written_and_trimmed_as_the_log_s():
    rfm = pd.DataFrame({"customer_id": ["007", "7", "8"], "frequency": [1, 0, 2]})
    spec = parse_config(_with({"source": "c.csv", "purchase": ["g"]})).covariates
    assert spec is not None
    table = pd.DataFrame({"customer_id": ["7", "007", "8"], "g": ["a", "b", "c"]})
    joined, _, _ = join_covariates(rfm, table, spec, "c.csv")
    assert joined["g"].tolist() == ["b", "a", "c"]  # 007 and 7 are two customers


@pytest.mark.parametrize("trim", [False, True])
def test_padded_ids_of_the_table_follow_data_trim_ids(tmp_path, trim):
    path = tmp_path / "c.csv"
    path.write_text("id,g\n 7 ,1\n8,0\n")
    table = read_customer_table(str(path), "id", ["g"], trim_ids=trim)
    assert table["customer_id"].tolist() == (["7", "8"] if trim else [" 7 ", "8"])


def test_repeated_ids_are_an_error_naming_them(tmp_path):
    ids = _cdnow_ids()
    table = _table(tmp_path / "c.csv", [*ids, "17", "3", "17"])
    result = runner.invoke(app, ["run", str(_config(tmp_path, table)), "-q"])
    assert result.exit_code == 1, result.output
    assert "2 customer id(s) appear more than once in the customer table (first: 3, 17)" in result.output


def test_customers_missing_from_the_table_are_an_error_with_count_and_first_ids(tmp_path):
    ids = _cdnow_ids()
    table = _table(tmp_path / "c.csv", [i for i in ids if i not in {"5", "6", "700"}])
    result = runner.invoke(app, ["run", str(_config(tmp_path, table)), "-q"])
    assert result.exit_code == 1, result.output
    assert "3 customer(s) of the RFM summary are not in the customer table" in result.output
    assert "(first ids: 5, 6, 700)" in " ".join(result.output.split())
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").rglob("model.json"))


def test_missing_customers_take_the_fill_values_loudly(tmp_path):
    ids = _cdnow_ids()
    table = _table(tmp_path / "c.csv", [i for i in ids if i not in {"5", "6", "700"}])
    config = load_config(_config(tmp_path, table, {"fill": {"channel": "web"}}))
    step = prepare_data(config)
    frame = step.rfm.frame.set_index("customer_id")
    assert frame.loc[["5", "6", "700"], "channel"].tolist() == ["web"] * 3
    assert step.customers is not None and step.customers.filled_customers == 3
    assert any("3 customer(s) of the RFM summary are not in the customer table" in n for n in step.notes)


def test_blank_cells_are_an_error_or_take_their_fill_value(tmp_path):
    ids = _cdnow_ids()
    ages = np.arange(len(ids), dtype=float) % 60 + 18
    ages[[9, 99]] = np.nan
    table = _table(tmp_path / "c.csv", ids, years=ages)
    with pytest.raises(DataError, match=r"covariate 'years' is blank for 2 customer\(s\) \(first ids: 10, 100\)"):
        prepare_data(load_config(_config(tmp_path, table, {"purchase": ["years"], "dropout": []})))
    config = load_config(_config(tmp_path, table, {"purchase": ["years"], "dropout": [], "fill": {"years": 40}}))
    step = prepare_data(config)
    assert step.rfm.frame.set_index("customer_id").loc[["10", "100"], "years"].tolist() == [40.0, 40.0]
    assert step.rfm.frame["years"].dtype == float


def test_a_column_mixing_numbers_and_text_is_refused_unless_categorical(tmp_path):
    ids = _cdnow_ids()
    region = np.array([str(i % 3) for i in range(len(ids))], dtype=object)
    region[4] = "north"
    table = _table(tmp_path / "c.csv", ids, region=region)
    with pytest.raises(DataError, match=r"'region' mixes numbers and text: 1 customer\(s\) have text \('north'"):
        prepare_data(load_config(_config(tmp_path, table, {"purchase": ["region"], "dropout": []})))
    config = load_config(
        _config(tmp_path, table, {"purchase": ["region"], "dropout": [], "categorical": {"region": "0"}})
    )
    assert set(prepare_data(config).rfm.frame["region"]) == {"0", "1", "2", "north"}


def test_a_missing_column_or_file_is_a_data_error(tmp_path):
    table = _table(tmp_path / "c.csv", _cdnow_ids())
    result = runner.invoke(app, ["run", str(_config(tmp_path, table, {"purchase": ["colour"]})), "-q"])
    assert result.exit_code == 1 and "column(s) not found: 'colour'" in result.output
    result = runner.invoke(app, ["run", str(_config(tmp_path, tmp_path / "none.csv")), "-q"])
    assert result.exit_code == 1 and "no such file" in result.output


def test_rfm_source_reads_the_columns_of_an_rfm_table(tmp_path):
    rfm = prepare_data(load_config(ROOT / "configs" / "cdnow.yaml")).rfm.frame
    rng = np.random.default_rng(8)
    written = rfm.assign(channel=rng.choice(["a", "b"], len(rfm))).sample(frac=1.0, random_state=1)
    written.to_parquet(tmp_path / "rfm.parquet")
    raw = MINIMAL | {
        "data": {"source": str(tmp_path / "rfm.parquet")},
        "covariates": {"source": "rfm", "spend": ["channel"]},
    }
    step = prepare_data(parse_config(raw))
    assert step.rfm.frame["channel"].tolist() == written["channel"].tolist()  # the table's own order and values
    with pytest.raises(ConfigError, match=r"data\.source 'cdnow' is a transaction log"):
        prepare_data(parse_config(MINIMAL | {"covariates": {"source": "rfm", "spend": ["channel"]}}))


# ---------- fits, predictions, scoring and the store ----------


@pytest.fixture(scope="module")
def covariate_run(tmp_path_factory):
    """CDNOW with a random channel and age (seeded) on every process: purchase and dropout (channel, age
    standardised) and spend (channel)."""
    folder = tmp_path_factory.mktemp("covrun")
    table = _table(folder / "c.csv", _cdnow_ids())
    extra = {"dropout": ["channel", "age"], "spend": ["channel"], "standardise": True}
    config = load_config(_config(folder, table, extra, model={"purchase": "pareto_nbd"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClvWarning)
        result = run(config)
    return folder, table, result


def test_the_fits_carry_the_configured_covariates(covariate_run):
    _, _, result = covariate_run
    purchase, spend = result.fitted.purchase, result.fitted.spend
    assert purchase.covariates_ is not None and spend is not None and spend.covariates_ is not None
    assert dict(purchase.covariates_.processes) == {"purchase": ("channel",), "dropout": ("channel", "age")}
    assert set(purchase.coefficients_["dropout"]) == {"channel[web]", "age"}
    assert purchase.covariates_.columns["age"].standardised
    assert set(spend.coefficients_["spend"]) == {"channel[web]"}
    assert {"channel", "age"} <= set(result.customers.columns)
    assert np.isfinite(result.customers.select_dtypes("number").to_numpy()).all()


def test_predictions_are_per_customer_covariates(covariate_run):
    """The run's columns equal each covariate pattern's model without covariates (`pattern_model`) applied to
    that pattern's customers alone: an independent per-group loop over the scalar predictions."""
    _, _, result = covariate_run
    purchase = result.fitted.purchase
    customers = result.customers
    P = purchase.row_params(customers)
    for params in np.unique(P, axis=0)[:25]:
        rows = np.flatnonzero((params == P).all(axis=1))
        plain = type(purchase).from_params(**dict(zip(purchase.param_names, params, strict=True)))
        group = customers.iloc[rows]
        np.testing.assert_allclose(group["p_alive"], plain.probability_alive(group), rtol=1e-12)
        np.testing.assert_allclose(
            group["expected_purchases_holdout"], plain.expected_purchases(group, 39.0), rtol=1e-10
        )


def test_a_saved_model_restores_coefficients_and_predicts_identically(covariate_run):
    _, _, result = covariate_run
    loaded = load_fitted(save_fitted(result))
    assert loaded.metadata["schema_version"] == 2
    customers = result.customers
    for fresh, back in ((result.fitted.purchase, loaded.purchase), (result.fitted.spend, loaded.spend)):
        assert back is not None and fresh is not None
        assert back.coefficients_ == fresh.coefficients_
        assert back.coefficient_standard_errors_ == fresh.coefficient_standard_errors_
        assert back.covariates_ == fresh.covariates_
    np.testing.assert_allclose(
        loaded.purchase.expected_purchases(customers, 52.0),
        result.fitted.purchase.expected_purchases(customers, 52.0),
        rtol=1e-12,
        atol=0,
    )
    np.testing.assert_allclose(
        loaded.purchase.probability_alive(customers), result.fitted.purchase.probability_alive(customers), rtol=1e-12
    )
    assert loaded.spend is not None and result.fitted.spend is not None
    np.testing.assert_allclose(
        loaded.spend.expected_spend(customers), result.fitted.spend.expected_spend(customers), rtol=1e-12, atol=0
    )


def _rehash(path: Path, edit: Any) -> None:
    """Edit model.json and give it a valid content hash again (what a careless tool could write)."""
    import hashlib

    from clv.store import _canonical

    payload = json.loads((path / "model.json").read_text())
    edit(payload)
    payload.pop("content_hash")
    payload["content_hash"] = hashlib.sha256(_canonical(payload)).hexdigest()
    (path / "model.json").write_text(json.dumps(payload))


def test_coefficients_that_do_not_fit_the_encoding_are_refused(covariate_run):
    from clv.errors import ModelFileError

    _, _, result = covariate_run
    path = save_fitted(result)
    _rehash(path, lambda p: p["purchase_model"]["coefficients"]["dropout"].pop("age"))
    with pytest.raises(ModelFileError, match="the dropout coefficients must be finite numbers for channel"):
        load_fitted(path)


def test_scoring_rereads_the_table_and_matches_the_saved_model(covariate_run):
    folder, table, result = covariate_run
    model_dir = save_fitted(result)
    extra = {"dropout": ["channel", "age"], "spend": ["channel"], "standardise": True}
    config = _config(folder, table, extra, model={"purchase": "pareto_nbd"})
    scored = runner.invoke(app, ["score", str(config), "--model", str(model_dir), "-q"])
    assert scored.exit_code == 0, scored.output
    summary = json.loads((folder / "reports" / "cdnow" / "summary.json").read_text())
    assert summary["purchase_model"]["coefficients"] == result.fitted.purchase.coefficients_


def test_an_unseen_level_at_scoring_is_a_clean_error(covariate_run):
    folder, _, result = covariate_run
    model_dir = save_fitted(result)
    ids = _cdnow_ids()
    channel = np.where(np.arange(len(ids)) % 500 == 7, "phone", "web")
    other = _table(folder / "unseen.csv", ids, channel=channel)
    extra = {"dropout": ["channel", "age"], "spend": ["channel"], "standardise": True}
    config = _config(folder, other, extra, model={"purchase": "pareto_nbd"})
    scored = runner.invoke(app, ["score", str(config), "--model", str(model_dir)])
    assert scored.exit_code == 1, scored.output
    text = " ".join(scored.output.split())
    assert "covariates do not match the model's" in text and "'phone'" in text
    assert "Traceback" not in scored.output


def test_scoring_with_other_covariate_lists_says_which_differ(covariate_run):
    folder, table, result = covariate_run
    model_dir = save_fitted(result)
    config = _config(folder, table, {"dropout": ["channel"]}, model={"purchase": "pareto_nbd"})
    scored = runner.invoke(app, ["score", str(config), "--model", str(model_dir)])
    assert scored.exit_code == 2, scored.output
    text = " ".join(scored.output.split())
    assert "the covariates differ from the model's in dropout, spend" in text
    plain = _config(folder, table, model={"purchase": "pareto_nbd"})
    raw = yaml.safe_load(plain.read_text())
    del raw["covariates"]
    plain.write_text(yaml.safe_dump(raw))
    scored = runner.invoke(app, ["score", str(plain), "--model", str(model_dir)])
    assert scored.exit_code == 2 and "differ from the model's in purchase, dropout, spend" in " ".join(
        scored.output.split()
    )


def test_old_schema_version_one_files_still_load(tmp_path):
    """A model saved before covariates (schema 1, no covariate keys) loads as a model without covariates."""
    config = load_config(
        ROOT / "configs" / "cdnow.yaml",
        [f"output.models_dir={tmp_path / 'models'}", f"output.reports_dir={tmp_path / 'reports'}"],
    )
    result = run(config)
    path = save_fitted(result)

    def to_version_one(payload: dict[str, Any]) -> None:
        for block in (payload["purchase_model"], payload["spend_model"]):
            for key in ("coefficients", "coefficient_standard_errors", "covariates"):
                block.pop(key, None)
        payload["schema_version"] = 1

    _rehash(path, to_version_one)
    loaded = load_fitted(path)
    assert loaded.metadata["schema_version"] == 1
    assert loaded.purchase.covariates_ is None and loaded.purchase.params_ == result.fitted.purchase.params_


# ---------- evaluation candidates ----------


def test_evaluation_has_each_model_with_and_without_covariates():
    raw = _with({"source": "c.csv", "purchase": ["a"]}, evaluation={"models": ["bgnbd", "pareto_nbd"]})
    labels = [c.label for c in candidates(parse_config(raw))]
    assert labels == ["bgnbd (mle)", "bgnbd + covariates (mle)", "pareto_nbd (mle)", "pareto_nbd + covariates (mle)"]
    assert [c.label for c in candidates(parse_config(MINIMAL))] == ["bgnbd (mle)", "pareto_nbd (mle)", "mbgnbd (mle)"]


# ---------- CLVTools' apparel data, end to end ----------


def _apparel_config(tmp_path: Path) -> list[str]:
    return [
        f"data.source={APPAREL_TX}",
        f"covariates.source={APPAREL_COV}",
        f"output.reports_dir={tmp_path / 'reports'}",
        f"output.models_dir={tmp_path / 'models'}",
    ]


@pytest.fixture
def apparel_paths():
    if not (APPAREL_TX.exists() and APPAREL_COV.exists()):
        pytest.skip("../shared/data is absent")


def test_apparel_run_matches_clvtools(tmp_path, apparel_paths):
    args = ["run", str(ROOT / "configs" / "apparel_covariates.yaml"), "-q"]
    for item in _apparel_config(tmp_path):
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "reports" / "apparel-covariates" / "summary.json").read_text())
    block = summary["purchase_model"]
    assert block["log_likelihood"] == pytest.approx(ref.PARETO_APPAREL_COV_LL, abs=1e-4)
    for k, v in ref.PARETO_APPAREL_COV.items():
        assert block["params"][k] == pytest.approx(v, rel=1e-3), k
    # CLVTools names them trans.* and life.*; the 0/1 columns read as numbers are one design column each
    for process, want in ref.PARETO_APPAREL_COV_COEFFICIENTS.items():
        for name, value in want.items():
            assert block["coefficients"][process][name] == pytest.approx(value, abs=1e-3), (process, name)
            assert 0.05 < block["coefficient_standard_errors"][process][name] < 0.5
    encoding = {c["name"]: c for c in block["covariates"]["columns"]}
    assert encoding["Gender"]["kind"] == "numeric" and encoding["Channel"]["kind"] == "numeric"
    loaded = load_fitted(tmp_path / "models" / "apparel-covariates")
    customers = pd.read_parquet(tmp_path / "reports" / "apparel-covariates" / "customers.parquet")
    np.testing.assert_allclose(loaded.purchase.probability_alive(customers), customers["p_alive"], rtol=1e-12)


def test_apparel_evaluation_ranks_covariate_candidates(tmp_path, apparel_paths):
    overrides = [*_apparel_config(tmp_path), "evaluation.models=[pareto_nbd]"]
    config = load_config(ROOT / "configs" / "apparel_covariates.yaml", overrides)
    from clv.evaluate.job import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClvWarning)
        evaluation = evaluate(config)
    board = evaluation.leaderboard.set_index("candidate")
    assert set(board.index) == {"pareto_nbd (mle)", "pareto_nbd + covariates (mle)"}
    assert board.loc["pareto_nbd + covariates (mle)", "parameters"] == 8
    assert board.loc["pareto_nbd + covariates (mle)", "log_likelihood"] == pytest.approx(
        ref.PARETO_APPAREL_COV_LL, abs=1e-4
    )
    assert board.loc["pareto_nbd (mle)", "log_likelihood"] == pytest.approx(ref.PARETO_APPAREL_LL, abs=1e-4)
    assert evaluation.tracking is not None
    curves = evaluation.tracking.unconditional
    assert set(curves) == {"pareto_nbd_mle", "pareto_nbd_covariates_mle"}
    # the covariate model's curve is its patterns' curves over their customers: at the calibration end it is
    # close to the calibration's repeat purchases, as the plain model's is
    actual = evaluation.tracking.actual.cumulative
    at_end = np.searchsorted(evaluation.tracking.actual.week_end, evaluation.tracking.actual.calibration_end)
    for curve in curves.values():
        assert curve[at_end] == pytest.approx(actual[at_end], rel=0.05)
    # with every coefficient 0, the per-pattern sum (first days from T) is the plain model's curve over the
    # cohort's first days as the transactions give them
    model = next(r.fitted.purchase for r in evaluation.results if r.candidate.covariates)
    zero = {p: dict.fromkeys(c, 0.0) for p, c in model.coefficients_.items()}
    flat = type(model).from_result(replace(model.fit_result, coefficients=zero))
    plain = type(model).from_params(**model.params_)
    tracking = evaluation.tracking.actual
    np.testing.assert_allclose(
        unconditional_cumulative(flat, tracking, "W", evaluation.data.rfm.frame),
        unconditional_cumulative(plain, tracking, "W"),
        rtol=1e-12,
    )


def test_fit_models_without_a_covariates_section_is_unchanged(cdnow_rfm):
    cfg = load_config(ROOT / "configs" / "cdnow.yaml")
    fitted = fit_models(cfg, cdnow_rfm)
    assert fitted.purchase.covariates_ is None and fitted.purchase.coefficients_ == {}


# ---------- model.pool_by ----------


@pytest.mark.parametrize(
    ("model", "covariates", "message"),
    [
        ({"pool_by": "region"}, {"source": "c.csv"}, "needs model.method bayes"),
        ({"pool_by": "region", "method": "bayes"}, None, "give it as covariates.source"),
        ({"pool_by": "region", "method": "bayes"}, {"source": "c.csv", "purchase": ["a"]}, "not supported"),
        ({"pool_by": "T", "method": "bayes"}, {"source": "c.csv"}, "column of the RFM summary"),
    ],
)
def test_pool_by_needs_a_bayesian_fit_and_a_customer_table(model, covariates, message):
    raw = MINIMAL | {"model": model} | ({"covariates": covariates} if covariates else {})
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_pool_by_reads_its_column_from_the_customer_table(tmp_path):
    cfg = parse_config(MINIMAL | {"model": {"pool_by": "region", "method": "bayes"}, "covariates": {"source": "c"}})
    assert cfg.model.pool_by == "region" and cfg.covariates is not None and cfg.covariates.columns == []
    rfm = pd.DataFrame({"customer_id": ["1", "2", "3"], "frequency": [0, 1, 2], "recency": [0.0, 1, 2], "T": 5.0})
    table = pd.DataFrame({"customer_id": ["1", "2"], "region": ["north", "south"]})
    with pytest.raises(DataError, match=r"1 customer\(s\) of the RFM summary are not in the customer table"):
        join_covariates(rfm, table, cfg.covariates, "c.csv", ["region"])
    table = pd.DataFrame({"customer_id": ["1", "2", "3"], "region": ["north", "south", "north"]})
    joined, _, _ = join_covariates(rfm, table, cfg.covariates, "c.csv", ["region"])
    assert joined["region"].tolist() == ["north", "south", "north"]


def test_a_reference_level_may_be_written_as_a_number():
    cfg = parse_config(
        _with(
            {"source": "c.csv", "purchase": ["Channel"], "categorical": {"Channel": 1}},
        )
    )
    assert cfg.covariates is not None and cfg.covariates.categorical["Channel"] == "1"


def test_ids_written_differently_are_said(tmp_path):
    cfg = parse_config(_with({"source": "c.csv", "purchase": ["region"]}))
    assert cfg.covariates is not None
    rfm = pd.DataFrame({"customer_id": ["1", "2"], "frequency": [0, 1], "recency": [0.0, 1.0], "T": 5.0})
    table = pd.DataFrame({"customer_id": ["0001", " 2"], "region": ["a", "b"]})
    with pytest.raises(DataError, match="2 of them are there written differently"):
        join_covariates(rfm, table, cfg.covariates, "c.csv")


def test_scoring_says_other_units_and_other_encoding_options():
    """At scoring the covariate names match, but a numeric column in other units (thousands for units) lies
    outside the fitted range, and the config asks another encoding than the model's: both are said."""
    from clv.covariates import CovariateSet
    from clv.errors import ScoringWarning
    from clv.pipeline import _warn_scoring_covariates

    fitted = pd.DataFrame({"customer_id": list("abcd"), "income": [20_000.0, 35_000, 50_000, 90_000]})
    cov = CovariateSet.learn(fitted, {"purchase": ["income"]})
    assert cov.columns["income"].low == 20_000 and cov.columns["income"].high == 90_000
    assert CovariateSet.from_dict(cov.to_dict()).columns["income"].high == 90_000
    cfg = parse_config(_with({"source": "c.csv", "purchase": ["income"]}))
    scored = fitted.assign(income=fitted["income"] / 1000)
    with pytest.warns(ScoringWarning, match=r"'income': 100% of the customers scored lie outside .*20,000 to 90,000"):
        _warn_scoring_covariates(cfg, cov, scored)
    other = parse_config(_with({"source": "c.csv", "purchase": ["income"], "standardise": True}))
    with pytest.warns(ScoringWarning, match="differs from the saved model's .numeric, as given"):
        _warn_scoring_covariates(other, cov, fitted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_scoring_covariates(cfg, cov, fitted)  # the same units and options: nothing to say
