"""The `clv` command line: parses arguments, shows progress, maps errors to exit codes.

Exit codes: 0 ok, 1 the run failed (bad data, a failed fit), 2 bad usage or config, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clv.config import RunConfig, apply_overrides, config_hash, load_config, parse_config
from clv.errors import ClvError, ClvWarning
from clv.metric_registry import METRICS

app = typer.Typer(
    name="clv",
    help="Customer-lifetime-value engine: transactions -> RFM -> BG/NBD-family + Gamma-Gamma -> CLV.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Look at a data set before modelling it.", no_args_is_help=True)
app.add_typer(data_app, name="data")

ConfigArg = Annotated[Path, typer.Argument(help="YAML run config, e.g. configs/cdnow.yaml", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set section.key=value (repeatable)", show_default=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the output location.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks of errors.")]

err = Console(stderr=True)


#: the exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130
#: set by the SIGINT handler of the console script (`main`)
_INTERRUPT_SEEN = threading.Event()


@contextmanager
def _errors(verbose: bool) -> Iterator[None]:
    """Our errors become one line plus a hint on stderr and an exit code (2 bad usage or config, 1 a run that
    failed); a file system error (disk full, permission lost mid-run) exits 1; Ctrl-C prints `interrupted` and
    exits 130. A traceback only with --verbose."""
    try:
        yield
    except ClvError as exc:
        if verbose:
            raise
        if _INTERRUPT_SEEN.is_set():  # an error that followed a Ctrl-C (e.g. a sampler's cut-short draws)
            err.print("interrupted", highlight=False)
            raise typer.Exit(INTERRUPTED) from None
        _error(exc.message, exc.hint)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        if verbose:
            raise
        _error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), "--verbose shows where")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        if verbose:
            raise
        err.print("interrupted", highlight=False)
        raise typer.Exit(INTERRUPTED) from None
    except Exception:
        # Only a Ctrl-C that a library turned into its own error (an ImportError from an extension's
        # initialisation, DuckDB's "Query interrupted"): anything else goes on up unchanged.
        if verbose or not _INTERRUPT_SEEN.is_set():
            raise
        err.print("interrupted", highlight=False)
        raise typer.Exit(INTERRUPTED) from None


def _error(message: str, hint: str | None) -> None:
    """One line of error and one of hint, on stderr (our text is shown as written, never read as rich markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)


def _load(config: Path, overrides: list[str] | None) -> RunConfig:
    return load_config(config, overrides or [])


def _demo_config(overrides: list[str] | None) -> RunConfig:
    text = resources.files("clv.configs").joinpath("cdnow.yaml").read_text(encoding="utf-8")
    return parse_config(apply_overrides(yaml.safe_load(text), overrides or []), origin="cdnow demo config")


