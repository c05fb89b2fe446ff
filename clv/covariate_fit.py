"""Fitting a model with static covariates, and predicting per covariate pattern.

The search's parameters are the model's base parameters and one coefficient per "slot": a design column of one
process, or, for a covariate constrained to act alike in two processes (CLVTools' `names.cov.constr`,
Bachmann, Meierer & Naef 2021, Eq. 14), one coefficient shared by that covariate's columns in both. The
optimiser of `clv.mle` searches on log-parameters; a coefficient g enters it as the positive number e^g, so that
its log is g itself and every other part of the search (starts, bounds, Newton polish, standard errors) is
shared with the fits without covariates.

With an L2 penalty the objective is CLVTools' (its implementation of the paper's Eq. 13): the mean
log-likelihood minus lambda_process * ||g_process||^2 per process, i.e. the total minus n times the penalty.

Predictions with covariates are per covariate pattern: customers with the same covariate values share one set of
parameters (alpha_i, beta_i, ...), so the model's own closed forms and quadratures run once per pattern on its
customers, exactly (`by_covariate_pattern`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.compress import unique_rows
from clv.covariates import CovariateSet, Effect, row_parameters
from clv.errors import UsageError

if TYPE_CHECKING:
    from clv.model import FittedModel

__all__ = [
    "CoefficientLayout",
    "CovariateOptions",
    "by_covariate_pattern",
    "compressed_rows",
    "covariate_row_likelihood",
    "curve_by_covariate_pattern",
    "grouped_loglik_grad",
    "pattern_groups",
]

FloatArray = NDArray[np.float64]
RowFunction = Callable[..., tuple[FloatArray, FloatArray]]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CovariateOptions:
    """What a model was asked to do with covariates: the columns per process, the covariates constrained to one
    coefficient in both processes, the L2 penalty per process, categorical columns with their reference level
    (None: the first level), and whether numeric columns are standardised."""

    processes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    constrained: tuple[str, ...] = ()
    penalty: dict[str, float] = field(default_factory=dict)
    categorical: dict[str, str | None] = field(default_factory=dict)
    standardise: bool = False

    @property
    def active(self) -> bool:
        return any(self.processes.values())

    def check(self, model: str, effects: Mapping[str, Sequence[Effect]]) -> None:
        """Refuse options the model cannot take: a process it does not have, a negative penalty, a constraint
        on a covariate that is not in two processes."""
        unknown = [p for p, cols in self.processes.items() if cols and p not in effects]
        if unknown:
            raise UsageError(f"{model} has no {', '.join(unknown)} process; its processes: {', '.join(effects)}")
        bad = {p: v for p, v in self.penalty.items() if not (v >= 0) or p not in effects}
        if bad:
            raise UsageError(f"{model}: penalties must be >= 0 and name a process ({', '.join(effects)}); got {bad}")
        for name in self.constrained:
            holders = [p for p, cols in self.processes.items() if name in cols]
            if len(holders) < 2:
                raise UsageError(
                    f"{model}: covariate {name!r} is constrained to one coefficient in both processes, so it "
                    "must be listed in both"
                )


@dataclass(frozen=True)
class CoefficientLayout:
    """The coefficients of the search: `names` per slot ("purchase:channel[1]", or "constrained:gender" for a
    slot shared by processes), and for each process the slot of each of its design columns."""

    names: tuple[str, ...]
    slots: dict[str, NDArray[np.intp]]

    @classmethod
    def of(cls, covariates: CovariateSet, constrained: Sequence[str]) -> CoefficientLayout:
        names: list[str] = []
        shared: dict[str, int] = {}
        slots: dict[str, NDArray[np.intp]] = {}
        for process, columns in covariates.processes.items():
            index = []
            for column in columns:
                for design in covariates.columns[column].design_names:
                    if column in constrained:
                        if design not in shared:
                            shared[design] = len(names)
                            names.append(f"constrained:{design}")
                        index.append(shared[design])
                    else:
                        index.append(len(names))
                        names.append(f"{process}:{design}")
            slots[process] = np.asarray(index, dtype=np.intp)
        return cls(names=tuple(names), slots=slots)

    @property
    def size(self) -> int:
        return len(self.names)

    def split(self, g: FloatArray) -> dict[str, FloatArray]:
        """Each process's coefficient vector from the slot values."""
        return {process: g[index] for process, index in self.slots.items()}


def grouped_loglik_grad(scalar: RowFunction, P: FloatArray, *columns: FloatArray) -> tuple[FloatArray, FloatArray]:
    """A per-row-parameter log-likelihood from a model's scalar one: rows grouped by their parameters, the scalar
    function called once per group (exact; as fast as the scalar function when the groups are few)."""
    (codes,) = unique_rows(*[P[:, j] for j in range(P.shape[1])])[1:2]
    ll = np.empty(P.shape[0])
    grad = np.empty(P.shape)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for rows in np.split(order, bounds):
        if rows.size == 0:
            continue
        ll[rows], grad[rows] = scalar(P[rows[0]], *(c[rows] for c in columns))
    return ll, grad


