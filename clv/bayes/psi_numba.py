"""The digamma function psi for PyTensor's Numba backend, compiled once per machine.

The gradient of every likelihood graph with a log-gamma term (`pt.gammaln`: BG/NBD, MBG/NBD, Pareto/NBD, BG/BB,
Gamma-Gamma) contains psi. PyTensor's Numba backend has no Numba implementation of its `Psi` scalar operation:
it falls back to calling Python for every element, and a graph holding such a call cannot be cached, so nutpie
recompiled each model's whole graph in every process (15-18 s for BG/NBD on these machines). Registering this
implementation with a cache key (PyTensor's extension point for operations, `register_funcify_and_cache_key`)
makes the graphs compile to machine code end to end and lets Numba's disk cache serve later processes.

psi(x) for x > 0: the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10, then the asymptotic expansion
psi(x) ~ log x - 1/(2x) - sum_k B_2k / (2k x^2k) (DLMF 5.11.2) to the x^-16 term, whose remainder at x >= 10 is
below 1e-17 relative. For x < 0 the reflection psi(1 - x) - psi(x) = pi cot(pi x) (DLMF 5.5.4); psi has poles
at 0, -1, -2, ... where it returns nan (as scipy.special.psi does at the negative integers; -inf at 0 from the
left is not needed by any likelihood here: the graphs' arguments are positive). `tests/test_graphs.py` holds it
equal to scipy.special.psi.
"""

# mypy: disable-error-code="untyped-decorator,no-untyped-call,type-arg"
from __future__ import annotations

import math
from typing import Any

import numba
from pytensor.graph.basic import Apply
from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key
from pytensor.scalar.math import Psi

__all__ = ["digamma"]

# B_2k / (2k) for k = 1..8 (Bernoulli numbers B_2 = 1/6, B_4 = -1/30, ...; DLMF 24.2)
_C1, _C2, _C3, _C4 = 1.0 / 12.0, -1.0 / 120.0, 1.0 / 252.0, -1.0 / 240.0
_C5, _C6, _C7, _C8 = 1.0 / 132.0, -691.0 / 32760.0, 1.0 / 12.0, -3617.0 / 8160.0


@numba.njit(cache=True, nogil=True)
def _digamma_positive(value: float) -> float:
    x = float(value)
    shift = 0.0
    while x < 10.0:
        shift -= 1.0 / x
        x += 1.0
    w = 1.0 / (x * x)
    series = w * (_C1 + w * (_C2 + w * (_C3 + w * (_C4 + w * (_C5 + w * (_C6 + w * (_C7 + w * _C8)))))))
    return shift + math.log(x) - 0.5 / x - series


@numba.njit(cache=True, nogil=True)
def digamma(x: float) -> float:
    """psi(x) = d log Gamma(x) / dx, for float x (nan at the poles 0, -1, -2, ... and for nan)."""
    v = float(x)
    if math.isnan(v):
        return v
    if v > 0.0:
        return _digamma_positive(v)
    if v == math.floor(v):
        return math.nan
    return _digamma_positive(1.0 - v) - math.pi / math.tan(math.pi * v)


@register_funcify_and_cache_key(Psi)
def _numba_psi(op: Psi, node: Apply, **kwargs: Any) -> tuple[Any, str]:
    # the key names this implementation: a change of it must change the key (the cache is keyed on it alone)
    return digamma, "clv.bayes.psi_numba.digamma.v1"
