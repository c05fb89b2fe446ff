"""The self-contained HTML report: headline numbers, tiers, forecast, P(alive) map, CLV distribution, the at-risk
list, model parameters and diagnostics, and the holdout comparison. Built only from the saved outputs
(summary.json, the customer table, the forecast, the tiers), so `clv report` can rebuild it without the data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clv.model import DROPOUT
from clv.purchase import PURCHASE_MODELS
from clv.report import charts
from clv.report.markup import card, escape, number, page, table
from clv.tiers import AT_RISK, at_risk

__all__ = ["build_report"]

_AT_RISK_ROWS = 25  # rows of the at-risk list in the report; at_risk.csv has all of them


def _headline(summary: dict[str, Any], customers: pd.DataFrame) -> str:
    totals = summary["forecast_totals"]
    cards = [
        card("customers", number(len(customers))),
        card(f"total CLV, next {escape(_horizon(totals))} (discounted)", number(totals["total_clv"])),
        card("expected purchases over the horizon", number(totals["expected_purchases"], 0)),
        card(
            "mean P(alive)" if _churn_caveat(summary) is None else "mean P(alive): not meaningful (no dropout seen)",
            number(float(customers["p_alive"].mean()), 3),
        ),
    ]
    if totals.get("expected_revenue") is not None:
        cards.insert(2, card("expected revenue over the horizon", number(totals["expected_revenue"])))
    distribution = totals.get("distribution")
    if distribution and "predicted_revenue" in distribution:
        d = distribution["predicted_revenue"]
        cards.append(card("revenue P10 – P90 (predictive)", f"{number(d['p10'], 0)} – {number(d['p90'], 0)}"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _horizon(totals: dict[str, Any]) -> str:
    """The horizon as given and in days (`12 M (365 days)`); a summary written before durations had a number."""
    label = totals.get("horizon_label")
    return str(label) if label else f"{totals['horizon']:g} {totals['unit']}"


def _data(summary: dict[str, Any]) -> str:
    """What was read and what was left out of the forecast, in lines, invoices and the data's money."""
    data = summary.get("data") or {}
    profile, returns = data.get("profile"), (data.get("validation") or {}).get("returns") or {}
    if not profile:
        return ""
    guest, cancelled = profile.get("guest") or {}, profile.get("cancellations") or {}
    read = (summary.get("config") or {}).get("data") or {}
    rows = [("read", profile["rows_read"], profile.get("invoices"), None)]
    if guest:
        label = "guest lines dropped (no customer id; not in the forecast)"
        rows.append((label, guest["lines"], guest.get("invoices"), guest.get("value")))
    rows.append(("invalid rows dropped", profile["rows_rejected"], None, None))
    if read.get("quantity") is not None:
        rows.append(
            (f"priced <= 0 ({read.get('non_positive_price')})", profile.get("non_positive_price_lines"), None, None)
        )
    if cancelled:
        label = "cancellations (value taken back)"
        rows.append((label, cancelled["lines"], cancelled.get("invoices"), cancelled.get("value")))
    label = "kept, in transactions (value after returns)"
    rows.append((label, profile["rows_kept"], profile.get("invoices_kept"), profile.get("total_amount")))
    frame = pd.DataFrame(rows, columns=["", "lines", "invoices", "value"], dtype=object)
    note = (
        f"{number(profile['customer_days'])} transactions (customer-days) of {number(profile['customers'])} "
        f"customers, {escape(profile['first_date'])} to {escape(profile['last_date'])}"
    )
    if returns.get("return_days"):
        note += (
            f"; {number(returns['return_days'])} return days: {number(returns['netted_value'])} taken off the "
            f"customers' earlier purchases, {number(returns['unmatched_value'])} unmatched"
        )
    late = data.get("customers_first_seen_after_calibration") or 0
    if late:
        note += (
            f". {number(late)} customers first seen after the calibration end are not in the forecast, which covers "
            f"the {number(data.get('rfm_customers'))} customers with a history by then"
        )
        new = data.get("new_customers") or {}
        if "purchases_holdout" in new:
            value = f", value {number(new['value_holdout'])}" if "value_holdout" in new else ""
            note += f" (new_customers.csv: {number(new['purchases_holdout'])} purchases in the holdout{value})"
    return "<h2>Data</h2>" + table(frame) + f"<p class='note'>{note}. Money in the data's unit.</p>"


