"""How long a fit will take, estimated from the number of unique histories before it starts: the choice of
`bayes.inference: auto` and the warnings of `clv evaluate` before a slow candidate.

A fit's cost is that of its gradient evaluations, and a gradient costs one pass over the unique (frequency,
recency, T) rows (customers sharing a history share a row) plus a fixed overhead per call. The figures below
were measured on a 2-core machine with the likelihoods as PyTensor operations that call back into NumPy
(`clv.bayes.likelihood`): they are estimates for a decision and a warning (within a factor of about 2), not
promises; a faster likelihood path only needs new figures here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from clv.config import BayesConfig

__all__ = ["InferenceChoice", "choose_inference", "mle_seconds", "nuts_seconds"]

#: seconds per unique row of one gradient evaluation of the log-likelihood, by model (measured: 200,000 rows)
_ROW_SECONDS = {
    "bgnbd": 0.35e-6,
    "mbgnbd": 0.3e-6,
    "pareto_nbd": 0.7e-6,
    "bgbb": 0.35e-6,
    "gamma_gamma": 0.25e-6,
}
#: the sampler's fixed cost per gradient (PyMC's step and the call into NumPy), seconds
_CALL_SECONDS = 0.7e-3
#: leapfrog steps per NUTS iteration (tree depth 3 for most models; Pareto/NBD's posterior is more curved)
_LEAPFROGS = {"pareto_nbd": 31}
_DEFAULT_LEAPFROGS = 7
#: building and compiling the model before the first draw, seconds
_SETUP_SECONDS = 5.0
#: gradient evaluations of a maximum-likelihood fit (a few starts on a sample, Newton on all rows)
_MLE_EVALUATIONS = {"pareto_nbd": 60}
_DEFAULT_MLE_EVALUATIONS = 40


def _gradient_seconds(model: str, n_unique: int) -> float:
    return _CALL_SECONDS + n_unique * _ROW_SECONDS.get(model, max(_ROW_SECONDS.values()))


def nuts_seconds(model: str, n_unique: int, options: BayesConfig) -> float:
    """Expected seconds of NUTS: chains x (tune + draws) iterations, the chains on min(cores, chains) processes,
    each iteration `_LEAPFROGS` gradients of `_gradient_seconds`."""
    waves = math.ceil(options.chains / max(1, min(options.cores, options.chains)))
    iterations = waves * (options.tune + options.draws)
    leapfrogs = _LEAPFROGS.get(model, _DEFAULT_LEAPFROGS)
    return _SETUP_SECONDS + iterations * leapfrogs * _gradient_seconds(model, n_unique)


def mle_seconds(model: str, n_unique: int) -> float:
    """Expected seconds of a maximum-likelihood fit (`clv.mle.maximize_likelihood`)."""
    evaluations = _MLE_EVALUATIONS.get(model, _DEFAULT_MLE_EVALUATIONS)
    return evaluations * n_unique * _ROW_SECONDS.get(model, max(_ROW_SECONDS.values()))


@dataclass(frozen=True)
class InferenceChoice:
    """The inference a fit uses and why, in words (summary.json `diagnostics.choice`, the CLI)."""

    inference: Literal["nuts", "laplace", "pathfinder", "advi"]
    reason: str


def choose_inference(model: str, n_unique: int, options: BayesConfig) -> InferenceChoice:
    """`bayes.inference` as configured, or for `auto`: NUTS when its expected time (`nuts_seconds`) is within
    `bayes.nuts_budget_seconds`, else Laplace (whose Pareto-k check sends the fit back to NUTS when it fails,
    see `clv.bayes.fit.fit_posterior`)."""
    if options.inference != "auto":
        return InferenceChoice(options.inference, f"{options.inference} (bayes.inference)")
    expected = nuts_seconds(model, n_unique, options)
    budget = options.nuts_budget_seconds
    if expected <= budget:
        reason = f"auto: NUTS, expected {expected:,.0f} s on {n_unique:,} unique histories (budget {budget:,.0f} s)"
        return InferenceChoice("nuts", reason)
    reason = (
        f"auto: Laplace, NUTS would take about {expected:,.0f} s on {n_unique:,} unique histories "
        f"(budget {budget:,.0f} s)"
    )
    return InferenceChoice("laplace", reason)
