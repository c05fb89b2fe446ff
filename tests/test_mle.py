"""The optimiser on its own: the optimum, the bounds of the search and the stop rule (the bounded number of
evaluations on real data is checked in test_identification)."""

from __future__ import annotations

import numpy as np
import pytest

from clv.mle import RowLikelihood, default_log_bounds, maximize_likelihood

COUNTS = np.array([0.0, 1.0, 2.0, 3.0, 7.0])


def poisson(params):  # type: ignore[no-untyped-def]
    """Per-row Poisson log-likelihood of the counts (up to a constant), rate = params[0]: its maximum is the
    mean count."""
    rate = params[0]
    return COUNTS * np.log(rate) - rate, (COUNTS / rate - 1.0)[:, None]


def test_optimum_is_the_closed_form():
    rows = RowLikelihood(lambda _: poisson, np.ones(COUNTS.size))
    result = maximize_likelihood(rows, [np.array([0.3]), np.array([9.0])])
    assert result.params[0] == pytest.approx(COUNTS.mean(), rel=1e-8)
    assert result.converged and not result.at_boundary and not result.stopped
    # standard error from the observed information: sqrt(rate / n)
    assert result.standard_errors[0] == pytest.approx(np.sqrt(COUNTS.mean() / COUNTS.size), rel=1e-6)


def unbounded(params):  # type: ignore[no-untyped-def]
    """A likelihood that rises for ever as the parameter grows (a flat ridge to infinity)."""
    theta = params[0]
    return np.full(3, -1.0 / theta), np.full((3, 1), 1.0 / theta**2)


def test_search_ends_at_its_bound_and_says_so():
    lower, upper = default_log_bounds(1)
    upper[0] = np.log(50.0)
    rows = RowLikelihood(lambda _: unbounded, np.ones(3), log_bounds=(lower, upper))
    result = maximize_likelihood(rows, [np.array([1.0])])
    assert result.params[0] == pytest.approx(50.0)
    assert result.at_boundary and not result.converged


def test_stop_rule_ends_the_search_where_it_holds():
    seen = []

    def stop(params, mean_ll):  # type: ignore[no-untyped-def]
        seen.append(params[0])
        return bool(params[0] > 20.0)

    result = maximize_likelihood(RowLikelihood(lambda _: unbounded, np.ones(3)), [np.array([1.0])], stop=stop)
    assert result.stopped and not result.converged and result.standard_errors is None
    assert result.params[0] > 20.0 and result.params[0] == pytest.approx(seen[-1])
    assert result.log_likelihood == pytest.approx(-3.0 / result.params[0])
