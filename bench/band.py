"""The honest check of the forecast band (`prediction.band`, `clv.evaluate.band`): `python -m bench band`.

On CDNOW and grocery (their configs, with prediction.band 0.8) and on synthetic logs drawn from BG/NBD +
Gamma-Gamma with known parameters: how often the 80% band of the total held the actual at the rolling origins,
each origin's band calibrated on the other origins (leave-one-origin-out), with the number of origins; and on the
synthetic logs, the band's width beside the uncalibrated band's and the oracle's (the band at the true parameters:
the purchase process's noise alone), and whether the run's calibrated band held the true total of the horizon
that follows the data the calibration saw.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
SPEND = (6.0, 4.0, 15.0)
#: the synthetic logs (first purchases over the first 13 weeks from 2020-01-01): a CDNOW-like one (calibration
#: 39 weeks, holdout 39 weeks; its earliest origin, 2020-04-30, sees 4 to 17 weeks of each customer) and one whose
#: origins all see a year or more; after the holdout, 3 more months of data that only the check of the run's own
#: 12-month total reads
SYNTHETIC = {
    "short histories": {"calibration_end": "2020-09-30", "holdout_end": "2021-06-30", "end": "2021-09-30"},
    "long histories": {"calibration_end": "2021-06-30", "holdout_end": "2022-03-31", "end": "2022-06-30"},
}
START = "2020-01-01"


def _line(kind: str, block: dict[str, Any]) -> str:
    held, n = block["backtest_held"], len(block["per_origin"])
    loo = "n/a" if held is None else f"{held}/{n} = {held / n:.0%}"
    raw = sum(o["held_uncalibrated"] for o in block["per_origin"])
    q = block["adjustment"]
    return (
        f"  {kind:<9} leave-one-origin-out {loo:<11} uncalibrated {raw}/{n}; adjustment "
        f"{'n/a' if q is None else f'{q:+.3f} widths'}; band {block['lo']:,.0f} - {block['hi']:,.0f} "
        f"(uncalibrated {block['uncalibrated_lo']:,.0f} - {block['uncalibrated_hi']:,.0f})"
    )


def real(name: str, overrides: list[str]) -> None:
    """The band of one of the repository's configs."""
    from clv.config import load_config
    from clv.pipeline import run

    config = load_config(ROOT / "configs" / f"{name}.yaml", ["prediction.band=0.8", *overrides])
    start = time.perf_counter()
    band = run(config).forecast_band
    assert band is not None
    block = band.to_dict()
    print(
        f"{name}: {len(band.origins)} origins {', '.join(block['origins'])} (months covered {block['origin_months']}),"
        f" {time.perf_counter() - start:.0f} s"
    )
    for kind, totals in block["totals"].items():
        print(_line(kind, totals))


def _synthetic_config(folder: Path, seed: int, customers: int, dates: dict[str, str]) -> Any:
    from clv.config import parse_config
    from clv.simulate import simulate_bgnbd_log

    weeks = (dt.date.fromisoformat(dates["end"]) - dt.date.fromisoformat(START)).days / 7.0
    log = simulate_bgnbd_log(customers, **TRUTH, spend=SPEND, start=START, weeks=weeks, seed=seed)
    path = folder / f"log_{seed}.csv"
    log.to_csv(path, index=False)
    return parse_config(
        {
            "name": "band_synthetic",
            "data": {"source": str(path)},
            "time": {"unit": "W", "calibration_end": dates["calibration_end"], "holdout_end": dates["holdout_end"],
                     "allow_gap": True},
            "prediction": {"horizon": "12M", "band": 0.8, "band_origins": 6},
        }
    )  # fmt: skip


def _future_totals(config: Any, end: str) -> dict[str, float]:
    """The cohort's actual repeat purchases and revenue over the run's 12 months (to `end`)."""
    import duckdb

    from clv.data.rfm import rfm_summary
    from clv.data.transactions import load_transactions
    from clv.evaluate.comparison import holdout_actuals

    with duckdb.connect() as con:
        tx = load_transactions(config.data.source, config.data, con)
        frame = rfm_summary(tx, config.time.calibration_end, dt.date.fromisoformat(end), "W").frame
    return {k: float(v.sum()) for k, v in holdout_actuals(frame, True).items()}


