"""The run config: one YAML file describes a run; pydantic validates it; `--set a.b=c` overrides any key.

Unknown keys and bad values are rejected with the key path, what was expected and what was given. The resolved
config (file plus overrides plus defaults) is what every output records, with its hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clv.currency import currency_code
from clv.errors import ClvError, ConfigError
from clv.metric_registry import RankCriterion
from clv.units import Duration, TimeUnit

__all__ = [
    "BayesConfig",
    "CovariatePenalty",
    "CovariatesConfig",
    "DataConfig",
    "EvaluationConfig",
    "ModelConfig",
    "OutputConfig",
    "PredictionConfig",
    "PriorConfig",
    "RunConfig",
    "SparkConfig",
    "TierLevel",
    "TiersConfig",
    "TimeConfig",
    "apply_overrides",
    "config_hash",
    "load_config",
    "parse_config",
]

PurchaseModelName = Literal["bgnbd", "pareto_nbd", "mbgnbd", "mbgcnbd", "bgcnbd", "pareto_ggg"]
SpendModelName = Literal["gamma_gamma"]
Method = Literal["mle", "bayes"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the transactions are and how to read them."""

    source: str = Field(description="an embedded data set (cdnow, cdnow_master) or a CSV / Parquet path")
    customer_id: str = "customer_id"
    date: str = "date"
    amount: str | None = Field(
        "amount", description="column of amounts; null when the data has none or gives quantity and price"
    )
    quantity: str | None = Field(None, description="line items: column of quantities (with price, instead of amount)")
    price: str | None = Field(None, description="line items: column of unit prices; a line's value is quantity x price")
    invoice: str | None = Field(None, description="column of invoice numbers: an invoice's lines are one transaction")
    cancellation_prefix: str | None = Field(
        None, min_length=1, description="invoice numbers starting with this mark cancellations, e.g. C"
    )
    date_format: str | None = Field(None, description="strptime format of the date column, e.g. %Y%m%d")
    timezone: str | None = Field(None, description="IANA business time zone that aware timestamps convert to")
    returns: Literal["net", "drop", "fail"] = Field(
        "net",
        description="returns and cancellations: net against the customer's spend (same day, then earlier purchase "
        "days), drop them, or fail",
    )
    missing_customer: Literal["fail", "drop"] = Field(
        "fail", description="lines without a customer id (guest purchases): invalid rows (fail), or dropped apart"
    )
    non_positive_price: Literal["drop", "keep", "fail"] = Field(
        "drop", description="line items priced <= 0: dropped (not purchases, no value), kept, or an error"
    )
    invalid_rows: Literal["fail", "drop"] = "fail"
    rejected_rows: str | None = Field(None, description="CSV path that receives every rejected row")
    max_invalid_share: float = Field(
        0.01, ge=0, le=1, description="most rows read that may be dropped as invalid, as a share (more fails the run)"
    )
    trim_ids: bool = Field(False, description="trim leading and trailing spaces of customer ids (default: as written)")
    duplicates: Literal["drop", "keep", "fail"] = Field(
        "drop", description="exact duplicate rows (or rows repeating a transaction_id): drop the copies, keep, or fail"
    )
    transaction_id: str | None = Field(None, description="column of transaction ids: rows repeating one are duplicates")
    decimal: Literal[".", ","] = Field(".", description="decimal separator of amounts, quantities and prices")
    thousands: Literal[",", ".", " ", "'"] | None = Field(None, description="thousands separator of amounts (or none)")
    currency: str | None = Field(
        None,
        min_length=1,
        max_length=12,
        description="the amounts' currency (e.g. EUR, GBP, €): its code and symbol are stripped from amounts, and "
        "outputs state it",
    )

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str | None) -> str | None:
        """`€` is `EUR`, `gbp` is `GBP`: outputs name a currency by its code (clv.currency)."""
        return None if value is None else currency_code(value)

    @model_validator(mode="before")
    @classmethod
    def _line_items(cls, raw: Any) -> Any:
        """Quantity and price come together and replace amount: with them, amount's default is unset, and an
        amount given explicitly (not null) is an error."""
        if not isinstance(raw, dict) or (raw.get("quantity") is None and raw.get("price") is None):
            return raw
        if raw.get("quantity") is None or raw.get("price") is None:
            given, lacking = ("quantity", "price") if raw.get("price") is None else ("price", "quantity")
            raise ValueError(f"data.{given} needs data.{lacking}: a line's value is quantity x price")
        if raw.get("amount") is not None:
            raise ValueError(
                "give data.amount or data.quantity + data.price, not both (with line items, leave data.amount out "
                "or set it to null)"
            )
        return raw | {"amount": None}

    @model_validator(mode="after")
    def _prefix_needs_invoice(self) -> DataConfig:
        if self.cancellation_prefix is not None and self.invoice is None:
            raise ValueError("data.cancellation_prefix needs data.invoice (the column the prefix is looked for in)")
        if self.thousands == self.decimal:
            raise ValueError(f"data.thousands and data.decimal are both {self.decimal!r}: they must differ")
        return self

    @property
    def line_items(self) -> bool:
        """Whether a line's value is quantity x price."""
        return self.quantity is not None and self.price is not None

    @property
    def has_values(self) -> bool:
        """Whether the data carries money (an amount, or quantity and price)."""
        return self.amount is not None or self.line_items


