"""`clv evaluate` as a function: the pipeline's steps (read once, summarise, fit, value) run for every candidate
on the calibration / holdout split, scored, ranked, tracked week by week, and repeated at the rolling origins.
Nothing is written here (see `clv.report.evaluation.write_evaluation`).
"""

from __future__ import annotations

import datetime as dt
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clv.bayes.budget import choose_inference, gibbs_seconds, mle_seconds, nuts_seconds
from clv.compress import unique_histories
from clv.config import RunConfig
from clv.data.customers import attach_covariates
from clv.data.rfm import RfmSummary
from clv.data.rfm_table import is_rfm_table
from clv.data.tracking import RepeatTracking
from clv.errors import ClvWarning, ConfigError, DataError
from clv.evaluate.combination import (
    COMBINATIONS,
    CombinedForecast,
    Verdict,
    equal_weights,
    inverse_error_weights,
    squared_errors,
    verdict,
)
from clv.evaluate.comparison import (
    Candidate,
    CandidateResult,
    best_candidate,
    candidate_config,
    candidates,
    covariate_notes,
    fit_statistics,
    holdout_frame,
    leaderboard,
    method_notes,
)
from clv.evaluate.rolling import STABILITY_METRICS, rolling_origins, stability
from clv.evaluate.scores import HoldoutScore, score_holdout
from clv.evaluate.tracking import conditional_cumulative, unconditional_cumulative
from clv.metric_registry import AMOUNT_CRITERIA
from clv.pipeline import (
    DataStep,
    Progress,
    fit_models,
    has_spend,
    log_splits,
    prepare_data,
    value_models,
)

__all__ = ["Combinations", "Evaluation", "TrackingCurves", "evaluate", "load_origins", "run_candidate"]


@dataclass
class TrackingCurves:
    """Actual weekly repeat purchases and each candidate's expected ones (see `clv.evaluate.tracking`)."""

    actual: RepeatTracking
    unconditional: dict[str, np.ndarray]
    conditional_weeks: np.ndarray
    conditional: dict[str, np.ndarray]

    def table(self, labels: dict[str, str]) -> pd.DataFrame:
        """One row per week: its last day, actual weekly and cumulative repeat purchases, and per candidate the
        expected weekly and cumulative (unconditional) and the conditional cumulative forecast."""
        a = self.actual
        frame = pd.DataFrame(
            {
                "week": np.arange(1, a.week_end.size + 1),
                "week_end": [d.isoformat() for d in a.week_end_dates()],
                "period": np.where(a.week_end <= a.calibration_end, "calibration", "holdout"),
                "actual": a.weekly,
                "actual_cumulative": a.cumulative,
            }
        )
        for key in self.unconditional:
            cumulative = self.unconditional[key]
            frame[f"{key}_expected"] = np.diff(cumulative, prepend=0.0)
            frame[f"{key}_cumulative"] = cumulative
            conditional = np.full(a.week_end.size, np.nan)
            conditional[self.conditional_weeks] = self.conditional[key]
            frame[f"{key}_conditional_cumulative"] = conditional
        return frame


