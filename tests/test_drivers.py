"""What drives value (issue 13): the drivers table's coefficients, intervals and average counterfactual effects,
checked against computations made here from the models' own predictions; its sentences; drivers.csv and the
report section, present only for models with covariates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from clv.config import DataConfig, RunConfig, load_config
from clv.data import load_transactions, rfm_summary
from clv.digest import digest_customers
from clv.drivers import CoefficientEstimate, Valuation, drivers_table, wald_intervals
from clv.errors import ConvergenceWarning
from clv.pipeline import run
from clv.report import rebuild_report, write_outputs
from clv.report.html import build_report
from clv.report.outputs import read_drivers
from clv.simulate import simulate_gamma_gamma, simulate_pareto_nbd
from clv.store import FittedModels
from tests.conftest import SHARED

BOTH = {"purchase_covariates": ["Gender", "Channel"], "dropout_covariates": ["Gender", "Channel"]}
CALIBRATION_END = dt.date(2006, 12, 31)
#: 52 weeks, 10% a year, margin 30%, in euros: the valuation of the apparel tests
VALUATION = Valuation(52.0, "52 weeks", 0.10, 0.3, "W", CALIBRATION_END, "EUR")
#: the standard normal's 95% point (Abramowitz & Stegun 26.2.23 to these digits), z of a 90% Wald interval
Z90 = 1.6448536269514722


@pytest.fixture(scope="module")
def apparel() -> pd.DataFrame:
    """CLVTools' apparel data, weekly, calibration to 2006-12-31 (CLVTools' estimation.split = 104), with the
    static covariates merged by customer id as text."""
    if not (SHARED / "clvtools_apparelTrans.csv").exists():
        pytest.skip("../shared/data is absent")
    spec = DataConfig(source="x", customer_id="Id", date="Date", amount="Price")
    tx = load_transactions(str(SHARED / "clvtools_apparelTrans.csv"), spec)
    rfm = rfm_summary(tx, CALIBRATION_END, unit="W").frame
    cov = pd.read_csv(SHARED / "clvtools_apparelStaticCov.csv", dtype={"Id": str})
    return rfm.merge(cov.rename(columns={"Id": "customer_id"}), on="customer_id", validate="one_to_one")


@pytest.fixture(scope="module")
def models(apparel: pd.DataFrame) -> tuple[ParetoNBDModel, GammaGammaModel]:
    return ParetoNBDModel(**BOTH).fit(apparel), GammaGammaModel(spend_covariates=["Channel"]).fit(apparel)


@pytest.fixture(scope="module")
def table(apparel: pd.DataFrame, models: tuple[ParetoNBDModel, GammaGammaModel]) -> pd.DataFrame:
    purchase, spend = models
    out = drivers_table(purchase, spend, apparel, VALUATION)
    assert out is not None
    return out


def _row(table: pd.DataFrame, covariate: str, process: str) -> pd.Series:
    rows = table[(table["covariate"] == covariate) & (table["process"] == process)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_one_row_per_covariate_and_process_with_wald_intervals(table: pd.DataFrame, models) -> None:
    purchase, spend = models
    assert list(zip(table["covariate"], table["process"], strict=True)) == [
        ("Gender", "purchase"),
        ("Gender", "dropout"),
        ("Channel", "purchase"),
        ("Channel", "dropout"),
        ("Channel", "spend"),
    ]
    for _, row in table.iterrows():
        model = spend if row["process"] == "spend" else purchase
        g = model.coefficients_[row["process"]][row["covariate"]]
        se = model.coefficient_standard_errors_[row["process"]][row["covariate"]]
        assert row["coefficient"] == g and row["standard_error"] == se
        assert row["coefficient_lo"] == pytest.approx(g - Z90 * se, rel=1e-12)
        assert row["coefficient_hi"] == pytest.approx(g + Z90 * se, rel=1e-12)
        assert row["interval_level"] == 0.9 and "1.645" in row["interval_method"]
        assert row["distinguishable"] == ("no" if g - Z90 * se <= 0 <= g + Z90 * se else "yes")
    assert not table.drop(columns="sentence").isna().any().any()


def _discounted_clv(purchase, spend, frame: pd.DataFrame, valuation: Valuation) -> np.ndarray:
    """Margin x expected spend x int_0^H e^(-delta t) dE(t), the integral by the trapezoid rule on a daily grid
    of E(t) = expected purchases by t (delta = ln(1.1) / (365.2425 / 7) per week): independent of the value
    module's monthly Simpson rule."""
    delta = math.log1p(valuation.annual_discount_rate) / (365.2425 / 7.0)
    t = np.linspace(0.0, valuation.horizon, int(valuation.horizon * 7) + 1)
    e = np.stack([purchase.expected_purchases(frame, float(h)) if h > 0 else np.zeros(len(frame)) for h in t], axis=1)
    w = np.exp(-delta * (t[1:] + t[:-1]) / 2.0)
    return valuation.margin * spend.expected_spend(frame) * (np.diff(e, axis=1) @ w)


