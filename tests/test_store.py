"""Saved models: round trips, the latest pointer, and refusal of tampered or mismatched files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clv.bayes.fit import fit_posterior
from clv.config import BayesConfig, load_config
from clv.errors import ModelFileError
from clv.pipeline import load_fitted, run, save_fitted
from clv.store import load_models, resolve_model_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mle_result(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    config = load_config(
        ROOT / "configs" / "cdnow.yaml",
        [f"output.models_dir={folder / 'models'}", f"output.reports_dir={folder / 'reports'}"],
    )
    return run(config)


def test_round_trip_keeps_parameters_and_predictions(mle_result, cdnow_rfm):
    path = save_fitted(mle_result)
    loaded = load_fitted(path)
    assert loaded.purchase.params_ == mle_result.purchase.params_
    assert loaded.spend is not None and loaded.spend.params_ == mle_result.spend.params_
    assert loaded.purchase.standard_errors_ == mle_result.purchase.standard_errors_
    np.testing.assert_array_equal(
        loaded.purchase.probability_alive(cdnow_rfm), mle_result.purchase.probability_alive(cdnow_rfm)
    )
    meta = loaded.metadata
    assert meta["schema_version"] == 2 and meta["method"] == "mle" and len(meta["content_hash"]) == 64
    assert meta["data_fingerprint"]["customers"] == len(cdnow_rfm)
    assert meta["config"]["name"] == "cdnow" and "numpy" in meta["versions"]
    assert "customer_tiers.parquet" in meta["files"]
    assert not list(path.glob("*.pkl")) and not list(path.glob("*.pickle"))


def test_latest_points_at_the_newest_and_nothing_is_overwritten(mle_result):
    first = save_fitted(mle_result)
    second = save_fitted(mle_result)
    assert first != second and first.exists() and second.exists()
    assert resolve_model_dir(second.parent) == second
    assert (second.parent / "latest").read_text().strip() == second.name
    assert resolve_model_dir(second.parent / "latest") == second  # the pointer itself, as people type it


def test_an_edited_parameter_is_refused(mle_result):
    path = save_fitted(mle_result)
    file = path / "model.json"
    payload = json.loads(file.read_text())
    payload["purchase_model"]["params"]["r"] = 0.3
    file.write_text(json.dumps(payload))
    with pytest.raises(ModelFileError, match="content hash mismatch"):
        load_models(path)


def test_a_modified_side_file_is_refused(mle_result):
    path = save_fitted(mle_result)
    with (path / "customer_tiers.parquet").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(ModelFileError, match="missing or modified"):
        load_models(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.update(schema_version=99), "schema version 99"),
        (lambda p: p.update(type="something"), "not a clv model file"),
    ],
)
def test_foreign_files_are_refused(mle_result, edit, message):
    path = save_fitted(mle_result)
    file = path / "model.json"
    payload = json.loads(file.read_text())
    edit(payload)
    file.write_text(json.dumps(payload))
    with pytest.raises(ModelFileError, match=message):
        load_models(path)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="no saved model"):
        load_models(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not a readable model file"):
        load_models(tmp_path)


def test_posterior_round_trips_through_netcdf(mle_result, cdnow_rfm):
    options = BayesConfig(inference="laplace", chains=1, draws=300)
    fitted = mle_result.fitted
    posterior = fit_posterior(type(fitted.purchase)(), cdnow_rfm, options, seed=1)
    fitted.purchase_posterior = posterior
    fitted.method = "bayes"
    try:
        path = save_fitted(mle_result)
        loaded = load_fitted(path)
    finally:
        fitted.purchase_posterior, fitted.method = None, "mle"
    assert (path / "bgnbd_posterior.nc").is_file()
    assert loaded.method == "bayes" and loaded.purchase_posterior is not None
    np.testing.assert_array_equal(loaded.purchase_posterior.draws, posterior.draws)
    assert loaded.purchase_posterior.param_names == ("r", "alpha", "a", "b")
    assert loaded.purchase_posterior.diagnostics.inference == "laplace"
