"""Forecast combinations: the candidates' per-customer holdout forecasts averaged, scored like any candidate, and
kept on the leaderboard only where they win in the rolling-origin backtests.

Two combinations (`COMBINATIONS`), each a weighted average of the single fits' per-customer forecasts (holdout
purchases and revenue, CLV, P(alive), P(a purchase in the holdout)), one weight vector for every quantity so that
the combined revenue stays the combined purchases times the (shared) spend forecast; for the probabilities the
average is the linear opinion pool, a probability of the mixture of the candidates' models (Stone 1961):
- `equal_weight`: w_i = 1/m, the simple average, which estimated weights seldom beat in practice (the
  "forecast combination puzzle": Timmermann 2006, "Forecast combinations", Handbook of Economic Forecasting 1,
  ch. 4; Smith & Wallis 2009);
- `backtest_weighted`: w_i proportional to 1 / SSE_i, SSE_i the candidate's sum over customers and earlier origins
  of the squared error of holdout purchases (Bates & Granger 1969, "The combination of forecasts", Oper. Res.
  Q. 20: weights inversely proportional to the past squared errors, the forecasts' correlations ignored).
  Inverse-error weights need no optimisation and cannot swing to a corner on the few origins a data set has (an
  estimated optimum with 3-4 origins would chase noise; Timmermann 2006).

No look-ahead in the weights: the weights at an origin come only from the origins before it (an expanding
window), and the run's own holdout uses the weights of the origins before time.calibration_end. An origin's
holdout is as long as the run's, so it overlaps the later origins' holdouts in calendar time: the weights have
seen part of that period, though never the errors of the split they are used on.

Keep or drop (`verdict`): a combination enters the ranked leaderboard only when its mean of `evaluation.rank_by`
over the origins where it has a score beats the best single candidate's mean over the same origins.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.config import RunConfig
from clv.errors import ClvError
from clv.evaluate.scores import HoldoutScore, score_holdout
from clv.metric_registry import RANK_CRITERIA
from clv.tiers import assign_tiers

__all__ = [
    "COMBINATIONS",
    "COMBINED_COLUMNS",
    "CombinedForecast",
    "Verdict",
    "combine_forecasts",
    "combine_predictions",
    "equal_weights",
    "inverse_error_weights",
    "squared_errors",
    "verdict",
]

FloatArray = NDArray[np.float64]

#: the combinations by name, with their labels on the leaderboard
COMBINATIONS: dict[str, str] = {
    "equal_weight": "equal-weight average",
    "backtest_weighted": "backtest-weighted average",
}

#: the per-customer forecasts a combination averages (those a candidate has); predictive intervals are not
#: averaged (an average of quantiles is not a quantile of the mixture), so a combination has no coverage
COMBINED_COLUMNS = ("clv", "p_alive", "p_purchase", "predicted_purchases", "predicted_revenue")

#: the outcome columns copied from the candidates' frames
_OUTCOME_COLUMNS = ("customer_id", "frequency", "actual_purchases", "actual_revenue")


def equal_weights(m: int) -> FloatArray:
    """w_i = 1/m for m forecasts: the simple average (Timmermann 2006)."""
    if m < 1:
        raise ClvError(f"a combination needs at least one forecast, got {m}")
    return np.full(m, 1.0 / m)


def inverse_error_weights(sse: Sequence[float] | FloatArray) -> FloatArray:
    """w_i = (1 / SSE_i) / sum_j (1 / SSE_j) (Bates & Granger 1969, weights inversely proportional to the past
    squared errors; their covariances ignored). Forecasts with SSE 0 (no error) share the whole weight."""
    e = np.asarray(sse, dtype=float)
    if e.size == 0 or not np.isfinite(e).all() or (e < 0).any():
        raise ClvError(f"inverse-error weights need finite, non-negative squared errors, got {e.tolist()}")
    perfect = e == 0
    if perfect.any():
        return perfect / perfect.sum()
    inverse = 1.0 / e
    return np.asarray(inverse / inverse.sum(), dtype=float)


def combine_forecasts(forecasts: FloatArray, weights: FloatArray) -> FloatArray:
    """sum_i w_i f_i per customer: `forecasts` (m forecasts x n customers), `weights` (m, non-negative, summing
    to 1)."""
    f, w = np.asarray(forecasts, dtype=float), np.asarray(weights, dtype=float)
    if f.ndim != 2 or w.shape != (f.shape[0],):
        raise ClvError(f"forecasts must be (m, n) and weights (m,), got {f.shape} and {w.shape}")
    if (w < 0).any() or not math.isclose(float(w.sum()), 1.0, rel_tol=0, abs_tol=1e-12):
        raise ClvError(f"combination weights must be non-negative and sum to 1, got {w.tolist()}")
    return np.asarray(w @ f, dtype=float)


def squared_errors(frame: pd.DataFrame) -> float:
    """Sum over customers of (predicted - actual holdout purchases)^2 of one candidate's holdout frame."""
    error = frame["predicted_purchases"].to_numpy(dtype=float) - frame["actual_purchases"].to_numpy(dtype=float)
    return float(error @ error)


