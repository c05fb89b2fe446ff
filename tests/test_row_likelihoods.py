"""Log-likelihoods with every row's own parameters (`loglik_grad_rows`, what fits with covariates evaluate).

References from outside the code under test: the existing one-parameter-set functions (`loglik_grad`), called
once per parameter pattern on that pattern's rows (and once per row where every row has its own parameters, as
continuous covariates give), and central differences of the per-row log-likelihood for the gradients.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from clv.purchase import beta_geometric as bg
from clv.purchase import pareto_nbd
from clv.spend import gamma_gamma

#: parameter patterns, each row of a test gets one: alpha < beta, alpha == beta, alpha > beta, and CDNOW's fit
#: moved by covariates (alpha exp(-0.6), beta exp(0.4)), all in one call
PARETO_PATTERNS = np.array(
    [
        [0.553, 10.578, 0.606, 11.669],
        [0.553, 10.578, 0.606, 10.578],
        [1.3, 40.0, 0.3, 5.0],
        [0.553, 10.578 * np.exp(-0.6), 0.606, 11.669 * np.exp(0.4)],
    ]
)
#: BG/NBD and MBG/NBD (r, alpha, a, b): CDNOW's fit, moved by covariates (shared r), a = 1, and another r
BG_PATTERNS = np.array(
    [
        [0.243, 4.414, 0.793, 2.426],
        [0.243, 4.414 * np.exp(-0.5), 0.793 * np.exp(0.3), 2.426 * np.exp(0.3)],
        [0.243, 4.414, 1.0, 2.426],
        [1.5, 20.0, 3.0, 10.0],
    ]
)
#: Gamma-Gamma (p, q, v): CDNOW's fit, v moved by spend covariates, and a heavy-tailed pattern
SPEND_PATTERNS = np.array(
    [[6.25, 3.74, 15.44], [6.25, 3.74, 15.44 * np.exp(0.5)], [6.25, 3.74, 15.44 * 0.3], [1.2, 1.5, 200.0]]
)


def _histories(cdnow_rfm):
    """CDNOW's histories (weeks) and extreme rows: thousands of purchases, recency = T, x = 0, a tiny T."""
    x = np.concatenate([cdnow_rfm["frequency"].to_numpy(float), [3000.0, 5000.0, 2500.0, 0.0, 0.0, 1.0, 40.0]])
    t_x = np.concatenate([cdnow_rfm["recency"].to_numpy(float), [30.0, 39.0, 1.0, 0.0, 0.0, 0.01, 38.0]])
    T = np.concatenate([cdnow_rfm["T"].to_numpy(float), [38.0, 39.0, 39.0, 39.0, 0.01, 0.01, 38.0]])
    return x, t_x, T


def _mixed(patterns, *columns, seed=0):
    """Every row with a pattern drawn at random, plus the last 7 rows (the extreme ones) once with each pattern."""
    n = columns[0].size
    group = np.concatenate(
        [np.random.default_rng(seed).integers(0, len(patterns), n), np.repeat(np.arange(len(patterns)), 7)]
    )
    tail = np.tile(np.arange(n - 7, n), len(patterns))
    rows = np.concatenate([np.arange(n), tail])
    return group, patterns[group], [c[rows] for c in columns]


def _assert_close(ours, ref, rel):
    """|ours - ref| <= rel |ref| elementwise (plus rel * 1e-3 for exact zeros of the reference)."""
    np.testing.assert_allclose(ours, ref, rtol=rel, atol=rel * 1e-3)


def _check_against_groups(rows_fn, scalar_fn, group, P, patterns, columns):
    ll, grad = rows_fn(P, *columns)
    assert ll.shape == (P.shape[0],) and grad.shape == P.shape
    assert np.isfinite(ll).all() and np.isfinite(grad).all()
    for g, params in enumerate(patterns):
        rows = group == g
        ref_ll, ref_grad = scalar_fn(params, *(c[rows] for c in columns))
        _assert_close(ll[rows], ref_ll, 1e-12)
        _assert_close(grad[rows], ref_grad, 1e-12)


