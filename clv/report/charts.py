"""The report's charts, drawn with matplotlib (Agg) and embedded as base64 PNG: no files, no network."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from clv.evaluate.scores import by_frequency

__all__ = [
    "clv_distribution",
    "holdout_by_frequency",
    "p_alive_map",
    "png",
    "revenue_forecast",
    "subplots",
    "tier_shares",
]

_BLUE, _ORANGE, _GREY = "#1f5a91", "#d9822b", "#8a8f98"


def subplots(*grid: int, figsize: tuple[float, float], **options: Any) -> tuple[Figure, Any]:
    """A figure of its own with its axes: `matplotlib.figure.Figure` renders with the Agg canvas on save, so
    no pyplot state and no backend switch at import."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **options)


def png(fig: Any) -> str:
    """The figure as an embeddable PNG data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def tier_shares(tiers: pd.DataFrame) -> str:
    """Share of customers and share of CLV per tier, side by side."""
    fig, ax = subplots(figsize=(7, 3.2))
    x = np.arange(len(tiers))
    ax.bar(x - 0.2, 100 * tiers["share_of_customers"], 0.4, label="share of customers", color=_GREY)
    ax.bar(x + 0.2, 100 * tiers["share_of_clv"], 0.4, label="share of CLV", color=_BLUE)
    ax.set_xticks(x, tiers["tier"])
    ax.set_ylabel("%")
    ax.legend(frameon=False)
    ax.set_title("CLV share by tier")
    return png(fig)


def revenue_forecast(forecast: pd.DataFrame, column: str, unit_label: str) -> str:
    """Expected revenue (or purchases) per future calendar month (`YYYY-MM` on the axis; a partial month's bar
    lighter, its days in the label), with the P10-P90 band when there is one."""
    fig, ax = subplots(figsize=(7, 3.2))
    x = np.arange(len(forecast))
    partial = forecast["partial"].to_numpy(dtype=bool) if "partial" in forecast else np.zeros(len(x), dtype=bool)
    labels = [
        f"{month}\n({days:g} d)" if part else str(month)
        for month, days, part in zip(forecast["month"], forecast.get("days", x), partial, strict=True)
    ]
    ax.bar(x[~partial], forecast[column].to_numpy()[~partial], color=_BLUE, label="expected")
    if partial.any():
        ax.bar(x[partial], forecast[column].to_numpy()[partial], color=_BLUE, alpha=0.45, label="partial month")
    if f"{column}_p10" in forecast:
        ax.errorbar(
            x,
            forecast[f"{column}_p50"],
            yerr=[
                forecast[f"{column}_p50"] - forecast[f"{column}_p10"],
                forecast[f"{column}_p90"] - forecast[f"{column}_p50"],
            ],
            fmt="none",
            ecolor=_ORANGE,
            capsize=3,
            label="P10-P90 (posterior)",
        )
    if partial.any() or f"{column}_p10" in forecast:
        top = float(np.nanmax(forecast[f"{column}_p90"] if f"{column}_p90" in forecast else forecast[column]))
        ax.set_ylim(0, 1.3 * top if top > 0 else 1.0)  # room for the legend above the bars
        ax.legend(frameon=False, ncol=3, loc="upper right")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("calendar month")
    ax.set_ylabel(unit_label)
    ax.set_title("Forecast from existing customers")
    return png(fig)


def p_alive_map(frequencies: np.ndarray, recencies: np.ndarray, values: np.ndarray, T: float, unit: str) -> str:
    """P(alive) over frequency (rows) and recency (columns) for customers observed for T units."""
    fig, ax = subplots(figsize=(7, 3.6))
    mesh = ax.pcolormesh(recencies, frequencies, values, vmin=0, vmax=1, cmap="viridis", shading="nearest")
    fig.colorbar(mesh, ax=ax, label="P(alive)")
    ax.set_xlabel(f"recency (time of last purchase, {unit})")
    ax.set_ylabel("frequency (repeat purchases)")
    ax.set_title(f"P(alive) for customers observed for T = {T:.0f} {unit}")
    return png(fig)


def clv_distribution(clv: np.ndarray) -> str:
    """Histogram of CLV (log scale for positive values)."""
    fig, ax = subplots(figsize=(7, 3.2))
    positive = clv[clv > 0]
    if positive.size:
        bins = np.logspace(np.log10(max(positive.min(), 1e-3)), np.log10(positive.max() * 1.001), 40)
        ax.hist(positive, bins=list(bins), color=_BLUE)
        ax.set_xscale("log")
    ax.set_xlabel("CLV (log scale)")
    ax.set_ylabel("customers")
    ax.set_title("CLV distribution")
    return png(fig)


def holdout_by_frequency(customers: pd.DataFrame) -> str:
    """Mean holdout purchases, predicted and actual, by calibration frequency (`clv.evaluate.scores.by_frequency`:
    0, 1, ..., 7+)."""
    table = by_frequency(
        customers["frequency"].to_numpy(dtype=float),
        customers["expected_purchases_holdout"].to_numpy(dtype=float),
        customers["frequency_holdout"].to_numpy(dtype=float),
    )
    position = [int(label.rstrip("+")) for label in table["frequency"]]
    fig, ax = subplots(figsize=(7, 3.2))
    ax.plot(position, table["mean_actual"], "o-", color=_GREY, label="actual")
    ax.plot(position, table["mean_predicted"], "s--", color=_BLUE, label="model")
    ax.set_xticks(position, list(table["frequency"]))
    ax.set_xlabel("repeat purchases in calibration")
    ax.set_ylabel("mean holdout purchases")
    ax.legend(frameon=False)
    ax.set_title("Holdout: predicted versus actual, by calibration frequency")
    return png(fig)
