from __future__ import annotations

from pathlib import Path

import pytest

from clv.config import apply_overrides, config_hash, load_config, parse_config
from clv.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"name": "t", "data": {"source": "cdnow"}, "time": {"calibration_end": "1997-09-30"}}


def test_shipped_configs_validate():
    demo = load_config(ROOT / "configs" / "cdnow.yaml")
    assert demo.time.unit == "W" and str(demo.time.holdout_end) == "1998-06-30"
    example = load_config(ROOT / "configs" / "example.yaml")
    assert example.model.purchase == "bgnbd"


def test_packaged_demo_config_is_the_repository_one():
    packaged = ROOT / "clv" / "configs" / "cdnow.yaml"
    assert packaged.read_text() == (ROOT / "configs" / "cdnow.yaml").read_text()


def test_unknown_key_names_its_path():
    with pytest.raises(ConfigError, match=r"model\.purchse: unknown key"):
        parse_config(MINIMAL | {"model": {"purchse": "bgnbd"}})


def test_bad_value_says_expected_and_given():
    with pytest.raises(ConfigError, match=r"time\.unit: .*'D' or 'W'.*got 'M'"):
        parse_config(MINIMAL | {"time": {"calibration_end": "1997-09-30", "unit": "M"}})


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"data: required key is missing"):
        parse_config({"name": "t", "time": {"calibration_end": "1997-09-30"}})


def test_holdout_must_follow_calibration():
    with pytest.raises(ConfigError, match="holdout_end"):
        parse_config(MINIMAL | {"time": {"calibration_end": "1997-09-30", "holdout_end": "1997-01-01"}})


def test_overrides_are_typed_and_nested():
    raw = apply_overrides(MINIMAL, ["model.purchase=pareto_nbd", "prediction.horizon=26", "data.amount=null"])
    cfg = parse_config(raw)
    assert cfg.model.purchase == "pareto_nbd"
    assert cfg.prediction.horizon == "26W"  # a bare number is in time.unit, and says so
    assert cfg.data.amount is None
    assert MINIMAL["data"] == {"source": "cdnow"}  # input not mutated


def test_override_of_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match=r"model\.colour: unknown key"):
        parse_config(apply_overrides(MINIMAL, ["model.colour=red"]))


@pytest.mark.parametrize("bad", ["model.purchase", "=x", "model..x=1"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(MINIMAL, [bad])


def test_hash_follows_content():
    a, b = parse_config(MINIMAL), parse_config(dict(MINIMAL))
    assert config_hash(a) == config_hash(b)
    c = parse_config(apply_overrides(MINIMAL, ["model.seed=7"]))
    assert config_hash(a) != config_hash(c)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def _keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _keys(value, path + ".")
        else:
            out.add(path)
    return out


def test_example_config_lists_every_key_with_its_default():
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "example.yaml").read_text())
    resolved = load_config(ROOT / "configs" / "example.yaml").resolved()
    assert _keys(raw) == _keys(resolved)
    defaults = parse_config(MINIMAL).resolved()
    for section in ("model", "prediction", "bayes", "tiers", "output"):
        assert resolved[section] == defaults[section], section


# ---------- time units and durations ----------


@pytest.mark.parametrize(("given", "unit"), [("w", "W"), ("d", "D"), (" W ", "W")])
def test_time_unit_accepts_any_case(given, unit):
    cfg = parse_config(MINIMAL | {"time": {"calibration_end": "1997-09-30", "unit": given}})
    assert cfg.time.unit == unit


def test_the_default_horizon_is_twelve_calendar_months_in_any_unit():
    """A bare `horizon: 52` meant a year in weeks and 52 days in days; the default is a duration."""
    weeks = parse_config(MINIMAL)
    days = parse_config(MINIMAL | {"time": {"calibration_end": "1997-09-30", "unit": "D"}})
    assert weeks.prediction.horizon == days.prediction.horizon == "12M"
    assert days.horizon_units() == 365 and weeks.horizon_units() == pytest.approx(365 / 7)
    assert weeks.horizon_label() == "12 M (365 days)"


@pytest.mark.parametrize(
    ("unit", "horizon", "canonical", "label"),
    [
        ("W", 52, "52W", "52 W (364 days)"),
        ("d", 365, "365D", "365 D"),
        ("W", "12m", "12M", "12 M (365 days)"),
        ("W", "52w", "52W", "52 W (364 days)"),
        ("D", "1Y", "1Y", "1 Y (365 days)"),
        ("W", 4.5, "4.5W", "4.5 W (31.5 days)"),
    ],
)
def test_a_horizon_is_echoed_with_its_unit(unit, horizon, canonical, label):
    raw = MINIMAL | {"time": {"calibration_end": "1997-09-30", "unit": unit}, "prediction": {"horizon": horizon}}
    cfg = parse_config(raw)
    assert cfg.prediction.horizon == canonical and cfg.horizon_label() == label
    assert cfg.resolved()["prediction"]["horizon"] == canonical  # what summary.json and model.json record
    assert parse_config(cfg.resolved()).prediction.horizon == canonical  # and it reads back the same


@pytest.mark.parametrize(
    ("horizon", "message"),
    [
        ("1.5M", "whole numbers"),
        ("0W", "> 0"),
        ("12 weeks", "e.g. 52W"),
        (-3, "e.g. 52W"),
        (True, "number with a"),
        ("0.5D", "at least one day"),
    ],
)
def test_bad_horizons_name_the_key(horizon, message):
    with pytest.raises(ConfigError, match=rf"prediction\.horizon: .*{message}"):
        parse_config(MINIMAL | {"prediction": {"horizon": horizon}})


def test_max_gap_is_a_duration_and_a_bare_number_is_in_time_unit():
    cfg = parse_config(MINIMAL)
    assert cfg.time.max_gap == "90D" and cfg.time.allow_gap is False
    cfg = parse_config(MINIMAL | {"time": {"calibration_end": "1997-09-30", "unit": "w", "max_gap": 13}})
    assert cfg.time.max_gap == "13W"
    with pytest.raises(ConfigError, match=r"time\.max_gap"):
        parse_config(MINIMAL | {"time": {"calibration_end": "1997-09-30", "max_gap": "soon"}})


def test_a_check_across_a_section_does_not_echo_the_section():
    from clv.config import parse_config
    from clv.errors import ConfigError

    raw = {
        "name": "x",
        "data": {"source": "cdnow"},
        "time": {"calibration_end": "2007-09-30", "holdout_end": "1998-06-30"},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert "must be after calibration_end (2007-09-30)" in caught.value.message and "{" not in caught.value.message
    with pytest.raises(ConfigError) as caught:
        parse_config(raw | {"time": {"calibration_end": "1997-09-30"}, "prediction": {"horizon": "1.5M"}})
    assert caught.value.message.count("1.5M") == 1
