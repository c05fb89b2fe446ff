"""The analytic Pareto/NBD gradient (`clv.purchase.pareto_nbd.loglik_grad`) against the complex-step method.

The reference differentiates the same likelihood through complex arithmetic (Squire & Trapp 1998, SIAM Review
40(1)): d f / d p = Im f(p + i h) / h with h = 1e-30 p, exact to rounding because nothing is subtracted. It is
the gradient the maximum-likelihood fit used before the analytic one; it lives here, as the test's reference.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from scipy.special import loggamma

from clv.hypergeometric import hyp2f1_one_fraction, hyp2f1_one_log_grad
from clv.purchase.pareto_nbd import loglik, loglik_grad

from .test_stability import pareto_ll_mpf


def _log_term_complex(r, alpha, s, beta, x, t):
    """log of 2F1(...) / (max(alpha, beta) + t)^(r+s+x) (the note's Eq. 22) in complex arithmetic; the branch
    follows the real parts."""
    c = r + s + x + 1.0
    if alpha.real >= beta.real:
        hyp = hyp2f1_one_fraction(r + x, c, (alpha - beta) / (alpha + t))
        return np.log(hyp) - (r + x) * np.log(alpha + t) - s * np.log(beta + t)
    hyp = hyp2f1_one_fraction(s + 1.0, c, (beta - alpha) / (beta + t))
    return np.log(hyp) - (r + x - 1.0) * np.log(alpha + t) - (s + 1.0) * np.log(beta + t)


def loglik_complex(r, alpha, s, beta, x, t_x, T):
    """The note's Eq. (22) for complex parameters, log-sum-exp written out (NumPy's logaddexp is real only)."""
    log_alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    u1, u2 = _log_term_complex(r, alpha, s, beta, x, t_x), _log_term_complex(r, alpha, s, beta, x, T)
    equal = t_x == T
    diff = np.where(equal, -1.0, u2 - u1)
    second = np.log(s) - np.log(r + s + x) + u1 + np.log(-np.expm1(diff))
    top = np.maximum(log_alive.real, np.where(equal, -np.inf, second.real))
    total = np.exp(log_alive - top) + np.where(equal, 0.0, np.exp(np.where(equal, top, second) - top))
    return loggamma(r + x) - loggamma(r) + r * np.log(alpha) + s * np.log(beta) + top + np.log(total)


def complex_step_grad(params, x, t_x, T):
    grad = np.empty((x.size, 4))
    for j in range(4):
        h = 1e-30 * params[j]
        p = params.astype(complex)
        p[j] += 1j * h
        grad[:, j] = loglik_complex(*p, x, t_x, T).imag / h
    return grad


def _rows(seed: int, n: int = 300):
    """Histories with T up to 10 (the fit's rescaled time), many purchases, recency = T, x = 0."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.poisson(3.0, n - 6), [0, 0, 3000, 500, 7, 1]]).astype(float)
    T = np.concatenate([rng.uniform(0.5, 10.0, n - 6), [10.0, 0.3, 10.0, 9.0, 8.0, 10.0]])
    t_x = np.where(x > 0, T * rng.uniform(0.0, 1.0, n), 0.0)
    t_x[-2:] = T[-2:]  # recency = T: the drop-out term vanishes
    return x, t_x, T


def _assert_close(ours, ref, rel):
    scale = np.maximum(np.abs(ref), 1e-300)
    assert np.max(np.abs(ours - ref) / scale) < rel


RANDOM_POINTS = [np.exp(np.random.default_rng(k).uniform(-3.0, 3.0, 4)) for k in range(12)]
EXTREME_POINTS = [
    np.array([0.55, 100.0, 0.6, 1.0]),  # alpha >> beta
    np.array([0.55, 1.0, 0.6, 100.0]),  # beta >> alpha
    np.array([0.55, 10.6, 1.0, 10.6 * (1 + 1e-9)]),  # s = 1, alpha ~ beta
    np.array([0.3, 2.0, 1e-6, 50.0]),  # s -> 0 (towards the no-dropout limit)
    np.array([1.3, 1.5, 2e-3, 1000.0]),  # beta at the search bound: z near 1, a thousand fraction steps
    np.array([20.0, 1.0, 0.05, 20.0]),  # where SciPy's hyp2f1 fails (tests/test_stability.py)
]


@pytest.mark.parametrize("params", RANDOM_POINTS + EXTREME_POINTS, ids=lambda p: ",".join(f"{v:.3g}" for v in p))
def test_analytic_gradient_equals_complex_step(params):
    x, t_x, T = _rows(int(params.sum() * 1000) % 2**31)
    ll, grad = loglik_grad(*params, x, t_x, T)
    _assert_close(grad, complex_step_grad(params, x, t_x, T), 1e-8)
    _assert_close(ll, loglik(*params, x, t_x, T), 1e-9)


def test_gradient_at_alpha_equal_beta_against_mpmath():
    """At alpha = beta the argument z is 0 from both sides; the complex step loses the beta derivative there
    (its branch test sees equal real parts and a purely imaginary z; the fit's old gradient had this fault), so
    the reference is mpmath's derivative of the 50-digit likelihood."""
    params = np.array([1.0, 2.0, 0.7, 2.0])
    x, t_x, T = (v[-6:] for v in _rows(3))
    _, grad = loglik_grad(*params, x, t_x, T)
    mp.mp.dps = 30
    for i in range(x.size):
        for j in range(4):

            def f(v, i=i, j=j):
                p = list(params)
                p[j] = v
                return pareto_ll_mpf(*p, x[i], t_x[i], T[i])

            assert grad[i, j] == pytest.approx(float(mp.diff(f, params[j])), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("B", "C", "z"), [(1.05, 123.05, 0.95), (0.6, 0.7, 0.3), (2.0, 3.0, 0.999), (1.2, 2.5, 0.0)])
def test_hypergeometric_log_gradient_equals_complex_step(B, C, z):
    log_f, grad = hyp2f1_one_log_grad(B, C, z)
    assert float(log_f) == pytest.approx(float(np.log(hyp2f1_one_fraction(B, C, z))), rel=1e-12, abs=1e-15)
    h = 1e-30
    steps = [(B + 1j * h, C, z), (B, C + 1j * h, z), (B, C, z + 1j * h)]
    reference = [float(np.log(hyp2f1_one_fraction(*args)).imag / h) for args in steps]
    if z == 0.0:
        reference[2] = B / C  # the fraction is skipped at z = 0 (2F1 = 1, d/dz = B / C)
    np.testing.assert_allclose(grad, reference, rtol=1e-10, atol=1e-300)
