"""The self-contained HTML report: headline numbers, tiers, forecast, churn risk, CLV distribution, what drives
value (for models with covariates), the at-risk list, the RFM view, model parameters and diagnostics, and the
holdout comparison. Built only from the saved outputs (summary.json, the customer table, the forecast, the tiers,
drivers.csv), so `clv report` can rebuild it without the data. Every number carries its unit: money with its
currency (data.currency; "the data's currency" when it is not named), CLV in discounted purchases for data without
amounts, shares and probabilities as percentages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clv.digest import AT_RISK_ROWS, CustomerDigest, GroupFigures
from clv.model import DROPOUT
from clv.purchase import PURCHASE_MODELS
from clv.report import charts
from clv.report.markup import Format, card, escape, fixed, money, number, page, percent, percent_below, table, text
from clv.tiers import AT_RISK, SEGMENTS, UNIDENTIFIED_SEGMENTS

__all__ = ["build_report"]

_UNIT_WORDS = {"W": "weeks", "D": "days"}


@dataclass(frozen=True)
class _Units:
    """How this run's numbers are labelled: money (and its currency) or purchases, time, the churn-risk column."""

    has_money: bool
    currency: str | None
    time: str  # "weeks"
    churn: str | None  # the churn-risk column, e.g. p_purchase_next_13w
    window: str  # "the next 13 weeks"

    @classmethod
    def of(cls, summary: dict[str, Any], digest: CustomerDigest) -> _Units:
        config = summary.get("config") or {}
        risk = summary.get("churn_risk") or {}
        unit = risk.get("unit") or (config.get("time") or {}).get("unit", "W")
        time = _UNIT_WORDS.get(unit, unit)
        churn = risk.get("column") or digest.churn
        window = f"the next {risk['window']:g} {time}" if risk.get("window") else "the churn window"
        has_money = summary.get("spend_model") is not None or "expected_spend" in digest.columns
        return cls(has_money, (config.get("data") or {}).get("currency"), time, churn, window)

    @property
    def value_unit(self) -> str:
        """The unit of CLV: the currency, or discounted purchases for data without amounts."""
        if not self.has_money:
            return "discounted purchases"
        return self.currency or "the data's currency"

    def header(self, name: str) -> str:
        """A column header with the unit of its values: `total CLV (USD)`; without a named currency the unit is
        said once under the table (`money_note`)."""
        if self.has_money and not self.currency:
            return name
        return f"{name} ({self.value_unit})"

    @property
    def money_note(self) -> str:
        """The sentence under a table with money, when the currency is not named."""
        if self.has_money and not self.currency:
            return "<p class='note'>Money in the currency of the data (not named in the config).</p>"
        return ""

    def value(self, digits: int = 2) -> Format:
        """The cell format of CLV columns (the currency is in the header): fixed decimals, cents for money."""
        return lambda v: fixed(v, digits)

    def headline(self, x: float) -> str:
        """A headline value: the currency in front, or `purchases` after."""
        return money(x, self.currency, 0) if self.has_money else f"{number(x, 1)} purchases"

    @property
    def p_purchase(self) -> str:
        return f"P(buys in {self.window})"


