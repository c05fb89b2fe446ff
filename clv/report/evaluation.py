"""The files of reports/<name>/evaluation/ (metrics.json, leaderboard.csv, deciles.csv, tracking.csv,
predictions.parquet, rolling.csv and rolling_stability.csv with a rolling origin, evaluation.html), written
whole or not at all."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clv.config import config_hash
from clv.evaluate.combination import COMBINATIONS
from clv.evaluate.job import Evaluation
from clv.metric_registry import METRICS, RANK_CRITERIA
from clv.report import evaluation_charts as charts
from clv.report.files import staged_folder
from clv.report.markup import card, escape, number, page, table, text
from clv.versions import package_versions

__all__ = ["build_evaluation_report", "combinations_dict", "evaluation_dict", "write_evaluation"]

#: what each leaderboard column means (the fit's flag, then the metrics' definitions)
DEFINITIONS = {
    "not_identified": "what the fit cannot identify from this data (empty: nothing); such a fit is ranked by its "
    "scores like the others, but its churn risk or spend predictions rest on a flat likelihood",
} | {m.name: m.definition for m in METRICS if m.definition is not None}


def _split(ev: Evaluation) -> dict[str, Any]:
    time, rfm = ev.config.time, ev.data.rfm
    frame = rfm.frame
    out: dict[str, Any] = {
        "unit": time.unit,
        "calibration_end": time.calibration_end.isoformat(),
        "holdout_end": time.holdout_end.isoformat() if time.holdout_end else None,
        "holdout_length": rfm.holdout_length,
        "customers": len(frame),
        "repeat_purchases_calibration": int(frame["frequency"].sum()),
        "repeat_purchases_holdout": int(frame["frequency_holdout"].sum()),
        "customers_first_seen_after_calibration": rfm.late_customers,
    }
    if "monetary_value_holdout" in frame:
        out["revenue_holdout"] = float((frame["frequency_holdout"] * frame["monetary_value_holdout"]).sum())
    return out


def evaluation_dict(ev: Evaluation) -> dict[str, Any]:
    """Everything metrics.json records."""
    candidates = {}
    for result in ev.results:
        s = result.score
        candidates[result.candidate.key] = {
            "label": result.candidate.label,
            "purchase": result.candidate.purchase,
            "method": result.candidate.method,
            "fit": result.fit,
            "metrics": s.metrics,
            "deciles": s.deciles.to_dict(orient="records"),
            "by_frequency": s.by_frequency.to_dict(orient="records"),
            "tiers": s.tiers.to_dict(orient="records"),
            "warnings": result.warnings,
        }
    out: dict[str, Any] = {
        "name": ev.config.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": ev.config.resolved(),
        "config_hash": config_hash(ev.config),
        "split": _split(ev),
        "rank_by": ev.config.evaluation.rank_by,
        "best": ev.best,
        "leaderboard": ev.leaderboard.to_dict(orient="records"),
        "candidates": candidates,
        "definitions": DEFINITIONS,
        "warnings": ev.warnings,
        "versions": package_versions(),
        "timings_seconds": ev.timings,
    }
    if ev.per_origin is not None and ev.stability is not None:
        out["rolling"] = {
            "origins": [o.isoformat() for o in ev.origins],
            "per_origin": ev.per_origin.to_dict(orient="records"),
            "stability": ev.stability.to_dict(orient="records"),
        }
    out["combinations"] = combinations_dict(ev)
    out["notes"] = ev.notes
    return out


#: how the combinations are made and judged, in metrics.json and the report
COMBINATION_RULES = {
    "equal_weight": "every candidate's per-customer forecasts averaged with weight 1/m (m candidates)",
    "backtest_weighted": "weights proportional to 1 / (the candidate's sum of squared errors of holdout purchases "
    "per customer over the origins before the split scored; Bates & Granger 1969)",
    "averaged": "holdout purchases and revenue, CLV, P(alive) and P(a purchase in the holdout), one weight vector "
    "for all; no predictive intervals",
    "kept_when": "its mean of evaluation.rank_by over the origins where it has a score beats the best single fit's "
    "mean over the same origins; else it is listed here as dropped, with its score",
    "look_ahead": "the weights used at an origin, and on the run's holdout, come only from earlier origins; the "
    "origins' holdouts overlap in calendar time, so earlier origins' holdouts cover part of a later split's "
    "holdout period; the keep-or-drop test uses every origin, the run's holdout among them when "
    "time.calibration_end is an origin",
}


def combinations_dict(ev: Evaluation) -> dict[str, Any]:
    """metrics.json's `combinations` block: the rules, each combination's verdict, weights and scores on the
    run's holdout, and its weights and scores at each origin; notes when none was made."""
    combos = ev.combinations
    entries = []
    for forecast in combos.forecasts:
        s = forecast.score
        entries.append(
            combos.verdicts[forecast.name].to_dict()
            | {
                "key": forecast.key,
                "weights": forecast.weights,
                "weights_from_origins": [o.isoformat() for o in forecast.weights_from],
                "metrics": s.metrics,
                "deciles": s.deciles.to_dict(orient="records"),
                "by_frequency": s.by_frequency.to_dict(orient="records"),
                "tiers": s.tiers.to_dict(orient="records"),
                "per_origin": [
                    {"origin": o.isoformat()} | v for o, v in combos.per_origin.get(forecast.name, {}).items()
                ],
            }
        )
    made = {f.name for f in combos.forecasts}
    entries += [v.to_dict() for name, v in combos.verdicts.items() if name not in made]
    return {"rules": COMBINATION_RULES, "entries": entries, "notes": list(combos.notes)}


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN and infinities as null, containers walked."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _predictions(ev: Evaluation) -> pd.DataFrame:
    """Per customer: the history and the actual holdout outcome, then each candidate's predictions."""
    first = ev.results[0].predictions
    base = ["customer_id", "frequency", "actual_purchases"] + (["actual_revenue"] if "actual_revenue" in first else [])
    frame = first[base].copy()
    named = [(r.candidate.key, r.predictions) for r in ev.results]
    named += [(c.key, c.predictions) for c in ev.combinations.forecasts]  # kept and dropped (metrics.json says)
    for key, predictions in named:
        cols = [c for c in predictions.columns if c not in base]
        frame = pd.concat([frame, predictions[cols].add_prefix(f"{key}__")], axis=1)
    return frame


