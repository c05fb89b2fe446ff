"""Partial pooling of a model's parameters across the groups of one categorical column (`model.pool_by`).

Every base parameter is hierarchical on the log scale, non-centred (Papaspiliopoulos, Roberts & Skold 2007;
Betancourt & Girolami 2015): log theta_gj = mu_j + tau_j eps_gj with eps_gj ~ Normal(0, 1), exp(mu_j) under the
model's prior of that parameter (on the rescaled parameter, as without pooling) and tau_j ~ HalfNormal(
`bayes.pool_scale_prior_sd`). A small group's parameters are drawn toward the population's mu_j by as much as the
data leave them free to be (Gelman & Hill 2007, Sec. 12.2), so a segment of 15 customers borrows strength from the
rest instead of being fitted alone.

This module prepares the rows (each customer's history with their group; rows compressed within groups, the
data rescaled as for all customers together) and summarises the shrinkage: per group, the posterior of its
parameters beside the group's separate maximum-likelihood fit, and the share of the distance from that fit to
the population that the posterior moved. The PyMC model is `clv.bayes.fit.build_model`'s.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv.bayes.posterior import CustomerLayout
from clv.errors import ClvError, ConvergenceWarning, DataError, UsageError
from clv.model import FittedModel, LikelihoodProblem

__all__ = ["PooledGroups", "PoolingOptions", "pooled_problem", "pooling_summary", "separate_fits"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PoolingOptions:
    """Pool the model's parameters across the groups of `column` (a categorical column of the customer frame)."""

    column: str


#: a group's parameter is centred (log theta_gj ~ Normal(mu_j, tau_j) sampled directly) when the group's data
#: alone would give log theta_gj a standard error under this; non-centred otherwise. Either is the same model;
#: which one samples well depends on that ratio of data to spread (Papaspiliopoulos, Roberts & Skold 2007;
#: Betancourt & Girolami 2015): non-centred throughout, a group of 5,000 customers beside groups of 15 took NUTS
#: 480 s for 2 x 600 iterations (tree depth at its limit, bulk ESS 31); with that group centred, seconds.
CENTRED_SE = 0.5
#: fewer groups than this: the spread tau_j is hardly identified (Gelman 2006, "Prior distributions for variance
#: parameters in hierarchical models": with few groups the posterior of tau follows its prior), said at the fit
MIN_GROUPS = 4


@dataclass(frozen=True)
class PooledGroups:
    """The groups of a pooled fit: the column, its encoding (`layout`), each compressed row's group, the prior
    sd of the groups' spread tau, and which (group, parameter) pairs are sampled centred (`CENTRED_SE`)."""

    column: str
    layout: CustomerLayout
    index: NDArray[np.intp]
    scale_sd: float
    centred: NDArray[np.bool_]

    @property
    def levels(self) -> tuple[str, ...]:
        return self.layout.groups


