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


def _under_ci() -> bool:
    import os

    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (2 cores) for the whole test run. Without PySpark or Java the Spark tests are
    skipped, except under CI, where `make test` installs both and their absence fails."""
    import shutil

    try:
        import pyspark  # noqa: F401
    except ImportError:
        if _under_ci():
            pytest.fail("pyspark is not installed under CI=true: `make test` installs clv[spark]")
        pytest.skip("pyspark is not installed (pip install 'clv[spark]')")
    if shutil.which("java") is None:
        if _under_ci():
            pytest.fail("java is not installed under CI=true: `make test` installs openjdk-17-jre-headless")
        pytest.skip("java is not installed (make java)")
    from clv.config import parse_config
    from clv.spark.session import spark_session

    config = parse_config(
        {
            "name": "spark-tests",
            "data": {"source": "cdnow"},
            "time": {"calibration_end": "1997-09-30"},
            "spark": {"master": "local[2]", "conf": {"spark.sql.shuffle.partitions": "4"}},
        }
    )
    session = spark_session(config)
    yield session
    session.stop()