def test_counterfactual_ratios_match_the_models_own_predictions(apparel, models, table) -> None:
    """Everyone set to Channel = 1, then to Channel = 0 (history and Gender kept): the ratios of the means of the
    models' own predictions, and of CLV discounted here."""
    purchase, spend = models
    one, zero = apparel.assign(Channel=1), apparel.assign(Channel=0)
    row = _row(table, "Channel", "purchase")
    for column, predict in {
        "p_alive_ratio": lambda f: purchase.probability_alive(f),
        "p_churn_ratio": lambda f: 1.0 - purchase.probability_alive(f),
        "expected_purchases_ratio": lambda f: purchase.expected_purchases(f, VALUATION.horizon),
        "expected_spend_ratio": lambda f: spend.expected_spend(f),
    }.items():
        assert row[column] == pytest.approx(predict(one).mean() / predict(zero).mean(), rel=1e-9), column
    clv_one, clv_zero = (_discounted_clv(purchase, spend, f, VALUATION).mean() for f in (one, zero))
    assert row["mean_clv_level"] == pytest.approx(clv_one, rel=1e-5)
    assert row["mean_clv_reference"] == pytest.approx(clv_zero, rel=1e-5)
    assert row["clv_ratio"] == pytest.approx(clv_one / clv_zero, rel=1e-5)
    # Gender is not in the spend model: its spend ratio is 1
    assert _row(table, "Gender", "purchase")["expected_spend_ratio"] == pytest.approx(1.0, abs=1e-12)


def test_sentences_say_the_numbers(table: pd.DataFrame) -> None:
    purchase, dropout, spend = (_row(table, "Channel", p) for p in ("purchase", "dropout", "spend"))
    sentence = purchase["sentence"]
    assert sentence == dropout["sentence"] == spend["sentence"]
    assert sentence.startswith("Compared with customers with Channel = 0, those with Channel = 1 buy ")
    want = [
        f"buy {math.exp(purchase['coefficient']):.2f}x as often while active",
        f"90% interval {math.exp(purchase['coefficient_lo']):.2f}x to {math.exp(purchase['coefficient_hi']):.2f}x",
        f"are {dropout['p_churn_ratio']:.2f}x as likely to have left by 2006-12-31",
        f"dropout rate {math.exp(dropout['coefficient']):.2f}x",
        f"spend {math.exp(spend['coefficient']):.2f}x as much per purchase, not distinguishable from no effect",
        f"over the next 52 weeks they are expected to make {purchase['expected_purchases_ratio']:.2f}x as many",
        f"their expected CLV is {purchase['clv_ratio']:.2f}x (EUR {purchase['mean_clv_level']:,.2f} vs EUR "
        f"{purchase['mean_clv_reference']:,.2f} per customer)",
    ]
    for part in want:
        assert part in sentence, part
    assert spend["distinguishable"] == "no" and purchase["distinguishable"] == "yes"
    assert "not distinguishable" not in _row(table, "Gender", "purchase")["sentence"]  # both processes are told