def pooled_problem(
    model: FittedModel,
    rfm: pd.DataFrame,
    weights: ArrayLike | None,
    column: str,
    scale_sd: float,
    information: FloatArray,
) -> tuple[LikelihoodProblem, PooledGroups]:
    """The likelihood problem of `model` on `rfm` with the rows kept apart by group (the group column taken as a
    categorical covariate, so the compression, the rescaling and the column's encoding are the covariate fit's),
    and the groups. Its coefficient slots are not used: the groups enter the PyMC model by their index.
    `information`: per customer, the Fisher information of each log parameter in the fit to all customers
    (a group of n has standard errors about 1 / sqrt(n information): `CENTRED_SE`)."""
    label = type(model).__name__
    if not model.covariate_effects:
        raise UsageError(f"{label} cannot be pooled (pool_by is for BG/NBD, MBG/NBD, Pareto/NBD and Gamma-Gamma)")
    if model.covariate_options.active:
        raise UsageError(f"{label}: pool_by and covariates cannot be combined; choose one")
    if column not in rfm.columns:
        raise DataError(
            f"pool_by column {column!r} not found; the customer frame has {', '.join(map(str, rfm.columns))}"
        )
    process = next(iter(model.covariate_effects))
    keyword = "spend_covariates" if process == "spend" else "purchase_covariates"
    make: Any = type(model)  # the purchase models' and Gamma-Gamma's keywords, not FittedModel's
    grouped = make(**{keyword: [column]}, categorical={column: None})
    problem = grouped.likelihood_problem(rfm, weights)
    assert problem.covariates is not None
    layout = CustomerLayout(model.param_names, problem.covariates, pooled=True)
    index = CustomerLayout.group_of(problem.designs[process])
    customers = np.bincount(index, weights=problem.weights, minlength=len(layout.groups))
    if len(layout.groups) < MIN_GROUPS:
        warnings.warn(
            f"pool_by {column!r}: {len(layout.groups)} groups ({', '.join(map(str, layout.groups))}): the spread of "
            f"the groups' parameters (tau) rests mostly on its prior with fewer than {MIN_GROUPS} groups, and the "
            "sampler often fails its diagnostics there; pool across more groups, or use the column as a covariate",
            ConvergenceWarning,
            stacklevel=3,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        se = 1.0 / np.sqrt(customers[:, None] * np.maximum(information, 0.0)[None, :])
    return problem, PooledGroups(column, layout, index, scale_sd, se < CENTRED_SE)


def separate_fits(
    model: FittedModel, rfm: pd.DataFrame, weights: ArrayLike | None, groups: PooledGroups
) -> list[dict[str, float] | None]:
    """Each group's own maximum-likelihood fit (None where the group's data cannot be fitted, e.g. too few
    repeat buyers for Gamma-Gamma); their warnings are not repeated: the summary shows the fits."""
    group = groups.layout.group_index(rfm)
    w = np.ones(len(rfm)) if weights is None else np.asarray(weights, dtype=float)
    fits: list[dict[str, float] | None] = []
    for g in range(len(groups.levels)):
        rows = group == g
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                make: Any = type(model)
                fitted = make(starts=model.starts, seed=model.seed).fit(rfm.loc[rows], w[rows])
            fits.append(fitted.params_)
        except ClvError:
            fits.append(None)
    return fits


def _interval(values: FloatArray, level: float) -> dict[str, float]:
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(values.mean()), "lo": float(lo), "hi": float(hi)}


def _weight(separate: float | None, posterior: float, population: float) -> float | None:
    """The share of the way from the group's separate fit to the population that the posterior moved (log
    scale; 0: no pooling, 1: the population's value); None where the two are too close to tell."""
    if separate is None or abs(separate - population) < 1e-6:
        return None
    return float((separate - posterior) / (separate - population))


def pooling_summary(
    draws: FloatArray,
    groups: PooledGroups,
    separate: list[dict[str, float] | None],
    customers: FloatArray,
    level: float = 0.9,
) -> dict[str, Any]:
    """Per group: customers, posterior mean and interval of each parameter, posterior mean of its log, the
    separate fit's log, and the weight toward the population (`_weight`); per parameter, the population's
    location exp(mu_j) and spread tau_j. `draws` are the pooled posterior's (see `clv.bayes.fit`)."""
    names = groups.layout.base_names
    k, n_groups = len(names), len(groups.levels)
    mu = draws[:, n_groups * k : n_groups * k + k]
    tau = draws[:, n_groups * k + k : n_groups * k + 2 * k]
    out: dict[str, Any] = {"column": groups.column, "interval": level, "groups": {}, "population": {}}
    for j, name in enumerate(names):
        out["population"][name] = {
            "location": _interval(np.exp(mu[:, j]), level),
            "scale_tau": _interval(tau[:, j], level),
        }
    for g, group in enumerate(groups.levels):
        block = draws[:, g * k : (g + 1) * k]
        entry: dict[str, Any] = {"customers": float(customers[g]), "params": {}}
        for j, name in enumerate(names):
            log_mean = float(np.log(block[:, j]).mean())
            fit = separate[g]
            log_separate = None if fit is None else float(np.log(fit[name]))
            entry["params"][name] = _interval(block[:, j], level) | {
                "log_mean": log_mean,
                "separate_fit": None if fit is None else float(fit[name]),
                "weight_toward_population": _weight(log_separate, log_mean, float(mu[:, j].mean())),
            }
        out["groups"][group] = entry
    return out
