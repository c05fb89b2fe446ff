"""The benchmark tasks. `prepare_<task>` (untimed) loads the inputs; `<task>` (timed) does the work."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CACHE = Path(__file__).resolve().parent / ".cache"
TRUTH = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
SPEND = {"p": 6.0, "q": 4.0, "v": 15.0}
CAL_END = "2021-12-31"


# ---------- data: transactions -> RFM ----------


def transactions_file(rows: int) -> Path:
    """A synthetic transaction log of `rows` rows (customers = rows / 10), generated once and cached."""
    from clv.simulate import simulate_transactions

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"transactions_{rows}.csv"
    if not path.exists():
        frame = simulate_transactions(customers=max(rows // 10, 1), transactions=rows, seed=rows % 9973)
        tmp = path.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
    return path


def clv_rfm(rows: int) -> dict[str, Any]:
    from clv.config import DataConfig
    from clv.data import load_transactions, rfm_summary

    path = transactions_file(rows)
    # returns="drop": the positive rows, the same input lifetimes is given
    tx = load_transactions(str(path), DataConfig(source=str(path), returns="drop"))
    rfm = rfm_summary(tx, dt.date(2021, 12, 31), None, "D")
    return {"customers": len(rfm.frame), "repeats": int(rfm.frame["frequency"].sum())}


def prepare_lifetimes_rfm(rows: int) -> pd.DataFrame:
    return pd.read_csv(transactions_file(rows))


def lifetimes_rfm(frame: pd.DataFrame, rows: int) -> dict[str, Any]:
    from lifetimes.utils import summary_data_from_transaction_data

    # lifetimes has no returns policy: give it the positive rows, as clv's `drop` would
    frame = frame[frame["amount"] > 0]
    rfm = summary_data_from_transaction_data(
        frame, "customer_id", "date", monetary_value_col="amount", observation_period_end=CAL_END, freq="D"
    )
    return {"customers": len(rfm), "repeats": int(rfm["frequency"].sum())}


# ---------- models: fit, predict, value ----------


def customers(n: int) -> pd.DataFrame:
    """n synthetic customers from BG/NBD + Gamma-Gamma with known parameters (CDNOW for n = 0)."""
    if n == 0:
        from clv.config import DataConfig
        from clv.data import load_transactions, rfm_summary

        tx = load_transactions("cdnow", DataConfig(source="cdnow", duplicates="keep"))
        return rfm_summary(tx, dt.date(1997, 9, 30), None, "W").frame
    from clv.simulate import simulate_bgnbd, simulate_gamma_gamma

    rfm = simulate_bgnbd(n, *TRUTH.values(), T=52.0, seed=n)
    rfm["monetary_value"] = simulate_gamma_gamma(rfm["frequency"].to_numpy(), *SPEND.values(), seed=n + 1)
    return rfm


def prepare_clv_fit(n: int) -> pd.DataFrame:
    import clv.pipeline  # noqa: F401 - imported here, untimed, as a long-running service would have it

    return customers(n)


def clv_fit(rfm: pd.DataFrame, n: int) -> dict[str, Any]:
    from clv import BetaGeoModel, GammaGammaModel
    from clv.pipeline import fit_together

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg, gg = fit_together(BetaGeoModel(), GammaGammaModel(), rfm)
    assert gg is not None
    return {"bgnbd": bg.params_, "gamma_gamma": gg.params_, "unique_rows": bg.n_unique_}


prepare_lifetimes_fit = prepare_clv_fit


def lifetimes_fit(rfm: pd.DataFrame, n: int) -> dict[str, Any]:
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    bg = BetaGeoFitter().fit(rfm["frequency"], rfm["recency"], rfm["T"])
    repeat = rfm[rfm["frequency"] > 0]
    gg = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    return {"bgnbd": bg.params_.to_dict(), "gamma_gamma": gg.params_.to_dict()}


def prepare_pymc_marketing_fit(n: int) -> pd.DataFrame:
    return customers(n)


def pymc_marketing_fit(rfm: pd.DataFrame, n: int) -> dict[str, Any]:
    from pymc_marketing.clv import BetaGeoModel

    data = rfm.rename(columns={"customer_id": "customer_id"})[["customer_id", "frequency", "recency", "T"]]
    model = BetaGeoModel(data=data)
    model.fit(method="map", progressbar=False)
    return {"bgnbd": {k: float(v) for k, v in model.fit_summary().items()}}


def prepare_clv_value(n: int) -> Any:
    from clv import BetaGeoModel, GammaGammaModel

    bg = BetaGeoModel.from_params(**TRUTH) if n else BetaGeoModel.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
    return customers(n), bg, GammaGammaModel.from_params(**SPEND)


def clv_value(state: Any, n: int) -> dict[str, Any]:
    from clv.value import value_customers

    rfm, bg, gg = state
    result = value_customers(bg, gg, rfm, 52.0, 0.10, 1.0, "W", residual=False)
    return {"total_clv": float(result.customers["clv"].sum())}


def prepare_lifetimes_value(n: int) -> Any:
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    bg, gg = BetaGeoFitter(), GammaGammaFitter()
    bg.params_ = pd.Series(TRUTH if n else {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426})
    gg.params_ = pd.Series(SPEND)
    return customers(n), bg, gg


def lifetimes_value(state: Any, n: int) -> dict[str, Any]:
    rfm, bg, gg = state
    bg.predict = bg.conditional_expected_number_of_purchases_up_to_time  # what lifetimes' fit would attach
    f, r, t = rfm["frequency"], rfm["recency"], rfm["T"]
    bg.conditional_probability_alive(f, r, t)
    bg.conditional_expected_number_of_purchases_up_to_time(52.0, f, r, t)
    m = pd.Series(np.where(f > 0, rfm["monetary_value"], 0.0), index=rfm.index)
    clv = gg.customer_lifetime_value(bg, f, r, t, m, time=12, discount_rate=0.10 / 12, freq="W")
    return {"total_clv": float(np.sum(clv))}


# ---------- Bayesian: sampling, posterior CLV, the whole run ----------

BG_CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
GG_CDNOW = {"p": 6.25, "q": 3.74, "v": 15.44}


def _draws(center: dict[str, float], n: int, scale: float, seed: int) -> np.ndarray:
    """n parameter draws around `center` (log-normal, a stand-in for a posterior: same work, no sampling)."""
    values = np.array(list(center.values()))
    return values * np.exp(np.random.default_rng(seed).normal(0.0, scale, (n, values.size)))


#: the NUTS rows of the bench: clv's model class, pymc-marketing's, and the data (CDNOW, or BG/BB's donations)
NUTS_MODELS = {
    "bgnbd": ("BetaGeoModel", "BetaGeoModel", "cdnow"),
    "mbgnbd": ("ModifiedBetaGeoModel", "ModifiedBetaGeoModel", "cdnow"),
    "pareto_nbd": ("ParetoNBDModel", "ParetoNBDModel", "cdnow"),
    "gamma_gamma": ("GammaGammaModel", "GammaGammaModel", "cdnow"),
    "bgbb": ("BetaGeoBetaBinomModel", "BetaGeoBetaBinomModel", "donations"),
}


def _nuts_data(model: str) -> pd.DataFrame:
    if NUTS_MODELS[model][2] == "cdnow":
        return customers(0)
    from clv.data import load_donations

    return load_donations().rename(columns={"periods": "T"})


def prepare_clv_nuts(n: int, model: str = "bgnbd", **_: Any) -> pd.DataFrame:
    import clv.bayes.fit  # noqa: F401 - imported untimed (as pymc-marketing is), as a long-running service has it

    return _nuts_data(model)


def clv_nuts(
    rfm: pd.DataFrame, n: int, model: str = "bgnbd", sampler: str = "auto", flat: bool = False
) -> dict[str, Any]:
    """NUTS, 4 chains x 1,000 draws after 1,000 tuning, the default priors (or flat ones on the parameters):
    compile and sampling seconds, R-hat, least bulk ESS and ESS per second, and how far the medians are from the
    maximum-likelihood fit. Flat priors make the posterior improper along a model's no-dropout or fixed-p limit
    (the likelihood tends to a constant there): Pareto/NBD's chains then drift to beta -> infinity."""
    import clv
    from clv.bayes.fit import fit_posterior
    from clv.config import BayesConfig, PriorConfig

    cls = getattr(clv, NUTS_MODELS[model][0])
    priors = {name: PriorConfig(distribution="flat") for name in cls.param_names} if flat else {}
    weights = rfm.get("weights")
    options = BayesConfig(sampler=sampler, progress=False, priors=priors)
    post = fit_posterior(cls(), rfm, options, seed=1, weights=weights)
    d = post.diagnostics
    medians = np.median(post.draws, axis=0)
    mle = np.array([post.mle[k] for k in post.param_names]) if post.mle else medians
    return {
        "sampler": d.sampler,
        "compile": d.compile_seconds,
        "sampling": d.sampling_seconds,
        "r_hat": d.r_hat_max,
        "ess_bulk": d.ess_bulk_min,
        "ess_per_second": d.ess_bulk_per_second,
        "divergences": d.divergences,
        "median_vs_mle": float(np.max(np.abs(medians / mle - 1.0))),
    }


