"""Posterior predictions in bulk: the draws-axis forms of the models equal their draw-by-draw forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv import BetaGeoBetaBinomModel, BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel
from clv.config import TiersConfig
from clv.errors import DataError, UsageError
from clv.purchase import beta_geometric as bg
from clv.tiers import share_boundaries, tier_probabilities

from . import reference_values as ref

BG_PUBLISHED = np.array([0.243, 4.414, 0.793, 2.426])  # FHL 2005, Sec. 5 (weeks)
PARETO_PUBLISHED = np.array([0.553, 10.578, 0.606, 11.669])  # Fader & Hardie's CDNOW estimates (weeks)
BGBB_PUBLISHED = np.array([1.204, 0.750, 0.657, 2.783])  # FHS 2010, Table 2
TIMES = np.concatenate([np.linspace(0.0, 52.0, 13), np.linspace(2.0, 50.0, 12)])


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-300)))


def _exact(r: float, alpha: float, a: float, b: float, t: float) -> float:
    """E_p[(1 - (1 + p t / alpha)^-r) / p] over p ~ Beta(a, b) by mpmath's quadrature at 30 digits."""
    import mpmath as mp

    with mp.workdps(30):
        f = lambda p: p ** (a - 1) * (1 - p) ** (b - 1) * (1 - (1 + p * t / alpha) ** (-r)) / p  # noqa: E731
        return float(mp.quad(f, [0, mp.mpf(1) / 1000, mp.mpf(1) / 10, 1]) / mp.beta(a, b))


def _check_series(params: np.ndarray, x: np.ndarray, T: np.ndarray, times: np.ndarray = TIMES) -> None:
    """Equal to the quadrature to 1e-10; where the two differ more (the quadrature's own error, at z near 1 with
    many purchases), the series equals mpmath to 1e-13."""
    r, alpha, a, b = params.T
    got = bg.expected_new_curve_draws(times, r, alpha, a, b, x, T)
    for d, (r_d, alpha_d, a_d, b_d) in enumerate(params):
        want = bg.expected_new_curve(times, r_d + x, alpha_d + T, float(a_d), b_d + x)
        differ = np.argwhere(np.abs(got[d] - want) > 1e-10 * np.abs(want))
        assert len(differ) <= 0.01 * got[d].size, (d, params[d], len(differ))
        for i, j in differ:
            exact = _exact(r_d + x[i], alpha_d + T[i], float(a_d), b_d + x[i], float(times[j]))
            assert got[d, i, j] == pytest.approx(exact, rel=1e-13), (d, params[d], i, j)


def test_series_curve_equals_the_quadrature_at_the_published_parameters(cdnow_rfm):
    x, T = cdnow_rfm["frequency"].to_numpy(float), cdnow_rfm["T"].to_numpy(float)
    _check_series(BG_PUBLISHED[None, :], x, T)


def test_series_curve_equals_the_quadrature_at_random_draws():
    rng = np.random.default_rng(3)
    params = np.column_stack(
        [rng.uniform(0.02, 5, 40), rng.uniform(0.5, 30, 40), rng.uniform(0.1, 4.0, 40), rng.uniform(0.1, 20, 40)]
    )
    x = rng.integers(0, 60, 80).astype(float)
    T = rng.uniform(5.0, 80.0, 80)
    _check_series(params, x, T)


def test_series_curve_at_extremes_a_equal_one_many_purchases_and_z_near_one():
    """a = 1 (the removable singularity of Eq. 10), thousands of purchases, and a young customer with a long
    horizon (z = t / (alpha + T + t) near 1: the rows the series hands to the quadrature)."""
    params = np.array([[0.243, 4.414, 1.0, 2.426], [0.5, 2.0, 0.3, 0.2], [3.0, 0.05, 6.0, 1.5]])
    x = np.array([0.0, 1.0, 2500.0, 0.0, 7.0])
    T = np.array([0.0, 0.01, 300.0, 1.0, 40.0])
    _check_series(params, x, T, np.array([0.0, 1.0, 52.0, 520.0]))


@pytest.mark.parametrize("cls", [BetaGeoModel, ModifiedBetaGeoModel])
@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("probability_alive", {}),
        ("expected_purchases", {"horizon": 39.0}),
        ("probability_of_purchases", {"n": 0, "horizon": 13.0}),
        ("probability_of_purchases", {"n": 3, "horizon": 13.0}),
    ],
)
def test_predictions_under_many_draws_equal_draw_by_draw(cdnow_rfm, cls, method, kwargs):
    rng = np.random.default_rng(5)
    params = BG_PUBLISHED * np.exp(rng.normal(0.0, 0.1, (6, 4)))
    got = cls.predict_draws(params, cdnow_rfm, method, **kwargs)
    for d, row in enumerate(params):
        model = cls.from_params(**dict(zip(cls.param_names, row, strict=True)))
        want = getattr(model, method)(cdnow_rfm, **kwargs)
        assert _relative(got[d], want) < 1e-10


