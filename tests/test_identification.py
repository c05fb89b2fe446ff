"""Fits that say when the data cannot tell: the no-dropout limit, the bounded search, Gamma-Gamma's q -> 1, the
spend outliers, and how the run, the files and the leaderboard carry the finding."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from typer.testing import CliRunner

from clv import BetaGeoModel, ConvergenceWarning, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from clv.cli import app
from clv.config import parse_config
from clv.model import DROPOUT, MEAN_SPEND, NOT_IDENTIFIED
from clv.purchase import nbd
from clv.spend.outliers import find_spend_outliers, spend_fit_frame, spend_value_frame
from clv.tiers import UNIDENTIFIED_SEGMENTS

from .conftest import SHARED

DROPOUT_MODELS = (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel)


def no_dropout_rfm(n: int = 1500, seed: int = 5) -> pd.DataFrame:
    """Customers who never leave: Poisson purchases at gamma-distributed rates (r = 0.8, alpha = 4 weeks) over
    their whole observation window, with the window's length spread as a cohort's would be (20-40 weeks)."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(20.0, 40.0, n)
    lam = rng.gamma(0.8, 1.0 / 4.0, n)
    x = rng.poisson(lam * T)
    # given x purchases in (0, T] of a Poisson process, the last is T times the max of x uniforms
    recency = np.where(x > 0, T * rng.random(n) ** (1.0 / np.maximum(x, 1)), 0.0)
    return pd.DataFrame({"customer_id": [f"c{i:05d}" for i in range(n)], "frequency": x, "recency": recency, "T": T})


def test_nbd_likelihood_is_the_gamma_poisson_integral():
    # L = integral of lambda^x exp(-lambda T) over lambda ~ Gamma(r, alpha): by quadrature, independently of the
    # closed form
    r, alpha = 0.7, 3.5
    x = np.array([0.0, 1.0, 4.0, 12.0])
    T = np.array([10.0, 30.0, 25.0, 38.0])
    ll, _ = nbd.loglik_grad(np.array([r, alpha]), x, T)
    for xi, Ti, value in zip(x, T, ll, strict=True):
        integral, _ = integrate.quad(
            lambda lam, xi=xi, Ti=Ti: lam**xi * np.exp(-lam * Ti) * stats.gamma.pdf(lam, r, scale=1 / alpha),
            0,
            np.inf,
        )
        assert value == pytest.approx(np.log(integral), rel=1e-8)


def test_nbd_gradient_is_exact():
    p = np.array([0.6, 2.5])
    x, T = np.array([0.0, 3.0, 9.0]), np.array([12.0, 20.0, 30.0])
    _, grad = nbd.loglik_grad(p, x, T)
    for j in range(2):
        h = np.zeros(2)
        h[j] = 1e-6
        numeric = (nbd.loglik_grad(p + h, x, T)[0] - nbd.loglik_grad(p - h, x, T)[0]) / 2e-6
        np.testing.assert_allclose(grad[:, j], numeric, rtol=1e-6)


def test_the_dropout_models_tend_to_the_nbd(cdnow_rfm):
    # BG/NBD as a -> 0 (FHL 2005, Eq. 6, first term) and Pareto/NBD as s -> 0 (the note's Eq. 22) are the NBD
    rows = cdnow_rfm.head(300)
    x, T = rows["frequency"].to_numpy(float), rows["T"].to_numpy(float)
    limit = nbd.loglik_grad(np.array([0.4, 10.0]), x, T)[0]
    bg = BetaGeoModel.from_params(r=0.4, alpha=10.0, a=1e-12, b=1.0).loglik(rows)
    pnbd = ParetoNBDModel.from_params(r=0.4, alpha=10.0, s=1e-12, beta=5.0).loglik(rows)
    np.testing.assert_allclose(bg, limit, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pnbd, limit, rtol=1e-9, atol=1e-9)


def test_healthy_data_identifies_dropout(cdnow_rfm):
    model = BetaGeoModel().fit(cdnow_rfm)
    assert model.not_identified_ == {}
    # the dropout is plain in CDNOW: BG/NBD beats the NBD by far more than the 3.84 of the test
    assert 2 * (model.log_likelihood_ - model.no_dropout_log_likelihood_) > 300


