"""Bayesian fits in PyMC: priors, NUTS (nutpie or PyMC's sampler), Laplace, Pathfinder or ADVI, and ArviZ
diagnostics.

The likelihood is the maximum-likelihood one, on the same rescaled data (time divided by max(T) / 10, spend by
its mean), written as a PyTensor graph over the unique histories with their weights (`clv.bayes.graphs`), which
the samplers compile to machine code. Priors are placed on the rescaled parameters, so measuring time in days
instead of weeks gives the same posterior with alpha (and beta, v) scaled: the default prior, LogNormal(0, 2) on
each rescaled parameter, puts 95% of its mass between 0.02 and 50 and does not depend on the units. With
`flat` priors the posterior density is the likelihood, and its mode (PyMC's `find_MAP`, which maximises in the
natural parameters) is the maximum-likelihood fit. Sampling starts from the maximum-likelihood fit.

NUTS runs on nutpie (`bayes.sampler: auto`, the default, or `nutpie`), which compiles the model with Numba:
a model is compiled once per structure (model, priors, which parameters are rescaled) in a process and reused
for every data set, its data being variables of the graph (`nutpie`'s `with_data`). When nutpie is not installed
or cannot compile the model, `auto` samples with PyMC's NUTS instead and says so (`Diagnostics.sampler_note`).
"""

from __future__ import annotations

import inspect
import math
import signal
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import ArrayLike, NDArray

from clv.bayes import nutpie_cache
from clv.bayes.budget import InferenceChoice, choose_inference
from clv.bayes.graphs import graph_data, row_parameters, total_log_likelihood
from clv.bayes.pooling import PooledGroups, PoolingOptions, pooled_problem, pooling_summary, separate_fits
from clv.bayes.posterior import DEFAULT_PRIOR, CustomerLayout, Diagnostics, Posterior
from clv.config import BayesConfig, PriorConfig
from clv.covariates import Effect
from clv.errors import ClvError, ConfigError, FitError
from clv.mle import damped_step, maximize_likelihood
from clv.model import FittedModel, HeldParameters, LikelihoodProblem

__all__ = ["BayesProblem", "build_model", "fit_posterior", "nutpie_available"]

FloatArray = NDArray[np.float64]
#: Pareto-smoothed importance sampling's threshold: k above it, the approximation is unreliable (Vehtari et al.)
_PARETO_K_MAX = 0.7
#: Laplace's check draws: importance weights this close to equal (effective sample size over draws, Kong 1992)
#: say the normal is the posterior on those draws, whatever the Pareto k: k of nearly equal weights describes the
#: shape of deviations of a few percent (seen on Gamma-Gamma with 200k customers: k 0.81 with log weights of
#: standard deviation 0.02), not a tail that the normal misses
_LAPLACE_ESS_SHARE = 0.99
#: a pooled fit's start: the groups' spread tau (each parameter's groups within a few percent of each other)
_TAU_START = 0.1


@dataclass(frozen=True)
class BayesProblem(LikelihoodProblem):
    """A likelihood problem with what else shapes its PyMC model: with covariates, the models' effects
    (`FittedModel.covariate_effects`) and the prior sd of the coefficients, Normal(0, sd) on each g; for a
    pooled fit, its groups (`clv.bayes.pooling`). A plain `LikelihoodProblem` is a model without either."""

    coefficient_sd: float = 1.0
    effects: dict[str, tuple[Effect, ...]] = field(default_factory=dict)
    groups: PooledGroups | None = None

    @classmethod
    def of(cls, problem: LikelihoodProblem, **shape: Any) -> BayesProblem:
        return cls(**{f.name: getattr(problem, f.name) for f in fields(LikelihoodProblem)}, **shape)


def _groups(problem: LikelihoodProblem) -> PooledGroups | None:
    return problem.groups if isinstance(problem, BayesProblem) else None


def _base_count(problem: LikelihoodProblem) -> int:
    """How many of the problem's parameters are the model's own (the rest are coefficient slots)."""
    return len(problem.param_names) - (problem.layout.size if problem.layout is not None else 0)


def _coefficient_prior(problem: LikelihoodProblem) -> PriorConfig:
    """Normal(0, sd) on a coefficient g, which is LogNormal(0, sd) on the e^g of the search (`clv.covariate_fit`):
    the Laplace approximation, which works on log(e^g) = g, takes it in that form."""
    sd = problem.coefficient_sd if isinstance(problem, BayesProblem) else 1.0
    return PriorConfig(distribution="lognormal", mu=0.0, sigma=sd)


def nutpie_available() -> bool:
    """Whether the optional nutpie sampler is installed."""
    import importlib.util

    return importlib.util.find_spec("nutpie") is not None


def _prior(name: str, spec: PriorConfig) -> Any:
    if spec.distribution == "lognormal":
        return pm.LogNormal(name, mu=spec.mu, sigma=spec.sigma)
    if spec.distribution == "gamma":
        return pm.Gamma(name, alpha=spec.alpha, beta=spec.beta)
    if spec.distribution == "halfnormal":
        return pm.HalfNormal(name, sigma=spec.sigma)
    return pm.HalfFlat(name)


def _rescaled_name(name: str, factor: float) -> str:
    return name if factor == 1.0 else f"{name}_rescaled"


