"""One fit's forecasts scored against the holdout: the metrics, and the tables behind the evaluation charts.

The input is a per-customer frame of predictions and outcomes (`HOLDOUT_COLUMNS`); everything here is a function
of it, so the scores of a saved prediction can be recomputed without the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clv.errors import ClvError
from clv.evaluate import metrics
from clv.model import check_finite_frame

__all__ = ["FREQUENCY_TOP", "HOLDOUT_COLUMNS", "HoldoutScore", "score_holdout"]

#: Columns the scored frame needs: the calibration frequency, the predicted value (CLV over the run's horizon),
#: its tier, P(alive), P(a purchase in the holdout), predicted and actual holdout purchases. With amounts also
#: predicted_revenue and actual_revenue; for posteriors also the predictive intervals (*_lo, *_hi).
HOLDOUT_COLUMNS = (
    "customer_id",
    "frequency",
    "clv",
    "tier",
    "p_alive",
    "p_purchase",
    "predicted_purchases",
    "actual_purchases",
)

FREQUENCY_TOP = 7  # calibration frequencies 0..6 and 7+ (Fader, Hardie & Lee 2005, Fig. 4)
_GAINS_POINTS = 101


@dataclass
class HoldoutScore:
    """Metrics (JSON-ready) and the tables of the charts: decile calibration, predicted versus actual by
    calibration frequency, the tiers' share of the holdout, and the cumulative gains curve."""

    metrics: dict[str, Any]
    deciles: pd.DataFrame
    by_frequency: pd.DataFrame
    tiers: pd.DataFrame
    gains: pd.DataFrame


