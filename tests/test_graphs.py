"""The compiled likelihood graphs of the Bayesian fit equal the maximum-likelihood functions, value and gradient,
to 1e-10 relative: at random points around each model's fit and at the extreme inputs of the stability tests
(frequency in the thousands, recency = T, no repeat purchase, a = 1, alpha = beta, alpha >> beta)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv import (
    BetaGeoBetaBinomModel,
    BetaGeoCNBDModel,
    BetaGeoModel,
    GammaGammaModel,
    ModifiedBetaGeoCNBDModel,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
)
from clv.bayes.graphs import GRAPHS, graph_data, total_log_likelihood
from clv.bayes.hyp2f1_op import log_hyp2f1_one, log_hyp2f1_one_grad
from clv.hypergeometric import hyp2f1_one, hyp2f1_one_fraction
from clv.model import FittedModel

RTOL = 1e-10


def compiled(model: FittedModel, frame: pd.DataFrame, weights: np.ndarray | None = None, mode: str = "FAST_COMPILE"):
    import pytensor
    import pytensor.tensor as pt

    problem = model.likelihood_problem(frame, weights)
    data = {k: pt.as_tensor_variable(v) for k, v in graph_data(problem).items()}
    p = pt.dvector("p")
    total = total_log_likelihood(problem, [p[j] for j in range(len(problem.param_names))], data)
    return problem, pytensor.function([p], [total, pytensor.grad(total, p)], mode=mode)


def assert_equal_to_numpy(problem, f, points) -> None:
    for point in points:
        point = np.asarray(point, dtype=float)
        value, grad = f(point)
        expected_value, expected_grad = problem.total(point)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        assert value == pytest.approx(expected_value, rel=RTOL)
        # each component to 1e-10 of the gradient's size (a component near 0 is a difference of large terms)
        np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=RTOL * np.max(np.abs(expected_grad)))


def around(center: list[float], n: int, seed: int, scale: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.asarray(center) * np.exp(rng.normal(0.0, scale, len(center))) for _ in range(n)]


def extreme_rfm() -> pd.DataFrame:
    """Histories at the edges of the domain, as in tests/test_stability.py."""
    return pd.DataFrame(
        {
            "frequency": [0, 0, 1, 2, 7, 40, 3000, 2000, 5],
            "recency": [0.0, 0.0, 0.5, 30.43, 38.86, 38.0, 30.0, 3.0, 5.0],
            "T": [38.86, 0.5, 38.86, 38.86, 38.86, 38.86, 38.86, 38.86, 38.86],
        }
    )


def test_every_model_has_a_graph():
    models = (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel, BetaGeoBetaBinomModel)
    names = {cls.name for cls in (*models, BetaGeoCNBDModel, ModifiedBetaGeoCNBDModel)}
    assert names | {GammaGammaModel.name} == set(GRAPHS)


@pytest.mark.parametrize(
    ("cls", "center"),
    [
        (BetaGeoModel, [0.24, 1.1, 0.8, 2.4]),
        pytest.param(ModifiedBetaGeoModel, [0.5, 1.6, 0.9, 1.6], marks=pytest.mark.slow),
        (ParetoNBDModel, [0.55, 2.7, 0.6, 3.0]),
    ],
)
def test_purchase_graphs_equal_the_likelihood_on_cdnow(cdnow_rfm, cls, center):
    problem, f = compiled(cls(), cdnow_rfm)
    assert_equal_to_numpy(problem, f, around(center, 12, seed=len(center) + hash(cls.name) % 97))


@pytest.mark.parametrize("cls", [BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel])
def test_purchase_graphs_at_the_extremes(cls):
    """Thousands of purchases, recency = T, x = 0, and parameters at a = 1, alpha = beta, alpha >> beta,
    beta >> alpha, s = 1 (time rescaled so that max T = 10: alpha 10.6 weeks is about 2.7 here)."""
    problem, f = compiled(cls(), extreme_rfm())
    points = [
        [0.55, 2.7, 1.0, 3.0],  # a = 1 (BG), s near 1 (Pareto/NBD)
        [0.55, 25.7, 0.6, 0.26],  # alpha >> beta
        [0.55, 0.26, 0.6, 25.7],  # beta >> alpha
        [0.55, 2.7, 1.0, 2.9],  # s = 1
        [3.0, 0.1, 0.05, 40.0],  # large r, little dropout
    ]
    if cls is not ParetoNBDModel:
        points.append([0.55, 2.7, 0.6, 2.7])  # Pareto/NBD's alpha = beta: see the next test
    assert_equal_to_numpy(problem, f, points + around([0.5, 2.0, 0.8, 2.5], 6, seed=5, scale=1.5))


@pytest.mark.parametrize("cls", [BetaGeoCNBDModel, ModifiedBetaGeoCNBDModel])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_cnbd_graphs_equal_the_likelihood_on_cdnow(cdnow_rfm, cls, k):
    """The regularity models at a fixed k (the phase grid j = 0..k-1 a data variable of the graph)."""
    problem, f = compiled(cls(k=k), cdnow_rfm)
    assert problem.param_names == ("r", "alpha", "a", "b")
    assert_equal_to_numpy(problem, f, around([0.9, 1.1, 0.6, 1.8], 6, seed=10 * k + cls._c))


@pytest.mark.parametrize("cls", [BetaGeoCNBDModel, ModifiedBetaGeoCNBDModel])
def test_cnbd_graphs_at_the_extremes(cls):
    """x = 0, recency = T (the open interval empty: only the j = 0 phase), thousands of purchases, a = 1,
    little dropout, k = 12."""
    problem, f = compiled(cls(k=12), extreme_rfm(), np.array([3.0, 1.0, 2.0, 1.0, 5.0, 1.0, 1.0, 2.0, 1.0]))
    points = [[0.55, 2.7, 1.0, 3.0], [3.0, 0.1, 0.05, 40.0], [0.05, 25.0, 5.0, 0.3], [8.0, 0.5, 0.6, 2.7]]
    assert_equal_to_numpy(problem, f, points)


def test_pareto_nbd_graph_at_alpha_equal_to_beta():
    """At alpha = beta the hypergeometric argument z is 0 and its derivative is not: the graph's gradient against
    50-digit derivatives of the note's Eq. (22) (`test_stability.pareto_ll_mpf`). The maximum-likelihood path's
    complex step misses the z term there (its continued fraction takes z = 0 + ih as 2F1 = 1), so its gradient is
    not the reference at this one point; the values agree."""
    import mpmath as mp

    from .test_stability import pareto_ll_mpf

    frame = extreme_rfm().iloc[[0, 2, 3, 4, 6]]
    problem, f = compiled(ParetoNBDModel(), frame)
    point = np.array([0.55, 2.7, 0.6, 2.7])
    value, grad = f(point)
    assert value == pytest.approx(problem.total(point)[0], rel=RTOL)
    rows = problem.rows
    w = problem.weights

    def total(*params: float) -> object:
        return mp.fsum(
            float(wi) * pareto_ll_mpf(*params, xi, ti, Ti)
            for wi, xi, ti, Ti in zip(w, rows["x"], rows["t_x"], rows["T"], strict=True)
        )

    with mp.workdps(40):
        expected = [float(mp.diff(total, tuple(point), tuple(int(j == i) for j in range(4)))) for i in range(4)]
    np.testing.assert_allclose(grad, expected, rtol=RTOL)


def test_gamma_gamma_graph_equals_the_likelihood(cdnow_rfm):
    problem, f = compiled(GammaGammaModel(), cdnow_rfm)
    assert_equal_to_numpy(problem, f, around([6.2, 3.7, 0.5], 12, seed=3))


def test_gamma_gamma_graph_at_the_extremes():
    """One buyer with thousands of purchases, tiny and huge mean spends, q near 1, weights."""
    frame = pd.DataFrame(
        {
            "frequency": [1, 1, 2, 3000, 40, 5],
            "recency": [1.0] * 6,
            "T": [40.0] * 6,
            "monetary_value": [0.01, 25.0, 1e5, 12.0, 30.0, 7.5],
        }
    )
    problem, f = compiled(GammaGammaModel(), frame, np.array([3.0, 1.0, 2.0, 1.0, 5.0, 1.0]))
    assert_equal_to_numpy(problem, f, [[6.0, 1.001, 0.9], [0.5, 30.0, 20.0], [50.0, 2.0, 0.01]])


def test_bgbb_graph_equals_the_likelihood(donations):
    problem, f = compiled(BetaGeoBetaBinomModel(), donations, donations["weights"].to_numpy())
    assert_equal_to_numpy(problem, f, around([1.2, 0.75, 0.66, 2.78], 12, seed=4))


def test_bgbb_graph_at_the_extremes():
    """x = 0, recency = n (nothing to sum over), a long history (many terms), a = 1."""
    frame = pd.DataFrame({"frequency": [0, 0, 6, 3, 150], "recency": [0, 0, 6, 4, 180], "T": [6, 300, 6, 6, 300]})
    problem, f = compiled(BetaGeoBetaBinomModel(), frame)
    assert_equal_to_numpy(problem, f, [[1.0, 1.0, 1.0, 1.0], [0.01, 50.0, 5.0, 0.02], [30.0, 0.2, 0.05, 20.0]])


@pytest.mark.parametrize(
    ("cls", "point"),
    [
        (BetaGeoModel, [0.24, 1.1, 0.8, 2.4]),
        (ModifiedBetaGeoModel, [0.5, 1.6, 0.9, 1.6]),
        (ParetoNBDModel, [0.55, 25.7, 0.6, 0.26]),
        (GammaGammaModel, [6.2, 3.7, 0.5]),
        pytest.param(ModifiedBetaGeoCNBDModel, [0.9, 1.1, 0.6, 1.8], marks=pytest.mark.slow),
        (BetaGeoCNBDModel, [0.9, 1.1, 0.6, 1.8]),
    ],
)
def test_graphs_compile_with_numba(cdnow_rfm, cls, point):
    """What nutpie compiles: the Numba backend gives the same values and gradients (Pareto/NBD: with its 2F1
    kernel; the regularity models at k = 3). The modified models share their parents' kernels: slow only."""
    model = cls(k=3) if cls in (ModifiedBetaGeoCNBDModel, BetaGeoCNBDModel) else cls()
    problem, f = compiled(model, cdnow_rfm, mode="NUMBA")
    assert_equal_to_numpy(problem, f, [point])