def build_model(problem: LikelihoodProblem, priors: dict[str, PriorConfig]) -> pm.Model:
    """The PyMC model: a prior per rescaled parameter, the likelihood graph of `clv.bayes.graphs` as a potential,
    and natural-scale parameters as deterministics under the papers' names. The data (rows, weights and the
    rescaling factors) are data variables, so that a compiled model can take another data set. With covariates,
    each coefficient g has a Normal(0, sd) prior and every row its own parameters; a pooled fit has the
    hierarchical parameters of `clv.bayes.pooling`, per group."""
    _check_priors(problem, priors)
    with pm.Model() as model:
        data = {name: pm.Data(name, value) for name, value in _model_data(problem).items()}
        if _groups(problem) is not None:
            params = _pooled_parameters(problem, priors, data)
        else:
            params = _base_parameters(problem, priors, data)
            if problem.layout is not None:
                params = _covariate_parameters(problem, params, data)
        pm.Potential("log_likelihood", total_log_likelihood(problem, params, data))
    return model


def _base_parameters(problem: LikelihoodProblem, priors: dict[str, PriorConfig], data: dict[str, Any]) -> list[Any]:
    free = []
    for j in range(_base_count(problem)):
        name, factor = problem.param_names[j], float(problem.factor[j])
        variable = _prior(_rescaled_name(name, factor), priors.get(name, DEFAULT_PRIOR))
        free.append(variable)
        if factor != 1.0:
            pm.Deterministic(name, variable * data["factor"][j])
    return free


def _covariate_parameters(problem: LikelihoodProblem, base: list[Any], data: dict[str, Any]) -> list[Any]:
    """Each row's parameters (`clv.bayes.graphs.row_parameters`) from the base ones and a coefficient g per slot
    with its Normal(0, sd) prior, directly on g."""
    if not isinstance(problem, BayesProblem) or problem.layout is None:
        raise ClvError("a model with covariates needs its BayesProblem (the covariates' effects)")
    layout = problem.layout
    g = [pm.Normal(name, mu=0.0, sigma=problem.coefficient_sd) for name in layout.names]
    coefficients = {p: pt.stack([g[i] for i in slots]) for p, slots in layout.slots.items() if len(slots)}
    designs = {p: data[f"design_{p}"] for p in coefficients}
    names = problem.param_names[: len(base)]
    return row_parameters(base, names, problem.effects, designs, coefficients)


def _pooled_parameters(problem: LikelihoodProblem, priors: dict[str, PriorConfig], data: dict[str, Any]) -> list[Any]:
    """Per base parameter j: the population's exp(mu_j) under the parameter's prior, the groups' spread tau_j ~
    HalfNormal, and log theta_gj = mu_j + tau_j eps_gj, eps_gj ~ Normal(0, 1) (non-centred), or for the groups
    whose data pin the parameter down (`PooledGroups.centred`) log theta_gj ~ Normal(mu_j, tau_j) itself
    (centred): one vector z_j holds eps or log theta by group. Gathered per row by its group. Deterministics:
    `{name}_population` and `{name}_groups` on the natural scale."""
    groups = _groups(problem)
    assert groups is not None
    params = []
    for j in range(_base_count(problem)):
        name, factor = problem.param_names[j], float(problem.factor[j])
        level = _prior(_rescaled_name(f"{name}_population", factor), priors.get(name, DEFAULT_PRIOR))
        tau = pm.HalfNormal(f"tau_log_{name}", sigma=groups.scale_sd)
        centred = groups.centred[:, j].astype(float)
        mu = pt.log(level)
        z = pm.Normal(f"z_{name}", mu=centred * mu, sigma=centred * tau + (1.0 - centred), shape=centred.size)
        theta = pt.exp(centred * z + (1.0 - centred) * (mu + tau * z))
        if factor != 1.0:
            pm.Deterministic(f"{name}_population", level * data["factor"][j])
        pm.Deterministic(f"{name}_groups", theta * data["factor"][j])
        params.append(theta[data["group"]])
    return params


def _check_priors(problem: LikelihoodProblem, priors: dict[str, PriorConfig]) -> None:
    base = problem.param_names[: _base_count(problem)]
    coefficients = sorted(set(priors) & set(problem.param_names[len(base) :]))
    if coefficients:
        raise ConfigError(
            f"bayes.priors names the coefficient(s) {', '.join(coefficients)}: coefficients have the prior "
            "Normal(0, bayes.coefficient_prior_sd)"
        )
    unknown = sorted(set(priors) - set(base))
    if unknown:
        raise ConfigError(
            f"bayes.priors names {', '.join(unknown)}, which the model does not have "
            f"(its parameters: {', '.join(base)})"
        )


def _model_data(problem: LikelihoodProblem) -> dict[str, NDArray[Any]]:
    """The values of the model's data variables: the graph's, the rescaling factors, and the covariates' design
    matrices (`design_{process}`) or a pooled fit's group of each row (`group`)."""
    data = {**graph_data(problem), "factor": np.asarray(problem.factor, dtype=float)}
    groups = _groups(problem)
    if groups is not None:
        data["group"] = np.asarray(groups.index, dtype=np.int64)
    elif problem.layout is not None:
        data |= {f"design_{p}": np.asarray(z, dtype=float) for p, z in problem.designs.items()}
    return data


def _mle_start(model: FittedModel, problem: LikelihoodProblem, seed: int) -> FloatArray:
    """The maximum-likelihood fit in the search's parameters (rescaled; e^g per coefficient slot, from g = 0)."""
    start = model.start_point()
    if problem.layout is not None:
        start = np.concatenate([start, np.ones(problem.layout.size)])
    result = maximize_likelihood(problem.likelihood, [start], seed=seed)
    return np.asarray(result.params, dtype=float)