def test_estimates_are_inputs_an_interval_through_zero_is_not_distinguishable(apparel, models) -> None:
    """The intervals come from one function per method (here built by hand, as a posterior's would be): an
    interval that includes 0 makes the sentence say the data cannot tell."""
    purchase, _ = models
    estimates = wald_intervals(purchase)
    g = estimates[("purchase", "Channel")].value
    estimates[("purchase", "Channel")] = CoefficientEstimate("purchase", "Channel", g, None, -0.1, 1.2, 0.95, "test")
    out = drivers_table(purchase, None, apparel, VALUATION, estimates)
    assert out is not None and "expected_spend_ratio" not in out
    row = _row(out, "Channel", "purchase")
    assert row["interval_level"] == 0.95 and row["interval_method"] == "test" and row["distinguishable"] == "no"
    said = f"buy {math.exp(g):.2f}x as often while active, not distinguishable from no effect (95% interval "
    assert said + "0.90x to 3.32x)" in row["sentence"]
    # without a spend model, CLV counts discounted purchases, in no currency
    assert (
        f"({row['mean_clv_level']:,.2f} vs {row['mean_clv_reference']:,.2f} discounted purchases per" in row["sentence"]
    )
    assert "EUR" not in row["sentence"] and row["value_unit"].startswith("discounted purchases")


def test_categorical_levels_give_the_same_effects(apparel, table) -> None:
    """Channel as a categorical covariate against its level "0" is the same model as the 0/1 number."""
    categorical = {"Gender": "0", "Channel": "0"}
    purchase = ParetoNBDModel(**BOTH, categorical=categorical).fit(apparel)
    spend = GammaGammaModel(spend_covariates=["Channel"], categorical=categorical).fit(apparel)
    out = drivers_table(purchase, spend, apparel.assign(Channel=apparel["Channel"].astype(str)), VALUATION)
    assert out is not None
    row, numeric = _row(out, "Channel", "purchase"), _row(table, "Channel", "purchase")
    assert (row["kind"], row["level"], row["reference_level"], row["design"]) == ("categorical", "1", "0", "Channel[1]")
    for column in ("coefficient", "p_churn_ratio", "expected_purchases_ratio", "clv_ratio"):
        assert row[column] == pytest.approx(numeric[column], rel=1e-3), column