def _central_difference(rows_fn, P, columns, j, h):
    up, down = P.copy(), P.copy()
    up[:, j] += h
    down[:, j] -= h
    return (rows_fn(up, *columns)[0] - rows_fn(down, *columns)[0]) / (2.0 * h)


def _check_central_differences(rows_fn, P, columns, rel):
    """The gradient against central differences of the per-row ll with h = 1e-4 P_ij and h / 2, combined by
    Richardson's extrapolation (4 D(h/2) - D(h)) / 3, whose truncation error is O(h^4). The tolerance adds the
    rounding of ll, which follows the size of its largest terms (log Gamma(r + x), (r + x) log(alpha + T),
    p x log(v + m x): under 20 (x + 1) here), not |ll|: about 1e-16 (|ll| + 20 (x + 1)) / h, times 100."""
    ll, grad = rows_fn(P, *columns)
    x = columns[0]
    for j in range(P.shape[1]):
        h = 1e-4 * P[:, j]
        d_h, d_half = (_central_difference(rows_fn, P, columns, j, step) for step in (h, h / 2.0))
        fd = (4.0 * d_half - d_h) / 3.0
        tol = rel * np.abs(fd) + 1e-14 * (np.abs(ll) + 20.0 * (x + 1.0)) / h
        assert np.all(np.abs(grad[:, j] - fd) <= tol), (j, np.max(np.abs(grad[:, j] - fd) / tol))


def _pareto_scalar(params, x, t_x, T):
    return pareto_nbd.loglik_grad(*params, x, t_x, T)


def _bg_rows(c):
    return lambda P, x, t_x, T: bg.loglik_grad_rows(P, x, t_x, T, c)


def _bg_scalar(c):
    return lambda params, x, t_x, T: bg.loglik_grad(*params, x, t_x, T, c)


def _spend_rows_data(cdnow_rfm):
    """CDNOW's repeat buyers (x, mean spend) and extreme rows: thousands of purchases, tiny and huge spends."""
    buyers = cdnow_rfm[(cdnow_rfm["frequency"] > 0) & (cdnow_rfm["monetary_value"] > 0)]
    x = np.concatenate([buyers["frequency"].to_numpy(float), [3000.0, 5000.0, 1.0, 1.0, 2.0, 40.0, 1.0]])
    m = np.concatenate([buyers["monetary_value"].to_numpy(float), [20.0, 1e5, 1e-3, 1e5, 0.5, 35.0, 15.0]])
    return x, m


CASES = {
    "pareto_nbd": (pareto_nbd.loglik_grad_rows, _pareto_scalar, PARETO_PATTERNS),
    "bgnbd": (_bg_rows(0), _bg_scalar(0), BG_PATTERNS),
    "mbgnbd": (_bg_rows(1), _bg_scalar(1), BG_PATTERNS),
}


@pytest.mark.parametrize("model", CASES)
def test_purchase_rows_equal_scalar_per_pattern(model, cdnow_rfm):
    rows_fn, scalar_fn, patterns = CASES[model]
    group, P, columns = _mixed(patterns, *_histories(cdnow_rfm))
    _check_against_groups(rows_fn, scalar_fn, group, P, patterns, columns)


@pytest.mark.parametrize("model", CASES)
def test_purchase_rows_with_every_row_its_own_parameters(model, cdnow_rfm):
    """Continuous covariates: no two rows share parameters; each row against the scalar function alone."""
    rows_fn, scalar_fn, patterns = CASES[model]
    x, t_x, T = (c[-60:] for c in _histories(cdnow_rfm))
    rng = np.random.default_rng(4)
    P = patterns[rng.integers(0, len(patterns), x.size)] * np.exp(rng.normal(0.0, 0.3, (x.size, 4)))
    ll, grad = rows_fn(P, x, t_x, T)
    for i in range(x.size):
        ref_ll, ref_grad = scalar_fn(P[i], x[i : i + 1], t_x[i : i + 1], T[i : i + 1])
        _assert_close(ll[i : i + 1], ref_ll, 1e-12)
        _assert_close(grad[i], ref_grad[0], 1e-12)


