"""The CLV draws store: a file-backed store reads back what was written, by rows and by draws, as the in-memory
one does, and the tier probabilities and a whole posterior valuation are the same numbers with either."""

from __future__ import annotations

import numpy as np
import pytest

import clv.draw_store as draw_store
from clv.config import TiersConfig
from clv.draw_store import DrawStore
from clv.tiers import tier_probabilities


def test_a_file_store_reads_back_what_was_written():
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 50.0, (1_003, 37)).astype(np.float32)
    memory, disk = DrawStore(1_003, 37), DrawStore(1_003, 37, in_memory_bytes=0)
    assert disk._array is None and memory._array is not None
    for r0 in range(0, 1_003, 250):  # blocks of rows, the last one short
        memory.write(r0, values[r0 : r0 + 250])
        disk.write(r0, values[r0 : r0 + 250])
    for store in (memory, disk):
        np.testing.assert_array_equal(store.to_array(), values)
        np.testing.assert_array_equal(store.read_rows(17, 480), values[17:480])
        np.testing.assert_array_equal(store.read_draws(5, 9), values[:, 5:9].T)
    disk.close()
    assert disk._tmp is None


def test_tier_probabilities_are_the_same_from_a_file(monkeypatch):
    rng = np.random.default_rng(4)
    values = rng.lognormal(3.0, 1.0, (2_000, 64)).astype(np.float32)
    index = rng.integers(0, 2_000, 5_000)
    disk = DrawStore(2_000, 64, in_memory_bytes=0)
    disk.write(0, values)
    expected = tier_probabilities(values, index, TiersConfig())
    np.testing.assert_array_equal(tier_probabilities(disk, index, TiersConfig()), expected)
    # share tiers: in every draw the top 5% (and so on) of the customers; P(tier) sums to 1 per customer
    np.testing.assert_allclose(expected.sum(axis=1), 1.0)
    assert expected[:, 0].mean() == pytest.approx(0.05, abs=1e-3)


def test_a_valuation_is_the_same_with_its_draws_on_disk(cdnow_rfm, monkeypatch):
    from clv import BetaGeoModel
    from clv.bayes.posterior import Diagnostics, Posterior
    from clv.bayes.predict import DrawOptions, ValueOptions, value_posterior

    rng = np.random.default_rng(5)
    center = np.array([0.243, 4.41, 0.79, 2.43])
    draws = center * np.exp(0.05 * rng.standard_normal((40, 4)))
    post = Posterior("bgnbd", ("r", "alpha", "a", "b"), draws, Diagnostics("nuts", "pymc", 1, 40, 0, 0.0), {})
    options = ValueOptions(52.0, 0.10, 1.0, "W", DrawOptions(0.9, 40, 1))
    in_memory = value_posterior(BetaGeoModel, post, None, cdnow_rfm, options)
    monkeypatch.setattr(draw_store, "IN_MEMORY_BYTES", 0)
    on_disk = value_posterior(BetaGeoModel, post, None, cdnow_rfm, options)
    assert on_disk.clv_draws._array is None
    np.testing.assert_array_equal(on_disk.clv_draws.to_array(), in_memory.clv_draws.to_array())
    config = TiersConfig()
    np.testing.assert_array_equal(
        tier_probabilities(on_disk.clv_draws, on_disk.clv_index, config),
        tier_probabilities(in_memory.clv_draws, in_memory.clv_index, config),
    )
    # customer i's draws are row clv_index[i]: its mean is the customer's CLV
    means = in_memory.clv_draws.to_array().astype(float).mean(axis=1)[in_memory.clv_index]
    np.testing.assert_allclose(means, in_memory.customers["clv"].to_numpy(), rtol=1e-5)
