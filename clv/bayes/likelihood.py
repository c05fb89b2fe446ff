"""The maximum-likelihood functions of the models, as PyTensor operations for PyMC.

A Bayesian fit uses the very likelihood the maximum-likelihood fit maximises (`LikelihoodProblem`): the
weighted sum over unique histories of the per-row log-likelihood, with its exact gradient (analytic for the BG
family, BG/BB and Gamma-Gamma; complex step through the continued fraction for Pareto/NBD). Wrapping those
numpy functions keeps one implementation of each formula and its numerical safeguards, and each NUTS step costs
one pass over the unique rows, not over customers. The value and gradient come from one call, cached for the
point, because PyMC asks for both at the same point.
"""

# PyTensor's Op methods are typed loosely for any op; these concrete ones narrow them.
# mypy: disable-error-code="override,type-arg"
from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from clv.model import LikelihoodProblem

__all__ = ["LogLikelihood"]

FloatArray = NDArray[np.float64]


class _Evaluator:
    """Total log-likelihood and gradient at a point, remembering the last point."""

    def __init__(self, problem: LikelihoodProblem) -> None:
        self.problem = problem
        self._key: bytes | None = None
        self._value = (0.0, np.zeros(len(problem.param_names)))

    def __call__(self, params: FloatArray) -> tuple[float, FloatArray]:
        key = params.tobytes()
        if key != self._key:
            with np.errstate(all="ignore"):
                value, grad = self.problem.total(params)
            if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                value, grad = -np.inf, np.zeros_like(params)
            self._key, self._value = key, (value, np.asarray(grad, dtype=float))
        return self._value


class _Gradient(Op):
    def __init__(self, evaluator: _Evaluator) -> None:
        self.evaluator = evaluator

    def make_node(self, params: Any) -> Apply:
        params = pt.as_tensor_variable(params)
        return Apply(self, [params], [pt.dvector()])

    def perform(self, node: Apply, inputs: list[FloatArray], outputs: list[list[Any]]) -> None:
        outputs[0][0] = self.evaluator(np.asarray(inputs[0], dtype=float))[1].copy()


class LogLikelihood(Op):
    """params (rescaled, natural scale, as a vector) -> the total log-likelihood of the problem's rows."""

    def __init__(self, problem: LikelihoodProblem) -> None:
        self.evaluator = _Evaluator(problem)
        self.gradient = _Gradient(self.evaluator)

    def make_node(self, params: Any) -> Apply:
        params = pt.as_tensor_variable(params)
        return Apply(self, [params], [pt.dscalar()])

    def perform(self, node: Apply, inputs: list[FloatArray], outputs: list[list[Any]]) -> None:
        outputs[0][0] = np.asarray(self.evaluator(np.asarray(inputs[0], dtype=float))[0], dtype=float)

    def grad(self, inputs: list[Any], output_grads: list[Any]) -> list[Any]:
        return [output_grads[0] * self.gradient(inputs[0])]
