"""log 2F1(1, B; C; z) and its derivatives in B, C and z, as a PyTensor operation compiled by Numba.

The Pareto/NBD likelihood needs the Gauss hypergeometric function 2F1(1, B; C; z) for 0 < B < C and 0 <= z < 1
(see `clv.purchase.pareto_nbd._log_hyp_term`), whose derivatives in its parameters B and C have no closed form.
Here it is Gauss's continued fraction of `clv.hypergeometric` (DLMF 15.7.5; an S-fraction, convergent for every
z < 1), evaluated by the modified Lentz method (Thompson & Barnett 1986) with the derivatives of every partial
numerator carried along (forward-mode differentiation of the recurrence), so that the value and its three
derivatives are exact to rounding: nothing is differenced. The maximum-likelihood path evaluates the same fraction
in complex arithmetic for its complex-step gradient; the equality test in tests/test_graphs.py keeps the two
together.

The kernel is compiled by Numba (cached on disk, so a process compiles it once per machine) and used both by
Python (`perform`, for PyMC's own sampler) and inside the Numba functions that nutpie compiles from the PyMC
model (the registration below).
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
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

__all__ = ["LogHyp2F1One", "log_hyp2f1_one", "log_hyp2f1_one_grad"]

FloatArray = NDArray[np.float64]

_TINY = 1e-300
_MAX_TERMS = 200_000
_EPS = 2e-16


@numba.njit(cache=True, nogil=True)
def _partial_numerator(j: int, B: float, C: float) -> tuple[float, float, float]:
    """k_j of the fraction (see `clv.hypergeometric`) and its derivatives in B and C (one division)."""
    n = j // 2
    if j % 2:
        den1, den2 = C - 1.0 + 2 * n, C + 2 * n
        inv = 1.0 / (den1 * den2)
        k = (B + n) * (C - 1.0 + n) * inv
        return k, (C - 1.0 + n) * inv, (B + n) * inv - k * (den1 + den2) * inv
    den1, den2 = C - 2.0 + 2 * n, C - 1.0 + 2 * n
    inv = 1.0 / (den1 * den2)
    k = n * (C - 1.0 - B + n) * inv
    return k, -n * inv, n * inv - k * (den1 + den2) * inv


@numba.njit(cache=True, nogil=True)
def _scalar(B: float, C: float, z: float) -> tuple[float, float, float, float]:
    """log 2F1(1, B; C; z) and its derivatives in (B, C, z): 2F1 = 1 / g, g = 1 - k1 z / (1 - k2 z / ...), by
    Lentz on g with a_j = -k_j z, differentiating D_j = 1 / (1 + a_j D_{j-1}), C_j = 1 + a_j / C_{j-1} and
    log g = sum log(C_j D_j) along (the three directions written out: no arrays in the inner loop; g itself is
    a product of the steps, in [1 - z, 1], logged once); stops when the step and the derivatives' steps are
    below rounding."""
    if z == 0.0:  # g = 1; d log g / dz = -k1 = -B / C
        return 0.0, 0.0, 0.0, B / C
    g = 1.0
    cc, d = 1.0, 0.0
    # derivatives of C_{j-1} and D_{j-1} in B, C and z, and of log g
    cb = cc_c = cz = 0.0
    db = dc = dz = 0.0
    gb = gc = gz = 0.0
    for j in range(1, _MAX_TERMS):
        k, dk_b, dk_c = _partial_numerator(j, B, C)
        a = -k * z
        ab, ac, az = -dk_b * z, -dk_c * z, -k
        d_raw = 1.0 + a * d
        if abs(d_raw) < _TINY:
            d_raw = _TINY
        inv_c = 1.0 / cc
        c_new = 1.0 + a * inv_c
        if abs(c_new) < _TINY:
            c_new = _TINY
        d_new = 1.0 / d_raw
        inv_c_new = 1.0 / c_new
        d2 = d_new * d_new
        a_c2 = a * inv_c * inv_c
        db, dc, dz = -(ab * d + a * db) * d2, -(ac * d + a * dc) * d2, -(az * d + a * dz) * d2
        cb, cc_c, cz = ab * inv_c - a_c2 * cb, ac * inv_c - a_c2 * cc_c, az * inv_c - a_c2 * cz
        step_b = cb * inv_c_new + db * d_raw
        step_c = cc_c * inv_c_new + dc * d_raw
        step_z = cz * inv_c_new + dz * d_raw
        gb += step_b
        gc += step_c
        gz += step_z
        delta = c_new * d_new
        g *= delta
        cc, d = c_new, d_new
        if (
            abs(delta - 1.0) < _EPS
            and abs(step_b) <= _EPS * abs(gb)
            and abs(step_c) <= _EPS * abs(gc)
            and abs(step_z) <= _EPS * abs(gz)
        ):
            break
    return -math.log(g), -gb, -gc, -gz


@numba.njit(cache=True, nogil=True)
def log_hyp2f1_one_grad(B: FloatArray, C: FloatArray, z: FloatArray) -> tuple[FloatArray, ...]:
    """Elementwise log 2F1(1, B; C; z) and its derivatives in B, C and z (vectors of one length)."""
    n = B.size
    value, d_b, d_c, d_z = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        value[i], d_b[i], d_c[i], d_z[i] = _scalar(B[i], C[i], z[i])
    return value, d_b, d_c, d_z


def log_hyp2f1_one(B: FloatArray, C: FloatArray, z: FloatArray) -> FloatArray:
    """Elementwise log 2F1(1, B; C; z), for 0 < B < C and 0 <= z < 1."""
    B, C, z = (np.ascontiguousarray(v, dtype=float) for v in np.broadcast_arrays(B, C, z))
    return np.asarray(log_hyp2f1_one_grad(B.ravel(), C.ravel(), z.ravel())[0]).reshape(B.shape)


class LogHyp2F1One(Op):
    """(B, C, z) vectors of one length -> log 2F1(1, B; C; z) and its derivatives in B, C and z (four vectors).
    The gradient of the first output is the other three; the derivative outputs are not differentiated again
    (NUTS needs first derivatives only)."""

    __props__ = ()

    def make_node(self, B: Any, C: Any, z: Any) -> Apply:
        inputs = [pt.as_tensor_variable(v).astype("float64") for v in (B, C, z)]
        return Apply(self, inputs, [pt.dvector() for _ in range(4)])

    def perform(self, node: Apply, inputs: list[FloatArray], outputs: list[list[Any]]) -> None:
        B, C, z = (np.ascontiguousarray(v, dtype=float) for v in inputs)
        for slot, value in zip(outputs, log_hyp2f1_one_grad(B, C, z), strict=True):
            slot[0] = value

    def infer_shape(self, fgraph: Any, node: Apply, shapes: list[Any]) -> list[Any]:
        return [shapes[0]] * 4

    def grad(self, inputs: list[Any], output_grads: list[Any]) -> list[Any]:
        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError("the derivatives of log 2F1 are not differentiated again")
        _, d_b, d_c, d_z = self(*inputs)
        g = output_grads[0]
        return [g * d_b, g * d_c, g * d_z]


@register_funcify_default_op_cache_key(LogHyp2F1One)
def _numba_log_hyp2f1_one(op: LogHyp2F1One, node: Apply, **kwargs: Any) -> Any:
    """The Numba implementation nutpie's compiler calls: the cached kernel itself."""
    return log_hyp2f1_one_grad
