"""Simulation with every customer's own parameters (`clv.simulate.*_rows`, data drawn from models with covariates).

Reference: each model's closed-form E[X(T)] of a new customer (`expected_purchases_new_customer`, e.g. FHL 2005
Eq. 9, the Pareto/NBD note's Eq. 27) and Gamma-Gamma's population mean spend p v / (q - 1), per parameter
pattern; the simulated means must agree within sampling error (4 standard errors).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from clv.errors import UsageError
from clv.simulate import (
    simulate_bgnbd,
    simulate_bgnbd_rows,
    simulate_gamma_gamma_rows,
    simulate_mbgnbd_rows,
    simulate_pareto_nbd_rows,
)

#: base parameters moved by covariates as issue 13 has them (alpha exp(-g_p), beta exp(-g_d); a, b exp(g_d))
PARETO = np.array([0.553, 10.578, 0.606, 11.669])
BG = np.array([0.243, 4.414, 0.793, 2.426])
PURCHASE_MOVES = np.array([0.0, 0.6, -0.4, 0.3])  # g_p'z per pattern
DROPOUT_MOVES = np.array([0.0, -0.5, 0.5, 0.8])  # g_d'z per pattern
PER_PATTERN = 20_000


def _patterns(base, dropout_columns, dropout_sign):
    patterns = np.tile(base, (4, 1))
    patterns[:, 1] *= np.exp(-PURCHASE_MOVES)
    for j in dropout_columns:
        patterns[:, j] *= np.exp(dropout_sign * DROPOUT_MOVES)
    return patterns


CASES = {
    "pareto_nbd": (simulate_pareto_nbd_rows, ParetoNBDModel, _patterns(PARETO, [3], -1.0)),
    "bgnbd": (simulate_bgnbd_rows, BetaGeoModel, _patterns(BG, [2, 3], 1.0)),
    "mbgnbd": (simulate_mbgnbd_rows, ModifiedBetaGeoModel, _patterns(BG, [2, 3], 1.0)),
}


def _mixed_customers(patterns, seed):
    """PER_PATTERN customers per pattern, shuffled into one table, with T between 10 and 78 time units."""
    rng = np.random.default_rng(seed)
    group = rng.permutation(np.repeat(np.arange(len(patterns)), PER_PATTERN))
    return group, patterns[group], rng.uniform(10.0, 78.0, group.size)


@pytest.mark.parametrize("model", CASES)
def test_simulated_purchases_agree_with_expected_purchases_of_a_new_customer(model):
    simulate, cls, patterns = CASES[model]
    group, P, T = _mixed_customers(patterns, seed=21)
    frame = simulate(P, T, seed=5)
    assert list(frame.columns) == list(simulate_bgnbd(3, *BG).columns)
    assert len(frame) == group.size
    np.testing.assert_array_equal(frame["T"].to_numpy(), T)
    assert (frame["recency"] <= frame["T"]).all() and (frame["recency"] >= 0).all()
    x = frame["frequency"].to_numpy(float)
    for g, params in enumerate(patterns):
        rows = group == g
        expected = cls.from_params(**dict(zip(cls.param_names, params, strict=True)))
        mean = float(np.mean(expected.expected_purchases_new_customer(T[rows])))
        error = float(np.std(x[rows])) / np.sqrt(rows.sum())
        assert abs(float(np.mean(x[rows])) - mean) < 4.0 * error, (g, np.mean(x[rows]), mean, error)


def test_patterns_move_the_simulated_means_apart():
    """The rows' own parameters are used: a pattern with twice the purchase rate buys about twice as often."""
    P = np.repeat(np.array([PARETO, PARETO * [1.0, 0.5, 1.0, 1.0]]), 5000, axis=0)
    x = simulate_pareto_nbd_rows(P, 52.0, seed=1)["frequency"].to_numpy(float)
    assert np.mean(x[5000:]) / np.mean(x[:5000]) == pytest.approx(2.0, rel=0.15)


def test_simulated_spend_agrees_with_the_population_mean_spend():
    patterns = np.array(
        [[6.25, 3.74, 15.44], [6.25, 3.74, 15.44 * np.exp(0.5)], [6.25, 3.74, 15.44 * np.exp(-0.7)], [2.0, 6.0, 30.0]]
    )
    group, P, _ = _mixed_customers(patterns, seed=3)
    frequency = np.random.default_rng(4).integers(1, 15, group.size)
    m = simulate_gamma_gamma_rows(frequency, P, seed=9)
    assert np.isfinite(m).all() and (m > 0).all()
    for g, params in enumerate(patterns):
        rows = group == g
        mean = GammaGammaModel.from_params(
            **dict(zip(GammaGammaModel.param_names, params, strict=True))
        ).population_mean_spend()
        error = float(np.std(m[rows])) / np.sqrt(rows.sum())
        assert abs(float(np.mean(m[rows])) - mean) < 4.0 * error, (g, np.mean(m[rows]), mean, error)


def test_no_repeat_purchase_has_no_spend():
    m = simulate_gamma_gamma_rows(np.array([0, 3, 0]), np.tile([6.25, 3.74, 15.44], (3, 1)), seed=0)
    assert m[0] == 0.0 and m[2] == 0.0 and m[1] > 0.0


def test_seeded():
    P = np.tile(PARETO, (100, 1))
    pd.testing.assert_frame_equal(simulate_pareto_nbd_rows(P, 39.0, seed=3), simulate_pareto_nbd_rows(P, 39.0, seed=3))
    assert not simulate_pareto_nbd_rows(P, 39.0, seed=3).equals(simulate_pareto_nbd_rows(P, 39.0, seed=4))


def test_bad_parameters_are_refused_with_rows():
    P = np.tile(BG, (10, 1))
    P[[2, 7], 3] = [-1.0, np.nan]
    with pytest.raises(UsageError, match=r"b must be finite and > 0; 2 customers .*first rows: 2, 7"):
        simulate_bgnbd_rows(P, 39.0)
    with pytest.raises(UsageError, match=r"shape \(customers, 4\)"):
        simulate_bgnbd_rows(BG, 39.0)
    with pytest.raises(UsageError, match="T must be finite"):
        simulate_bgnbd_rows(np.tile(BG, (3, 1)), [39.0, -1.0, 39.0])
    with pytest.raises(UsageError, match="one value per row"):
        simulate_gamma_gamma_rows(np.array([1, 2]), np.tile([6.25, 3.74, 15.44], (3, 1)))