def _duration_text(value: Any, unit: Any) -> Any:
    """A bare number as a duration in the run's time unit (`52` with unit W is `52W`), when the unit is valid;
    anything else is left for the field's validation."""
    if isinstance(value, int | float) and not isinstance(value, bool) and unit in ("D", "W"):
        number = float(value)
        return f"{int(number) if number.is_integer() else number!r}{unit}"
    return value


def _canonical_duration(value: Any) -> str:
    """A duration written canonically (`52w` is `52W`); a bare number is refused here, since its unit is the
    run's time.unit (RunConfig and TimeConfig turn bare numbers into durations before this check)."""
    try:
        return str(Duration.parse(value))
    except ClvError as exc:
        raise ValueError(exc.message) from None


def _upper_unit(raw: Any) -> Any:
    """time.unit in upper case (`w` is `W`); anything else is left as written, for the error to show it."""
    if isinstance(raw, dict) and isinstance(raw.get("unit"), str) and raw["unit"].strip().upper() in ("D", "W"):
        return raw | {"unit": raw["unit"].strip().upper()}
    return raw


class TimeConfig(_Section):
    """The time unit and the calibration / holdout split (inclusive dates), and how far the calibration end may
    lie beyond the data."""

    unit: TimeUnit = "W"
    calibration_end: dt.date
    holdout_end: dt.date | None = None
    max_gap: str = Field(
        "90D",
        description="largest gap allowed from the last transaction to the end of the run's period (holdout_end, "
        "or calibration_end); a duration (90D, 13W, 3M), a bare number is in time.unit",
    )
    allow_gap: bool = Field(
        False,
        description="accept a calibration or holdout end beyond max_gap after the data, and data after the "
        "calibration end without a holdout (then left out)",
    )

    @model_validator(mode="before")
    @classmethod
    def _units(cls, raw: Any) -> Any:
        raw = _upper_unit(raw)
        if isinstance(raw, dict) and "max_gap" in raw:
            raw = raw | {"max_gap": _duration_text(raw["max_gap"], raw.get("unit", "W"))}
        return raw

    @field_validator("max_gap", mode="before")
    @classmethod
    def _gap(cls, value: Any) -> str:
        return _canonical_duration(value)

    @model_validator(mode="after")
    def _holdout_after_calibration(self) -> TimeConfig:
        if self.holdout_end is not None and self.holdout_end <= self.calibration_end:
            raise ValueError(f"holdout_end ({self.holdout_end}) must be after calibration_end ({self.calibration_end})")
        return self

    @property
    def gap(self) -> Duration:
        """max_gap as a Duration."""
        return Duration.parse(self.max_gap)