def _headline(summary: dict[str, Any], digest: CustomerDigest, units: _Units) -> str:
    totals = summary["forecast_totals"]
    horizon = f"next {_horizon(totals)}"
    cards = [
        card("customers", number(digest.customers)),
        card(
            f"total CLV, {horizon} ({units.value_unit}{', discounted' if units.has_money else ''})",
            units.headline(totals["total_clv"]),
        ),
        card(f"expected purchases, {horizon}", number(totals["expected_purchases"], 0)),
    ]
    if units.churn is not None and digest.mean_churn is not None and _churn_caveat(summary) is None:
        cards.append(card(f"mean {units.p_purchase}", percent(digest.mean_churn)))
    if totals.get("expected_revenue") is not None:
        label = f"expected revenue, {horizon} ({units.value_unit}, not discounted)"
        cards.insert(2, card(label, money(totals["expected_revenue"], units.currency, 0)))
    distribution = totals.get("distribution")
    if distribution and "predicted_revenue" in distribution:
        d = distribution["predicted_revenue"]
        cards.append(
            card(
                f"revenue P10 – P90 (predictive, {units.value_unit})",
                f"{money(d['p10'], units.currency, 0)} – {money(d['p90'], units.currency, 0)}",
            )
        )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _data_rows(
    profile: dict[str, Any], returns: dict[str, Any], read: dict[str, Any], duplicates: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """The lines read, each reason lines were left out, and the lines kept: the lines add up (read = left out +
    kept); what is left unexplained is its own row, never hidden."""
    guest = profile.get("guest") or {}
    rows: list[tuple[Any, ...]] = [("read", profile["rows_read"], profile.get("invoices"), None)]
    if guest:
        rows.append(
            (
                "guest lines dropped (no customer id; not in the forecast)",
                guest["lines"],
                guest.get("invoices"),
                guest.get("value"),
            )
        )
    rows.append(("invalid rows dropped", profile["rows_rejected"], None, None))
    if duplicates.get("dropped"):
        label = "duplicate lines dropped (a copy of another; data.duplicates: drop)"
        rows.append((label, duplicates["dropped"], None, duplicates.get("value")))
    if read.get("quantity") is not None:
        label = f"lines priced <= 0 ({read.get('non_positive_price')})"
        rows.append((label, profile.get("non_positive_price_lines") or 0, None, None))
    if returns.get("rows_in_return_days"):
        label = "lines on return days (net value <= 0: taken off earlier purchases)"
        rows.append((label, returns["rows_in_return_days"], None, returns.get("return_value")))
    left_out = sum(int(r[1] or 0) for r in rows[1:])
    other = profile["rows_read"] - left_out - profile["rows_kept"]
    if other:
        rows.append(("other lines left out", other, None, None))
    rows.append(
        (
            "kept, in transactions" + (" (value after returns)" if profile.get("total_amount") is not None else ""),
            profile["rows_kept"],
            profile.get("invoices_kept"),
            profile.get("total_amount"),
        )
    )
    return rows


def _horizon(totals: dict[str, Any]) -> str:
    """The horizon as given and in days (`12 M (365 days)`); a summary written before durations had a number."""
    label = totals.get("horizon_label")
    return str(label) if label else f"{totals['horizon']:g} {_UNIT_WORDS.get(totals['unit'], totals['unit'])}"


def _data(summary: dict[str, Any], units: _Units) -> str:
    """What was read and what was left out of the forecast, in lines, invoices and the data's money."""
    data = summary.get("data") or {}
    profile, returns = data.get("profile"), (data.get("validation") or {}).get("returns") or {}
    if not profile:
        return ""
    cancelled = profile.get("cancellations") or {}
    read = (summary.get("config") or {}).get("data") or {}
    duplicates = (data.get("validation") or {}).get("duplicates") or {}
    frame = pd.DataFrame(
        _data_rows(profile, returns, read, duplicates), columns=["", "lines", "invoices", "value"], dtype=object
    )
    if not units.has_money:
        frame = frame.drop(columns="value")
    note = (
        f"Lines add up: read = left out + kept. {number(profile['customer_days'])} transactions (customer-days) of "
        f"{number(profile['customers'])} customers, {escape(profile['first_date'])} to {escape(profile['last_date'])}"
    )
    if cancelled:
        note += (
            f"; {number(cancelled['lines'])} cancellation lines on {number(cancelled.get('invoices'))} invoices took "
            f"back {number(cancelled.get('value'))}"
        )
    if duplicates.get("rows") and not duplicates.get("dropped"):
        note += f"; {number(duplicates['rows'])} duplicate lines (copies of another) kept (data.duplicates: keep)"
    if duplicates.get("identical_invoice_lines_kept"):
        note += (
            f"; {number(duplicates['identical_invoice_lines_kept'])} identical lines inside one invoice kept "
            "(repeated items of one basket)"
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
    money_note = "" if units.has_money else " The data has no amounts."
    frame = frame.loc[:, [c for c in frame.columns if c == "" or frame[c].notna().any()]]
    headers = {"value": units.header("value")}
    return (
        "<h2>Data</h2>" + table(frame, headers=headers) + units.money_note + f"<p class='note'>{note}.{money_note}</p>"
    )


def _tiers(tiers: pd.DataFrame, units: _Units) -> str:
    """The tier table with readable headers, shares as percentages and CLV in its unit."""
    frame = tiers.copy()
    cell = units.value()
    ranges = [f"{cell(a)} – {cell(b)}" for a, b in zip(frame["min_clv"], frame["max_clv"], strict=True)]
    frame.insert(5, "clv_range", ranges)
    churn = f"mean_{units.churn}" if units.churn and f"mean_{units.churn}" in frame else None
    columns = ["tier", "customers", "share_of_customers", "total_clv", "share_of_clv", "clv_range"]
    columns += [c for c in (churn, "expected_purchases", "mean_expected_spend") if c is not None and c in frame]
    headers = {
        "share_of_customers": "share of customers",
        "total_clv": units.header("total CLV"),
        "share_of_clv": "share of CLV",
        "clv_range": units.header("CLV range"),
        "expected_purchases": "expected purchases",
        "mean_expected_spend": units.header("mean spend per purchase"),
    }
    if churn:
        headers[churn] = f"mean {units.p_purchase}"
    formats: dict[str, Format] = {
        "tier": text,
        "share_of_customers": percent,
        "share_of_clv": percent,
        "total_clv": units.value(0),
        "clv_range": text,
        "expected_purchases": lambda x: number(x, 0),
        **({churn: percent} if churn else {}),
    }
    return table(frame[columns], formats=formats, headers=headers) + units.money_note


def _pooling(block: dict[str, Any] | None) -> str:
    """A pooled Bayesian fit (model.pool_by): per group, each parameter's posterior mean and interval beside the
    group's separate maximum-likelihood fit, and how far the posterior moved from that fit toward the population
    (the shrinkage); and the population's location and spread."""
    pooling = (block or {}).get("pooling")
    if not pooling:
        return ""
    level = float(pooling.get("interval", 0.9))
    rows = []
    for group, entry in pooling["groups"].items():
        for name, p in entry["params"].items():
            rows.append(
                {
                    "group": str(group),
                    "customers": entry["customers"],
                    "parameter": name,
                    "posterior mean": p.get("mean"),
                    f"{level:.0%} interval": f"{number(p.get('lo'), 4)} – {number(p.get('hi'), 4)}",
                    "separate fit": p.get("separate_fit"),
                    "weight toward the population": p.get("weight_toward_population"),
                }
            )
    frame = pd.DataFrame(rows)
    formats: dict[str, Format] = {c: lambda v: number(v, 4) for c in ("posterior mean", "separate fit")}
    formats |= {
        "group": text,
        "parameter": text,
        f"{level:.0%} interval": text,
        "customers": lambda v: number(v, 0),
        "weight toward the population": lambda v: "–" if v is None else percent(v),
    }
    intro = (
        f"<h3>Pooled across the groups of {escape(str(pooling['column']))}</h3><p>Each group's parameters are drawn "
        "toward the population's on the log scale by as much as its data leave them free: a small group borrows "
        "strength from the rest. <i>weight toward the population</i> is the share of the distance from the "
        "group's separate fit to the population's location that the posterior moved (0%: the group alone, 100%: "
        "the population).</p>"
    )
    return intro + table(frame, formats=formats)


def _model_choice(block: dict[str, Any] | None) -> str:
    """model.purchase auto: the reason, and every candidate's score at each rolling origin and their mean."""
    if not block:
        return ""
    origins = block["origins"]
    rows = [
        {"candidate": c["purchase"], **dict(zip(origins, c["per_origin"], strict=True)), "mean": c["mean"]}
        for c in block["candidates"]
    ]
    formats: dict[str, Format] = {c: lambda v: number(v, 3) for c in (*origins, "mean")}
    notes = "".join(f"<p class='note'>{escape(n)}.</p>" for n in block.get("notes", []))
    intro = (
        f"<h3>Purchase model chosen automatically: {escape(block['chosen'])}</h3><p>{escape(block['reason'])}. "
        f"Each candidate was fitted ({escape(block['method'])}) at each rolling origin (the calibration ends "
        f"below) and scored by {escape(block['criterion'])} on that origin's holdout; ties go to the candidate "
        "listed first. The holdouts end by time.holdout_end, so the holdout below is not independent of the "
        "choice.</p>"
    )
    return intro + table(pd.DataFrame(rows), formats=formats | {"candidate": text}) + notes


def _held_sentence(held: dict[str, Any]) -> str:
    """The report's sentence on a parameter the Bayesian fit held fixed (`clv.model.HeldParameters.record`)."""
    k = held["k"]
    share = float(held.get("approximate_probability", {}).get(str(k), float("nan")))
    return f"k = {k}: {held['how']}. Approximate P(k = {k} | data) = {share:.4f}."


def _params(block: dict[str, Any] | None) -> str:
    if not block:
        return ""
    rows = []
    posterior = block.get("posterior")
    for name, value in block["params"].items():
        se = (block.get("standard_errors") or {}).get(name)
        row = {"parameter": name, "estimate": value, "standard error": se}
        p = posterior.get(name) if posterior else None  # a pooled fit's params are the population's
        if p:
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
    if block.get("pooling"):
        title += "<p>Pooled: the estimates are the population's parameters, exp of the posterior mean of mu; each "
        title += "group's own are in the table below.</p>"
    if block.get("held"):  # the regularity models' k: fixed, not sampled
        title += f"<p>{escape(_held_sentence(block['held']))}</p>"
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
    frame = pd.DataFrame(rows)
    formats: dict[str, Format] = {str(c): lambda v: number(v, 4) for c in frame.columns}
    formats |= {"parameter": text, "R-hat": lambda v: number(v, 3), "ESS bulk": lambda v: number(v, 0)}
    return title + table(frame, formats=formats) + facts + "</p>"


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


def _risk_chart(summary: dict[str, Any], digest: CustomerDigest, units: _Units) -> str:
    """The churn-risk map: P(at least one purchase in the window) over frequency and recency, for customers
    observed as long as most are (the 90th percentile of T); P(alive) when the window is not known."""
    block = summary["purchase_model"]
    cls = PURCHASE_MODELS.get(block["name"])
    if cls is None:
        return ""
    model = cls.from_params(**block["params"])
    T = digest.T_p90
    top = int(max(2, min(digest.frequency_p99, 60)))
    freqs = np.arange(0, top + 1, dtype=float)
    recs = np.linspace(0, T, 40)
    grid_x, grid_t = np.meshgrid(freqs, recs, indexing="ij")
    frame = pd.DataFrame({"frequency": grid_x.ravel(), "recency": grid_t.ravel(), "T": T})
    frame.loc[frame["frequency"] == 0, "recency"] = 0.0
    if cls.customer_latents:  # the regularity of the intervals matters too: the map is for intervals of equal length
        x, t_x = frame["frequency"].to_numpy(), frame["recency"].to_numpy()
        gap = np.maximum(t_x, 0.01 * np.maximum(x, 1.0)) / np.maximum(x, 1.0)
        frame["sum_log_intervals"] = np.where(x > 0, x * np.log(gap), 0.0)
    window = (summary.get("churn_risk") or {}).get("window")
    if window:
        values, label = 1.0 - model.probability_of_purchases(frame, 0, float(window)), units.p_purchase
    else:
        values, label = model.probability_alive(frame), "P(alive)"
    chart = charts.probability_map(freqs, recs, values.reshape(grid_x.shape), T, units.time, label)
    image = f'<img alt="{escape(label)} by frequency and recency" src="{chart}">'
    if cls.customer_latents:
        image += (
            "<p class='note'>Pareto/GGG: the map is for customers whose purchases came at equal intervals (the most "
            "regular history of each frequency and recency), at the posterior means of the model's parameters.</p>"
        )
    if block.get("covariates"):  # the base parameters are those of the reference covariate pattern
        image += (
            "<p class='note'>The map is for customers at the reference of every covariate (the model's base "
            "parameters); see What drives value for how the covariates move it.</p>"
        )
    return image


def _holdout(summary: dict[str, Any], digest: CustomerDigest) -> str:
    h = summary.get("holdout")
    if not h or digest.holdout_by_frequency is None:
        return ""
    lines = [
        f"<p>Holdout of {h['holdout_length']:.1f} {escape(_UNIT_WORDS.get(h['unit'], h['unit']))}: "
        f"predicted {number(h['predicted_repeat_purchases'], 1)} "
        f"repeat purchases, actual {number(h['actual_repeat_purchases'], 0)} "
        f"({number(h['percent_error'], 1)}%); mean absolute error per customer {number(h['mae_per_customer'], 3)} "
        "purchases.</p>"
    ]
    if "customer_interval_coverage" in h:
        total = h["total_predictive"]
        lines.append(
            f"<p>{percent(h['interval'], 0)} predictive intervals hold {percent(h['customer_interval_coverage'])} of "
            f"customers' actual holdout purchases; the total's interval is {number(total['lo'], 0)} – "
            f"{number(total['hi'], 0)}, and the actual total is "
            f"{'inside' if h['actual_total_inside_interval'] else 'outside'} it.</p>"
        )
    chart = charts.holdout_by_frequency(digest.holdout_by_frequency)
    return "<h2>Holdout: predicted versus actual</h2>" + "".join(lines) + f'<img alt="holdout" src="{chart}">'


def _band(band: dict[str, Any] | None, units: _Units) -> str:
    """The forecast band in words: each total's band over the horizon (calibrated or not, and by how much the
    origins moved it), its backtest ("held in X of N past origins") and the caveats."""
    if not band:
        return ""
    level = percent(band["level"], 0)
    lines = []
    for kind, total in band["totals"].items():

        def show(value: float, kind: str = kind) -> str:
            return money(value, units.currency, 0) if kind == "revenue" else number(value, 0)

        q = total["adjustment"]
        state = (
            f"calibrated on {len(total['per_origin'])} past origins (the parameter and process band "
            f"{show(total['uncalibrated_lo'])} – {show(total['uncalibrated_hi'])} "
            f"{'widened' if q >= 0 else 'narrowed'} by {abs(q):.2f} of its width on each side, on the log scale)"
            if total["calibrated"]
            else f"<b>uncalibrated</b> (too few past origins: {len(total['per_origin'])}, {band['min_origins']} needed)"
        )
        lines.append(f"<li>total {escape(kind)}: {show(total['lo'])} – {show(total['hi'])}, {state}</li>")
    notes = "".join(f"<li>{escape(c)}</li>" for c in band["caveats"])
    return (
        f"<p>{level} band of the totals over the horizon (what will actually be bought, not only its expectation):</p>"
        f"<ul>{''.join(lines)}</ul><p><b>{escape(band['sentence'])}</b></p>"
        f"<p class='note'>Origins {escape(', '.join(band['origins']) or 'none')}. {escape(band['method'])}.</p>"
        f"<ul class='note'>{notes}</ul>"
    )


def _churn_caveat(summary: dict[str, Any]) -> str | None:
    """The sentence that says the purchase model's churn risk is not identified, or None."""
    caveats = (summary.get("purchase_model") or {}).get("not_identified") or {}
    return caveats.get(DROPOUT)


def _segment_table(
    groups: dict[str, GroupFigures], digest: CustomerDigest, units: _Units, by: str, order: list[str]
) -> str:
    """Per segment of `by` (its groups' figures, in `order`): customers, their share, CLV and its share, mean
    churn risk, and with a holdout the share of customers who bought in it (the check of the segments)."""
    total = digest.total_clv
    rows = []
    for name in order:
        part = groups.get(name)
        if part is None or not part.customers:
            continue
        row: dict[str, Any] = {
            by: name,
            "customers": part.customers,
            "share_of_customers": part.customers / digest.customers,
            "clv": part.clv,
            "share_of_clv": part.clv / total if total else float("nan"),
        }
        if units.churn and part.p_purchase is not None:
            row["p"] = part.p_purchase
        if part.bought is not None:
            row["bought"] = part.bought
        rows.append(row)
    headers = {
        "segment": "segment",
        "rfm_segment": "RFM segment",
        "share_of_customers": "share of customers",
        "clv": units.header("total CLV"),
        "share_of_clv": "share of CLV",
        "p": f"mean {units.p_purchase}",
        "bought": "bought in the holdout",
    }
    formats: dict[str, Format] = {by: text, "clv": units.value(0)} | dict.fromkeys(
        ("share_of_customers", "share_of_clv", "p", "bought"), percent
    )
    return table(pd.DataFrame(rows), formats=formats, headers=headers)


def _segments(summary: dict[str, Any], digest: CustomerDigest, units: _Units) -> str:
    """The value-by-risk segments: how they are defined, their table and the churn-risk map."""
    caveat = _churn_caveat(summary)
    risk = summary.get("churn_risk") or {}
    threshold = risk.get("at_risk_p_purchase")
    if caveat is not None:
        text_ = (
            f"<p class='warn'>{escape(caveat)}.</p><p>The segments are by value only (high value / other). "
            f"The column {escape(units.churn or 'p_purchase_next_*')} is still each customer's forecast chance of "
            "buying, but without dropout it does not depend on how long ago the customer last bought, so a low value "
            "marks a slow buyer, not one slipping away: nobody is listed as slipping away.</p>"
        )
        order = list(UNIDENTIFIED_SEGMENTS)
    else:
        text_ = (
            "<p>Churn risk is the chance that a customer buys at least once in "
            f"{escape(units.window)} ({escape(units.churn or '')}), from the purchase model. "
            f"Customers at or above {percent(threshold, 0) if threshold else 'the threshold'} are <b>active</b>; "
            "below it, high-value customers (the top tiers) are <b>slipping away</b> and the others are "
            "<b>lapsing</b>. Unlike P(alive), this predicts who buys again: a one-time buyer has P(alive) = 1 "
            "under BG/NBD however long ago the purchase was.</p>"
        )
        order = list(SEGMENTS)
    chart = "" if caveat is not None else _risk_chart(summary, digest, units)
    segments = _segment_table(digest.segments, digest, units, "segment", order)
    return "<h2>Churn risk and segments</h2>" + text_ + segments + chart


def _at_risk(summary: dict[str, Any], digest: CustomerDigest, units: _Units) -> str:
    caveat = _churn_caveat(summary)
    if caveat is not None:
        return (
            f"<h2>{escape(AT_RISK.capitalize())}: not meaningful</h2>"
            "<p>The data cannot tell who is slipping away (see above): the list is empty.</p>"
        )
    slipping = digest.at_risk_top
    days = "days_since_last_purchase"
    wanted = ["customer_id", "tier", "clv", units.churn, "frequency", "first_purchase", "last_purchase", days]
    columns = [c for c in [*wanted, "expected_spend"] if c is not None and c in slipping]
    headers = {
        "customer_id": "customer id",
        "clv": units.header("CLV"),
        "frequency": "repeat purchases",
        "first_purchase": "first purchase",
        "last_purchase": "last purchase",
        days: "days since last purchase",
        "expected_spend": units.header("expected spend per purchase"),
        **({units.churn: units.p_purchase} if units.churn else {}),
    }
    formats: dict[str, Format] = {"customer_id": text, "tier": text, "clv": units.value(), days: number}
    below = {units.churn: percent_below} if units.churn else {}  # listed for being below the threshold
    formats |= {"first_purchase": text, "last_purchase": text, **below}
    body = (
        table(slipping[columns], formats=formats, headers=headers)
        if len(slipping)
        else "<p>No high-value customer is slipping away.</p>"
    )
    return (
        f"<h2>{escape(AT_RISK.capitalize())} ({digest.at_risk_customers:,} customers)</h2>"
        f"<p class='note'>Customers in the top tiers who are unlikely to buy in {escape(units.window)}: whom to win "
        f"back first (the first {AT_RISK_ROWS} by CLV; the whole list is at_risk.csv).</p>" + body
    )


def _rfm_view(digest: CustomerDigest, units: _Units) -> str:
    """The RFM segments, as a separate, descriptive view of the calibration history."""
    if digest.rfm_segments is None or digest.rfm_by_segment is None:
        return ""
    order = list(digest.rfm_segments)
    note = (
        "<p>RFM segments describe the past: each customer's recency (time since the last purchase), frequency and, "
        "with amounts, mean spend are scored 1-5 by quintile against the other customers (the rfm_score), and the "
        "recency and frequency scores are named (champions, loyal "
        "customers, ..., hibernating). They are relative and look backward; the segments above are the model's "
        f"forecast of {escape(units.window)}. The two can differ: a customer with one repeat purchase months ago "
        "scores as loyal when most customers never came back, yet is unlikely to buy soon.</p>"
    )
    crossed = digest.rfm_by_segment.reindex(order)
    crossed.index.name = "RFM segment"
    return (
        "<h2>RFM view</h2>"
        + note
        + _segment_table(digest.rfm_segments, digest, units, "rfm_segment", order)
        + "<h3>RFM segments by churn-risk segment (customers)</h3>"
        + table(crossed, index=True)
    )


def _times(value: Any) -> str:
    """A ratio as `1.87x`."""
    return "–" if value is None or not np.isfinite(value) else f"{float(value):.2f}x"


def _driver_coefficients(drivers: pd.DataFrame) -> str:
    """The coefficients per contrast and process, with their intervals on both scales."""
    frame = drivers.assign(
        interval=[
            f"{number(a, 4)} – {number(b, 4)}"
            for a, b in zip(drivers["coefficient_lo"], drivers["coefficient_hi"], strict=True)
        ],
        exp_interval=[
            f"{_times(a)} – {_times(b)}"
            for a, b in zip(drivers["exp_coefficient_lo"], drivers["exp_coefficient_hi"], strict=True)
        ],
    )
    level = f"{float(drivers['interval_level'].iloc[0]):.0%}"
    columns = ["contrast", "process", "coefficient", "standard_error", "interval"]
    if not np.allclose(drivers["coefficient_per_unit"], drivers["coefficient"]):
        columns.append("coefficient_per_unit")
    columns += ["exp_coefficient", "exp_interval", "distinguishable"]
    headers = {
        "standard_error": "standard error",
        "interval": f"{level} interval",
        "coefficient_per_unit": "coefficient per unit of the covariate",
        "exp_coefficient": "exp(coefficient)",
        "exp_interval": f"{level} interval of exp(coefficient)",
        "distinguishable": "interval excludes no effect",
    }
    formats: dict[str, Format] = dict.fromkeys(
        ("contrast", "process", "interval", "exp_interval", "distinguishable"), text
    )
    formats |= {"coefficient": lambda v: number(v, 4), "standard_error": lambda v: number(v, 4)}
    formats |= {"coefficient_per_unit": lambda v: number(v, 4), "exp_coefficient": _times}
    meanings = drivers.drop_duplicates("process").set_index("process")["exp_coefficient_means"]
    said = "; ".join(f"{escape(p)}: the {escape(m)}" for p, m in meanings.items())
    note = f"<p class='note'>exp(coefficient) is, by process: {said}.</p>"
    return table(frame[columns], formats=formats, headers=headers) + note


def _driver_effects(drivers: pd.DataFrame, units: _Units) -> str:
    """The average effects per contrast: ratios of the customers' means, and the mean CLV on both sides."""
    frame = drivers.drop_duplicates("contrast")
    ratios = [
        c
        for c in ("p_alive_ratio", "p_churn_ratio", "expected_purchases_ratio", "expected_spend_ratio", "clv_ratio")
        if c in frame
    ]
    horizon = str(frame["horizon"].iloc[0])
    headers = {
        "p_alive_ratio": "P(alive)",
        "p_churn_ratio": "P(has left)",
        "expected_purchases_ratio": f"expected purchases, next {horizon}",
        "expected_spend_ratio": "expected spend per purchase",
        "clv_ratio": f"CLV, next {horizon}",
        "mean_clv_level": units.header("mean CLV at the level"),
        "mean_clv_reference": units.header("mean CLV at the reference"),
    }
    formats: dict[str, Format] = {"contrast": text} | dict.fromkeys(ratios, _times)
    formats |= {"mean_clv_level": units.value(), "mean_clv_reference": units.value()}
    return (
        table(frame[["contrast", *ratios, "mean_clv_level", "mean_clv_reference"]], formats=formats, headers=headers)
        + units.money_note
    )


def _drivers(drivers: pd.DataFrame | None, units: _Units) -> str:
    """What drives value: the sentences, the chart, the coefficients and the average effects (drivers.csv)."""
    if drivers is None or not len(drivers):
        return ""
    level = f"{float(drivers['interval_level'].iloc[0]):.0%}"
    intro = (
        "<p>Each covariate level is compared with its reference level (a numeric covariate: one unit more, or one "
        "standard deviation when standardised, against the customers' own values). The effect is an average "
        "counterfactual: every customer is valued twice, once with the covariate at the level and once at the "
        "reference, keeping their own purchase history and other covariates, and the ratio of the two means is "
        "shown. Because each customer's history is held fixed, this answers \"what if these customers had the "
        'level", not "which segment brings better customers": a lower purchase rate makes the same silence look '
        "less like having left, so the expected purchases can move less than the rate, or the other way. The "
        "coefficients' ratios (exp(coefficient)) compare the segments themselves. "
        f"The coefficients come with {level} intervals "
        f"({escape(drivers['interval_method'].iloc[0])}); where an interval includes no effect (a coefficient of 0, "
        "exp(coefficient) = 1x) the data cannot tell the effect from none. CLV is valued as in the rest of this "
        f"report, in {escape(units.value_unit)}.</p>"
    )
    sentences = "".join(f"<li>{escape(s)}</li>" for s in dict.fromkeys(drivers["sentence"]))
    chart = f'<img alt="what drives value" src="{charts.drivers_chart(drivers)}">'
    return (
        "<h2>What drives value</h2>"
        + intro
        + f"<ul>{sentences}</ul>"
        + chart
        + "<h3>Average effects (at the level / at the reference)</h3>"
        + _driver_effects(drivers, units)
        + "<h3>Coefficients</h3>"
        + _driver_coefficients(drivers)
    )


def _units_note(summary: dict[str, Any]) -> str:
    """What each output column measures, as a two-column table."""
    units = summary.get("units") or {}
    frame = pd.DataFrame({"column": list(units), "what it measures": list(units.values())})
    return "<h2>Columns and units</h2>" + table(frame, formats={"column": text, "what it measures": text})


def build_report(
    summary: dict[str, Any],
    digest: CustomerDigest,
    forecast: pd.DataFrame,
    tiers: pd.DataFrame,
    migration: pd.DataFrame | None,
    drivers: pd.DataFrame | None = None,
) -> str:
    """The report as one HTML string with every chart embedded; `drivers` (drivers.csv, for models with
    covariates) adds the section "What drives value". What it shows of the customers comes from their digest
    (`clv.digest`), never the customer table itself."""
    units = _Units.of(summary, digest)
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
        f"annual discount rate {percent(config['prediction']['annual_discount_rate'], 0)}; "
        f"margin {percent(config['prediction']['margin'], 0)}; CLV in {escape(units.value_unit)}; "
        f"created {escape(summary['created'])}.</p>",
    ]
    parts += [f"<p class='warn'>{escape(w)}</p>" for w in summary.get("warnings", [])]
    parts.append(_headline(summary, digest, units))
    parts.append(_data(summary, units))
    parts.append("<h2>Value tiers</h2>" + _tiers(tiers, units))
    parts.append(f'<img alt="tiers" src="{charts.tier_shares(tiers)}">')
    if migration is not None:
        parts.append("<h3>Tier migration since the last run</h3>" + table(migration, index=True))
    column = "expected_revenue" if revenue else "expected_purchases"
    label = f"expected revenue ({units.value_unit}, not discounted)" if revenue else "expected purchases"
    band = summary.get("forecast_band")
    band_label = None if not band else f"{percent(band['level'], 0)} band"
    forecast_chart = charts.revenue_forecast(forecast, column, label, band_label)
    parts.append(f'<h2>Forecast</h2><img alt="forecast" src="{forecast_chart}">' + _band(band, units))
    parts.append(_segments(summary, digest, units))
    chart = charts.clv_distribution(digest.clv_shape, units.value_unit)
    parts.append(f'<h2>CLV distribution</h2><img alt="CLV distribution" src="{chart}">')
    parts.append(_drivers(drivers, units))
    parts.append(_at_risk(summary, digest, units))
    parts.append(_rfm_view(digest, units))
    parts.append(
        "<h2>Models</h2>"
        + _model_choice(summary.get("model_choice"))
        + _params(summary["purchase_model"])
        + _pooling(summary["purchase_model"])
        + _params(summary.get("spend_model"))
        + _pooling(summary.get("spend_model"))
        + _spend_checks(summary)
    )
    parts.append(_holdout(summary, digest))
    parts.append(_units_note(summary))
    parts.append(
        f"<p class='note'>config hash {escape(summary['config_hash'])}; "
        f"clv {escape(summary['versions'].get('clv'))}.</p>"
    )
    return page(f"CLV report: {summary['name']}", parts)
