"""The registry of random streams: offsets kept from earlier versions, so that a seed gives the same results."""

from __future__ import annotations

import numpy as np
import pytest

from clv.seeds import STREAMS, rng, stream_seed


def test_the_offsets_are_those_of_earlier_versions():
    run = {"purchase_fit": 0, "spend_fit": 1, "value": 3, "holdout_purchases": 7}
    evaluation = {"evaluation_value": 11, "evaluation_no_purchase": 13, "forecast_band": 17}
    prediction = {
        "purchase_draws": 0,
        "spend_draws": 1,
        "purchase_simulation": 0,
        "portfolio_noise": 2,
        "predictive_noise": 4,
        "purchase_latents": 5,
    }
    simulation = {"simulated_cohort": 1}
    assert {**run, **evaluation, **prediction, **simulation} == STREAMS


def test_a_stream_is_its_seed_plus_its_offset():
    assert stream_seed(42, "value") == 45
    expected = np.random.default_rng(44).standard_normal(5)
    np.testing.assert_array_equal(rng(42, "portfolio_noise").standard_normal(5), expected)


def test_an_unknown_stream_is_refused():
    with pytest.raises(KeyError):
        stream_seed(0, "no_such_stream")
