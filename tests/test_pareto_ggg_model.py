"""ParetoGGGModel (clv.purchase.pareto_ggg): the Python API on data drawn from the model (a short Gibbs fit, the
predictions' ranges and internal consistency, the errors), the predictions at the true heterogeneity parameters
against what the process actually did, the config's refusal of maximum likelihood, and the command line (`clv
run`, `clv score`, `clv evaluate`) on CDNOW with short chains. The customer-level formulas are in
tests/test_pareto_ggg.py, the sampler in tests/test_ggg_gibbs.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import clv
from clv.cli import app
from clv.errors import ClvError, ConfigError, DataError
from clv.purchase import ggg

from . import reference_values as ref
from .test_cli import write_config

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

TRUTH = {"t": 3.0, "gamma": 1.5, "r": 0.9, "alpha": 6.0, "s": 0.7, "beta": 15.0}
NAMES = ("t", "gamma", "r", "alpha", "s", "beta")
HOLDOUT = 39.0
SMALL_CHAINS = ["bayes.chains=2", "bayes.tune=50", "bayes.draws=50", "bayes.prediction_draws=40"]


def _latents(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = rng.gamma(TRUTH["t"], 1 / TRUTH["gamma"], n)
    lam = rng.gamma(TRUTH["r"], 1 / TRUTH["alpha"], n)
    mu = rng.gamma(TRUTH["s"], 1 / TRUTH["beta"], n)
    return k, lam, mu


def _customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """n customers drawn from the model at TRUTH, observed for 30 to 78 weeks, with 39 weeks of holdout: the RFM
    frame (with sum_log_intervals) and the holdout purchases."""
    rng = np.random.default_rng(seed)
    k, lam, mu = _latents(n, rng)
    sim = ggg.simulate_histories(k, lam, mu, rng.uniform(30, 78, n), rng, horizon=HOLDOUT)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "frequency": sim["x"],
            "recency": sim["t_x"],
            "T": sim["T"],
            "sum_log_intervals": sim["S"],
        }
    )
    return frame, sim["x_holdout"]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    return _customers(300, seed=1)


@pytest.fixture(scope="module")
def fitted(data) -> clv.ParetoGGGModel:
    rfm, _ = data
    return clv.ParetoGGGModel(chains=2, warmup=50, draws=50, thin=1, latent_draws=100, seed=3).fit(rfm)


# ---------- the Python API ----------


def test_fit_gives_six_positive_parameters_and_diagnostics(fitted, data):
    rfm, _ = data
    assert tuple(fitted.params_) == NAMES
    assert all(math.isfinite(v) and v > 0 for v in fitted.params_.values()), fitted.params_
    post = fitted.posterior_
    assert post.param_names == NAMES and post.draws.shape == (2 * 50, 6)
    # params_ are the posterior means
    np.testing.assert_allclose([fitted.params_[n] for n in NAMES], post.draws.mean(axis=0), rtol=1e-12)
    d = post.diagnostics
    assert d.inference == "gibbs" and d.chains == 2 and d.draws == 50 and d.tune == 50
    assert math.isfinite(d.r_hat_max) and d.r_hat_max >= 1.0 - 1e-6
    assert d.ess_bulk_min > 0 and d.ess_tail_min > 0
    assert set(d.per_param) == set(NAMES)
    assert d.r_hat_max == pytest.approx(max(v["r_hat"] for v in d.per_param.values()))
    assert fitted.fit_result.n_customers == len(rfm)


def test_p_alive_is_a_probability_and_falls_with_silence(fitted, data):
    rfm, _ = data
    alive = fitted.probability_alive(rfm)
    assert alive.shape == (len(rfm),) and np.all((alive >= 0) & (alive <= 1))
    # the same x and T, the last purchase recent or long ago (intervals of about 4.5 weeks: 3 in 14 weeks)
    pair = pd.DataFrame(
        {
            "customer_id": ["recent", "silent"],
            "frequency": [3.0, 3.0],
            "recency": [58.0, 14.0],
            "T": [60.0, 60.0],
            "sum_log_intervals": [3 * math.log(58.0 / 3), 3 * math.log(14.0 / 3)],
        }
    )
    recent, silent = fitted.probability_alive(pair)
    assert silent < recent - 0.2, (recent, silent)


def test_expected_purchases_curve_is_non_decreasing(fitted, data):
    rfm, _ = data
    horizons = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 39.0, 52.0]
    curve = fitted.expected_purchases_curve(rfm, horizons)
    assert curve.shape == (len(rfm), len(horizons))
    assert np.all(np.isfinite(curve)) and np.all(curve >= 0)
    assert np.all(np.diff(curve, axis=1) >= -1e-12)
    assert curve[:, -1].sum() > curve[:, 0].sum() > 0


def test_probability_of_purchases_sums_to_one_and_to_the_expectation(fitted, data):
    """P(n purchases in 10 weeks), n = 0..40, on 40 customers: sums to 1, and sum n P(n) equals the expected
    purchases within Monte Carlo error. Both are means over latent_draws x 4 paths = 400 simulated futures per
    customer; the se of the 40 customers' total is sqrt(sum of the customers' variances / 400), inflated by 2 for
    the autocorrelation of the latent draws (two sweeps apart), and the two estimates are independent: 4 x sqrt 2
    x that."""
    rfm, _ = data
    frame = rfm.iloc[:40].reset_index(drop=True)
    h, top = 10.0, 40
    probs = np.stack([fitted.probability_of_purchases(frame, n, h) for n in range(top + 1)], axis=1)
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    n = np.arange(top + 1)
    mean = probs @ n
    var = probs @ n**2 - mean**2
    se = 2 * math.sqrt(var.sum() / 400)
    expected = fitted.expected_purchases(frame, h)
    assert abs(mean.sum() - expected.sum()) < 4 * math.sqrt(2) * se, (mean.sum(), expected.sum(), se)
    assert expected.sum() > 5  # something to compare
    with pytest.raises(ClvError, match="whole number"):
        fitted.probability_of_purchases(frame, -1, h)


def test_expected_purchases_agree_with_predict_draws(fitted, data):
    """`predict_draws` at the point parameters repeated 400 times draws the same quantity as the point model's
    `expected_purchases` (latents given the parameters, one future per latent draw instead of 4 paths): their
    totals agree within Monte Carlo error. The se of the draws' mean total is by batch means (20 batches of 20,
    which absorbs the latent draws' autocorrelation); the point model averages 100 latent draws, so its se is at
    most sqrt(400 / 100) = 2 times that: the tolerance is 4 x sqrt(1 + 4) se."""
    rfm, _ = data
    point = np.tile([fitted.params_[n] for n in NAMES], (400, 1))
    draws = clv.ParetoGGGModel.predict_draws(point, rfm, "expected_purchases", horizon=HOLDOUT, seed=5)
    assert draws.shape == (400, len(rfm)) and np.all(draws >= 0)
    totals = draws.sum(axis=1)
    se = totals.reshape(20, 20).mean(axis=1).std(ddof=1) / math.sqrt(20)
    expected = fitted.expected_purchases(rfm, HOLDOUT).sum()
    assert abs(totals.mean() - expected) < 4 * math.sqrt(5) * se, (totals.mean(), expected, se)
    # with the posterior's draws: the same size of forecast (the posterior mean's prediction and the posterior
    # mean of the predictions differ by the posterior's spread, not only by Monte Carlo error: compared loosely)
    post = clv.ParetoGGGModel.predict_draws(fitted.posterior_.draws, rfm, "expected_purchases", horizon=HOLDOUT, seed=5)
    assert post.shape == (len(fitted.posterior_.draws), len(rfm))
    assert post.sum(axis=1).mean() == pytest.approx(expected, rel=0.10)
    alive = clv.ParetoGGGModel.predict_draws(point[:50], rfm, "probability_alive", seed=5)
    assert np.all((alive >= 0) & (alive <= 1))


def test_weights_and_likelihood_are_refused(data):
    rfm, _ = data
    with pytest.raises(ClvError, match="weights"):
        clv.ParetoGGGModel(chains=1, warmup=1, draws=1).fit(rfm, weights=np.ones(len(rfm)))
    model = clv.ParetoGGGModel.from_params(**TRUTH)
    with pytest.raises(ClvError, match="Bayesian inference"):
        model.loglik(rfm)


def test_a_frame_without_sum_log_intervals_is_a_data_error(fitted, data):
    rfm, _ = data
    bare = rfm.drop(columns="sum_log_intervals")
    with pytest.raises(DataError, match="sum_log_intervals"):
        clv.ParetoGGGModel(chains=1, warmup=1, draws=1).fit(bare)
    with pytest.raises(DataError, match="sum_log_intervals"):
        fitted.probability_alive(bare)


def test_log_intervals_without_purchases_name_the_customer(fitted, data):
    rfm, _ = data
    bad = rfm.copy()
    zero = bad.index[bad["frequency"] == 0][2]
    bad.loc[zero, "sum_log_intervals"] = 0.7
    cid = bad.loc[zero, "customer_id"]
    with pytest.raises(DataError, match=rf"sum_log_intervals.*first ids: {cid}\)"):
        clv.ParetoGGGModel(chains=1, warmup=1, draws=1).fit(bad)
    with pytest.raises(DataError, match=rf"first ids: {cid}\)"):
        fitted.expected_purchases(bad, 10.0)


# ---------- against the truth ----------


@pytest.fixture(scope="module")
def truth_model() -> clv.ParetoGGGModel:
    return clv.ParetoGGGModel.from_params(**TRUTH)


def test_holdout_forecast_at_the_true_parameters(truth_model):
    """2,000 customers drawn from the model: at the true heterogeneity parameters the expected holdout purchases
    add up to the actual total. Given the calibration histories the actual total's variance is on average at most
    n var(x holdout) (law of total variance: the expected conditional variance is at most the unconditional one),
    an sd of about 190 purchases, 5.5% of the total here (a loose bound: measured, the forecast is 0.2% off); the
    forecast's own Monte Carlo error is far below it (200 latent draws x 4 paths per customer). Tolerance: 3 of
    those sd. The check can fail: the forecast that leaves out dropout (P(alive) = 1) is checked to be outside
    it."""
    rfm, actual = _customers(2000, seed=21)
    forecast = truth_model.expected_purchases(rfm, HOLDOUT)
    sd = math.sqrt(len(actual)) * actual.std()
    assert abs(forecast.sum() - actual.sum()) < 3 * sd, (forecast.sum(), actual.sum(), sd)
    alive = truth_model.probability_alive(rfm)
    assert np.all((alive >= 0) & (alive <= 1))
    # the check can fail: ignoring dropout (P(alive) = 1) over-forecasts by more than the tolerance
    living = forecast / np.maximum(alive, 1e-300)
    assert living.sum() - actual.sum() > 3 * sd
    # and the histories inform the forecast: it beats the population mean per customer
    assert np.abs(forecast - actual).mean() < np.abs(actual - actual.mean()).mean()


def test_new_customer_expectation_matches_simulated_customers(truth_model):
    """The model averages 20,000 simulated new customers; 200,000 more drawn here with an independent seed.
    Tolerance 4 se of the difference (the se from the spread of x)."""
    horizons = np.array([10.0, 39.0, 78.0])
    ours = truth_model.expected_purchases_new_customer(horizons)
    assert ours.shape == horizons.shape
    rng = np.random.default_rng(12345)
    n = 200_000
    k, lam, mu = _latents(n, rng)
    for h, value in zip(horizons, ours, strict=True):
        x = ggg.simulate_histories(k, lam, mu, np.full(n, h), rng)["x"]
        se = x.std() * math.sqrt(1 / 20_000 + 1 / n)
        assert abs(value - x.mean()) < 4 * se, (h, value, x.mean(), se)
        if h == 39.0:
            x_sd_39 = x.std()
    assert np.all(np.diff(ours) > 0)
    # a single horizon: the same quantity (its own simulation, to 39 weeks only: within the same Monte Carlo error)
    single = truth_model.expected_purchases_new_customer(39.0)
    assert np.shape(single) == (1,)
    assert abs(single[0] - ours[1]) < 4 * x_sd_39 * math.sqrt(2 / 20_000), (single, ours[1])


# ---------- the config ----------

MINIMAL = {"name": "t", "data": {"source": "cdnow"}, "time": {"calibration_end": "1997-09-30"}}


def test_pareto_ggg_by_mle_is_a_config_error():
    from clv.config import load_config, parse_config

    with pytest.raises(ConfigError, match="pareto_ggg cannot be fitted by mle"):
        parse_config(MINIMAL | {"model": {"purchase": "pareto_ggg", "method": "mle"}})
    with pytest.raises(ConfigError, match="pareto_ggg cannot be fitted by mle"):
        load_config(ROOT / "configs" / "cdnow.yaml", ["model.purchase=pareto_ggg"])  # the file's method is mle
    # `auto` fits the model it chooses among evaluation.models by model.method
    auto = {"model": {"purchase": "auto", "method": "mle"}, "evaluation": {"models": ["pareto_ggg", "bgnbd"]}}
    with pytest.raises(ConfigError, match="pareto_ggg cannot be fitted by mle"):
        parse_config(MINIMAL | auto)
    cfg = parse_config(MINIMAL | {"model": {"purchase": "pareto_ggg", "method": "bayes"}})
    assert cfg.model.purchase == "pareto_ggg" and cfg.model.method == "bayes"


def test_an_evaluation_by_mle_compares_pareto_ggg_by_its_own_method():
    """`clv evaluate` with evaluation.methods [mle] is accepted with pareto_ggg among the models (commit 698cfa8):
    the other models are fitted by mle, pareto_ggg by bayes, with a note saying so."""
    from clv.config import parse_config
    from clv.evaluate.comparison import candidates, method_notes

    cfg = parse_config(MINIMAL | {"evaluation": {"models": ["pareto_ggg", "bgnbd"], "methods": ["mle"]}})
    assert [(c.purchase, c.method) for c in candidates(cfg)] == [("pareto_ggg", "bayes"), ("bgnbd", "mle")]
    assert method_notes(cfg) == ["pareto_ggg: fitted by bayes, its only method(s)"]
    both = parse_config(MINIMAL | {"evaluation": {"models": ["pareto_ggg", "bgnbd"], "methods": ["mle", "bayes"]}})
    pairs = [(c.purchase, c.method) for c in candidates(both)]
    assert pairs == [("pareto_ggg", "bayes"), ("bgnbd", "mle"), ("bgnbd", "bayes")]
    assert method_notes(both) == []


# ---------- the command line ----------


def _sets(*keys: str) -> list[str]:
    return [arg for key in keys for arg in ("--set", key)]


def test_run_then_score_on_cdnow(tmp_path):
    """`clv run` with pareto_ggg by Gibbs sampling (short chains) and `clv score` with the saved posterior: the
    latents and the predictive draws are seeded by the run's seed, so the scores are the same numbers."""
    config = write_config(tmp_path)
    sets = _sets("model.purchase=pareto_ggg", "model.method=bayes", *SMALL_CHAINS)
    result = runner.invoke(app, ["run", str(config), *sets, "-q"])
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "reports" / "cdnow"
    customers = pd.read_csv(out / "customers.csv", dtype={"customer_id": str})
    assert len(customers) == ref.CDNOW_CUSTOMERS
    for column in ("p_alive", "expected_purchases", "clv"):
        assert np.all(np.isfinite(customers[column])), column
    assert customers["p_alive"].between(0, 1).all()
    assert (customers["clv"] >= 0).all() and customers["clv"].sum() > 0
    summary = json.loads((out / "summary.json").read_text())
    block = summary["purchase_model"]
    assert block["name"] == "pareto_ggg" and block["method"] == "bayes"
    assert set(block["params"]) == set(NAMES)
    diagnostics = block["diagnostics"]
    assert diagnostics["inference"] == "gibbs" and diagnostics["chains"] == 2 and diagnostics["draws"] == 50
    assert math.isfinite(diagnostics["r_hat_max"]) and set(diagnostics["per_param"]) == set(NAMES)
    model_dir = Path(summary["model_dir"])
    assert (model_dir / "pareto_ggg_posterior.nc").is_file()

    scored = runner.invoke(app, ["score", str(config), "--model", str(model_dir), *sets, "-q"])
    assert scored.exit_code == 0, scored.stderr
    again = pd.read_csv(out / "customers.csv", dtype={"customer_id": str})
    assert again["customer_id"].tolist() == customers["customer_id"].tolist()
    for column in ("p_alive", "expected_purchases", "clv", "clv_lo", "clv_hi"):
        np.testing.assert_array_equal(again[column], customers[column], err_msg=column)