class ModelConfig(_Section):
    """Which models, fitted how."""

    purchase: PurchaseModelName | Literal["auto"] = Field(
        "bgnbd",
        description="the purchase model; auto: the one of evaluation.models with the best mean evaluation.rank_by "
        "on the rolling origins' holdouts (clv.evaluate.choice)",
    )
    spend: SpendModelName = "gamma_gamma"
    method: Method = "mle"
    seed: int = Field(42, ge=0)
    starts: int = Field(4, ge=1, le=64, description="starting points of the maximum-likelihood search")
    spend_outliers: Literal["keep", "cap", "exclude"] = Field(
        "keep",
        description="repeat buyers spending over spend_outlier_multiple x the median: keep them in the spend model, "
        "cap their mean spend at that threshold (fit and predictions), or exclude them from the fit",
    )
    spend_outlier_multiple: float = Field(10.0, gt=1, description="threshold of spend outliers, x the median")
    pool_by: str | None = Field(
        None,
        min_length=1,
        description="partial pooling (method bayes): the purchase and spend models' parameters hierarchical on the "
        "log scale across the groups of this categorical column of the covariates section's customer table, so a "
        "small group borrows strength from the rest",
    )


class PriorConfig(_Section):
    """A prior on one parameter. Parameters measured in time (alpha, beta) or money (v) are given priors on their
    value divided by the data's scale (max T / 10, mean spend), so the priors do not depend on the units."""

    distribution: Literal["lognormal", "gamma", "halfnormal", "flat"] = "lognormal"
    mu: float = Field(0.0, description="lognormal: mean of log(parameter)")
    sigma: float = Field(2.0, gt=0, description="lognormal: sd of log(parameter); halfnormal: scale")
    alpha: float = Field(2.0, gt=0, description="gamma: shape")
    beta: float = Field(1.0, gt=0, description="gamma: rate")


class BayesConfig(_Section):
    """The Bayesian fit (model.method = bayes): inference, diagnostics thresholds and posterior predictions."""

    inference: Literal["auto", "nuts", "laplace", "pathfinder", "advi"] = Field(
        "auto",
        description="auto: NUTS when it fits in nuts_budget_seconds (estimated from the unique histories), else "
        "Laplace, back to NUTS when Laplace's Pareto k > 0.7; nuts; or the approximations laplace, pathfinder, advi",
    )
    nuts_budget_seconds: float = Field(
        120.0, gt=0, description="inference auto: the longest expected NUTS run before Laplace is used instead"
    )
    sampler: Literal["auto", "pymc", "nutpie"] = Field(
        "auto",
        description="NUTS implementation; auto is nutpie, or PyMC's sampler when nutpie is missing or fails "
        "(said in the diagnostics' sampler_note)",
    )
    chains: int = Field(4, ge=1, le=64)
    draws: int = Field(1000, ge=50, description="kept draws per chain (ADVI: chains x draws from the approximation)")
    tune: int = Field(1000, ge=0, description="tuning steps per chain")
    target_accept: float = Field(0.9, gt=0, lt=1)
    cores: int = Field(2, ge=1, description="processes for the chains")
    advi_iterations: int = Field(50_000, ge=100, description="ADVI: most iterations (stops early on convergence)")
    interval: float = Field(0.9, gt=0, lt=1, description="level of credible and predictive intervals")
    prediction_draws: int = Field(500, ge=20, description="posterior draws used for per-customer predictions")
    progress: bool = Field(True, description="progress bar while sampling (CLI)")
    r_hat_max: float = Field(1.01, gt=1)
    ess_min: float = Field(400.0, gt=0, description="least bulk and tail effective sample size")
    priors: dict[str, PriorConfig] = Field(
        default_factory=dict, description="per parameter (paper names); unnamed parameters get the default prior"
    )
    coefficient_prior_sd: float = Field(
        1.0, gt=0, description="covariates: prior Normal(0, sd) on each coefficient (log scale of the parameter)"
    )
    pool_scale_prior_sd: float = Field(
        1.0, gt=0, description="pool_by: prior HalfNormal(sd) on each parameter's spread across groups (log scale)"
    )


