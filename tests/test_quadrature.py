"""The Gauss rules on their own: exactness on polynomials, against closed-form moments."""

from __future__ import annotations

import numpy as np
import pytest

from clv.quadrature import beta_rule, beta_rules, nodes_for_pole, unit_legendre_rule


@pytest.mark.parametrize("n", [1, 4, 12])
def test_legendre_rule_integrates_polynomials_exactly(n):
    x, w = unit_legendre_rule(n)
    for k in range(2 * n):  # an n-point Gauss rule is exact to degree 2n - 1
        assert w @ x**k == pytest.approx(1.0 / (k + 1), rel=1e-13)


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (1.0, 1.0), (0.79, 2.43), (40.0, 3.0), (0.05, 900.0)])
def test_beta_rule_reproduces_the_beta_moments(a, b):
    n = 10
    p, w = beta_rule(a, b, n)
    assert w.sum() == pytest.approx(1.0, rel=1e-14)
    assert np.all((p > 0) & (p < 1))
    for k in range(2 * n):
        # E[p^k] under Beta(a, b) = prod_{j<k} (a + j) / (a + b + j)
        exact = float(np.prod([(a + j) / (a + b + j) for j in range(k)]))
        assert w @ p**k == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_stacked_rules_equal_one_rule_per_b():
    b = np.array([0.3, 2.0, 17.0])
    nodes, weights = beta_rules(1.3, b, 8)
    for i, bi in enumerate(b):
        p, w = beta_rule(1.3, float(bi), 8)
        np.testing.assert_allclose(nodes[i], p, rtol=1e-11)
        np.testing.assert_allclose(weights[i], w, rtol=1e-9, atol=1e-15)


def test_cached_rules_are_read_only():
    for nodes, weights in (beta_rule(2.0, 3.0, 6), unit_legendre_rule(6)):
        with pytest.raises(ValueError):
            nodes[0] = 0.5
        with pytest.raises(ValueError):
            weights[0] = 0.5


def test_nodes_for_pole_grow_as_the_pole_nears():
    counts = [nodes_for_pole(d) for d in (10.0, 1.0, 0.1, 1e-3, 1e-9)]
    assert counts == sorted(counts) and counts[0] >= 24 and counts[-1] <= 400