@pytest.mark.parametrize("cls", [BetaGeoModel, ModifiedBetaGeoModel])
def test_simulation_under_many_draws_averages_to_the_expectation(cls):
    params = np.tile(np.array(list(ref.MBGNBD_CDNOW.values())) if cls is ModifiedBetaGeoModel else BG_PUBLISHED, (4, 1))
    x, t_x, T = np.array([0.0, 2.0, 7.0, 1.0]), np.array([0.0, 30.4, 36.0, 5.0]), np.array([38.9, 38.9, 38.9, 20.0])
    copies = 20_000
    xs, ts, Ts = (np.tile(v, copies) for v in (x, t_x, T))
    sims = cls.simulate_purchases_draws(params, xs, ts, Ts, 39.0, np.random.default_rng(2))
    sims = sims.reshape(4 * copies, x.size)
    expected = cls.from_params(**dict(zip(cls.param_names, params[0], strict=True))).expected_purchases(
        pd.DataFrame({"frequency": x, "recency": t_x, "T": T}), 39.0
    )
    se = sims.std(axis=0) / np.sqrt(sims.shape[0])
    assert np.all(np.abs(sims.mean(axis=0) - expected) < 4.5 * se)


def _tier_probabilities_per_draw(draws: np.ndarray, index: np.ndarray, config: TiersConfig) -> np.ndarray:
    """The reference: each draw's tiers from that draw's cut-offs, one draw at a time."""
    n_tiers = len(config.levels)
    counts = np.zeros((index.size, n_tiers))
    for d in range(draws.shape[1]):
        clv = draws[index, d].astype(float)
        if config.levels[0].share is not None:
            positions = index.size - share_boundaries(index.size, config)[:-1]
            cut = np.sort(clv)[np.clip(positions, 0, index.size - 1)]
        else:
            cut = np.array([level.min_clv for level in config.levels[:-1]], dtype=float)
        tier = (n_tiers - 1) - (clv[:, None] >= cut[None, :]).sum(axis=1)
        counts[np.arange(index.size), tier] += 1
    return counts / draws.shape[1]


@pytest.mark.parametrize(
    "config",
    [
        TiersConfig(),
        TiersConfig(levels=[{"label": "a", "min_clv": 40.0}, {"label": "b", "min_clv": 10.0}, {"label": "c"}]),
    ],
)
def test_tier_probabilities_equal_the_per_draw_tiers(config):
    rng = np.random.default_rng(4)
    draws = rng.lognormal(3.0, 1.0, (300, 70)).astype(np.float32)
    index = rng.integers(0, 300, 1000).astype(np.intp)
    got = tier_probabilities(draws, index, config, block=2_000)  # several steps of draws and rows
    np.testing.assert_array_equal(got, _tier_probabilities_per_draw(draws, index, config))


def _model(cls, row):
    return cls.from_params(**dict(zip(cls.param_names, row, strict=True)))


def _per_draw(cls, params, rfm, method, kwargs):
    return np.stack([getattr(_model(cls, row), method)(rfm, **kwargs) for row in params])


def _pareto_draws() -> np.ndarray:
    """Draws around the CDNOW estimates, some with alpha < beta and some with alpha > beta (both branches of the
    hypergeometric term), and one with s = 1 (the removable singularity of the expected purchases)."""
    rng = np.random.default_rng(7)
    params = PARETO_PUBLISHED * np.exp(rng.normal(0.0, 0.15, (8, 4)))
    params[0, 2] = 1.0
    params[1, 1], params[1, 3] = 30.0, 2.0  # alpha > beta
    params[2, 1], params[2, 3] = 2.0, 30.0  # alpha < beta
    assert (params[:, 1] >= params[:, 3]).any() and (params[:, 1] < params[:, 3]).any()
    return params


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("probability_alive", {}),
        ("probability_alive", {"at": 10.0}),
        ("expected_purchases", {"horizon": 39.0}),
        ("probability_of_purchases", {"n": 0, "horizon": 13.0}),
        ("probability_of_purchases", {"n": 3, "horizon": 13.0}),
        ("expected_residual_purchases", {"discount_rate": 0.002}),
    ],
)
def test_pareto_nbd_predictions_under_many_draws_equal_draw_by_draw(cdnow_rfm, method, kwargs):
    params = _pareto_draws()
    got = ParetoNBDModel.predict_draws(params, cdnow_rfm, method, **kwargs)
    want = _per_draw(ParetoNBDModel, params, cdnow_rfm, method, kwargs)
    assert got.shape == want.shape
    assert _relative(got, want) < 1e-12


