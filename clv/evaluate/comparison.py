"""Model comparison on a holdout: the candidate fits, each one's holdout predictions and scores, and the
leaderboard that names the best.

A candidate is a purchase model and a fit method (with Gamma-Gamma when the data has amounts), with or without the
config's covariates (when it has a covariates section, both). Its holdout
predictions over the holdout's length L, per customer:
- maximum likelihood: E[X(L) | x, t_x, T], revenue E[X(L) | ...] * E[M | x, m_x] (purchases and spend are
  independent in the Gamma-Gamma model: Fader, Hardie & Lee 2005b, "RFM and CLV", Sec. 3), and
  P(a purchase in the holdout) = 1 - P(X(L) = 0 | x, t_x, T);
- posterior: the posterior means of the same, with predictive intervals of purchases and revenue simulated per
  draw (`clv.bayes.predict.value_posterior` over L, undiscounted, margin 1).
The value the tiers and rank metrics use is the run's CLV (prediction.horizon, discounted), as `clv run` ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clv.bayes.predict import BayesValue, DrawOptions, ValueOptions, posterior_predict, value_posterior
from clv.compress import unique_histories
from clv.config import RunConfig
from clv.covariate_fit import CoefficientLayout
from clv.evaluate import metrics
from clv.evaluate.scores import HoldoutScore
from clv.metric_registry import METRICS, RANK_CRITERIA
from clv.model import NOT_IDENTIFIED, FittedModel
from clv.seeds import stream_seed
from clv.store import FittedModels
from clv.tiers import assign_tiers
from clv.value import ValueResult

__all__ = [
    "Candidate",
    "CandidateResult",
    "best_candidate",
    "candidate_config",
    "candidates",
    "covariate_notes",
    "fit_statistics",
    "holdout_actuals",
    "holdout_frame",
    "leaderboard",
    "method_notes",
    "takes_covariates",
]

#: columns of the leaderboard after rank and candidate, when the fits have them: the fit's, its metrics, its time
LEADERBOARD_COLUMNS = (
    "purchase",
    "method",
    "not_identified",
    "parameters",
    *(m.name for m in METRICS if m.leaderboard),
    "fit_seconds",
    "weights",
)


@dataclass(frozen=True)
class Candidate:
    """A purchase model fitted by a method, with the config's covariates or without."""

    purchase: str
    method: str
    covariates: bool = False

    @property
    def key(self) -> str:
        return f"{self.purchase}{'_covariates' if self.covariates else ''}_{self.method}"

    @property
    def label(self) -> str:
        return f"{self.purchase}{' + covariates' if self.covariates else ''} ({self.method})"


@dataclass
class CandidateResult:
    """One candidate's fit, holdout predictions (see `clv.evaluate.scores.HOLDOUT_COLUMNS`) and scores."""

    candidate: Candidate
    fitted: FittedModels
    predictions: pd.DataFrame
    score: HoldoutScore
    fit: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def takes_covariates(config: RunConfig, purchase: str) -> bool:
    """Whether the purchase model has a process for each of the config's purchase and dropout covariates (spend
    covariates go to the spend model); False without a covariates section."""
    from clv.purchase import PURCHASE_MODELS  # the models import the data layer, which imports the config

    if config.covariates is None:
        return False
    effects = PURCHASE_MODELS[purchase].covariate_effects
    return all(process in effects for process in config.covariates.processes if process != "spend")


def candidates(config: RunConfig) -> list[Candidate]:
    """Every model with every method of the evaluation section, models first; with a covariates section, each
    without and then with the covariates (a model without processes for them: without only, see
    `covariate_notes`)."""
    from clv.purchase import PURCHASE_MODELS  # the models import the data layer, which imports the config

    out = []
    for model in config.evaluation.models:
        for method in _methods_of(model, config.evaluation.methods, PURCHASE_MODELS[model].estimation_methods):
            out.append(Candidate(model, method))
            if takes_covariates(config, model):
                out.append(Candidate(model, method, True))
    return out


def _methods_of(model: str, asked: Sequence[str], has: Sequence[str]) -> list[str]:
    """The evaluation's methods that the model has, in the evaluation's order; a model with none of them (Pareto/
    GGG, Bayesian only, in an evaluation by maximum likelihood) is compared by its own (`method_notes`)."""
    return [m for m in asked if m in has] or list(has)


def method_notes(config: RunConfig) -> list[str]:
    """A note naming the models compared by methods other than the evaluation's (they have none of those)."""
    from clv.purchase import PURCHASE_MODELS  # the models import the data layer, which imports the config

    notes = []
    for model in config.evaluation.models:
        has = PURCHASE_MODELS[model].estimation_methods
        if not any(m in has for m in config.evaluation.methods):
            notes.append(f"{model}: fitted by {', '.join(has)}, its only method(s)")
    return notes


