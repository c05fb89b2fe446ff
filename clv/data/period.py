"""Whether the run's period fits the data: a calibration end after the data, or data after it that nothing uses.

Two mistakes give a wrong number with no error, so they are refused (`ConfigError`, exit 2) unless
`time.allow_gap: true`:

- an end of the run's period (`time.calibration_end`, and `time.holdout_end` when set) more than `time.max_gap`
  (default 90 days) after the last transaction: customers look lost for the whole gap (a calibration end typed
  ten years late makes CDNOW's CLV 601 instead of 72,506), and a holdout counts the missing days as no purchases;
- transactions after the calibration end without a `time.holdout_end`: nothing would use them.

Transactions after `time.holdout_end` are left out of a run by design (a backtest); they are said, not refused.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from clv.config import TimeConfig
from clv.data.transactions import Transactions, sql_date
from clv.errors import ConfigError

__all__ = ["PeriodCheck", "PeriodFacts", "check_period", "judge_period", "period_facts"]


@dataclass(frozen=True)
class PeriodFacts:
    """The data's last transaction day, and the input rows and customers dated after the calibration end and
    after the holdout end."""

    last_day: dt.date
    rows_after_calibration: int
    customers_after_calibration: int
    rows_after_holdout: int


@dataclass(frozen=True)
class PeriodCheck:
    """What `check_period` found: the refusal (None when the period fits the data) and notes for the run."""

    problem: ConfigError | None
    notes: list[str]


def period_facts(tx: Transactions, time: TimeConfig) -> PeriodFacts:
    """Count what lies after the calibration end and the holdout end, in input rows (the lines read)."""
    cal = sql_date(time.calibration_end)
    end = sql_date(time.holdout_end or time.calibration_end)
    row = tx.con.execute(
        f"SELECT max(day), coalesce(sum(n_rows) FILTER (WHERE day > {cal}), 0), "
        f"count(DISTINCT customer_id) FILTER (WHERE day > {cal}), "
        f"coalesce(sum(n_rows) FILTER (WHERE day > {end}), 0) FROM {tx.table}"
    ).fetchone()
    assert row is not None and row[0] is not None  # validated transactions have at least one day
    return PeriodFacts(row[0], int(row[1]), int(row[2]), int(row[3]))


def _gap(time: TimeConfig, facts: PeriodFacts) -> ConfigError | None:
    """A calibration (or holdout) end more than max_gap after the last transaction."""
    allowed = time.gap.days(facts.last_day)
    ends = [("calibration_end", time.calibration_end)]
    if time.holdout_end is not None:
        ends.append(("holdout_end", time.holdout_end))
    for key, end in ends:
        days = (end - facts.last_day).days
        if days > allowed:
            looks = "lost" if key == "calibration_end" else "idle"
            return ConfigError(
                f"time.{key} {end} is {days:,} days after the last transaction ({facts.last_day}), more than "
                f"time.max_gap {time.max_gap}: every customer would look {looks} for the whole gap",
                hint=f"set time.{key} to a date within the data (the last transaction is on {facts.last_day}), or "
                "time.allow_gap: true if the quiet spell is real",
            )
    return None


def _unused(time: TimeConfig, facts: PeriodFacts) -> str | None:
    """Transactions after the calibration end that no holdout uses."""
    if time.holdout_end is not None or not facts.rows_after_calibration:
        return None
    return (
        f"{facts.rows_after_calibration:,} row(s) of {facts.customers_after_calibration:,} customer(s) are dated "
        f"after time.calibration_end {time.calibration_end} (up to {facts.last_day}) and time.holdout_end is not "
        "set: nothing uses them"
    )


def check_period(tx: Transactions, time: TimeConfig) -> PeriodCheck:
    """Refuse a period that does not fit the data (module docstring), unless time.allow_gap: then the problem is
    a note; rows after the holdout end are a note."""
    return judge_period(period_facts(tx, time), time)


def judge_period(facts: PeriodFacts, time: TimeConfig) -> PeriodCheck:
    """`check_period` on the facts of a log (of a whole log, or its parts' added up: `clv.spark`)."""
    problem = _gap(time, facts)
    unused = _unused(time, facts)
    if problem is None and unused is not None:
        problem = ConfigError(
            unused,
            hint=f"set time.holdout_end: {facts.last_day} to check the forecast on them, move time.calibration_end "
            "to use them in the fit, or set time.allow_gap: true to leave them out",
        )
    notes = []
    if time.holdout_end is not None and facts.rows_after_holdout:
        notes.append(
            f"{facts.rows_after_holdout:,} row(s) dated after time.holdout_end {time.holdout_end} (up to "
            f"{facts.last_day}) are not used"
        )
    if problem is not None and time.allow_gap:
        return PeriodCheck(None, [f"time.allow_gap: {problem.message}", *notes])
    return PeriodCheck(problem, notes)