def _totals(prefix: str, predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    error = metrics.percent_error(float(predicted.sum()), float(actual.sum()))
    return {
        f"predicted_{prefix}": float(predicted.sum()),
        f"actual_{prefix}": float(actual.sum()),
        f"percent_error_{prefix}": error,
        f"abs_percent_error_{prefix}": None if error is None else abs(error),
        f"mae_{prefix}": metrics.mae(predicted, actual),
        f"rmse_{prefix}": metrics.rmse(predicted, actual),
        f"spearman_{prefix}": metrics.spearman(predicted, actual),
    }


def _coverage(frame: pd.DataFrame, kind: str) -> dict[str, Any]:
    lo, hi = f"predicted_{kind}_lo", f"predicted_{kind}_hi"
    if lo not in frame:
        return {}
    return {f"coverage_{kind}": metrics.coverage(frame[lo], frame[hi], frame[f"actual_{kind}"])}


def _check(frame: pd.DataFrame) -> None:
    missing = [c for c in HOLDOUT_COLUMNS if c not in frame]
    if missing:
        raise ClvError(f"the holdout frame lacks column(s) {', '.join(missing)}")
    check_finite_frame(frame, "a holdout prediction")


def score_holdout(frame: pd.DataFrame, tier_labels: list[str]) -> HoldoutScore:
    """Score one fit's holdout predictions (see HOLDOUT_COLUMNS); `tier_labels` from the top tier down.

    The value target is holdout revenue when the frame has it, else holdout purchases: rank quality (Spearman,
    normalized Gini), the gains curve and the tiers' shares compare the predicted CLV with it.
    """
    _check(frame)
    predicted = frame["predicted_purchases"].to_numpy(dtype=float)
    actual = frame["actual_purchases"].to_numpy(dtype=float)
    bought = (actual > 0).astype(float)
    out: dict[str, Any] = {"customers": len(frame)} | _totals("purchases", predicted, actual)
    revenue = "actual_revenue" in frame
    if revenue:
        out |= _totals("revenue", frame["predicted_revenue"].to_numpy(float), frame["actual_revenue"].to_numpy(float))
    target = frame["actual_revenue" if revenue else "actual_purchases"].to_numpy(dtype=float)
    value = frame["clv"].to_numpy(dtype=float)
    out |= {
        "value_target": "revenue" if revenue else "purchases",
        "spearman_value": metrics.spearman(value, target),
        "gini_value": metrics.normalized_gini(value, target),
        "bought_in_holdout": float(bought.mean()),
        "brier_p_alive": metrics.brier_score(frame["p_alive"], bought),
        "auc_p_alive": metrics.auc(frame["p_alive"], bought),
        "brier_p_purchase": metrics.brier_score(frame["p_purchase"], bought),
        "auc_p_purchase": metrics.auc(frame["p_purchase"], bought),
    }
    out |= _coverage(frame, "purchases") | (_coverage(frame, "revenue") if revenue else {})
    tiers = tier_lift(frame["tier"].to_numpy(), value, target, tier_labels)
    top = tiers.iloc[0]
    out |= {
        "top_tier": str(top["tier"]),
        "top_tier_customer_share": float(top["share_of_customers"]),
        "top_tier_share": float(top["share_of_actual"]),
        "top_tier_lift": None if pd.isna(top["lift"]) else float(top["lift"]),
    }
    deciles = [metrics.decile_calibration(predicted, actual).assign(kind="purchases")]
    if revenue:
        deciles.append(
            metrics.decile_calibration(frame["predicted_revenue"], frame["actual_revenue"]).assign(kind="revenue")
        )
    return HoldoutScore(
        metrics=out,
        deciles=pd.concat(deciles, ignore_index=True)[["kind", "decile", "customers", "mean_predicted", "mean_actual"]],
        by_frequency=by_frequency(frame["frequency"].to_numpy(dtype=float), predicted, actual),
        tiers=tiers,
        gains=gains_curve(value, target),
    )


def by_frequency(frequency: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> pd.DataFrame:
    """Customers grouped by calibration frequency (0, 1, ..., 7+): mean predicted and actual holdout purchases
    (the conditional-expectation check of Fader, Hardie & Lee 2005, Fig. 4)."""
    group = np.minimum(frequency.astype(np.int64), FREQUENCY_TOP)
    frame = pd.DataFrame({"frequency": group, "predicted": predicted, "actual": actual})
    out = frame.groupby("frequency").agg(
        customers=("actual", "size"), mean_predicted=("predicted", "mean"), mean_actual=("actual", "mean")
    )
    out = out.reset_index()
    out["frequency"] = [str(k) if k < FREQUENCY_TOP else f"{FREQUENCY_TOP}+" for k in out["frequency"]]
    return out


def tier_lift(tier: np.ndarray, value: np.ndarray, target: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Per tier (top first): customers, share of customers, share of predicted value, share of the actual
    holdout outcome, and lift (outcome share over customer share: 1 is no better than a random pick)."""
    rows = []
    n, total_value, total_target = tier.size, float(value.sum()), float(target.sum())
    for label in labels:
        mask = tier == label
        share = float(mask.mean()) if n else 0.0
        actual_share = float(target[mask].sum() / total_target) if total_target > 0 else float("nan")
        rows.append(
            {
                "tier": label,
                "customers": int(mask.sum()),
                "share_of_customers": share,
                "share_of_predicted": float(value[mask].sum() / total_value) if total_value > 0 else float("nan"),
                "share_of_actual": actual_share,
                "lift": actual_share / share if share > 0 else float("nan"),
                "mean_actual": float(target[mask].mean()) if mask.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def gains_curve(value: np.ndarray, target: np.ndarray, points: int = _GAINS_POINTS) -> pd.DataFrame:
    """Cumulative share of the actual outcome captured by the top share of customers ranked by predicted value
    (ties in stable order), at `points` evenly spaced shares of customers; with the best possible curve."""
    n = value.size
    total = float(target.sum())
    shares = np.linspace(0.0, 1.0, points)
    counts = np.round(shares * n).astype(np.int64)

    def captured(order_by: np.ndarray) -> np.ndarray:
        cumulative = np.concatenate([[0.0], np.cumsum(target[np.argsort(-order_by, kind="stable")])])
        return cumulative[counts] / total if total > 0 else np.full(points, np.nan)

    return pd.DataFrame({"share_of_customers": shares, "model": captured(value), "best": captured(target)})