def write_evaluation(ev: Evaluation) -> Path:
    """Write reports/<name>/evaluation/ whole or not at all; returns the folder."""
    target = Path(ev.config.output.reports_dir) / ev.config.name / "evaluation"
    with staged_folder(target) as staging:
        summary = evaluation_dict(ev)
        text = json.dumps(_plain(summary), indent=2, default=str, allow_nan=False)
        (staging / "metrics.json").write_text(text + "\n")
        ev.leaderboard.to_csv(staging / "leaderboard.csv", index=False)
        deciles = [r.score.deciles.assign(candidate=r.candidate.label) for r in ev.results]
        deciles += [c.score.deciles.assign(candidate=c.label) for c in ev.combinations.forecasts]
        pd.concat(deciles, ignore_index=True).to_csv(staging / "deciles.csv", index=False)
        if ev.tracking is not None:
            ev.tracking.table(ev.labels).to_csv(staging / "tracking.csv", index=False)
        _predictions(ev).to_parquet(staging / "predictions.parquet", index=False)
        if ev.per_origin is not None and ev.stability is not None:
            ev.per_origin.to_csv(staging / "rolling.csv", index=False)
            ev.stability.to_csv(staging / "rolling_stability.csv", index=False)
        (staging / "evaluation.html").write_text(build_evaluation_report(ev, summary), encoding="utf-8")
    return target


def _best_cells(board: pd.DataFrame) -> set[tuple[int, str]]:
    """The best value of every ranked column, to print in bold."""
    cells = set()
    for column, higher in RANK_CRITERIA.items():
        name = column.removeprefix("abs_")
        if name not in board:
            continue
        values = pd.to_numeric(board[name], errors="coerce")
        values = values.abs() if column.startswith("abs_") else values
        if values.notna().any():
            best = values.to_numpy(dtype=float)
            cells.add((int(np.nanargmax(best) if higher else np.nanargmin(best)), name))
    return cells


