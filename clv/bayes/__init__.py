"""Bayesian fits in PyMC (NUTS, Laplace, Pathfinder, ADVI) of the maximum-likelihood models' likelihoods, and
posterior predictions that scale: per-customer credible and predictive intervals, the revenue distribution."""

from clv.bayes.fit import DEFAULT_PRIOR, Diagnostics, Posterior, fit_posterior
from clv.bayes.predict import BayesValue, posterior_predict, predictive_purchases, value_posterior

__all__ = [
    "DEFAULT_PRIOR",
    "BayesValue",
    "Diagnostics",
    "Posterior",
    "fit_posterior",
    "posterior_predict",
    "predictive_purchases",
    "value_posterior",
]
