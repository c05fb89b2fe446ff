"""The forecast band (`prediction.band`): the predictive band of the portfolio's totals (`clv.band`), calibrated
on the data's own rolling origins by a conformal adjustment (`clv.conformal`), with its backtest coverage.

Origins: `prediction.band_origins` calendar month ends back from time.calibration_end (the first is the
calibration end itself), as `clv.evaluate.rolling` counts months back. At each origin o the configured purchase
model (and Gamma-Gamma with amounts) is fitted by maximum likelihood on the customers known at o (the cohort), its
band is computed over the months that the data after o covers (to time.holdout_end, or time.calibration_end
without one; a month the data does not cover to its end is not scored), and the actual repeat purchases and
revenue of that cohort in each month are those the holdout evaluation scores (`holdout_actuals`, on
`rfm_summary` to each month's end). Scores per month (origins covering that month) and for the total (each
origin's cumulated months, at most the horizon's) give the conformal adjustment of the run's band, month by month
and for the horizon total. Backtest coverage: leave one origin out, calibrate on the others, and see whether the
held-out origin's calibrated band holds its actual total.

The origins' data after the calibration end is the run's holdout: the band is calibrated on it, so the run's
holdout is then not an independent check of the band (as for `model.purchase: auto`).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv import conformal
from clv.band import KINDS, PredictiveBand, asymptotic_draws, predictive_band, usable_spend_draws
from clv.config import RunConfig
from clv.data.rfm import RfmSummary
from clv.data.rfm_table import is_rfm_table
from clv.errors import ClvError, ClvWarning, ConfigError
from clv.evaluate.comparison import holdout_actuals
from clv.evaluate.rolling import months_back
from clv.seeds import stream_seed
from clv.spend.outliers import find_spend_outliers, spend_fit_frame, spend_value_frame
from clv.store import FittedModels
from clv.value import forecast_months

if TYPE_CHECKING:
    from clv.pipeline import DataStep

__all__ = ["BAND_DRAWS", "BacktestOrigin", "ForecastBand", "KindBand", "check_band", "forecast_band"]

FloatArray = NDArray[np.float64]
#: parameter draws of each band (the run's and each origin's)
BAND_DRAWS = 200
METHOD = (
    "parameter and purchase-process uncertainty (clv.band), calibrated by split conformal prediction over rolling "
    "origins on the log(1 + total) scale, scores normalised by the band's width (Romano, Patterson & Candes 2019, "
    "conformalized quantile regression; Papadopoulos, Gammerman & Vovk 2008)"
)


@dataclass(frozen=True)
class BacktestOrigin:
    """One origin: its date, cohort, the months its following data covers (at most the horizon's), the actual
    totals per month, and its band over those months."""

    origin: dt.date
    customers: int
    months: int
    actual: dict[str, FloatArray]
    band: PredictiveBand


@dataclass(frozen=True)
class KindBand:
    """The run's band of one total (purchases or revenue): per month and for the horizon, raw and calibrated,
    with the origins' scores, the adjustment and the leave-one-origin-out coverage."""

    kind: str
    month_lo: FloatArray
    month_hi: FloatArray
    month_q: FloatArray  # NaN where a month has too few origins
    month_scores: list[list[float]]
    total_lo: float
    total_hi: float
    total_raw: tuple[float, float]
    total_q: float | None
    total_scores: list[float]
    total_months: list[int]
    loo_held: list[bool] | None
    loo_q: list[float] | None
    raw_held: list[bool]

    @property
    def calibrated(self) -> bool:
        return self.total_q is not None


@dataclass(frozen=True)
class ForecastBand:
    """The calibrated band of the run (`forecast_band`) and how it was calibrated."""

    level: float
    months: int
    origins: tuple[BacktestOrigin, ...]
    kinds: dict[str, KindBand]
    draws: str
    notes: tuple[str, ...]
    caveats: tuple[str, ...]

    @property
    def calibrated(self) -> bool:
        return all(k.calibrated for k in self.kinds.values())

    @property
    def month_calibrated(self) -> NDArray[np.bool_]:
        return np.asarray(~np.isnan(next(iter(self.kinds.values())).month_q), dtype=bool)

    def sentence(self, kind: str | None = None) -> str:
        """'The 80% band of the total revenue held in 5 of 6 past origins (...)', or why it is uncalibrated."""
        band = self.kinds[kind or list(self.kinds)[-1]]
        level, n = f"{self.level:.0%}", len(band.total_scores)
        if band.loo_held is not None:
            held = sum(band.loo_held)
            return (
                f"The {level} band of the total {band.kind} held in {held} of {n} past origins (each origin's band "
                f"calibrated on the other {n - 1}; leave-one-origin-out)."
            )
        raw = sum(band.raw_held)
        state = "calibrated" if band.calibrated else "uncalibrated"
        return (
            f"The {level} band of the total {band.kind} is {state}: {n} past origin{'s' if n != 1 else ''}, too few "
            f"to test it (leave-one-origin-out needs {conformal.min_origins(self.level) + 1}); the parameter and "
            f"process band alone held the actual total in {raw} of {n}."
        )

    def columns(self) -> pd.DataFrame:
        """forecast.csv's band columns per month: `<kind>_band_lo`, `<kind>_band_hi`, `band_calibrated` and
        `band_status` (in words: calibrated on how many origins, or why not)."""
        frame = pd.DataFrame(index=range(self.months))
        for kind, band in self.kinds.items():
            frame[f"{kind}_band_lo"] = band.month_lo
            frame[f"{kind}_band_hi"] = band.month_hi
        frame["band_calibrated"] = self.month_calibrated
        scored = [len(s) for s in next(iter(self.kinds.values())).month_scores]
        need = conformal.min_origins(self.level)
        frame["band_status"] = [
            f"{self.level:.0%} band calibrated on {n} origins"
            if ok
            else f"{self.level:.0%} band uncalibrated: {n} origin(s) cover this month, {need} needed"
            for n, ok in zip(scored, self.month_calibrated, strict=True)
        ]
        return frame

    def to_dict(self) -> dict[str, Any]:
        """summary.json's `forecast_band` block."""
        return {
            "level": self.level,
            "method": METHOD,
            "parameter_draws": self.draws,
            "calibrated": self.calibrated,
            "origins": [o.origin.isoformat() for o in self.origins],
            "origin_customers": [o.customers for o in self.origins],
            "origin_months": [o.months for o in self.origins],
            "min_origins": conformal.min_origins(self.level),
            "totals": {kind: _kind_dict(band, self.origins) for kind, band in self.kinds.items()},
            "months_calibrated": int(self.month_calibrated.sum()),
            "sentence": self.sentence(),
            "columns": "forecast.csv <kind>_band_lo / _hi: the band of each month's total (purchases; revenue in "
            "the data's currency, not discounted); band_calibrated: whether that month's band is calibrated",
            "notes": list(self.notes),
            "caveats": list(self.caveats),
        }


def _kind_dict(band: KindBand, origins: tuple[BacktestOrigin, ...]) -> dict[str, Any]:
    held = None if band.loo_held is None else sum(band.loo_held)
    return {
        "lo": band.total_lo,
        "hi": band.total_hi,
        "uncalibrated_lo": band.total_raw[0],
        "uncalibrated_hi": band.total_raw[1],
        "calibrated": band.calibrated,
        "adjustment": band.total_q,
        "adjustment_unit": "widths of the uncalibrated band on the log(1 + total) scale, added on each side",
        "per_origin": [
            {
                "origin": o.origin.isoformat(),
                "months": m,
                "actual": float(o.actual[band.kind][:m].sum()),
                "lo": float(o.band.cumulative_lo[band.kind][m - 1]),
                "hi": float(o.band.cumulative_hi[band.kind][m - 1]),
                "score": s,
                "held_uncalibrated": r,
                "held_leave_one_out": None if band.loo_held is None else band.loo_held[i],
                "adjustment_leave_one_out": None if band.loo_q is None else band.loo_q[i],
            }
            for i, (o, m, s, r) in enumerate(
                zip(origins, band.total_months, band.total_scores, band.raw_held, strict=True)
            )
        ],
        "backtest_coverage": None if held is None else held / len(band.total_scores),
        "backtest_held": held,
        "uncalibrated_coverage": sum(band.raw_held) / len(band.raw_held) if band.raw_held else None,
        "months_adjustment": [None if np.isnan(q) else float(q) for q in band.month_q],
        "months_scored_by": [len(s) for s in band.month_scores],
    }


def check_band(config: RunConfig, fitted: FittedModels) -> None:
    """Refuse a band the fit cannot give, before anything is computed: a model with covariates or pooled groups
    (their customers' parameters differ by pattern; the band draws one parameter set for all)."""
    layered = any(p is not None and p.layout is not None for p in (fitted.purchase_posterior, fitted.spend_posterior))
    if fitted.purchase.covariates_ is not None or layered:
        raise ConfigError(
            "prediction.band is not available for models with covariates or pooled groups",
            hint="set prediction.band=null, or fit the model without covariates / pool_by",
        )


def _run_draws(
    config: RunConfig, fitted: FittedModels, rfm: pd.DataFrame, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray | None, str, list[str]]:
    """The run's parameter draws: its posterior's, or the asymptotic normal of its maximum-likelihood fit."""
    if fitted.purchase_posterior is not None:
        seed = stream_seed(config.model.seed, "forecast_band")
        purchase = fitted.purchase_posterior.subsample(BAND_DRAWS, seed)
        spend = None if fitted.spend_posterior is None else fitted.spend_posterior.subsample(len(purchase), seed + 1)
        if spend is not None:
            k = min(len(purchase), len(spend))
            purchase, spend = purchase[:k], spend[:k]
        return purchase, spend, "posterior draws", []
    purchase, spend, notes = _mle_draws(config, fitted, rfm, rng)
    return purchase, spend, "asymptotic normal of the maximum-likelihood log-parameters", notes


def _mle_draws(
    config: RunConfig, fitted: FittedModels, rfm: pd.DataFrame, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray | None, list[str]]:
    purchase, note = asymptotic_draws(fitted.purchase, rfm, BAND_DRAWS, rng)
    notes = [note] if note else []
    if fitted.spend is None:
        return purchase, None, notes
    outliers = find_spend_outliers(rfm, config.model.spend_outliers, config.model.spend_outlier_multiple)
    spend, spend_note = asymptotic_draws(fitted.spend, spend_fit_frame(rfm, outliers), BAND_DRAWS, rng)
    notes += [spend_note] if spend_note else []
    spend, dropped = usable_spend_draws(spend)
    if dropped:
        notes.append(f"{dropped} of {BAND_DRAWS} Gamma-Gamma draws had q <= 1 (infinite mean spend): left out")
    return purchase[: len(spend)], spend, notes


def _value_frame(config: RunConfig, rfm: pd.DataFrame, has_spend: bool) -> pd.DataFrame:
    if not has_spend:
        return rfm
    outliers = find_spend_outliers(rfm, config.model.spend_outliers, config.model.spend_outlier_multiple)
    return spend_value_frame(rfm, outliers)


def _edges(config: RunConfig, end: dt.date) -> tuple[FloatArray, pd.DataFrame]:
    months = forecast_months(config.horizon_units(end), config.time.unit, end)
    return np.append(months["start"].to_numpy(dtype=float), float(months["end"].iloc[-1])), months


def _covered_ends(config: RunConfig, origin: dt.date, data_end: dt.date, months: int) -> list[dt.date]:
    """The ends of the calendar months after `origin` (at most `months`) that the data covers whole."""
    _, frame = _edges(config, origin)
    return [e for e in (dt.date.fromisoformat(d) for d in frame["end_date"][:months]) if e <= data_end]


def _origin(
    config: RunConfig,
    summary: Callable[[dt.date, dt.date], RfmSummary],
    origin: dt.date,
    ends: list[dt.date],
    data_end: dt.date,
    seed: int,
) -> BacktestOrigin | str:
    """The backtest at one origin over the month ends `ends` (`_covered_ends`; `summary`: the log's RFM summary
    at a split), or why it has none (a note)."""
    from clv.pipeline import fit_models, has_spend

    edges, _ = _edges(config, origin)
    covered = len(ends)
    if covered == 0:
        return f"origin {origin}: the data after it covers no whole month (to {data_end})"
    try:
        summaries = [summary(origin, e) for e in ends]
    except ClvError as exc:
        return f"origin {origin}: {exc.message}; not used"
    rfm = summaries[-1].frame
    spend = has_spend(config, rfm)
    actual = {
        k: np.diff([float(holdout_actuals(s.frame, spend)[k].sum()) for s in summaries], prepend=0.0)
        for k in (KINDS if spend else KINDS[:1])
    }
    mle = config.model_copy(update={"model": config.model.model_copy(update={"method": "mle"}), "covariates": None})
    rng = np.random.default_rng([seed, origin.toordinal()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClvWarning)  # an origin's fit warnings are not the run's
        try:
            fitted = fit_models(mle, rfm)
        except ClvError as exc:
            return f"origin {origin}: the fit failed ({exc.message}); not used"
        purchase, spend_draws, _ = _mle_draws(mle, fitted, rfm, rng)
        band = predictive_band(
            type(fitted.purchase),
            purchase,
            spend_draws,
            _value_frame(mle, rfm, spend),
            edges[: covered + 1],
            config.prediction.band or 0.8,
            rng,
        )
    return BacktestOrigin(origin, len(rfm), covered, actual, band)


def _origins(config: RunConfig, months: int) -> tuple[list[BacktestOrigin], list[str]]:
    """Every origin's backtest (oldest first) and notes on the origins left out."""
    data_end = config.time.holdout_end or config.time.calibration_end
    if is_rfm_table(config.data.source):
        return [], ["the data is an RFM table: there are no rolling origins to calibrate the band on"]
    dates = sorted(months_back(config.time.calibration_end, j) for j in range(config.prediction.band_origins))
    seed = stream_seed(config.model.seed, "forecast_band")
    from clv.pipeline import log_splits  # the pipeline calls this module

    found: list[BacktestOrigin] = []
    notes: list[str] = []
    ends = {origin: _covered_ends(config, origin, data_end, months) for origin in dates}
    splits = [(origin, end) for origin in dates for end in ends[origin]]
    with log_splits(config, splits, main=False, tracking=False) as log:
        for origin in dates:
            result = _origin(config, log.summary, origin, ends[origin], data_end, seed)
            if isinstance(result, str):
                notes.append(result)
            else:
                found.append(result)
    return found, notes


def _calibrate(kind: str, run: PredictiveBand, origins: list[BacktestOrigin], level: float) -> KindBand:
    """The run's band of one total adjusted by the origins' conformal quantiles: per month from the origins
    covering it, for the horizon from every origin's cumulated months (module docstring)."""
    months = run.expected[kind].size
    total_months = [min(o.months, months) for o in origins]
    total_scores = [
        float(
            conformal.scores(
                o.band.cumulative_lo[kind][m - 1], o.band.cumulative_hi[kind][m - 1], o.actual[kind][:m].sum()
            )
        )
        for o, m in zip(origins, total_months, strict=True)
    ]
    month_scores = [
        [
            float(conformal.scores(o.band.month_lo[kind][k], o.band.month_hi[kind][k], o.actual[kind][k]))
            for o in origins
            if o.months > k
        ]
        for k in range(months)
    ]
    month_q = np.array([_quantile(s, level) for s in month_scores])
    adjusted = conformal.calibrated(run.month_lo[kind], run.month_hi[kind], np.nan_to_num(month_q))
    lo = np.where(np.isnan(month_q), run.month_lo[kind], adjusted[0])
    hi = np.where(np.isnan(month_q), run.month_hi[kind], adjusted[1])
    raw = (float(run.cumulative_lo[kind][-1]), float(run.cumulative_hi[kind][-1]))
    q = conformal.conformal_quantile(total_scores, level) if total_scores else None
    total = raw if q is None else tuple(float(v[()]) for v in conformal.calibrated(raw[0], raw[1], q))
    loo = conformal.leave_one_out(total_scores, level) if total_scores else None
    return KindBand(
        kind,
        lo,
        hi,
        month_q,
        month_scores,
        total[0],
        total[1],
        raw,
        q,
        total_scores,
        total_months,
        None if loo is None else [bool(v) for v in loo[0]],
        None if loo is None else [float(v) for v in loo[1]],
        [s <= 0.0 for s in total_scores],
    )


def _quantile(values: list[float], level: float) -> float:
    q = conformal.conformal_quantile(values, level) if values else None
    return np.nan if q is None else q


def _caveats(
    config: RunConfig, fitted: FittedModels, origins: list[BacktestOrigin], kinds: dict[str, KindBand], months: int
) -> list[str]:
    """What the reader of the band should know: how far the origins are independent checks, and where the
    calibration rests on less than the run's horizon."""
    level = config.prediction.band or 0.8
    out = [
        "the origins are a month apart and their following data overlap: their scores are correlated, so the "
        "coverage over N origins is less certain than N independent checks would make it"
    ]
    if config.time.holdout_end is not None and origins:
        out.append(
            "the origins are scored on data to time.holdout_end: the band is calibrated on the run's holdout, which "
            "is then not an independent check of it"
        )
    short = [o for o in origins if o.months < months]
    if short:
        out.append(
            f"{len(short)} of {len(origins)} origins score the total over fewer months than the horizon's {months} "
            f"(the data after them covers {', '.join(str(o.months) for o in short)}): the total's adjustment rests "
            "partly on shorter horizons"
        )
    if fitted.purchase_posterior is not None:
        out.append(
            "the run's band is from its posterior draws; the origins' bands are from maximum-likelihood fits "
            "(asymptotic normal draws), whose conformal adjustment is applied to it"
        )
    n, need = len(origins), conformal.min_origins(level)
    if n - 1 >= need:
        held = math.ceil(round(level * n, 9))
        out.append(
            f"leave-one-origin-out holds ceil(level n) of n origins by construction when their scores differ (here "
            f"{held} of {n}: only the origins with the largest scores fall outside): it shows "
            "the calibration is consistent with its origins, not how the band will do on the future; the uncalibrated "
            "band's record (held_uncalibrated) and a check on data after the calibration are the informative figures"
        )
    if n < need:
        out.append(
            f"uncalibrated: {n} origin(s) with data after them; a conformal band at {level:.0%} needs at least {need} "
            f"(rank ceil(level (n + 1)) <= n); the band shown is the parameter and process band alone"
        )
    for band in kinds.values():
        below = sum(
            1
            for o, m in zip(origins, band.total_months, strict=True)
            if o.actual[band.kind][:m].sum() < o.band.cumulative_lo[band.kind][m - 1]
        )
        above = sum(1 for s in band.total_scores if s > 0) - below
        if (below == 0) != (above == 0):
            side, bias = ("above", "low") if below == 0 else ("below", "high")
            out.append(
                f"{band.kind}: the actual total was {side} the uncalibrated band at {below + above} of {n} origins and "
                f"never on the other side (the forecast is biased {bias}); the symmetric adjustment widens both sides"
            )
    return out


def forecast_band(config: RunConfig, fitted: FittedModels, data: DataStep) -> ForecastBand:
    """The run's band at `prediction.band`, calibrated on `prediction.band_origins` rolling origins."""
    level = config.prediction.band
    if level is None:
        raise ConfigError("prediction.band is not set: there is no band to compute")
    check_band(config, fitted)
    rng = np.random.default_rng(stream_seed(config.model.seed, "forecast_band"))
    rfm = data.rfm.frame
    purchase, spend, draws, notes = _run_draws(config, fitted, rfm, rng)
    edges, _ = _edges(config, config.time.calibration_end)
    value_rfm = _value_frame(config, rfm, fitted.spend is not None)
    run = predictive_band(type(fitted.purchase), purchase, spend, value_rfm, edges, level, rng)
    origins, origin_notes = _origins(config, edges.size - 1)
    kinds = {kind: _calibrate(kind, run, origins, level) for kind in run.kinds}
    caveats = _caveats(config, fitted, origins, kinds, edges.size - 1)
    return ForecastBand(
        level, edges.size - 1, tuple(origins), kinds, draws, tuple(notes + origin_notes), tuple(caveats)
    )