@dataclass(frozen=True)
class _Start:
    """Where sampling starts: each free variable's value (PyMC's `initvals`), and the free variables'
    unconstrained values in the model's order (nutpie's vector: logs of positive variables, g as it is)."""

    values: dict[str, Any]
    free: FloatArray


def _start(problem: LikelihoodProblem, start: FloatArray) -> _Start:
    """The start from the maximum-likelihood fit `start` (the search's parameters): base parameters and
    coefficients g = log(e^g); a pooled fit starts every group at the fit to all customers, tau at `_TAU_START`."""
    k = _base_count(problem)
    base = [(n, float(f), float(x)) for n, f, x in zip(problem.param_names[:k], problem.factor, start, strict=False)]
    values: dict[str, Any] = {}
    free: list[float] = []
    groups = _groups(problem)
    if groups is None:
        for name, factor, x in base:
            values[_rescaled_name(name, factor)] = x
            free.append(math.log(x))
        for name, x in zip(problem.param_names[k:], start[k:], strict=True):
            values[name] = math.log(float(x))
            free.append(values[name])
        return _Start(values, np.array(free))
    for j, (name, factor, x) in enumerate(base):
        values[_rescaled_name(f"{name}_population", factor)] = x
        values[f"tau_log_{name}"] = _TAU_START
        # centred groups start at the fit to all customers (z = log theta), the others at eps = 0
        values[f"z_{name}"] = np.where(groups.centred[:, j], math.log(x), 0.0)
        free += [math.log(x), math.log(_TAU_START), *values[f"z_{name}"]]
    return _Start(values, np.array(free))


def _bayes_problem(
    model: FittedModel,
    rfm: pd.DataFrame,
    options: BayesConfig,
    weights: ArrayLike | None,
    pooling: PoolingOptions | None,
    seed: int,
) -> tuple[BayesProblem, FloatArray]:
    """The problem of the fit, and its maximum-likelihood start in the search's parameters (a pooled fit: the
    fit to all customers, whose rescaling the pooled rows share)."""
    if pooling is None:
        problem = model.likelihood_problem(rfm, weights)
        shaped = BayesProblem.of(
            problem, coefficient_sd=options.coefficient_prior_sd, effects=dict(model.covariate_effects)
        )
        return shaped, _mle_start(model, problem, seed)
    # the fit to all customers is on the same rescaled data (time by max(T) / 10, spend by its mean)
    whole = model.likelihood_problem(rfm, weights)
    start = _mle_start(model, whole, seed)
    information = -np.diag(whole.total_hessian(start)) * start**2 / float(whole.weights.sum())
    grouped, groups = pooled_problem(model, rfm, weights, pooling.column, options.pool_scale_prior_sd, information)
    return BayesProblem.of(grouped, groups=groups), start


def fit_posterior(
    model: FittedModel,
    rfm: pd.DataFrame,
    options: BayesConfig,
    seed: int,
    progress: bool = False,
    weights: ArrayLike | None = None,
    pooling: PoolingOptions | None = None,
) -> Posterior:
    """Fit `model`'s likelihood (a purchase model or Gamma-Gamma) to `rfm` (rows weighted by `weights`, e.g.
    counts of customers sharing a history) in PyMC and return the posterior. A model with covariates (read from
    `rfm`'s columns) has draws of its base parameters and coefficients; with `pooling`, the parameters are
    pooled across the groups of `pooling.column` (`clv.bayes.pooling`), and the draws are each group's
    parameters, then mu_log_{name} and tau_log_{name} per parameter."""
    held = model.held_in_posterior(rfm, weights)
    fitted = model if held is None else held.model
    problem, start = _bayes_problem(fitted, rfm, options, weights, pooling, seed)
    _check_priors(problem, options.priors)
    initial = _start(problem, start)
    began = time.perf_counter()
    idata, diagnostics = _infer(model.name, problem, initial, options, start, seed, progress)
    diagnostics.seconds = round(time.perf_counter() - began, 3)
    stacked = idata.posterior.stack(sample=("chain", "draw"))  # type: ignore[attr-defined]
    names, draws, rows = _posterior_draws(problem, stacked)
    _check_diagnostics(diagnostics, rows, names, idata, options)
    layout, mle, summary = _described(fitted, problem, rfm, weights, start, draws, options)
    if held is not None:
        names, draws, mle = _with_held(model.param_names, names, draws, held, idata, mle)
    if _groups(problem) is not None:  # the draws under the posterior's names too, as a saved posterior reads them
        shape = (idata.posterior.sizes["chain"], idata.posterior.sizes["draw"])  # type: ignore[attr-defined]
        for j, name in enumerate(names):
            idata.posterior[name] = (("chain", "draw"), draws[:, j].reshape(shape))  # type: ignore[attr-defined]
    return Posterior(
        model_name=model.name,
        param_names=names,
        draws=draws,
        diagnostics=diagnostics,
        priors=_prior_record(problem, options),
        idata=idata,
        mle=mle,
        layout=layout,
        pooling=summary,
        held=None if held is None else held.record,
    )


def _with_held(
    order: tuple[str, ...],
    names: tuple[str, ...],
    draws: FloatArray,
    held: HeldParameters,
    idata: az.InferenceData,
    mle: dict[str, float] | None,
) -> tuple[tuple[str, ...], FloatArray, dict[str, float] | None]:
    """The draws with the held parameters as constant columns, all in the model's parameter order `order` (as
    the predictions per draw read them), and in the InferenceData too (as a saved posterior reads them)."""
    columns = {**dict(zip(names, draws.T, strict=True))}
    posterior: Any = idata.posterior  # type: ignore[attr-defined]
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    for name, value in held.values.items():
        columns[name] = np.full(draws.shape[0], value)
        posterior[name] = (("chain", "draw"), np.full(shape, value))
    full = None if mle is None else {n: (held.values[n] if n in held.values else mle[n]) for n in order}
    return order, np.column_stack([columns[n] for n in order]), full


