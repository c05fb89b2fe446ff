from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from clv.config import DataConfig
from clv.data import load_transactions, rfm_summary

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def cdnow_summary():
    # The published analyses (FHL 2005, BTYD) count CDNOW's 21 rows identical to another as orders: keep them.
    tx = load_transactions("cdnow", DataConfig(source="cdnow", duplicates="keep"))
    return rfm_summary(tx, dt.date(1997, 9, 30), dt.date(1998, 6, 30), "W")


@pytest.fixture(scope="session")
def cdnow_rfm(cdnow_summary) -> pd.DataFrame:
    return cdnow_summary.frame


@pytest.fixture(scope="session")
def donations() -> pd.DataFrame:
    from clv.data import load_donations

    return load_donations().rename(columns={"periods": "T"})


def pytest_configure(config):
    # CI runs the same examples every time (no flaky discovery, no replay database); locally hypothesis explores.
    import os

    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, database=None)
    if os.environ.get("CI"):
        settings.load_profile("ci")