class PredictionConfig(_Section):
    """Horizon (a duration from the calibration end), discounting and margin of the value calculation."""

    horizon: str = Field(
        "12M",
        description="prediction horizon from the calibration end: 12M (calendar months), 52W, 365D, 1Y; a bare "
        "number is in time.unit",
    )
    annual_discount_rate: float = Field(0.10, ge=0, lt=1)
    margin: float = Field(1.0, gt=0, le=1, description="share of revenue kept as profit")
    band: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="level of the band of total purchases and revenue per month and over the horizon, calibrated "
        "on the data's rolling origins (clv.evaluate.band), e.g. 0.8; null: no band",
    )
    band_origins: int = Field(
        6,
        ge=1,
        le=60,
        description="rolling origins the band is calibrated on: calendar month ends back from time.calibration_end",
    )

    @field_validator("horizon", mode="before")
    @classmethod
    def _horizon(cls, value: Any) -> str:
        text = _canonical_duration(value)
        duration = Duration.parse(text)
        if duration.unit in ("D", "W") and duration.days(dt.date(2000, 1, 1)) < 1:
            raise ValueError(f"the horizon must be at least one day, got {text}")
        return text

    @property
    def duration(self) -> Duration:
        """The horizon as a Duration."""
        return Duration.parse(self.horizon)


class TierLevel(_Section):
    """One value tier: a share of customers (ranked by CLV), or a CLV threshold in currency."""

    label: str = Field(min_length=1, max_length=40)
    share: float | None = Field(None, gt=0, le=1, description="share of customers, from the top")
    min_clv: float | None = Field(None, ge=0, description="least CLV of the tier, in currency")


def _default_tiers() -> list[TierLevel]:
    return [
        TierLevel(label="top 5%", share=0.05),
        TierLevel(label="next 15%", share=0.15),
        TierLevel(label="next 30%", share=0.30),
        TierLevel(label="rest", share=0.50),
    ]


class TiersConfig(_Section):
    """Value tiers by CLV, highest first: every level gives a share, or every level but the last a min_clv."""

    levels: list[TierLevel] = Field(default_factory=_default_tiers, min_length=2, max_length=12)
    min_size: int = Field(1, ge=1, description="fewest customers a tier may hold")
    at_risk_tiers: int | None = Field(
        None, ge=1, description="the top this-many tiers count as high value (default: 2, or 1 with 2 tiers)"
    )
    churn_window: str = Field(
        "13W",
        description="the period churn risk looks ahead: a duration in days or weeks (13W, 91D); a bare number is "
        "in time.unit",
    )
    at_risk_p_purchase: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="P(at least one purchase in the churn window) below this is slipping away (lapsing)",
    )

    @field_validator("churn_window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> str:
        text = _canonical_duration(value)
        if Duration.parse(text).unit not in ("D", "W"):
            raise ValueError(f"the churn window is a duration in days or weeks (13W, 91D), got {text}")
        return text

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, raw: Any) -> Any:
        """tiers.at_risk_p_alive is gone: P(alive) did not predict who buys again (AUC 0.32 on the CDNOW
        holdout), so churn risk is P(purchase in the churn window); say so instead of 'extra field'."""
        if isinstance(raw, dict) and "at_risk_p_alive" in raw:
            raise ValueError(
                "tiers.at_risk_p_alive was replaced by tiers.at_risk_p_purchase (churn risk is now the "
                "probability of at least one purchase in tiers.churn_window, default 13 weeks; default 0.3)"
            )
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> TiersConfig:
        labels = [level.label for level in self.levels]
        if len(set(labels)) != len(labels):
            raise ValueError("tier labels must be distinct")
        shares = [level.share for level in self.levels]
        thresholds = [level.min_clv for level in self.levels]
        if all(s is not None for s in shares):
            if abs(sum(s for s in shares if s is not None) - 1.0) > 1e-9:
                raise ValueError(f"tier shares must add up to 1, got {sum(s for s in shares if s is not None):g}")
        elif all(t is not None for t in thresholds[:-1]) and not any(shares):
            known = [t for t in thresholds[:-1] if t is not None]
            if any(b >= a for a, b in pairwise(known)):
                raise ValueError("tier min_clv thresholds must decrease from the first tier to the last")
        else:
            raise ValueError("give every tier a share, or every tier but the last a min_clv (not a mix)")
        if self.at_risk_tiers is not None and self.at_risk_tiers >= len(self.levels):
            raise ValueError(f"at_risk_tiers must be fewer than the {len(self.levels)} tiers")
        return self

    @property
    def high_value_tiers(self) -> int:
        """How many of the top tiers count as high value."""
        return self.at_risk_tiers if self.at_risk_tiers is not None else min(2, len(self.levels) - 1)