def _posterior_draws(problem: LikelihoodProblem, stacked: Any) -> tuple[tuple[str, ...], FloatArray, list[str]]:
    """The posterior's parameter names, draws (samples, names) and the rows of ArviZ's summary that hold each
    (see `fit_posterior` for the pooled names)."""
    groups = _groups(problem)
    if groups is None:
        names = problem.param_names
        draws = np.column_stack([np.asarray(stacked[n].values, dtype=float) for n in names])
        rows = [_rescaled_name(n, float(f)) for n, f in zip(names, problem.factor, strict=True)]
        return names, draws, rows
    base = problem.param_names[: _base_count(problem)]
    labels, columns, rows = [], [], []
    for g, level in enumerate(groups.levels):
        for name in base:
            labels.append(f"{name}[{level}]")
            columns.append(np.asarray(stacked[f"{name}_groups"].values[g], dtype=float))
            rows.append(f"{name}_groups[{g}]")
    for name, factor in zip(base, problem.factor, strict=False):
        labels.append(f"mu_log_{name}")
        columns.append(np.log(np.asarray(stacked[f"{name}_population"].values, dtype=float)))
        rows.append(_rescaled_name(f"{name}_population", float(factor)))
    for name in base:
        labels.append(f"tau_log_{name}")
        columns.append(np.asarray(stacked[f"tau_log_{name}"].values, dtype=float))
        rows.append(f"tau_log_{name}")
    return tuple(labels), np.column_stack(columns), rows


def _described(
    model: FittedModel,
    problem: LikelihoodProblem,
    rfm: pd.DataFrame,
    weights: ArrayLike | None,
    start: FloatArray,
    draws: FloatArray,
    options: BayesConfig,
) -> tuple[CustomerLayout | None, dict[str, float] | None, dict[str, Any] | None]:
    """The posterior's customer layout, its maximum-likelihood values (base parameters, and coefficients g), and
    a pooled fit's shrinkage summary (`clv.bayes.pooling.pooling_summary`)."""
    k = _base_count(problem)
    groups = _groups(problem)
    if groups is not None:
        separate = separate_fits(model, rfm, weights, groups)
        customers = np.bincount(groups.index, weights=problem.weights, minlength=len(groups.levels)).astype(float)
        return groups.layout, None, pooling_summary(draws, groups, separate, customers, options.interval)
    values = np.concatenate([start[:k] * problem.factor[:k], np.log(start[k:])])
    mle = dict(zip(problem.param_names, map(float, values), strict=True))
    if problem.layout is None or problem.covariates is None:
        return None, mle, None
    slots = {p: tuple(int(i) for i in index) for p, index in problem.layout.slots.items()}
    layout = CustomerLayout(model.param_names, problem.covariates, dict(model.covariate_effects), slots)
    return layout, mle, None


def _prior_record(problem: LikelihoodProblem, options: BayesConfig) -> dict[str, dict[str, Any]]:
    """Each parameter's prior as the posterior records it."""
    k = _base_count(problem)
    record = {n: options.priors.get(n, DEFAULT_PRIOR).model_dump() for n in problem.param_names[:k]}
    if problem.layout is not None and _groups(problem) is None:
        sd = options.coefficient_prior_sd
        record |= {n: {"distribution": "normal", "mu": 0.0, "sigma": sd} for n in problem.param_names[k:]}
    if _groups(problem) is not None:
        scale = {"distribution": "halfnormal", "sigma": options.pool_scale_prior_sd}
        record |= {f"tau_log_{n}": dict(scale) for n in problem.param_names[:k]}
    return record


def _infer(
    name: str,
    problem: LikelihoodProblem,
    initial: _Start,
    options: BayesConfig,
    start: FloatArray,
    seed: int,
    progress: bool,
) -> tuple[az.InferenceData, Diagnostics]:
    """The configured inference, or auto's choice (`clv.bayes.budget.choose_inference`): Laplace for data too
    large for NUTS in the budget, and NUTS after all when Laplace's own check fails (Pareto k above 0.7 or not
    computed). A pooled fit is sampled (its posterior in mu, tau and eps is far from normal). The choice and its
    reason go to `Diagnostics.choice`."""
    choice = choose_inference(name, problem.n_unique, options)
    if _groups(problem) is not None:
        if options.inference == "laplace":
            raise ConfigError("bayes.inference laplace cannot fit a pooled model (pool_by): use nuts or auto")
        if options.inference == "auto":
            choice = InferenceChoice("nuts", "auto: NUTS, as for every pooled fit (pool_by)")
    chosen = options.model_copy(update={"inference": choice.inference})
    reason = choice.reason
    if chosen.inference == "laplace":
        idata, diagnostics = _laplace(problem, chosen, start, seed)
        failed = _unreliable(diagnostics)
        if options.inference == "auto" and failed:
            reason += f"; Laplace's {failed}: NUTS instead"
            idata, diagnostics = _sample(
                problem, initial, chosen.model_copy(update={"inference": "nuts"}), seed, progress
            )
    else:
        idata, diagnostics = _sample(problem, initial, chosen, seed, progress)
    diagnostics.choice = reason
    return idata, diagnostics


