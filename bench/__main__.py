"""`make bench`: clv side by side with lifetimes (and pymc-marketing when installed), in one run, with ratios.

python -m bench             # everything
python -m bench rfm         # transactions -> RFM only
python -m bench models      # fit + predict + value only
python -m bench evaluate    # holdout evaluation only
python -m bench nuts        # NUTS per model only (also part of `bayes`)
python -m bench band        # the forecast band's backtest coverage (a check, not timings; not part of `all`)
python -m bench spark       # the whole job on Spark local[2] at 10M and 100M transactions, local beside at 10M
                            # (needs clv[spark] and Java; not part of `all`: about 40 minutes)
python -m bench spark --bayes  # the same with the Bayesian fit at 1M and 10M transactions, local beside each
python -m bench --quick     # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import os

from bench.measure import Measurement, run_task


def _row(label: str, ours: Measurement | None, theirs: Measurement | None, other: str) -> str:
    def cell(m: Measurement | None) -> str:
        return f"{m.seconds:9.3f} s {m.peak_mb:8.0f} MB" if m else f"{'-':>9}   {'-':>8}   "

    ratio = f"{theirs.seconds / ours.seconds:8.1f}x" if ours and theirs else f"{'-':>9}"
    return f"{label:<28} {cell(ours)} | {cell(theirs)} | {ratio} ({other} / clv)"


def bench_rfm(sizes: list[int], lifetimes_max: int) -> None:
    print("\n== transactions -> RFM (DuckDB out of core vs lifetimes' summary_data_from_transaction_data) ==")
    print(f"{'rows':<28} {'clv':>23} | {'lifetimes':>23} | ratio")
    for rows in sizes:
        ours = run_task("clv_rfm", rows=rows)
        theirs = run_task("lifetimes_rfm", rows=rows) if rows <= lifetimes_max else None
        print(_row(f"{rows:,} transactions", ours, theirs, "lifetimes"))
        if ours and theirs and ours.info != theirs.info:
            print(f"  results differ: clv {ours.info} lifetimes {theirs.info}")


def bench_models(sizes: list[int]) -> None:
    print("\n== BG/NBD + Gamma-Gamma fit (maximum likelihood) ==")
    print(f"{'customers':<28} {'clv':>23} | {'lifetimes':>23} | ratio")
    have_pmm = importlib.util.find_spec("pymc_marketing") is not None
    for n in sizes:
        label = "CDNOW (2,357)" if n == 0 else f"{n:,} synthetic"
        ours = run_task("clv_fit", n=n)
        theirs = run_task("lifetimes_fit", n=n)
        print(_row(label, ours, theirs, "lifetimes"))
        if ours and n:
            got = ours.info["bgnbd"]
            print("  recovered BG/NBD: " + ", ".join(f"{k}={got[k]:.3f} (true {v})" for k, v in TRUTH_ITEMS))
            print(f"  unique (x, t_x, T) rows: {ours.info['unique_rows']:,}")
        if have_pmm and n <= 100_000:
            pmm = run_task("pymc_marketing_fit", n=n)
            print(_row(f"{label}, BG/NBD only", ours, pmm, "pymc-marketing MAP"))
    if not have_pmm:
        print("  (pymc-marketing is not installed: pip install -e '.[bench]' for its column)")
    print("\n== P(alive) + expected purchases + 12-month CLV (and DERT, schedule: clv only) ==")
    print(f"{'customers':<28} {'clv':>23} | {'lifetimes':>23} | ratio")
    for n in sizes:
        label = "CDNOW (2,357)" if n == 0 else f"{n:,} synthetic"
        print(_row(label, run_task("clv_value", n=n), run_task("lifetimes_value", n=n), "lifetimes"))


def bench_bayes(sizes: list[int]) -> None:
    have_pmm = importlib.util.find_spec("pymc_marketing") is not None
    bench_nuts(have_pmm)
    print("\n== 12-month CLV per customer over 4,000 posterior draws (means and 90% intervals) ==")
    ours = run_task("clv_posterior_clv", n=0)
    theirs = run_task("pymc_marketing_posterior_clv", n=0) if have_pmm else None
    print(_row("CDNOW (2,357)", ours, theirs, "pymc-marketing"))
    print("\n== NUTS, BG/NBD + Gamma-Gamma, 4 x 1,000 draws + 1,000 tuning, synthetic customers ==")
    for n in sizes[:1]:
        ours = run_task("clv_nuts_fit", n=n, timeout=3600)
        theirs = run_task("pymc_marketing_nuts_fit", n=n, timeout=3600) if have_pmm else None
        print(_row(f"{n:,} synthetic", ours, theirs, "pymc-marketing"))
        if ours:
            print(f"  clv: {ours.info}")
    print("\n== The whole Bayesian run, default settings (inference auto; 500 prediction draws) ==")
    print("   both fits, per-customer credible and predictive intervals, revenue distribution, tier probabilities")
    for n in sizes:
        m = run_task("clv_bayes_run", n=n)
        label = f"{n:,} synthetic"
        cell = f"{m.seconds:8.1f} s {m.peak_mb:8.0f} MB  {m.info.get('inference')}" if m else "failed"
        print(f"{label:<34} {cell}")
    if not have_pmm:
        print("  (pymc-marketing is not installed: pip install -e '.[bench]' for its column)")


def bench_nuts(
    have_pmm: bool, models: tuple[str, ...] = ("bgnbd", "mbgnbd", "gamma_gamma", "bgbb", "pareto_nbd")
) -> None:
    """NUTS per model, 4 chains x 1,000 draws + 1,000 tuning, 2 cores, compile included (a fresh process each):
    clv (its default priors, nutpie) against pymc-marketing (its default priors, nutpie)."""
    print("\n== NUTS, 4 chains x 1,000 draws (+1,000 tuning), 2 cores, compile included (CDNOW; BG/BB: donations) ==")
    print(f"{'':<28} {'clv (nutpie)':>23} | {'pymc-marketing (nutpie)':>23} | ratio")
    for model in models:
        ours = run_task("clv_nuts", n=0, model=model)
        theirs = run_task("pymc_marketing_nuts", n=0, model=model, timeout=600) if have_pmm else None
        print(_row(model, ours, theirs, "pymc-marketing"))
        if ours:
            i = ours.info
            print(
                f"  clv: {i['sampler']} compile {i['compile']:.1f} s + sampling {i['sampling']:.1f} s; R-hat "
                f"{i['r_hat']:.4f}, least bulk ESS {i['ess_bulk']:.0f} ({i['ess_per_second']:.0f}/s of sampling), "
                f"{i['divergences']} divergent; medians within {i['median_vs_mle']:.2%} of the MLE"
            )


def bench_scale() -> None:
    """The maximum-likelihood rows of the Bayesian engine's issue: Pareto/NBD on 1M customers, and `clv evaluate`
    with its default candidates on a 2M-row log."""
    print("\n== Pareto/NBD maximum likelihood; clv evaluate, default candidates (clv only) ==")
    m = run_task("clv_pareto_fit", n=1_000_000)
    print(f"{'Pareto/NBD fit, 1M customers':<34} " + (f"{m.seconds:8.1f} s {m.peak_mb:8.0f} MB" if m else "failed"))
    m = run_task("clv_evaluate_log", n=2_000_000)
    label = "clv evaluate, 2M-row log"
    print(f"{label:<34} " + (f"{m.seconds:8.1f} s {m.peak_mb:8.0f} MB  {m.info}" if m else "failed"))


def bench_evaluate(sizes: list[int]) -> None:
    print("\n== Holdout evaluation, BG/NBD + Gamma-Gamma, on transactions drawn from the BG/NBD process ==")
    print("   clv: the whole `clv evaluate` job from the transaction log (files not written);")
    print("   lifetimes: the two fits, holdout predictions, total and MAE, from the RFM table")
    print(f"{'customers':<28} {'clv':>23} | {'lifetimes':>23} | ratio")
    for n in sizes:
        ours = run_task("clv_evaluate", n=n)
        theirs = run_task("lifetimes_holdout", n=n)
        print(_row(f"{n:,} synthetic", ours, theirs, "lifetimes"))
        if ours and theirs:
            print(f"  clv {ours.info}; lifetimes {theirs.info}")


def bench_covariates(n: int) -> None:
    """The fit with three categorical covariates on both processes (12 covariate patterns, 8 coefficients) beside
    the same model without covariates, on the same n customers (clv only: lifetimes has no covariates)."""
    print(f"\n== Maximum likelihood with covariates (gender, channel, region on both processes), {n:,} customers ==")
    print(f"{'model':<28} {'with covariates':>23} | {'without':>23} | ratio")
    for model in ("bgnbd", "pareto_nbd"):
        ours = run_task("clv_covariate_fit", n=n, model=model)
        plain = run_task("clv_covariate_fit", n=n, model=model, covariates=False)
        print(_row(model, ours, plain, "without"))
        if ours:
            print(f"  {ours.info}")


TRUTH_ITEMS = [("r", 0.25), ("alpha", 4.0), ("a", 0.8), ("b", 2.5)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "rfm", "models", "bayes", "nuts", "evaluate", "covariates", "band", "spark"],
    )
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument(
        "--bayes", action="store_true", help="spark: the Bayesian fit (1M and 10M transactions; --quick: 1M)"
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; every cell is a fresh process (seconds of the timed step, peak RSS)")
    if args.what in ("all", "rfm"):
        sizes = [100_000, 1_000_000] if args.quick else [100_000, 1_000_000, 10_000_000]
        bench_rfm(sizes, lifetimes_max=1_000_000)
    if args.what in ("all", "models"):
        bench_models([0, 10_000] if args.quick else [0, 10_000, 100_000, 1_000_000])
    if args.what in ("all", "evaluate"):
        bench_evaluate([100_000] if args.quick else [100_000, 1_000_000])
        if not args.quick:
            bench_scale()
    if args.what in ("all", "covariates"):
        bench_covariates(100_000 if args.quick else 1_000_000)
    if args.what == "band":
        from bench.band import main as band

        band(args.quick)
    if args.what == "spark":
        from bench.spark import bench_spark

        if args.bayes:
            sizes = [1_000_000] if args.quick else [1_000_000, 10_000_000]
            bench_spark(sizes, local_max=sizes[-1], bayes=True)
        else:
            sizes = [1_000_000] if args.quick else [10_000_000, 100_000_000]
            bench_spark(sizes, local_max=sizes[0])
    if args.what == "nuts":
        bench_nuts(importlib.util.find_spec("pymc_marketing") is not None)
    if args.what in ("all", "bayes"):
        bench_bayes([100_000] if args.quick else [100_000, 1_000_000])


if __name__ == "__main__":
    main()