@dataclass(frozen=True)
class Combinations:
    """The forecast combinations (`clv.evaluate.combination`): each one on the run's holdout, its verdict from
    the rolling origins, its weights and scores at each origin, and notes (why none, when none was made)."""

    forecasts: tuple[CombinedForecast, ...] = ()
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    per_origin: dict[str, dict[dt.date, dict[str, Any]]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def kept(self) -> list[CombinedForecast]:
        """The combinations that won in the backtests, in `COMBINATIONS` order."""
        return [f for f in self.forecasts if self.verdicts[f.name].kept]


#: why there are no combinations without rolling origins
NEEDS_ORIGINS = (
    "forecast combinations need rolling origins (evaluation.rolling or evaluation.origins, e.g. --rolling 4): "
    "their weights and the test of whether they beat the best single fit come from the origins"
)


@dataclass
class Evaluation:
    """Everything `clv evaluate` found, before it is written."""

    config: RunConfig
    data: DataStep
    results: list[CandidateResult]
    leaderboard: pd.DataFrame
    best: dict[str, Any]
    tracking: TrackingCurves | None
    origins: list[dt.date] = field(default_factory=list)
    per_origin: pd.DataFrame | None = None
    stability: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    combinations: Combinations = field(default_factory=Combinations)
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        """Key -> label of every ranked entry: the fits, then the kept combinations."""
        return {r.candidate.key: r.candidate.label for r in self.results} | {
            c.key: c.label for c in self.combinations.kept
        }

    @property
    def scores(self) -> dict[str, HoldoutScore]:
        """Label -> holdout scores of every ranked entry (the charts' series)."""
        return {r.candidate.label: r.score for r in self.results} | {c.label: c.score for c in self.combinations.kept}


def _check_holdout(config: RunConfig) -> None:
    if config.time.holdout_end is None:
        raise ConfigError(
            "clv evaluate needs a holdout: time.holdout_end is not set",
            hint="set it in the config or with --set time.holdout_end=YYYY-MM-DD (after time.calibration_end)",
        )


def _check_criterion(config: RunConfig, has_spend: bool) -> None:
    if config.evaluation.rank_by in AMOUNT_CRITERIA and not has_spend:
        raise ConfigError(
            f"evaluation.rank_by {config.evaluation.rank_by} needs amounts, and this data has none",
            hint="rank by a purchase metric, e.g. --set evaluation.rank_by=mae_purchases",
        )


def load_origins(
    config: RunConfig, origins: list[dt.date]
) -> tuple[DataStep, RepeatTracking | None, dict[dt.date, RfmSummary]]:
    """Read and validate once: the main split's data and weekly tracking, and the RFM summary at each origin."""
    if is_rfm_table(config.data.source):
        if origins:
            raise ConfigError(
                "a rolling origin needs a transaction log; this data source is an RFM table",
                hint="drop evaluation.origins / evaluation.rolling, or point data.source at the transactions",
            )
        return prepare_data(config), None, {}
    assert config.time.holdout_end is not None
    length = config.time.holdout_end - config.time.calibration_end
    splits = [(origin, origin + length) for origin in origins if origin != config.time.calibration_end]
    with log_splits(config, splits, main=True, tracking=True) as log:
        assert log.data is not None
        rolling = {}
        for origin, end in splits:
            try:
                summary = log.summary(origin, end)
            except DataError as exc:
                raise DataError(f"rolling origin {origin}: {exc.message}") from None
            rolling[origin] = attach_covariates(config, summary)[0]
    return log.data, log.tracking, rolling


def _run_candidate(
    config: RunConfig, candidate: Candidate, rfm: RfmSummary, strict: bool, progress_bar: bool
) -> CandidateResult:
    cfg = candidate_config(config, candidate)
    assert rfm.holdout_length is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=ClvWarning)
        start = time.perf_counter()
        fitted = fit_models(cfg, rfm.frame, strict, progress_bar)
        seconds = time.perf_counter() - start
        value = value_models(cfg, fitted, rfm.frame, residual=False, calibration_end=rfm.calibration_end)
        predictions = holdout_frame(cfg, fitted, value, rfm.frame, rfm.holdout_length)
    labels = [level.label for level in config.tiers.levels]
    messages = [f"{candidate.label}: {w.message}" for w in caught if issubclass(w.category, ClvWarning)]
    return CandidateResult(
        candidate, fitted, predictions, score_holdout(predictions, labels), fit_statistics(fitted, seconds), messages
    )


def run_candidate(
    config: RunConfig, candidate: Candidate, rfm: RfmSummary, strict: bool, progress_bar: bool
) -> CandidateResult:
    """One candidate fitted on `rfm`'s calibration and scored on its holdout (its fit warnings collected)."""
    return _run_candidate(config, candidate, rfm, strict, progress_bar)


def _tracking(
    config: RunConfig,
    data: DataStep,
    actual: RepeatTracking,
    results: list[CandidateResult],
    combined: list[CombinedForecast],
) -> TrackingCurves:
    """Each fit's curves; a combination's are the weighted sums of its fits' (both curves are sums of
    expectations, so the combination's expectation is the weighted sum)."""
    unit = config.time.unit
    unconditional, conditional = {}, {}
    weeks = np.zeros(0, dtype=np.intp)
    for result in results:
        model = result.fitted.purchase  # a posterior's mean for Bayesian fits
        unconditional[result.candidate.key] = unconditional_cumulative(model, actual, unit, data.rfm.frame)
        weeks, conditional[result.candidate.key] = conditional_cumulative(model, data.rfm.frame, actual, unit)
    key = {r.candidate.label: r.candidate.key for r in results}
    for forecast in combined:
        weights = {key[label]: w for label, w in forecast.weights.items()}
        unconditional[forecast.key] = _weighted_sum(unconditional, weights)
        conditional[forecast.key] = _weighted_sum(conditional, weights)
    return TrackingCurves(actual, unconditional, weeks, conditional)