def _unreliable(diagnostics: Diagnostics) -> str | None:
    """Why an approximation's importance-sampling check failed (Pareto k above 0.7, or not computed), or None:
    Laplace passes too when its check draws' weights are nearly equal (`_LAPLACE_ESS_SHARE`)."""
    check = diagnostics.laplace or diagnostics.pathfinder or {}
    k = check.get("pareto_k")
    if k is None:
        return "Pareto k not computed"
    if k <= _PARETO_K_MAX:
        return None
    share = check.get("importance_ess_share")
    if share is not None and share >= _LAPLACE_ESS_SHARE:
        return None
    return f"Pareto k {k:.2f} > {_PARETO_K_MAX}" + (f", importance ESS {share:.1%} of draws" if share else "")


@contextmanager
def _interrupt_kept() -> Iterator[None]:
    """PyMC catches Ctrl-C while it samples and returns the draws it has so far (`except KeyboardInterrupt:
    pass` in pymc.sampling.mcmc, and in its variational fits), or fails with another error when it has none;
    nutpie stops and returns a trace whose undrawn part is NaN. A run must not go on with a cut-short posterior,
    so the interrupt is noted and raised again once the sampler returns. The SIGINT handler in place (Python's
    default, or the CLI's) still runs first; only in the main thread, where Python handles signals."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    seen: list[int] = []

    def noted(signum: int, frame: Any) -> None:
        seen.append(signum)
        previous(signum, frame)
        raise KeyboardInterrupt  # a handler that did not raise: the sampler must still stop

    signal.signal(signal.SIGINT, noted)
    try:
        yield
    except Exception:
        if seen:  # e.g. PyMC's "Not enough samples to build a trace" when stopped while tuning
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise KeyboardInterrupt


def _sample(
    problem: LikelihoodProblem, initial: _Start, options: BayesConfig, seed: int, progress: bool
) -> tuple[az.InferenceData, Diagnostics]:
    with warnings.catch_warnings(), _interrupt_kept():
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        if options.inference == "advi":
            return _advi(build_model(problem, options.priors), initial, options, seed, progress)
        if options.inference == "pathfinder":
            return _pathfinder(build_model(problem, options.priors), initial, options, seed, progress)
        return _nuts(problem, initial, options, seed, progress)


def _log_prior(spec: PriorConfig, theta: float) -> tuple[float, float, float]:
    """Log density of theta = log(parameter) under the prior (the Jacobian e^theta included), with its first
    and second derivatives: the Laplace approximation works in theta, where the posterior is closest to normal."""
    if spec.distribution == "lognormal":  # theta ~ Normal(mu, sigma) exactly
        z = (theta - spec.mu) / spec.sigma
        return -0.5 * z * z, -z / spec.sigma, -1.0 / spec.sigma**2
    if spec.distribution == "gamma":  # alpha theta - beta e^theta
        e = math.exp(theta)
        return spec.alpha * theta - spec.beta * e, spec.alpha - spec.beta * e, -spec.beta * e
    if spec.distribution == "halfnormal":  # theta - e^(2 theta) / (2 sigma^2)
        e2 = math.exp(2.0 * theta) / spec.sigma**2
        return theta - 0.5 * e2, 1.0 - e2, -2.0 * e2
    return theta, 1.0, 0.0  # flat on the parameter: only the Jacobian


def _log_posterior(
    problem: LikelihoodProblem, specs: list[PriorConfig], theta: FloatArray, hessian: bool = False
) -> tuple[float, FloatArray, FloatArray | None]:
    """Log posterior density of theta = log(rescaled parameters), its gradient, and optionally its Hessian."""
    x = np.exp(theta)
    ll, g = problem.total(x)
    priors = np.array([_log_prior(spec, float(t)) for spec, t in zip(specs, theta, strict=True)])
    value = ll + float(priors[:, 0].sum())
    grad = g * x + priors[:, 1]
    if not hessian:
        return value, grad, None
    h = problem.total_hessian(x) * np.outer(x, x) + np.diag(g * x + priors[:, 2])
    return value, grad, h


def _natural(problem: LikelihoodProblem, thetas: FloatArray) -> FloatArray:
    """Laplace's theta = log(search parameters) as the posterior's values: natural base parameters, and the
    coefficients g = theta themselves."""
    k = _base_count(problem)
    return np.concatenate([np.exp(thetas[:, :k]) * problem.factor[:k], thetas[:, k:]], axis=1)


def _laplace(
    problem: LikelihoodProblem, options: BayesConfig, start: FloatArray, seed: int
) -> tuple[az.InferenceData, Diagnostics]:
    """Laplace approximation in theta = log(parameters): damped Newton to the posterior mode, a normal with the
    inverse negative Hessian as covariance, and Pareto-smoothed importance sampling (Vehtari et al. 2024, JMLR
    25(72)) of the exact posterior against it as the check: k > 0.7 says the normal is not good enough. With
    many customers the posterior is close to normal (Bernstein-von Mises), and this costs a few likelihood
    evaluations instead of thousands."""
    k = _base_count(problem)
    specs = [options.priors.get(n, DEFAULT_PRIOR) for n in problem.param_names[:k]]
    specs += [_coefficient_prior(problem)] * (len(problem.param_names) - k)
    theta = np.log(start)
    value, grad, hess = _log_posterior(problem, specs, theta, hessian=True)

    def negative(t: FloatArray) -> tuple[float, FloatArray]:
        v, g, _ = _log_posterior(problem, specs, t)
        return (-v, -g) if np.isfinite(v) else (np.inf, g)

    shrinks = (1.0, 0.5, 0.25, 0.1, 0.01)
    for _ in range(50):
        assert hess is not None
        step = np.asarray(np.linalg.solve(-hess, grad), dtype=float)
        taken = damped_step(negative, theta, -value, step, shrinks, slack=1e-9)
        moved = float(np.max(np.abs(taken[0] - theta if taken is not None else shrinks[-1] * step)))
        if taken is not None:
            theta = taken[0]
        value, grad, hess = _log_posterior(problem, specs, theta, hessian=True)
        if moved < 1e-10:
            break
    assert hess is not None
    try:
        cov = np.linalg.inv(-hess)
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as exc:
        raise FitError("the Laplace approximation failed: the posterior's Hessian is not negative definite") from exc
    rng = np.random.default_rng(seed)
    n = options.chains * options.draws
    z = rng.standard_normal((n, theta.size))
    thetas = theta + z @ chol.T
    check = thetas[: min(n, 300)]
    log_q = -0.5 * np.sum(z[: check.shape[0]] ** 2, axis=1)
    log_p = np.array([_log_posterior(problem, specs, t)[0] for t in check]) - value
    log_w = log_p - log_q
    _, k = az.psislw(log_w)  # type: ignore[no-untyped-call]
    w = np.exp(log_w - log_w.max())
    ess_share = float(w.sum() ** 2 / (w.size * (w * w).sum()))
    natural = _natural(problem, thetas)
    idata = az.from_dict(posterior={name: natural[None, :, j] for j, name in enumerate(problem.param_names)})
    diagnostics = Diagnostics("laplace", "clv", 1, n, 0, 0.0)
    diagnostics.laplace = {
        "pareto_k": float(k),
        "importance_ess_share": round(ess_share, 6),
        "mode": dict(zip(problem.param_names, map(float, _natural(problem, theta[None, :])[0]), strict=True)),
        "gradient_norm": float(np.linalg.norm(grad)),
    }
    return idata, diagnostics


#: The one piece of module state: nutpie's compiled models by structure (`_structure`), reused for every data set
#: of that structure in this process, since compiling takes seconds and sampling a small model less (across
#: processes, `clv.bayes.nutpie_cache` keeps the machine code on disk). The least recently used is dropped beyond
#: `_COMPILED_MAX`; the lock keeps fits in threads from compiling one twice.
_COMPILED: OrderedDict[tuple[Any, ...], tuple[Any, str | None]] = OrderedDict()
_COMPILED_MAX = 8
_COMPILED_LOCK = threading.Lock()

#: NUTS starts from the maximum-likelihood fit, each chain moved by U(-1, 1) on the log scale (as PyMC's
#: jitter+adapt_diag), so that R-hat compares chains that did not start at one point
_JITTER = 1.0


#: nutpie adapts a diagonal mass matrix plus a low-rank correction from the draws' and gradients' covariance
#: (Seyboldt et al., nutpie's "low-rank modified" adaptation): the models' parameters are strongly correlated
#: (a with b, s with beta), and the correction cuts the leapfrog steps per draw (measured on CDNOW, 2 x 300:
#: BG/NBD 11.4 -> 5.3, Pareto/NBD 19.2 -> 5.8)
_LOW_RANK = True


@dataclass(frozen=True)
class _Timed:
    """What a sampler returned, with its compile and sampling seconds."""

    idata: az.InferenceData
    compile_seconds: float
    sampling_seconds: float
    #: what the sampler's notes should say of this run (nutpie's model compiled without the disk cache)
    note: str | None = None


def _structure(problem: LikelihoodProblem, priors: dict[str, PriorConfig]) -> tuple[Any, ...]:
    """What fixes a compiled model: the model, each free parameter's name (rescaled or not) and prior."""
    k = _base_count(problem)
    base = zip(problem.param_names[:k], problem.factor[:k], strict=True)
    names = (_rescaled_name(n, float(f)) for n, f in base)
    specs = (tuple(sorted(priors.get(n, DEFAULT_PRIOR).model_dump().items())) for n in problem.param_names[:k])
    return (problem.model_name, *zip(names, specs, strict=True), *_shape_key(problem))


