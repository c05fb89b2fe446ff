"""The steps chained from a config: read and validate, summarise, fit, predict, value, tier, write, save.

Each step is a function a library user can call alone; `run` chains them (`train` then `score`); the CLI only
adds progress and maps errors to exit codes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.bayes.posterior import Posterior, warn_or_raise
from clv.bayes.predict import (
    BayesValue,
    Block,
    DrawOptions,
    ValueOptions,
    posterior_predict,
    predictive_purchases,
    value_posterior,
)
from clv.compress import unique_histories
from clv.config import RunConfig, config_hash
from clv.covariates import CovariateColumn, CovariateSet
from clv.data.customers import CustomerTable, attach_covariates, check_covariate_source
from clv.data.period import check_period as period_check
from clv.data.profile import DataProfile, profile_transactions
from clv.data.rfm import RfmSummary, rfm_summary
from clv.data.rfm_table import is_rfm_table, load_rfm_table
from clv.data.tracking import RepeatTracking, repeat_tracking
from clv.data.transactions import Transactions, ValidationReport, load_transactions
from clv.digest import CustomerDigest, digest_customers
from clv.errors import (
    ClvWarning,
    ConfigError,
    ConvergenceWarning,
    DataError,
    ModelFileError,
    ScoringWarning,
    UsageError,
    first_ids,
    plain_number,
)
from clv.evaluate.choice import AUTO, ModelChoice
from clv.mle import single_threaded_blas
from clv.model import DROPOUT
from clv.purchase import PURCHASE_MODELS, ParetoGGGModel, PurchaseModel
from clv.seeds import stream_seed
from clv.spend.gamma_gamma import GammaGammaModel
from clv.spend.outliers import (
    SpendOutliers,
    find_spend_outliers,
    spend_fit_frame,
    spend_fit_rows,
    spend_value_frame,
)
from clv.store import ExtraTable, FittedModels, data_fingerprint, load_models, resolve_model_dir, staged_models
from clv.tiers import (
    assign_tiers,
    churn_column,
    churn_window,
    migration_table,
    rfm_scores,
    segments,
    tier_probabilities,
    tier_table,
)
from clv.units import days_per_unit
from clv.value import ValueResult, value_customers
from clv.versions import package_versions

__all__ = [
    "HISTORY_MODELS",
    "DataStep",
    "FitRows",
    "LogSplits",
    "RunResult",
    "check_compatible",
    "check_covariates",
    "check_outputs",
    "check_unique_ids",
    "choose_purchase",
    "customer_rows",
    "customer_tiers",
    "fit_models",
    "fit_rows",
    "fit_together",
    "has_spend",
    "log_splits",
    "prepare_data",
    "previous_tiers",
    "previous_tiers_file",
    "purchase_model",
    "purchase_probability",
    "released_on_error",
    "run",
    "save_fitted",
    "save_trained",
    "score",
    "spend_model",
    "spend_outliers",
    "staged_fitted",
    "summarise",
    "train",
    "value_models",
    "with_covariates",
]

Progress = Callable[[str], None]

if TYPE_CHECKING:
    from clv.evaluate.band import ForecastBand
    from clv.spark.score import SparkValue


@dataclass
class DataStep:
    """What the data steps produce: the validation report and a profile (for transaction logs), the RFM
    summary (with the covariate columns of a covariates section), notes for the run's warnings (on the period,
    `clv.data.period`, and on the customer table), and what the join of the customer table did."""

    report: ValidationReport | None
    profile: DataProfile | None
    rfm: RfmSummary
    notes: list[str] = field(default_factory=list)
    customers: CustomerTable | None = None


@dataclass(frozen=True)
class RunResult:
    """Everything one scoring produced, finished: `score` builds it whole, and the writers only read it (they
    return the paths they wrote). A point fit scored on Spark keeps its customer table there: `customers` is
    None and `value` (a `clv.spark.score.SparkValue`) holds the table, the schedule and each customer's tier."""

    config: RunConfig
    data: DataStep
    fitted: FittedModels
    value: ValueResult | BayesValue | SparkValue
    holdout: dict[str, Any] | None
    customers: pd.DataFrame | None
    digest: CustomerDigest
    tiers: pd.DataFrame
    migration: pd.DataFrame | None
    spend_outliers: SpendOutliers | None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    model_choice: ModelChoice | None = None
    forecast_band: ForecastBand | None = None

    @property
    def purchase(self) -> PurchaseModel:
        return self.fitted.purchase

    @property
    def customer_tiers(self) -> pd.DataFrame:
        """Each customer's tier (customer_id, tier; of a run scored on Spark, brought to the driver)."""
        if self.customers is None:
            from clv.spark.rows import collected
            from clv.spark.score import SparkValue

            assert isinstance(self.value, SparkValue)
            limit, n = self.config.spark.max_collected_rows, self.data.rfm.customers
            return collected(self.value.tiers, limit, "customers' tiers", n)
        return self.customers[["customer_id", "tier"]]

    def saved_tiers(self) -> ExtraTable:
        """What the model store saves as customer_tiers.parquet (for the next run's migration table): the
        customers' tiers, or for a run scored on Spark the writer of the file from Spark (never collected)."""
        if self.customers is None:
            from clv.spark.score import SparkValue, tiers_file_writer

            assert isinstance(self.value, SparkValue)
            return tiers_file_writer(self.value.tiers)
        return self.customers[["customer_id", "tier"]]

    @property
    def spend(self) -> GammaGammaModel | None:
        return self.fitted.spend

    def release(self) -> None:
        """Free what the run keeps on Spark, once its outputs are written and its models saved: the scored
        table and the customers' RFM rows (nothing for a local run). Reading them later recomputes them."""
        if self.customers is None:
            from clv.spark.score import SparkValue

            assert isinstance(self.value, SparkValue)
            self.value.release()
        if self.data.rfm.remote is not None:
            self.data.rfm.remote.release()


@contextmanager
def _timed(timings: dict[str, float], step: str, progress: Progress | None) -> Iterator[None]:
    if progress is not None:
        progress(step)
    start = time.perf_counter()
    yield
    timings[step] = round(time.perf_counter() - start, 4)


