"""The run's period against the data (clv.data.period): a calibration end after the data, or data after it that
nothing uses, is refused with the dates named, unless time.allow_gap. Fixture: tests/fixtures/ends_in_march.csv,
ten rows of five customers from 2024-01-03 to 2024-03-28."""

from __future__ import annotations

import pytest

from clv.config import parse_config
from clv.errors import ConfigError
from clv.pipeline import prepare_data

from .conftest import FIXTURES

SOURCE = str(FIXTURES / "ends_in_march.csv")


def config(**time: object):
    return parse_config({"name": "t", "data": {"source": SOURCE}, "time": time})


def test_a_calibration_end_far_after_the_data_is_refused():
    with pytest.raises(ConfigError) as caught:
        prepare_data(config(calibration_end="2024-12-31", holdout_end="2025-03-31"))
    message = caught.value.message
    assert "time.calibration_end 2024-12-31 is 278 days after the last transaction (2024-03-28)" in message
    assert "time.max_gap 90D" in message and caught.value.exit_code == 2
    assert "time.allow_gap: true" in (caught.value.hint or "")


def test_a_holdout_end_far_after_the_data_is_refused():
    with pytest.raises(ConfigError, match=r"time\.holdout_end 2024-12-31 is 278 days after the last transaction"):
        prepare_data(config(calibration_end="2024-02-15", holdout_end="2024-12-31"))


def test_a_gap_within_max_gap_is_fine():
    step = prepare_data(config(calibration_end="2024-02-15", holdout_end="2024-06-25"))  # 89 days after
    assert step.notes == []
    with pytest.raises(ConfigError, match=r"more than time\.max_gap 30D"):
        prepare_data(config(calibration_end="2024-02-15", holdout_end="2024-06-25", max_gap="30D"))
    prepare_data(config(calibration_end="2024-02-15", holdout_end="2024-06-25", max_gap="4M"))


def test_data_after_the_calibration_end_without_a_holdout_is_refused():
    with pytest.raises(ConfigError) as caught:
        prepare_data(config(calibration_end="2024-02-15"))
    assert caught.value.message == (
        "5 row(s) of 4 customer(s) are dated after time.calibration_end 2024-02-15 (up to 2024-03-28) and "
        "time.holdout_end is not set: nothing uses them"
    )
    assert "time.holdout_end: 2024-03-28" in (caught.value.hint or "")


def test_allow_gap_turns_the_refusals_into_notes():
    step = prepare_data(config(calibration_end="2024-02-15", allow_gap=True))
    assert len(step.notes) == 1 and step.notes[0].startswith("time.allow_gap: 5 row(s) of 4 customer(s)")
    step = prepare_data(config(calibration_end="2024-12-31", allow_gap=True))
    assert "278 days after the last transaction" in step.notes[0]
    assert len(step.rfm.frame) == 5  # the run goes on, as asked


def test_rows_after_the_holdout_end_are_said():
    step = prepare_data(config(calibration_end="2024-02-15", holdout_end="2024-03-21"))
    assert step.notes == ["2 row(s) dated after time.holdout_end 2024-03-21 (up to 2024-03-28) are not used"]


def test_summarize_can_look_without_refusing():
    step = prepare_data(config(calibration_end="2024-12-31"), check_period=False)
    assert "278 days after the last transaction" in step.notes[0]


def test_new_customers_are_listed_with_their_holdout():
    step = prepare_data(config(calibration_end="2024-02-15", holdout_end="2024-03-31"))
    new = step.rfm.new_customers
    assert new is not None and step.rfm.late_customers == 2
    assert new["customer_id"].tolist() == ["c4", "c5"]
    assert [d.isoformat() for d in new["first_purchase"]] == ["2024-02-20", "2024-03-28"]
    assert new["purchases_holdout"].tolist() == [2, 1]
    assert new["value_holdout"].tolist() == [24.5, 30.0]
