"""`python -m bench spark`: the whole job on Spark (`engine: spark`, `local[2]`), from a log generated inside Spark.

The log is drawn from the BG/NBD process with Gamma-Gamma spend (`_simulate`, about 10 transactions a customer
over two years) by `mapInPandas` over `spark.range` of the customers, and kept on Spark's local disk
(`persist(DISK_ONLY)`), so the job reads it from Spark and no CSV is written. Each size runs in a fresh process
(a fresh JVM): per stage its time, the transactions per second per core, and the memory of the driver (its
Python process and its JVM; in local mode the JVM also runs the executors' tasks, so it is an upper bound of a
cluster driver's). At the local sizes the same log, written once as Parquet, also runs through `engine: local`
(DuckDB), side by side.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: the generator's BG/NBD parameters (weeks) and Gamma-Gamma spend (p, q, v): about 10.2 transactions a customer
TRUTH = {"r": 0.75, "alpha": 4.0, "a": 0.5, "b": 4.0}
SPEND = (6.0, 4.0, 15.0)
PER_CUSTOMER = 10.18  # measured mean transactions a customer under TRUTH over 104 weeks (100,000 customers)
START = "2024-01-01"
WEEKS = 104.0
CORES = 2


def _simulate(first: int, n: int, seed: int) -> pd.DataFrame:
    """Customers first..first+n-1's transactions (customer_id as int, day, amount), by `clv.simulate`'s process
    (`bgnbd_purchases`: first purchases uniform over 13 weeks, purchase days binned, amounts Gamma(p, nu) rounded
    to cents)."""
    from clv.simulate import bgnbd_purchases

    rng = np.random.default_rng([seed, first])
    params = (TRUTH["r"], TRUTH["alpha"], TRUTH["a"], TRUTH["b"])
    who, day, amount = bgnbd_purchases(rng, n, params, SPEND, START, WEEKS, 13.0)
    return pd.DataFrame({"customer_id": who.astype(np.int64) + first, "date": day, "amount": amount})


def generated_log(spark: Any, transactions: int, seed: int = 11) -> Any:
    """About `transactions` rows drawn inside Spark (module docstring), with text customer ids."""
    from pyspark.sql import functions as F

    customers = round(transactions / PER_CUSTOMER)
    slices = max(CORES, customers // 250_000)

    def draw(batches: Any) -> Any:
        for batch in batches:
            ids = batch["id"].to_numpy()
            if ids.size:
                yield _simulate(int(ids[0]), int(ids.size), seed)

    ranges = spark.range(0, customers, 1, slices)
    schema = "customer_id long, date timestamp, amount double"
    frame = ranges.mapInPandas(draw, schema)
    return frame.select(
        F.col("customer_id").cast("string").alias("customer_id"), F.to_date("date").alias("date"), "amount"
    )


#: `--bayes`: the Bayesian fit (bayes.inference auto: NUTS within its time budget, else Laplace) on both engines
BAYES = {"model": {"method": "bayes"}, "bayes": {"inference": "auto", "cores": CORES, "progress": False}}


def _config(source: str, engine: str, folder: Path, bayes: bool = False) -> Any:
    from clv.config import parse_config

    return parse_config(
        {
            **(BAYES if bayes else {}),
            "name": "bench_spark",
            "engine": engine,
            "data": {"source": source, "currency": "EUR"},
            "time": {"unit": "W", "calibration_end": "2025-06-30", "holdout_end": "2025-12-28"},
            "spark": {
                "master": f"local[{CORES}]",
                "conf": {"spark.driver.memory": "3g", "spark.sql.shuffle.partitions": str(4 * CORES)},
                "max_collected_rows": 20_000_000,
            },
            "output": {"reports_dir": str(folder / "reports"), "models_dir": str(folder / "models")},
        }
    )


def _jvm_peak_mb() -> float:
    """The peak resident memory of this process's JVM child (Spark's driver), from /proc."""
    peak = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and "java" in fields.get("Name", ""):
            peak = max(peak, float(fields.get("VmHWM", "0 kB").split()[0]) / 1024)
    return peak


def _stages(config: Any, timed: dict[str, float], tasks: Any) -> dict[str, Any]:
    """The job's stages after the data step (fit, score, write), timed into `timed`."""
    from clv import pipeline
    from clv.report.outputs import write_outputs

    data = tasks
    start = time.perf_counter()
    parts: dict[str, float] = {}
    if data.rfm.remote is not None:  # the fit's Spark part: one pass compressing the rows, collected by Arrow
        data.rfm.remote.histories()
        parts["compress on Spark, collect"] = time.perf_counter() - start
    fitted = pipeline.fit_models(config, data.rfm)  # on Spark: from the distinct histories collected
    timed["fit"] = time.perf_counter() - start
    if parts:  # the rest is the driver's: the fits on the collected rows (and the outliers' ids)
        parts["the rest (driver: the fits)"] = timed["fit"] - parts["compress on Spark, collect"]
    start = time.perf_counter()
    result = pipeline.score(config, fitted, data)
    timed["score"] = time.perf_counter() - start
    start = time.perf_counter()
    write_outputs(result)
    timed["write outputs"] = time.perf_counter() - start
    distinct = {}
    if data.rfm.remote is not None:  # what the fit collected instead of the customers
        distinct = {
            "histories": len(data.rfm.remote.histories()[0]),
            "spend_pairs": len(data.rfm.remote.spend_pairs()[0]),
        }
    posterior = fitted.purchase_posterior
    return {
        "fit_parts": parts,
        "distinct": distinct,
        "customers": data.rfm.customers,
        "params": fitted.purchase.params_,
        "clv_total": result.digest.total_clv,
        # a Bayesian fit: the inference used (auto chooses it from the distinct histories), its seconds
        "inference": None if posterior is None else posterior.diagnostics.inference,
        "inference_seconds": None if posterior is None else posterior.diagnostics.seconds,
    }


