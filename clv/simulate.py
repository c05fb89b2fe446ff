"""Synthetic customers drawn from the models' own processes, for recovery tests and benchmarks.

Every function takes a seed (or a Generator) and nothing else random. Draws are vectorised: a customer's
purchases in (0, T] for an immortal process are K ~ Poisson(lambda T); the k-th of K uniform event times on
(0, T] is T * Beta(k, K - k + 1), so the recency of the x-th purchase is drawn directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv import seeds

__all__ = [
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "simulate_mbgnbd",
    "simulate_pareto_nbd",
    "simulate_transactions",
]

FloatArray = NDArray[np.float64]


def _recency(rng: np.random.Generator, x: NDArray[np.int64], k: NDArray[np.int64], window: FloatArray) -> FloatArray:
    """Time of the x-th of k uniform events on (0, window]; 0 where x = 0."""
    safe_x = np.maximum(x, 1)
    draw = rng.beta(safe_x, np.maximum(k - safe_x + 1, 1))
    return np.where(x > 0, window * draw, 0.0)


def _frame(x: NDArray[np.int64], t_x: FloatArray, T: FloatArray, unit: float) -> pd.DataFrame:
    # Bin times to whole days (unit = days per time unit), as real data is, keeping recency <= T.
    t_x = np.floor(t_x * unit) / unit
    return pd.DataFrame({"customer_id": np.arange(x.size), "frequency": x, "recency": np.minimum(t_x, T), "T": T})


def _beta_geometric(
    n: int, r: float, alpha: float, a: float, b: float, T: FloatArray, c: int, seed: int, unit: float
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    k = rng.poisson(lam * T)
    survived = rng.geometric(p) - c  # purchases made before dropping out (BG: >= 1, MBG: >= 0)
    x = np.minimum(k, survived)
    return _frame(x, _recency(rng, x, k, T), T, unit)


def _cohort(n: int, T: float | FloatArray, seed: int) -> FloatArray:
    if np.ndim(T) == 0:
        # a cohort acquired over the first quarter of the window, like CDNOW's
        rng = seeds.rng(seed, "simulated_cohort")
        top = float(T)
        return top - np.floor(rng.uniform(0.0, top / 4.0, n) * 7.0) / 7.0
    return np.asarray(T, dtype=float)


def simulate_bgnbd(
    n: int,
    r: float,
    alpha: float,
    a: float,
    b: float,
    T: float | FloatArray = 39.0,
    seed: int = 0,
    unit: float = 7.0,
) -> pd.DataFrame:
    """n customers from the BG/NBD process (FHL 2005, Sec. 2), times in units with `unit` days each."""
    return _beta_geometric(n, r, alpha, a, b, _cohort(n, T, seed), 0, seed, unit)


def simulate_mbgnbd(
    n: int,
    r: float,
    alpha: float,
    a: float,
    b: float,
    T: float | FloatArray = 39.0,
    seed: int = 0,
    unit: float = 7.0,
) -> pd.DataFrame:
    """n customers from the MBG/NBD process (Batislam et al. 2007): drop-out possible right after the first purchase."""
    return _beta_geometric(n, r, alpha, a, b, _cohort(n, T, seed), 1, seed, unit)


def simulate_pareto_nbd(
    n: int,
    r: float,
    alpha: float,
    s: float,
    beta: float,
    T: float | FloatArray = 39.0,
    seed: int = 0,
    unit: float = 7.0,
) -> pd.DataFrame:
    """n customers from the Pareto/NBD process (SMC 1987): exponential lifetimes with gamma-distributed rates."""
    rng = np.random.default_rng(seed)
    T_arr = _cohort(n, T, seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    mu = rng.gamma(s, 1.0 / beta, n)
    alive_for = np.minimum(rng.exponential(1.0 / mu), T_arr)
    x = rng.poisson(lam * alive_for)
    return _frame(x, _recency(rng, x, x, alive_for), T_arr, unit)


def simulate_gamma_gamma(frequency: NDArray[np.int64], p: float, q: float, v: float, seed: int = 0) -> FloatArray:
    """Mean spend of each customer's `frequency` transactions (0 where frequency = 0) under Gamma-Gamma."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / v, frequency.size)
    x = np.asarray(frequency)
    total = rng.gamma(np.maximum(p * x, 1e-12), 1.0 / nu)
    return np.where(x > 0, total / np.maximum(x, 1), 0.0)


def simulate_transactions(
    customers: int, transactions: int, start: str = "2020-01-01", days: int = 730, seed: int = 0
) -> pd.DataFrame:
    """A raw transaction log (customer_id, date, amount) of about `transactions` rows, for data benchmarks:
    gamma-distributed purchase rates, uniform dates, gamma amounts, a few returns."""
    rng = np.random.default_rng(seed)
    weights = rng.gamma(0.8, 1.0, customers)
    ids = rng.choice(customers, size=transactions, p=weights / weights.sum())
    day = rng.integers(0, days, transactions)
    amount = np.round(rng.gamma(2.0, 25.0, transactions), 2)
    amount[rng.random(transactions) < 0.01] *= -1.0
    dates = np.datetime64(start, "D") + day.astype("timedelta64[D]")
    return pd.DataFrame({"customer_id": ids, "date": dates.astype(str), "amount": amount})
