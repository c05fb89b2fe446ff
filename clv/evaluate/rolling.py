"""Rolling-origin evaluation: the same comparison at several calibration end dates, each followed by a holdout
of the configured length, and how much each metric moves between them (Tashman 2000, "Out-of-sample tests of
forecasting accuracy", Int. J. Forecasting 16: fixed horizon, moving origin).

Every origin's holdout ends on or before time.holdout_end: the evaluation never looks past the data the config
names.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clv.config import RunConfig
from clv.errors import ConfigError
from clv.metric_registry import METRICS

__all__ = ["STABILITY_METRICS", "months_back", "rolling_origins", "stability"]

#: the metrics whose spread over the origins is reported
STABILITY_METRICS = tuple(m.name for m in METRICS if m.stability)


def months_back(date: dt.date, months: int) -> dt.date:
    """`months` calendar months before `date`; a month's last day maps to the earlier month's last day."""
    stamp = pd.Timestamp(date)
    earlier = stamp - pd.DateOffset(months=months)
    if stamp.is_month_end:
        earlier = earlier + pd.offsets.MonthEnd(0)
    return earlier.date()


def rolling_origins(config: RunConfig) -> list[dt.date]:
    """The calibration end dates of the rolling-origin evaluation, oldest first (empty: none asked for).

    `evaluation.origins` as given, or `evaluation.rolling` dates from time.calibration_end back in steps of
    `evaluation.rolling_step_months`. Each origin's holdout (time.holdout_end - time.calibration_end days)
    must end by time.holdout_end.
    """
    ev, time = config.evaluation, config.time
    if time.holdout_end is None:
        return []
    if ev.origins:
        origins = sorted(ev.origins)
    elif ev.rolling > 1:
        origins = sorted(months_back(time.calibration_end, k * ev.rolling_step_months) for k in range(ev.rolling))
    else:
        return []
    length = time.holdout_end - time.calibration_end
    latest = time.holdout_end - length
    late = [o for o in origins if o > latest]
    if late:
        raise ConfigError(
            f"evaluation.origins: {len(late)} origin(s) leave too short a holdout (first: {late[0]}); with a holdout "
            f"of {length.days} days ending by time.holdout_end {time.holdout_end}, the latest origin is {latest}",
            hint="choose earlier calibration ends, or a later time.holdout_end",
        )
    return origins


def stability(per_origin: pd.DataFrame) -> pd.DataFrame:
    """Per candidate and metric over the origins: mean, standard deviation (n - 1), min, max and range."""
    present = [m for m in STABILITY_METRICS if m in per_origin and per_origin[m].notna().any()]
    long = per_origin.melt(id_vars=["candidate"], value_vars=present, var_name="metric").dropna(subset=["value"])
    long["value"] = long["value"].astype(float)
    out = long.groupby(["candidate", "metric"], sort=False)["value"].agg(["count", "mean", "std", "min", "max"])
    out = out.rename(columns={"count": "origins", "std": "sd"}).reset_index()
    out["range"] = out["max"] - out["min"]
    return out
