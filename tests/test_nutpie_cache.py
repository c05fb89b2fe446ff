"""The C callbacks nutpie samples (`clv.bayes.nutpie_cache`): called as nutpie calls them, through their addresses,
they give the log posterior and its gradient of the data they were last given, and the natural parameters."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from clv import BetaGeoModel, GammaGammaModel
from clv.bayes.fit import DEFAULT_PRIOR, _log_posterior, _nutpie_model
from clv.config import BayesConfig

pytest.importorskip("nutpie")

_LOGP = ctypes.CFUNCTYPE(
    ctypes.c_int64, ctypes.c_uint64, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double), ctypes.c_void_p,
)  # fmt: skip
_EXPAND = ctypes.CFUNCTYPE(
    ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64, ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double), ctypes.c_void_p,
)  # fmt: skip


def _pointer(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def call_logp(compiled, theta: np.ndarray) -> tuple[int, float, np.ndarray]:
    f = _LOGP(compiled.compiled_logp_func.address)
    x, grad, value = np.array(theta, dtype=float), np.zeros(theta.size), np.zeros(1)
    code = f(theta.size, _pointer(x), _pointer(grad), _pointer(value), compiled.user_data.ctypes.data)
    return code, float(value[0]), grad


def call_expand(compiled, theta: np.ndarray) -> np.ndarray:
    f = _EXPAND(compiled.compiled_expand_func.address)
    x, out = np.array(theta, dtype=float), np.zeros(compiled.n_expanded)
    assert f(theta.size, compiled.n_expanded, _pointer(x), _pointer(out), compiled.user_data.ctypes.data) == 0
    return out


@pytest.mark.parametrize(
    ("cls", "point"),
    [(BetaGeoModel, [0.24, 1.1, 0.8, 2.4]), pytest.param(GammaGammaModel, [6.2, 3.7, 0.5], marks=pytest.mark.slow)],
)
def test_the_callbacks_are_the_log_posterior_of_the_data_given(cdnow_rfm, cls, point):
    """Two data sets through one compiled model (the second by `with_data`, without recompiling): gradient equal
    to `_log_posterior`'s to 1e-9, value equal up to the priors' normalising constants (compared as differences
    between two points); the wrong dimension is refused with -1, as nutpie expects."""
    options = BayesConfig()
    frames = [cdnow_rfm, cdnow_rfm.iloc[: len(cdnow_rfm) // 3]]
    if cls is GammaGammaModel:
        frames = [f[f["frequency"] > 0] for f in frames]
    theta = np.log(np.array(point))
    other = theta + 0.1
    for frame in frames:
        problem = cls().likelihood_problem(frame)
        compiled, _, note = _nutpie_model(problem, options)
        assert note is None
        specs = [options.priors.get(n, DEFAULT_PRIOR) for n in problem.param_names]
        code, value, grad = call_logp(compiled, theta)
        _, value2, _ = call_logp(compiled, other)
        ours, our_grad, _ = _log_posterior(problem, specs, theta)
        ours2, _, _ = _log_posterior(problem, specs, other)
        assert code == 0
        np.testing.assert_allclose(grad, our_grad, rtol=1e-9, atol=1e-9)
        assert value2 - value == pytest.approx(ours2 - ours, rel=1e-9, abs=1e-9)
        natural = call_expand(compiled, theta)
        for name, factor, t in zip(problem.param_names, problem.factor, theta, strict=True):
            names = list(compiled.shape_info[0])
            assert natural[names.index(name)] == pytest.approx(np.exp(t) * factor, rel=1e-12)
    assert call_logp(compiled, np.zeros(theta.size + 1))[0] == -1


@pytest.mark.slow
def test_without_the_cache_nutpie_compiles_the_model_itself_and_says_so(cdnow_rfm, monkeypatch):
    """The cached build uses nutpie's internals: if they fail, nutpie's own compiler makes the model (the same
    log posterior), and the sampler's note says why."""
    from clv.bayes import fit, nutpie_cache

    def broken(*args, **kwargs):
        raise AttributeError("module 'nutpie.compile_pymc' has no attribute '_make_functions'")

    monkeypatch.setattr(nutpie_cache, "compile_model", broken)
    monkeypatch.setattr(fit, "_COMPILED", type(fit._COMPILED)())
    frame = cdnow_rfm[cdnow_rfm["frequency"] > 0]
    problem = GammaGammaModel().likelihood_problem(frame)
    compiled, _, note = _nutpie_model(problem, BayesConfig())
    assert note is not None and "without the disk cache (AttributeError" in note
    theta = np.log([6.2, 3.7, 0.5])
    code, _, grad = call_logp(compiled, theta)
    _, ours, _ = _log_posterior(problem, [DEFAULT_PRIOR] * 3, theta)
    assert code == 0
    np.testing.assert_allclose(grad, ours, rtol=1e-9)
