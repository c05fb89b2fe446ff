"""The report's charts, drawn with matplotlib (Agg) and embedded as base64 PNG: no files, no network."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from clv.digest import ClvShape

__all__ = [
    "clv_distribution",
    "drivers_chart",
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


def revenue_forecast(forecast: pd.DataFrame, column: str, unit_label: str, band_label: str | None = None) -> str:
    """Expected revenue (or purchases) per future calendar month (`YYYY-MM` on the axis; a partial month's bar
    lighter, its days in the label), with the P10-P90 band when there is one, and the forecast band (forecast.csv's
    `<kind>_band_lo` / `_hi`, labelled `band_label`; months whose band is uncalibrated drawn grey) when there is
    one."""
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
    kind = column.removeprefix("expected_")
    has_band = f"{kind}_band_lo" in forecast
    if has_band:
        _band_bars(ax, x, forecast, kind, band_label or "band")
    if partial.any() or f"{column}_p10" in forecast or has_band:
        highs = [forecast[c] for c in (column, f"{column}_p90", f"{kind}_band_hi") if c in forecast]
        top = float(np.nanmax(np.concatenate([np.asarray(h, dtype=float) for h in highs])))
        ax.set_ylim(0, 1.3 * top if top > 0 else 1.0)  # room for the legend above the bars
        ax.legend(frameon=False, ncol=3, loc="upper right")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("calendar month")
    ax.set_ylabel(unit_label)
    ax.set_title("Forecast from existing customers")
    return png(fig)


def _band_bars(ax: Any, x: np.ndarray, forecast: pd.DataFrame, kind: str, label: str) -> None:
    """The forecast band's range per month as bars without a centre; uncalibrated months grey and labelled so."""
    lo = forecast[f"{kind}_band_lo"].to_numpy(dtype=float)
    hi = forecast[f"{kind}_band_hi"].to_numpy(dtype=float)
    done = (
        forecast["band_calibrated"].astype(str).str.lower().eq("true").to_numpy()
        if "band_calibrated" in forecast
        else np.ones(len(x), dtype=bool)
    )
    for part, colour, name in ((done, "#2e7d32", f"{label}, calibrated"), (~done, _GREY, f"{label}, uncalibrated")):
        if part.any():
            mid = (lo[part] + hi[part]) / 2.0
            yerr = [mid - lo[part], hi[part] - mid]
            ax.errorbar(x[part] + 0.18, mid, yerr=yerr, fmt="none", ecolor=colour, capsize=3, lw=1.6, label=name)


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


def clv_distribution(shape: ClvShape, unit: str) -> str:
    """Two views a marketer reads: how many customers have each CLV (histogram on a log axis, labelled in
    `unit`), and how concentrated the value is (share of total CLV held by the top x% of customers), from the
    customer digest's figures (`clv.digest.ClvShape`)."""
    fig, (left, right) = subplots(1, 2, figsize=(10, 3.6))
    if shape.counts.size:
        left.hist(shape.edges[:-1], bins=list(shape.edges), weights=shape.counts, color=_BLUE)
        left.set_xscale("log")
        _money_ticks(left)
    left.set_xlabel(f"CLV per customer ({unit}, log scale)")
    left.set_ylabel("customers")
    left.set_title("How many customers have each CLV", fontsize=10)
    if len(shape.curve):
        right.plot(shape.curve[:, 0], shape.curve[:, 1], color=_BLUE)
        right.plot([0, 100], [0, 100], ls=":", color=_GREY, label="equal shares")
        for top, (x, y) in shape.tops.items():
            right.annotate(
                f"top {top}%: {y:.0f}% of CLV", (x, y), xytext=(8, -12), textcoords="offset points", fontsize=8
            )
            right.plot(x, y, "o", color=_ORANGE, ms=4)
        right.legend(frameon=False, loc="lower right", fontsize=8)
    right.set_xlim(0, 100)
    right.set_ylim(0, 101)
    right.set_xlabel("customers, highest CLV first (% of customers)")
    right.set_ylabel("% of total CLV")
    right.set_title("Share of value held by the top customers", fontsize=10)
    fig.tight_layout()
    return png(fig)


