"""Holdout metrics: how good the forecasts are, each a plain function of arrays (predicted, actual).

Definitions (the README lists them with their units):
- percent error of a total: 100 (predicted - actual) / actual;
- MAE and RMSE of per-customer purchases;
- Spearman's rank correlation: Pearson's correlation of the average ranks (ties share their mean rank);
- normalized Gini of a prediction against an outcome: the Gini of the outcome's cumulative share with customers
  ordered by the prediction (highest first), divided by the same with customers ordered by the outcome itself,
  so 1 is a perfect ranking and 0 a random one (the "normalized Gini coefficient" of insurance scoring, e.g.
  Frees, Meyers & Cummings 2011, J. Am. Stat. Assoc. 106(495));
- decile calibration: customers in ten groups of equal size by predicted value, mean predicted and mean actual
  per group;
- Brier score of a probability against a 0/1 outcome: mean squared difference (Brier 1950);
- AUC: the probability that a random positive scores above a random negative, ties counting half
  (Mann-Whitney U / (n+ n-));
- coverage: the share of actual values inside [lo, hi];
- AIC = 2k - 2 LL and BIC = k ln(n) - 2 LL (Akaike 1974; Schwarz 1978).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv.errors import ClvError

__all__ = [
    "auc",
    "brier_score",
    "coverage",
    "decile_calibration",
    "information_criteria",
    "mae",
    "normalized_gini",
    "percent_error",
    "rmse",
    "spearman",
]

FloatArray = NDArray[np.float64]


def _pair(predicted: ArrayLike, actual: ArrayLike) -> tuple[FloatArray, FloatArray]:
    p, a = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    if p.shape != a.shape or p.ndim != 1 or p.size == 0:
        raise ClvError(f"predicted and actual must be 1-d arrays of the same length > 0; got {p.shape} and {a.shape}")
    bad = ~(np.isfinite(p) & np.isfinite(a))
    if bad.any():
        raise ClvError(f"{int(bad.sum())} row(s) are not finite (first rows: {np.flatnonzero(bad)[:5].tolist()})")
    return p, a


def percent_error(predicted_total: float, actual_total: float) -> float | None:
    """100 (predicted - actual) / actual; None when the actual total is 0."""
    return None if actual_total == 0 else 100.0 * (predicted_total - actual_total) / actual_total


def mae(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Mean absolute error."""
    p, a = _pair(predicted, actual)
    return float(np.mean(np.abs(p - a)))


def rmse(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Root mean squared error."""
    p, a = _pair(predicted, actual)
    return float(np.sqrt(np.mean((p - a) ** 2)))


def _ranks(values: FloatArray) -> FloatArray:
    return np.asarray(pd.Series(values).rank(method="average").to_numpy(), dtype=float)


def spearman(predicted: ArrayLike, actual: ArrayLike) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when either side is constant."""
    p, a = _pair(predicted, actual)
    rp, ra = _ranks(p), _ranks(a)
    sp, sa = rp.std(), ra.std()
    if sp == 0 or sa == 0:
        return None
    return float(np.mean((rp - rp.mean()) * (ra - ra.mean())) / (sp * sa))


def _gini(outcome: FloatArray, order_by: FloatArray) -> float:
    """Gini of the outcome's cumulative share, customers ordered by `order_by` descending (ties: stable)."""
    order = np.argsort(-order_by, kind="stable")
    cumulative = np.cumsum(outcome[order]) / outcome.sum()
    n = outcome.size
    return float(cumulative.sum() / n - (n + 1) / (2.0 * n))


def normalized_gini(predicted: ArrayLike, actual: ArrayLike) -> float | None:
    """The prediction's Gini against the outcome over the outcome's own (the best possible) Gini; None when
    the outcome sums to 0 or cannot be ranked."""
    p, a = _pair(predicted, actual)
    if a.sum() <= 0:
        return None
    best = _gini(a, a)
    return None if best == 0 else _gini(a, p) / best


def decile_calibration(predicted: ArrayLike, actual: ArrayLike, groups: int = 10) -> pd.DataFrame:
    """Customers in `groups` groups of (nearly) equal size by predicted value, highest first: count, mean
    predicted, mean actual."""
    p, a = _pair(predicted, actual)
    order = np.argsort(-p, kind="stable")
    group = np.empty(p.size, dtype=np.intp)
    group[order] = np.arange(p.size) * groups // p.size
    frame = pd.DataFrame({"decile": group + 1, "predicted": p, "actual": a})
    out = frame.groupby("decile").agg(
        customers=("predicted", "size"), mean_predicted=("predicted", "mean"), mean_actual=("actual", "mean")
    )
    return out.reset_index()


def brier_score(probability: ArrayLike, outcome: ArrayLike) -> float:
    """Mean squared difference between a probability and a 0/1 outcome."""
    p, o = _pair(probability, outcome)
    return float(np.mean((p - o) ** 2))


def auc(score: ArrayLike, outcome: ArrayLike) -> float | None:
    """Area under the ROC curve from ranks: (sum of positives' ranks - n+ (n+ + 1) / 2) / (n+ n-); None when
    the outcome has a single class."""
    s, o = _pair(score, outcome)
    positive = o > 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _ranks(s)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def coverage(lo: ArrayLike, hi: ArrayLike, actual: ArrayLike) -> float:
    """Share of actual values inside [lo, hi]."""
    low, a = _pair(lo, actual)
    high, _ = _pair(hi, actual)
    return float(np.mean((a >= low) & (a <= high)))


def information_criteria(log_likelihood: float, parameters: int, observations: int) -> dict[str, float]:
    """AIC and BIC of a fit."""
    return {
        "aic": 2.0 * parameters - 2.0 * log_likelihood,
        "bic": parameters * math.log(observations) - 2.0 * log_likelihood,
    }
