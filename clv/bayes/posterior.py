"""Posterior draws and their diagnostics: what a Bayesian fit produces, saved and loaded without PyMC.

Kept apart from `clv.bayes.fit` (which imports PyMC) so that scoring with a saved posterior, and the
maximum-likelihood path, do not pay PyMC's import.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clv.config import PriorConfig
from clv.errors import ConvergenceWarning, FitError

__all__ = ["DEFAULT_PRIOR", "Diagnostics", "Posterior", "warn_or_raise"]

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

    def mean(self) -> dict[str, float]:
        return dict(zip(self.param_names, map(float, self.draws.mean(axis=0)), strict=True))

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
        }


def warn_or_raise(posterior: Posterior, strict: bool) -> None:
    """Say loudly when the diagnostics fail: a ConvergenceWarning, or with `strict` a FitError."""
    if posterior.diagnostics.passed:
        return
    message = f"{posterior.model_name} posterior fails its diagnostics: " + "; ".join(posterior.diagnostics.problems)
    if strict:
        raise FitError(message, hint="sample longer (bayes.draws, bayes.tune) or drop --strict to accept it")
    warnings.warn(message, ConvergenceWarning, stacklevel=2)
