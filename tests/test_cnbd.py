"""MBG/CNBD-k and BG/CNBD-k (clv.purchase.cnbd): the k = 1 reduction to MBG/NBD and BG/NBD, the likelihood
against a numeric integration of the model's definition, recovery from simulated data, and the grocery data."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from clv import BetaGeoCNBDModel, BetaGeoModel, DataError, ModifiedBetaGeoCNBDModel, ModifiedBetaGeoModel
from clv.config import DataConfig
from clv.data import rfm_summary
from clv.data.transactions import load_transactions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GROCERY = Path("/work/shared/data/btydplus_groceryElog.csv")
PAIRS = [(ModifiedBetaGeoCNBDModel, ModifiedBetaGeoModel, 1), (BetaGeoCNBDModel, BetaGeoModel, 0)]


def _rfm() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 30, 60).astype(float)
    T = rng.uniform(1.0, 60.0, 60)
    t_x = np.where(x > 0, T * rng.uniform(0.0, 1.0, 60), 0.0)
    litt = np.where(x > 0, rng.normal(1.0, 1.0, 60) * x, 0.0)
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": T, "sum_log_intervals": litt})


@pytest.mark.parametrize(("cnbd", "nbd", "c"), PAIRS)
def test_k1_is_the_nbd_model(cnbd, nbd, c):
    """k = 1: log-likelihood, P(alive), conditional and new-customer expectations equal clv's MBG/NBD, BG/NBD."""
    rfm = _rfm()
    params = {"r": 0.55, "alpha": 4.2, "a": 0.8, "b": 2.4}
    ours, ref = cnbd.from_params(k=1, **params), nbd.from_params(**params)
    np.testing.assert_allclose(ours.loglik(rfm), ref.loglik(rfm), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.probability_alive(rfm), ref.probability_alive(rfm), rtol=0, atol=1e-10)
    for h in (1.0, 26.0, 52.0):
        np.testing.assert_allclose(ours.expected_purchases(rfm, h), ref.expected_purchases(rfm, h), atol=1e-10)
    t = np.array([1.0, 10.0, 100.0])
    np.testing.assert_allclose(
        ours.expected_purchases_new_customer(t), ref.expected_purchases_new_customer(t), rtol=0, atol=1e-10
    )


def _integrated_ll(k, r, alpha, a, b, c, x, t_x, T, litt):
    """The model's definition integrated over lambda ~ Gamma(r, alpha) and p ~ Beta(a, b) by scipy's dblquad:
    Erlang-k densities of the x intervals, then alive (no purchase since t_x) or dropped after the last one."""
    u = T - t_x

    log_norm = r * math.log(alpha) - math.lgamma(r) - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b)

    def density(lam: float, p: float) -> float:
        log_f = x * (k * math.log(lam) - math.lgamma(k)) + (k - 1) * litt - lam * t_x
        survive = sum(math.exp(-lam * u) * (lam * u) ** j / math.factorial(j) for j in range(k))
        alive = (1 - p) ** (x + c) * survive
        drop = p * (1 - p) ** (x + c - 1) if x + c > 0 else 0.0
        log_prior = log_norm + (r - 1) * math.log(lam) - alpha * lam + (a - 1) * math.log(p) + (b - 1) * math.log1p(-p)
        return math.exp(log_f + log_prior) * (alive + drop)

    top = stats.gamma.ppf(1 - 1e-13, r + k * x, scale=1 / (alpha + t_x))
    value, _ = integrate.dblquad(lambda lam, p: density(lam, p), 0, 1, 0, top, epsabs=0, epsrel=1e-9)
    return math.log(value)


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "c"), [(ModifiedBetaGeoCNBDModel, 1), (BetaGeoCNBDModel, 0)])
def test_loglik_matches_numeric_integration(cls, c):
    params = {"r": 1.3, "alpha": 2.8, "a": 0.9, "b": 1.7}
    rows = [(0, 0.0, 20.0, 0.0), (3, 9.0, 20.0, 2.1), (5, 18.5, 20.0, 3.9), (1, 2.0, 30.0, math.log(2.0))]
    rfm = pd.DataFrame(rows, columns=["frequency", "recency", "T", "sum_log_intervals"])
    for k in (2, 3):
        ours = cls.from_params(k=k, **params).loglik(rfm)
        ref = [_integrated_ll(k, *params.values(), c, *row) for row in rows]
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_finite_at_extremes():
    rfm = pd.DataFrame(
        {
            "frequency": [0, 3000, 3000, 1, 50],
            "recency": [0.0, 100.0, 99.999999, 1e-9, 50.0],
            "T": [1e-6, 100.0, 100.0, 1e-9, 1e4],
            "sum_log_intervals": [0.0, -3000 * 3.5, -3000 * 3.5, math.log(1e-9), 0.0],
        }
    )
    for cls in (ModifiedBetaGeoCNBDModel, BetaGeoCNBDModel):
        for k in (1, 4, 12):
            model = cls.from_params(k=k, r=0.8, alpha=3.0, a=1.0, b=2.0)
            assert np.all(np.isfinite(model.loglik(rfm)))
            p = model.probability_alive(rfm)
            assert np.all((p >= 0) & (p <= 1))
            assert np.all(np.isfinite(model.expected_purchases(rfm, 52.0)))


