"""Forecasts scored against a holdout: the metrics (`metrics`), one fit's scores (`scores`), model comparison
(`comparison`), tracking curves (`tracking`) and the rolling origin (`rolling`). `clv.evaluate.job.evaluate` chains
them from a config; `clv evaluate` runs it."""

from clv.evaluate.metrics import (
    auc,
    brier_score,
    coverage,
    decile_calibration,
    information_criteria,
    mae,
    normalized_gini,
    percent_error,
    rmse,
    spearman,
)

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