@app.command("check-config")
def check_config(config: ConfigArg, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """Validate a run config and print it resolved (file + --set overrides + defaults, e.g. time.unit W,
    prediction.horizon 12M from the calibration end, model.method mle) with its hash; --quiet prints only the hash.

    Example: clv check-config configs/cdnow.yaml --set model.purchase=pareto_nbd
    """
    with _errors(verbose):
        cfg = _load(config, set_)
        if not quiet:
            typer.echo(yaml.safe_dump(cfg.resolved(), sort_keys=False).rstrip())
        typer.echo(f"# config hash: {config_hash(cfg)}")


@data_app.command("summarize")
def data_summarize(
    config: ConfigArg,
    set_: SetOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Profile the config's transactions: customers, transactions, date range, repeat buyers, same-day
    duplicates, returns, invoices, cancellations, guest lines and lines priced <= 0 (money in the data's
    unit), and customers first seen after the calibration end; repeat purchases per period
    (calibration to time.calibration_end, holdout to time.holdout_end); the regularity of the inter-purchase
    times (the Gamma shape k up to the calibration end, by Wheat & Morrison's method and as the median of the
    customers' own maximum-likelihood fits, with how many customers each rests on, and what it means: k ~ 1
    Poisson-like, k > 1 regular). Nothing is fitted. --quiet: only the validation (errors and exit code).

    Example: clv data summarize configs/cdnow.yaml
    """
    from clv.data.regularity import regularity_line
    from clv.pipeline import prepare_data

    with _errors(verbose):
        cfg = _load(config, set_)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("ignore", ClvWarning)  # the report's warnings are printed below, once
            step = prepare_data(cfg, check_period=False)
        _warn(step.notes)
        info: dict[str, Any] = {"source": cfg.data.source, "kind": "RFM table"}
        if step.profile is not None and step.report is not None:
            info = step.profile.to_dict() | {
                "validation_problems": step.report.problems_by_reason,
                "invalid_share": step.report.invalid_share,
                "duplicates": step.report.duplicates.to_dict(),
                "returns": step.report.returns,
                "reading": step.report.summary_lines(),
                "warnings": [*step.report.warnings, *step.notes],
            }
            _warn(step.report.warnings)
        if step.customers is not None:
            info["customer_table"] = step.customers.to_dict()
        counted: list[str] = [c for c in ("frequency", "frequency_holdout") if c in step.rfm.columns]
        sums = step.rfm.sums(counted)
        info |= {"rfm_customers": step.rfm.customers, "repeat_purchases_calibration": int(sums["frequency"])}
        if "frequency_holdout" in sums:
            info["repeat_purchases_holdout"] = int(sums["frequency_holdout"])
        if quiet:
            return
        if json_out:
            typer.echo(json.dumps(info, indent=2, default=str))
            return
        table = Table(title=f"{cfg.name}: {info['source']}", show_header=False)
        for key, value in info.items():
            if key == "regularity" and step.profile is not None:
                for estimate in step.profile.regularity:
                    table.add_row(f"regularity ({estimate.method})", regularity_line(estimate))
                continue
            table.add_row(key.replace("_", " "), _fmt(value))
        Console().print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


class _Steps:
    """The rich progress display of a run's steps: a spinner on the current step, a tick and its time when done,
    a cross when it failed or was interrupted."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.status: Any = None
        self.current: str | None = None
        self.started = 0.0

    def __call__(self, step: str) -> None:
        if self.quiet:
            return
        self._finish()
        self.current, self.started = step, time.perf_counter()
        if self.status is None:
            self.status = err.status(step, spinner="dots")
            self.status.start()
        else:
            self.status.update(step)

    def _finish(self, outcome: str | None = None) -> None:
        """Print the current step's line: a tick, or with `outcome` ("failed", "interrupted") a cross."""
        if self.current is not None:
            mark, after = ("[green]✓[/]", "") if outcome is None else ("[red]✗[/]", f" {outcome}")
            elapsed = time.perf_counter() - self.started
            err.print(f"{mark} {escape(self.current)}{after} [dim]({elapsed:.1f} s)[/]", highlight=False)
            self.current = None

    def close(self, outcome: str | None = None) -> None:
        self._finish(outcome)
        if self.status is not None:
            self.status.stop()
            self.status = None


@contextmanager
def _steps(quiet: bool) -> Iterator[_Steps]:
    """The steps of a command; the step running when an error or Ctrl-C stops the command is marked so."""
    steps = _Steps(quiet)
    try:
        yield steps
    except (KeyboardInterrupt, SystemExit):
        steps.close("interrupted")
        raise
    except BaseException:
        # a Ctrl-C that a library turned into its own error (see _errors) stopped the step: interrupted
        steps.close("interrupted" if _INTERRUPT_SEEN.is_set() else "failed")
        raise
    steps.close()


def _warn(messages: list[str]) -> None:
    for message in messages:
        err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _run(cfg: RunConfig, quiet: bool, strict: bool) -> None:
    from clv.pipeline import check_outputs, run, staged_fitted
    from clv.report import write_outputs

    check_outputs(cfg)
    with _steps(quiet) as steps:
        result = run(cfg, progress=steps, strict=strict, progress_bar=not quiet and cfg.bayes.progress)
        steps("write the reports and save the model")
        with staged_fitted(result.config, result.fitted, result.data.rfm, result.saved_tiers()) as model_dir:
            out = write_outputs(result, model_dir)  # the model becomes `latest` only once the reports are written
    if not quiet:
        _print_reading(result.data.report)
    _print_late(result)
    _warn(result.warnings)
    if result.spend_outliers is not None and result.spend_outliers.customers:
        err.print(
            f"spend outliers: {result.spend_outliers.sentence(result.config.data.currency)}",
            highlight=False,
            soft_wrap=True,
        )
    if not quiet:
        _print_headline(result)
    typer.echo(f"model saved to {model_dir}/")
    typer.echo(f"outputs written to {out}/ (open {out / 'report.html'})")


def _print_reading(report: Any) -> None:
    """What reading kept and left out, on stderr: lines, invoices, transactions, cancellations, guest lines."""
    if report is not None:
        for line in report.summary_lines():
            err.print(line, highlight=False, soft_wrap=True)


def _print_late(result: Any) -> None:
    """The customers who first bought after the calibration end: not in the forecast, said on stderr."""
    late = result.data.rfm.late_customers
    if late:
        end = result.config.time.calibration_end
        err.print(
            f"{late:,} customer(s) first seen after the calibration end ({end}) are not in the forecast (listed in "
            f"new_customers.csv): it covers the {result.digest.customers:,} customers with a history by then",
            highlight=False,
            soft_wrap=True,
        )


def _print_headline(result: Any) -> None:
    from clv.model import DROPOUT
    from clv.tiers import AT_RISK, churn_column, churn_window

    console = Console()
    spend = f" + {result.spend.name}" if result.spend is not None else ""
    table = Table(title=f"{result.config.name}: {result.purchase.name}{spend} ({result.fitted.method})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    choice = getattr(result, "model_choice", None)
    if choice is not None:
        table.add_row("purchase model chosen (auto)", choice.reason)
    for model in (result.purchase, result.spend):
        if model is None:
            continue
        for key, value in model.params_.items():
            table.add_row(f"{model.name} {key}", f"{value:.4f}")
        for process, coefficients in model.coefficients_.items():
            for name, value in coefficients.items():
                table.add_row(f"{model.name} {process} coefficient {name}", f"{value:+.4f}")
    if result.purchase.log_likelihood_ is not None:
        table.add_row("log-likelihood", f"{result.purchase.log_likelihood_:.2f}")
    for posterior in (result.fitted.purchase_posterior, result.fitted.spend_posterior):
        if posterior is not None:
            table.add_row(f"{posterior.model_name} diagnostics", _diagnostics_line(posterior.diagnostics))
    digest = result.digest
    table.add_row("customers", f"{digest.customers:,}")
    flat = DROPOUT in result.purchase.not_identified_
    table.add_row("mean P(alive)", f"{digest.mean_p_alive:.3f}" + (" (not meaningful)" if flat else ""))
    table.add_row(f"expected purchases, next {result.config.horizon_label()}", f"{digest.expected_purchases:,.1f}")
    currency = result.config.data.currency or "currency of the data"
    clv_label = "total CLV (discounted purchases)"
    if result.spend is not None:
        clv_label = f"total CLV ({currency}, discounted)"
    table.add_row(clv_label, f"{digest.total_clv:,.2f}")
    band = result.forecast_band
    if band is not None:
        for kind, total in band.kinds.items():
            n = len(total.total_scores)
            state = f"held in {sum(total.loo_held)} of {n} past origins" if total.loo_held else "uncalibrated"
            if total.calibrated and not total.loo_held:
                state = f"calibrated on {n} origins, too few to test"
            unit = f" ({currency})" if kind == "revenue" else ""
            table.add_row(
                f"{kind}{unit}, {band.level:.0%} band, next {result.config.horizon_label()}",
                f"{total.total_lo:,.0f} - {total.total_hi:,.0f} ({state})",
            )
    for row in result.tiers.itertuples():
        table.add_row(f"tier {row.tier}", f"{row.customers:,} customers, {row.share_of_clv:.0%} of CLV")
    window = churn_window(result.config.tiers, result.config.time.unit)
    risk = churn_column(window, result.config.time.unit)
    buys = f"P(buys in the next {window:g} {result.config.time.unit})"
    if flat:
        table.add_row(AT_RISK, "not meaningful: dropout not identified")
    elif digest.churn == risk and digest.mean_churn is not None:
        table.add_row(f"mean {buys}", f"{digest.mean_churn:.1%}")
        threshold = f"{result.config.tiers.at_risk_p_purchase:.0%}"
        table.add_row(f"{AT_RISK} (P < {threshold})", f"{digest.at_risk_customers:,} customers")
    else:
        table.add_row(AT_RISK, f"{digest.at_risk_customers:,} customers")
    if result.holdout:
        h = result.holdout
        table.add_row(
            "holdout: predicted / actual",
            f"{h['predicted_repeat_purchases']:,.1f} / {h['actual_repeat_purchases']:,.0f}",
        )
        if "customer_interval_coverage" in h:
            table.add_row(
                f"holdout: customers inside {h['interval']:.0%} interval", f"{h['customer_interval_coverage']:.1%}"
            )
    console.print(table)


def _diagnostics_line(d: Any) -> str:
    if d.inference == "nuts":
        text = f"R-hat {d.r_hat_max:.3f}, ESS {min(d.ess_bulk_min, d.ess_tail_min):.0f}, {d.divergences} divergent"
        if d.sampling_seconds is not None:
            text += f"; {d.sampler}: compile {d.compile_seconds:.1f} s, sampling {d.sampling_seconds:.1f} s"
        if d.sampler_note:
            text += f" ({d.sampler_note})"
    elif d.inference == "gibbs":
        text = f"Gibbs, R-hat {d.r_hat_max:.3f}, ESS {min(d.ess_bulk_min, d.ess_tail_min):.0f}, {d.seconds:.1f} s"
    elif d.inference in ("laplace", "pathfinder"):
        k = (d.laplace or d.pathfinder or {}).get("pareto_k")
        text = f"{d.inference}, Pareto k {k:.2f}" if k is not None else d.inference
    else:
        text = f"ADVI, {d.advi['iterations']} iterations" if d.advi else "ADVI"
    choice = f"; {d.choice}" if getattr(d, "choice", None) and d.choice.startswith("auto") else ""
    return text + ("" if d.passed else " (FAILED)") + choice


StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Bayesian fits: failing diagnostics (R-hat, ESS, divergences) are an error.")
]


@app.command("run")
def run_command(
    config: ConfigArg,
    set_: SetOpt = None,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The main job: read, validate, summarise, fit, predict, value, tier, report, save the model.

    Writes reports/<name>/ (customers.csv and .parquet, tiers.csv, at_risk.csv, forecast.csv,
    revenue_schedule.csv, summary.json, report.html; migration.csv when an earlier run saved tiers) and
    models/<name>/<run_id>/; new_customers.csv lists the customers first seen after the calibration end (with
    engine=spark the customer table is customers/, Parquet partitioned by tier, and the schedule Parquet). Times
    are in time.unit (D or W, default W); prediction.horizon is a duration from the calibration end (default
    12M: calendar months; 52W, 365D; a bare number is in time.unit); forecast.csv is per calendar month; amounts
    in the data's currency; model.method mle (default) or bayes.

    Example: clv run configs/cdnow.yaml --set model.method=bayes
    """
    with _errors(verbose):
        _run(_load(config, set_), quiet, strict)


@app.command("train")
def train_command(
    config: ConfigArg,
    set_: SetOpt = None,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Fit the configured models and save them to models/<name>/<run_id>/ (models/<name>/latest names the
    newest); no predictions, no reports. Times in time.unit (default W).

    Example: clv train configs/cdnow.yaml --set model.purchase=pareto_nbd
    """
    from clv.pipeline import check_outputs, choose_purchase, customer_tiers, save_trained, train

    with _errors(verbose):
        cfg = _load(config, set_)
        check_outputs(cfg, reports=False)
        with _steps(quiet) as steps:
            cfg, choice = choose_purchase(cfg, steps, strict)
            data, fitted, messages, _ = train(cfg, steps, strict, progress_bar=not quiet and cfg.bayes.progress)
            steps("tier the customers (saved for the next run's migration table)")
            tiers = customer_tiers(cfg, fitted, data.rfm)
            steps("save the model")
            path = save_trained(cfg, fitted, data.rfm, tiers)
        _warn([*data.notes, *messages])
        if choice is not None:
            typer.echo(f"purchase model chosen (auto): {choice.reason}")
        typer.echo(f"model saved to {path}/")


ModelOpt = Annotated[
    Path,
    typer.Option(
        "--model",
        "-m",
        help="A saved run (models/<name>/<run_id>) or models/<name> (its latest run).",
        show_default=False,
    ),
]


@app.command("score")
def score_command(
    config: ConfigArg, model: ModelOpt, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False
) -> None:
    """Score the config's data with a saved model, without refitting: predictions, value, tiers and the
    reports in reports/<name>/. The model is checked on load (hashes, schema) and must use the config's time.unit.

    Example: clv score configs/cdnow.yaml --model models/cdnow
    """
    from clv.pipeline import check_compatible, check_outputs, load_fitted, prepare_data, previous_tiers_file, score
    from clv.report import write_outputs

    with _errors(verbose):
        cfg = _load(config, set_)
        check_outputs(cfg, models=False)
        with _steps(quiet) as steps:
            steps("load and check the saved model")
            fitted = load_fitted(model)
            steps("read, validate and summarise")
            data = prepare_data(cfg)
            steps("check the model against the config and data")
            check_compatible(cfg, fitted, data.rfm)
            result = score(cfg, fitted, data, previous_tiers_file(cfg, fitted), progress=steps)
            steps("write the reports")
            out = write_outputs(result)
        _print_late(result)
        _warn(result.warnings)
        if not quiet:
            _print_headline(result)
        typer.echo(f"scored with {fitted.path}/")
        typer.echo(f"outputs written to {out}/ (open {out / 'report.html'})")


@app.command("report")
def report_command(
    config: ConfigArg, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False
) -> None:
    """Rebuild reports/<name>/report.html from the saved outputs of the last run or score (summary.json, the
    customer table, forecast and tiers; their units as written: times in time.unit, amounts in the data's
    currency); nothing is read or refitted.

    Example: clv report configs/cdnow.yaml
    """
    from clv.report import rebuild_report

    with _errors(verbose):
        with _steps(quiet) as steps:
            steps("rebuild the report")
            path = rebuild_report(_load(config, set_))
        typer.echo(f"report written to {path}")


def _list_option(key: str, text: str | None) -> list[str]:
    """A comma-separated option as a --set override of a list key."""
    if text is None:
        return []
    items = [item.strip() for item in text.split(",") if item.strip()]
    return [f"{key}=[{', '.join(items)}]"]


@app.command("evaluate")
def evaluate_command(
    config: ConfigArg,
    models: Annotated[
        str | None,
        typer.Option(
            help="Purchase models to compare, comma-separated (default: bgnbd,pareto_nbd,mbgnbd; add mbgcnbd,bgcnbd "
            "for purchase regularity, pareto_ggg for regularity per customer, fitted by bayes).",
            show_default=False,
        ),
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Fit methods, comma-separated: mle, bayes (default: mle).", show_default=False)
    ] = None,
    rank_by: Annotated[
        str | None,
        typer.Option(
            "--rank-by",
            help="Leaderboard criterion (default: mae_purchases; see configs/example.yaml).",
            show_default=False,
        ),
    ] = None,
    origins: Annotated[
        str | None,
        typer.Option(help="Rolling origin: calibration end dates, comma-separated (YYYY-MM-DD).", show_default=False),
    ] = None,
    rolling: Annotated[
        int | None,
        typer.Option(
            help="Rolling origin: this many calibration ends, back from time.calibration_end "
            "by evaluation.rolling_step_months (default 1) each.",
            show_default=False,
        ),
    ] = None,
    set_: SetOpt = None,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score forecasts against the holdout: fit each model on the calibration period (to time.calibration_end),
    predict the holdout (to time.holdout_end, required), and compare: totals and % error, per-customer MAE and
    RMSE of purchases (and revenue), Spearman and normalized Gini of CLV against holdout value, decile
    calibration, Brier score and AUC of P(alive), the top tier's share of holdout value, interval coverage for
    Bayesian fits, and LL / AIC / BIC of each fit. With a rolling origin, also the equal-weight and the
    backtest-weighted average of the fits' forecasts, ranked only when they beat the best single fit on the
    origins (else listed as dropped, with the reason). Prints the leaderboard and names the best; writes
    reports/<name>/evaluation/ (metrics.json, leaderboard.csv, deciles.csv, tracking.csv, predictions.parquet,
    evaluation.html; rolling.csv and rolling_stability.csv with a rolling origin).

    Example: clv evaluate configs/cdnow.yaml --models bgnbd,pareto_nbd --rolling 4
    """
    from clv.evaluate.job import evaluate
    from clv.pipeline import check_outputs
    from clv.report.evaluation import write_evaluation

    overrides = [
        *(set_ or []),
        *_list_option("evaluation.models", models),
        *_list_option("evaluation.methods", methods),
        *_list_option("evaluation.origins", origins),
        *([f"evaluation.rank_by={rank_by}"] if rank_by else []),
        *([f"evaluation.rolling={rolling}"] if rolling is not None else []),
    ]
    with _errors(verbose):
        cfg = _load(config, overrides)
        check_outputs(cfg, models=False)
        with _steps(quiet) as steps:
            result = evaluate(cfg, progress=steps, strict=strict, progress_bar=not quiet and cfg.bayes.progress)
            steps("write the evaluation")
            out = write_evaluation(result)
        _warn(result.warnings)
        if not quiet:
            _print_leaderboard(result)
        for line in _combination_lines(result):
            typer.echo(line)
        best = result.best
        value = "no value" if best["value"] is None else f"{best['value']:.4g}"
        flag = f"; flagged: {best['not_identified']}" if best.get("not_identified") else ""
        if best.get("tied_with"):
            flag += f"; within 0.5% of {best['tied_with']}: no real difference"
        typer.echo(f"best: {best['candidate']} by {best['criterion']} ({value}){flag}")
        typer.echo(f"evaluation written to {out}/ (open {out / 'evaluation.html'})")


def _combination_lines(result: Any) -> list[str]:
    """One line per forecast combination, kept or dropped and why; or why there are none."""
    from clv.evaluate.combination import COMBINATIONS

    combos = result.combinations
    lines = [f"combinations: {note}" for note in combos.notes]
    return lines + [f"combination {COMBINATIONS[name]}: {v.reason}" for name, v in combos.verdicts.items()]


#: the leaderboard's rows in the terminal: column, header, decimals
_SHOWN = tuple((m.name, m.label, m.digits) for m in METRICS if m.label is not None)
#: the rolling origin's rows in the terminal
_SHOWN_ROLLING = tuple(m.name for m in METRICS if m.rolling_title is not None)


def _cell(value: Any, digits: int) -> str:
    return "–" if value is None or value != value else f"{value:,.{digits}f}"


def _print_leaderboard(result: Any) -> None:
    """The leaderboard turned on its side (a column per fit, best first) so that it fits a terminal."""
    board = result.leaderboard
    split = result.data.rfm
    table = Table(
        title=f"{result.config.name}: holdout {split.calibration_end} to {split.holdout_end} "
        f"({split.holdout_length:.1f} {result.config.time.unit}), ranked by {result.best['criterion']}"
    )
    table.add_column("")
    for row in board.itertuples(index=False):
        table.add_column(f"{row.rank}. {row.candidate}", justify="right")
    for column, header, digits in _SHOWN:
        if column in board:
            table.add_row(header, *[_cell(v, digits) for v in board[column]])
    if "not_identified" in board and board["not_identified"].astype(bool).any():
        table.add_row("not identified", *[str(v) or "–" for v in board["not_identified"]])
    Console().print(table)
    if result.stability is not None:
        stab = Table(title=f"rolling origin, {len(result.origins)} calibration ends: mean ± sd")
        stab.add_column("")
        fits = list(dict.fromkeys(result.stability["candidate"]))
        for fit in fits:
            stab.add_column(str(fit), justify="right")
        by = result.stability.set_index(["metric", "candidate"])
        for metric in _SHOWN_ROLLING:
            if metric in by.index.get_level_values(0):
                cells = [f"{by.at[(metric, f), 'mean']:.3f} ± {by.at[(metric, f), 'sd']:.3f}" for f in fits]
                stab.add_row(metric, *cells)
        Console().print(stab)


@app.command("demo")
def demo(set_: SetOpt = None, strict: StrictOpt = False, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """`clv run` on the embedded CDNOW cohort with the settings of configs/cdnow.yaml (weeks, calibration to
    1997-09-30, holdout to 1998-06-30, BG/NBD + Gamma-Gamma by maximum likelihood, 12-month horizon, 10% a year).

    Example: clv demo --set model.method=bayes
    """
    with _errors(verbose):
        _run(_demo_config(set_), quiet, strict)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a job scheduler stopping the run) unwinds like Ctrl-C, so staging folders are cleaned up."""
    raise SystemExit(128 + signum)


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C: Python's own KeyboardInterrupt, remembered, since one that lands inside the initialisation of a
    compiled extension (SciPy, DuckDB, imported on first use) comes out as an ImportError instead."""
    _INTERRUPT_SEEN.set()
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point (through `clv.launch`, which covers the loading of this module)."""
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _interrupt)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