def prepare_data(config: RunConfig, check_period: bool = True) -> DataStep:
    """Read and validate the transactions, profile them, and summarise them to RFM (on Spark with `engine:
    spark`, `clv.spark`); or read an RFM table.
    `check_period=False` turns the refusal of a period that does not fit the data into a note (`summarise`).
    With a covariates section, the customer table's columns are joined to the summary (`with_covariates`)."""
    check_covariate_source(config)
    if is_rfm_table(config.data.source):
        step = DataStep(report=None, profile=None, rfm=load_rfm_table(config))
    elif config.engine == "spark":
        from clv.spark import spark_data  # PySpark is imported only on that engine

        step = spark_data(config, check_period)
    else:
        with duckdb.connect() as con:
            step = summarise(config, load_transactions(config.data.source, config.data, con), check_period)
    with released_on_error(step.rfm):
        check_unique_ids(step.rfm, config.data.source)
        return with_covariates(config, step)


@contextmanager
def released_on_error(rfm: RfmSummary) -> Iterator[None]:
    """Free the summary's rows kept on Spark (`RemoteRows.release`) when the block fails: nothing is left
    cached for a run that did not finish."""
    try:
        yield
    except BaseException:
        if rfm.remote is not None:
            rfm.remote.release()
        raise


def with_covariates(config: RunConfig, step: DataStep) -> DataStep:
    """The data step with the covariate columns of the config's customer table joined to its RFM summary (its
    rows and order kept; `clv.data.customers`); unchanged without a covariates section."""
    rfm, customers, notes = attach_covariates(config, step.rfm)
    if customers is None:
        return step
    if step.rfm.remote is not None and rfm.remote is None:  # the rows were collected for the join: free Spark's
        step.rfm.remote.release()
    return dataclasses.replace(step, rfm=rfm, customers=customers, notes=[*step.notes, *notes])


def summarise(config: RunConfig, tx: Transactions, check_period: bool = True) -> DataStep:
    """Check that the config's period fits the data (`clv.data.period.check_period`: refused unless
    time.allow_gap, or `check_period=False`), then profile validated transactions and summarise them to RFM
    with the config's split and unit."""
    period = period_check(tx, config.time)
    if period.problem is not None and check_period:
        raise period.problem
    notes = period.notes if period.problem is None else [period.problem.message, *period.notes]
    last = config.time.holdout_end or config.time.calibration_end
    profile = profile_transactions(tx, config.time.calibration_end, last)
    rfm = rfm_summary(tx, config.time.calibration_end, config.time.holdout_end, config.time.unit)
    return DataStep(report=tx.report, profile=profile, rfm=rfm, notes=notes)


Split = tuple[dt.date, dt.date]


@dataclass(frozen=True)
class LogSplits:
    """One reading of a transaction log for the jobs that summarise it at several splits (`clv evaluate`'s
    rolling origins, the forecast band's backtests): the main data step (when asked for), the weekly repeat
    tracking of the main split (when asked for), and `summary(calibration_end, holdout_end)`, the RFM summary
    at a split (raising DataError as `rfm_summary` does when no customer is in it)."""

    data: DataStep | None
    tracking: RepeatTracking | None
    summary: Callable[[dt.date, dt.date], RfmSummary]


@contextmanager
def log_splits(config: RunConfig, splits: list[Split], main: bool, tracking: bool) -> Iterator[LogSplits]:
    """Read and validate the config's transaction log once and summarise it at `splits` (and, with `main`, at
    the config's own split, with covariates, as `prepare_data`; with `tracking`, the main split's weekly repeat
    purchases). Locally the summaries are made when asked for (any split); on Spark (`engine: spark`) all of
    `splits` are made in one pass over the log, and only those may be asked for."""
    time_ = config.time
    track_end = time_.holdout_end or time_.calibration_end
    if config.engine == "spark":
        from clv.spark import spark_log_splits  # PySpark is imported only on that engine

        data, track, summaries = spark_log_splits(config, splits, main, tracking)
        if data is not None:
            check_unique_ids(data.rfm, config.data.source)
            data = with_covariates(config, data)

        def lookup(calibration_end: dt.date, holdout_end: dt.date) -> RfmSummary:
            found = summaries[(calibration_end, holdout_end)]
            if isinstance(found, DataError):
                raise found
            return found

        yield LogSplits(data, track, lookup)
        return
    with duckdb.connect() as con:
        tx = load_transactions(config.data.source, config.data, con)
        data = with_covariates(config, summarise(config, tx)) if main else None
        track = repeat_tracking(tx, time_.calibration_end, track_end) if tracking else None
        yield LogSplits(
            data, track, lambda calibration_end, holdout_end: rfm_summary(tx, calibration_end, holdout_end, time_.unit)
        )


def has_spend(config: RunConfig, rfm: pd.DataFrame | list[str]) -> bool:
    """Whether the run has amounts (an RFM frame's, or its columns'), so a spend model is fitted."""
    return config.data.has_values and "monetary_value" in rfm


def spend_outliers(config: RunConfig, rfm: pd.DataFrame | RfmSummary) -> SpendOutliers | None:
    """The spend outliers of the data under the config's policy, or None for data without amounts; of rows
    kept on Spark from their distinct spends (`clv.spark.rows`), without collecting the customers."""
    policy, multiple = config.model.spend_outliers, config.model.spend_outlier_multiple
    remote = rfm.remote if isinstance(rfm, RfmSummary) else None
    if remote is not None:
        if not has_spend(config, remote.columns):
            return None
        pairs, counts = remote.spend_pairs()
        return find_spend_outliers(pairs, policy, multiple, counts, remote.spend_outlier_ids)
    frame = rfm.frame if isinstance(rfm, RfmSummary) else rfm
    if not has_spend(config, frame):
        return None
    return find_spend_outliers(frame, policy, multiple)


#: the purchase models whose likelihood reads a customer's (frequency, recency, T) alone (no regularity term, no
#: customer-level latents): fitted to distinct histories with counts when the rows are kept on Spark
HISTORY_MODELS = ("bgnbd", "pareto_nbd", "mbgnbd", "bgbb")


@dataclass(frozen=True)
class FitRows:
    """The rows the fits read: the purchase model's, and the spend model's under the outlier policy (None
    without amounts), each row standing for as many customers as its weight (weights None: one each)."""

    purchase: pd.DataFrame
    spend: pd.DataFrame | None
    purchase_weights: NDArray[np.float64] | None = None
    spend_weights: NDArray[np.float64] | None = None