def test_missing_column_is_a_data_error():
    rfm = _rfm().drop(columns="sum_log_intervals")
    with pytest.raises(DataError, match="sum_log_intervals"):
        ModifiedBetaGeoCNBDModel(k=2).fit(rfm)
    # the predictions need only (x, t_x, T); other models never read the column
    assert np.all(
        np.isfinite(ModifiedBetaGeoCNBDModel.from_params(k=2, r=1, alpha=2, a=1, b=2).expected_purchases(rfm, 5))
    )
    ModifiedBetaGeoModel.from_params(r=1, alpha=2, a=1, b=2).loglik(rfm)


@pytest.mark.parametrize(("cnbd", "nbd", "c"), PAIRS)
def test_k1_pmf_and_dert(cnbd, nbd, c):
    """k = 1: the conditional pmf equals clv's BG-family pmf; DERT equals its quadrature to 1e-6 relative."""
    rfm = _rfm()
    params = {"r": 0.55, "alpha": 4.2, "a": 0.8, "b": 2.4}
    ours, ref = cnbd.from_params(k=1, **params), nbd.from_params(**params)
    for n in (0, 1, 4):
        np.testing.assert_allclose(
            ours.probability_of_purchases(rfm, n, 13.0), ref.probability_of_purchases(rfm, n, 13.0), atol=1e-10
        )
    np.testing.assert_allclose(
        ours.expected_residual_purchases(rfm, 0.01), ref.expected_residual_purchases(rfm, 0.01), rtol=1e-6
    )