def measure(engine: str, transactions: int, parquet: str | None, bayes: bool = False) -> dict[str, Any]:
    """One size on one engine, in this process: every stage's time, the result's figures, the peak memory
    (`bayes`: with the Bayesian fit, `BAYES`)."""
    from clv import pipeline

    folder = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    timed: dict[str, float] = {}
    try:
        if engine == "spark":
            from pyspark import StorageLevel

            from clv.spark.data import spark_data_step
            from clv.spark.session import pandas_notices_quieted, spark_session

            config = _config("table:generated", "spark", folder, bayes)
            spark = spark_session(config)
            start = time.perf_counter()
            log = generated_log(spark, transactions).persist(StorageLevel.DISK_ONLY)
            rows = log.count()
            timed["generate (not the job)"] = time.perf_counter() - start
            start = time.perf_counter()
            with pandas_notices_quieted():
                data = spark_data_step(spark, config, log)
            timed["read, validate, summarise"] = time.perf_counter() - start
            if parquet is not None:
                start = time.perf_counter()
                log.coalesce(1).write.mode("overwrite").parquet(parquet)  # one file, as the local engine reads
                timed["write Parquet for local (not the job)"] = time.perf_counter() - start
        else:
            assert parquet is not None
            config = _config(str(next(Path(parquet).glob("*.parquet"))), "local", folder, bayes)
            start = time.perf_counter()
            data = pipeline.prepare_data(config)
            timed["read, validate, summarise"] = time.perf_counter() - start
            rows = data.report.rows_read
        info = _stages(config, timed, data)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    python_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return info | {"rows": rows, "timed": timed, "python_mb": python_mb, "jvm_mb": _jvm_peak_mb()}