def _shape_key(problem: LikelihoodProblem) -> tuple[Any, ...]:
    """The rest of what fixes the compiled graph: the covariates' slots per process (their names, and which
    design column feeds which slot), the effects and the coefficients' prior sd; a pooled fit's number of groups
    and the prior sd of their spread. Not the data (designs, groups of rows)."""
    groups = _groups(problem)
    if groups is not None:
        return (("pooled", len(groups.levels), groups.scale_sd, tuple(map(tuple, groups.centred.tolist()))),)
    layout = problem.layout
    if layout is None or not isinstance(problem, BayesProblem):
        return ()
    slots = tuple((p, tuple(int(i) for i in index)) for p, index in layout.slots.items())
    effects = tuple((p, tuple(moves)) for p, moves in problem.effects.items())
    return (("covariates", layout.names, slots, effects, problem.coefficient_sd),)


@cache
def _builder_source() -> str:
    """The source of what builds the PyMC model (part of the compiled model's disk-cache key)."""
    builders = (
        build_model,
        _base_parameters,
        _covariate_parameters,
        _pooled_parameters,
        _prior,
        _rescaled_name,
        _model_data,
    )
    return "\n".join(inspect.getsource(f) for f in builders)


def _nutpie_model(problem: LikelihoodProblem, options: BayesConfig) -> tuple[Any, float, str | None]:
    """nutpie's compiled model for `problem`'s structure, with `problem`'s data, the seconds spent compiling
    (0 when this process had compiled it already), and a note when the disk-cached build
    (`clv.bayes.nutpie_cache`, which uses nutpie's internals) failed and nutpie compiled it its own way."""
    key = _structure(problem, options.priors)
    with _COMPILED_LOCK:
        entry = _COMPILED.get(key)
        began = time.perf_counter()
        if entry is None:
            entry = _compile_nutpie(problem, options, f"{key!r}\n{_builder_source()}")
            _COMPILED[key] = entry
            while len(_COMPILED) > _COMPILED_MAX:
                _COMPILED.popitem(last=False)
        _COMPILED.move_to_end(key)
        seconds = time.perf_counter() - began
    compiled, note = entry
    # data variables the model does not use (the factors when no parameter is rescaled) are not in it
    data = {name: value for name, value in _model_data(problem).items() if name in compiled.shared_data}
    with_data = compiled.with_data(**data) if note else nutpie_cache.with_data(compiled, data)
    return with_data, seconds, note