@pytest.mark.parametrize("cls", DROPOUT_MODELS)
def test_no_dropout_data_is_flagged_the_same_way_from_python(cls):
    rfm = no_dropout_rfm()
    calls = 0
    original = cls._loglik_grad

    def counted(self, *args):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return original(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, "_loglik_grad", counted)
        with pytest.warns(ConvergenceWarning, match="the data show almost no dropout") as caught:
            model = cls().fit(rfm)
    sentence = model.not_identified_[DROPOUT]
    assert "churn probabilities are not identifiable" in sentence
    assert any(str(w.message) == sentence for w in caught)
    assert not re.search(r"\d[eE][+-]?\d", sentence), f"scientific notation in: {sentence}"  # a person reads it
    # one sentence replaces the generic boundary / standard-error warnings
    assert not any("boundary of the search" in str(w.message) for w in caught)
    # the search is bounded: 4 starts x 20 scouting iterations, one followed run, at most a few Newton steps;
    # L-BFGS makes a few evaluations an iteration. Far fewer than the unbounded drift of old (thousands).
    assert calls < 600
    # everyone is "alive": the model is at the no-dropout limit
    assert model.probability_alive(rfm).min() > 0.99


def test_pareto_nbd_search_stays_inside_its_bounds():
    model = ParetoNBDModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(no_dropout_rfm(800, seed=2))
    # alpha and beta are searched up to 1,000 x max(T) / 10
    assert model.params_["beta"] <= 1e3 * model.time_scale_ * (1 + 1e-9)
    assert model.params_["alpha"] <= 1e3 * model.time_scale_ * (1 + 1e-9)


def test_gamma_gamma_q_near_one_is_not_identified():
    from clv.mle import MleResult
    from clv.model import FitResult

    model = GammaGammaModel.from_params(p=2.0, q=1.3, v=10.0)
    found = MleResult(np.array([2.0, 1.3, 10.0]), -1.0, None, None, True, 0.0, False, "")
    params = {"p": 2.0, "q": 1.3, "v": 10.0}

    def finding(q: float, se_q: float | None) -> dict[str, str]:
        se = None if se_q is None else {"p": 0.1, "q": se_q, "v": 1.0}
        return model._identification(found, FitResult(params=params | {"q": q}, standard_errors=se))

    assert MEAN_SPEND in finding(1.3, 0.2)  # q - 1 = 0.3 < 2 x 0.2
    assert finding(1.3, 0.1) == {}  # q - 1 = 0.3 > 2 x 0.1
    assert finding(1.3, None) == {}  # no standard errors: q under 1.1 cannot be told from 1
    assert "cannot be told from 1" in finding(1.05, None)[MEAN_SPEND]
    assert "<= 1" in finding(0.9, 0.01)[MEAN_SPEND]


def spend_frame() -> pd.DataFrame:
    # repeat buyers' mean spends 10, 20, 30, 40, 50 (median 30) and two wholesale buyers at 400 and 1,000
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e", "w1", "w2", "z"],
            "frequency": [1, 2, 1, 3, 1, 2, 1, 0],
            "recency": [5.0, 8.0, 3.0, 9.0, 4.0, 9.0, 2.0, 0.0],
            "T": [10.0] * 8,
            "monetary_value": [10.0, 20.0, 30.0, 40.0, 50.0, 400.0, 1000.0, 0.0],
        }
    )


def test_spend_outlier_threshold_is_strictly_above():
    frame = spend_frame()
    found = find_spend_outliers(frame, "exclude", 10.0)
    # median of the seven buyers' means (10, 20, 30, 40, 50, 400, 1000) is 40: threshold 400, only w2 above it
    assert found.median_spend == 40.0
    assert found.customers == 1
    assert found.first_ids == "w2"
    assert "median mean spend of 40.00 EUR per purchase (up to 1,000.00" in found.sentence("EUR")
    assert "40.00 per purchase" in found.sentence()  # no currency known: the data's unit, unnamed
    assert found.share_of_revenue == pytest.approx(1000 / (10 + 40 + 30 + 120 + 50 + 800 + 1000))
    fit = spend_fit_frame(frame, found)
    assert "w2" not in set(fit["customer_id"]) and len(fit) == len(frame) - 1
    assert spend_value_frame(frame, found) is frame  # exclude predicts with the customers' own spend
    capped = spend_value_frame(frame, find_spend_outliers(frame, "cap", 10.0))
    assert capped.loc[capped["customer_id"] == "w2", "monetary_value"].item() == 400.0
    assert frame.loc[frame["customer_id"] == "w2", "monetary_value"].item() == 1000.0  # input untouched


def test_spend_outlier_config_is_validated():
    base = {"name": "x", "data": {"source": "cdnow"}, "time": {"calibration_end": "1997-09-30"}}
    from clv.errors import ConfigError

    with pytest.raises(ConfigError, match="spend_outliers"):
        parse_config(base | {"model": {"spend_outliers": "trim"}})
    with pytest.raises(ConfigError, match="spend_outlier_multiple"):
        parse_config(base | {"model": {"spend_outlier_multiple": 1.0}})