def fit_rows(config: RunConfig, rfm: pd.DataFrame | RfmSummary) -> FitRows:
    """What `fit_models` fits: the customers' rows, or for rows kept on Spark (`clv.spark.rows`) and models
    that read nothing else, their distinct histories and spend pairs with counts (the same likelihood, summed
    per distinct row: only these come to the driver)."""
    remote = rfm.remote if isinstance(rfm, RfmSummary) else None
    plain = config.covariates is None and not config.model.pool_by and config.model.purchase in HISTORY_MODELS
    if remote is not None and plain:
        assert isinstance(rfm, RfmSummary)
        histories, counts = remote.histories()
        outliers = spend_outliers(config, rfm)
        if outliers is None:
            return FitRows(histories, None, counts)
        pairs, pair_counts = remote.spend_pairs()
        spend, spend_counts = spend_fit_rows(pairs, outliers, pair_counts)
        return FitRows(histories, spend, counts, spend_counts)
    frame = rfm.frame if isinstance(rfm, RfmSummary) else rfm
    outliers = spend_outliers(config, frame)
    return FitRows(frame, spend_fit_frame(frame, outliers) if outliers is not None else None)


def purchase_model(config: RunConfig) -> PurchaseModel:
    """The configured purchase model, unfitted, with the purchase and dropout covariates of the config's
    covariates section (their constraint, penalties and encoding)."""
    if config.model.purchase == AUTO:
        raise ConfigError(
            "model.purchase auto is resolved before the fit: choose the model first",
            hint="clv.pipeline.choose_purchase(config) returns the config with the chosen model",
        )
    cls = PURCHASE_MODELS[config.model.purchase]
    options: dict[str, Any] = {"starts": config.model.starts, "seed": config.model.seed}
    spec = config.covariates
    if spec is not None and (spec.purchase or spec.dropout):
        options |= {
            "purchase_covariates": spec.purchase,
            "dropout_covariates": spec.dropout,
            "constrained_covariates": spec.constrained,
            "covariate_penalty": {"purchase": spec.penalty.purchase, "dropout": spec.penalty.dropout},
            "categorical": spec.categorical,
            "standardise": spec.standardise,
        }
    return cls(**options)


def spend_model(config: RunConfig) -> GammaGammaModel:
    """The configured spend model, unfitted, with the spend covariates of the config's covariates section."""
    spec = config.covariates
    if spec is None or not spec.spend:
        return GammaGammaModel(starts=config.model.starts, seed=config.model.seed)
    return GammaGammaModel(
        spend_covariates=spec.spend,
        covariate_penalty={"spend": spec.penalty.spend},
        categorical=spec.categorical,
        standardise=spec.standardise,
        starts=config.model.starts,
        seed=config.model.seed,
    )


def fit_models(
    config: RunConfig, rfm: pd.DataFrame | RfmSummary, strict: bool = False, progress_bar: bool = False
) -> FittedModels:
    """Fit the configured purchase model, and Gamma-Gamma when the data has amounts, by the configured method
    (the spend model on the rows that `model.spend_outliers` leaves it, see `clv.spend.outliers`), each with the
    covariates of the config's covariates section (columns of `rfm`, see `with_covariates`); on the rows
    `fit_rows` gives (distinct histories with counts for rows kept on Spark)."""
    seed = config.model.seed
    rows = fit_rows(config, rfm)
    purchase = purchase_model(config)
    spend = spend_model(config) if rows.spend is not None else None
    if config.model.method == "mle":
        purchase, spend = fit_together(purchase, spend, rows)
        return FittedModels(purchase, spend, "mle", None, None, {})
    from clv.bayes.fit import fit_posterior  # PyMC is imported only when a Bayesian fit is asked for
    from clv.bayes.pooling import PoolingOptions

    pooling = PoolingOptions(config.model.pool_by) if config.model.pool_by else None
    if isinstance(purchase, ParetoGGGModel):  # customer-level latents: the Gibbs sampler, not a likelihood in PyMC
        from clv.bayes.ggg_fit import fit_ggg_posterior

        purchase_posterior = fit_ggg_posterior(rows.purchase, config.bayes, stream_seed(seed, "purchase_fit"))
    else:
        purchase_posterior = fit_posterior(
            purchase,
            rows.purchase,
            config.bayes,
            stream_seed(seed, "purchase_fit"),
            progress_bar,
            weights=rows.purchase_weights,
            pooling=pooling,
        )
    posteriors = [purchase_posterior]
    if spend is not None and rows.spend is not None:
        spend_seed = stream_seed(seed, "spend_fit")
        posteriors.append(
            fit_posterior(
                spend, rows.spend, config.bayes, spend_seed, progress_bar, weights=rows.spend_weights, pooling=pooling
            )
        )
    for posterior in posteriors:
        warn_or_raise(posterior, strict)
    data = ((rows.purchase, rows.purchase_weights), (rows.spend, rows.spend_weights))
    points = [
        _point_model(model, post, frame, weights)
        for model, post, (frame, weights) in zip((purchase, spend), posteriors, data, strict=False)
    ]
    return FittedModels(
        points[0],
        points[1] if spend is not None else None,
        "bayes",
        posteriors[0],
        posteriors[1] if spend else None,
        {},
    )


def _point_model(
    model: Any, posterior: Posterior, rfm: pd.DataFrame | None, weights: NDArray[np.float64] | None = None
) -> Any:
    """The model at the posterior mean (with covariates: its coefficients too; pooled: the population's
    parameters, each group's own being in the posterior's `pooling`), with the log-likelihood there (for
    summaries and plug-in use; none for a pooled fit, whose likelihood is the groups'); `rfm`'s rows weighted
    by `weights` (None: one customer each)."""
    assert rfm is not None
    point = posterior.point_result()
    customers = len(rfm) if weights is None else round(float(np.sum(weights)))
    if isinstance(model, ParetoGGGModel):  # no likelihood of a history: the posterior means alone
        return ParetoGGGModel.from_result(dataclasses.replace(point, n_customers=customers))
    if posterior.layout is not None and posterior.layout.pooled:
        return type(model).from_result(dataclasses.replace(point, n_customers=customers))
    if posterior.held:  # k of the regularity models: the likelihood of the data as given, at the point itself
        per_row = type(model).from_result(point).loglik(rfm)
        ll = float(per_row.sum() if weights is None else np.dot(weights, per_row))
        return type(model).from_result(dataclasses.replace(point, log_likelihood=ll, n_customers=customers))
    problem = model.likelihood_problem(rfm, weights)
    mean = posterior.mean()
    k = len(model.param_names)
    # the problem's parameters: the base ones, then e^g per coefficient slot (clv.covariate_fit)
    values = [mean[n] if i < k else float(np.exp(mean[n])) for i, n in enumerate(problem.param_names)]
    ll = problem.log_likelihood(np.array(values))
    return type(model).from_result(dataclasses.replace(point, log_likelihood=ll, n_customers=problem.n_customers))


