"""The metric registry: the config's criteria, the docs and the example config name what it names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from clv.metric_registry import AMOUNT_CRITERIA, METRICS, RANK_CRITERIA, RankCriterion

ROOT = Path(__file__).resolve().parents[1]


def test_the_config_accepts_exactly_the_rankable_metrics():
    names = get_args(RankCriterion)
    assert len(set(names)) == len(names)
    assert set(names) == {m.name for m in METRICS if m.rankable} == set(RANK_CRITERIA)


def test_names_are_distinct_and_amount_criteria_rank():
    assert len({m.name for m in METRICS}) == len(METRICS)
    assert set(AMOUNT_CRITERIA) == {"mae_revenue", "rmse_revenue", "abs_percent_error_revenue"}
    assert all(m.rankable for m in METRICS if not m.leaderboard)


def test_the_readme_defines_every_metric():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### What each metric means", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", section))
    assert {m.name for m in METRICS} <= documented


def test_the_example_config_lists_every_criterion():
    text = (ROOT / "configs" / "example.yaml").read_text()
    comment = text.split("rank_by:", 1)[1].split("origins:", 1)[0]
    listed = set(re.findall(r"[a-z]+(?:_[a-z]+)*", comment.replace("#", " ")))
    assert set(RANK_CRITERIA) <= listed
