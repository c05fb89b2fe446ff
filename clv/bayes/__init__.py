"""Bayesian fits in PyMC (NUTS, Laplace, Pathfinder, ADVI) of the maximum-likelihood models' likelihoods, and
posterior predictions that scale: per-customer credible and predictive intervals, the revenue distribution.

`fit_posterior` imports PyMC on first use; everything else here works without it.
"""

from typing import Any

from clv.bayes.posterior import DEFAULT_PRIOR, Diagnostics, Posterior, warn_or_raise
from clv.bayes.predict import (
    BayesValue,
    DrawOptions,
    ValueOptions,
    posterior_predict,
    predictive_purchases,
    value_posterior,
)

__all__ = [
    "DEFAULT_PRIOR",
    "BayesValue",
    "Diagnostics",
    "DrawOptions",
    "Posterior",
    "ValueOptions",
    "fit_posterior",
    "posterior_predict",
    "predictive_purchases",
    "value_posterior",
    "warn_or_raise",
]


def __getattr__(name: str) -> Any:
    if name == "fit_posterior":
        from clv.bayes.fit import fit_posterior

        return fit_posterior
    raise AttributeError(f"module 'clv.bayes' has no attribute {name!r}")
