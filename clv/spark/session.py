"""The Spark session a run uses: the caller's own (a notebook's, a `spark-submit` job's, a Spark Connect
session), or, when none is active, one started from the config's `spark` section. PySpark is an optional extra
(`pip install 'clv[spark]'`) and needs Java 17; both are checked with a clear error before anything starts."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from clv.config import RunConfig
from clv.errors import UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "is_connect",
    "pandas_notices_quieted",
    "parallelism",
    "require_pyspark",
    "scoring_partitions",
    "spark_session",
]


def require_pyspark() -> None:
    """Refuse, with the remedy, when PySpark or Java is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise UsageError(
            "engine: spark needs PySpark, which is not installed",
            hint="pip install 'clv[spark]' (PySpark 4), or set engine: local",
        ) from None


@contextmanager
def pandas_notices_quieted() -> Iterator[None]:
    """A block in which two notices are silenced: PySpark 4 warns, at every conversion, that it does not fully
    support pandas 3, and pandas 3 that PySpark passes `copy=`; notices to PySpark's developers, not to a clv
    user (clv's conversions go through Arrow and are tested for the local engine's numbers). The caller's
    warning filters are as they were after the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        warnings.filterwarnings("ignore", message="The copy keyword is deprecated", module="pyspark")
        yield


@contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """A block in which the session's SQL settings are `settings`; each is as it was after the block (unset
    again when it was not set)."""
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def is_connect(spark: SparkSession) -> bool:
    """Whether `spark` is a Spark Connect session (no SparkContext or RDDs on the client)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def parallelism(spark: SparkSession) -> int:
    """The cores the session's work spreads on: the SparkContext's default parallelism; on Spark Connect, which
    has no SparkContext on the client, the session's `spark.sql.shuffle.partitions` (set `spark.partitions` in
    the config to choose)."""
    if is_connect(spark):
        return int(spark.conf.get("spark.sql.shuffle.partitions") or 200)
    return int(spark.sparkContext.defaultParallelism)


def scoring_partitions(spark: SparkSession, config: RunConfig, customers: int, per_part: int) -> int:
    """Partitions of a per-partition scoring: `spark.partitions` (else twice the session's `parallelism`), more
    where the customers need them for at most about `per_part` in each."""
    return max(config.spark.partitions or 2 * parallelism(spark), -(-customers // per_part))


#: pandas <-> Spark through Arrow (the default from Spark 4.2; clv's conversions of whole tables need it)
ARROW_EXCHANGE = {"spark.sql.execution.arrow.pyspark.enabled": "true"}


def spark_session(config: RunConfig) -> SparkSession:
    """The active Spark session, or a new one from `config.spark` (master, app name, settings)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if shutil.which("java") is None and not _java_home():
        raise UsageError(
            "engine: spark starts a local Spark session, which needs Java 17, and no java is on PATH",
            hint="install Java 17 (Debian: apt-get install openjdk-17-jre-headless; `make java` does it), or pass "
            "your own SparkSession to clv.spark.run",
        )
    builder = SparkSession.builder.master(config.spark.master).appName(config.spark.app_name)
    settings = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false"}
    if config.spark.master.startswith("local"):  # the local workers run this interpreter, which has clv
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings |= config.spark.conf
    settings[_JAVA_OPTIONS] = _with_log_config(settings.get(_JAVA_OPTIONS, ""))
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
#: Spark's logging in the sessions clv starts: errors only (the file says why)
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")


def _with_log_config(options: str) -> str:
    """The driver's Java options with clv's log configuration, unless they name one of their own."""
    if "log4j2.configurationFile" in options or "log4j.configuration" in options:
        return options
    return f"{options} -Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}".strip()


def _java_home() -> bool:
    home = os.environ.get("JAVA_HOME")
    return bool(home) and shutil.which("java", path=str(Path(home or "") / "bin")) is not None