def test_run_marks_segments_and_files_when_dropout_is_not_identified(tmp_path):
    from clv.pipeline import run, save_fitted
    from clv.report import write_outputs

    rfm = no_dropout_rfm(1200, seed=9)
    rng = np.random.default_rng(9)
    rfm["monetary_value"] = np.where(rfm["frequency"] > 0, rng.gamma(4.0, 10.0, len(rfm)), 0.0)
    source = tmp_path / "rfm.csv"
    rfm.to_csv(source, index=False)
    config = parse_config(
        {
            "name": "flat",
            "data": {"source": str(source)},
            "time": {"calibration_end": "2020-12-31"},
            "output": {"reports_dir": str(tmp_path / "reports"), "models_dir": str(tmp_path / "models")},
        }
    )
    result = run(config)
    model_dir = save_fitted(result)
    out = write_outputs(result, model_dir)
    from clv.pipeline import load_fitted

    assert load_fitted(model_dir).purchase.not_identified_ == result.fitted.purchase.not_identified_
    sentence = result.fitted.purchase.not_identified_[DROPOUT]
    assert sentence in result.warnings
    assert set(result.customers["segment"]) <= set(UNIDENTIFIED_SEGMENTS)
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary["churn_risk"][k] for k in ("identified", "reason")} == {"identified": False, "reason": sentence}
    assert summary["purchase_model"]["not_identified"] == {DROPOUT: sentence}
    assert sentence in summary["warnings"]
    html = (out / "report.html").read_text()
    assert "High value, slipping away: not meaningful" in html
    assert "nobody is listed as slipping away" in html  # the purchase probability is still shown, not segmented on
    assert pd.read_csv(out / "at_risk.csv").empty


# --- the real retail export (../shared/data/onlineretail.csv.gz): BG/NBD and Pareto/NBD run to the no-dropout limit

ROOT = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = SHARED / "onlineretail.csv.gz"


def _retail_overrides(tmp_path: Path) -> list[str]:
    if not ONLINE_RETAIL.exists():
        pytest.skip("../shared/data/onlineretail.csv.gz is absent")
    return [
        f"data.source={ONLINE_RETAIL}",
        f"output.reports_dir={tmp_path / 'reports'}",
        f"output.models_dir={tmp_path / 'models'}",
    ]


def test_online_retail_run_says_dropout_is_not_identified(tmp_path):
    args = ["run", str(ROOT / "configs" / "onlineretail.yaml")]
    for item in _retail_overrides(tmp_path):
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "reports" / "onlineretail" / "summary.json").read_text())
    reason = summary["churn_risk"]["reason"]
    assert summary["churn_risk"]["identified"] is False
    assert reason.startswith("BetaGeoModel: the data show almost no dropout")
    assert reason in result.output  # the CLI prints the same sentence
    assert "high value, slipping away" in result.output and "not meaningful" in result.output
    assert set(summary["segments"]) <= set(UNIDENTIFIED_SEGMENTS)
    # the wholesale buyers are reported, with their share of revenue
    outliers = summary["spend_outliers"]
    assert outliers["customers"] > 0 and 0 < outliers["share_of_revenue"] < 1
    assert "spend outliers:" in result.output


def test_online_retail_evaluation_ends_and_ranks_flagged_fits(tmp_path):
    from clv.config import load_config
    from clv.evaluate.job import evaluate

    config = load_config(ROOT / "configs" / "onlineretail.yaml", _retail_overrides(tmp_path))
    ev = evaluate(config)  # Pareto/NBD used to run for hours here; the search now stops at the no-dropout limit
    board = ev.leaderboard
    assert set(board["purchase"]) == {"bgnbd", "pareto_nbd", "mbgnbd"}
    assert (board["not_identified"] == NOT_IDENTIFIED[DROPOUT]).all()
    assert ev.best["not_identified"] == NOT_IDENTIFIED[DROPOUT]
    for result in ev.results:
        assert DROPOUT in result.fitted.purchase.not_identified_


def test_best_fit_within_half_a_percent_is_called_a_tie():
    from clv.evaluate.comparison import best_candidate

    board = pd.DataFrame({"candidate": ["x", "y", "z"], "mae_purchases": [0.8051, 0.8053, 0.9]})
    assert best_candidate(board, "mae_purchases")["tied_with"] == "y"
    board["mae_purchases"] = [0.70, 0.80, 0.9]
    assert best_candidate(board, "mae_purchases")["tied_with"] is None
