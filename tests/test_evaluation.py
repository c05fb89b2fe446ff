"""`clv evaluate`: the CDNOW figures, agreement with lifetimes, tracking curves, the rolling origin, the files,
and the errors. The metric functions have their own hand-computed tests (test_evaluate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ParetoNBDFitter
from typer.testing import CliRunner

from clv.cli import app
from clv.config import load_config
from clv.evaluate.job import evaluate
from clv.evaluate.scores import by_frequency, gains_curve, score_holdout, tier_lift
from clv.report.evaluation import write_evaluation

from . import reference_values as ref
from .conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def config_file(tmp_path: Path, source: str = "cdnow.yaml") -> Path:
    text = (ROOT / "configs" / source).read_text()
    text = text.replace("reports_dir: reports", f"reports_dir: {tmp_path / 'reports'}")
    text = text.replace("models_dir: models", f"models_dir: {tmp_path / 'models'}")
    if "output:" not in text:
        text += f"output:\n  reports_dir: {tmp_path / 'reports'}\n  models_dir: {tmp_path / 'models'}\n"
    path = tmp_path / source
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def cdnow_evaluation():
    return evaluate(load_config(ROOT / "configs" / "cdnow.yaml", ["evaluation.rolling=3"]))


def _row(board: pd.DataFrame, candidate: str) -> pd.Series:
    return board.set_index("candidate").loc[candidate]


def test_cdnow_published_holdout_figures(tmp_path):
    """`clv evaluate configs/cdnow.yaml`: 1,882 actual repeat purchases in weeks 40-78; BG/NBD about 1,653,
    Pareto/NBD about 1,665 (FHL 2005); the calibration log-likelihoods as published."""
    result = runner.invoke(app, ["evaluate", str(config_file(tmp_path))])
    assert result.exit_code == 0, result.stderr
    assert "best: " in result.stdout and "1. " in result.stdout
    folder = tmp_path / "reports" / "cdnow" / "evaluation"
    board = pd.read_csv(folder / "leaderboard.csv")
    assert len(board) == 3 and list(board["rank"]) == [1, 2, 3]
    bg, pnbd = _row(board, "bgnbd (mle)"), _row(board, "pareto_nbd (mle)")
    assert (board["actual_purchases"] == ref.CDNOW_HOLDOUT_REPEATS).all()
    assert round(bg["predicted_purchases"]) == ref.BGNBD_CDNOW_HOLDOUT_PREDICTION
    assert abs(pnbd["predicted_purchases"] - ref.PARETO_CDNOW_HOLDOUT_PREDICTION) < 1.5
    assert bg["percent_error_purchases"] == pytest.approx(100 * (1653.4 - 1882) / 1882, abs=0.05)
    assert round(bg["log_likelihood"], 1) == ref.BGNBD_CDNOW_LL
    assert round(pnbd["log_likelihood"], 1) == ref.PARETO_CDNOW_LL
    assert bg["aic"] == pytest.approx(2 * 4 - 2 * bg["log_likelihood"])
    assert bg["bic"] == pytest.approx(4 * np.log(ref.CDNOW_CUSTOMERS) - 2 * bg["log_likelihood"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["best"]["candidate"] == board.loc[0, "candidate"]
    assert metrics["split"]["repeat_purchases_holdout"] == ref.CDNOW_HOLDOUT_REPEATS
    assert set(metrics["candidates"]) == {"bgnbd_mle", "pareto_nbd_mle", "mbgnbd_mle"}
    html = (folder / "evaluation.html").read_text()
    for alt in ("cumulative tracking", "weekly tracking", "by frequency", "deciles of purchases", "tier lift", "gains"):
        assert f'alt="{alt}"' in html
    for name in ("deciles.csv", "tracking.csv", "predictions.parquet"):
        assert (folder / name).is_file()


def test_best_is_the_leaderboards_minimum(cdnow_evaluation):
    board = cdnow_evaluation.leaderboard
    assert board["mae_purchases"].is_monotonic_increasing
    assert cdnow_evaluation.best["value"] == board["mae_purchases"].min()


@pytest.mark.parametrize(("fitter", "key", "names"), [
    (BetaGeoFitter, "bgnbd_mle", ("r", "alpha", "a", "b")),
    (ParetoNBDFitter, "pareto_nbd_mle", ("r", "alpha", "s", "beta")),
])  # fmt: skip
def test_metrics_agree_with_lifetimes(cdnow_evaluation, cdnow_rfm, fitter, key, names):
    """Holdout predictions from lifetimes at our parameters, scored with plain numpy, give the same metrics."""
    result = next(r for r in cdnow_evaluation.results if r.candidate.key == key)
    other = fitter()
    other.params_ = pd.Series({n: result.fitted.purchase.params_[n] for n in names})
    x, t_x, T = (cdnow_rfm[c].to_numpy() for c in ("frequency", "recency", "T"))
    predicted = np.asarray(other.conditional_expected_number_of_purchases_up_to_time(39, x, t_x, T))
    actual = cdnow_rfm["frequency_holdout"].to_numpy()
    m = result.score.metrics
    assert m["predicted_purchases"] == pytest.approx(predicted.sum(), rel=1e-6)
    assert m["mae_purchases"] == pytest.approx(np.abs(predicted - actual).mean(), rel=1e-6)
    assert m["rmse_purchases"] == pytest.approx(np.sqrt(((predicted - actual) ** 2).mean()), rel=1e-6)
    p_alive = np.asarray(other.conditional_probability_alive(x, t_x, T))
    assert m["brier_p_alive"] == pytest.approx(((p_alive - (actual > 0)) ** 2).mean(), rel=1e-6)


def test_bgnbd_p_alive_ranks_worse_than_p_purchase_on_cdnow(cdnow_evaluation):
    """BG/NBD puts P(alive) = 1 on every customer without a repeat purchase (FHL 2005, Eq. 13 with x = 0), most
    of whom buy nothing in the holdout: its P(alive) ranks holdout buyers worse than chance, while
    P(a purchase in the holdout) ranks them well. The metric must show this, not hide it."""
    m = next(r for r in cdnow_evaluation.results if r.candidate.key == "bgnbd_mle").score.metrics
    assert m["auc_p_alive"] < 0.5 < 0.7 < m["auc_p_purchase"]


def test_tracking_counts_and_model_curves(cdnow_evaluation, cdnow_rfm):
    tracking = cdnow_evaluation.tracking
    table = tracking.table(cdnow_evaluation.labels)
    sums = table.groupby("period")["actual"].sum()
    assert sums["calibration"] == ref.CDNOW_CALIBRATION_REPEATS and sums["holdout"] == ref.CDNOW_HOLDOUT_REPEATS
    assert len(table) == 78  # weeks 1-78 (FHL 2005, Fig. 2)
    result = next(r for r in cdnow_evaluation.results if r.candidate.key == "bgnbd_mle")
    other = BetaGeoFitter()
    other.params_ = pd.Series(result.fitted.purchase.params_)
    # unconditional: at the calibration end, the sum of each customer's E[X(T)] (lifetimes, independently)
    last_cal = table.index[table["period"] == "calibration"][-1]
    expected = np.asarray(other.expected_number_of_purchases_up_to_time(cdnow_rfm["T"].to_numpy())).sum()
    assert table.loc[last_cal, "bgnbd_mle_cumulative"] == pytest.approx(expected, rel=1e-9)
    # conditional: the actual calibration count plus the holdout forecast at the end
    end = table.iloc[-1]
    assert end["bgnbd_mle_conditional_cumulative"] == pytest.approx(2457 + result.score.metrics["predicted_purchases"])
    assert np.isnan(table.loc[last_cal, "bgnbd_mle_conditional_cumulative"])


def test_rolling_origin_and_stability(cdnow_evaluation):
    per_origin = cdnow_evaluation.per_origin
    assert list(dict.fromkeys(per_origin["origin"])) == ["1997-07-31", "1997-08-31", "1997-09-30"]
    assert len(per_origin) == 9 + 3 + 2  # 3 fits, the equal-weight average at 3 origins, the backtest one at 2
    main = per_origin[per_origin["origin"] == "1997-09-30"].set_index("candidate")
    board = cdnow_evaluation.leaderboard.set_index("candidate")
    assert np.allclose(main.loc[board.index, "mae_purchases"], board["mae_purchases"])
    stab = cdnow_evaluation.stability.set_index(["candidate", "metric"])
    values = per_origin.loc[per_origin["candidate"] == "bgnbd (mle)", "mae_purchases"]
    row = stab.loc[("bgnbd (mle)", "mae_purchases")]
    assert row["mean"] == pytest.approx(values.mean()) and row["sd"] == pytest.approx(values.std(ddof=1))
    assert row["origins"] == 3 and row["range"] == pytest.approx(values.max() - values.min())


def test_score_holdout_on_a_hand_computed_example():
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "frequency": [0, 1, 3, 9],
            "clv": [1.0, 2.0, 3.0, 4.0],
            "tier": ["top", "rest", "rest", "top"],
            "p_alive": [1.0, 0.5, 0.5, 0.9],
            "p_purchase": [0.1, 0.2, 0.6, 0.9],
            "predicted_purchases": [0.5, 1.0, 2.0, 4.0],
            "actual_purchases": [0.0, 2.0, 1.0, 5.0],
        }
    )
    score = score_holdout(frame, ["top", "rest"])
    m = score.metrics
    assert m["predicted_purchases"] == 7.5 and m["actual_purchases"] == 8.0
    assert m["percent_error_purchases"] == pytest.approx(-6.25)
    assert m["mae_purchases"] == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert m["value_target"] == "purchases"
    # the top tier (customers 1 and 4) made 5 of the 8 holdout purchases with half the customers: lift 1.25
    assert m["top_tier_share"] == pytest.approx(5 / 8) and m["top_tier_lift"] == pytest.approx(1.25)
    # P(alive) against bought = [0, 1, 1, 1]: positives' ranks of [1, .5, .5, .9] are 1.5, 1.5, 3 -> AUC 0
    assert m["auc_p_alive"] == pytest.approx(0.0)
    assert m["auc_p_purchase"] == pytest.approx(1.0)
    assert m["brier_p_purchase"] == pytest.approx((0.01 + 0.64 + 0.16 + 0.01) / 4)
    assert list(score.by_frequency["frequency"]) == ["0", "1", "3", "7+"]


def test_tier_lift_and_gains_by_hand():
    tiers = tier_lift(np.array(["a", "b", "b"]), np.array([3.0, 2.0, 1.0]), np.array([1.0, 0.0, 3.0]), ["a", "b"])
    assert tiers["share_of_actual"].tolist() == pytest.approx([0.25, 0.75])
    assert tiers["share_of_predicted"].tolist() == pytest.approx([0.5, 0.5])
    assert tiers["lift"].tolist() == pytest.approx([0.75, 1.125])
    gains = gains_curve(np.array([3.0, 2.0, 1.0]), np.array([1.0, 0.0, 3.0]), points=4)
    # 0, 1, 2, 3 customers by predicted value: 0, 1/4, 1/4, 1 of the outcome; the best order: 0, 3/4, 1, 1
    assert gains["model"].tolist() == pytest.approx([0, 0.25, 0.25, 1.0])
    assert gains["best"].tolist() == pytest.approx([0, 0.75, 1.0, 1.0])
    table = by_frequency(np.array([0.0, 8.0, 12.0]), np.array([1.0, 2.0, 4.0]), np.array([0.0, 3.0, 5.0]))
    assert table.set_index("frequency").loc["7+", "mean_actual"] == pytest.approx(4.0)


def test_posterior_candidate_has_interval_coverage(tmp_path):
    """A Bayesian candidate (Laplace: no sampling in the fast suite) beside the ML one."""
    config = load_config(
        ROOT / "configs" / "cdnow.yaml",
        ["evaluation.models=[bgnbd]", "evaluation.methods=[mle, bayes]", "bayes.inference=laplace",
         "bayes.prediction_draws=100", f"output.reports_dir={tmp_path}"],
    )  # fmt: skip
    ev = evaluate(config)
    folder = write_evaluation(ev)
    strict = json.loads((folder / "metrics.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert strict["candidates"]["bgnbd_bayes"]["metrics"]["coverage_purchases"] > 0.85
    board = ev.leaderboard.set_index("candidate")
    assert set(board.index) == {"bgnbd (mle)", "bgnbd (bayes)"}
    bayes = board.loc["bgnbd (bayes)"]
    assert 0.85 < bayes["coverage_purchases"] <= 1 and 0.8 < bayes["coverage_revenue"] <= 1
    assert bayes["predicted_purchases"] == pytest.approx(board.loc["bgnbd (mle)", "predicted_purchases"], rel=0.03)
    assert pd.isna(board.loc["bgnbd (mle)"].get("coverage_purchases", np.nan))


def test_evaluate_needs_a_holdout(tmp_path):
    result = runner.invoke(app, ["evaluate", str(config_file(tmp_path)), "--set", "time.holdout_end=null"])
    assert result.exit_code == 2
    assert "time.holdout_end is not set" in result.stderr and "hint:" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "bgnbd,nope"], "evaluation.models.1"),
    (["--rank-by", "speed"], "evaluation.rank_by"),
    (["--origins", "1998-01-31"], "the latest origin is 1997-09-30"),
    (["--origins", "1997-06-30", "--rolling", "3"], "not both"),
])  # fmt: skip
def test_bad_evaluate_options_exit_2(tmp_path, args, message):
    result = runner.invoke(app, ["evaluate", str(config_file(tmp_path)), *args])
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_revenue_criterion_needs_amounts(tmp_path):
    result = runner.invoke(
        app, ["evaluate", str(config_file(tmp_path)), "--set", "data.amount=null", "--rank-by", "mae_revenue"]
    )
    assert result.exit_code == 2 and "needs amounts" in result.stderr


def test_run_keeps_the_evaluation_folder(tmp_path):
    config = config_file(tmp_path)
    assert runner.invoke(app, ["evaluate", str(config), "--models", "bgnbd", "-q"]).exit_code == 0
    assert runner.invoke(app, ["run", str(config), "-q"]).exit_code == 0
    folder = tmp_path / "reports" / "cdnow"
    assert (folder / "evaluation" / "metrics.json").is_file() and (folder / "report.html").is_file()


def test_rfm_table_source_evaluates_without_tracking(tmp_path, cdnow_rfm):
    table = tmp_path / "rfm.csv"
    cdnow_rfm.to_csv(table, index=False)
    config = config_file(tmp_path)
    args = ["evaluate", str(config), "--set", f"data.source={table}", "--models", "bgnbd", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "reports" / "cdnow" / "evaluation"
    assert not (folder / "tracking.csv").exists()
    assert "need a transaction log" in (folder / "evaluation.html").read_text()
    board = pd.read_csv(folder / "leaderboard.csv")
    assert round(board.loc[0, "predicted_purchases"]) == ref.BGNBD_CDNOW_HOLDOUT_PREDICTION
    refused = runner.invoke(app, [*args, "--rolling", "2"])
    assert refused.exit_code == 2 and "needs a transaction log" in refused.stderr
    cdnow_rfm.drop(columns=["frequency_holdout", "monetary_value_holdout"]).to_csv(table, index=False)
    no_holdout = runner.invoke(app, args)
    assert no_holdout.exit_code == 1 and "needs a frequency_holdout column" in no_holdout.stderr
    cdnow_rfm.drop(columns=["monetary_value_holdout"]).to_csv(table, index=False)
    purchases_only = runner.invoke(app, args)
    assert purchases_only.exit_code == 0, purchases_only.stderr
    assert "predicted_revenue" not in pd.read_csv(folder / "leaderboard.csv")


@pytest.mark.skipif(not (SHARED / "btydplus_groceryElog.csv").exists(), reason="../shared/data is absent")
def test_grocery_leaderboard(tmp_path):
    """The grocery data of the README's second leaderboard: the holdout counts from the raw file, independently."""
    config = config_file(tmp_path, "grocery.yaml")
    text = config.read_text().replace(
        "../shared/data/btydplus_groceryElog.csv", str(SHARED / "btydplus_groceryElog.csv")
    )
    config.write_text(text)
    result = runner.invoke(app, ["evaluate", str(config)])
    assert result.exit_code == 0, result.stderr
    board = pd.read_csv(tmp_path / "reports" / "grocery" / "evaluation" / "leaderboard.csv")
    raw = pd.read_csv(SHARED / "btydplus_groceryElog.csv", parse_dates=["date"]).drop_duplicates()
    first = raw.groupby("cust")["date"].transform("min")
    cohort = raw[first <= "2006-12-31"]
    holdout = cohort[(cohort["date"] > "2006-12-31") & (cohort["date"] <= "2007-12-30")]
    assert (board["actual_purchases"] == len(holdout)).all()
    assert len(board) == 3 and "predicted_revenue" not in board
    assert board["gini_value"].between(0.5, 1).all()


