"""Posterior draws and their diagnostics: what a Bayesian fit produces, saved and loaded without PyMC.

Kept apart from `clv.bayes.fit` (which imports PyMC) so that scoring with a saved posterior, and the
maximum-likelihood path, do not pay PyMC's import.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.compress import unique_rows
from clv.config import PriorConfig
from clv.covariates import CovariateSet, Effect
from clv.errors import ConvergenceWarning, FitError
from clv.model import FitResult

__all__ = ["DEFAULT_PRIOR", "CustomerLayout", "Diagnostics", "Posterior", "warn_or_raise"]

FloatArray = NDArray[np.float64]
#: LogNormal(0, 2) on each rescaled parameter
DEFAULT_PRIOR = PriorConfig()


@dataclass
class Diagnostics:
    """Convergence of the fit and whether it passes the configured thresholds."""

    inference: str
    sampler: str
    chains: int
    draws: int
    tune: int
    seconds: float
    r_hat_max: float | None = None
    ess_bulk_min: float | None = None
    ess_tail_min: float | None = None
    divergences: int | None = None
    advi: dict[str, Any] | None = None
    pathfinder: dict[str, Any] | None = None
    laplace: dict[str, Any] | None = None
    #: how the inference was chosen (`clv.bayes.budget.choose_inference`), and any fallback to NUTS
    choice: str | None = None
    #: NUTS: seconds compiling the model (0: compiled earlier in this process; PyMC's sampler compiles as it
    #: samples, so its time is all `sampling_seconds`), seconds sampling, and why `sampler` is not the one asked
    compile_seconds: float | None = None
    sampling_seconds: float | None = None
    sampler_note: str | None = None
    #: NUTS: the least bulk effective sample size per second of sampling (compile excluded)
    ess_bulk_per_second: float | None = None
    per_param: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


@dataclass(frozen=True)
class CustomerLayout:
    """How a posterior's draws give each customer's parameters, for a model with covariates or pooled groups.

    - Covariates: a draw is the k base parameters then one coefficient g per slot; `slots` gives, per process,
      the slot of each of its design columns, and the customer's parameters are those of
      `clv.covariates.row_parameters` (log theta_ij = log theta_j + sum_p sign (Z_p g_p)_i) under each draw.
    - Pooled (`pooled`): `covariates` holds the group column dummy-coded on one process; a draw is the k
      parameters of each group in turn (group 0 the reference level, then the other levels in their order), and a
      customer has the parameters of their group.

    Customers with the same covariate values (or group) form one pattern, with one parameter row per draw."""

    base_names: tuple[str, ...]
    covariates: CovariateSet
    effects: dict[str, tuple[Effect, ...]] = field(default_factory=dict)
    slots: dict[str, tuple[int, ...]] = field(default_factory=dict)
    pooled: bool = False

    @property
    def groups(self) -> tuple[str, ...]:
        """Pooled: the group levels in the order of the draws' blocks (the reference level first)."""
        column = self.covariates.columns[next(c for cols in self.covariates.processes.values() for c in cols)]
        return (str(column.reference), *(level for level in column.levels if level != column.reference))

    @staticmethod
    def group_of(dummies: FloatArray) -> NDArray[np.intp]:
        """Pooled: each row's group from its dummy-coded group column (no dummy set: the reference, group 0)."""
        if dummies.shape[1] == 0:
            return np.zeros(dummies.shape[0], dtype=np.intp)
        return np.where(dummies.any(axis=1), np.argmax(dummies, axis=1) + 1, 0).astype(np.intp)

    def group_index(self, frame: pd.DataFrame) -> NDArray[np.intp]:
        """Pooled: each customer's group (its place in `groups`)."""
        return self.group_of(self.design(frame))

    def design(self, frame: pd.DataFrame) -> FloatArray:
        """The customers' design rows, every process's columns side by side (rows, columns)."""
        parts = [self.covariates.design(frame, p) for p in self.covariates.processes]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0))

    def patterns(self, frame: pd.DataFrame) -> tuple[NDArray[np.intp], FloatArray]:
        """Each customer's pattern, and each pattern's design row (patterns, columns)."""
        z = self.design(frame)
        if z.shape[1] == 0:
            return np.zeros(len(frame), dtype=np.intp), np.zeros((1, 0))
        uniques, codes, _ = unique_rows(*[z[:, j] for j in range(z.shape[1])])
        return codes, np.stack(uniques, axis=1)

    def row_draws(self, draws: FloatArray, rows: FloatArray) -> FloatArray:
        """The parameters of design rows `rows` (R, columns) under each draw (D, draw columns): (D, R, k)."""
        k = len(self.base_names)
        if self.pooled:
            blocks = draws[:, : len(self.groups) * k].reshape(draws.shape[0], len(self.groups), k)
            return blocks[:, self.group_of(rows), :]
        log_p = np.repeat(np.log(draws[:, None, :k]), rows.shape[0], axis=1)
        at = 0
        for process in self.covariates.processes:
            width = len(self.covariates.design_names(process))
            slots = np.asarray(self.slots.get(process, ()), dtype=np.intp)
            if width and slots.size:
                eta = rows[:, at : at + width] @ draws[:, k + slots].T  # (R, D)
                for param, sign in self.effects.get(process, ()):
                    log_p[:, :, self.base_names.index(param)] += sign * eta.T
            at += width
        return np.exp(log_p)

    def pattern_draws(self, draws: FloatArray, row: FloatArray) -> FloatArray:
        """One pattern's parameters under each draw, (D, k)."""
        return self.row_draws(draws, row[None, :])[:, 0, :]

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_names": list(self.base_names),
            "covariates": self.covariates.to_dict(),
            "effects": {p: [list(e) for e in moves] for p, moves in self.effects.items()},
            "slots": {p: list(s) for p, s in self.slots.items()},
            "pooled": self.pooled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CustomerLayout:
        return cls(
            base_names=tuple(data["base_names"]),
            covariates=CovariateSet.from_dict(data["covariates"]),
            effects={p: tuple((str(n), float(s)) for n, s in moves) for p, moves in data.get("effects", {}).items()},
            slots={p: tuple(map(int, s)) for p, s in data.get("slots", {}).items()},
            pooled=bool(data.get("pooled", False)),
        )