def prepare_pymc_marketing_nuts(n: int, model: str = "bgnbd", **_: Any) -> pd.DataFrame:
    import pymc_marketing.clv  # noqa: F401 - imported untimed, as clv is

    return _nuts_data(model)


def prepare_clv_nuts_fit(n: int) -> pd.DataFrame:
    import clv.bayes.fit  # noqa: F401

    return customers(n)


def clv_nuts_fit(rfm: pd.DataFrame, n: int) -> dict[str, Any]:
    """NUTS for BG/NBD and Gamma-Gamma on n customers with the default settings (4 chains x 1,000 draws after
    1,000 tuning, nutpie), compile included."""
    from clv import BetaGeoModel, GammaGammaModel
    from clv.bayes.fit import fit_posterior
    from clv.config import BayesConfig

    options = BayesConfig(inference="nuts", progress=False)
    out: dict[str, Any] = {}
    for name, model, seed in (("bgnbd", BetaGeoModel(), 1), ("gamma_gamma", GammaGammaModel(), 2)):
        d = fit_posterior(model, rfm, options, seed=seed).diagnostics
        out[name] = {"compile": d.compile_seconds, "sampling": d.sampling_seconds, "r_hat": d.r_hat_max}
    return out


def prepare_pymc_marketing_nuts_fit(n: int) -> pd.DataFrame:
    import pymc_marketing.clv  # noqa: F401

    return customers(n)


