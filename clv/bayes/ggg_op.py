"""Pareto/GGG's dropout term log[(1 - c^k) + c^k Q(k, w)] and its derivatives, as a PyTensor operation compiled
by Numba.

The term (`clv.purchase.ggg.log_dropout_term` without its e^(-mu t_x)) has c = b / (b + mu), w = (b + mu) d,
b = k lambda; its gradient needs dP(k, w) / dk, the derivative of the regularised incomplete gamma function in
its shape, which has no closed form (PyTensor's own `gammainc` gradient in k is a Python loop that its Numba
backend can only call through the interpreter). Here P, Q and dP / dk come from one pass of the power series

    P(k, w) = w^k e^(-w) / Gamma(k + 1) sum_{n>=0} w^n / ((k + 1) ... (k + n))       (DLMF 8.7.1)

differentiated term by term: d/dk log[w^(k+n) / Gamma(k + n + 1)] = log w - psi(k + n + 1), with psi(k + n + 1) =
psi(k + 1) + sum_{j<=n} 1 / (k + j) (DLMF 5.5.2), so each term costs one division more than the series itself.
For w > k + 1, where 1 - P loses digits, Q itself comes from Legendre's continued fraction (DLMF 8.9.2, by the
modified Lentz method). The series' partial sums are rescaled when large (they grow like e^w before the prefactor
brings them down). Tests (tests/test_pareto_ggg.py) hold the value to scipy and the gradient to central
differences.

Derivatives, with A = c^k P and D = 1 - A = (1 - c^k) + c^k Q:
    d log D / dk  = -c^k (log c P + dP/dk) / D
    d log D / db  = -(A k mu / (b (b + mu)) + c^k p(w) d) / D
    d log D / dmu = -(-A k / (b + mu) + c^k p(w) d) / D,
with p(w) = w^(k-1) e^(-w) / Gamma(k) the derivative of P in w. d is data (not differentiated).
"""

# PyTensor's Op methods are typed loosely for any op; these concrete ones narrow them.
# mypy: disable-error-code="override,type-arg,misc,no-untyped-call,untyped-decorator"
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from clv.bayes.psi_numba import digamma

__all__ = ["LogDropoutTerm", "log_dropout_bracket", "log_dropout_bracket_grad"]

FloatArray = NDArray[np.float64]

_EPS = 1e-16
_TINY = 1e-300
_BIG = 1e200
_MAX_TERMS = 100_000


@numba.njit(cache=True, nogil=True)
def _upper_fraction(k: float, w: float) -> float:
    """Q(k, w) by Legendre's continued fraction (DLMF 8.9.2; modified Lentz), for w > k + 1."""
    b = w + 1.0 - k
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - k)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(k * math.log(w) - w - math.lgamma(k)) * h


@numba.njit(cache=True, nogil=True)
def _lower_and_shape_derivative(k: float, w: float) -> tuple[float, float]:
    """P(k, w) and dP(k, w) / dk by the power series (module docstring), for w > 0. Far in the tail (w beyond
    k + 40 sqrt(k) + 750), Q(k, w) < 1e-300 (DLMF 8.11.2; the normal limit for large k): P = 1, dP / dk = 0."""
    if w > k + 40.0 * math.sqrt(k) + 750.0:
        return 1.0, 0.0
    log_w = math.log(w)
    log_pre = k * log_w - w - math.lgamma(k + 1.0)
    psi = digamma(k + 1.0)
    term, total, slope = 1.0, 1.0, log_w - psi
    n = 0
    while n < _MAX_TERMS:
        n += 1
        inv = 1.0 / (k + n)
        term *= w * inv
        psi += inv
        total += term
        slope += term * (log_w - psi)
        if total > _BIG:  # keep the partial sums finite: the prefactor takes the scale back
            term /= _BIG
            total /= _BIG
            slope /= _BIG
            log_pre += math.log(_BIG)
        if term < _EPS * total and n > w - k:
            break
    scale = math.exp(log_pre)
    return min(scale * total, 1.0), scale * slope