def _synthetic(n: int = 4000, seed: int = 3) -> pd.DataFrame:
    """Pareto/NBD customers whose purchase scale alpha_i = 6 exp(-0.5 z_i) moves with a numeric covariate z
    (`visits`, 0 to 4), and Gamma-Gamma spends."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 5, n).astype(float)
    parts = []
    for value in np.unique(z):
        count = int((z == value).sum())
        part = simulate_pareto_nbd(count, 0.8, 6.0 * math.exp(-0.5 * value), 0.6, 12.0, seed=seed + int(value))
        parts.append(part.assign(visits=value))
    frame = pd.concat(parts, ignore_index=True)
    frame["customer_id"] = [f"c{i:05d}" for i in range(len(frame))]
    frequency = frame["frequency"].to_numpy()
    frame["monetary_value"] = 0.0
    buyers = frequency > 0
    frame.loc[buyers, "monetary_value"] = simulate_gamma_gamma(frequency[buyers], 4.0, 3.0, 20.0, seed=seed)
    return frame


@pytest.mark.parametrize("standardise", [False, True])
def test_purchase_rate_ratio_is_exp_coefficient(standardise: bool) -> None:
    """Pareto/NBD: the mean purchase rate r / alpha_i of customers one step of visits apart differs by exp(g);
    with the purchase covariate only, so does a new customer's expectation (proportional to r / alpha,
    Schmittlein, Morrison & Colombo 1987), computed here from each pattern's model. Standardised, the step is
    one sd (in visits) and the coefficient per visit is g / sd."""
    rfm = _synthetic()
    model = ParetoNBDModel(purchase_covariates=["visits"], standardise=standardise).fit(rfm)
    valuation = Valuation(39.0, "39 weeks", 0.1, 1.0, "W")
    out = drivers_table(model, None, rfm, valuation)
    assert out is not None and len(out) == 1
    row = out.iloc[0]
    sd = float(np.std(rfm["visits"]))
    step = sd if standardise else 1.0
    assert row["step"] == pytest.approx(step, rel=1e-12)
    assert row["coefficient_per_unit"] == pytest.approx(row["coefficient"] / step, rel=1e-12)
    up = rfm.assign(visits=rfm["visits"] + step)
    r = model.params_["r"]
    rate = r / model.row_params(up)[:, 1], r / model.row_params(rfm)[:, 1]
    np.testing.assert_allclose(rate[0] / rate[1], row["exp_coefficient"], rtol=1e-12)
    first = rfm.iloc[[0]]
    P_up, P = model.row_params(first.assign(visits=first["visits"] + step))[0], model.row_params(first)[0]
    new = [model.pattern_model(p).expected_purchases_new_customer(26.0)[0] for p in (P_up, P)]
    assert new[0] / new[1] == pytest.approx(row["exp_coefficient"], rel=1e-10)
    # the truth is 0.5 per visit
    assert row["coefficient_per_unit"] == pytest.approx(0.5, abs=4 * row["standard_error"] / step)
    assert "higher by " + ("one standard deviation" if standardise else "1") in row["sentence"]


def test_models_without_covariates_have_no_drivers(apparel: pd.DataFrame) -> None:
    assert drivers_table(ParetoNBDModel().fit(apparel), GammaGammaModel().fit(apparel), apparel, VALUATION) is None


def test_dropout_not_identified_is_said(apparel: pd.DataFrame) -> None:
    """BG/NBD with the covariates on dropout runs to a boundary on this data: no churn claim."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BetaGeoModel(**BOTH).fit(apparel)
    out = drivers_table(model, None, apparel, VALUATION)
    assert out is not None
    row = _row(out, "Channel", "dropout")
    assert "cannot be told apart in their chance of having left" in row["sentence"]
    assert row["exp_coefficient_means"].startswith("factor on the dropout parameters a and b")


@pytest.fixture(scope="module")
def run_pair(tmp_path_factory) -> tuple[Path, Path, RunConfig]:
    """reports/ of an apparel run without covariates, and of the same run with covariate models in its result
    (built directly, as the pipeline will once its config passes covariates)."""
    if not (SHARED / "clvtools_apparelTrans.csv").exists():
        pytest.skip("../shared/data is absent")
    root = tmp_path_factory.mktemp("drivers")
    config_file = root / "apparel.yaml"
    config_file.write_text(
        f"name: apparel\ndata: {{source: {SHARED / 'clvtools_apparelTrans.csv'}, customer_id: Id, date: Date, "
        "amount: Price, currency: EUR}\ntime: {unit: W, calibration_end: 2006-12-31, holdout_end: 2010-12-31}\n"
        "model: {purchase: pareto_nbd}\nprediction: {horizon: 12M}\n"
    )
    plain = run(load_config(config_file, [f"output.reports_dir={root / 'plain'}"]))
    without = write_outputs(plain)
    cov = pd.read_csv(SHARED / "clvtools_apparelStaticCov.csv", dtype={"Id": str})
    rfm = plain.data.rfm.frame.merge(cov.rename(columns={"Id": "customer_id"}), on="customer_id")
    fitted = FittedModels(
        ParetoNBDModel(**BOTH).fit(rfm), GammaGammaModel(spend_covariates=["Channel"]).fit(rfm), "mle", None, None, {}
    )
    config = load_config(config_file, [f"output.reports_dir={root / 'cov'}"])
    data = dataclasses.replace(plain.data, rfm=dataclasses.replace(plain.data.rfm, rows=rfm))
    return without, write_outputs(dataclasses.replace(plain, config=config, data=data, fitted=fitted)), config