def _weighted_sum(curves: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    keys = list(weights)
    return np.asarray(sum(weights[k] * curves[k] for k in keys[1:]) + weights[keys[0]] * curves[keys[0]], dtype=float)


def evaluate(
    config: RunConfig, progress: Progress | None = None, strict: bool = False, progress_bar: bool = False
) -> Evaluation:
    """Fit every candidate on the calibration period, score its holdout forecasts, rank the candidates by
    evaluation.rank_by; the weekly tracking curves; and the same at each rolling origin."""
    timings: dict[str, float] = {}
    _check_holdout(config)
    origins = rolling_origins(config)
    step = time.perf_counter()
    _say(progress, "read, validate and summarise")
    data, actual, rolling = load_origins(config, origins)
    if data.rfm.holdout_length is None or "frequency_holdout" not in data.rfm.frame:
        raise DataError(
            f"{config.data.source} has no holdout: an RFM table needs a frequency_holdout column "
            "(and monetary_value_holdout for revenue) to be evaluated"
        )
    _check_criterion(config, has_spend(config, data.rfm.frame))
    timings["data"] = round(time.perf_counter() - step, 4)
    results = []
    n_unique = len(unique_histories(data.rfm.frame)[0])
    for candidate in candidates(config):
        _say(progress, f"fit and score {candidate.label}{_slow_note(config, candidate, n_unique, len(data.rfm.frame))}")
        step = time.perf_counter()
        results.append(_run_candidate(config, candidate, data.rfm, strict, progress_bar))
        timings[candidate.label] = round(time.perf_counter() - step, 4)
    board = leaderboard(results, config.evaluation.rank_by)
    evaluation = Evaluation(
        config, data, results, board, best_candidate(board, config.evaluation.rank_by), None, origins
    )
    evaluation.warnings = [m for r in results for m in r.warnings]
    evaluation.notes = covariate_notes(config) + method_notes(config)
    if origins:
        _rolling(evaluation, rolling, strict, progress)
    else:
        evaluation.combinations = Combinations(notes=(NEEDS_ORIGINS,))
    kept = evaluation.combinations.kept
    if kept:
        rows = [(c.label, c.score.metrics | {"purchase": "combination", "weights": c.weights_text()}) for c in kept]
        evaluation.leaderboard = leaderboard(results, config.evaluation.rank_by, rows)
        evaluation.best = best_candidate(evaluation.leaderboard, config.evaluation.rank_by)
    if actual is not None:
        _say(progress, "weekly tracking curves")
        evaluation.tracking = _tracking(config, data, actual, results, kept)
    evaluation.timings = timings
    return evaluation


#: a candidate expected to take longer than this is said so in its progress line, before it starts (seconds)
SLOW_CANDIDATE_SECONDS = 30.0


def expected_seconds(config: RunConfig, candidate: Candidate, n_unique: int, n_customers: int = 0) -> float:
    """A candidate's expected fit time from the data's unique histories (`clv.bayes.budget`): a
    maximum-likelihood fit, or the Bayesian inference `bayes.inference` resolves to (NUTS's sampling time;
    the approximations cost about a maximum-likelihood fit); Pareto/GGG's Gibbs sampler from the customers."""
    from clv.purchase import PURCHASE_MODELS  # the models import the data layer, which imports the config

    if PURCHASE_MODELS[candidate.purchase].customer_latents:
        return gibbs_seconds(n_customers, config.bayes)
    if candidate.method == "bayes":
        choice = choose_inference(candidate.purchase, n_unique, config.bayes)
        if choice.inference == "nuts":
            return nuts_seconds(candidate.purchase, n_unique, config.bayes)
    return mle_seconds(candidate.purchase, n_unique)


def _slow_note(config: RunConfig, candidate: Candidate, n_unique: int, n_customers: int) -> str:
    """' (expected to take about 4 min on 98,412 unique histories)' for a slow candidate, else ''."""
    from clv.purchase import PURCHASE_MODELS  # the models import the data layer, which imports the config

    seconds = expected_seconds(config, candidate, n_unique, n_customers)
    if seconds <= SLOW_CANDIDATE_SECONDS:
        return ""
    shown = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    if PURCHASE_MODELS[candidate.purchase].customer_latents:
        return f" (expected to take about {shown} on {n_customers:,} customers)"
    return f" (expected to take about {shown} on {n_unique:,} unique histories)"


def _say(progress: Progress | None, step: str) -> None:
    if progress is not None:
        progress(step)


def _rolling(
    evaluation: Evaluation, rolling: dict[dt.date, RfmSummary], strict: bool, progress: Progress | None
) -> None:
    """Every candidate at every origin (the main split's results reused at time.calibration_end), and the
    forecast combinations at each, with weights from the origins before it."""
    config = evaluation.config
    rows = []
    backtest = _Backtest()
    for origin in evaluation.origins:
        if origin == config.time.calibration_end:
            found = evaluation.results
        else:
            _say(progress, f"rolling origin {origin}")
            found = [_run_candidate(config, c, rolling[origin], strict, False) for c in candidates(config)]
            evaluation.warnings += [f"origin {origin}: {m}" for r in found for m in r.warnings]
        combined = backtest.add(config, origin, found)
        for label, scores in [(r.candidate.label, r.score.metrics) for r in found] + [
            (c.label, c.score.metrics) for c in combined
        ]:
            row = {"origin": origin.isoformat(), "candidate": label, "customers": scores["customers"]}
            row |= {m: scores.get(m) for m in ("predicted_purchases", "actual_purchases", *STABILITY_METRICS)}
            rows.append(row)
    evaluation.per_origin = pd.DataFrame(rows).dropna(axis=1, how="all")
    evaluation.stability = stability(evaluation.per_origin)
    evaluation.combinations = backtest.result(config, evaluation.results)


def _combine(
    config: RunConfig, found: list[CandidateResult], errors: dict[dt.date, dict[str, float]]
) -> list[CombinedForecast]:
    """The combinations of one split's fits: equal weights, and (with earlier origins' squared errors in
    `errors`) inverse-error weights from them."""
    if len(found) < 2:
        return []
    frames = {r.candidate.label: r.predictions for r in found}
    labels = list(frames)
    out = [
        CombinedForecast.of(
            config, "equal_weight", frames, dict(zip(labels, equal_weights(len(labels)).tolist(), strict=True))
        )
    ]
    if errors:
        sse = [sum(e[label] for e in errors.values()) for label in labels]
        weights = dict(zip(labels, inverse_error_weights(sse).tolist(), strict=True))
        out.append(CombinedForecast.of(config, "backtest_weighted", frames, weights, tuple(errors)))
    return out


class _Backtest:
    """The combinations origin by origin, oldest first: each origin's combinations use the squared errors of
    the origins before it, then its own are recorded; the scores by `evaluation.rank_by` are kept for the
    verdicts."""

    def __init__(self) -> None:
        self.errors: dict[dt.date, dict[str, float]] = {}
        self.scores: dict[str, dict[dt.date, float]] = {}
        self.per_origin: dict[str, dict[dt.date, dict[str, Any]]] = {name: {} for name in COMBINATIONS}
        self.final: list[CombinedForecast] | None = None

    def add(self, config: RunConfig, origin: dt.date, found: list[CandidateResult]) -> list[CombinedForecast]:
        combined = _combine(config, found, self.errors)
        self.errors[origin] = {r.candidate.label: squared_errors(r.predictions) for r in found}
        criterion = config.evaluation.rank_by
        for label, metrics in [(r.candidate.label, r.score.metrics) for r in found] + [
            (c.name, c.score.metrics) for c in combined
        ]:
            value = metrics.get(criterion)
            self.scores.setdefault(label, {})[origin] = math.nan if value is None else float(value)
        for c in combined:
            self.per_origin[c.name][origin] = {"weights": c.weights, "metrics": c.score.metrics}
        if origin == config.time.calibration_end:
            self.final = combined
        return combined

    def result(self, config: RunConfig, results: list[CandidateResult]) -> Combinations:
        """The combinations on the run's holdout (weights from every origin before time.calibration_end), and
        each one's verdict over the origins."""
        if len(results) < 2:
            return Combinations(notes=("forecast combinations need two or more candidates",))
        final = self.final if self.final is not None else _combine(config, results, self.errors)
        singles = {r.candidate.label: self.scores.get(r.candidate.label, {}) for r in results}
        criterion = config.evaluation.rank_by
        verdicts = {name: verdict(name, self.scores.get(name, {}), singles, criterion) for name in COMBINATIONS}
        return Combinations(tuple(final), verdicts, self.per_origin)