_DEFAULT_EVALUATED: tuple[PurchaseModelName, ...] = ("bgnbd", "pareto_nbd", "mbgnbd")
_DEFAULT_METHODS: tuple[Method, ...] = ("mle",)


class EvaluationConfig(_Section):
    """`clv evaluate`: which fits to compare on the holdout, how to rank them, and the rolling origins."""

    models: list[PurchaseModelName] = Field(
        default_factory=lambda: list(_DEFAULT_EVALUATED),
        min_length=1,
        description="purchase models compared (each with Gamma-Gamma when the data has amounts)",
    )
    methods: list[Method] = Field(
        default_factory=lambda: list(_DEFAULT_METHODS), min_length=1, description="fit methods compared"
    )
    rank_by: RankCriterion = Field("mae_purchases", description="the leaderboard's order and the best fit's criterion")
    origins: list[dt.date] = Field(
        default_factory=list, description="rolling origin: calibration end dates to evaluate at (none: off)"
    )
    rolling: int = Field(
        0,
        ge=0,
        le=24,
        description="rolling origin: this many calibration ends, stepping back from time.calibration_end",
    )
    rolling_step_months: int = Field(1, ge=1, le=24, description="months between generated rolling origins")

    @model_validator(mode="after")
    def _distinct(self) -> EvaluationConfig:
        for name in ("models", "methods", "origins"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat an entry")
        if self.origins and self.rolling:
            raise ValueError("give rolling origins as a list (origins) or a count (rolling), not both")
        return self


#: columns of the RFM frame the covariates are joined to: a covariate may not take one of these names
RFM_FRAME_COLUMNS = (
    "customer_id",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "frequency_holdout",
    "monetary_value_holdout",
)


class CovariatePenalty(_Section):
    """L2 penalty on the coefficients per process (CLVTools' `reg.lambdas`): the mean log-likelihood minus
    lambda x the sum of squared coefficients."""

    purchase: float = Field(0.0, ge=0, description="L2 weight on the purchase process's coefficients")
    dropout: float = Field(0.0, ge=0, description="L2 weight on the dropout process's coefficients")
    spend: float = Field(0.0, ge=0, description="L2 weight on the spend model's coefficients")


class CovariatesConfig(_Section):
    """Static customer covariates (maximum likelihood: CLVTools' parameterisation, see clv.covariates): where
    they are, which process each moves, how they are encoded, and the fill values of missing ones."""

    source: str = Field(
        min_length=1,
        description="a customer table (CSV or Parquet path) with one row per customer, or `rfm`: columns of the "
        "RFM table that data.source names",
    )
    id_column: str | None = Field(
        None, min_length=1, description="the customer table's id column (default: data.customer_id; `rfm`: customer_id)"
    )
    purchase: list[str] = Field(default_factory=list, description="covariates of the purchase process (rate)")
    dropout: list[str] = Field(default_factory=list, description="covariates of the dropout process")
    spend: list[str] = Field(default_factory=list, description="covariates of spend (Gamma-Gamma's scale v)")
    constrained: list[str] = Field(
        default_factory=list,
        description="covariates with one coefficient in both the purchase and the dropout process (listed in both)",
    )
    penalty: CovariatePenalty = Field(default_factory=CovariatePenalty, description="L2 penalty per process")
    categorical: dict[str, str | None] = Field(
        default_factory=dict,
        description="columns dummy-coded against a reference level (null: the first level; a code such as 1 is "
        "read as the level 1); text columns are categorical anyway",
    )

    @field_validator("categorical", mode="before")
    @classmethod
    def _levels_as_text(cls, value: Any) -> Any:
        """A reference level written as a number (Channel: 1) is the level as the data spell it ("1")."""
        if not isinstance(value, dict):
            return value
        out = {}
        for key, level in value.items():
            if isinstance(level, bool) or not isinstance(level, int | float):
                out[key] = level
            else:
                out[key] = str(int(level)) if float(level).is_integer() else str(level)
        return out

    standardise: bool = Field(
        False, description="numeric covariates as z-scores ((z - mean) / sd of the fitting customers)"
    )
    fill: dict[str, float | str] = Field(
        default_factory=dict,
        description="fill values of missing covariates per column (a blank cell, or a customer missing from the "
        "table when every covariate has one)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CovariatesConfig:
        lists = {"purchase": self.purchase, "dropout": self.dropout, "spend": self.spend}
        for key, columns in [*lists.items(), ("constrained", self.constrained)]:
            repeated = sorted({c for c in columns if columns.count(c) > 1})
            if repeated:
                raise ValueError(f"covariates.{key} repeats {', '.join(map(repr, repeated))}")
        named = self.columns
        taken = [c for c in named if c in RFM_FRAME_COLUMNS]
        if taken:
            raise ValueError(
                f"covariates: {', '.join(map(repr, taken))} is a column of the RFM summary, not a covariate"
            )
        if self.id_column is not None and self.id_column in named:
            raise ValueError(f"covariates: the id column {self.id_column!r} cannot be a covariate")
        for name in self.constrained:
            if name not in self.purchase or name not in self.dropout:
                raise ValueError(
                    f"covariates.constrained: {name!r} shares one coefficient in both processes, so it must be "
                    "listed in covariates.purchase and covariates.dropout"
                )
        for key in ("categorical", "fill"):
            unknown = [c for c in getattr(self, key) if c not in named]
            if unknown:
                raise ValueError(
                    f"covariates.{key} names {', '.join(map(repr, unknown))}, not a covariate of purchase, "
                    "dropout or spend"
                )
        return self

    @property
    def columns(self) -> list[str]:
        """Every covariate column, each once, in the order the lists name them."""
        return list(dict.fromkeys([*self.purchase, *self.dropout, *self.spend]))

    @property
    def processes(self) -> dict[str, list[str]]:
        """The column lists by process, the processes without covariates left out."""
        lists = {"purchase": self.purchase, "dropout": self.dropout, "spend": self.spend}
        return {process: list(columns) for process, columns in lists.items() if columns}

    @property
    def from_rfm_table(self) -> bool:
        return self.source == "rfm"


def _covariate_problems(config: RunConfig) -> list[str]:
    """The covariate processes a chosen model lacks (each model's processes are its `covariate_effects`), and
    spend covariates without amounts."""
    from clv.purchase import PURCHASE_MODELS  # the models import the data layer, which imports this module
    from clv.spend.gamma_gamma import GammaGammaModel

    covariates = config.covariates
    pool = config.model.pool_by
    if pool is not None:
        if config.model.method != "bayes":
            return ["model.pool_by pools parameters across groups in a Bayesian fit: it needs model.method bayes"]
        if covariates is None:
            return [f"model.pool_by {pool!r} is a column of the customer table: give it as covariates.source"]
        if covariates.columns:
            return ["model.pool_by with covariates is not supported: pool by the groups, or use the covariates"]
        if pool in RFM_FRAME_COLUMNS:
            return [f"model.pool_by: {pool!r} is a column of the RFM summary, not a customer group"]
        if config.model.purchase != "auto" and PURCHASE_MODELS[config.model.purchase].customer_latents:
            return [f"model.pool_by: {config.model.purchase} has customer-level latents of its own and is not pooled"]
    if covariates is None:
        return []
    if not covariates.columns and pool is None:
        return ["covariates: name at least one column in purchase, dropout or spend (or pool by one: model.pool_by)"]
    problems = []
    # the run's model takes the covariates; so does every candidate of `auto` (the chosen one is fitted with
    # them); `clv evaluate` compares a model without processes for them without them only (a note says so)
    auto = config.model.purchase == "auto"
    purchase_models = dict.fromkeys(config.evaluation.models if auto else [config.model.purchase])
    for process, columns in covariates.processes.items():
        if process == "spend":
            if not config.data.has_values:
                problems.append("covariates.spend needs amounts (data.amount, or data.quantity and data.price)")
            elif process not in GammaGammaModel.covariate_effects:
                problems.append(f"model.spend {config.model.spend} has no spend covariates")
            continue
        lacking = [m for m in purchase_models if process not in PURCHASE_MODELS[m].covariate_effects]
        if lacking:
            problems.append(
                f"covariates.{process} ({', '.join(columns)}): {', '.join(lacking)} has no {process} process "
                "for covariates"
            )
    return problems


def _auto_problems(config: RunConfig) -> list[str]:
    """model.purchase auto: a candidate list to choose from, and a holdout for the origins to be scored on."""
    if config.model.purchase != "auto":
        return []
    problems = []
    if len(config.evaluation.models) < 2:
        problems.append(
            f"model.purchase auto chooses among evaluation.models, which lists {len(config.evaluation.models)} "
            "model: list two or more, or name the purchase model"
        )
    if config.time.holdout_end is None:
        problems.append(
            "model.purchase auto chooses by the error on rolling-origin holdouts: it needs time.holdout_end (each "
            "origin's holdout has the length time.holdout_end - time.calibration_end and ends by it)"
        )
    return problems


class OutputConfig(_Section):
    """Where reports and fitted models go."""

    reports_dir: str = "reports"
    models_dir: str = "models"


class SparkConfig(_Section):
    """How `engine: spark` reaches Spark (`clv.spark`): the session it starts when none is active, and how much it
    may bring to the driver."""

    master: str = Field("local[*]", description="Spark master of a session clv starts (an active session is used)")
    app_name: str = Field("clv", min_length=1, description="application name of a session clv starts")
    conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings of a session clv starts")
    partitions: int | None = Field(
        None, ge=1, description="partitions of the customer stage (default: the input's, at least the session's cores)"
    )
    max_collected_rows: int = Field(
        5_000_000, ge=1, description="most rows of any one table brought to the driver; more is refused with the count"
    )


class RunConfig(_Section):
    """A whole run. Every key is documented, with its default, in configs/example.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    data: DataConfig
    time: TimeConfig
    model: ModelConfig = ModelConfig()
    prediction: PredictionConfig = PredictionConfig()
    bayes: BayesConfig = BayesConfig()
    tiers: TiersConfig = TiersConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    covariates: CovariatesConfig | None = Field(
        None, description="static customer covariates (none: every customer is a draw from one population)"
    )
    output: OutputConfig = OutputConfig()
    engine: Literal["local", "spark"] = Field(
        "local", description="local (DuckDB on this machine) or spark (clv.spark: the same job on a Spark session)"
    )
    spark: SparkConfig = SparkConfig()

    @model_validator(mode="after")
    def _methods_fit_the_models(self) -> RunConfig:
        """Each purchase model asked for is fitted only by the methods it has (`estimation_methods`)."""
        from clv.purchase import PURCHASE_MODELS  # the models import the data layer, which imports this module

        # `auto` chooses among evaluation.models (by maximum likelihood), and is then fitted by model.method;
        # `clv evaluate` compares each model by the evaluation's methods it has (or its own: a Bayesian-only model)
        asked = [] if self.model.purchase == "auto" else [(self.model.purchase, self.model.method)]
        if self.model.purchase == "auto":
            asked += [(m, self.model.method) for m in self.evaluation.models]
        wrong = sorted({(m, method) for m, method in asked if method not in PURCHASE_MODELS[m].estimation_methods})
        if wrong:
            said = "; ".join(
                f"{m} cannot be fitted by {method} (its method(s): {', '.join(PURCHASE_MODELS[m].estimation_methods)})"
                for m, method in wrong
            )
            raise ValueError(said)
        return self

    @model_validator(mode="after")
    def _covariates_fit_the_models(self) -> RunConfig:
        problems = _covariate_problems(self) + _auto_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="before")
    @classmethod
    def _bare_horizon(cls, raw: Any) -> Any:
        """A bare prediction.horizon is in time.unit: `horizon: 52` with unit W is `52W`."""
        if not isinstance(raw, dict) or not isinstance(raw.get("prediction"), dict):
            return raw
        time = _upper_unit(raw.get("time")) if isinstance(raw.get("time"), dict) else {}
        prediction = raw["prediction"]
        if "horizon" in prediction:
            horizon = _duration_text(prediction["horizon"], time.get("unit", "W"))
            raw = raw | {"prediction": prediction | {"horizon": horizon}}
        return raw

    @model_validator(mode="before")
    @classmethod
    def _bare_churn_window(cls, raw: Any) -> Any:
        """A bare tiers.churn_window is in time.unit: `churn_window: 13` with unit W is `13W`."""
        if not isinstance(raw, dict) or not isinstance(raw.get("tiers"), dict) or "churn_window" not in raw["tiers"]:
            return raw
        time = _upper_unit(raw.get("time")) if isinstance(raw.get("time"), dict) else {}
        window = _duration_text(raw["tiers"]["churn_window"], time.get("unit", "W"))
        return raw | {"tiers": raw["tiers"] | {"churn_window": window}}

    def horizon_units(self, calibration_end: dt.date | None = None) -> float:
        """The horizon in time.unit, counted from `calibration_end` (default time.calibration_end): exact in
        days for calendar months (`clv.units.Duration`)."""
        start = self.time.calibration_end if calibration_end is None else calibration_end
        return self.prediction.duration.units(start, self.time.unit)

    def horizon_label(self, calibration_end: dt.date | None = None) -> str:
        """The horizon as given and in days, e.g. `52 W (364 days)`."""
        start = self.time.calibration_end if calibration_end is None else calibration_end
        return self.prediction.duration.describe(start)

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as plain JSON-ready values."""
        return self.model_dump(mode="json")


def _describe_error(err: Any) -> str:
    path = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{path}: unknown key"
    if err["type"] == "missing":
        return f"{path}: required key is missing"
    given = err.get("input")
    message = str(err["msg"]).removeprefix("Value error, ")
    # a whole section (a check across its keys) is not echoed back, nor a value the message already names
    if isinstance(given, dict | list) or repr(given) in message or str(given) in message:
        return f"{path}: {message}"
    return f"{path}: {message} (got {given!r})"


def parse_config(raw: dict[str, Any], origin: str = "config") -> RunConfig:
    """Validate a config dict; every problem is listed in one ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        lines = [_describe_error(e) for e in errors]
        dates = any(e["type"].startswith(("date_", "datetime_")) for e in errors)
        raise ConfigError(
            f"{origin}: {len(lines)} problem(s): " + "; ".join(lines),
            hint="dates are written YYYY-MM-DD (year, month, day), e.g. 1997-09-30"
            if dates
            else "see configs/example.yaml for every key with its type and default",
        ) from None


class _Loader(yaml.SafeLoader):
    """YAML without its timestamp type: dates stay text until the config's validation reads them, so an
    impossible date (1997-31-09) is a ConfigError naming its key, not a ValueError from the YAML parser."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no object construction


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return where + " ".join(str(problem).split())


def _parse_value(text: str) -> Any:
    try:
        return _yaml(text) if text.strip() else None
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides to a config dict (a new dict; values are parsed as YAML scalars)."""
    result: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. model.method=bayes")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = _parse_value(value)
    return result


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML run config, apply `--set` overrides, and validate."""
    path = Path(path)
    if not path.is_file():
        message = f"{path} is a folder, not a config file" if path.is_dir() else f"config file not found: {path}"
        raise ConfigError(message, hint="pass the path of a YAML file, e.g. configs/cdnow.yaml")
    try:
        raw = _yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path}: not valid YAML: {_yaml_problem(exc)}", hint="check the brackets, quotes and indentation there"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as a text file ({exc})") from None
    return parse_config(apply_overrides(raw or {}, overrides), origin=str(path))


def config_hash(config: RunConfig) -> str:
    """SHA-256 of the resolved config in canonical JSON: equal configs, equal hashes. Where the job runs
    (`engine`, `spark`) is left out: it changes no number, so a run on Spark and one on this machine agree."""
    resolved = {k: v for k, v in config.resolved().items() if k not in ("engine", "spark")}
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