def covariate_row_likelihood(
    row_function: RowFunction,
    param_names: Sequence[str],
    effects: Mapping[str, Sequence[Effect]],
    layout: CoefficientLayout,
    penalty: Mapping[str, float],
) -> Callable[..., tuple[FloatArray, FloatArray]]:
    """`loglik_grad(params, *data columns, *designs)` of the covariate model: params are the k base parameters
    followed by e^g per coefficient slot (see the module docstring); the gradient is in those parameters.

    With P_ij = theta_j exp(sum_p sign_pj (Z_p g_p)_i) (`row_parameters`) and l_i the row's log-likelihood,
    dl_i / dtheta_j = dl_i/dP_ij P_ij / theta_j and dl_i / dg_s = sum_p sum_j sign_pj dl_i/dP_ij P_ij Z_p,ic over
    the design columns c in slot s; dl/d(e^g) = dl/dg / e^g. The penalty sum_p lambda_p ||g_p||^2 is taken
    from every row (so that the weighted mean carries it once)."""
    k = len(param_names)
    processes = list(layout.slots)

    def loglik_grad(params: FloatArray, *arrays: FloatArray) -> tuple[FloatArray, FloatArray]:
        data, designs = arrays[: len(arrays) - len(processes)], arrays[len(arrays) - len(processes) :]
        base, g = params[:k], np.log(params[k:])
        coefs = layout.split(g)
        z = dict(zip(processes, designs, strict=True))
        P = row_parameters(base, param_names, effects, z, coefs)
        ll, dP = row_function(P, *data)
        dlog = dP * P
        grad = np.empty((ll.size, k + layout.size))
        grad[:, :k] = dlog / base
        grad_g = np.zeros((ll.size, layout.size))
        for process, moves in effects.items():
            if process not in z or z[process].shape[1] == 0:
                continue
            d_eta = sum(sign * dlog[:, list(param_names).index(param)] for param, sign in moves)
            grad_g[:, layout.slots[process]] += np.asarray(d_eta)[:, None] * z[process]
        pen, pen_grad = 0.0, np.zeros(layout.size)
        for process, g_p in coefs.items():
            lam = float(penalty.get(process, 0.0))
            if lam:
                pen += lam * float(g_p @ g_p)
                np.add.at(pen_grad, layout.slots[process], -2.0 * lam * g_p)
        grad_g += pen_grad
        grad[:, k:] = grad_g / params[k:]
        return ll - pen, grad

    return loglik_grad


def compressed_rows(
    data: Sequence[FloatArray], designs: Sequence[FloatArray], weights: FloatArray
) -> tuple[list[FloatArray], list[FloatArray], FloatArray]:
    """Rows with the same data and the same covariate values as one weighted row: (data columns, designs,
    weights) of the unique rows."""
    flat = list(data) + [d[:, j] for d in designs for j in range(d.shape[1])]
    uniques, inverse, _ = unique_rows(*flat)
    w = np.bincount(inverse, weights=weights).astype(float)
    out_data = uniques[: len(data)]
    out_designs, at = [], len(data)
    for d in designs:
        cols = uniques[at : at + d.shape[1]]
        out_designs.append(np.stack(cols, axis=1) if cols else np.zeros((w.size, 0)))
        at += d.shape[1]
    return out_data, out_designs, w


def pattern_groups(P: FloatArray) -> list[NDArray[np.intp]]:
    """The rows of each distinct parameter row of P (customers who share a covariate pattern)."""
    codes = unique_rows(*[P[:, j] for j in range(P.shape[1])])[1]
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [rows for rows in np.split(order, bounds) if rows.size]


def by_covariate_pattern(method: F) -> F:
    """A per-customer prediction of a model with covariates, computed per covariate pattern: the rows of each
    pattern are predicted by the model without covariates at that pattern's parameters (`model.pattern_model`),
    and the results put back in row order. Models without covariates run the method as it is."""

    @functools.wraps(method)
    def wrapper(self: FittedModel, rfm: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        if self.covariates_ is None:
            return method(self, rfm, *args, **kwargs)
        P = self.row_params(rfm)
        out: FloatArray | None = None
        for rows in pattern_groups(P):
            sub = self.pattern_model(P[rows[0]])
            value = np.asarray(method(sub, rfm.iloc[rows], *args, **kwargs))
            if out is None:
                out = np.empty((len(rfm), *value.shape[1:]), dtype=value.dtype)
            out[rows] = value
        return out if out is not None else method(self.pattern_model(np.array(self._p())), rfm, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def curve_by_covariate_pattern(method: F) -> F:
    """`by_covariate_pattern` for `alive_curve`, whose result is (P(alive) per row, each row's group, the curve
    per group): the groups of all patterns are numbered one after another."""

    @functools.wraps(method)
    def wrapper(self: FittedModel, rfm: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        if self.covariates_ is None:
            return method(self, rfm, *args, **kwargs)
        P = self.row_params(rfm)
        p_alive = np.empty(len(rfm))
        group = np.empty(len(rfm), dtype=np.intp)
        curves: list[FloatArray] = []
        offset = 0
        for rows in pattern_groups(P):
            p, inverse, curve = method(self.pattern_model(P[rows[0]]), rfm.iloc[rows], *args, **kwargs)
            p_alive[rows], group[rows] = p, inverse + offset
            curves.append(curve)
            offset += curve.shape[0]
        return p_alive, group, np.concatenate(curves, axis=0)

    return wrapper  # type: ignore[return-value]