def _oracle(config: Any, rfm: Any) -> dict[str, tuple[float, float]]:
    """The band at the true parameters (no parameter uncertainty: the process's noise alone)."""
    from clv.band import predictive_band
    from clv.evaluate.band import BAND_DRAWS
    from clv.purchase.bgnbd import BetaGeoModel
    from clv.value import month_edges

    edges = month_edges(config.horizon_units(), "W", config.time.calibration_end)
    draws = np.tile([TRUTH[k] for k in BetaGeoModel.param_names], (BAND_DRAWS, 1))
    band = predictive_band(BetaGeoModel, draws, np.tile(SPEND, (BAND_DRAWS, 1)), rfm, edges, 0.8,
                           np.random.default_rng(0))  # fmt: skip
    return {k: (float(band.cumulative_lo[k][-1]), float(band.cumulative_hi[k][-1])) for k in band.kinds}


def synthetic(replications: int, customers: int, scenario: str) -> None:
    """Leave-one-origin-out coverage pooled over the replications' origins; widths; the run's own check."""
    from clv.pipeline import run

    held = {k: 0 for k in ("purchases", "revenue")}
    raw = dict(held)
    run_held, run_raw = dict(held), dict(held)
    origins = 0
    widths: dict[str, list[tuple[float, float, float]]] = {k: [] for k in held}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(replications):
            dates = SYNTHETIC[scenario]
            config = _synthetic_config(Path(folder), seed, customers, dates)
            result = run(config)
            band = result.forecast_band
            assert band is not None
            future, oracle = _future_totals(config, dates["end"]), _oracle(config, result.data.rfm.frame)
            origins += len(band.origins)
            for kind, k in band.kinds.items():
                held[kind] += sum(k.loo_held or [])
                raw[kind] += sum(k.raw_held)
                run_held[kind] += int(k.total_lo <= future[kind] <= k.total_hi)
                run_raw[kind] += int(k.total_raw[0] <= future[kind] <= k.total_raw[1])
                o = oracle[kind]
                widths[kind].append((k.total_hi - k.total_lo, k.total_raw[1] - k.total_raw[0], o[1] - o[0]))
    print(f"synthetic BG/NBD + Gamma-Gamma ({TRUTH}, spend {SPEND}), {scenario} (calibration to "
          f"{SYNTHETIC[scenario]['calibration_end']}), {customers:,} customers, {replications} logs, {origins} origins "
          "in all:")  # fmt: skip
    for kind in held:
        w = np.array(widths[kind])
        print(
            f"  {kind:<9} leave-one-origin-out {held[kind]}/{origins} = {held[kind] / origins:.0%} (uncalibrated "
            f"{raw[kind]}/{origins} = {raw[kind] / origins:.0%}); the run's 12-month total (data the calibration did "
            f"not see) inside the calibrated band in {run_held[kind]}/{replications}, the uncalibrated in "
            f"{run_raw[kind]}/{replications}; mean width calibrated / uncalibrated {np.mean(w[:, 0] / w[:, 1]):.2f}, "
            f"calibrated / oracle {np.mean(w[:, 0] / w[:, 2]):.2f}, "
            f"uncalibrated / oracle {np.mean(w[:, 1] / w[:, 2]):.2f}"
        )


def main(quick: bool) -> None:
    print("\n== The forecast band (prediction.band 0.8): does the 80% band of the total hold the actual? ==")
    real("cdnow", [])
    if (ROOT.parent / "shared" / "data" / "btydplus_groceryElog.csv").exists():
        real("grocery", ["prediction.band_origins=9"])
    for scenario in SYNTHETIC:
        synthetic(4 if quick else 12, 2000, scenario)