def test_drivers_file_and_section_only_with_covariates(run_pair: tuple[Path, Path, RunConfig]) -> None:
    without, with_, config = run_pair
    assert not (without / "drivers.csv").exists()
    assert json.loads((without / "summary.json").read_text())["drivers"] is None
    assert "What drives value" not in (without / "report.html").read_text()
    drivers = read_drivers(with_ / "drivers.csv")
    assert len(drivers) == 5 and drivers["horizon"].iloc[0] == "12 months"
    assert drivers["value_unit"].iloc[0].startswith("EUR")
    block = json.loads((with_ / "summary.json").read_text())["drivers"]
    assert block["file"] == "drivers.csv" and len(block["sentences"]) == 2
    assert set(block["units"]) == set(drivers.columns)
    html = (with_ / "report.html").read_text()
    assert "<h2>What drives value</h2>" in html and 'alt="what drives value"' in html
    assert "The map is for customers at the reference of every covariate" in html
    assert "The map is for customers at the reference" not in (without / "report.html").read_text()
    for sentence in block["sentences"]:
        assert sentence.replace("'", "&#x27;") in html
    (with_ / "report.html").unlink()
    assert "<h2>What drives value</h2>" in rebuild_report(config).read_text()


def test_report_section_from_the_report_objects(run_pair: tuple[Path, Path, RunConfig]) -> None:
    """build_report with and without a drivers table: the section, its chart and tables only with one."""
    without, with_, _ = run_pair
    summary = json.loads((without / "summary.json").read_text())
    customers = digest_customers(pd.read_parquet(without / "customers.parquet"))
    forecast, tiers = pd.read_csv(without / "forecast.csv"), pd.read_csv(without / "tiers.csv")
    assert "What drives value" not in build_report(summary, customers, forecast, tiers, None)
    drivers = read_drivers(with_ / "drivers.csv")
    html = build_report(summary, customers, forecast, tiers, None, drivers)
    assert "<h2>What drives value</h2>" in html and "Average effects" in html and "mean CLV at the level (EUR)" in html
    assert f"{drivers['clv_ratio'].iloc[0]:.2f}x" in html


def test_posterior_intervals_are_the_draws_quantiles_and_the_chart_draws_them(apparel: pd.DataFrame) -> None:
    """A Bayesian fit's drivers: the coefficient's value is the posterior mean, its interval the 5% and 95%
    quantiles of its draws (not Wald); the report's chart renders with them, and with intervals missing."""
    from clv.bayes.fit import fit_posterior
    from clv.config import BayesConfig
    from clv.drivers import posterior_intervals
    from clv.pipeline import _point_model
    from clv.report import charts

    model = ParetoNBDModel(purchase_covariates=["Channel"])
    posterior = fit_posterior(model, apparel, BayesConfig(inference="laplace", chains=1, draws=2000), seed=3)
    estimates = posterior_intervals(posterior)
    g = posterior.draws[:, list(posterior.param_names).index("purchase:Channel")]
    got = estimates[("purchase", "Channel")]
    assert got.value == pytest.approx(float(g.mean()), rel=1e-12)
    assert (got.lo, got.hi) == pytest.approx(tuple(np.quantile(g, [0.05, 0.95])), rel=1e-12)
    assert "posterior" in got.method
    point = _point_model(model, posterior, apparel)
    assert point.coefficients_["purchase"]["Channel"] == pytest.approx(got.value, rel=1e-12)
    out = drivers_table(point, None, apparel, VALUATION, estimates)
    assert out is not None and out["interval_method"].str.contains("posterior").all()
    assert charts.drivers_chart(out).startswith("data:image/png")
    blank = out.assign(exp_coefficient_lo=None, exp_coefficient_hi=None, distinguishable="unknown")
    assert charts.drivers_chart(blank).startswith("data:image/png")
