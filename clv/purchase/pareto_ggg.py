"""Pareto/GGG: Platzer & Reutterer (2016), "Ticking away the moments: timing regularity helps to better predict
customer activity", Marketing Science 35(5), 779-799 (BTYDplus `pggg.*`).

Each customer has a regularity k ~ Gamma(t, gamma), a purchase rate lambda ~ Gamma(r, alpha) and a dropout rate
mu ~ Gamma(s, beta); intervals between purchases are Gamma(k, k lambda) and the lifetime is Exp(mu)
(`clv.purchase.ggg` holds the customer-level formulas). There is no closed form for a history's likelihood with
the customer's (k, lambda, mu) integrated out, so the model is fitted only by Bayesian inference with the
customers' latent variables (`clv.bayes.ggg_gibbs`); `params_` are the posterior means of the six heterogeneity
parameters. Every prediction for a set of histories integrates each customer's latents over their posterior
given the heterogeneity parameters (drawn by `clv.bayes.ggg_gibbs.sample_latents`) and, where the model has no
closed form, over simulated futures (`clv.purchase.ggg.simulate_future`); a prediction of the point model
uses `latent_draws` draws at `params_`, the posterior predictions (`predict_draws`, the Bayesian value) one
latent draw per posterior draw. Simulated expectations carry Monte Carlo error of order 1/sqrt(latent_draws x
paths) relative per customer.

Needs the RFM column `sum_log_intervals` (the log intervals' sum: `clv.data.rfm`).
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv.errors import ClvError
from clv.model import FitResult, LikelihoodProblem, check_output
from clv.purchase import ggg
from clv.purchase.base import PurchaseModel, check_horizon, check_horizons, check_rate, rfm_arrays
from clv.purchase.cnbd import SUM_LOG_INTERVALS, sum_log_intervals

__all__ = ["ParetoGGGModel", "history_columns"]

FloatArray = NDArray[np.float64]
#: simulated futures per latent draw in the point model's expectations
_PATHS = 4
_NEW_CUSTOMERS = 20_000


def history_columns(rfm: pd.DataFrame) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(x, t_x, T, S) of a frame, S = `sum_log_intervals` checked as the regularity models check it: present,
    finite, 0 where x = 0 (`clv.purchase.cnbd.sum_log_intervals`)."""
    x, t_x, T = rfm_arrays(rfm)
    return x, t_x, T, sum_log_intervals(rfm)


def _key(*arrays: ArrayLike) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
    return digest.hexdigest()


