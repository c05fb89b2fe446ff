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
from clv.mle import LogBounds, central_difference_hessian

if TYPE_CHECKING:
    from clv.model import FittedModel

__all__ = [
    "CoefficientLayout",
    "CovariateLikelihood",
    "CovariateOptions",
    "by_covariate_pattern",
    "compressed_rows",
    "curve_by_covariate_pattern",
    "grouped_loglik_grad",
    "pattern_groups",
]

FloatArray = NDArray[np.float64]
RowFunction = Callable[..., tuple[FloatArray, FloatArray]]
F = TypeVar("F", bound=Callable[..., Any])
#: one covariate pattern's rows: the model's log-likelihood on them (`_prepare_loglik_grad`), their data columns,
#: the pattern's design row per process, and their weights
PatternLoglik = Callable[[FloatArray], tuple[FloatArray, FloatArray]]
Part = tuple[PatternLoglik, tuple[FloatArray, ...], dict[str, FloatArray], FloatArray]


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
    ll = np.empty(P.shape[0])
    grad = np.empty(P.shape)
    for rows in pattern_groups(P):
        ll[rows], grad[rows] = scalar(P[rows[0]], *(c[rows] for c in columns))
    return ll, grad


#: at most this many covariate patterns: the likelihood runs the model's scalar function once per pattern;
#: beyond (continuous covariates), it runs the model's per-row function on all rows at once
GROUPED_PATTERNS = 2_000


