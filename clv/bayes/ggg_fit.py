"""Pareto/GGG's posterior as a `Posterior`: the Gibbs sampler (`clv.bayes.ggg_gibbs`) started where BTYDplus
starts it (the Pareto/NBD's maximum-likelihood r, alpha, s, beta and t = gamma = 1), its heterogeneity draws
with the same diagnostics as the NUTS fits (R-hat and bulk and tail effective sample sizes by ArviZ, checked
against `bayes.r_hat_max` and `bayes.ess_min`).

The draws of a `Posterior` are the six heterogeneity parameters; the customers' latents are drawn again, given
them, wherever a prediction needs them (`clv.purchase.pareto_ggg`), so that a saved posterior predicts exactly
as the fit did.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from clv.bayes.ggg_gibbs import HYPER_NAMES, HYPER_PRIOR, GibbsSettings, sample_chains
from clv.bayes.posterior import Diagnostics, Posterior
from clv.config import BayesConfig

__all__ = ["fit_ggg_posterior", "sample_posterior"]


def _start(rfm: pd.DataFrame) -> np.ndarray:
    from clv.purchase.pareto_nbd import ParetoNBDModel

    start = {"t": 1.0, "gamma": 1.0, "r": 0.5, "alpha": 5.0, "s": 0.5, "beta": 10.0}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start |= ParetoNBDModel(starts=1).fit(rfm[["frequency", "recency", "T"]]).params_
    except Exception:  # a start point only: the sampler runs from the defaults
        pass
    return np.array([start[n] for n in HYPER_NAMES])


def _diagnostics(
    hyper: np.ndarray, settings: GibbsSettings, seconds: float, r_hat_max: float, ess_min: float
) -> Diagnostics:
    import arviz as az

    diagnostics = Diagnostics(
        inference="gibbs",
        sampler="clv Gibbs (Numba)",
        chains=settings.chains,
        draws=settings.draws,
        tune=settings.warmup,
        seconds=round(seconds, 3),
        sampling_seconds=round(seconds, 3),
        compile_seconds=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = az.from_dict(posterior={n: hyper[:, :, j] for j, n in enumerate(HYPER_NAMES)})
        table: Any = az.summary(data, kind="diagnostics", round_to="none")
    for name in HYPER_NAMES:
        row: Any = table.loc[name]
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
    if seconds > 0:
        diagnostics.ess_bulk_per_second = round(diagnostics.ess_bulk_min / seconds, 1)
    if settings.chains > 1 and (not np.isfinite(diagnostics.r_hat_max) or diagnostics.r_hat_max > r_hat_max):
        worst = max(diagnostics.per_param, key=lambda n: diagnostics.per_param[n]["r_hat"])
        diagnostics.problems.append(f"R-hat {diagnostics.r_hat_max:.4f} > {r_hat_max} (worst: {worst})")
    low = min(diagnostics.ess_bulk_min, diagnostics.ess_tail_min)
    if not np.isfinite(low) or low < ess_min:
        worst = min(diagnostics.per_param, key=lambda n: diagnostics.per_param[n]["ess_bulk"])
        diagnostics.problems.append(f"effective sample size {low:.0f} < {ess_min:g} (worst: {worst})")
    return diagnostics


def sample_posterior(
    rfm: pd.DataFrame, settings: GibbsSettings, r_hat_max: float = 1.01, ess_min: float = 400.0
) -> Posterior:
    """Run the sampler on the histories of `rfm` (needs `sum_log_intervals`) and return its heterogeneity
    draws, chains stacked, with their diagnostics."""
    from clv.purchase.pareto_ggg import history_columns

    x, t_x, T, S = history_columns(rfm)
    draws = sample_chains(x, t_x, T, S, _start(rfm), settings)
    diagnostics = _diagnostics(draws.hyper, settings, draws.seconds, r_hat_max, ess_min)
    a0, b0 = HYPER_PRIOR
    import arviz as az

    idata = az.from_dict(posterior={n: draws.hyper[:, :, j] for j, n in enumerate(HYPER_NAMES)})
    return Posterior(
        model_name="pareto_ggg",
        param_names=HYPER_NAMES,
        draws=draws.hyper.reshape(-1, len(HYPER_NAMES)),
        diagnostics=diagnostics,
        priors={n: {"distribution": "Gamma", "alpha": a0, "beta": b0} for n in HYPER_NAMES},
        idata=idata,
    )


def fit_ggg_posterior(rfm: pd.DataFrame, options: BayesConfig, seed: int) -> Posterior:
    """`sample_posterior` with the run's Bayesian settings: `bayes.chains` chains on `bayes.cores` threads,
    `bayes.tune` warm-up sweeps and `bayes.draws` kept per chain (every sweep kept)."""
    settings = GibbsSettings(
        chains=options.chains,
        warmup=options.tune,
        draws=options.draws,
        thin=1,
        seed=seed,
        workers=options.cores,
    )
    return sample_posterior(rfm, settings, options.r_hat_max, options.ess_min)
