"""`clv evaluate` as a function: the pipeline's steps (read once, summarise, fit, value) run for every candidate
on the calibration / holdout split, scored, ranked, tracked week by week, and repeated at the rolling origins.
Nothing is written here (see `clv.report.evaluation.write_evaluation`).
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from clv.bayes.budget import choose_inference, mle_seconds, nuts_seconds
from clv.compress import unique_histories
from clv.config import RunConfig
from clv.data.customers import attach_covariates
from clv.data.rfm import RfmSummary, rfm_summary
from clv.data.rfm_table import is_rfm_table
from clv.data.tracking import RepeatTracking, repeat_tracking
from clv.data.transactions import load_transactions
from clv.errors import ClvWarning, ConfigError, DataError
from clv.evaluate.comparison import (
    Candidate,
    CandidateResult,
    best_candidate,
    candidate_config,
    candidates,
    fit_statistics,
    holdout_frame,
    leaderboard,
)
from clv.evaluate.rolling import STABILITY_METRICS, rolling_origins, stability
from clv.evaluate.scores import score_holdout
from clv.evaluate.tracking import conditional_cumulative, unconditional_cumulative
from clv.metric_registry import AMOUNT_CRITERIA
from clv.pipeline import (
    DataStep,
    Progress,
    fit_models,
    has_spend,
    prepare_data,
    summarise,
    value_models,
    with_covariates,
)

__all__ = ["Evaluation", "TrackingCurves", "evaluate", "load_origins", "run_candidate"]


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

    @property
    def labels(self) -> dict[str, str]:
        return {r.candidate.key: r.candidate.label for r in self.results}


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
    with duckdb.connect() as con:
        tx = load_transactions(config.data.source, config.data, con)
        data = with_covariates(config, summarise(config, tx))
        tracking = repeat_tracking(tx, config.time.calibration_end, config.time.holdout_end)
        rolling = {}
        for origin in origins:
            if origin == config.time.calibration_end:
                continue
            try:
                summary = rfm_summary(tx, origin, origin + length, config.time.unit)
            except DataError as exc:
                raise DataError(f"rolling origin {origin}: {exc.message}") from None
            rolling[origin] = attach_covariates(config, summary)[0]
    return data, tracking, rolling


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
    config: RunConfig, data: DataStep, actual: RepeatTracking, results: list[CandidateResult]
) -> TrackingCurves:
    unit = config.time.unit
    unconditional, conditional = {}, {}
    weeks = np.zeros(0, dtype=np.intp)
    for result in results:
        model = result.fitted.purchase  # a posterior's mean for Bayesian fits
        unconditional[result.candidate.key] = unconditional_cumulative(model, actual, unit, data.rfm.frame)
        weeks, conditional[result.candidate.key] = conditional_cumulative(model, data.rfm.frame, actual, unit)
    return TrackingCurves(actual, unconditional, weeks, conditional)


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
        _say(progress, f"fit and score {candidate.label}{_slow_note(config, candidate, n_unique)}")
        step = time.perf_counter()
        results.append(_run_candidate(config, candidate, data.rfm, strict, progress_bar))
        timings[candidate.label] = round(time.perf_counter() - step, 4)
    board = leaderboard(results, config.evaluation.rank_by)
    tracking = None
    if actual is not None:
        _say(progress, "weekly tracking curves")
        tracking = _tracking(config, data, actual, results)
    evaluation = Evaluation(
        config, data, results, board, best_candidate(board, config.evaluation.rank_by), tracking, origins
    )
    evaluation.warnings = [m for r in results for m in r.warnings]
    if origins:
        _rolling(evaluation, rolling, strict, progress)
    evaluation.timings = timings
    return evaluation


#: a candidate expected to take longer than this is said so in its progress line, before it starts (seconds)
SLOW_CANDIDATE_SECONDS = 30.0


def expected_seconds(config: RunConfig, candidate: Candidate, n_unique: int) -> float:
    """A candidate's expected fit time from the data's unique histories (`clv.bayes.budget`): a
    maximum-likelihood fit, or the Bayesian inference `bayes.inference` resolves to (NUTS's sampling time;
    the approximations cost about a maximum-likelihood fit)."""
    if candidate.method == "bayes":
        choice = choose_inference(candidate.purchase, n_unique, config.bayes)
        if choice.inference == "nuts":
            return nuts_seconds(candidate.purchase, n_unique, config.bayes)
    return mle_seconds(candidate.purchase, n_unique)


def _slow_note(config: RunConfig, candidate: Candidate, n_unique: int) -> str:
    """' (expected to take about 4 min on 98,412 unique histories)' for a slow candidate, else ''."""
    seconds = expected_seconds(config, candidate, n_unique)
    if seconds <= SLOW_CANDIDATE_SECONDS:
        return ""
    shown = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    return f" (expected to take about {shown} on {n_unique:,} unique histories)"


def _say(progress: Progress | None, step: str) -> None:
    if progress is not None:
        progress(step)


def _rolling(
    evaluation: Evaluation, rolling: dict[dt.date, RfmSummary], strict: bool, progress: Progress | None
) -> None:
    """Every candidate at every origin (the main split's results reused at time.calibration_end)."""
    config = evaluation.config
    rows = []
    for origin in evaluation.origins:
        if origin == config.time.calibration_end:
            found = evaluation.results
        else:
            _say(progress, f"rolling origin {origin}")
            found = [_run_candidate(config, c, rolling[origin], strict, False) for c in candidates(config)]
            evaluation.warnings += [f"origin {origin}: {m}" for r in found for m in r.warnings]
        for result in found:
            scores = result.score.metrics
            row = {"origin": origin.isoformat(), "candidate": result.candidate.label, "customers": scores["customers"]}
            row |= {m: scores.get(m) for m in ("predicted_purchases", "actual_purchases", *STABILITY_METRICS)}
            rows.append(row)
    evaluation.per_origin = pd.DataFrame(rows).dropna(axis=1, how="all")
    evaluation.stability = stability(evaluation.per_origin)
