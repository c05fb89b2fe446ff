"""The `clv` command line: parses arguments, shows progress, maps errors to exit codes.

Exit codes: 0 ok, 1 the run failed (bad data, a failed fit), 2 bad usage or config.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from clv.config import RunConfig, apply_overrides, config_hash, load_config, parse_config
from clv.errors import ClvError

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


@contextmanager
def _errors(verbose: bool) -> Iterator[None]:
    """Our errors become one line plus a hint on stderr and an exit code; a traceback only with --verbose."""
    try:
        yield
    except ClvError as exc:
        if verbose:
            raise
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        if exc.hint:
            err.print(f"[yellow]hint:[/] {exc.hint}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _load(config: Path, overrides: list[str] | None) -> RunConfig:
    return load_config(config, overrides or [])


def _demo_config(overrides: list[str] | None) -> RunConfig:
    text = resources.files("clv.configs").joinpath("cdnow.yaml").read_text(encoding="utf-8")
    return parse_config(apply_overrides(yaml.safe_load(text), overrides or []), origin="cdnow demo config")


@app.command("check-config")
def check_config(config: ConfigArg, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Validate a run config and print it resolved (file + --set overrides + defaults) with its hash.

    Example: clv check-config configs/cdnow.yaml --set model.purchase=pareto_nbd
    """
    with _errors(verbose):
        cfg = _load(config, set_)
        typer.echo(yaml.safe_dump(cfg.resolved(), sort_keys=False).rstrip())
        typer.echo(f"# config hash: {config_hash(cfg)}")


@data_app.command("summarize")
def data_summarize(
    config: ConfigArg,
    set_: SetOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Profile the config's transactions: customers, transactions, date range, repeat buyers, same-day
    duplicates, returns, and customers first seen after the calibration end. Nothing is fitted.

    Example: clv data summarize configs/cdnow.yaml
    """
    from clv.pipeline import prepare_data

    with _errors(verbose):
        cfg = _load(config, set_)
        step = prepare_data(cfg)
        info = step.profile.to_dict() | {
            "validation_problems": step.report.problems_by_reason,
            "returns": step.report.returns,
            "rfm_customers": len(step.rfm.frame),
            "repeat_purchases_calibration": int(step.rfm.frame["frequency"].sum()),
        }
        if "frequency_holdout" in step.rfm.frame:
            info["repeat_purchases_holdout"] = int(step.rfm.frame["frequency_holdout"].sum())
        if json_out:
            typer.echo(json.dumps(info, indent=2, default=str))
            return
        table = Table(title=f"{cfg.name}: {step.profile.source}", show_header=False)
        for key, value in info.items():
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


def _progress(quiet: bool) -> Callable[[str], None] | None:
    if quiet:
        return None
    return lambda step: err.print(f"[cyan]»[/] {step}", highlight=False)


def _run(cfg: RunConfig, quiet: bool) -> None:
    from clv.pipeline import run, write_outputs

    result = run(cfg, progress=_progress(quiet))
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    out = write_outputs(result)
    if not quiet:
        _print_headline(result)
    typer.echo(f"outputs written to {out}/")


def _print_headline(result: Any) -> None:
    console = Console()
    table = Table(title=f"{result.config.name}: {result.purchase.name} + gamma_gamma ({result.config.model.method})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in result.purchase.params_.items():
        table.add_row(f"{result.purchase.name} {key}", f"{value:.4f}")
    table.add_row("log-likelihood", f"{result.purchase.log_likelihood_:.2f}")
    if result.spend is not None:
        for key, value in result.spend.params_.items():
            table.add_row(f"gamma_gamma {key}", f"{value:.4f}")
    customers = result.value.customers
    unit = result.config.time.unit
    table.add_row("customers", f"{len(customers):,}")
    table.add_row("mean P(alive)", f"{customers['p_alive'].mean():.3f}")
    table.add_row(
        f"expected purchases, next {result.config.prediction.horizon:g} {unit}",
        f"{customers['expected_purchases'].sum():,.1f}",
    )
    table.add_row("total CLV (discounted)", f"{customers['clv'].sum():,.2f}")
    if result.holdout:
        h = result.holdout
        table.add_row(
            "holdout: predicted / actual",
            f"{h['predicted_repeat_purchases']:,.1f} / {h['actual_repeat_purchases']:,.0f}",
        )
    console.print(table)


@app.command("run")
def run_command(config: ConfigArg, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """Read, validate, summarise, fit, predict and value; write reports/<name>/ (customers.csv and .parquet,
    forecast.csv, revenue_schedule.csv, summary.json). Times are in time.unit (D or W); the horizon
    (prediction.horizon, default 52) is in that unit; amounts in the data's currency.

    Example: clv run configs/cdnow.yaml --set model.purchase=pareto_nbd
    """
    with _errors(verbose):
        _run(_load(config, set_), quiet)


@app.command("demo")
def demo(set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """`clv run` on the embedded CDNOW cohort with the settings of configs/cdnow.yaml (weeks, calibration to
    1997-09-30, holdout to 1998-06-30, BG/NBD + Gamma-Gamma by maximum likelihood, 52-week horizon, 10% a year).

    Example: clv demo --set model.purchase=mbgnbd
    """
    with _errors(verbose):
        _run(_demo_config(set_), quiet)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