@pytest.mark.slow
def test_evaluate_ranks_pareto_ggg(tmp_path):
    """`clv evaluate --models pareto_ggg,pareto_nbd --methods mle`: Pareto/NBD by maximum likelihood, Pareto/GGG
    by its own method (bayes, short chains), both on the leaderboard; pareto_ggg's row has a finite MAE that is
    the mean absolute error of its holdout predictions (predictions.parquet)."""
    config = write_config(tmp_path)
    args = ["evaluate", str(config), "--models", "pareto_ggg,pareto_nbd", "--methods", "mle", *_sets(*SMALL_CHAINS)]
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "reports" / "cdnow" / "evaluation"
    board = pd.read_csv(folder / "leaderboard.csv").set_index("candidate")
    assert set(board.index) == {"pareto_ggg (bayes)", "pareto_nbd (mle)"}
    row = board.loc["pareto_ggg (bayes)"]
    assert math.isfinite(row["mae_purchases"]) and row["mae_purchases"] > 0
    assert row["actual_purchases"] == ref.CDNOW_HOLDOUT_REPEATS
    assert 0 < row["predicted_purchases"] < 3 * ref.CDNOW_HOLDOUT_REPEATS
    predictions = pd.read_parquet(folder / "predictions.parquet")
    error = (predictions["pareto_ggg_bayes__predicted_purchases"] - predictions["actual_purchases"]).abs()
    assert len(predictions) == ref.CDNOW_CUSTOMERS
    assert row["mae_purchases"] == pytest.approx(error.mean(), rel=1e-9)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "pareto_ggg: fitted by bayes, its only method(s)" in metrics["notes"]