def _compile_nutpie(problem: LikelihoodProblem, options: BayesConfig, key: str) -> tuple[Any, str | None]:
    import nutpie

    pm_model = build_model(problem, options.priors)
    try:
        return nutpie_cache.compile_model(pm_model, key), None
    except (KeyboardInterrupt, ClvError):
        raise
    except Exception as exc:  # nutpie's internals moved: its own compiler, without the cache
        note = f"nutpie's model compiled without the disk cache ({type(exc).__name__}: {exc})"
        return nutpie.compile_pymc_model(pm_model), note


def _jittered(center: FloatArray) -> Callable[[int], FloatArray]:
    """nutpie's initial point function: the free variables' unconstrained start (`_Start.free`) moved by the
    seeded jitter."""

    def initial(seed: int) -> FloatArray:
        return np.asarray(center + np.random.default_rng(seed).uniform(-_JITTER, _JITTER, center.size), dtype=float)

    return initial


def _sample_nutpie(
    problem: LikelihoodProblem, initial: _Start, options: BayesConfig, seed: int, progress: bool
) -> _Timed:
    import nutpie

    compiled, compile_seconds, note = _nutpie_model(problem, options)
    compiled = replace(compiled, initial_point_func=_jittered(initial.free))
    began = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=options.draws,
        tune=options.tune,
        chains=options.chains,
        cores=min(options.cores, options.chains),
        seed=seed,
        target_accept=options.target_accept,
        progress_bar=progress,
        save_warmup=False,
        low_rank_modified_mass_matrix=_LOW_RANK,
    )
    sampling = time.perf_counter() - began
    unconstrained = [name for name in idata.posterior.data_vars if str(name).endswith("__")]
    idata.posterior = idata.posterior.drop_vars(unconstrained)
    return _Timed(idata, compile_seconds, sampling, note)


def _sample_pymc(
    problem: LikelihoodProblem, initial: _Start, options: BayesConfig, seed: int, progress: bool
) -> _Timed:
    began = time.perf_counter()
    with build_model(problem, options.priors):
        idata = pm.sample(
            draws=options.draws,
            tune=options.tune,
            chains=options.chains,
            cores=min(options.cores, options.chains),
            random_seed=seed,
            target_accept=options.target_accept,
            initvals=initial.values,
            progressbar=progress,
            compute_convergence_checks=False,
            idata_kwargs={"log_likelihood": False},
        )
    # PyMC compiles as it starts sampling: its seconds are one figure
    return _Timed(idata, 0.0, time.perf_counter() - began)


def _nuts(
    problem: LikelihoodProblem, initial: _Start, options: BayesConfig, seed: int, progress: bool
) -> tuple[az.InferenceData, Diagnostics]:
    """NUTS on nutpie (auto, nutpie) or PyMC's sampler (pymc, or auto when nutpie is missing or cannot compile
    the model: the reason is kept in the diagnostics' `sampler_note`)."""
    sampler, note = options.sampler, None
    if sampler == "nutpie" and not nutpie_available():
        raise FitError("bayes.sampler=nutpie, but nutpie is not installed", hint="pip install nutpie")
    if sampler == "auto" and not nutpie_available():
        sampler, note = "pymc", "nutpie is not installed: sampled with PyMC's NUTS (pip install nutpie)"
    timed = None
    if sampler in ("auto", "nutpie"):
        try:
            timed = _sample_nutpie(problem, initial, options, seed, progress)
            sampler = "nutpie"
        except (KeyboardInterrupt, ClvError):
            raise
        except Exception as exc:  # any failure of the compiler or sampler: fall back, and say why
            if sampler == "nutpie":
                raise FitError(f"nutpie could not compile or sample the model: {exc}") from exc
            sampler, note = "pymc", f"nutpie failed ({type(exc).__name__}: {exc}): sampled with PyMC's NUTS"
    if timed is None:
        timed = _sample_pymc(problem, initial, options, seed, progress)
    diagnostics = Diagnostics("nuts", sampler, options.chains, options.draws, options.tune, 0.0)
    diagnostics.compile_seconds = round(timed.compile_seconds, 3)
    diagnostics.sampling_seconds = round(timed.sampling_seconds, 3)
    diagnostics.sampler_note = note or timed.note
    diverging = timed.idata.sample_stats.get("diverging")  # type: ignore[attr-defined]
    diagnostics.divergences = int(diverging.values.sum()) if diverging is not None else 0
    return timed.idata, diagnostics