def fit_together(
    purchase: PurchaseModel, spend: GammaGammaModel | None, rows: FitRows
) -> tuple[PurchaseModel, GammaGammaModel | None]:
    """Fit the purchase model and the spend model to their rows (`FitRows`) at the same time: they are
    independent, and their array work releases the GIL, so on two cores the two fits overlap. Warnings
    raised in either reach the caller."""
    if spend is None or rows.spend is None:
        return purchase.fit(rows.purchase, rows.purchase_weights), None
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(_fit_recording, purchase, rows.purchase, rows.purchase_weights),
            pool.submit(_fit_recording, spend, rows.spend, rows.spend_weights),
        ]
        results = [job.result() for job in jobs]
    for _, caught in results:
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return purchase, spend


def _fit_recording(
    model: PurchaseModel | GammaGammaModel, rfm: pd.DataFrame, weights: NDArray[np.float64] | None
) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=ConvergenceWarning)
        model.fit(rfm, weights)
    return model, list(caught)


def _holdout(
    config: RunConfig, data: DataStep, fitted: FittedModels
) -> tuple[dict[str, Any] | None, pd.DataFrame | None]:
    """Predicted against actual purchases in the holdout: totals, error, and for a posterior the coverage of
    the predictive intervals; and per customer the prediction (with its interval for a posterior)."""
    length = data.rfm.holdout_length
    frame = data.rfm.frame
    if length is None or "frequency_holdout" not in frame:
        return None, None
    actual = frame["frequency_holdout"].to_numpy(dtype=float)
    interval = None
    if fitted.purchase_posterior is not None:
        intervals, total = predictive_purchases(
            type(fitted.purchase),
            fitted.purchase_posterior,
            frame,
            length,
            holdout_draws(config),
            workers=config.bayes.cores,
        )
        predicted = intervals["expected"].to_numpy()
        inside = (actual >= intervals["lo"].to_numpy()) & (actual <= intervals["hi"].to_numpy())
        interval = HoldoutInterval(float(inside.mean()), total)
    else:
        intervals = None
        predicted = fitted.purchase.expected_purchases(frame, length)
    mae = float(np.mean(np.abs(predicted - actual)))
    out = holdout_figures(config, length, float(predicted.sum()), float(actual.sum()), mae, interval)
    return out, holdout_rows(frame["customer_id"].to_numpy(), predicted, intervals)


def holdout_rows(
    ids: NDArray[np.generic], predicted: NDArray[np.float64], intervals: pd.DataFrame | None
) -> pd.DataFrame:
    """The customer table's holdout columns: the expected purchases in the holdout and, for a posterior, the
    predictive interval of the purchases made (`clv.bayes.predict.predictive_parts`' lo and hi)."""
    rows = pd.DataFrame({"customer_id": ids, "expected_purchases_holdout": predicted})
    if intervals is not None:
        rows["purchases_holdout_lo"] = intervals["lo"].to_numpy()
        rows["purchases_holdout_hi"] = intervals["hi"].to_numpy()
    return rows


def holdout_draws(config: RunConfig) -> DrawOptions:
    """The draws of a posterior's holdout check (the `holdout_purchases` stream)."""
    bayes = config.bayes
    return DrawOptions(bayes.interval, bayes.prediction_draws, stream_seed(config.model.seed, "holdout_purchases"))


@dataclass(frozen=True)
class HoldoutInterval:
    """A posterior's holdout check beyond the point figures: the share of customers whose purchases fall in
    their predictive interval, and the predictive distribution of the total (`clv.bayes.predict.predictive_total`)."""

    coverage: float
    total: dict[str, float]


def holdout_figures(
    config: RunConfig,
    length: float,
    predicted: float,
    actual: float,
    mae: float,
    interval: HoldoutInterval | None = None,
) -> dict[str, Any]:
    """The holdout's figures (summary.json's `holdout`): predicted and actual repeat purchases in total, the
    percent error and the mean absolute error per customer; for a posterior, the intervals' coverage and
    whether the actual total is inside the predictive total's interval."""
    out: dict[str, Any] = {"holdout_length": length, "unit": config.time.unit}
    if interval is not None:
        out["interval"] = config.bayes.interval
        out["customer_interval_coverage"] = interval.coverage
        out["total_predictive"] = interval.total
        out["actual_total_inside_interval"] = bool(interval.total["lo"] <= actual <= interval.total["hi"])
    return out | {
        "predicted_repeat_purchases": predicted,
        "actual_repeat_purchases": actual,
        "percent_error": 100.0 * (predicted - actual) / actual if actual else None,
        "mae_per_customer": mae,
    }


def value_models(
    config: RunConfig,
    fitted: FittedModels,
    rfm: pd.DataFrame,
    residual: bool = True,
    calibration_end: dt.date | None = None,
    outliers: SpendOutliers | None = None,
    blocks: Sequence[Block] | None = None,
) -> ValueResult | BayesValue:
    """Predict and value the customers of `rfm` with fitted models (posterior means and intervals for a
    posterior), over the config's horizon from `calibration_end` (default time.calibration_end; a rolling
    origin's own), in calendar months, with the config's discount rate and margin; `residual=False` skips the
    maximum likelihood fits' residual CLV (not needed to score a holdout). Under `model.spend_outliers: cap` the
    outliers' mean spend is capped for the spend predictions; `outliers` gives the outliers of the whole data
    when `rfm` is a part of it (found in `rfm` when not given); for a posterior, `blocks` are the part's
    blocks of histories (`clv.bayes.predict.part_blocks`)."""
    p = config.prediction
    end = config.time.calibration_end if calibration_end is None else calibration_end
    horizon = config.horizon_units(end)
    if outliers is None and fitted.spend is not None:
        outliers = spend_outliers(config, rfm)
    if outliers is not None:
        rfm = spend_value_frame(rfm, outliers)
    if fitted.purchase_posterior is not None:
        return value_posterior(
            type(fitted.purchase),
            fitted.purchase_posterior,
            fitted.spend_posterior,
            rfm,
            ValueOptions(
                horizon,
                p.annual_discount_rate,
                p.margin,
                config.time.unit,
                value_draws(config),
                workers=config.bayes.cores,
                calibration_end=end,
            ),
            blocks,
        )
    return value_customers(
        fitted.purchase,
        fitted.spend,
        rfm,
        horizon,
        p.annual_discount_rate,
        p.margin,
        config.time.unit,
        residual,
        calibration_end=end,
    )