def test_pmf_sums_to_one_and_its_mean_is_the_expectation():
    """k = 3: the pmf over 0..299 sums to 1 and its mean is expected_purchases (two separate series)."""
    rfm = _rfm()
    model = ModifiedBetaGeoCNBDModel.from_params(k=3, r=0.9, alpha=2.0, a=0.8, b=2.4)
    pmf = np.stack([model.probability_of_purchases(rfm, n, 26.0) for n in range(300)])
    np.testing.assert_allclose(pmf.sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(pmf.T @ np.arange(300), model.expected_purchases(rfm, 26.0), rtol=1e-10)


@pytest.mark.parametrize(("k", "c"), [(1, 1), (3, 1), (3, 0), (8, 0)])
def test_the_curve_over_many_horizons_is_the_series(k, c):
    """`expected_alive_curve` (a sum over the NegBin pmf of event counts, all horizons at once) equals
    `expected_alive` (a series of NegBin tails, one horizon at a time): two routes to the same expectation,
    including recency = T (the open interval empty) and no repeat purchase."""
    from clv.purchase import erlang_geometric as eg

    rfm = _rfm()
    x, t_x, T = (rfm[col].to_numpy(dtype=float).copy() for col in ("frequency", "recency", "T"))
    t_x[:3] = np.where(x[:3] > 0, T[:3], 0.0)
    params = np.array([0.9, 2.0, 0.8, 2.4])
    horizons = np.array([0.0, 0.5, 4.0, 26.0, 104.0])
    curve = eg.expected_alive_curve(horizons, params, x, t_x, T, k, c)
    series = np.stack([eg.expected_alive(h, params, x, t_x, T, k, c) for h in horizons], axis=1)
    np.testing.assert_allclose(curve, series, rtol=1e-10, atol=1e-300)


def test_simulated_purchases_follow_the_pmf():
    """Purchases simulated from the generative process given the history (alive, phase, lambda, p, events,
    drop-out) against the exact pmf (`probability_of_purchases`, a separate series): frequencies of 0..3
    purchases within 4 standard errors, for histories with recency = T, recency < T and no repeat purchase."""
    model = ModifiedBetaGeoCNBDModel.from_params(k=3, r=0.9, alpha=2.0, a=0.8, b=2.4)
    histories = pd.DataFrame({"frequency": [24.0, 5.0, 9.0, 0.0], "recency": [29.4, 2.2, 18.0, 0.0]})
    histories["T"] = [29.4, 2.2, 54.7, 12.0]
    n = 40_000
    sims = model.simulate_purchases(histories.loc[histories.index.repeat(n)], 26.0, np.random.default_rng(7))
    sims = sims.reshape(len(histories), n)
    for count in range(4):
        p = model.probability_of_purchases(histories, count, 26.0)
        se = np.sqrt(p * (1 - p) / n) + 1e-9
        assert np.all(np.abs((sims == count).mean(axis=1) - p) < 4 * se), count
    spread = sims.std(axis=1) / np.sqrt(n) + 1e-9
    assert np.all(np.abs(sims.mean(axis=1) - model.expected_purchases(histories, 26.0)) < 4 * spread)


@pytest.mark.slow
def test_dert_is_the_discounted_sum_of_expectations():
    """k = 2: DERT = integral of delta e^(-delta t) E[X(t)] dt (integration by parts), by scipy's quad on the
    conditional expectation."""
    rfm = _rfm().iloc[:4]
    delta = 0.02
    model = BetaGeoCNBDModel.from_params(k=2, r=0.9, alpha=2.0, a=1.3, b=2.4)
    ref = [
        integrate.quad(lambda t, i=i: delta * math.exp(-delta * t) * model.expected_purchases(rfm, t)[i], 0, np.inf)[0]
        for i in range(len(rfm))
    ]
    np.testing.assert_allclose(model.expected_residual_purchases(rfm, delta), ref, rtol=1e-6)


def simulate_cnbd(n, k, r, alpha, a, b, c, T, seed, holdout=0.0):
    """Seeded draws from (M)BG/CNBD-k: lambda ~ Gamma(r, alpha), p ~ Beta(a, b), Erlang-k gaps, drop-out after each
    purchase (and at time 0 when c = 1) with probability p; the RFM row and the sum of log gaps per customer, the
    purchases in (T, T + holdout] and whether the customer was alive at T."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lam, p = rng.gamma(r, 1 / alpha), rng.beta(a, b)
        x, t, litt, last, later = 0, 0.0, 0.0, 0.0, 0
        dropped_by_T = bool(c and rng.random() < p)
        alive = not dropped_by_T
        while alive:
            gap = rng.gamma(k, 1 / lam)
            if t + gap > T + holdout:
                break
            t += gap
            if t <= T:
                x, litt, last = x + 1, litt + math.log(gap), t
            else:
                later += 1
            alive = rng.random() >= p
            dropped_by_T = dropped_by_T or (not alive and t <= T)
        out.append((x, last, T, litt, later, not dropped_by_T))
    columns = ["frequency", "recency", "T", "sum_log_intervals", "frequency_holdout", "alive"]
    return pd.DataFrame(out, columns=columns)


@pytest.mark.slow
def test_conditional_predictions_add_up_on_simulated_data():
    """At the true parameters the sum over customers of E[X(T, T + 30) | history] and of P(alive) match the
    simulated totals (law of total expectation; 12,000 customers, k = 3): a check independent of the series."""
    truth = {"r": 0.85, "alpha": 1.45, "a": 0.79, "b": 2.42}
    sim = simulate_cnbd(12_000, 3, *truth.values(), 1, 40.0, seed=21, holdout=30.0)
    model = ModifiedBetaGeoCNBDModel.from_params(k=3, **truth)
    expected = model.expected_purchases(sim, 30.0).sum()
    assert expected == pytest.approx(sim["frequency_holdout"].sum(), rel=0.03)
    assert model.probability_alive(sim).sum() == pytest.approx(sim["alive"].sum(), rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "c"), [(ModifiedBetaGeoCNBDModel, 1), (BetaGeoCNBDModel, 0)])
def test_recovers_k_and_parameters(cls, c):
    truth = {"r": 0.85, "alpha": 1.45, "a": 0.79, "b": 2.42}  # BTYDplus' own simulation example, k = 3
    rfm = simulate_cnbd(4000, 3, *truth.values(), c, 52.0, seed=11)
    model = cls(max_k=6).fit(rfm)
    assert model.params_["k"] == 3
    assert max(model.k_log_likelihoods_, key=model.k_log_likelihoods_.get) == 3
    for name, value in truth.items():
        assert model.params_[name] == pytest.approx(value, rel=0.25), name


def test_rfm_column_from_sql():
    """sum_log_intervals from the DuckDB summary equals a pandas loop over each customer's purchase days."""
    tx_frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "c", "c", "c"],
            "date": [
                "2020-01-01",
                "2020-01-01",
                "2020-01-04",
                "2020-01-18",
                "2020-01-02",
                "2020-01-01",
                "2020-01-22",
                "2020-03-01",
            ],
        }
    )
    tx = load_transactions(tx_frame, DataConfig(source="frame", amount=None))
    frame = rfm_summary(tx, dt.date(2020, 2, 1), unit="W").frame.set_index("customer_id")
    expected = {"a": math.log(3 / 7) + math.log(14 / 7), "b": 0.0, "c": math.log(21 / 7)}
    for cid, value in expected.items():
        assert frame.loc[cid, "sum_log_intervals"] == pytest.approx(value, abs=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(not GROCERY.exists(), reason="the grocery data is absent")
def test_grocery(capsys):
    """BTYDplus' grocery data (weekly, calibration to 2006-12-31). The k = 1 fit is MBG/NBD's, independently
    fitted by clv's MBG/NBD; the chosen k can only be better."""
    tx = load_transactions(str(GROCERY), DataConfig(source="grocery", customer_id="cust", date="date", amount=None))
    rfm = rfm_summary(tx, dt.date(2006, 12, 31), dt.date(2007, 12, 30), unit="W").frame
    model = ModifiedBetaGeoCNBDModel().fit(rfm)
    mbg = ModifiedBetaGeoModel().fit(rfm)
    assert model.k_log_likelihoods_[1] == pytest.approx(mbg.log_likelihood_, abs=1e-3)
    assert model.log_likelihood_ >= mbg.log_likelihood_
    expected = model.expected_purchases(rfm, 52.0)
    actual = rfm["frequency_holdout"].to_numpy()
    with capsys.disabled():
        print(
            f"\ngrocery MBG/CNBD-k: {model.params_}, LL {model.log_likelihood_:.2f}; holdout total "
            f"{expected.sum():.1f} vs {actual.sum()}, MAE {np.abs(expected - actual).mean():.4f}"
        )
    assert np.all(np.isfinite(expected))


def test_registered_for_configs():
    """`model.purchase: mbgcnbd` / `bgcnbd` build the regularity models (k chosen by likelihood)."""
    from clv.config import load_config
    from clv.pipeline import purchase_model
    from clv.purchase import PURCHASE_MODELS

    root = Path(__file__).resolve().parents[1]
    for name, cls in (("mbgcnbd", ModifiedBetaGeoCNBDModel), ("bgcnbd", BetaGeoCNBDModel)):
        assert PURCHASE_MODELS[name] is cls
        model = purchase_model(load_config(root / "configs" / "cdnow.yaml", [f"model.purchase={name}"]))
        assert type(model) is cls and model.k is None and model.max_k == 12


def test_rfm_table_carries_the_column_when_given(tmp_path):
    """An RFM table is read with or without sum_log_intervals; without it the regularity models say what is
    missing, with it they fit."""
    from clv.config import load_config
    from clv.data.rfm_table import load_rfm_table

    rfm = simulate_cnbd(300, 2, 1.0, 2.0, 0.8, 2.5, 1, 30.0, seed=5)
    rfm.insert(0, "customer_id", [f"c{i}" for i in range(len(rfm))])
    root = Path(__file__).resolve().parents[1]
    for with_column in (False, True):
        path = tmp_path / f"rfm_{with_column}.csv"
        (rfm if with_column else rfm.drop(columns="sum_log_intervals")).to_csv(path, index=False)
        config = load_config(root / "configs" / "cdnow.yaml", [f"data.source={path}", "time.holdout_end=null"])
        frame = load_rfm_table(config).frame
        assert ("sum_log_intervals" in frame) is with_column
        if with_column:
            assert ModifiedBetaGeoCNBDModel(max_k=3).fit(frame).params_["k"] >= 1
        else:
            with pytest.raises(DataError, match="sum_log_intervals"):
                ModifiedBetaGeoCNBDModel(max_k=3).fit(frame)


def test_bayes_is_accepted_in_the_config():
    """The regularity models are fitted by maximum likelihood or Bayes (k held at its maximum-likelihood value,
    `clv.bayes.fit`), in a run and in evaluate's methods."""
    from clv.config import load_config

    root = Path(__file__).resolve().parents[1]
    for name in ("mbgcnbd", "bgcnbd"):
        config = load_config(root / "configs" / "cdnow.yaml", [f"model.purchase={name}", "model.method=bayes"])
        assert (config.model.purchase, config.model.method) == (name, "bayes")
    config = load_config(root / "configs" / "cdnow.yaml", ["evaluation.models=[mbgcnbd]", "evaluation.methods=[bayes]"])
    assert config.evaluation.methods == ["bayes"]