@dataclass
class Posterior:
    """Posterior draws of a model's parameters (natural scale, chains stacked) and how they were obtained."""

    model_name: str
    param_names: tuple[str, ...]
    draws: FloatArray
    diagnostics: Diagnostics
    priors: dict[str, dict[str, Any]]
    idata: Any = None  # arviz.InferenceData of the fit (None when not kept)
    mle: dict[str, float] | None = None
    #: a model with covariates or pooled groups: how the draws give each customer's parameters (None: every
    #: customer has the draws' parameters)
    layout: CustomerLayout | None = None
    #: a pooled fit: per group, its parameters, the separate fit's and the shrinkage toward the population
    pooling: dict[str, Any] | None = None
    #: parameters the fit held fixed rather than sampled (`clv.model.HeldParameters.record`: the regularity
    #: models' k, and how it was chosen); their draws are constant columns
    held: dict[str, Any] | None = None

    def mean(self) -> dict[str, float]:
        return dict(zip(self.param_names, map(float, self.draws.mean(axis=0)), strict=True))

    def point_result(self) -> FitResult:
        """The posterior mean as a maximum-likelihood-style fit result, for a point model (summaries, plug-in
        predictions): the base parameters, and with covariates the coefficients g by process and design column
        with their encoding; a pooled fit gives the population's parameters exp(E[mu_j]) (its groups' own are in
        `pooling`)."""
        mean = self.mean()
        layout = self.layout
        if layout is None:
            return FitResult(params=mean)
        if layout.pooled:
            return FitResult(params={n: float(np.exp(mean[f"mu_log_{n}"])) for n in layout.base_names})
        k = len(layout.base_names)
        coefficients = {
            process: {
                design: float(mean[self.param_names[k + slot]])
                for design, slot in zip(layout.covariates.design_names(process), slots, strict=True)
            }
            for process, slots in layout.slots.items()
        }
        params = {n: mean[n] for n in layout.base_names}
        return FitResult(params=params, coefficients=coefficients, covariates=layout.covariates)

    def subsample(self, n: int, seed: int) -> FloatArray:
        """n draws without replacement (all of them when there are fewer), in a seeded random order."""
        rng = np.random.default_rng(seed)
        size = self.draws.shape[0]
        rows = rng.permutation(size)[: min(n, size)]
        return self.draws[np.sort(rows)]

    def summary(self, level: float = 0.9) -> dict[str, Any]:
        """Posterior means (as params), sd and a central interval per parameter, and the diagnostics."""
        lo, hi = (1 - level) / 2, (1 + level) / 2
        table = {}
        for j, name in enumerate(self.param_names):
            column = self.draws[:, j]
            table[name] = {
                "mean": float(column.mean()),
                "sd": float(column.std(ddof=1)),
                "median": float(np.median(column)),
                f"q{lo * 100:g}": float(np.quantile(column, lo)),
                f"q{hi * 100:g}": float(np.quantile(column, hi)),
                **self.diagnostics.per_param.get(name, {}),
            }
        return {
            "name": self.model_name,
            "params": self.mean(),
            "posterior": table,
            "maximum_likelihood": self.mle,
            "priors": self.priors,
            "diagnostics": self.diagnostics.to_dict(),
            "n_draws": int(self.draws.shape[0]),
            "layout": None if self.layout is None else self.layout.to_dict(),
            "pooling": self.pooling,
            "held": self.held,
        }


def warn_or_raise(posterior: Posterior, strict: bool) -> None:
    """Say loudly when the diagnostics fail: a ConvergenceWarning, or with `strict` a FitError."""
    if posterior.diagnostics.passed:
        return
    message = f"{posterior.model_name} posterior fails its diagnostics: " + "; ".join(posterior.diagnostics.problems)
    if strict:
        raise FitError(message, hint="sample longer (bayes.draws, bayes.tune) or drop --strict to accept it")
    warnings.warn(message, ConvergenceWarning, stacklevel=2)
