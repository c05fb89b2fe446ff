"""What drives value: each covariate's coefficients with their intervals, and its average effect on P(alive),
expected purchases, spend and CLV, with a sentence a marketer reads.

Coefficients act on the log scale of the parameters they move (`clv.covariates`, CLVTools' parameterisation):
for the purchase process alpha_i = alpha exp(-g_p'z_i), so the mean purchase rate r / alpha_i of customers one
unit of z apart differs by the factor exp(g_p) (Pareto/NBD, BG/NBD and MBG/NBD alike); for the Pareto/NBD
dropout process beta_i = beta exp(-g_d'z_i), so the mean dropout rate s / beta_i differs by exp(g_d); for the
BG/NBD family a_i = a exp(g_d'z_i) and b_i = b exp(g_d'z_i) scale together (the mean dropout probability
a / (a + b) is unchanged, only its spread moves); for Gamma-Gamma v_i = v exp(g_s'z_i), so the expected spend
per purchase p v_i / (q - 1) differs by exp(g_s).

A coefficient's interval comes from one function per estimation method, given to `drivers_table` as
`CoefficientEstimate`s: maximum likelihood's Wald interval g +- z se (`wald_intervals`); a posterior's quantiles
of its coefficient draws can give the same objects.

The effect on P(alive), expected purchases, spend and CLV is an average counterfactual: every customer is valued
twice, once with the covariate set to the level and once set to the reference (a numeric covariate: its own value
plus one unit, or plus one standard deviation when the model standardised it, against its own value; a numeric
covariate whose values are 0 and 1 is a switch, compared as 1 against 0), keeping each customer's history and
other covariates; the effect is the ratio of the customers' means. The value is the run's own
(`clv.value.value_customers`: its horizon, discounting and margin).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from clv.bayes.posterior import Posterior
from clv.covariates import CovariateColumn
from clv.errors import ClvError, plain_number
from clv.model import DROPOUT, FittedModel
from clv.purchase.base import PurchaseModel
from clv.spend.gamma_gamma import GammaGammaModel
from clv.units import Duration, TimeUnit
from clv.value import value_customers

if TYPE_CHECKING:
    from clv.config import RunConfig

__all__ = [
    "DRIVER_UNITS",
    "INTERVAL_LEVEL",
    "CoefficientEstimate",
    "Contrast",
    "Valuation",
    "average_effect",
    "contrasts",
    "driver_sentence",
    "drivers_table",
    "posterior_intervals",
    "wald_intervals",
]

#: the coefficient intervals' level: 90%
INTERVAL_LEVEL = 0.90

#: the customer means each contrast compares (columns of `value_customers`' customer table)
_MEASURES = ("p_alive", "p_churn", "expected_purchases", "expected_spend", "clv")

#: what exp(g) means, by the parameters a process's coefficients move (`covariate_effects`)
_EXP_MEANING: dict[tuple[tuple[str, float], ...], str] = {
    (("alpha", -1.0),): "ratio of the mean purchase rates (while active)",
    (("beta", -1.0),): "ratio of the mean dropout rates",
    (("a", 1.0), ("b", 1.0)): "factor on the dropout parameters a and b (their mean a / (a + b) unchanged)",
    (("v", 1.0),): "ratio of the expected spends per purchase",
}

#: what each column of drivers.csv measures (`Valuation` fills in the currency and the horizon)
DRIVER_UNITS: dict[str, str] = {
    "covariate": "the covariate column",
    "kind": "categorical (a level against the reference level) or numeric",
    "level": "the level compared (numeric: the covariate plus `step`)",
    "reference_level": "the level it is compared with (numeric: the customers' own values)",
    "contrast": "the comparison, in words",
    "step": "numeric: the step of the comparison in the covariate's own units (1, or 1 sd when standardised); "
    "categorical: 1 (the switch from the reference level)",
    "process": "the model process the coefficient acts in: purchase, dropout or spend",
    "design": "the coefficient's design column (categorical: column[level])",
    "coefficient": "g, on the log scale of the parameters it moves (CLVTools' parameterisation)",
    "standard_error": "standard error of g (empty when the information matrix is singular)",
    "interval_level": "the interval's level (0.9: 90%)",
    "interval_method": "how the interval was computed",
    "coefficient_lo": "lower end of g's interval",
    "coefficient_hi": "upper end of g's interval",
    "distinguishable": "whether g's interval excludes 0 (yes / no; unknown without a standard error)",
    "coefficient_per_unit": "g per one of the covariate's own units (standardised numeric: g / sd; else g)",
    "exp_coefficient": "exp(g): see exp_coefficient_means",
    "exp_coefficient_lo": "exp of the interval's lower end",
    "exp_coefficient_hi": "exp of the interval's upper end",
    "exp_coefficient_means": "what exp(g) is a ratio of",
    "p_alive_ratio": "mean P(alive) at the calibration end, at the level over at the reference",
    "p_churn_ratio": "mean P(has left by the calibration end), at the level over at the reference",
    "expected_purchases_ratio": "mean expected purchases over the horizon, at the level over at the reference",
    "expected_spend_ratio": "mean expected spend per purchase, at the level over at the reference",
    "clv_ratio": "mean CLV over the horizon, at the level over at the reference",
    "mean_clv_level": "mean CLV per customer at the level (value_unit)",
    "mean_clv_reference": "mean CLV per customer at the reference (value_unit)",
    "value_unit": "the unit of the mean CLV columns",
    "horizon": "the horizon of the expected purchases and CLV",
    "sentence": "the contrast in words",
}


@dataclass(frozen=True)
class CoefficientEstimate:
    """One coefficient, its standard error and its interval [lo, hi] at `level` (None when unknown), and how the
    interval was computed (`method`)."""

    process: str
    design: str
    value: float
    standard_error: float | None
    lo: float | None
    hi: float | None
    level: float
    method: str

    @property
    def distinguishable(self) -> bool | None:
        """Whether the interval excludes 0 (None: no interval)."""
        if self.lo is None or self.hi is None:
            return None
        return not (self.lo <= 0.0 <= self.hi)


Estimates = Mapping[tuple[str, str], CoefficientEstimate]


def wald_intervals(model: FittedModel, level: float = INTERVAL_LEVEL) -> dict[tuple[str, str], CoefficientEstimate]:
    """Maximum likelihood's Wald intervals g +- z se, z the (1 + level) / 2 quantile of the standard normal (1.645
    for 90%), per (process, design column); without standard errors the interval is unknown."""
    z = float(ndtri((1.0 + level) / 2.0))
    errors = model.coefficient_standard_errors_ or {}
    out: dict[tuple[str, str], CoefficientEstimate] = {}
    for process, values in model.coefficients_.items():
        for design, g in values.items():
            se = errors.get(process, {}).get(design)
            known = se is not None and math.isfinite(se)
            out[(process, design)] = CoefficientEstimate(
                process,
                design,
                float(g),
                float(se) if se is not None and known else None,
                g - z * se if se is not None and known else None,
                g + z * se if se is not None and known else None,
                level,
                f"Wald (maximum likelihood): g +- {z:.3f} se",
            )
    return out


def posterior_intervals(
    posterior: Posterior, level: float = INTERVAL_LEVEL
) -> dict[tuple[str, str], CoefficientEstimate]:
    """A Bayesian fit's central posterior intervals of the coefficients (the (1 - level) / 2 and (1 + level) / 2
    quantiles of the draws of g), with the posterior mean as the value and the posterior sd as its standard
    error, per (process, design column); {} for a posterior without covariates."""
    layout = posterior.layout
    if layout is None or layout.pooled or layout.covariates is None:
        return {}
    k = len(layout.base_names)
    out: dict[tuple[str, str], CoefficientEstimate] = {}
    for process, slots in layout.slots.items():
        for design, slot in zip(layout.covariates.design_names(process), slots, strict=True):
            g = posterior.draws[:, k + int(slot)]
            lo, hi = np.quantile(g, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
            out[(process, design)] = CoefficientEstimate(
                process,
                design,
                float(np.mean(g)),
                float(np.std(g, ddof=1)),
                float(lo),
                float(hi),
                level,
                f"posterior central interval ({posterior.draws.shape[0]:,} draws); value the posterior mean",
            )
    return out


@dataclass(frozen=True)
class Valuation:
    """How the run values customers: the horizon (in the run's `unit`, and in words), the annual discount rate,
    the margin, the calibration end's date and the currency of the amounts (None: not named)."""

    horizon: float
    horizon_words: str
    annual_discount_rate: float
    margin: float
    unit: TimeUnit
    calibration_end: dt.date | None = None
    currency: str | None = None

    @classmethod
    def of(cls, config: RunConfig) -> Valuation:
        """The valuation of a run's config (as `clv.pipeline.value_models` values its customers)."""
        end = config.time.calibration_end
        return cls(
            horizon=config.horizon_units(end),
            horizon_words=duration_words(config.prediction.duration),
            annual_discount_rate=config.prediction.annual_discount_rate,
            margin=config.prediction.margin,
            unit=config.time.unit,
            calibration_end=end,
            currency=config.data.currency,
        )

    def value_unit(self, has_spend: bool) -> str:
        if not has_spend:
            return "discounted purchases (no amounts)"
        return f"{self.currency or 'currency of the data'}, discounted to the calibration end, times margin"


_DURATION_WORDS = {"D": "day", "W": "week", "M": "month", "Y": "year"}


def duration_words(duration: Duration) -> str:
    """`12 months`, `52 weeks`, `1 year`."""
    count = f"{duration.count:g}"
    word = _DURATION_WORDS[duration.unit]
    return f"{count} {word}" + ("" if duration.count == 1 else "s")


@dataclass(frozen=True)
class Contrast:
    """One comparison of a covariate: a categorical level (or a 0/1 numeric's 1) against the reference, or a
    numeric covariate plus `step` of its own units against itself."""

    column: CovariateColumn
    level: str | None
    reference: str | None
    step: float
    design: str

    @property
    def covariate(self) -> str:
        return self.column.name

    @property
    def describe(self) -> str:
        """`Channel = 1 vs Channel = 0`, `Age + 1 sd (12.3) vs Age`."""
        name = self.column.name
        if self.level is not None:
            return f"{name} = {self.level} vs {name} = {self.reference}"
        if self.column.standardised:
            return f"{name} + 1 sd ({_short(self.step)}) vs {name}"
        return f"{name} + {_short(self.step)} vs {name}"

    def frames(self, rfm: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The customers with the covariate at the level, and at the reference."""
        name = self.column.name
        if self.level is not None:
            as_level = self._as(self.level, rfm[name])
            as_reference = self._as(self.reference, rfm[name])
            return rfm.assign(**{name: as_level}), rfm.assign(**{name: as_reference})
        values = pd.to_numeric(rfm[name]).to_numpy(dtype=float)
        return rfm.assign(**{name: values + self.step}), rfm

    def _as(self, level: str | None, values: pd.Series) -> Any:
        """The level as the column holds its values (a number for a numeric column)."""
        if self.column.kind == "numeric" or pd.api.types.is_numeric_dtype(values):
            return float(str(level))
        return level


def _short(x: float) -> str:
    """A step or level for a label: plain digits, never scientific notation (34,350, 0.0042)."""
    return plain_number(x, 4)


def _exp(x: float) -> float | None:
    """exp(x) as a ratio for the table: None where it is beyond what a float holds (a coefficient of a level with
    a handful of customers can run to hundreds), never inf."""
    return math.exp(x) if x < 700.0 else None


def contrasts(columns: Sequence[CovariateColumn], rfm: pd.DataFrame) -> list[Contrast]:
    """The comparisons of the covariates' drivers table: one per non-reference level of a categorical covariate;
    for a numeric one, 1 against 0 when its values are 0 and 1, else plus one unit (one sd when standardised)."""
    out: list[Contrast] = []
    for column in columns:
        if column.kind == "categorical":
            out += [
                Contrast(column, level, column.reference, 1.0, f"{column.name}[{level}]")
                for level in column.levels
                if level != column.reference
            ]
            continue
        values = set(pd.to_numeric(rfm[column.name]).unique().tolist()) if column.name in rfm else set()
        if values == {0.0, 1.0}:
            out.append(Contrast(column, "1", "0", 1.0, column.name))
        else:
            out.append(Contrast(column, None, None, column.scale, column.name))
    return out


def _value_means(
    purchase: PurchaseModel, spend: GammaGammaModel | None, rfm: pd.DataFrame, valuation: Valuation
) -> dict[str, float]:
    """The customers' mean P(alive), P(churn), expected purchases, expected spend and CLV, valued as the run
    values them (`value_customers`, which keeps customers of different covariate patterns apart)."""
    value = value_customers(
        purchase,
        spend,
        rfm,
        valuation.horizon,
        valuation.annual_discount_rate,
        valuation.margin,
        valuation.unit,
        residual=False,
        calibration_end=valuation.calibration_end,
    ).customers
    means = {measure: float(value[measure].mean()) for measure in _MEASURES if measure in value}
    return means if spend is not None else {k: v for k, v in means.items() if k != "expected_spend"}


def average_effect(
    purchase: PurchaseModel,
    spend: GammaGammaModel | None,
    rfm: pd.DataFrame,
    contrast: Contrast,
    valuation: Valuation,
) -> tuple[dict[str, float], dict[str, float]]:
    """The customers' means (`_value_means`) with the covariate at the contrast's level and at its reference."""
    at_level, at_reference = contrast.frames(rfm)
    return _value_means(purchase, spend, at_level, valuation), _value_means(purchase, spend, at_reference, valuation)


def _ratio(a: float, b: float, what: str) -> float:
    """a / b, 1 when both are 0 (e.g. P(churn) of a model without dropout)."""
    if b == 0.0:
        if a == 0.0:
            return 1.0
        raise ClvError(f"the drivers table cannot compare {what}: it is 0 at the reference and {a:g} at the level")
    return a / b


def _models(purchase: PurchaseModel, spend: GammaGammaModel | None) -> list[FittedModel]:
    return [m for m in (purchase, spend) if m is not None and m.covariates_ is not None]


def _columns(purchase: PurchaseModel, spend: GammaGammaModel | None) -> list[CovariateColumn]:
    """Every covariate of the models, in the order they were named (the purchase model's encoding first)."""
    columns: dict[str, CovariateColumn] = {}
    for model in _models(purchase, spend):
        covariates = model.covariates_
        assert covariates is not None
        for process_columns in covariates.processes.values():
            for name in process_columns:
                columns.setdefault(name, covariates.columns[name])
    return list(columns.values())


def _process_rows(
    purchase: PurchaseModel, spend: GammaGammaModel | None, contrast: Contrast, estimates: Estimates
) -> list[tuple[FittedModel, CoefficientEstimate]]:
    """The coefficients of a contrast's design column, in every process that has it."""
    rows = []
    for model in _models(purchase, spend):
        for process in model.covariate_effects:
            estimate = estimates.get((process, contrast.design))
            if estimate is not None:
                rows.append((model, estimate))
    return rows


def drivers_table(
    purchase: PurchaseModel,
    spend: GammaGammaModel | None,
    rfm: pd.DataFrame,
    valuation: Valuation,
    estimates: Estimates | None = None,
) -> pd.DataFrame | None:
    """drivers.csv: one row per covariate (numeric) or non-reference level (categorical) and process, with the
    coefficient, its interval (`estimates`; default the models' Wald intervals, `wald_intervals`) and the
    contrast's average effect (`average_effect`) and sentence (`driver_sentence`); None when neither model has
    covariates. The columns are described in `DRIVER_UNITS`."""
    models = _models(purchase, spend)
    if not models:
        return None
    if estimates is None:
        estimates = {key: e for model in models for key, e in wald_intervals(model).items()}
    records: list[dict[str, Any]] = []
    for contrast in contrasts(_columns(purchase, spend), rfm):
        level, reference = average_effect(purchase, spend, rfm, contrast, valuation)
        ratios = {m: _ratio(level[m], reference[m], m) for m in level}
        rows = _process_rows(purchase, spend, contrast, estimates)
        by_process = {e.process: e for _, e in rows}
        sentence = driver_sentence(contrast, by_process, ratios, (level["clv"], reference["clv"]), purchase, valuation)
        for model, estimate in rows:
            record = _contrast_record(contrast) | _coefficient_record(model, estimate, contrast)
            record |= {f"{m}_ratio": r for m, r in ratios.items()}
            record |= {"mean_clv_level": level["clv"], "mean_clv_reference": reference["clv"]}
            record |= {"value_unit": valuation.value_unit(spend is not None), "horizon": valuation.horizon_words}
            records.append(record | {"sentence": sentence})
    return pd.DataFrame.from_records(records)


def _contrast_record(contrast: Contrast) -> dict[str, Any]:
    return {
        "covariate": contrast.covariate,
        "kind": contrast.column.kind,
        "level": contrast.level if contrast.level is not None else f"+{_short(contrast.step)}",
        "reference_level": contrast.reference if contrast.reference is not None else "own value",
        "contrast": contrast.describe,
        "step": contrast.step,
    }


def _coefficient_record(model: FittedModel, e: CoefficientEstimate, contrast: Contrast) -> dict[str, Any]:
    """A coefficient's columns: the estimate, its interval, per original unit, and exp(g) with its meaning."""
    distinguishable = {True: "yes", False: "no", None: "unknown"}[e.distinguishable]
    scale = contrast.column.scale if contrast.column.kind == "numeric" else 1.0
    effects = tuple(model.covariate_effects[e.process])
    return {
        "process": e.process,
        "design": e.design,
        "coefficient": e.value,
        "standard_error": e.standard_error,
        "interval_level": e.level,
        "interval_method": e.method,
        "coefficient_lo": e.lo,
        "coefficient_hi": e.hi,
        "distinguishable": distinguishable,
        "coefficient_per_unit": e.value / scale,
        "exp_coefficient": _exp(e.value),
        "exp_coefficient_lo": None if e.lo is None else _exp(e.lo),
        "exp_coefficient_hi": None if e.hi is None else _exp(e.hi),
        "exp_coefficient_means": _EXP_MEANING.get(effects, f"factor on {', '.join(p for p, _ in effects)}"),
    }


def _times(x: float | None) -> str:
    """A ratio as a marketer reads it: `1.87x` (beyond 1,000x or under 0.001x: said so, not as digits)."""
    if x is None or x > 1e3:
        return "over 1,000x"
    if x < 1e-3:
        return "under 0.001x"
    return f"{x:.2f}x"


def _interval(e: CoefficientEstimate) -> str:
    if e.lo is None or e.hi is None:
        return "no interval: the standard error is not available"
    return f"{e.level:.0%} interval {_times(_exp(e.lo))} to {_times(_exp(e.hi))}"


_UNDISTINGUISHABLE = "not distinguishable from no effect"


def _clause(e: CoefficientEstimate, claim: str, of: str = "") -> str:
    """`claim`, said to be `not distinguishable from no effect` when the interval includes 0 (or is unknown),
    then the interval of exp(g) (`of`: what exp(g) is, when it is not the claim's own ratio)."""
    said = claim if e.distinguishable else f"{claim}, {_UNDISTINGUISHABLE}"
    return f"{said} ({of}{_interval(e)})"


def driver_sentence(
    contrast: Contrast,
    coefficients: Mapping[str, CoefficientEstimate],
    ratios: Mapping[str, float],
    clv: tuple[float, float],
    purchase: PurchaseModel,
    valuation: Valuation,
) -> str:
    """The contrast in words: the purchase rate (exp(g_p)), the chance of having left by the calibration end (the
    ratio of mean P(churn), with exp(g_d)), the spend per purchase (exp(g_s)), and the expected purchases and CLV
    over the horizon; a coefficient whose interval includes 0 is `not distinguishable from no effect`."""
    parts = []
    if "purchase" in coefficients:
        e = coefficients["purchase"]
        parts.append(_clause(e, f"buy {_times(_exp(e.value))} as often while active"))
    if "dropout" in coefficients:
        parts.append(_dropout_clause(coefficients["dropout"], ratios["p_churn"], purchase, valuation))
    if "spend" in coefficients:
        e = coefficients["spend"]
        parts.append(_clause(e, f"spend {_times(_exp(e.value))} as much per purchase"))
    money = "expected_spend" in ratios  # without a spend model CLV counts discounted purchases
    currency = valuation.currency if money else None
    level, reference = (_amount(v, currency) for v in clv)
    unit = " discounted purchases" if not money else "" if currency else " in the data's currency"
    tail = (
        f"over the next {valuation.horizon_words} they are expected to make {_times(ratios['expected_purchases'])} "
        f"as many purchases, and their expected CLV is {_times(ratios['clv'])} ({level} vs {reference}{unit} per "
        "customer)"
    )
    them, us = _who(contrast)
    return f"Compared with {them}, {us} " + ", ".join(parts) + ("; " if parts else "") + tail + "."


def _dropout_clause(e: CoefficientEstimate, churn_ratio: float, purchase: PurchaseModel, valuation: Valuation) -> str:
    """The ratio of the chances of having left, and exp(g_d): the ratio of dropout rates (Pareto/NBD) or the
    factor on a and b (the BG/NBD family)."""
    if DROPOUT in purchase.not_identified_:
        return "cannot be told apart in their chance of having left (the fit does not identify dropout)"
    by = f" by {valuation.calibration_end.isoformat()}" if valuation.calibration_end else ""
    moved = tuple(p for p, _ in purchase.covariate_effects.get("dropout", ()))
    what = "dropout rate" if moved == ("beta",) else f"{' and '.join(moved)} times"
    return _clause(e, f"are {_times(churn_ratio)} as likely to have left{by}", f"{what} {_times(_exp(e.value))}, ")


def _amount(x: float, currency: str | None) -> str:
    return f"{currency} {x:,.2f}" if currency else f"{x:,.2f}"


def _who(contrast: Contrast) -> tuple[str, str]:
    """The customers compared: (`customers with Channel = 0`, `those with Channel = 1`); numeric: (`the same
    customers at their own Age`, `customers with Age higher by 1`)."""
    name = contrast.covariate
    if contrast.level is not None:
        return f"customers with {name} = {contrast.reference}", f"those with {name} = {contrast.level}"
    step = (
        f"one standard deviation ({_short(contrast.step)})" if contrast.column.standardised else _short(contrast.step)
    )
    return f"the same customers at their own {name}", f"customers with {name} higher by {step}"