def test_bgbb_graph_compiles_with_numba(donations):
    problem, f = compiled(BetaGeoBetaBinomModel(), donations, donations["weights"].to_numpy(), mode="NUMBA")
    assert_equal_to_numpy(problem, f, [[1.2, 0.75, 0.66, 2.78]])


def test_the_hypergeometric_kernel_and_its_derivatives():
    """log 2F1(1, B; C; z) against `clv.hypergeometric`, its B and C derivatives against the complex step
    through the continued fraction, and its z derivative against the closed form at z = 0 (B / C)."""
    rng = np.random.default_rng(0)
    B = np.concatenate([rng.uniform(0.01, 50.0, 300), [3000.5, 0.5, 2.0]])
    C = B + np.concatenate([rng.uniform(0.01, 20.0, 300), [1.7, 0.1, 5.0]])
    z = np.concatenate([rng.uniform(0.0, 0.999, 300), [0.99, 0.9999, 0.0]])
    value, d_b, d_c, d_z = log_hyp2f1_one_grad(B, C, z)
    np.testing.assert_allclose(value, np.log(hyp2f1_one(B, C, z)), rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(log_hyp2f1_one(B, C, z), value)
    h = 1e-30
    for got, j in ((d_b, 0), (d_c, 1), (d_z, 2)):
        args = [B.astype(complex), C.astype(complex), z.astype(complex)]
        args[j] = args[j] + 1j * h
        step = np.log(hyp2f1_one_fraction(*args)).imag / h
        inside = z > 0  # the fraction takes z = 0 as 2F1 = 1 without looking at its imaginary part
        np.testing.assert_allclose(got[inside], step[inside], rtol=1e-10)
    assert d_z[-1] == pytest.approx(B[-1] / C[-1], rel=1e-15)


def test_the_numba_digamma_is_scipys():
    """The psi the compiled gradients use (`clv.bayes.psi_numba`): equal to scipy.special.psi over the positive
    arguments the likelihoods meet, near 0 and far out, and on the negative side away from the poles."""
    from scipy.special import psi

    from clv.bayes.psi_numba import digamma

    xs = np.concatenate([np.logspace(-10, 10, 4001), [1.0, 2.0, 9.999999, 10.0, 10.000001]])
    ours = np.array([digamma(x) for x in xs])
    np.testing.assert_allclose(ours, psi(xs), rtol=2e-14, atol=1e-14)
    negative = -np.linspace(0.05, 20.95, 300)
    np.testing.assert_allclose([digamma(x) for x in negative], psi(negative), rtol=1e-12)
    assert np.isnan(digamma(0.0)) and np.isnan(digamma(-3.0)) and np.isnan(digamma(np.nan))
