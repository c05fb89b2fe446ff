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
    "png",
    "probability_map",
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
    ax.set_ylabel("% of all customers / of total CLV")
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


def probability_map(
    frequencies: np.ndarray, recencies: np.ndarray, values: np.ndarray, T: float, unit: str, label: str
) -> str:
    """A probability (`label`, e.g. P(buys in the next 13 weeks)) over frequency (rows) and recency (columns) for
    customers observed for T units (`unit` in words), in percent."""
    fig, ax = subplots(figsize=(7.5, 3.6))
    mesh = ax.pcolormesh(recencies, frequencies, 100 * values, vmin=0, vmax=100, cmap="viridis", shading="nearest")
    fig.colorbar(mesh, ax=ax, label=f"{label}, %")
    ax.set_xlabel(f"recency: {unit} from the first purchase to the last")
    ax.set_ylabel("repeat purchases")
    ax.set_title(f"{label}, customers first seen {T:.0f} {unit} before the calibration end", fontsize=10)
    return png(fig)


def _money_ticks(ax: Any) -> None:
    """Plain numbers with thousands separators on a log x axis (1, 10, 100, 1,000; no 10^k)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}" if x >= 1 else f"{x:g}"))


def clv_distribution(clv: np.ndarray, unit: str) -> str:
    """Two views a marketer reads: how many customers have each CLV (histogram on a log axis, labelled in
    `unit`), and how concentrated the value is (share of total CLV held by the top x% of customers)."""
    fig, (left, right) = subplots(1, 2, figsize=(10, 3.6))
    positive = clv[clv > 0]
    if positive.size:
        low = max(float(np.quantile(positive, 0.001)), float(positive.max()) * 1e-6)
        bins = np.logspace(np.log10(low), np.log10(positive.max() * 1.001), 30)
        left.hist(np.clip(positive, low, None), bins=list(bins), color=_BLUE)
        left.set_xscale("log")
        _money_ticks(left)
    left.set_xlabel(f"CLV per customer ({unit}, log scale)")
    left.set_ylabel("customers")
    left.set_title("How many customers have each CLV", fontsize=10)
    ordered = np.sort(np.maximum(clv, 0.0))[::-1]
    total = float(ordered.sum())
    if ordered.size and total > 0:
        share_customers = 100 * np.arange(1, ordered.size + 1) / ordered.size
        share_value = 100 * np.cumsum(ordered) / total
        right.plot(np.r_[0, share_customers], np.r_[0, share_value], color=_BLUE)
        right.plot([0, 100], [0, 100], ls=":", color=_GREY, label="equal shares")
        for top in (5, 20, 50):
            k = max(1, round(ordered.size * top / 100))
            right.annotate(
                f"top {top}%: {share_value[k - 1]:.0f}% of CLV",
                (share_customers[k - 1], share_value[k - 1]),
                xytext=(8, -12),
                textcoords="offset points",
                fontsize=8,
            )
            right.plot(share_customers[k - 1], share_value[k - 1], "o", color=_ORANGE, ms=4)
        right.legend(frameon=False, loc="lower right", fontsize=8)
    right.set_xlim(0, 100)
    right.set_ylim(0, 101)
    right.set_xlabel("customers, highest CLV first (% of customers)")
    right.set_ylabel("% of total CLV")
    right.set_title("Share of value held by the top customers", fontsize=10)
    fig.tight_layout()
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