def covariate_notes(config: RunConfig) -> list[str]:
    """A note naming the models compared without the config's covariates because they take none."""
    if config.covariates is None:
        return []
    plain = [m for m in config.evaluation.models if not takes_covariates(config, m)]
    if not plain:
        return []
    return [f"{', '.join(plain)}: no process for the covariates, compared without them"]


def candidate_config(config: RunConfig, candidate: Candidate) -> RunConfig:
    """The run config with the candidate's purchase model and method, and without the covariates section for a
    candidate without covariates."""
    model = config.model.model_copy(update={"purchase": candidate.purchase, "method": candidate.method})
    return config.model_copy(update={"model": model, "covariates": config.covariates if candidate.covariates else None})


def parameter_count(model: FittedModel) -> int:
    """The free parameters of a fit: the base parameters and one per coefficient slot (a constrained
    covariate's coefficient, shared by both processes, counts once)."""
    covariates = model.covariates_
    if covariates is None:
        return len(model.params_)
    return len(model.params_) + CoefficientLayout.of(covariates, model.covariate_options.constrained).size


def not_identified(fitted: FittedModels) -> str:
    """What the candidate's fits cannot identify, in words ("" when nothing): such a fit stays on the leaderboard,
    ranked by its scores, with this flag beside them."""
    keys = list(fitted.purchase.not_identified_)
    if fitted.spend is not None:
        keys += list(fitted.spend.not_identified_)
    return "; ".join(NOT_IDENTIFIED[k] for k in keys)


def fit_statistics(fitted: FittedModels, seconds: float) -> dict[str, Any]:
    """Log-likelihood of the calibration fit (at the posterior mean for a posterior), parameters, customers,
    AIC and BIC of the purchase model; the spend model's log-likelihood; the fit's time."""
    purchase = fitted.purchase
    k = parameter_count(purchase)
    n = purchase.n_customers_ or 0
    ll = purchase.log_likelihood_
    out: dict[str, Any] = {
        "params": dict(purchase.params_),
        "coefficients": purchase.coefficients_ or None,
        "parameters": k,
        "observations": n,
        "log_likelihood": ll,
        "fit_seconds": round(seconds, 3),
        "not_identified": not_identified(fitted),
    }
    if ll is not None and n > 0:
        out |= metrics.information_criteria(float(ll), k, n)
    if fitted.spend is not None:
        out["spend_params"] = dict(fitted.spend.params_)
        out["spend_log_likelihood"] = fitted.spend.log_likelihood_
    for name, posterior in (("purchase", fitted.purchase_posterior), ("spend", fitted.spend_posterior)):
        if posterior is not None:
            d = posterior.diagnostics
            out[f"{name}_diagnostics"] = {"inference": d.inference, "passed": d.passed, "problems": list(d.problems)}
    return out


def holdout_frame(
    config: RunConfig, fitted: FittedModels, value: ValueResult | BayesValue, rfm: pd.DataFrame, length: float
) -> pd.DataFrame:
    """Per customer: the run's value, tier and P(alive), and the holdout predictions beside the outcomes."""
    customers = value.customers
    ids = rfm["customer_id"].to_numpy()
    labels = np.asarray([level.label for level in config.tiers.levels], dtype=object)
    clv = customers["clv"].to_numpy(dtype=float)
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "frequency": rfm["frequency"].to_numpy(),
            "clv": clv,
            "tier": labels[assign_tiers(clv, config.tiers, ids)],
            "p_alive": customers["p_alive"].to_numpy(dtype=float),
        }
    )
    if fitted.purchase_posterior is None:
        purchase = fitted.purchase
        unique, inverse, _ = unique_histories(rfm, purchase.covariate_columns)  # per distinct history
        frame["p_purchase"] = 1.0 - purchase.probability_of_purchases(unique, 0, length)[inverse]
        frame["predicted_purchases"] = purchase.expected_purchases(unique, length)[inverse]
        if fitted.spend is not None and "monetary_value_holdout" in rfm:
            frame["predicted_revenue"] = frame["predicted_purchases"] * fitted.spend.expected_spend(rfm)
    else:
        frame = _posterior_holdout(config, fitted, rfm, length, frame)
    actual = holdout_actuals(rfm, "predicted_revenue" in frame)
    frame["actual_purchases"] = actual["purchases"]
    if "revenue" in actual:
        frame["actual_revenue"] = actual["revenue"]
    return frame


