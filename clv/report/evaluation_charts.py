"""The evaluation report's charts (matplotlib, Agg, embedded as base64 PNG), one colour per candidate fit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clv.metric_registry import METRICS
from clv.report.charts import png, subplots

__all__ = ["by_frequency", "deciles", "gains", "rolling", "tier_lift", "tracking_cumulative", "tracking_weekly"]

_ACTUAL = "#1d2430"
_GREY = "#8a8f98"
_PALETTE = ("#1f5a91", "#d9822b", "#3a9d5d", "#b23a48", "#7b5ea7", "#2aa1b3", "#a0793d", "#5b6475")


def _colour(k: int) -> str:
    return _PALETTE[k % len(_PALETTE)]


def _calibration_line(ax: object, table: pd.DataFrame) -> None:
    weeks = table.loc[table["period"] == "calibration", "week"]
    if len(weeks):
        ax.axvline(float(weeks.max()) + 0.5, color=_GREY, linestyle=":", linewidth=1)  # type: ignore[attr-defined]
        ax.text(float(weeks.max()) + 0.8, 0.02, "holdout →", transform=ax.get_xaxis_transform(), color=_GREY)  # type: ignore[attr-defined]


def tracking_cumulative(table: pd.DataFrame, labels: dict[str, str]) -> str:
    """Cumulative repeat purchases by week: actual, each model's expectation (solid) and its conditional
    forecast from the calibration end (dashed)."""
    fig, ax = subplots(figsize=(8, 3.8))
    ax.plot(table["week"], table["actual_cumulative"], color=_ACTUAL, linewidth=2, label="actual")
    for k, (key, label) in enumerate(labels.items()):
        ax.plot(table["week"], table[f"{key}_cumulative"], color=_colour(k), label=label)
        ax.plot(table["week"], table[f"{key}_conditional_cumulative"], color=_colour(k), linestyle="--", linewidth=1)
    _calibration_line(ax, table)
    ax.set_xlabel("week since the cohort's first purchase")
    ax.set_ylabel("cumulative repeat purchases")
    ax.set_title("Cumulative repeat purchases: model (solid), forecast from calibration end (dashed)")
    ax.legend(frameon=False, fontsize=8)
    return png(fig)


def tracking_weekly(table: pd.DataFrame, labels: dict[str, str]) -> str:
    """Repeat purchases per week: actual and each model's expectation."""
    fig, ax = subplots(figsize=(8, 3.6))
    ax.plot(table["week"], table["actual"], color=_ACTUAL, linewidth=1.6, label="actual")
    for k, (key, label) in enumerate(labels.items()):
        ax.plot(table["week"], table[f"{key}_expected"], color=_colour(k), linestyle="--", label=label)
    _calibration_line(ax, table)
    ax.set_xlabel("week since the cohort's first purchase")
    ax.set_ylabel("repeat purchases")
    ax.set_title("Weekly repeat purchases: actual versus model")
    ax.legend(frameon=False, fontsize=8)
    return png(fig)


def by_frequency(tables: dict[str, pd.DataFrame]) -> str:
    """Mean holdout purchases by calibration frequency: actual and each model's conditional expectation."""
    fig, ax = subplots(figsize=(8, 3.6))
    first = next(iter(tables.values()))
    x = np.arange(len(first))
    ax.plot(x, first["mean_actual"], "o-", color=_ACTUAL, linewidth=2, label="actual")
    for k, (label, frame) in enumerate(tables.items()):
        ax.plot(x, frame["mean_predicted"], "s--", color=_colour(k), label=label)
    ax.set_xticks(x, first["frequency"])
    ax.set_xlabel("repeat purchases in calibration")
    ax.set_ylabel("mean holdout purchases")
    ax.set_title("Holdout purchases by calibration frequency: predicted versus actual")
    ax.legend(frameon=False, fontsize=8)
    return png(fig)


def deciles(tables: dict[str, pd.DataFrame], kind: str, unit_label: str) -> str:
    """Decile calibration, a panel per model: mean predicted (line) and mean actual (bars) per decile of the
    model's own prediction."""
    n = len(tables)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for k, (label, frame) in enumerate(tables.items()):
        ax = axes[k // cols][k % cols]
        part = frame[frame["kind"] == kind]
        ax.bar(part["decile"], part["mean_actual"], color=_GREY, label="actual")
        ax.plot(part["decile"], part["mean_predicted"], "o-", color=_colour(k), label="predicted")
        ax.set_title(label, fontsize=9)
        ax.set_xticks(range(1, 11))
        ax.set_xlabel("decile (1 = highest predicted)", fontsize=8)
        if k % cols == 0:
            ax.set_ylabel(f"mean {unit_label}", fontsize=8)
        ax.legend(frameon=False, fontsize=7)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    fig.suptitle(f"Decile calibration of holdout {unit_label}", fontsize=10)
    fig.tight_layout()
    return png(fig)


def gains(curves: dict[str, pd.DataFrame], target: str) -> str:
    """Share of the holdout's actual value captured by the top share of customers ranked by predicted CLV."""
    fig, ax = subplots(figsize=(5.6, 4.2))
    first = next(iter(curves.values()))
    ax.plot(100 * first["share_of_customers"], 100 * first["best"], color=_ACTUAL, linestyle=":", label="perfect")
    ax.plot([0, 100], [0, 100], color=_GREY, linewidth=1, label="random")
    for k, (label, frame) in enumerate(curves.items()):
        ax.plot(100 * frame["share_of_customers"], 100 * frame["model"], color=_colour(k), label=label)
    ax.set_xlabel("top % of customers by predicted CLV")
    ax.set_ylabel(f"% of holdout {target} captured")
    ax.set_title("Gains: who the model ranks first buys most")
    ax.legend(frameon=False, fontsize=8)
    return png(fig)


def tier_lift(tables: dict[str, pd.DataFrame], target: str) -> str:
    """Per tier: its share of customers (grey) and each model's tier's share of the holdout's actual value."""
    fig, ax = subplots(figsize=(8, 3.6))
    first = next(iter(tables.values()))
    x = np.arange(len(first))
    width = 0.8 / (len(tables) + 1)
    ax.bar(x - 0.4 + width / 2, 100 * first["share_of_customers"], width, color=_GREY, label="share of customers")
    for k, (label, frame) in enumerate(tables.items()):
        ax.bar(x - 0.4 + width * (k + 1.5), 100 * frame["share_of_actual"], width, color=_colour(k), label=label)
    ax.set_xticks(x, first["tier"])
    ax.set_ylabel(f"% of holdout {target}")
    ax.set_title(f"Tiers by predicted CLV: their share of the holdout's {target}")
    ax.legend(frameon=False, fontsize=8)
    return png(fig)


_ROLLING_PANELS = tuple((m.name, m.rolling_title) for m in METRICS if m.rolling_title is not None)


def rolling(per_origin: pd.DataFrame) -> str:
    """Four metrics at each calibration end, one line per model."""
    panels = [(m, t) for m, t in _ROLLING_PANELS if m in per_origin]
    fig, axes = subplots(1, len(panels), figsize=(3.3 * len(panels), 3.0), squeeze=False)
    for ax, (metric, title) in zip(axes[0], panels, strict=True):
        for k, (label, frame) in enumerate(per_origin.groupby("candidate", sort=False)):
            ax.plot(frame["origin"], frame[metric].astype(float), "o-", color=_colour(k), label=str(label))
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.suptitle("Rolling origin: each metric by calibration end", fontsize=10)
    fig.tight_layout()
    return png(fig)