def _params(block: dict[str, Any] | None) -> str:
    if not block:
        return ""
    rows = []
    posterior = block.get("posterior")
    for name, value in block["params"].items():
        se = (block.get("standard_errors") or {}).get(name)
        row = {"parameter": name, "estimate": value, "standard error": se}
        if posterior:
            p = posterior[name]
            keys = [k for k in p if k.startswith("q")]
            row |= {
                "sd": p["sd"],
                keys[0]: p[keys[0]],
                keys[1]: p[keys[1]],
                "R-hat": p.get("r_hat"),
                "ESS bulk": p.get("ess_bulk"),
            }
            row.pop("standard error")
        rows.append(row)
    title = f"<h3>{escape(block['name'])} ({escape(block['method'])})</h3>"
    facts = f"<p class='note'>log-likelihood {number(block.get('log_likelihood'))}"
    if block.get("converged") is not None:
        facts += f", converged: {number(block['converged'])}, gradient norm {number(block.get('gradient_norm'))}"
    diagnostics = block.get("diagnostics")
    if diagnostics:
        facts += (
            f"; {diagnostics['inference']} ({diagnostics['sampler']}), {diagnostics['chains']} chain(s) x "
            f"{diagnostics['draws']} draws, {diagnostics['seconds']:.1f} s; diagnostics "
            f"{'passed' if diagnostics['passed'] else 'FAILED: ' + '; '.join(diagnostics['problems'])}"
        )
    return title + table(pd.DataFrame(rows)) + facts + "</p>"


def _spend_checks(summary: dict[str, Any]) -> str:
    """The Gamma-Gamma assumption checks and the spend outliers, in words."""
    block = summary.get("spend_model") or {}
    checks = block.get("assumption_checks")
    if not checks:
        return ""
    implied = checks.get("mean_spend_model")
    text = (
        f"<p class='note'>Spend model checks: correlation of frequency and mean spend among the "
        f"{number(checks['buyers_fitted'])} repeat buyers fitted {number(checks['frequency_spend_correlation'], 2)} "
        "(the model assumes none); mean of their mean spends "
        f"{number(checks['mean_spend_observed'])} observed, "
        f"{number(implied) if implied is not None else 'infinite'} implied by the fit."
    )
    if block.get("zero_spend_buyers"):
        returned = number(block["zero_spend_buyers"])
        text += f" {returned} repeat buyers whose repeat purchases were all returned are not fitted."
    outliers = summary.get("spend_outliers")
    if outliers:
        text += " " + escape(outliers["sentence"]) + "."
    return text + "</p>"


def _p_alive_chart(summary: dict[str, Any], customers: pd.DataFrame) -> str:
    block = summary["purchase_model"]
    cls = PURCHASE_MODELS.get(block["name"])
    if cls is None:
        return ""
    model = cls.from_params(**block["params"])
    T = float(np.quantile(customers["T"], 0.9))
    top = int(max(2, min(np.quantile(customers["frequency"], 0.99), 60)))
    freqs = np.arange(0, top + 1, dtype=float)
    recs = np.linspace(0, T, 40)
    grid_x, grid_t = np.meshgrid(freqs, recs, indexing="ij")
    frame = pd.DataFrame({"frequency": grid_x.ravel(), "recency": grid_t.ravel(), "T": T})
    frame.loc[frame["frequency"] == 0, "recency"] = 0.0
    values = model.probability_alive(frame).reshape(grid_x.shape)
    chart = charts.p_alive_map(freqs, recs, values, T, summary["forecast_totals"]["unit"])
    return f'<img alt="P(alive) map" src="{chart}">'


def _holdout(summary: dict[str, Any], customers: pd.DataFrame) -> str:
    h = summary.get("holdout")
    if not h or "expected_purchases_holdout" not in customers:
        return ""
    lines = [
        f"<p>Holdout of {h['holdout_length']:.1f} {escape(h['unit'])}: "
        f"predicted {number(h['predicted_repeat_purchases'], 1)} "
        f"repeat purchases, actual {number(h['actual_repeat_purchases'], 0)} "
        f"({number(h['percent_error'], 1)}%); mean absolute error per customer {number(h['mae_per_customer'], 3)}.</p>"
    ]
    if "customer_interval_coverage" in h:
        total = h["total_predictive"]
        lines.append(
            f"<p>{h['interval']:.0%} predictive intervals hold {h['customer_interval_coverage']:.1%} of customers' "
            f"actual holdout purchases; the total's interval is {number(total['lo'], 0)} – {number(total['hi'], 0)}, "
            f"and the actual total is {'inside' if h['actual_total_inside_interval'] else 'outside'} it.</p>"
        )
    chart = charts.holdout_by_frequency(customers)
    return "<h2>Holdout: predicted versus actual</h2>" + "".join(lines) + f'<img alt="holdout" src="{chart}">'