class CovariateLikelihood:
    """The optimiser's view of a covariate model (`clv.mle.Likelihood`): params are the k base parameters followed
    by e^g per coefficient slot (see the module docstring); the weighted mean log-likelihood and its gradient in
    those parameters.

    With P_ij = theta_j exp(sum_p sign_pj (Z_p g_p)_i) (`row_parameters`) and l_i the row's log-likelihood,
    dl_i/dtheta_j = dl_i/dP_ij P_ij / theta_j and dl_i/dg_s = sum_p sum_j sign_pj dl_i/dP_ij P_ij Z_p,ic over the
    design columns c in slot s; dl/d(e^g) = dl/dg / e^g. Customers of one covariate pattern share P and Z, so the
    sums over rows are taken per pattern first: with few patterns (categorical covariates) one call of the model's
    scalar function per pattern, on that pattern's rows (kept contiguous), gives everything; with many
    (continuous covariates), the per-row function runs on all rows. The L2 penalty sum_p lambda_p ||g_p||^2 is
    subtracted from the mean (CLVTools' objective)."""

    log_bounds: LogBounds | None

    def __init__(
        self,
        model: FittedModel,
        layout: CoefficientLayout,
        penalty: Mapping[str, float],
        data: tuple[FloatArray, ...],
        designs: dict[str, FloatArray],
        weights: FloatArray,
        log_bounds: LogBounds | None,
        penalty_scale: FloatArray | None = None,
    ) -> None:
        self.model, self.layout, self.penalty = model, layout, dict(penalty)
        self.data, self.designs, self.weights, self.log_bounds = data, designs, weights, log_bounds
        self.k = len(model.param_names)
        #: the penalty is on c_s g_s per slot (1 here; 1/sd in the standardised search, `standardised`)
        self.penalty_scale = np.ones(layout.size) if penalty_scale is None else penalty_scale
        flat = [d[:, j] for d in designs.values() for j in range(d.shape[1])]
        self.pattern = unique_rows(*flat)[1] if flat else np.zeros(weights.size, dtype=np.intp)
        self.grouped = int(self.pattern.max(initial=0)) + 1 <= GROUPED_PATTERNS

    def _params(
        self, params: FloatArray, designs: Mapping[str, FloatArray]
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        coefs = self.layout.split(np.log(params[self.k :]))
        base = params[: self.k]
        return row_parameters(base, self.model.param_names, self.model.covariate_effects, designs, coefs), coefs

    def _chain(self, params: FloatArray, dlog: FloatArray, designs: Mapping[str, FloatArray]) -> FloatArray:
        """The gradient in (theta, e^g) from d l / d log P per row (rows, k) summed with the rows' weights
        already (each row of `dlog` is a weighted sum over customers sharing `designs`' row)."""
        grad = np.empty(self.k + self.layout.size)
        grad[: self.k] = dlog.sum(axis=0) / params[: self.k]
        grad_g = np.zeros(self.layout.size)
        names = list(self.model.param_names)
        for process, moves in self.model.covariate_effects.items():
            z = designs.get(process)
            if z is None or z.shape[1] == 0:
                continue
            d_eta = sum(sign * dlog[:, names.index(param)] for param, sign in moves)
            grad_g[self.layout.slots[process]] += np.asarray(d_eta) @ z
        grad[self.k :] = grad_g
        return grad

    def _penalised(self, params: FloatArray, value: float, grad: FloatArray) -> tuple[float, FloatArray]:
        g = np.log(params[self.k :])
        grad_g = grad[self.k :].copy()
        for process, slots in self.layout.slots.items():
            lam = float(self.penalty.get(process, 0.0))
            if lam:
                c = self.penalty_scale[slots]
                value -= lam * float(np.sum((c * g[slots]) ** 2))
                np.add.at(grad_g, slots, -2.0 * lam * c**2 * g[slots])
        grad = grad.copy()
        grad[self.k :] = grad_g / params[self.k :]
        return value, grad

    def on_rows(
        self, rows: NDArray[np.intp] | None, weights: FloatArray
    ) -> Callable[[FloatArray], tuple[float, FloatArray]]:
        if not self.grouped:
            data = tuple(c if rows is None else c[rows] for c in self.data)
            designs = {p: z if rows is None else z[rows] for p, z in self.designs.items()}
            return lambda params: self._penalised(params, *self._mean_rows(params, data, designs, weights))
        parts = self._parts(rows, weights)
        return lambda params: self._penalised(params, *self._mean_groups(params, parts))

    def _parts(self, rows: NDArray[np.intp] | None, weights: FloatArray) -> list[Part]:
        """The rows of each covariate pattern (of all rows, or of `rows`), contiguous: their data columns, the
        pattern's design row per process, and their weights."""
        index = np.arange(self.weights.size) if rows is None else rows
        parts = []
        for g in _groups_of(self.pattern[index]):
            taken = index[g]
            designs = {p: z[taken[:1]] for p, z in self.designs.items()}
            data = tuple(c[taken] for c in self.data)
            parts.append((self.model._prepare_loglik_grad(*data), data, designs, weights[g]))
        return parts

    def _mean_rows(
        self, params: FloatArray, data: tuple[FloatArray, ...], designs: dict[str, FloatArray], weights: FloatArray
    ) -> tuple[float, FloatArray]:
        P, _ = self._params(params, designs)
        ll, dP = self.model._row_loglik_grad(P, *data)
        return float(weights @ ll), self._chain(params, weights[:, None] * dP * P, designs)

    def _mean_groups(self, params: FloatArray, parts: list[Part]) -> tuple[float, FloatArray]:
        value, grad = 0.0, np.zeros(self.k + self.layout.size)
        for fn, _, z, w in parts:
            P, _ = self._params(params, z)
            ll, dP = fn(P[0])
            value += float(w @ ll)
            grad += self._chain(params, (w @ dP * P[0])[None, :], z)
        return value, grad

    def _jacobian(self, z: Mapping[str, FloatArray]) -> FloatArray:
        """A with log P = A (log theta, g) for one pattern's design row z: shape (k, k + slots)."""
        a = np.zeros((self.k, self.k + self.layout.size))
        a[:, : self.k] = np.eye(self.k)
        names = list(self.model.param_names)
        for process, moves in self.model.covariate_effects.items():
            row = z.get(process)
            if row is None or row.shape[1] == 0:
                continue
            for param, sign in moves:
                np.add.at(a[names.index(param)], self.k + self.layout.slots[process], sign * row[0])
        return a

    def mean_hessian(
        self, params: FloatArray, weights: FloatArray, rows: NDArray[np.intp] | None = None
    ) -> FloatArray | None:
        """The Hessian of the mean in the search's parameters from one k x k Hessian per covariate pattern (with
        few patterns): in v = log P a pattern's Hessian is diag(P) H_P diag(P) + diag(dL/dP P), with H_P the
        model's analytic one where it has one, else central differences of its exact gradient; log P = A u with
        u = (log theta, g), so the Hessian in u is the sum of A' H_v A (minus the penalty's 2 lambda per
        coefficient); in the natural (theta, e^g) it is diag(1/p) (H_u - diag(grad_u)) diag(1/p). On all rows, or
        on `rows` (a weighted sample, for the optimiser's first Newton steps). None with many patterns (the
        optimiser then differences the gradient)."""
        if not self.grouped:
            return None
        size = self.k + self.layout.size
        h_u, grad_u = np.zeros((size, size)), np.zeros(size)
        for fn, data, z, w in self._parts(rows, weights):
            P = self._params(params, z)[0][0]
            g_p = w @ fn(P)[1]
            h_v = P[:, None] * self._pattern_hessian(P, fn, data, w) * P[None, :] + np.diag(g_p * P)
            a = self._jacobian(z)
            h_u += a.T @ h_v @ a
            grad_u += a.T @ (g_p * P)
        g = np.log(params[self.k :])
        for process, index in self.layout.slots.items():
            lam = float(self.penalty.get(process, 0.0))
            c2 = self.penalty_scale[index] ** 2
            slots = self.k + index
            np.add.at(h_u, (slots, slots), -2.0 * lam * c2)
            np.add.at(grad_u, slots, -2.0 * lam * c2 * g[index])
        return np.asarray((h_u - np.diag(grad_u)) / np.outer(params, params), dtype=float)

    def _pattern_hessian(
        self,
        P: FloatArray,
        fn: PatternLoglik,
        data: tuple[FloatArray, ...],
        w: FloatArray,
    ) -> FloatArray:
        """The weighted Hessian of one pattern's rows in the model's parameters P."""
        analytic = self.model._hessian_function(*data)
        if analytic is not None:
            return np.asarray(analytic(P, w), dtype=float)
        return central_difference_hessian(lambda q: np.asarray(w @ fn(q)[1]), P)

    def standardised(self) -> tuple[CovariateLikelihood, FloatArray]:
        """The same likelihood on design columns centred and scaled to weighted sd 1, for the search: a covariate
        in the tens (an age) makes its coefficient tiny and the base parameters those of a customer far from the
        data (age 0), a badly conditioned search. Returns it and M with u = M u_s between the two
        parametrisations' logs u = (log theta, g): g = g_s / sd per slot, log theta_j = log theta_s,j -
        sum over the processes p moving j of sign * sum_c g_s,c m_c / sd_c. The penalty stays on the original
        coefficients (penalty_scale 1/sd)."""
        w = self.weights / self.weights.sum()
        size = self.k + self.layout.size
        M = np.eye(size)
        scale = np.ones(self.layout.size)
        designs = {}
        names = list(self.model.param_names)
        for process, z in self.designs.items():
            m = w @ z
            sd = np.sqrt(w @ (z - m) ** 2)
            m, sd = np.where(sd > 0, m, 0.0), np.where(sd > 0, sd, 1.0)
            designs[process] = (z - m) / sd
            slots = self.layout.slots[process]
            scale[slots] = sd
            for param, sign in self.model.covariate_effects.get(process, ()):
                np.add.at(M[names.index(param)], self.k + slots, -sign * m / sd)
        M[self.k :, self.k :] = np.diag(1.0 / scale)
        search = CovariateLikelihood(
            self.model, self.layout, self.penalty, self.data, designs, self.weights, self.log_bounds, 1.0 / scale
        )
        return search, M

    def row_loglik(self, params: FloatArray, data: tuple[FloatArray, ...]) -> FloatArray:
        """Per-row log-likelihood (without the penalty) on `data` (the rows' columns as given, e.g. unscaled)."""
        P, _ = self._params(params, self.designs)
        if not self.grouped:
            return self.model._row_loglik_grad(P, *data)[0]
        return grouped_loglik_grad(self.model._loglik_grad, P, *data)[0]


def compressed_rows(
    data: Sequence[FloatArray], designs: Sequence[FloatArray], weights: FloatArray, keys: int | None = None
) -> tuple[list[FloatArray], list[FloatArray], FloatArray]:
    """Rows with the same data and the same covariate values as one weighted row: (data columns, designs,
    weights) of the unique rows. The rows are told apart by the first `keys` data columns (all: None) and the
    covariate pattern (the other data columns follow from those, e.g. time rescaled)."""
    flat = [d[:, j] for d in designs for j in range(d.shape[1])]
    pattern = unique_rows(*flat)[1].astype(float) if flat else np.zeros(weights.size)
    key = list(data if keys is None else data[:keys])
    _, inverse, _ = unique_rows(*key, pattern)
    w = np.bincount(inverse, weights=weights).astype(float)
    first = np.empty(w.size, dtype=np.intp)
    first[inverse[::-1]] = np.arange(inverse.size - 1, -1, -1)
    return [np.asarray(c)[first] for c in data], [d[first] for d in designs], w


def _groups_of(codes: NDArray[np.intp]) -> list[NDArray[np.intp]]:
    """The positions of each distinct code, in order of the codes (rows in their order within a group)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [rows for rows in np.split(order, bounds) if rows.size]


def pattern_groups(P: FloatArray) -> list[NDArray[np.intp]]:
    """The rows of each distinct parameter row of P (customers who share a covariate pattern)."""
    return _groups_of(unique_rows(*[P[:, j] for j in range(P.shape[1])])[1])


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