def test_pareto_nbd_curve_under_many_draws_equals_draw_by_draw(cdnow_rfm):
    params = _pareto_draws()
    x, t_x, T = (cdnow_rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    alive, group, curve = ParetoNBDModel.alive_curve_draws(params, x, t_x, T, TIMES)
    for d, row in enumerate(params):
        model = ParetoNBDModel.from_params(**dict(zip(ParetoNBDModel.param_names, row, strict=True)))
        assert _relative(alive[d], model.probability_alive(cdnow_rfm)) < 1e-12
        want = model.expected_purchases_curve(cdnow_rfm, TIMES)
        assert _relative(alive[d][:, None] * curve[d, group], want) < 1e-12


def test_pareto_nbd_many_purchases_and_the_continued_fraction(cdnow_rfm):
    """Thousands of purchases and alpha, beta far apart (z near 1, where SciPy's 2F1 fails and the continued
    fraction takes over): still the draw-by-draw numbers, finite."""
    rfm = pd.DataFrame({"frequency": [0.0, 3000.0, 40.0], "recency": [0.0, 299.0, 10.0], "T": [300.0, 300.0, 300.0]})
    params = np.array([[0.553, 10.578, 0.606, 11.669], [5.0, 900.0, 0.4, 0.01], [0.3, 0.02, 2.0, 800.0]])
    got = ParetoNBDModel.predict_draws(params, rfm, "probability_alive")
    assert np.all(np.isfinite(got))
    assert _relative(got, _per_draw(ParetoNBDModel, params, rfm, "probability_alive", {})) < 1e-12


def test_pareto_nbd_simulation_under_many_draws_averages_to_the_expectation():
    params = np.tile(PARETO_PUBLISHED, (4, 1))
    x, t_x, T = np.array([0.0, 2.0, 7.0, 1.0]), np.array([0.0, 30.4, 36.0, 5.0]), np.array([38.9, 38.9, 38.9, 20.0])
    copies = 20_000
    xs, ts, Ts = (np.tile(v, copies) for v in (x, t_x, T))
    sims = ParetoNBDModel.simulate_purchases_draws(params, xs, ts, Ts, 39.0, np.random.default_rng(2))
    sims = sims.reshape(4 * copies, x.size)
    frame = pd.DataFrame({"frequency": x, "recency": t_x, "T": T})
    model = ParetoNBDModel.from_params(**dict(zip(ParetoNBDModel.param_names, PARETO_PUBLISHED, strict=True)))
    se = sims.std(axis=0) / np.sqrt(sims.shape[0])
    assert np.all(np.abs(sims.mean(axis=0) - model.expected_purchases(frame, 39.0)) < 4.5 * se)
    for n in (0, 1, 3):  # and the distribution: the share of each count is the model's probability
        share = (sims == n).mean(axis=0)
        p = model.probability_of_purchases(frame, n, 39.0)
        assert np.all(np.abs(share - p) < 4.5 * np.sqrt(p * (1 - p) / sims.shape[0]) + 1e-12), n


def _bgbb_draws() -> np.ndarray:
    """Draws around FHS 2010's estimates, one with gamma = 1 and one with small alpha and beta."""
    params = BGBB_PUBLISHED * np.exp(np.random.default_rng(8).normal(0.0, 0.15, (6, 4)))
    params[0, 2] = 1.0
    params[1, :2] = 0.05, 0.08
    return params


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("probability_alive", {}),
        ("probability_alive", {"at": 3}),
        ("expected_purchases", {"horizon": 5}),
        ("probability_of_purchases", {"n": 0, "horizon": 5}),
        ("probability_of_purchases", {"n": 2, "horizon": 5}),
        ("expected_residual_purchases", {"discount_rate": 0.1}),
    ],
)
def test_bgbb_predictions_under_many_draws_equal_draw_by_draw(donations, method, kwargs):
    params = _bgbb_draws()
    got = BetaGeoBetaBinomModel.predict_draws(params, donations, method, **kwargs)
    want = _per_draw(BetaGeoBetaBinomModel, params, donations, method, kwargs)
    assert got.shape == want.shape
    assert _relative(got, want) < 1e-12