def pymc_marketing_nuts_fit(rfm: pd.DataFrame, n: int) -> dict[str, Any]:
    """pymc-marketing's BG/NBD and Gamma-Gamma by NUTS on nutpie, the same chains, draws and tuning."""
    bg = pymc_marketing_nuts(rfm.assign(customer_id=np.arange(len(rfm))), n, model="bgnbd")
    gg = pymc_marketing_nuts(rfm.assign(customer_id=np.arange(len(rfm))), n, model="gamma_gamma")
    return {"bgnbd": bg["mean"], "gamma_gamma": gg["mean"]}


def pymc_marketing_nuts(rfm: pd.DataFrame, n: int, model: str = "bgnbd", sampler: str = "nutpie") -> dict[str, Any]:
    """pymc-marketing's model with its default priors, the same chains, draws and tuning, on `sampler`."""
    import pymc_marketing.clv as pmm

    cls = getattr(pmm, NUTS_MODELS[model][1])
    if model == "gamma_gamma":
        data = rfm[rfm["frequency"] > 0][["customer_id", "frequency", "monetary_value"]]
    elif "weights" in rfm:  # pymc-marketing takes no weights: one row per customer
        data = rfm.loc[rfm.index.repeat(rfm["weights"].astype(int))].reset_index(drop=True)
        data = data.assign(customer_id=np.arange(len(data)))[["customer_id", "frequency", "recency", "T"]]
    else:
        data = rfm[["customer_id", "frequency", "recency", "T"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = cls(data=data)
        fitted.fit(
            method="mcmc",
            chains=4,
            draws=1000,
            tune=1000,
            cores=2,
            random_seed=1,
            progressbar=False,
            nuts_sampler=sampler,
        )
    posterior = fitted.idata.posterior
    return {"sampler": sampler, "mean": {str(k): float(posterior[k].mean()) for k in posterior.data_vars}}


#: centres of the stand-in posteriors: the published CDNOW (weeks) and donations estimates
POSTERIOR_CENTRES = {
    "bgnbd": BG_CDNOW,
    "pareto_nbd": {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},
    "bgbb": {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783},
}


def _posterior(model: str, n_draws: int = 4000) -> Any:
    from clv.bayes.posterior import Diagnostics, Posterior

    diag = Diagnostics("nuts", "pymc", 4, 1000, 1000, 0.0)
    centre = POSTERIOR_CENTRES[model]
    return Posterior(model, tuple(centre), _draws(centre, n_draws, 0.05, 1), diag, {})


def prepare_clv_posterior_clv(n: int, model: str = "bgnbd") -> Any:
    import numba  # noqa: F401 - imported here, untimed, as a long-running service would have it

    from clv.bayes.posterior import Diagnostics, Posterior

    rfm = customers(n)
    diag = Diagnostics("nuts", "pymc", 4, 1000, 1000, 0.0)
    gg = Posterior("gamma_gamma", ("p", "q", "v"), _draws(GG_CDNOW, 4000, 0.05, 2), diag, {})
    return rfm, _posterior(model), gg


def clv_posterior_clv(state: Any, n: int, model: str = "bgnbd") -> dict[str, Any]:
    """12-month CLV per customer over all 4,000 draws: means, 90% intervals, predictive intervals, forecast
    (`model`: bgnbd or pareto_nbd, with Gamma-Gamma spend)."""
    import clv
    from clv.bayes.predict import DrawOptions, ValueOptions, value_posterior

    rfm, purchase, gg = state
    cls = getattr(clv, NUTS_MODELS[model][0])
    options = ValueOptions(52.0, 0.10, 1.0, "W", DrawOptions(0.9, 4000, 1))
    result = value_posterior(cls, purchase, gg, rfm, options)
    return {"total_clv": float(result.customers["clv"].sum()), "draws": result.n_draws}


def prepare_clv_posterior_predictions(n: int, model: str = "bgbb", **_: Any) -> Any:
    data = _nuts_data(model)
    if "weights" in data:  # one row per customer, as the predictions take them
        data = data.loc[data.index.repeat(data["weights"].astype(int))].reset_index(drop=True)
    return data, _posterior(model)


def clv_posterior_predictions(state: Any, n: int, model: str = "bgbb", horizon: float = 5.0) -> dict[str, Any]:
    """Per customer over 4,000 draws: P(alive), expected purchases over `horizon` (5 opportunities for BG/BB)
    with credible intervals, and the predictive interval of the purchases (the holdout check's predictions)."""
    import clv
    from clv.bayes.predict import DrawOptions, posterior_predict, predictive_purchases

    rfm, purchase = state
    cls = getattr(clv, NUTS_MODELS[model][0])
    draws = DrawOptions(0.9, 4000, 1)
    alive = posterior_predict(cls, purchase, rfm, "probability_alive", draws)
    expected = posterior_predict(cls, purchase, rfm, "expected_purchases", draws, horizon=horizon)
    _, total = predictive_purchases(cls, purchase, rfm, horizon, draws)
    return {
        "p_alive": float(alive["mean"].mean()),
        "expected": float(expected["mean"].sum()),
        "predicted_total": total["p50"],
    }


def prepare_pymc_marketing_posterior_clv(n: int) -> Any:
    import arviz as az
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    rfm = customers(n)
    data = rfm[["customer_id", "frequency", "recency", "T", "monetary_value"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]])
        bg.build_model()
        repeat = data[data["frequency"] > 0]
        gg = GammaGammaModel(data=repeat)
        gg.build_model()
    bg_draws, gg_draws = _draws(BG_CDNOW, 4000, 0.05, 1), _draws(GG_CDNOW, 4000, 0.05, 2)
    bg.idata = az.from_dict(posterior={k: bg_draws[:, j].reshape(4, 1000) for j, k in enumerate(BG_CDNOW)})
    gg.idata = az.from_dict(posterior={k: gg_draws[:, j].reshape(4, 1000) for j, k in enumerate(GG_CDNOW)})
    return data, bg, gg


def pymc_marketing_posterior_clv(state: Any, n: int) -> dict[str, Any]:
    data, bg, gg = state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clv = gg.expected_customer_lifetime_value(bg, data, future_t=12, discount_rate=0.10 / 12, time_unit="W")
        interval = clv.quantile([0.05, 0.95], dim=("chain", "draw"))
    return {"total_clv": float(clv.mean(("chain", "draw")).sum()), "intervals": int(interval.size)}


def prepare_clv_bayes_run(n: int, **_: Any) -> pd.DataFrame:
    return customers(n)


def clv_bayes_run(rfm: pd.DataFrame, n: int, inference: str = "auto", draws: int = 500) -> dict[str, Any]:
    """The whole Bayesian run from the RFM table with the default settings (`bayes.inference: auto`, 4 chains x
    1,000 draws, 500 prediction draws): fit both models, per-customer credible and predictive intervals, the
    monthly revenue distribution, and each customer's tier probabilities."""
    from clv import BetaGeoModel, GammaGammaModel
    from clv.bayes.fit import fit_posterior
    from clv.bayes.predict import DrawOptions, ValueOptions, value_posterior
    from clv.config import BayesConfig, TiersConfig
    from clv.tiers import tier_probabilities

    options = BayesConfig(inference=inference, progress=False)
    bg = fit_posterior(BetaGeoModel(), rfm, options, seed=1)
    gg = fit_posterior(GammaGammaModel(), rfm, options, seed=2)
    value = value_posterior(BetaGeoModel, bg, gg, rfm, ValueOptions(52.0, 0.10, 1.0, "W", DrawOptions(0.9, draws, 3)))
    tiers = tier_probabilities(value.clv_draws, value.clv_index, TiersConfig())
    return {
        "inference": [bg.diagnostics.inference, gg.diagnostics.inference],
        "choice": bg.diagnostics.choice,
        "bgnbd": bg.mean(),
        "draws": value.n_draws,
        "revenue_p10_p90": [value.totals["expected_revenue"]["p10"], value.totals["expected_revenue"]["p90"]],
        "top_tier_mean_probability": float(tiers[:, 0].mean()),
    }


# ---------- holdout evaluation ----------

HOLDOUT = {"calibration_end": "2021-06-30", "holdout_end": "2021-12-31"}


def bgnbd_transactions_file(customers: int) -> Path:
    """A transaction log drawn from the BG/NBD process with Gamma-Gamma amounts (TRUTH and SPEND, weeks), first
    purchases spread over the first 13 weeks of 2020, to 2021-12-31; generated once and cached. A model
    evaluation needs data the models can describe: `transactions_file` draws dates uniformly."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"bgnbd_transactions_{customers}.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(customers % 9973)
    lam = rng.gamma(TRUTH["r"], 1.0 / TRUTH["alpha"], customers)  # purchases per week
    p = rng.beta(TRUTH["a"], TRUTH["b"], customers)
    nu = rng.gamma(SPEND["q"], 1.0 / SPEND["v"], customers)
    end = 104.0  # weeks from 2020-01-01 to 2021-12-28
    t = rng.uniform(0.0, 13.0, customers)
    ids, times = [np.arange(customers)], [t.copy()]
    active = np.arange(customers)
    while active.size:
        t[active] += rng.exponential(1.0 / lam[active])
        active = active[t[active] <= end]
        ids.append(active)
        times.append(t[active])
        active = active[rng.random(active.size) >= p[active]]  # drop out after a purchase with probability p
    who, when = np.concatenate(ids), np.concatenate(times)
    amount = np.round(rng.gamma(SPEND["p"], 1.0 / nu[who]), 2) + 0.01
    day = np.datetime64("2020-01-01", "D") + np.floor(when * 7).astype("timedelta64[D]")
    frame = pd.DataFrame({"customer_id": who, "date": day.astype(str), "amount": amount})
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def _evaluation_config(customers: int, models: list[str]) -> Any:
    from clv.config import parse_config

    return parse_config(
        {
            "name": "bench",
            "data": {"source": str(bgnbd_transactions_file(customers))},
            "time": {"unit": "W", **HOLDOUT},
            "evaluation": {"models": models},
        }
    )


def prepare_clv_evaluate(n: int) -> Any:
    return _evaluation_config(n, ["bgnbd"])  # draws the log once, untimed


def clv_evaluate(config: Any, n: int) -> dict[str, Any]:
    """The whole `clv evaluate` job for BG/NBD + Gamma-Gamma from the transaction log, files not written: read
    and validate, summarise, fit, predict the holdout, every metric and table, the weekly tracking curves."""
    from clv.evaluate.job import evaluate

    ev = evaluate(config)
    m = ev.results[0].score.metrics
    return {"customers": m["customers"], "predicted": round(m["predicted_purchases"], 1), "mae": m["mae_purchases"]}


def prepare_clv_evaluate_log(n: int) -> Any:
    """The default candidates (`evaluation.models` unset) on the uniform synthetic log of n rows (2M: 147k
    customers who never drop out), calibration to 2021-06-30, holdout to 2021-12-31."""
    from clv.config import parse_config

    path = transactions_file(n)
    data = {"source": str(path), "returns": "drop"}
    return parse_config({"name": "bench", "data": data, "time": {"unit": "W", **HOLDOUT, "allow_gap": True}})


def clv_evaluate_log(config: Any, n: int) -> dict[str, Any]:
    """`clv evaluate` with its default candidates, files not written."""
    from clv.evaluate.job import evaluate

    ev = evaluate(config)
    return {r.candidate.key: round(float(r.score.metrics["mae_purchases"]), 4) for r in ev.results}


def prepare_clv_pareto_fit(n: int) -> pd.DataFrame:
    import clv.purchase.pareto_nbd  # noqa: F401

    return customers(n)


def clv_pareto_fit(rfm: pd.DataFrame, n: int) -> dict[str, Any]:
    """Pareto/NBD by maximum likelihood on n customers (the analytic gradient, Newton on a weighted sample)."""
    from clv import ParetoNBDModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ParetoNBDModel().fit(rfm)
    return {"params": {k: round(v, 4) for k, v in model.params_.items()}, "unique_rows": model.n_unique_}


def prepare_lifetimes_holdout(n: int) -> pd.DataFrame:
    """The calibration / holdout RFM table (lifetimes' own calibration_and_holdout_data fails on pandas 2)."""
    from clv.data import load_transactions, rfm_summary

    config = _evaluation_config(n, ["bgnbd"])
    tx = load_transactions(config.data.source, config.data)
    return rfm_summary(tx, config.time.calibration_end, config.time.holdout_end, "W").frame


def lifetimes_holdout(rfm: pd.DataFrame, n: int) -> dict[str, Any]:
    """What a lifetimes user writes for the same check, from the RFM table: BG/NBD + Gamma-Gamma fits, holdout
    predictions, and the totals and MAE (no ranking metrics, deciles, tiers, tracking or reports)."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    length = (pd.Timestamp(HOLDOUT["holdout_end"]) - pd.Timestamp(HOLDOUT["calibration_end"])).days / 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BetaGeoFitter().fit(rfm["frequency"], rfm["recency"], rfm["T"])
        buyers = rfm[rfm["frequency"] > 0]
        GammaGammaFitter().fit(buyers["frequency"], buyers["monetary_value"])
        predicted = bg.conditional_expected_number_of_purchases_up_to_time(
            length, rfm["frequency"], rfm["recency"], rfm["T"]
        )
    mae = float(np.abs(predicted - rfm["frequency_holdout"]).mean())
    return {"customers": len(rfm), "predicted": round(float(predicted.sum()), 1), "mae": mae}


# ---------- covariates (issue 13) ----------

#: the synthetic covariates' true coefficients (log scale, CLVTools' parameterisation) per process and column
COVARIATE_TRUTH = {
    "purchase": {"gender": 0.3, "channel": 0.5, "region[south]": -0.2, "region[west]": -0.4},
    "dropout": {"gender": -0.4, "channel": 0.6, "region[south]": 0.1, "region[west]": 0.2},
}


def covariate_customers(n: int, model: str = "pareto_nbd") -> pd.DataFrame:
    """n customers with three categorical covariates (gender, channel: 2 levels; region: 3), drawn from the model
    with `COVARIATE_TRUTH` (each customer's own alpha and beta, or alpha, a and b), acquired day by day over 39
    weeks and observed to week 52 (so histories hardly repeat: about half a million distinct rows)."""
    from clv.covariates import CovariateSet, row_parameters
    from clv.purchase import BetaGeoModel, ParetoNBDModel
    from clv.simulate import simulate_bgnbd_rows, simulate_pareto_nbd_rows

    rng = np.random.default_rng(n)
    frame = pd.DataFrame(
        {
            "gender": rng.integers(0, 2, n),
            "channel": rng.integers(0, 2, n),
            "region": rng.choice(["north", "south", "west"], n),
        }
    )
    cls = ParetoNBDModel if model == "pareto_nbd" else BetaGeoModel
    processes = {p: ["gender", "channel", "region"] for p in ("purchase", "dropout")}
    cov = CovariateSet.learn(frame, processes)
    base = np.array([0.8, 6.0, 0.6, 12.0] if model == "pareto_nbd" else [0.8, 6.0, 0.8, 2.5])
    designs = {p: cov.design(frame, p) for p in processes}
    coefs = {p: np.array([COVARIATE_TRUTH[p][k] for k in cov.design_names(p)]) for p in processes}
    P = row_parameters(base, cls.param_names, cls.covariate_effects, designs, coefs)
    simulate = simulate_pareto_nbd_rows if model == "pareto_nbd" else simulate_bgnbd_rows
    T = 52.0 - np.floor(rng.uniform(0.0, 39.0, n) * 7.0) / 7.0  # acquired over 39 weeks, by the day
    rfm = simulate(P, T, seed=n + 1)
    return pd.concat([rfm.assign(customer_id=rfm["customer_id"].astype(str)), frame], axis=1)


def prepare_clv_covariate_fit(n: int, model: str = "pareto_nbd", **_: Any) -> pd.DataFrame:
    import clv.purchase  # noqa: F401

    return covariate_customers(n, model)


def clv_covariate_fit(rfm: pd.DataFrame, n: int, model: str = "pareto_nbd", covariates: bool = True) -> dict[str, Any]:
    """The purchase model by maximum likelihood with the three covariates on both processes (or without any)."""
    from clv.purchase import BetaGeoModel, ParetoNBDModel

    cls = ParetoNBDModel if model == "pareto_nbd" else BetaGeoModel
    columns = ["gender", "channel", "region"] if covariates else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = cls(purchase_covariates=columns, dropout_covariates=columns).fit(rfm)
    worst = (
        max(
            (abs(fitted.coefficients_[p][k] - v) for p, c in COVARIATE_TRUTH.items() for k, v in c.items()),
            default=0.0,
        )
        if covariates
        else 0.0
    )
    return {"unique_rows": fitted.n_unique_, "max_coefficient_error": round(worst, 4)}
