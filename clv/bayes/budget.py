"""How long a fit will take, estimated from the number of unique histories before it starts: the choice of
`bayes.inference: auto` and the warnings of `clv evaluate` before a slow candidate.

A fit's cost is that of its gradient evaluations, and a gradient costs one pass over the unique (frequency,
recency, T) rows (customers sharing a history share a row) plus a fixed overhead per call. The NUTS figures below
were measured on a 2-core machine with the compiled likelihood graphs sampled by nutpie (`clv.bayes.graphs`,
`clv.bayes.nutpie_cache`): BG/NBD 400 s on 37,801 unique rows and 2.6 s on CDNOW's 1,016, Gamma-Gamma 100 s on
46,885, Pareto/NBD 32 s on CDNOW, 4 chains x 2,000 iterations. They are estimates for a decision and a warning
(within a factor of about 2 where the parameters are like CDNOW's), not promises: Pareto/NBD at its no-dropout
limit (the online retail export: s 0.04, beta 675) sampled for 350 s against 76 s estimated, its 2F1 fraction
being long there and its trajectories longer. The maximum-likelihood figures are those of the NumPy likelihoods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from clv.config import BayesConfig

__all__ = ["InferenceChoice", "choose_inference", "gibbs_seconds", "mle_seconds", "nuts_seconds"]

#: seconds per unique row of one gradient evaluation of the log-likelihood, by model: the compiled graph under
#: nutpie (NUTS), and the NumPy likelihood (maximum likelihood; measured on 200,000 rows)
_ROW_SECONDS = {
    "bgnbd": 0.35e-6,
    "mbgnbd": 0.35e-6,
    "pareto_nbd": 1.3e-6,
    "bgbb": 0.35e-6,
    "gamma_gamma": 0.08e-6,
}
_MLE_ROW_SECONDS = {
    "bgnbd": 0.35e-6,
    "mbgnbd": 0.3e-6,
    "pareto_nbd": 0.7e-6,
    "bgbb": 0.35e-6,
    "gamma_gamma": 0.25e-6,
}
#: the sampler's fixed cost per gradient (nutpie's step and the call into the compiled function), seconds
_CALL_SECONDS = 20e-6
#: leapfrog steps per NUTS iteration with nutpie's low-rank mass matrix (measured on CDNOW: 5.3 to 5.8)
_LEAPFROGS: dict[str, int] = {}
_DEFAULT_LEAPFROGS = 6
#: building the model and loading its compiled code before the first draw, seconds (compiling it the first time
#: on a machine takes 10-20 s more: `clv.bayes.nutpie_cache`)
_SETUP_SECONDS = 3.0
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


#: Pareto/GGG's Gibbs sampler (`clv.bayes.ggg_gibbs`): seconds per customer and sweep on one thread, measured on
#: grocery and CDNOW (1,525 and 2,357 customers) on 2 shared cores: 1.0e-5 to 1.3e-5
_GIBBS_CUSTOMER_SECONDS = 1.2e-5
#: sweeps of the customers' latents along the prediction draws (`clv.bayes.ggg_gibbs.sample_latents`): a warm-up
#: and 2 per draw, once for the value and once for the holdout
_LATENT_WARMUP = 200


def gibbs_seconds(n_customers: int, options: BayesConfig) -> float:
    """Expected seconds of a Pareto/GGG fit and its posterior predictions: chains x (tune + draws) sweeps over
    the customers on min(cores, chains) threads, then the latents along `bayes.prediction_draws` twice."""
    waves = math.ceil(options.chains / max(1, min(options.cores, options.chains)))
    sweeps = waves * (options.tune + options.draws) + 2 * (_LATENT_WARMUP + 2 * options.prediction_draws)
    return sweeps * n_customers * _GIBBS_CUSTOMER_SECONDS


def mle_seconds(model: str, n_unique: int) -> float:
    """Expected seconds of a maximum-likelihood fit (`clv.mle.maximize_likelihood`)."""
    evaluations = _MLE_EVALUATIONS.get(model, _DEFAULT_MLE_EVALUATIONS)
    return evaluations * n_unique * _MLE_ROW_SECONDS.get(model, max(_MLE_ROW_SECONDS.values()))


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