def combine_predictions(
    config: RunConfig, frames: Mapping[str, pd.DataFrame], weights: Mapping[str, float]
) -> pd.DataFrame:
    """The combined holdout frame (see `clv.evaluate.scores.HOLDOUT_COLUMNS`): the outcomes of the candidates'
    frames (one customer order), the weighted average of each of `COMBINED_COLUMNS` every frame has, and the
    tiers of the combined CLV (`tiers`)."""
    labels = list(frames)
    first = frames[labels[0]]
    ids = first["customer_id"].to_numpy()
    for label in labels[1:]:
        if not np.array_equal(frames[label]["customer_id"].to_numpy(), ids):
            raise ClvError(f"combination: {label} predicts other customers (or another order) than {labels[0]}")
    w = np.array([weights[label] for label in labels], dtype=float)
    out = first[[c for c in _OUTCOME_COLUMNS if c in first]].copy()
    for column in COMBINED_COLUMNS:
        if all(column in frames[label] for label in labels):
            stacked = np.vstack([frames[label][column].to_numpy(dtype=float) for label in labels])
            out[column] = combine_forecasts(stacked, w)
    names = np.asarray([level.label for level in config.tiers.levels], dtype=object)
    out["tier"] = names[assign_tiers(out["clv"].to_numpy(dtype=float), config.tiers, ids)]
    return out


@dataclass(frozen=True)
class CombinedForecast:
    """One combination on one split: its weights (by candidate label), the origins they were estimated on
    (none for equal weights), the combined per-customer predictions and their scores."""

    name: str
    weights: dict[str, float]
    weights_from: tuple[dt.date, ...]
    predictions: pd.DataFrame
    score: HoldoutScore

    @property
    def label(self) -> str:
        return COMBINATIONS[self.name]

    @property
    def key(self) -> str:
        """The prefix of its columns in predictions.parquet and tracking.csv, as a candidate's key."""
        return self.name

    def weights_text(self) -> str:
        """'pareto_nbd (mle) 0.334; bgnbd (mle) 0.333; ...' in the candidates' order."""
        return "; ".join(f"{label} {w:.3f}" for label, w in self.weights.items())

    @classmethod
    def of(
        cls,
        config: RunConfig,
        name: str,
        frames: Mapping[str, pd.DataFrame],
        weights: Mapping[str, float],
        weights_from: tuple[dt.date, ...] = (),
    ) -> CombinedForecast:
        """Combine `frames` with `weights` and score the result on the holdout."""
        predictions = combine_predictions(config, frames, weights)
        score = score_holdout(predictions, [level.label for level in config.tiers.levels])
        return cls(name, dict(weights), weights_from, predictions, score)


@dataclass(frozen=True)
class Verdict:
    """Whether a combination enters the ranked leaderboard: its mean criterion over the origins where it has a
    score, the best single candidate's over the same origins, and the reason in words."""

    name: str
    kept: bool
    criterion: str
    origins: tuple[dt.date, ...]
    mean: float | None
    best_single: str | None
    best_single_mean: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "combination": self.name,
            "label": COMBINATIONS[self.name],
            "kept": self.kept,
            "criterion": self.criterion,
            "origins": [o.isoformat() for o in self.origins],
            "mean": self.mean,
            "best_single": self.best_single,
            "best_single_mean": self.best_single_mean,
            "reason": self.reason,
        }


def _mean(values: Mapping[dt.date, float], origins: Sequence[dt.date]) -> float:
    scores = [values.get(o, math.nan) for o in origins]
    return math.nan if any(math.isnan(v) for v in scores) else sum(scores) / len(scores)


def verdict(
    name: str,
    combined: Mapping[dt.date, float],
    singles: Mapping[str, Mapping[dt.date, float]],
    criterion: str,
) -> Verdict:
    """Keep a combination when its mean `criterion` over the origins where it has a score is strictly better
    than that of every single candidate scored at all those origins (`combined`: its score per origin; `singles`:
    each candidate's, by label)."""
    origins = tuple(sorted(o for o, v in combined.items() if not math.isnan(v)))
    if not origins:
        if combined:
            why = f"it has no {criterion} (a statistic of a fit's likelihood)"
        else:
            earlier = " (its weights need an earlier origin)" if name != "equal_weight" else ""
            why = f"no origin to back-test it on{earlier}"
        return Verdict(name, False, criterion, (), None, None, None, f"dropped: {why}")
    higher = RANK_CRITERIA[criterion]
    means = {label: _mean(scores, origins) for label, scores in singles.items()}
    means = {label: m for label, m in means.items() if not math.isnan(m)}
    own = _mean(combined, origins)
    n = f"{len(origins)} origin{'s' if len(origins) != 1 else ''}"
    if not means:
        return Verdict(name, False, criterion, origins, own, None, None, f"dropped: no single fit scored at {n}")
    best = (max if higher else min)(means, key=lambda label: means[label])
    wins = own > means[best] if higher else own < means[best]
    word = ("above" if higher else "below") if wins else ("not above" if higher else "not below")
    said = f"mean {criterion} {own:.4f} over {n}, {word} {means[best]:.4f} of {best}, the best single fit"
    reason = f"{'kept' if wins else 'dropped'}: {said}"
    return Verdict(name, wins, criterion, origins, own, best, means[best], reason)