def _pathfinder(
    pm_model: pm.Model, initial: _Start, options: BayesConfig, seed: int, progress: bool
) -> tuple[az.InferenceData, Diagnostics]:
    """Multi-path Pathfinder (Zhang, Carpenter, Gelman & Vehtari 2022, JMLR 23(306)) from pymc-extras: L-BFGS
    paths from jittered starts, a normal approximation along each, and Pareto-smoothed importance resampling."""
    from pymc_extras.inference.pathfinder.pathfinder import fit_pathfinder

    with pm_model:
        idata = fit_pathfinder(
            num_paths=4,
            num_draws=options.chains * options.draws,
            random_seed=seed,
            progressbar=progress,
            initvals=initial.values,
            concurrent=None,
            display_summary=False,
            inference_backend="pymc",
        )
    diagnostics = Diagnostics("pathfinder", "pymc-extras", 1, options.chains * options.draws, 0, 0.0)
    diagnostics.pathfinder = {"pareto_k": _pareto_k(idata)}
    return idata, diagnostics


def _pareto_k(idata: az.InferenceData) -> float | None:
    """The Pareto k of Pathfinder's importance weights (> 0.7: the approximation is unreliable)."""
    for group in idata.groups():
        attrs = getattr(idata, group).attrs
        for key, value in attrs.items():
            if "pareto_k" in key.lower():
                try:
                    return float(value)
                except (TypeError, ValueError):
                    continue
    return None


def _advi(
    pm_model: pm.Model, initial: _Start, options: BayesConfig, seed: int, progress: bool
) -> tuple[az.InferenceData, Diagnostics]:
    with pm_model:
        start = _unconstrained(pm_model, initial)
        check = pm.callbacks.CheckParametersConvergence(every=200, diff="relative", tolerance=1e-3)
        approx = pm.fit(
            n=options.advi_iterations,
            method="advi",
            start=start,
            random_seed=seed,
            progressbar=progress,
            callbacks=[check],
        )
        idata = approx.sample(draws=options.chains * options.draws, random_seed=seed)
    iterations = len(approx.hist)
    diagnostics = Diagnostics("advi", "pymc", 1, options.chains * options.draws, 0, 0.0)
    diagnostics.advi = {
        "iterations": iterations,
        "converged": iterations < options.advi_iterations,
        "final_loss": float(np.mean(approx.hist[-100:])),
    }
    return idata, diagnostics


def _unconstrained(pm_model: pm.Model, initial: _Start) -> dict[str, Any]:
    """The start by the model's value variables: logs of the positive variables (`*_log__`), others as they are."""
    out = {}
    for rv in pm_model.free_RVs:
        name = pm_model.rvs_to_values[rv].name
        value = np.asarray(initial.values[rv.name], dtype=float)
        out[name] = np.log(value) if name.endswith("_log__") else value
    return out


def _check_diagnostics(
    diagnostics: Diagnostics,
    free: list[str],
    param_names: tuple[str, ...],
    idata: az.InferenceData,
    options: BayesConfig,
) -> None:
    """R-hat, bulk and tail ESS per parameter (NUTS), checked against the thresholds; problems are recorded."""
    if diagnostics.inference == "advi":
        if diagnostics.advi is not None and not diagnostics.advi["converged"]:
            diagnostics.problems.append(
                f"ADVI did not converge in {options.advi_iterations} iterations (raise bayes.advi_iterations)"
            )
        return
    if diagnostics.inference in ("pathfinder", "laplace"):
        failed = _unreliable(diagnostics)
        if failed and failed != "Pareto k not computed":
            problem = f"{diagnostics.inference}: {failed}: the approximation is unreliable (use NUTS)"
            diagnostics.problems.append(problem)
        return
    variables = set(idata.posterior.data_vars)  # type: ignore[attr-defined]
    # rows of vector variables (a pooled fit's `r_groups[0]`) are summarised under their variable
    var_names = list(dict.fromkeys(row if row in variables else row.rsplit("[", 1)[0] for row in free))
    table: Any = az.summary(idata, var_names=var_names, kind="diagnostics", round_to="none")
    for name, free_name in zip(param_names, free, strict=True):
        row: Any = table.loc[free_name]
        diagnostics.per_param[name] = {
            "r_hat": float(row["r_hat"]),
            "ess_bulk": float(row["ess_bulk"]),
            "ess_tail": float(row["ess_tail"]),
            "mcse_mean": float(row["mcse_mean"]),
        }
    values = diagnostics.per_param.values()
    diagnostics.r_hat_max = max(v["r_hat"] for v in values)
    diagnostics.ess_bulk_min = min(v["ess_bulk"] for v in values)
    diagnostics.ess_tail_min = min(v["ess_tail"] for v in values)
    if diagnostics.sampling_seconds:
        diagnostics.ess_bulk_per_second = round(diagnostics.ess_bulk_min / diagnostics.sampling_seconds, 1)
    if not np.isfinite(diagnostics.r_hat_max) or diagnostics.r_hat_max > options.r_hat_max:
        diagnostics.problems.append(f"R-hat {diagnostics.r_hat_max:.4f} > {options.r_hat_max}")
    low_ess = min(diagnostics.ess_bulk_min, diagnostics.ess_tail_min)
    if not np.isfinite(low_ess) or low_ess < options.ess_min:
        diagnostics.problems.append(f"effective sample size {low_ess:.0f} < {options.ess_min:g}")
    if diagnostics.divergences:
        diagnostics.problems.append(f"{diagnostics.divergences} divergent transitions")