def value_draws(config: RunConfig) -> DrawOptions:
    """The draws of a posterior's predictions and value over the horizon (the `value` stream)."""
    bayes = config.bayes
    return DrawOptions(bayes.interval, bayes.prediction_draws, stream_seed(config.model.seed, "value"))


def train(
    config: RunConfig, progress: Progress | None = None, strict: bool = False, progress_bar: bool = False
) -> tuple[DataStep, FittedModels, list[str], dict[str, float]]:
    """Data and fit: what `clv train` does before saving. Fit warnings are collected, not printed."""
    timings: dict[str, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=ClvWarning)
        with _timed(timings, "read, validate and summarise", progress):
            data = prepare_data(config)
        with _timed(timings, f"fit ({config.model.method})", progress), released_on_error(data.rfm):
            fitted = fit_models(config, data.rfm, strict, progress_bar)
    messages = [str(w.message) for w in caught if issubclass(w.category, ClvWarning)]
    return data, fitted, messages, timings


def score(
    config: RunConfig,
    fitted: FittedModels,
    data: DataStep,
    previous_tiers: pd.DataFrame | Path | None = None,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
    warnings_seen: list[str] | None = None,
    model_choice: ModelChoice | None = None,
) -> RunResult:
    """Predict, value and tier the data's customers with fitted models (fresh or loaded: no refit). With the
    tiers of an earlier run (`previous_tiers`, see `previous_tiers`), the result has the tier migration. With
    prediction.band, the forecast band is calibrated on rolling origins, where the model is fitted again
    (`clv.evaluate.band`)."""
    timings = {} if timings is None else dict(timings)
    check_unique_ids(data.rfm, config.data.source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=ClvWarning)
        _check_compatible(config, fitted, data.rfm)
    messages = [
        *data.notes,
        *(warnings_seen or []),
        *(str(w.message) for w in caught if issubclass(w.category, ClvWarning)),
    ]
    if config.engine == "spark" and _scored_on_spark(fitted, data.rfm):  # scored where the rows are
        return _score_on_spark(config, fitted, data, previous_tiers, progress, timings, messages, model_choice)
    if isinstance(previous_tiers, Path):
        previous_tiers = pd.read_parquet(previous_tiers)
    with _timed(timings, "predict and value", progress):
        value = value_models(config, fitted, data.rfm.frame)
        holdout, holdout_customers = _holdout(config, data, fitted)
    band = _band(config, fitted, data, timings, progress)
    with _timed(timings, "tiers and segments", progress):
        customers = _customer_table(config, data.rfm.frame, fitted, value, holdout_customers)
        labels = [level.label for level in config.tiers.levels]
        migration = _migration(previous_tiers, customers, labels)
        churn = churn_column(churn_window(config.tiers, config.time.unit), config.time.unit)
        digest = digest_customers(customers, churn)
    return RunResult(
        config,
        data,
        fitted,
        value,
        holdout,
        customers,
        digest,
        tier_table(customers, config.tiers, churn),
        migration,
        spend_outliers(config, data.rfm.frame) if fitted.spend is not None else None,
        messages,
        timings,
        model_choice,
        band,
    )


def _scored_on_spark(fitted: FittedModels, rfm: RfmSummary) -> bool:
    """Whether `engine: spark` scores per partition: a point fit, or a posterior `clv.spark.posterior` scores
    there (no covariates, pooled groups or customer latents, the rows kept on Spark); else on the driver."""
    if fitted.purchase_posterior is None:
        return True
    from clv.spark.posterior import posterior_on_spark

    return posterior_on_spark(fitted, rfm)


def _score_on_spark(
    config: RunConfig,
    fitted: FittedModels,
    data: DataStep,
    previous_tiers: pd.DataFrame | Path | None,
    progress: Progress | None,
    timings: dict[str, float],
    messages: list[str],
    model_choice: ModelChoice | None,
) -> RunResult:
    """`score` under `engine: spark` for a point fit or a posterior scored there (`_scored_on_spark`):
    predictions, value, tiers, segments, the forecast and the digest computed on Spark per partition
    (`clv.spark.score`, `clv.spark.posterior`); the band as locally."""
    from clv.spark import session_for
    from clv.spark.score import score_on_spark, spark_migration

    outliers = spend_outliers(config, data.rfm) if fitted.spend is not None else None
    spark = session_for(config)
    with _timed(timings, "predict, value, tiers and segments (Spark)", progress):
        value, digest, tiers, holdout = score_on_spark(spark, config, fitted, data, outliers)
        labels = [level.label for level in config.tiers.levels]
        migration = None
        if isinstance(previous_tiers, Path):  # read and joined on Spark
            migration = spark_migration(spark.read.parquet(previous_tiers.resolve().as_uri()), value.tiers, labels)
        elif previous_tiers is not None:
            migration = spark_migration(spark.createDataFrame(previous_tiers), value.tiers, labels)
    band = _band(config, fitted, data, timings, progress)
    return RunResult(
        config,
        data,
        fitted,
        value,
        holdout,
        None,
        digest,
        tiers,
        migration,
        outliers,
        messages,
        timings,
        model_choice,
        band,
    )


def _band(
    config: RunConfig, fitted: FittedModels, data: DataStep, timings: dict[str, float], progress: Progress | None
) -> ForecastBand | None:
    """With prediction.band, the forecast band calibrated on rolling origins (`clv.evaluate.band`); else None."""
    if config.prediction.band is None:
        return None
    from clv.evaluate.band import forecast_band  # it fits the rolling origins with the pipeline's steps

    with _timed(timings, "forecast band (rolling origins)", progress):
        return forecast_band(config, fitted, data)