def _churn_caveat(summary: dict[str, Any]) -> str | None:
    """The sentence that says the purchase model's churn risk is not identified, or None."""
    caveats = (summary.get("purchase_model") or {}).get("not_identified") or {}
    return caveats.get(DROPOUT)


def _at_risk(summary: dict[str, Any], customers: pd.DataFrame) -> str:
    caveat = _churn_caveat(summary)
    if caveat is not None:
        return (
            f"<h2>{escape(AT_RISK.capitalize())}: not meaningful</h2>"
            f"<p class='warn'>{escape(caveat)}.</p><p>The segments are by value only "
            "(high value / other); no customer is listed as slipping away because the data cannot tell who "
            "is.</p>"
        )
    slipping = at_risk(customers)
    columns = [
        c
        for c in ("customer_id", "tier", "clv", "p_alive", "frequency", "recency", "T", "expected_spend")
        if c in slipping
    ]
    body = (
        table(slipping[columns].head(_AT_RISK_ROWS))
        if len(slipping)
        else "<p>No high-value customer is slipping away.</p>"
    )
    return (
        f"<h2>{escape(AT_RISK.capitalize())} ({len(slipping):,} customers)</h2>"
        "<p class='note'>Customers in the top tiers whose P(alive) is below the threshold: whom to win back first "
        f"(the first {_AT_RISK_ROWS} by CLV; the whole list is at_risk.csv).</p>" + body
    )


def build_report(
    summary: dict[str, Any],
    customers: pd.DataFrame,
    forecast: pd.DataFrame,
    tiers: pd.DataFrame,
    migration: pd.DataFrame | None,
) -> str:
    """The report as one HTML string with every chart embedded."""
    totals = summary["forecast_totals"]
    revenue = "expected_revenue" in forecast
    config = summary["config"]
    models = escape(summary["purchase_model"]["name"]) + (
        f" + {escape(summary['spend_model']['name'])}" if summary.get("spend_model") else ""
    )
    parts = [
        f"<h1>Customer lifetime value: {escape(summary['name'])}</h1>",
        f"<p class='sub'>{models} ({escape(summary['purchase_model']['method'])}); "
        f"calibration to {escape(config['time']['calibration_end'])}; "
        f"horizon {escape(_horizon(totals))}; "
        f"annual discount rate {config['prediction']['annual_discount_rate']:.0%}; "
        f"margin {config['prediction']['margin']:.0%}; created {escape(summary['created'])}.</p>",
    ]
    parts += [f"<p class='warn'>{escape(w)}</p>" for w in summary.get("warnings", [])]
    parts.append(_headline(summary, customers))
    parts.append(_data(summary))
    parts.append("<h2>Value tiers</h2>" + table(tiers))
    parts.append(f'<img alt="tiers" src="{charts.tier_shares(tiers)}">')
    if migration is not None:
        parts.append("<h3>Tier migration since the last run</h3>" + table(migration, index=True))
    column = "expected_revenue" if revenue else "expected_purchases"
    forecast_chart = charts.revenue_forecast(forecast, column, "revenue" if revenue else "purchases")
    parts.append(f'<h2>Forecast</h2><img alt="forecast" src="{forecast_chart}">')
    caveat = _churn_caveat(summary)
    alive_note = "" if caveat is None else "<p class='warn'>Not meaningful here: dropout is not identified.</p>"
    parts.append("<h2>Who is alive</h2>" + alive_note + _p_alive_chart(summary, customers))
    parts.append(
        "<h2>CLV distribution</h2>"
        + f'<img alt="CLV" src="{charts.clv_distribution(customers["clv"].to_numpy(dtype=float))}">'
    )
    parts.append(_at_risk(summary, customers))
    parts.append(
        "<h2>Models</h2>"
        + _params(summary["purchase_model"])
        + _params(summary.get("spend_model"))
        + _spend_checks(summary)
    )
    parts.append(_holdout(summary, customers))
    parts.append(
        f"<p class='note'>config hash {escape(summary['config_hash'])}; "
        f"clv {escape(summary['versions'].get('clv'))}. Units: "
        + "; ".join(f"{escape(k)}: {escape(v)}" for k, v in summary["units"].items())
        + "</p>"
    )
    return page(f"CLV report: {summary['name']}", parts)
