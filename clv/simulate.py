"""Synthetic customers drawn from the models' own processes, for recovery tests and benchmarks.

Every function takes a seed (or a Generator) and nothing else random. Draws are vectorised: a customer's
purchases in (0, T] for an immortal process are K ~ Poisson(lambda T); the k-th of K uniform event times on
(0, T] is T * Beta(k, K - k + 1), so the recency of the x-th purchase is drawn directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clv import seeds
from clv.errors import UsageError, first_ids

__all__ = [
    "bgnbd_purchases",
    "simulate_bgnbd",
    "simulate_bgnbd_log",
    "simulate_bgnbd_rows",
    "simulate_gamma_gamma",
    "simulate_gamma_gamma_rows",
    "simulate_mbgnbd",
    "simulate_mbgnbd_rows",
    "simulate_pareto_nbd",
    "simulate_pareto_nbd_rows",
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


def _rows_of(params: ArrayLike, names: tuple[str, ...], T: ArrayLike | None = None) -> tuple[FloatArray, FloatArray]:
    """Per-customer parameters as a (rows, k) array, checked finite and positive, and T broadcast to one value per
    row (checked finite and >= 0): a `UsageError` says which column, how many rows and the first of them."""
    P = np.asarray(params, dtype=float)
    if P.ndim != 2 or P.shape[1] != len(names):
        raise UsageError(f"parameters must have shape (customers, {len(names)}) in {names}; got shape {P.shape}")
    for j, name in enumerate(names):
        bad = ~(np.isfinite(P[:, j]) & (P[:, j] > 0))
        if bad.any():
            raise UsageError(
                f"{name} must be finite and > 0; {int(bad.sum())} customers violate this "
                f"(first rows: {first_ids(np.flatnonzero(bad))})"
            )
    T_arr = np.broadcast_to(np.asarray(0.0 if T is None else T, dtype=float), (P.shape[0],))
    bad = ~(np.isfinite(T_arr) & (T_arr >= 0))
    if bad.any():
        raise UsageError(
            f"T must be finite and >= 0; {int(bad.sum())} customers violate this "
            f"(first rows: {first_ids(np.flatnonzero(bad))})"
        )
    return P, np.array(T_arr)


def _same_rows(n: int, *params: float) -> FloatArray:
    """n customers with the same parameters, as the per-customer functions take them."""
    return np.tile(np.asarray(params, dtype=float), (n, 1))


def _beta_geometric_rows(params: ArrayLike, T: ArrayLike, c: int, seed: int, unit: float) -> pd.DataFrame:
    """One customer per row of params (r, alpha, a, b): lambda ~ Gamma(r_i, alpha_i), p ~ Beta(a_i, b_i), and a
    drop-out chance after each purchase (plus c at time 0), observed over (0, T_i]."""
    P, T_arr = _rows_of(params, ("r", "alpha", "a", "b"), T)
    rng = np.random.default_rng(seed)
    lam = rng.gamma(P[:, 0], 1.0 / P[:, 1])
    p = rng.beta(P[:, 2], P[:, 3])
    k = rng.poisson(lam * T_arr)
    survived = rng.geometric(p) - c  # purchases made before dropping out (BG: >= 1, MBG: >= 0)
    x = np.minimum(k, survived)
    return _frame(x, _recency(rng, x, k, T_arr), T_arr, unit)


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
    return _beta_geometric_rows(_same_rows(n, r, alpha, a, b), _cohort(n, T, seed), 0, seed, unit)


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
    return _beta_geometric_rows(_same_rows(n, r, alpha, a, b), _cohort(n, T, seed), 1, seed, unit)


def simulate_bgnbd_rows(params: ArrayLike, T: ArrayLike, seed: int = 0, unit: float = 7.0) -> pd.DataFrame:
    """One customer per row of params (customers, 4) in (r, alpha, a, b) from the BG/NBD process (FHL 2005,
    Sec. 2), each observed over (0, T_i] (T one value per customer, or one for all): customers with covariates
    (`clv.covariates.row_parameters`). `simulate_bgnbd` is this with equal rows (the same draws)."""
    return _beta_geometric_rows(params, T, 0, seed, unit)


def simulate_mbgnbd_rows(params: ArrayLike, T: ArrayLike, seed: int = 0, unit: float = 7.0) -> pd.DataFrame:
    """`simulate_bgnbd_rows` for the MBG/NBD process (Batislam et al. 2007)."""
    return _beta_geometric_rows(params, T, 1, seed, unit)


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
    return simulate_pareto_nbd_rows(_same_rows(n, r, alpha, s, beta), _cohort(n, T, seed), seed, unit)


def simulate_pareto_nbd_rows(params: ArrayLike, T: ArrayLike, seed: int = 0, unit: float = 7.0) -> pd.DataFrame:
    """One customer per row of params (customers, 4) in (r, alpha, s, beta) from the Pareto/NBD process (SMC
    1987): lambda ~ Gamma(r_i, alpha_i), mu ~ Gamma(s_i, beta_i), an exponential lifetime, observed over
    (0, T_i]. `simulate_pareto_nbd` is this with equal rows (the same draws)."""
    P, T_arr = _rows_of(params, ("r", "alpha", "s", "beta"), T)
    rng = np.random.default_rng(seed)
    lam = rng.gamma(P[:, 0], 1.0 / P[:, 1])
    mu = rng.gamma(P[:, 2], 1.0 / P[:, 3])
    alive_for = np.minimum(rng.exponential(1.0 / mu), T_arr)
    x = rng.poisson(lam * alive_for)
    return _frame(x, _recency(rng, x, x, alive_for), T_arr, unit)


def simulate_gamma_gamma(frequency: NDArray[np.int64], p: float, q: float, v: float, seed: int = 0) -> FloatArray:
    """Mean spend of each customer's `frequency` transactions (0 where frequency = 0) under Gamma-Gamma."""
    return simulate_gamma_gamma_rows(frequency, _same_rows(np.size(frequency), p, q, v), seed)