def _check_compatible(config: RunConfig, fitted: FittedModels, rfm: RfmSummary) -> None:
    """`check_compatible`, and a warning when the saved model is another purchase model than the config names."""
    check_compatible(config, fitted, rfm)
    if fitted.metadata and config.model.purchase not in (fitted.purchase.name, AUTO):
        warnings.warn(
            f"scoring with the saved {fitted.purchase.name} model; the config names {config.model.purchase}",
            ScoringWarning,
            stacklevel=3,
        )


def check_compatible(config: RunConfig, fitted: FittedModels, rfm: RfmSummary) -> None:
    """Refuse (UsageError, exit 2) fitted models that do not fit the config and data: fitted in another time
    unit, or a spend model on one side only (the CLV would count purchases where the config asks for money, or
    need amounts the data lacks). Nothing has been written when this refuses."""
    if fitted.metadata:
        saved_unit = fitted.metadata.get("config", {}).get("time", {}).get("unit")
        if saved_unit and saved_unit != config.time.unit:
            raise UsageError(
                f"the saved model was fitted in unit {saved_unit}; this config's time.unit is {config.time.unit}",
                hint=f"score with --set time.unit={saved_unit}",
            )
    if fitted.spend is not None and not has_spend(config, rfm.columns):
        raise UsageError(
            "the saved model has a spend model, but this data has no amounts (monetary_value)",
            hint="score data with amounts (data.amount), or retrain without them",
        )
    if fitted.spend is None and has_spend(config, rfm.columns):
        raise UsageError(
            f"the saved model has no spend model (it was trained without amounts), but this config and data have "
            f"amounts and model.spend is {config.model.spend}: its CLV would count purchases, not money",
            hint="retrain with amounts (clv train with this config), or score without them: --set data.amount=null",
        )
    check_covariates(config, fitted, rfm)


def _covariate_lists(fitted: FittedModels) -> dict[str, list[str]]:
    """The covariate columns of the fitted models by process (processes without covariates left out)."""
    lists: dict[str, list[str]] = {}
    for model in (fitted.purchase, fitted.spend):
        covariates = None if model is None else model.covariates_
        if covariates is not None:
            lists |= {p: list(cols) for p, cols in covariates.processes.items() if cols}
    return lists


def _describe_lists(lists: dict[str, list[str]]) -> str:
    return "; ".join(f"{p}: {', '.join(cols)}" for p, cols in lists.items()) or "none"


def check_covariates(config: RunConfig, fitted: FittedModels, summary: RfmSummary) -> None:
    """Refuse fitted models whose covariates are not the config's (UsageError naming the processes that
    differ), and data whose covariates the models cannot read: a missing column or a level the models were not
    fitted with (DataError naming the customers), before anything is predicted."""
    wanted = {} if config.covariates is None else config.covariates.processes
    saved = _covariate_lists(fitted)
    differ = [p for p in ("purchase", "dropout", "spend") if wanted.get(p, []) != saved.get(p, [])]
    if differ:
        raise UsageError(
            f"the covariates differ from the model's in {', '.join(differ)}: the model was fitted with "
            f"{_describe_lists(saved)}; this config's covariates section names {_describe_lists(wanted)}",
            hint="score with the covariates section the model was trained with, or retrain (clv train)",
        )
    for model in (fitted.purchase, fitted.spend):
        covariates = None if model is None else model.covariates_
        if covariates is None:
            continue
        rfm = summary.frame  # the customers' own columns
        _warn_scoring_covariates(config, covariates, rfm)
        for process in covariates.processes:
            try:
                covariates.design(rfm, process)
            except DataError as exc:
                raise DataError(
                    f"the covariates do not match the model's: {exc.message}",
                    hint="a model scores only the columns and levels it was fitted with; retrain to add a level",
                ) from None


#: more than this share of the scored customers outside a numeric covariate's fitted range: said
OUTSIDE_SHARE = 0.05


def _warn_scoring_covariates(config: RunConfig, covariates: CovariateSet, rfm: pd.DataFrame) -> None:
    """Say (ScoringWarning) what the covariate names cannot show: a numeric covariate whose scored values lie
    largely outside the range the model was fitted on (other units: thousands for units?), and encoding options
    of this config that differ from the model's (the model's encoding is the one applied)."""
    spec = config.covariates
    for column in covariates.columns.values():
        if column.name in rfm:
            share = column.outside_share(rfm[column.name])
            if share > OUTSIDE_SHARE:
                values = pd.to_numeric(rfm[column.name], errors="coerce")
                warnings.warn(
                    f"covariate {column.name!r}: {share:.0%} of the customers scored lie outside the range the model "
                    f"was fitted on ({plain_number(column.low or 0.0)} to {plain_number(column.high or 0.0)}; here "
                    f"{plain_number(float(values.min()))} to {plain_number(float(values.max()))}): are the values in "
                    "the same units as when the model was trained? Its effects are extrapolated there",
                    ScoringWarning,
                    stacklevel=3,
                )
        if spec is None:
            continue
        reference = spec.categorical.get(column.name)
        differs = (
            column.kind == "numeric" and (spec.standardise != column.standardised or column.name in spec.categorical)
        ) or (column.kind == "categorical" and reference not in (None, column.reference))
        if differs:
            warnings.warn(
                f"covariate {column.name!r}: this config's encoding (covariates.standardise / categorical) differs "
                f"from the saved model's ({_encoding(column)}); the model's encoding is applied",
                ScoringWarning,
                stacklevel=3,
            )


def _encoding(column: CovariateColumn) -> str:
    if column.kind == "categorical":
        return f"categorical against {column.reference!r}"
    return "numeric, standardised" if column.standardised else "numeric, as given"


def check_unique_ids(rfm: pd.DataFrame | RfmSummary, source: str) -> None:
    """One row per customer in the RFM summary, before anything is fitted or joined (rule: identity is sacred;
    two ids that read as the same value would merge two customers' predictions): DataError otherwise. Rows
    kept on Spark are counted there."""
    remote = rfm.remote if isinstance(rfm, RfmSummary) else None
    if remote is not None:
        count, shown = remote.repeated_ids(6)
    else:
        frame = rfm.frame if isinstance(rfm, RfmSummary) else rfm
        repeated = frame["customer_id"][frame["customer_id"].duplicated(keep=False)]
        distinct = list(dict.fromkeys(repeated.tolist()))
        count, shown = len(distinct), distinct
    if count:
        raise DataError(
            f"{source}: {count:,} customer id(s) stand for more than one customer in the RFM summary "
            f"(first: {first_ids(shown)}); predictions cannot be joined back to one customer each",
            hint="check that the id column is read as written (leading zeros, spaces, case) and that each "
            "customer has a single id",
        )