def holdout_actuals(rfm: pd.DataFrame, revenue: bool) -> dict[str, np.ndarray]:
    """Per customer of the calibration's cohort, what the holdout scores against: repeat purchases in the holdout
    (`frequency_holdout`) and, with `revenue`, their revenue (the purchases times their mean amount)."""
    purchases = rfm["frequency_holdout"].to_numpy(dtype=float)
    out = {"purchases": purchases}
    if revenue:
        out["revenue"] = purchases * rfm["monetary_value_holdout"].to_numpy(dtype=float)
    return out


def _posterior_holdout(
    config: RunConfig, fitted: FittedModels, rfm: pd.DataFrame, length: float, frame: pd.DataFrame
) -> pd.DataFrame:
    assert fitted.purchase_posterior is not None
    bayes, seed, cls = config.bayes, config.model.seed, type(fitted.purchase)
    held = value_posterior(
        cls,
        fitted.purchase_posterior,
        fitted.spend_posterior,
        rfm,
        ValueOptions(
            length,
            0.0,
            1.0,
            config.time.unit,
            DrawOptions(bayes.interval, bayes.prediction_draws, stream_seed(seed, "evaluation_value")),
            workers=bayes.cores,
        ),
    ).customers
    none = posterior_predict(
        cls,
        fitted.purchase_posterior,
        rfm,
        "probability_of_purchases",
        DrawOptions(bayes.interval, bayes.prediction_draws, stream_seed(seed, "evaluation_no_purchase")),
        n=0,
        horizon=length,
    )
    frame["p_purchase"] = 1.0 - none["mean"].to_numpy(dtype=float)
    frame["predicted_purchases"] = held["expected_purchases"].to_numpy(dtype=float)
    frame["predicted_purchases_lo"] = held["purchases_predicted_lo"].to_numpy(dtype=float)
    frame["predicted_purchases_hi"] = held["purchases_predicted_hi"].to_numpy(dtype=float)
    if fitted.spend_posterior is not None and "monetary_value_holdout" in rfm:
        frame["predicted_revenue"] = held["clv"].to_numpy(dtype=float)
        frame["predicted_revenue_lo"] = held["revenue_predicted_lo"].to_numpy(dtype=float)
        frame["predicted_revenue_hi"] = held["revenue_predicted_hi"].to_numpy(dtype=float)
    return frame


def leaderboard(
    results: list[CandidateResult], rank_by: str, others: Sequence[tuple[str, dict[str, Any]]] = ()
) -> pd.DataFrame:
    """One row per candidate, and per entry of `others` (a label and its columns: the forecast combinations),
    best first by `rank_by` (entries lacking it last), with its rank."""
    rows = []
    columns = LEADERBOARD_COLUMNS if rank_by in LEADERBOARD_COLUMNS else (*LEADERBOARD_COLUMNS, rank_by)
    entries = [
        (r.candidate.label, r.fit | r.score.metrics | {"purchase": r.candidate.purchase, "method": r.candidate.method})
        for r in results
    ]
    for label, merged in [*entries, *others]:
        row: dict[str, Any] = {"candidate": label}
        row |= {c: merged.get(c) for c in columns if c in merged}
        rows.append(row)
    frame = pd.DataFrame(rows)
    if rank_by not in frame:
        frame[rank_by] = np.nan
    higher = RANK_CRITERIA[rank_by]
    key = pd.to_numeric(frame[rank_by], errors="coerce")
    frame = frame.assign(_key=-key if higher else key).sort_values("_key", kind="stable", na_position="last")
    frame = frame.drop(columns="_key").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.dropna(axis=1, how="all")


#: a best fit ahead of the runner-up by less than this share of its value is no real winner
TIE_MARGIN = 0.005


def best_candidate(board: pd.DataFrame, rank_by: str) -> dict[str, Any]:
    """The leaderboard's first row, with the criterion and its value; `tied_with` names the runner-up when the
    two differ by less than `TIE_MARGIN` of the value (the ranking between them is then noise)."""
    top = board.iloc[0]
    value = top.get(rank_by)
    value = None if value is None or pd.isna(value) else float(value)
    tied_with = None
    if value is not None and len(board) > 1:
        second = board.iloc[1].get(rank_by)
        if second is not None and not pd.isna(second) and abs(float(second) - value) <= TIE_MARGIN * abs(value):
            tied_with = str(board.iloc[1]["candidate"])
    return {
        "candidate": str(top["candidate"]),
        "criterion": rank_by,
        "value": value,
        "higher_is_better": RANK_CRITERIA[rank_by],
        "not_identified": str(top.get("not_identified") or ""),
        "tied_with": tied_with,
    }