@pytest.mark.parametrize("model", CASES)
def test_purchase_rows_gradient_equals_central_differences(model, cdnow_rfm):
    rows_fn, _, patterns = CASES[model]
    _, P, columns = _mixed(patterns, *_histories(cdnow_rfm))
    _check_central_differences(rows_fn, P, columns, 1e-6)


def test_pareto_rows_branch_per_row_at_alpha_equal_beta():
    """alpha == beta, alpha just above and just below it in one call: each row takes its own branch of the
    hypergeometric term, and the three agree with the scalar function (which branches once per call)."""
    x, t_x, T = (
        np.array([2.0, 2.0, 2.0, 3000.0]),
        np.array([10.0, 10.0, 10.0, 20.0]),
        np.array([39.0, 39.0, 39.0, 39.0]),
    )
    P = np.array(
        [
            [0.5, 10.0, 0.6, 10.0],
            [0.5, 10.0 * (1 + 1e-9), 0.6, 10.0],
            [0.5, 10.0, 0.6, 10.0 * (1 + 1e-9)],
            [0.5, 10.0, 0.6, 10.0],
        ]
    )
    ll, grad = pareto_nbd.loglik_grad_rows(P, x, t_x, T)
    for i in range(4):
        ref_ll, ref_grad = pareto_nbd.loglik_grad(*P[i], x[i : i + 1], t_x[i : i + 1], T[i : i + 1])
        _assert_close(ll[i : i + 1], ref_ll, 1e-12)
        _assert_close(grad[i], ref_grad[0], 1e-12)
    _assert_close(ll[1:3], np.full(2, ll[0]), 1e-8)  # continuous across alpha = beta


def test_gamma_gamma_rows_equal_scalar_per_pattern(cdnow_rfm):
    group, P, columns = _mixed(SPEND_PATTERNS, *_spend_rows_data(cdnow_rfm))
    _check_against_groups(gamma_gamma.loglik_grad_rows, gamma_gamma.loglik_grad, group, P, SPEND_PATTERNS, columns)


def test_gamma_gamma_rows_gradient_equals_central_differences(cdnow_rfm):
    _, P, columns = _mixed(SPEND_PATTERNS, *_spend_rows_data(cdnow_rfm))
    _check_central_differences(gamma_gamma.loglik_grad_rows, P, columns, 1e-6)


def _rate(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return args[1].size / (time.perf_counter() - start)


def test_row_likelihood_timing(cdnow_rfm):
    """Rows per second at 100k rows (4 patterns) against the scalar function on the same rows: a printout."""
    rng = np.random.default_rng(7)
    pick = rng.integers(0, len(cdnow_rfm), 100_000)
    x, t_x, T = (c[pick] for c in _histories(cdnow_rfm))
    P = PARETO_PATTERNS[rng.integers(0, 4, x.size)]
    Pb = BG_PATTERNS[rng.integers(0, 4, x.size)]
    xs, m = _spend_rows_data(cdnow_rfm)
    spend = rng.integers(0, xs.size, x.size)
    xs, m, Ps = xs[spend], m[spend], SPEND_PATTERNS[rng.integers(0, 4, x.size)]
    pareto_nbd.loglik_grad_rows(P[:10], x[:10], t_x[:10], T[:10])  # compile the hypergeometric kernel
    lines = [
        ("Pareto/NBD", _rate(pareto_nbd.loglik_grad_rows, P, x, t_x, T), _rate(_pareto_scalar, P[0], x, t_x, T)),
        ("BG/NBD", _rate(_bg_rows(0), Pb, x, t_x, T), _rate(_bg_scalar(0), Pb[0], x, t_x, T)),
        ("Gamma-Gamma", _rate(gamma_gamma.loglik_grad_rows, Ps, xs, m), _rate(gamma_gamma.loglik_grad, Ps[0], xs, m)),
    ]
    for name, rows_rate, scalar_rate in lines:
        print(f"{name}: per-row parameters {rows_rate:,.0f} rows/s, one parameter set {scalar_rate:,.0f} rows/s")