def run(
    config: RunConfig, progress: Progress | None = None, strict: bool = False, progress_bar: bool = False
) -> RunResult:
    """The whole job: data, fit, predict, value, tiers, and the migration since the newest saved run of this
    name. Nothing is written (see write_outputs, save_fitted). `model.purchase: auto` is resolved first
    (`choose_purchase`): the result's config names the chosen model and its `model_choice` says why."""
    start = time.perf_counter()
    config, choice = choose_purchase(config, progress, strict)
    chosen = {"choose the purchase model": round(time.perf_counter() - start, 4)} if choice is not None else {}
    data, fitted, messages, timings = train(config, progress, strict, progress_bar)
    timings = chosen | timings
    with released_on_error(data.rfm):
        return score(config, fitted, data, previous_tiers_file(config, fitted), progress, timings, messages, choice)


def choose_purchase(
    config: RunConfig, progress: Progress | None = None, strict: bool = False
) -> tuple[RunConfig, ModelChoice | None]:
    """The config with `model.purchase: auto` resolved to the model of evaluation.models with the best mean
    rolling-origin holdout score (`clv.evaluate.choice`), and the choice; a named model: the config, None."""
    if config.model.purchase != AUTO:
        return config, None
    from clv.evaluate.choice import choose_purchase_model, resolved_config

    choice = choose_purchase_model(config, progress, strict)
    return resolved_config(config, choice), choice


def _customer_table(
    config: RunConfig,
    rfm: pd.DataFrame,
    fitted: FittedModels,
    value: ValueResult | BayesValue,
    holdout_customers: pd.DataFrame | None,
) -> pd.DataFrame:
    """The customer table: predictions, tier, segment, RFM scores (and tier probabilities for a posterior),
    highest CLV first."""
    table = customer_rows(config, rfm, fitted, value, holdout_customers)
    churn = churn_column(churn_window(config.tiers, config.time.unit), config.time.unit)
    ids = table["customer_id"].to_numpy()
    tier_index = assign_tiers(table["clv"].to_numpy(dtype=float), config.tiers, ids)
    labels = [level.label for level in config.tiers.levels]
    table["tier"] = np.asarray(labels, dtype=object)[tier_index]
    churn_identified = DROPOUT not in fitted.purchase.not_identified_
    table["segment"] = segments(tier_index, table[churn].to_numpy(dtype=float), config.tiers, churn_identified)
    table = pd.concat([table, rfm_scores(table)], axis=1)
    if isinstance(value, BayesValue):
        probabilities = tier_probabilities(value.clv_draws, value.clv_index, config.tiers)
        for k, label in enumerate(labels):
            table[f"p_tier_{_slug(label)}"] = probabilities[:, k]
    table = table.sort_values(["clv", "customer_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return table[_column_order(list(table.columns))]


def customer_rows(
    config: RunConfig,
    rfm: pd.DataFrame,
    fitted: FittedModels,
    value: ValueResult | BayesValue,
    holdout_customers: pd.DataFrame | None,
) -> pd.DataFrame:
    """The customer table's columns that are each customer's own: the RFM columns, the predictions and value,
    the holdout prediction, the purchase dates and the churn risk; not the tier, segment and RFM scores, which
    rank the customers against each other (`clv.spark.score` computes these rows per partition)."""
    table = rfm.merge(value.customers, on="customer_id", how="left", validate="one_to_one")
    if holdout_customers is not None:
        table = table.merge(holdout_customers, on="customer_id", how="left", validate="one_to_one")
    table = pd.concat([_purchase_dates(config, table), table], axis=1)
    window = churn_window(config.tiers, config.time.unit)
    churn = churn_column(window, config.time.unit)
    return pd.concat([table, purchase_probability(config, fitted, table, window).add_prefix(churn)], axis=1)


def _purchase_dates(config: RunConfig, rfm: pd.DataFrame) -> pd.DataFrame:
    """Each customer's first and last purchase dates in the calibration (ISO dates) and the days from the last
    purchase to the calibration end, from T and recency (in BTYD terms, recency is the time from the first purchase
    to the last: T - recency is the time since the last purchase). Rounded to whole days, which they are for a
    transaction log; an RFM table in weeks may carry fractions of a day."""
    per_unit = days_per_unit(config.time.unit)
    since_first = np.rint(rfm["T"].to_numpy(dtype=float) * per_unit).astype(np.int64)
    first_to_last = np.rint(rfm["recency"].to_numpy(dtype=float) * per_unit).astype(np.int64)
    end = np.datetime64(config.time.calibration_end, "D")
    first = end - since_first.astype("timedelta64[D]")
    last = first + first_to_last.astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "first_purchase": np.datetime_as_string(first, unit="D").astype(object),
            "last_purchase": np.datetime_as_string(last, unit="D").astype(object),
            "days_since_last_purchase": since_first - first_to_last,
        },
        index=rfm.index,
    )


def purchase_probability(config: RunConfig, fitted: FittedModels, rfm: pd.DataFrame, window: float) -> pd.DataFrame:
    """P(at least one purchase in (T, T + window]) per customer, the churn-risk measure (`clv.tiers`):
    1 - probability_of_purchases(rfm, 0, window), on unique histories; for a posterior, its posterior mean and
    central credible interval over the same draws as the value columns (the `value` stream) (columns "", "_lo",
    "_hi", to be prefixed with the column's name)."""
    if fitted.purchase_posterior is None:
        unique, inverse, _ = unique_histories(rfm, fitted.purchase.covariate_columns)
        p = 1.0 - fitted.purchase.probability_of_purchases(unique, 0, window)[inverse]
        return pd.DataFrame({"": p}, index=rfm.index)
    none = posterior_predict(
        type(fitted.purchase),
        fitted.purchase_posterior,
        rfm,
        "probability_of_purchases",
        value_draws(config),
        n=0,
        horizon=window,
    )
    return pd.DataFrame(
        {"": 1.0 - none["mean"].to_numpy(), "_lo": 1.0 - none["hi"].to_numpy(), "_hi": 1.0 - none["lo"].to_numpy()},
        index=rfm.index,
    )