@numba.njit(cache=True, nogil=True)
def _scalar(k: float, b: float, mu: float, d: float) -> tuple[float, float, float, float]:
    """log D and its derivatives in k, b, mu (module docstring)."""
    if d <= 0.0:  # no time since the last purchase: nothing can have happened
        return 0.0, 0.0, 0.0, 0.0
    log_c = -math.log1p(mu / b)
    ck = math.exp(k * log_c)
    w = (b + mu) * d
    lower, dlower = _lower_and_shape_derivative(k, w)
    upper = _upper_fraction(k, w) if w > k + 1.0 else 1.0 - lower
    value = -math.expm1(k * log_c) + ck * upper
    if value < _TINY:
        value = _TINY
    a = ck * lower
    density = math.exp((k - 1.0) * math.log(w) - w - math.lgamma(k))
    inv = 1.0 / value
    d_k = -ck * (log_c * lower + dlower) * inv
    d_b = -(a * k * mu / (b * (b + mu)) + ck * density * d) * inv
    d_mu = -(-a * k / (b + mu) + ck * density * d) * inv
    return math.log(value), d_k, d_b, d_mu


@numba.njit(cache=True, nogil=True)
def log_dropout_bracket_grad(k: FloatArray, b: FloatArray, mu: FloatArray, d: FloatArray) -> tuple[FloatArray, ...]:
    """Elementwise log D and its derivatives in k, b and mu (vectors of one length)."""
    n = k.size
    value, d_k, d_b, d_mu = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        value[i], d_k[i], d_b[i], d_mu[i] = _scalar(k[i], b[i], mu[i], d[i])
    return value, d_k, d_b, d_mu


def log_dropout_bracket(k: FloatArray, b: FloatArray, mu: FloatArray, d: FloatArray) -> FloatArray:
    """Elementwise log[(1 - c^k) + c^k Q(k, (b + mu) d)], c = b / (b + mu)."""
    arrays = [np.ascontiguousarray(v, dtype=float) for v in np.broadcast_arrays(k, b, mu, d)]
    flat = [v.ravel() for v in arrays]
    return np.asarray(log_dropout_bracket_grad(*flat)[0]).reshape(arrays[0].shape)


class LogDropoutTerm(Op):
    """(k, b, mu, d) vectors of one length -> log D and its derivatives in k, b and mu (four vectors). The
    gradient of the first output is the other three (d gets none: it is data); the derivative outputs are not
    differentiated again (NUTS needs first derivatives only)."""

    __props__ = ()

    def make_node(self, k: Any, b: Any, mu: Any, d: Any) -> Apply:
        inputs = [pt.as_tensor_variable(v).astype("float64") for v in (k, b, mu, d)]
        return Apply(self, inputs, [pt.dvector() for _ in range(4)])

    def perform(self, node: Apply, inputs: list[FloatArray], outputs: list[list[Any]]) -> None:
        k, b, mu, d = (np.ascontiguousarray(v, dtype=float) for v in inputs)
        for slot, value in zip(outputs, log_dropout_bracket_grad(k, b, mu, d), strict=True):
            slot[0] = value

    def infer_shape(self, fgraph: Any, node: Apply, shapes: list[Any]) -> list[Any]:
        return [shapes[0]] * 4

    def grad(self, inputs: list[Any], output_grads: list[Any]) -> list[Any]:
        from pytensor.gradient import DisconnectedType

        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError("the derivatives of the dropout term are not differentiated again")
        _, d_k, d_b, d_mu = self(*inputs)
        g = output_grads[0]
        return [g * d_k, g * d_b, g * d_mu, pt.zeros_like(inputs[3])]


@register_funcify_default_op_cache_key(LogDropoutTerm)
def _numba_log_dropout_term(op: LogDropoutTerm, node: Apply, **kwargs: Any) -> Any:
    """The Numba implementation nutpie's compiler calls: the cached kernel itself."""
    return log_dropout_bracket_grad