def test_every_rank_criterion_ranks(cdnow_evaluation):
    """Each criterion the config accepts orders the leaderboard by its value and names its best."""
    from clv.evaluate.comparison import best_candidate, leaderboard
    from clv.metric_registry import RANK_CRITERIA

    for criterion, higher in RANK_CRITERIA.items():
        board = leaderboard(cdnow_evaluation.results, criterion)
        values = board[criterion].astype(float)
        assert values.is_monotonic_decreasing if higher else values.is_monotonic_increasing, criterion
        assert best_candidate(board, criterion)["value"] == (values.max() if higher else values.min())
    board = leaderboard(cdnow_evaluation.results, "abs_percent_error_purchases")
    assert board.loc[0, "candidate"] == "pareto_nbd (mle)"  # -11.5% beats BG/NBD's -12.1%


def test_data_without_amounts_scores_purchases_with_a_rolling_origin(tmp_path):
    """No amounts: no spend model, no revenue columns; CLV is in purchases and is scored against them."""
    config = config_file(tmp_path)
    args = ["evaluate", str(config), "--set", "data.amount=null", "--models", "bgnbd,mbgnbd", "--rolling", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "rolling origin, 2 calibration ends" in result.stdout
    folder = tmp_path / "reports" / "cdnow" / "evaluation"
    board = pd.read_csv(folder / "leaderboard.csv")
    assert not [c for c in board.columns if "revenue" in c]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["candidates"]["bgnbd_mle"]["metrics"]["value_target"] == "purchases"
    assert metrics["rolling"]["origins"] == ["1997-08-31", "1997-09-30"]
    rolling = pd.read_csv(folder / "rolling.csv")
    fits = rolling[~rolling["candidate"].str.endswith("average")]
    assert len(fits) == 4 and set(fits["candidate"]) == {"bgnbd (mle)", "mbgnbd (mle)"}
    assert len(rolling) == 4 + 2 + 1  # and the combinations (the backtest-weighted one from the second origin)
    assert (folder / "rolling_stability.csv").is_file()
    assert 'alt="rolling origin"' in (folder / "evaluation.html").read_text()


def test_the_evaluation_values_over_the_runs_horizon(cdnow_evaluation):
    """`clv evaluate` ranks by the CLV `clv run` computes: the same horizon (12 calendar months from the
    calibration end, 365 days), hence the demo's total."""
    bg = next(r for r in cdnow_evaluation.results if r.candidate.label == "bgnbd (mle)")
    assert bg.predictions["clv"].sum() == pytest.approx(72656.08, abs=0.01)


def test_progress_says_which_candidates_will_be_slow_before_they_start(monkeypatch):
    """A progress line per candidate; one expected to take long on the data's unique histories says so in its
    line, which the CLI shows while it runs (and with its elapsed time when done)."""
    from clv.evaluate import job

    config = load_config(
        ROOT / "configs" / "cdnow.yaml",
        ["evaluation.models=[bgnbd]", "evaluation.methods=[mle, bayes]", "bayes.inference=nuts"],
    )
    mle, bayes = job.candidates(config)
    assert job._slow_note(config, mle, 1_016, 2_357) == ""  # CDNOW: seconds
    note = job._slow_note(config, bayes, 100_000, 100_000)  # NUTS on 100,000 histories: hours on the NumPy likelihood
    assert note.startswith(" (expected to take about ") and note.endswith(" min on 100,000 unique histories)")
    steps: list[str] = []
    monkeypatch.setattr(job, "_run_candidate", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        evaluate(config, progress=steps.append)
    assert steps == ["read, validate and summarise", "fit and score bgnbd (mle)"]