def test_bgbb_curve_under_many_draws_equals_draw_by_draw(donations):
    params = _bgbb_draws()
    x, t_x, n = (donations[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    horizons = np.array([0.0, 1.0, 5.0, 12.0, 3.0])
    alive, group, curve = BetaGeoBetaBinomModel.alive_curve_draws(params, x, t_x, n, horizons)
    for d, row in enumerate(params):
        model = _model(BetaGeoBetaBinomModel, row)
        assert _relative(alive[d], model.probability_alive(donations)) < 1e-12
        want = np.stack([model.expected_purchases(donations, h) for h in horizons], axis=1)
        assert _relative(alive[d][:, None] * curve[d, group], want) < 1e-12
        assert _relative(model.expected_purchases_curve(donations, horizons), want) < 1e-12


def test_bgbb_draws_refuse_fractional_horizons_and_histories(donations):
    x, t_x, n = (donations[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    params = _bgbb_draws()
    with pytest.raises(UsageError, match="whole numbers of opportunities"):
        BetaGeoBetaBinomModel.alive_curve_draws(params, x, t_x, n, np.array([1.0, 2.5]))
    with pytest.raises(DataError, match="whole-number recency"):
        BetaGeoBetaBinomModel.simulate_purchases_draws(params, x, t_x + 0.5, n + 0.5, 3.0, np.random.default_rng(0))


def test_bgbb_simulation_under_many_draws_has_the_models_distribution():
    params = np.tile(BGBB_PUBLISHED, (4, 1))
    x, t_x, n = np.array([0.0, 3.0, 6.0, 1.0]), np.array([0.0, 4.0, 6.0, 1.0]), np.array([6.0, 6.0, 6.0, 6.0])
    copies = 20_000
    xs, ts, ns = (np.tile(v, copies) for v in (x, t_x, n))
    sims = BetaGeoBetaBinomModel.simulate_purchases_draws(params, xs, ts, ns, 5.0, np.random.default_rng(2))
    sims = sims.reshape(4 * copies, x.size)
    frame = pd.DataFrame({"frequency": x, "recency": t_x, "T": n})
    model = _model(BetaGeoBetaBinomModel, BGBB_PUBLISHED)
    se = sims.std(axis=0) / np.sqrt(sims.shape[0])
    assert np.all(np.abs(sims.mean(axis=0) - model.expected_purchases(frame, 5)) < 4.5 * se)
    for k in (0, 1, 3, 5):
        share = (sims == k).mean(axis=0)
        p = model.probability_of_purchases(frame, k, 5)
        assert np.all(np.abs(share - p) < 4.5 * np.sqrt(p * (1 - p) / sims.shape[0]) + 1e-12), k


@pytest.mark.parametrize(
    ("cls", "method", "kwargs"),
    [
        (BetaGeoBetaBinomModel, "probability_alive", {}),
        (BetaGeoBetaBinomModel, "expected_purchases", {"horizon": 5}),
        (BetaGeoBetaBinomModel, "probability_of_purchases", {"n": 2, "horizon": 5}),
        (BetaGeoBetaBinomModel, "expected_residual_purchases", {"discount_rate": 0.1}),
        (ParetoNBDModel, "probability_of_purchases", {"n": 2, "horizon": 13.0}),
    ],
)
def test_memory_chunks_do_not_change_the_answer(donations, cdnow_rfm, monkeypatch, cls, method, kwargs):
    """The draws-axis forms cut their (draws x rows x terms) arrays into chunks of draws: tiny chunks give the
    same numbers."""
    from clv.purchase import bgbb, pareto_nbd

    rfm, params = (donations, _bgbb_draws()) if cls is BetaGeoBetaBinomModel else (cdnow_rfm, _pareto_draws())
    whole = cls.predict_draws(params, rfm, method, **kwargs)
    monkeypatch.setattr(bgbb, "_TERM_FLOATS", 40)
    monkeypatch.setattr(pareto_nbd, "_PMF_FLOATS", 1000)
    np.testing.assert_allclose(cls.predict_draws(params, rfm, method, **kwargs), whole, rtol=1e-14, atol=0)


@pytest.mark.parametrize("cls", [ParetoNBDModel, BetaGeoBetaBinomModel, BetaGeoModel, ModifiedBetaGeoModel])
def test_no_model_runs_draw_by_draw(cls, donations, cdnow_rfm, monkeypatch):
    """The curve, the simulation and the usual predictions never build a model per draw (the generic
    fallbacks do, through `_from_row`)."""

    def per_draw(row):
        raise AssertionError("a model built per draw")

    monkeypatch.setattr(cls, "_from_row", per_draw)
    discrete = cls is BetaGeoBetaBinomModel
    rfm = donations if discrete else cdnow_rfm
    draws = {BetaGeoBetaBinomModel: _bgbb_draws(), ParetoNBDModel: _pareto_draws()}
    params = draws.get(cls, np.tile(BG_PUBLISHED, (3, 1)))
    x, t_x, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    cls.alive_curve_draws(params, x, t_x, T, np.array([1.0, 4.0]))
    cls.simulate_purchases_draws(params, x, t_x, T, 4.0, np.random.default_rng(0))
    for method, kwargs in [
        ("probability_alive", {}),
        ("expected_purchases", {"horizon": 4}),
        ("probability_of_purchases", {"n": 1, "horizon": 4}),
    ]:
        cls.predict_draws(params, rfm, method, **kwargs)