class ParetoGGGModel(PurchaseModel):
    """Pareto/GGG (module docstring), fitted by Gibbs sampling; `fit` runs the sampler."""

    name: ClassVar[str] = "pareto_ggg"
    param_names: ClassVar[tuple[str, ...]] = ("t", "gamma", "r", "alpha", "s", "beta")
    time_params: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    estimation_methods: ClassVar[tuple[str, ...]] = ("bayes",)
    customer_latents: ClassVar[bool] = True

    def __init__(
        self,
        *,
        chains: int = 2,
        warmup: int = 500,
        draws: int = 500,
        thin: int = 2,
        workers: int = 2,
        latent_draws: int = 200,
        starts: int = 4,
        seed: int = 42,
        max_iter: int = 2000,
    ) -> None:
        """The sampler's settings (`clv.bayes.ggg_gibbs.GibbsSettings`): chains, warm-up sweeps, kept draws per
        chain, thinning, threads; `latent_draws`: latent draws per customer in the point model's predictions."""
        super().__init__(starts=starts, seed=seed, max_iter=max_iter)
        for label, value in (("chains", chains), ("draws", draws), ("thin", thin), ("latent_draws", latent_draws)):
            if int(value) != value or value < 1:
                raise ClvError(f"{label} must be a whole number >= 1, got {value!r}")
        self.chains, self.warmup, self.draws, self.thin = int(chains), int(warmup), int(draws), int(thin)
        self.workers, self.latent_draws = int(workers), int(latent_draws)
        self._cache: dict[str, tuple[FloatArray, FloatArray, FloatArray]] = {}

    @property
    def covariate_columns(self) -> list[str]:
        """The per-customer column the model reads beside (frequency, recency, T): customers are alike only when
        their `sum_log_intervals` is too (`clv.compress.unique_histories`)."""
        return [SUM_LOG_INTERVALS]

    # --- fitting -------------------------------------------------------------------------------------------

    def fit(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> ParetoGGGModel:
        """Sample the posterior (`clv.bayes.ggg_fit.sample_posterior`) and keep its means as `params_`; the
        posterior is `posterior_`."""
        if weights is not None:
            raise ClvError("Pareto/GGG is fitted on the customers themselves: weights are not supported")
        from clv.bayes.ggg_fit import sample_posterior
        from clv.bayes.ggg_gibbs import GibbsSettings

        settings = GibbsSettings(self.chains, self.warmup, self.draws, self.thin, self.seed, self.workers)
        self.posterior_ = sample_posterior(rfm, settings)
        self.result_ = FitResult(params=self.posterior_.mean(), n_customers=len(rfm))
        return self

    def _not_by_likelihood(self) -> ClvError:
        return ClvError(
            "Pareto/GGG has no closed-form likelihood of a history: it is fitted by Bayesian inference only",
            hint="model.method: bayes (the Gibbs sampler of clv.bayes.ggg_gibbs)",
        )

    def _loglik_grad(
        self, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        raise self._not_by_likelihood()

    def start_point(self) -> FloatArray:
        raise self._not_by_likelihood()

    def likelihood_problem(self, rfm: pd.DataFrame, weights: ArrayLike | None = None) -> LikelihoodProblem:
        raise self._not_by_likelihood()

    def loglik(self, rfm: pd.DataFrame) -> FloatArray:
        raise self._not_by_likelihood()

    # --- latents -------------------------------------------------------------------------------------------

    @classmethod
    def latents_for(
        cls, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, S: FloatArray, seed: int
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The customers' (k, lambda, mu), (draws, customers) each, one latent draw per row of `params`
        (heterogeneity parameters in `param_names` order)."""
        from clv.bayes.ggg_gibbs import sample_latents

        return sample_latents(x, t_x, T, S, np.atleast_2d(np.asarray(params, dtype=float)), seed=seed)

    def _latents(self, rfm: pd.DataFrame) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """(k, lambda, mu) draws at `params_` for the frame's histories (cached per frame), with t_x and T."""
        x, t_x, T, S = history_columns(rfm)
        point = np.asarray(self._p(), dtype=float)
        key = _key(x, t_x, T, S, point, [self.latent_draws, self.seed])
        if key not in self._cache:
            self._cache = {key: self.latents_for(np.tile(point, (self.latent_draws, 1)), x, t_x, T, S, self.seed)}
        k, lam, mu = self._cache[key]
        return k, lam, mu, t_x, T

    def _rng(self, salt: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16)])

    # --- predictions ---------------------------------------------------------------------------------------

    def probability_alive(self, rfm: pd.DataFrame, at: float = 0.0) -> FloatArray:
        """P(alive at T + at): the mean over latent draws of P(alive at T | k, lambda, mu) e^(-mu at)."""
        k, lam, mu, t_x, T = self._latents(rfm)
        alive = np.exp(ggg.log_p_alive(k, lam, mu, t_x[None, :], T[None, :]) - mu * float(at))
        return check_output(alive.mean(axis=0), "P(alive)", rfm)

    def expected_purchases(self, rfm: pd.DataFrame, horizon: float) -> FloatArray:
        return self.expected_purchases_curve(rfm, [check_horizon(horizon)])[:, 0]

    def expected_purchases_curve(self, rfm: pd.DataFrame, horizons: ArrayLike) -> FloatArray:
        """Expected purchases in (T, T + h] at each horizon: per latent draw, P(alive) times the purchases of
        `_PATHS` simulated futures of a living customer, averaged."""
        points = check_horizons(horizons)
        k, lam, mu, t_x, T = self._latents(rfm)
        alive = np.exp(ggg.log_p_alive(k, lam, mu, t_x[None, :], T[None, :]))
        rng = self._rng("expected_purchases")
        total = np.zeros((t_x.size, points.size))
        for _ in range(_PATHS):
            counts, _ = ggg.simulate_future(
                k, lam, mu, t_x[None, :], T[None, :], points, rng, alive=np.ones(k.shape, bool)
            )
            total += np.einsum("dn,dnh->nh", alive, counts)
        return check_output(total / (_PATHS * k.shape[0]), "expected purchases", rfm)

    def probability_of_purchases(self, rfm: pd.DataFrame, n: int, horizon: float) -> FloatArray:
        """P(exactly n purchases in (T, T + horizon]) from simulated futures (alive or not drawn per path)."""
        if int(n) != n or n < 0:
            raise ClvError(f"n must be a whole number >= 0, got {n!r}")
        k, lam, mu, t_x, T = self._latents(rfm)
        rng = self._rng("probability_of_purchases")
        hits = np.zeros(t_x.size)
        for _ in range(_PATHS):
            counts, _ = ggg.simulate_future(k, lam, mu, t_x[None, :], T[None, :], [check_horizon(horizon)], rng)
            hits += (counts[..., 0] == n).sum(axis=0)
        return check_output(hits / (_PATHS * k.shape[0]), "probability of purchases", rfm)

    def simulate_purchases(self, rfm: pd.DataFrame, horizon: float, rng: np.random.Generator) -> FloatArray:
        """One draw per customer: a latent draw at random, then its future."""
        k, lam, mu, t_x, T = self._latents(rfm)
        pick = rng.integers(0, k.shape[0], size=t_x.size)
        cols = np.arange(t_x.size)
        counts = ggg.simulate_holdout(
            k[pick, cols], lam[pick, cols], mu[pick, cols], t_x, T, check_horizon(horizon), rng
        )
        return counts.astype(float)

    def expected_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> FloatArray:
        """DERT by simulated futures, to the time where the discount factor falls below e^(-12) (the rest is at
        most that share of the total)."""
        rate = check_rate(discount_rate)
        if rate <= 0:
            raise ClvError("DERT needs a discount rate > 0 (without discounting the sum does not converge)")
        k, lam, mu, t_x, T = self._latents(rfm)
        rng = self._rng("residual")
        total = np.zeros(t_x.size)
        for _ in range(_PATHS):
            _, discounted = ggg.simulate_future(
                k, lam, mu, t_x[None, :], T[None, :], [12.0 / rate], rng, discount_rate=rate
            )
            total += discounted.sum(axis=0)
        return check_output(total / (_PATHS * k.shape[0]), "DERT", rfm)

    def expected_purchases_new_customer(self, horizon: float | ArrayLike) -> FloatArray:
        """Expected repeat purchases in (0, h] of a new customer: `_NEW_CUSTOMERS` customers of the population
        simulated once to the longest horizon (first purchase at 0, Gamma(k, k lambda) intervals, Exp(mu)
        lifetime), their repeat purchases counted by each horizon."""
        from clv.purchase.base import check_new_customer_horizons

        points = check_new_customer_horizons(horizon)
        flat = points.ravel()
        t, gamma, r, alpha, s, beta = self._p()
        rng = self._rng("new_customer")
        k, lam, mu = (
            np.maximum(rng.gamma(shape, 1.0 / rate, _NEW_CUSTOMERS), 1e-12)
            for shape, rate in ((t, gamma), (r, alpha), (s, beta))
        )
        b = k * lam
        end = np.minimum(flat.max(initial=0.0), rng.exponential(size=_NEW_CUSTOMERS) / mu)
        clock = rng.gamma(k, 1.0 / b)
        times = []
        active = clock <= end
        while active.any():
            idx = np.flatnonzero(active)
            times.append(clock[idx].copy())
            clock[idx] += rng.gamma(k[idx], 1.0 / b[idx])
            active[idx] = clock[idx] <= end[idx]
        purchases = np.sort(np.concatenate(times)) if times else np.zeros(0)
        counts = np.searchsorted(purchases, flat, side="right") / _NEW_CUSTOMERS
        return check_output(counts.astype(float).reshape(points.shape), "expected purchases")

    # --- posterior draws -----------------------------------------------------------------------------------

    @classmethod
    def predict_draws(cls, params: FloatArray, rfm: pd.DataFrame, method: str, **kwargs: Any) -> FloatArray:
        """A prediction per posterior draw (rows of `params`), shape (draws, rows): one latent draw per row of
        `params` (`latents_for`, seeded by `seed`, default 0), then P(alive) (`probability_alive`, with `at`),
        or one simulated future per latent draw (`expected_purchases`, `probability_of_purchases`)."""
        x, t_x, T, S = history_columns(rfm)
        seed = int(kwargs.pop("seed", 0))
        k, lam, mu = cls.latents_for(params, x, t_x, T, S, seed)
        alive = np.exp(ggg.log_p_alive(k, lam, mu, t_x[None, :], T[None, :]))
        rng = np.random.default_rng([seed, 1])
        if method == "probability_alive":
            return np.asarray(alive * np.exp(-mu * float(kwargs.get("at", 0.0))))
        if method == "expected_purchases":
            counts, _ = ggg.simulate_future(
                k, lam, mu, t_x[None, :], T[None, :], [kwargs["horizon"]], rng, alive=np.ones(k.shape, bool)
            )
            return np.asarray(alive * counts[..., 0])
        if method == "probability_of_purchases":
            counts, _ = ggg.simulate_future(k, lam, mu, t_x[None, :], T[None, :], [kwargs["horizon"]], rng)
            return np.asarray((counts[..., 0] == int(kwargs["n"])).astype(float))
        raise ClvError(f"Pareto/GGG has no posterior prediction {method!r}")

    @classmethod
    def latent_curve_draws(
        cls,
        latents: tuple[FloatArray, FloatArray, FloatArray],
        t_x: FloatArray,
        T: FloatArray,
        points: FloatArray,
        horizon: float,
        rng: np.random.Generator,
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray, FloatArray]:
        """What the Bayesian value needs per draw and history from the latents (k, lambda, mu), each (draws,
        histories): P(alive) (draws, histories); each history its own group; the expected purchases of a living
        customer by each of `points` (draws, histories, points), the mean of `_PATHS` simulated futures; and one
        simulated count over `horizon` (alive or not drawn), for the predictive intervals."""
        k, lam, mu = latents
        alive = np.exp(ggg.log_p_alive(k, lam, mu, t_x[None, :], T[None, :]))
        living = np.ones(k.shape, dtype=bool)
        curve = np.zeros((*k.shape, np.size(points)))
        for _ in range(_PATHS):
            counts, _ = ggg.simulate_future(k, lam, mu, t_x[None, :], T[None, :], points, rng, alive=living)
            curve += counts
        simulated = ggg.simulate_holdout(k, lam, mu, t_x[None, :], T[None, :], horizon, rng).astype(float)
        return alive, np.arange(t_x.size), curve / _PATHS, simulated