def _run(
    engine: str, transactions: int, parquet: str | None, timeout: float, bayes: bool = False
) -> dict[str, Any] | None:
    code = (
        "import json, sys\nfrom bench.spark import measure\n"
        f"out = measure({engine!r}, {transactions}, {parquet!r}, {bayes!r})\n"
        "print('RESULT ' + json.dumps(out, default=float))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"  {engine} at {transactions:,}: timed out after {timeout:.0f} s")
        return None
    # DuckDB's progress bar may share the result's line (it writes to stdout, without a newline)
    lines = [line[line.index("RESULT ") :] for line in done.stdout.splitlines() if "RESULT " in line]
    if done.returncode != 0 or not lines:
        errors = [line for line in done.stderr.strip().splitlines() if "WARN" not in line and "Warning" not in line]
        cause = errors[-1] if errors else f"exit code {done.returncode}, no message (killed: out of memory?)"
        print(f"  {engine} at {transactions:,}: failed: {cause}")
        return None
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def _print(label: str, out: dict[str, Any]) -> None:
    rows = out["rows"]
    job = sum(v for k, v in out["timed"].items() if "not the job" not in k)
    print(f"\n-- {label}: {rows:,} transactions, {out['customers']:,} customers --")
    for stage, seconds in out["timed"].items():
        rate = f"{rows / seconds / CORES:>12,.0f} rows/s/core" if seconds > 0 else ""
        print(f"  {stage:<40} {seconds:8.1f} s  {rate}")
        if stage == "fit" and out.get("fit_parts"):
            print("    " + "; ".join(f"{k} {v:.1f} s" for k, v in out["fit_parts"].items()))
    print(f"  {'the job (read to outputs)':<40} {job:8.1f} s  {rows / job / CORES:>12,.0f} rows/s/core")
    print(f"  driver peak memory: Python {out['python_mb']:,.0f} MB, JVM {out['jvm_mb']:,.0f} MB")
    if out.get("distinct"):
        shown = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in out["distinct"].items())
        print(f"  rows the fit collected instead of {out['customers']:,} customers: {shown}")
    if out.get("inference"):
        print(f"  Bayesian fit by {out['inference']} ({out['inference_seconds']:.1f} s of the fit stage)")
    params = ", ".join(f"{k}={v:.4f}" for k, v in out["params"].items())
    print(f"  BG/NBD {params} (true {', '.join(f'{k}={v}' for k, v in TRUTH.items())}); CLV {out['clv_total']:,.0f}")


def bench_spark(sizes: list[int], local_max: int, bayes: bool = False) -> None:
    """Every size on Spark, and the sizes up to `local_max` also on the local engine, side by side (`bayes`: the
    Bayesian fit, its per-customer intervals and tier probabilities scored per partition on Spark)."""
    fit = "the Bayesian fit (bayes.inference auto)" if bayes else "maximum likelihood"
    print(f"\n== the whole job on Spark (local[{CORES}]) vs the local engine (DuckDB), {fit} ==")
    for transactions in sizes:
        folder = Path(tempfile.mkdtemp(prefix="bench-spark-log-"))
        parquet = str(folder / "log.parquet") if transactions <= local_max else None
        try:
            on_spark = _run("spark", transactions, parquet, 3600.0, bayes)
            if on_spark is None:
                continue
            _print(f"engine: spark, {transactions:,}", on_spark)
            if parquet is None:
                continue
            local = _run("local", transactions, parquet, 3600.0, bayes)
            if local is None:
                continue
            _print(f"engine: local, {transactions:,}", local)
            stages = [k for k in local["timed"] if k in on_spark["timed"]]
            ratios = ", ".join(f"{k} {on_spark['timed'][k] / local['timed'][k]:.1f}x" for k in stages)
            print(f"  spark time / local time: {ratios}")
            for name, value in local["params"].items():
                theirs = on_spark["params"][name]
                if abs(theirs - value) > 1e-8 * abs(value):
                    print(f"  parameters differ: {name} local {value} spark {theirs}")
            if abs(on_spark["clv_total"] - local["clv_total"]) > 1e-9 * abs(local["clv_total"]):
                print(f"  total CLV differs: local {local['clv_total']} spark {on_spark['clv_total']}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