def customer_tiers(config: RunConfig, fitted: FittedModels, summary: RfmSummary) -> ExtraTable:
    """Each customer's tier by CLV (customer_id, tier), without the rest of the scoring: what `clv train`
    saves for the next run's migration table. Rows kept on Spark, with a point fit, are tiered there
    (`clv.spark.score.spark_customer_tiers`), and this is the writer of their file (nothing collected)."""
    if summary.remote is not None and _scored_on_spark(fitted, summary):
        from clv.spark import session_for
        from clv.spark.score import spark_customer_tiers

        outliers = spend_outliers(config, summary) if fitted.spend is not None else None
        return spark_customer_tiers(session_for(config), config, fitted, summary, outliers)
    rfm = summary.frame
    value = value_models(config, fitted, rfm, residual=False)
    clv = rfm[["customer_id"]].merge(value.customers[["customer_id", "clv"]], on="customer_id", validate="one_to_one")
    tier_index = assign_tiers(clv["clv"].to_numpy(dtype=float), config.tiers, clv["customer_id"].to_numpy())
    labels = np.asarray([level.label for level in config.tiers.levels], dtype=object)
    return pd.DataFrame({"customer_id": clv["customer_id"].to_numpy(), "tier": labels[tier_index]})


_LEAD_COLUMNS = (
    "customer_id",
    "first_purchase",
    "last_purchase",
    "days_since_last_purchase",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "frequency_holdout",
    "monetary_value_holdout",
    "p_alive",
    "p_churn",
    "p_purchase_next_*",
    "expected_purchases",
    "expected_spend",
    "clv",
    "tier",
    "segment",
    "rfm_score",
)


def _column_order(columns: list[str]) -> list[str]:
    """The customer table's columns: the documented lead columns (`p_purchase_next_*`: the churn-risk column,
    named by its window), their interval columns, then the rest."""
    lead = [
        c
        for name in _LEAD_COLUMNS
        for c in (
            [c for c in columns if c.startswith(name[:-1]) and not c.endswith(("_lo", "_hi"))]
            if name.endswith("*")
            else [name]
        )
        if c in columns
    ]
    intervals = [f"{c}{s}" for c in lead for s in ("_lo", "_hi") if f"{c}{s}" in columns]
    return lead + intervals + [c for c in columns if c not in lead and c not in intervals]


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def previous_tiers_file(config: RunConfig, fitted: FittedModels) -> Path | None:
    """The customers' tiers file saved with the loaded model's run, or else with the newest saved run of this
    name; None when there is none."""
    source = fitted.path
    if source is None:
        try:
            source = resolve_model_dir(Path(config.output.models_dir) / config.name)
        except ModelFileError:
            return None
    file = source / "customer_tiers.parquet"
    return file if file.is_file() else None


def previous_tiers(config: RunConfig, fitted: FittedModels) -> pd.DataFrame | None:
    """The customers' tiers of `previous_tiers_file` (customer_id, tier); None when there are none."""
    file = previous_tiers_file(config, fitted)
    return pd.read_parquet(file) if file is not None else None


def _migration(previous: pd.DataFrame | None, customers: pd.DataFrame, labels: list[str]) -> pd.DataFrame | None:
    """Tier moves since the previous tiers, when there are some and they use the same tiers."""
    if previous is None or set(previous["tier"].unique()) - set(labels):
        return None  # no earlier tiers, or the tiers were redefined: a table would compare different things
    return migration_table(previous, customers, labels)


def save_fitted(result: RunResult) -> Path:
    """Save a scored run's models with its customers' tiers (see `save_trained`); its path."""
    return save_trained(result.config, result.fitted, result.data.rfm, result.saved_tiers())


def save_trained(config: RunConfig, fitted: FittedModels, rfm: pd.DataFrame | RfmSummary, tiers: ExtraTable) -> Path:
    """Save the fitted models to models/<name>/<run_id>/ with the customers' tiers (customer_id, tier; for the
    next run's migration table; or a writer of that file, `clv.spark.score.tiers_file_writer`), point
    models/<name>/latest at it, and return its path."""
    with staged_fitted(config, fitted, rfm, tiers) as path:
        pass
    return path


def _fingerprint(rfm: pd.DataFrame | RfmSummary) -> dict[str, Any]:
    """`clv.store.data_fingerprint` of the fitted rows (of rows kept on Spark, computed there)."""
    if isinstance(rfm, RfmSummary):
        return data_fingerprint(rfm.frame) if rfm.remote is None else rfm.remote.fingerprint()
    return data_fingerprint(rfm)


@contextmanager
def staged_fitted(
    config: RunConfig, fitted: FittedModels, rfm: pd.DataFrame | RfmSummary, tiers: ExtraTable
) -> Iterator[Path]:
    """`save_trained` around a block: the run is written to a staging folder, its final path yielded, and it is
    renamed into place and made `latest` only when the block (e.g. writing the reports) ends without an error;
    otherwise nothing is left (see clv.store.staged_models)."""
    with staged_models(
        config.output.models_dir,
        config.name,
        fitted,
        config.resolved(),
        config_hash(config),
        _fingerprint(rfm),
        package_versions(),
        extra={"customer_tiers.parquet": tiers[["customer_id", "tier"]] if isinstance(tiers, pd.DataFrame) else tiers},
    ) as path:
        yield path


def check_outputs(config: RunConfig, reports: bool = True, models: bool = True) -> None:
    """Refuse, before any reading or fitting, output folders that cannot be written (a file in the way, or no
    write permission), so that a run does not fail at its end (ConfigError naming the key)."""
    if reports:
        _check_writable(Path(config.output.reports_dir) / config.name, "output.reports_dir")
    if models:
        _check_writable(Path(config.output.models_dir) / config.name, "output.models_dir")


def _check_writable(folder: Path, key: str) -> None:
    """`folder` is, or can be made, a folder we can write in: every part of it that exists is a folder, and
    the deepest one that exists is writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{key}: {existing} is a file, not a folder, so {folder} cannot be written",
            hint=f"set {key} to a folder (it is created if missing), e.g. --set {key}=out",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}: {existing} is not writable (no permission), so {folder} cannot be written",
            hint=f"set {key} to a folder you can write in, e.g. --set {key}=out",
        )


def load_fitted(path: str | Path) -> FittedModels:
    """A saved run, checked (see clv.store.load_models)."""
    return load_models(path)