def _headline(ev: Evaluation, split: dict[str, Any]) -> str:
    best = ev.best
    cards = [
        card("customers", number(split["customers"])),
        card(f"holdout, {split['holdout_length']:.1f} {split['unit']}", f"to {escape(split['holdout_end'])}"),
        card("actual holdout repeat purchases", number(split["repeat_purchases_holdout"])),
    ]
    if "revenue_holdout" in split:
        cards.append(card("actual holdout revenue", number(split["revenue_holdout"], 0)))
    cards.append(card(f"best by {best['criterion']}", escape(best["candidate"])))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _leaderboard(ev: Evaluation) -> str:
    board = ev.leaderboard.drop(columns=["purchase", "method"], errors="ignore")
    best = ev.best
    intro = (
        f"<p><b>Best: {escape(best['candidate'])}</b> by {escape(best['criterion'])} "
        f"({'higher' if best['higher_is_better'] else 'lower'} is better): {number(best['value'], 4)}"
        + (f" (flagged: {escape(best['not_identified'])})" if best.get("not_identified") else "")
        + (f"; within 0.5% of {escape(best['tied_with'])}: no real difference" if best.get("tied_with") else "")
        + ". "
        "The best value of each ranked column is in bold.</p>"
    )
    definitions = "".join(
        f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in DEFINITIONS.items() if k in ev.leaderboard
    )
    return (
        "<h2>Leaderboard</h2>"
        + intro
        + _board_table(board)
        + f"<details><summary>What the rows mean</summary><ul class='note'>{definitions}</ul></details>"
    )


def _board_table(board: pd.DataFrame) -> str:
    """The leaderboard turned on its side, one row per metric and one column per candidate (in rank order), so
    that it fits the page however many metrics there are; the best value of each ranked metric in bold."""
    best = _best_cells(board)
    labels = [str(c) for c in board["candidate"]]
    metrics = [c for c in board.columns if c != "candidate"]
    frame = pd.DataFrame(
        {"metric": metrics} | {label: [board[m].iloc[k] for m in metrics] for k, label in enumerate(labels)},
        dtype=object,
    )
    bold = {(metrics.index(column), labels[row]) for row, column in best}
    return table(frame, bold=bold, formats={"metric": text})


def _combinations(ev: Evaluation) -> str:
    """The forecast combinations: how they are made, and each one kept or dropped with its backtest score."""
    combos = ev.combinations
    intro = (
        "<h2>Forecast combinations</h2><p>Averages of the single fits' per-customer forecasts (holdout purchases "
        "and revenue, CLV, P(alive), P(a purchase)): equal weights, and weights proportional to 1 / the fit's sum "
        "of squared errors of holdout purchases at the earlier origins (Bates &amp; Granger 1969). One enters the "
        "leaderboard only when its mean over the rolling origins beats the best single fit's over the same "
        "origins.</p>"
    )
    notes = "".join(f"<p class='note'>{escape(n)}</p>" for n in combos.notes)
    if not combos.verdicts:
        return intro + notes
    rows, said = [], []
    holdout = {f.name: f for f in combos.forecasts}
    criterion = ev.config.evaluation.rank_by
    for name, v in combos.verdicts.items():
        forecast = holdout.get(name)
        rows.append(
            {
                "combination": COMBINATIONS[name],
                "verdict": "kept" if v.kept else "dropped",
                "origins": len(v.origins),
                f"mean {criterion}": v.mean,
                "best single fit": v.best_single or "",
                "its mean": v.best_single_mean,
                f"{criterion} on this holdout": None if forecast is None else forecast.score.metrics.get(criterion),
            }
        )
        weights = "" if forecast is None else f" Weights on this holdout: {forecast.weights_text()}."
        said.append(f"<li><b>{escape(COMBINATIONS[name])}</b>: {escape(v.reason)}.{escape(weights)}</li>")
    look = (
        "<p class='note'>No look-ahead in the weights: an origin's (and this holdout's) come from the origins "
        "before it only; but the origins' holdouts overlap in calendar time, and the keep-or-drop test uses every "
        "origin, this holdout among them when the calibration end is an origin.</p>"
    )
    frame = pd.DataFrame(rows)
    formats = {c: _four for c in frame.columns if "mean" in c or "holdout" in c}
    return intro + notes + table(frame, formats=formats) + f"<ul class='note'>{''.join(said)}</ul>" + look


def _four(value: Any) -> str:
    return number(value, 4)