def holdout_by_frequency(table: pd.DataFrame) -> str:
    """Mean holdout purchases, predicted and actual, by calibration frequency (`clv.evaluate.scores.by_frequency`'s
    table: 0, 1, ..., 7+)."""
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


_RATIO_TICKS = (
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.25,
    0.5,
    0.75,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    4.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
)


def _ratio_axis(ax: Any, label: str, low: float, high: float) -> None:
    """A log x axis of ratios from `low` to `high` around 1 (no effect), ticks as `0.5x`, `1x`, `2x`."""
    low, high = min(low, 1.0) / 1.15, max(high, 1.0) * 1.15
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.axvline(1.0, color=_GREY, lw=1, ls=":")
    ticks = [t for t in _RATIO_TICKS if low <= t <= high]
    if len(ticks) > 7:  # every other one, keeping 1x
        ticks = ticks[ticks.index(1.0) % 2 :: 2]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.set_xlabel(label)


def _number(value: Any) -> float:
    """A cell as a float: NaN for an empty one (an interval unknown without standard errors)."""
    return float("nan") if value is None or value == "" else float(value)


def _coefficient_panel(ax: Any, rows: pd.DataFrame) -> None:
    """exp(g) with its interval per contrast and process: blue when the interval excludes no effect, else grey."""
    y = np.arange(len(rows))[::-1]
    for position, (_, row) in zip(y, rows.iterrows(), strict=True):
        colour = _BLUE if row["distinguishable"] == "yes" else _GREY
        value, lo, hi = (_number(row[k]) for k in ("exp_coefficient", "exp_coefficient_lo", "exp_coefficient_hi"))
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [position, position], color=colour, lw=2, solid_capstyle="butt")
        ax.plot(value, position, "o", color=colour, ms=5)
    ax.set_yticks(y, [f"{c} ({p})" for c, p in zip(rows["contrast"], rows["process"], strict=True)], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    level = float(rows["interval_level"].iloc[0])
    columns = ["exp_coefficient", "exp_coefficient_lo", "exp_coefficient_hi"]
    ends = rows[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    ends = ends[np.isfinite(ends)]
    _ratio_axis(ax, f"exp(coefficient), {level:.0%} interval (1x = no effect)", float(ends.min()), float(ends.max()))
    ax.set_title("Coefficients: purchase rate, dropout, spend per purchase", fontsize=10)


def _clv_panel(ax: Any, rows: pd.DataFrame) -> None:
    """Each contrast's ratio of mean CLV, as a bar from 1x."""
    first = rows.drop_duplicates("contrast")
    clv = first["clv_ratio"].to_numpy(dtype=float)
    y = np.arange(len(first))[::-1]
    ax.barh(y, clv - 1.0, left=1.0, color=[_BLUE if v >= 1 else _ORANGE for v in clv], height=0.6)
    for position, ratio in zip(y, clv, strict=True):
        up = ratio >= 1
        ax.annotate(
            f"{ratio:.2f}x",
            (ratio, position),
            xytext=(4 if up else -4, 0),
            textcoords="offset points",
            va="center",
            ha="left" if up else "right",
            fontsize=8,
        )
    ax.set_yticks(y, first["contrast"].tolist(), fontsize=8)
    ax.set_ylim(-0.7, len(first) - 0.3)
    span = max(1.25, float(np.max(np.maximum(clv, 1.0 / clv))) * 1.1)
    _ratio_axis(ax, "mean CLV at the level / at the reference", 1.0 / span, span)
    ax.set_title(f"CLV over the next {first['horizon'].iloc[0]} (average counterfactual)", fontsize=10)


def drivers_chart(drivers: pd.DataFrame) -> str:
    """What drives value in two panels: each coefficient's exp(g) with its interval, per contrast and process,
    and each contrast's ratio of mean CLV (the average counterfactual of `clv.drivers`), on log axes around 1."""
    rows = drivers.reset_index(drop=True)
    height = 1.4 + 0.36 * len(rows)
    fig, (left, right) = subplots(1, 2, figsize=(10, height), gridspec_kw={"width_ratios": [3, 2]})
    _coefficient_panel(left, rows)
    _clv_panel(right, rows)
    fig.tight_layout()
    return png(fig)