def simulate_gamma_gamma_rows(frequency: NDArray[np.int64], params: ArrayLike, seed: int = 0) -> FloatArray:
    """Mean spend of each customer's `frequency` transactions (0 where frequency = 0) under Gamma-Gamma with the
    customer's own (p, q, v), params of shape (customers, 3): nu ~ Gamma(q_i, v_i), each transaction ~
    Gamma(p_i, nu) (Fader & Hardie 2013; spend covariates move v). `simulate_gamma_gamma` is this with equal rows."""
    x = np.asarray(frequency)
    P, _ = _rows_of(params, ("p", "q", "v"))
    if x.shape != (P.shape[0],):
        raise UsageError(f"frequency must have one value per row of the parameters ({P.shape[0]}); got {x.shape}")
    rng = np.random.default_rng(seed)
    nu = rng.gamma(P[:, 1], 1.0 / P[:, 2])
    total = rng.gamma(np.maximum(P[:, 0] * x, 1e-12), 1.0 / nu)
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


def bgnbd_purchases(
    rng: np.random.Generator,
    customers: int,
    params: tuple[float, float, float, float],
    spend: tuple[float, float, float] | None,
    start: str,
    weeks: float,
    acquisition_weeks: float,
) -> tuple[NDArray[np.intp], NDArray[np.datetime64], NDArray[np.float64] | None]:
    """The draws of `simulate_bgnbd_log` from `rng`, params = (r, alpha, a, b): each purchase's customer (0 to
    customers - 1), its day, and its amount (None without `spend`)."""
    r, alpha, a, b = params
    lam = rng.gamma(r, 1.0 / alpha, customers)
    p = rng.beta(a, b, customers)
    t = rng.uniform(0.0, acquisition_weeks, customers)
    ids, times = [np.arange(customers)], [t.copy()]
    active = np.arange(customers)
    while active.size:
        active = active[rng.random(active.size) >= p[active]] if len(ids) > 1 else active
        t[active] += rng.exponential(1.0 / lam[active])
        active = active[t[active] <= weeks]
        ids.append(active)
        times.append(t[active])
    who, when = np.concatenate(ids), np.concatenate(times)
    day = np.datetime64(start, "D") + np.floor(when * 7.0).astype("timedelta64[D]")
    amount = None
    if spend is not None:
        shape, q, v = spend
        nu = rng.gamma(q, 1.0 / v, customers)
        amount = np.round(rng.gamma(shape, 1.0 / nu[who]), 2) + 0.01
    return who, day, amount


def simulate_bgnbd_log(
    customers: int,
    r: float,
    alpha: float,
    a: float,
    b: float,
    spend: tuple[float, float, float] | None = None,
    start: str = "2020-01-01",
    weeks: float = 104.0,
    acquisition_weeks: float = 13.0,
    seed: int = 0,
) -> pd.DataFrame:
    """A transaction log (customer_id, date, and amount with `spend`) drawn from the BG/NBD process in weeks (FHL
    2005, Sec. 2: purchases at rate lambda ~ Gamma(r, alpha) per week while alive; after each purchase the
    customer drops out with probability p ~ Beta(a, b)), first purchases uniform over the first
    `acquisition_weeks`, observed to `weeks` after `start`; amounts Gamma(p, nu), nu ~ Gamma(q, v) per customer
    (the Gamma-Gamma model with spend = (p, q, v), Fader, Hardie & Lee 2005b), rounded to cents. Purchase times
    are binned to days, so that two on one day make one purchase day, as a real log read by clv does."""
    rng = np.random.default_rng(seed)
    who, day, amount = bgnbd_purchases(rng, customers, (r, alpha, a, b), spend, start, weeks, acquisition_weeks)
    frame = pd.DataFrame({"customer_id": who.astype(str), "date": day.astype(str)})
    if amount is not None:
        frame["amount"] = amount
    return frame.sort_values(["customer_id", "date"], kind="stable").reset_index(drop=True)