def _img(alt: str, src: str) -> str:
    return f'<img alt="{escape(alt)}" src="{src}">'


def _charts(ev: Evaluation) -> list[str]:
    target = ev.results[0].score.metrics["value_target"]
    named = ev.scores
    parts = []
    if ev.tracking is not None:
        frame = ev.tracking.table(ev.labels)
        parts += [
            "<h2>Repeat purchases week by week</h2>",
            "<p class='note'>Solid: the model's expected cumulative repeat purchases of the cohort from its first "
            "day (unconditional; Fader, Hardie &amp; Lee 2005, Fig. 3); dashed: the holdout forecast from each "
            "customer's history (conditional), starting from the actual count at the calibration end.</p>",
            _img("cumulative tracking", charts.tracking_cumulative(frame, ev.labels)),
            _img("weekly tracking", charts.tracking_weekly(frame, ev.labels)),
        ]
    else:
        parts.append("<p class='note'>Tracking charts need a transaction log; this data source is an RFM table.</p>")
    parts += [
        "<h2>Predicted versus actual by calibration frequency</h2>",
        _img("by frequency", charts.by_frequency({k: s.by_frequency for k, s in named.items()})),
        "<h2>Decile calibration</h2>",
        _img(
            "deciles of purchases", charts.deciles({k: s.deciles for k, s in named.items()}, "purchases", "purchases")
        ),
    ]
    if target == "revenue":
        parts.append(
            _img("deciles of revenue", charts.deciles({k: s.deciles for k, s in named.items()}, "revenue", "revenue"))
        )
    parts += [
        "<h2>Lift of the top tiers</h2>",
        _img("tier lift", charts.tier_lift({k: s.tiers for k, s in named.items()}, target)),
        _img("gains", charts.gains({k: s.gains for k, s in named.items()}, target)),
        f"<h3>Tiers of the best fit ({escape(ev.best['candidate'])})</h3>",
        table(named[ev.best["candidate"]].tiers),
    ]
    return parts


def _fits(ev: Evaluation) -> str:
    rows = []
    for result in ev.results:
        fit = result.fit
        row: dict[str, Any] = {"candidate": result.candidate.label}
        row |= {f"{k}": v for k, v in fit["params"].items()}
        row |= {f"GG {k}": v for k, v in (fit.get("spend_params") or {}).items()}
        diagnostics = fit.get("purchase_diagnostics")
        if diagnostics:
            row["diagnostics"] = "passed" if diagnostics["passed"] else "; ".join(diagnostics["problems"])
        rows.append(row)
    return "<h2>Fitted parameters</h2>" + table(pd.DataFrame(rows))


def _rolling(ev: Evaluation) -> str:
    if ev.per_origin is None or ev.stability is None:
        return ""
    return (
        "<h2>Rolling origin</h2>"
        f"<p>The comparison at {len(ev.origins)} calibration ends ({', '.join(o.isoformat() for o in ev.origins)}),"
        " each with a holdout of the same length. Stability: the spread of each metric over the origins.</p>"
        + _img("rolling origin", charts.rolling(ev.per_origin))
        + table(ev.stability)
        + "<h3>Every origin</h3>"
        + table(ev.per_origin)
    )


def build_evaluation_report(ev: Evaluation, summary: dict[str, Any]) -> str:
    """evaluation.html as one string, charts embedded."""
    split = summary["split"]
    parts = [
        f"<h1>Holdout evaluation: {escape(ev.config.name)}</h1>",
        f"<p class='sub'>Calibration to {escape(split['calibration_end'])}, holdout to "
        f"{escape(split['holdout_end'])} ({split['holdout_length']:.1f} {escape(split['unit'])}); "
        f"{len(ev.results)} fit(s); created {escape(summary['created'])}.</p>",
    ]
    parts += [f"<p class='warn'>{escape(w)}</p>" for w in ev.warnings]
    parts += [f"<p class='note'>{escape(n)}</p>" for n in ev.notes]
    parts += [_headline(ev, split), _leaderboard(ev), _combinations(ev), *_charts(ev), _fits(ev), _rolling(ev)]
    parts.append(f"<p class='note'>config hash {escape(summary['config_hash'])}</p>")
    return page(f"Holdout evaluation: {ev.config.name}", parts)
