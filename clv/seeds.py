"""Named random streams: every random draw comes from a seed plus the fixed offset of its stream, written once
here.

A stream's seed is `seed + STREAMS[name]`, where `seed` is the seed of the step that draws:
- a run's steps (`clv.pipeline`, `clv.evaluate.comparison`) offset the run's seed, `model.seed`;
- a posterior prediction (`clv.bayes.predict`) offsets the seed it is given;
- a simulation (`clv.simulate`) offsets the seed it is given.
Streams with the same offset and base share their random numbers. A step that draws from one stream only uses
the seed it is given as it is (`Posterior.subsample`, the Laplace fit's draws, the maximum-likelihood starts).

The offsets are those of the versions before this registry, kept so that a seed gives the same results across
versions: changing one changes every result drawn from it. A new stream takes an offset of its own.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STREAMS", "rng", "stream_seed"]

STREAMS: dict[str, int] = {
    # offsets of the run's seed
    "purchase_fit": 0,  # the purchase model's posterior fit
    "spend_fit": 1,  # the spend model's posterior fit
    "value": 3,  # posterior predictions and value over the horizon (`clv run`, `clv score`)
    "holdout_purchases": 7,  # predictive intervals of the holdout's purchases (the run's holdout check)
    "evaluation_value": 11,  # posterior predictions over the holdout of a candidate (model comparison)
    "evaluation_no_purchase": 13,  # posterior P(no purchase in the holdout) of a candidate (model comparison)
    "forecast_band": 17,  # parameter draws and process noise of the forecast band (`clv.evaluate.band`)
    # offsets of a posterior prediction's seed
    "purchase_draws": 0,  # which draws of the purchase posterior are used
    "spend_draws": 1,  # which draws of the spend posterior are used
    "purchase_simulation": 0,  # simulated purchases and spend of the predictive intervals
    "portfolio_noise": 2,  # the purchase process's noise in the predictive totals of the portfolio
    "predictive_noise": 4,  # the purchase process's noise in a predictive total of purchases (the holdout's)
    "purchase_latents": 5,  # the customers' latents drawn along the purchase posterior's draws (Pareto/GGG)
    # offsets of a simulation's seed
    "simulated_cohort": 1,  # the acquisition times of a simulated cohort
}


def stream_seed(seed: int, name: str) -> int:
    """The seed of stream `name` (a key of `STREAMS`) drawn from `seed`."""
    return seed + STREAMS[name]


def rng(seed: int, name: str) -> np.random.Generator:
    """A generator of stream `name` (a key of `STREAMS`) drawn from `seed`."""
    return np.random.default_rng(stream_seed(seed, name))
