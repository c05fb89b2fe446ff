"""Static customer covariates: how columns of a customer table become a design matrix, and how coefficients move
a model's parameters per customer.

A covariate column is numeric (used as given, or standardised as (z - mean) / sd when asked) or categorical
(dummy-coded against a named reference level: one design column per other level, named `column[level]`). The
encoding is learned once from the fitting data (`CovariateSet.learn`), kept with the fitted model and applied
unchanged when scoring (`CovariateSet.design`), which refuses a missing column, a missing value or a level the
model has not seen, naming the customers.

Coefficients act on the log scale of the base parameters, as in CLVTools (Bachmann, Meierer & Naef 2021,
"The Estimation of Pareto/NBD and BG/NBD Models with Time-Invariant Covariates", and the package's
documentation): each model lists, per process, which parameters a process's covariates move and in which
direction (`Effect`), e.g. Pareto/NBD alpha_i = alpha exp(-g_p'z_i), beta_i = beta exp(-g_d'z_i). Then
log theta_ij = log theta_j + sum over the processes that move j of sign * g_process'z_i.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.errors import DataError, DataWarning, UsageError, first_ids

__all__ = [
    "CovariateColumn",
    "CovariateSet",
    "Effect",
    "row_parameters",
]

FloatArray = NDArray[np.float64]
Kind = Literal["numeric", "categorical"]

#: the model parameter a process's covariates move, and the sign of the move on the log scale
Effect = tuple[str, float]


def _ids(frame: pd.DataFrame, bad: NDArray[np.bool_]) -> str:
    ids = frame["customer_id"].to_numpy()[bad] if "customer_id" in frame else np.flatnonzero(bad)
    return first_ids(ids)


def _level_text(value: Any) -> str:
    """A categorical level as text, exactly as the data spell it (1.0 read from a float column is "1")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class CovariateColumn:
    """One covariate column's encoding: numeric (centre and scale applied: (z - center) / scale) or categorical
    (`levels` in a fixed order, `reference` the level without a design column)."""

    name: str
    kind: Kind
    center: float = 0.0
    scale: float = 1.0
    levels: tuple[str, ...] = ()
    reference: str | None = None
    #: numeric: the smallest and largest value of the fitting customers (as given, before standardising), for the
    #: check at scoring that the values are on the same scale (None: not recorded, e.g. an older saved model)
    low: float | None = None
    high: float | None = None

    @property
    def design_names(self) -> list[str]:
        """The design columns this covariate gives: its name (numeric), or `name[level]` per non-reference level."""
        if self.kind == "numeric":
            return [self.name]
        return [f"{self.name}[{level}]" for level in self.levels if level != self.reference]

    @property
    def standardised(self) -> bool:
        return self.kind == "numeric" and (self.center != 0.0 or self.scale != 1.0)

    def encode(self, values: pd.Series, frame: pd.DataFrame) -> FloatArray:
        """The design columns of these values, shape (rows, len(design_names))."""
        if self.kind == "numeric":
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(numbers)
            if bad.any():
                raise DataError(
                    f"covariate {self.name!r} must be a finite number; {int(bad.sum())} customers have "
                    f"{values[bad].iloc[0]!r} or another non-number (first ids: {_ids(frame, bad)})"
                )
            return ((numbers - self.center) / self.scale)[:, None]
        codes, uniques = pd.factorize(values)  # the levels as text once per distinct value, not per customer
        level_of = np.array([_level_text(v) for v in uniques], dtype=object)
        text = level_of[codes]
        unknown = ~np.isin(text, np.array(self.levels, dtype=object))
        if unknown.any():
            seen = sorted(set(text[unknown]))[:5]
            raise DataError(
                f"covariate {self.name!r} has levels the model was not fitted with: {', '.join(map(repr, seen))} "
                f"({int(unknown.sum())} customers; first ids: {_ids(frame, unknown)}); fitted levels: "
                f"{', '.join(self.levels)}"
            )
        others = [level for level in self.levels if level != self.reference]
        return np.stack([(level_of == level)[codes].astype(float) for level in others], axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "center": self.center,
            "scale": self.scale,
            "levels": list(self.levels),
            "reference": self.reference,
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CovariateColumn:
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            center=float(data.get("center", 0.0)),
            scale=float(data.get("scale", 1.0)),
            levels=tuple(str(v) for v in data.get("levels", ())),
            reference=None if data.get("reference") is None else str(data["reference"]),
            low=None if data.get("low") is None else float(data["low"]),
            high=None if data.get("high") is None else float(data["high"]),
        )

    def outside_share(self, values: pd.Series) -> float:
        """The share of `values` outside the fitted range widened by a tenth of its width on each side (0 for a
        categorical column or a range not recorded): a large share means other units or another population."""
        if self.kind != "numeric" or self.low is None or self.high is None or len(values) == 0:
            return 0.0
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        margin = 0.1 * (self.high - self.low)
        return float(np.mean((numbers < self.low - margin) | (numbers > self.high + margin)))


def _is_categorical(values: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values))


#: more distinct levels than this (and than a tenth of the customers) is no categorical covariate
MAX_LEVELS = 200
#: a level with fewer customers than this has a coefficient the data cannot pin down: said loudly
RARE_LEVEL = 5


def _check_levels(name: str, values: pd.Series, frame: pd.DataFrame, levels: list[str]) -> None:
    """Refuse a 'categorical' column with about one level per customer (numbers written as text, e.g. with a
    thousands separator, or an id), and warn of levels with a handful of customers: their coefficients run off
    (a level of one customer that never bought again: g -> -infinity) and take every standard error with them."""
    if len(levels) > MAX_LEVELS and len(levels) > len(values) / 10:
        raise DataError(
            f"covariate {name!r} has {len(levels):,} distinct text values among {len(values):,} customers (e.g. "
            f"{', '.join(map(repr, levels[:3]))}): that is not a categorical covariate but numbers written as text "
            "(a thousands separator such as 51,100?) or an id; write the numbers plainly, or leave the column out"
        )
    text = values.map(_level_text) if len(levels) else values
    counts = text.value_counts()
    rare = counts[counts < RARE_LEVEL]
    if len(rare):
        shown = ", ".join(f"{level!r} ({int(n)} customer(s))" for level, n in rare.head(5).items())
        first = _ids(frame, text.isin(rare.index).to_numpy())
        warnings.warn(
            f"covariate {name!r}: {len(rare)} level(s) with fewer than {RARE_LEVEL} customers: {shown} (first ids: "
            f"{first}); their coefficients cannot be estimated from so few customers and may run off, taking the "
            "standard errors of every coefficient with them: merge them into another level, or set a penalty "
            "(covariate_penalty / covariates.penalty)",
            DataWarning,
            stacklevel=4,
        )


def _learn_column(
    name: str, values: pd.Series, frame: pd.DataFrame, categorical: Mapping[str, str | None], standardise: bool
) -> CovariateColumn:
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"covariate {name!r} is missing for {int(missing.sum())} customers (first ids: {_ids(frame, missing)}); "
            "every customer needs every covariate: fill the column or declare a fill value"
        )
    if name in categorical or _is_categorical(values):
        distinct = pd.unique(values)  # the levels as text once per distinct value, not per customer
        levels = sorted({_level_text(v) for v in distinct}, key=lambda t: (len(t), t) if t.isdigit() else (math.inf, t))
        chosen = categorical.get(name)
        reference = levels[0] if chosen is None else _level_text(chosen)
        if reference not in levels:
            raise UsageError(
                f"covariate {name!r}: reference level {reference!r} is not in the data ({', '.join(levels)})"
            )
        if len(levels) < 2:
            raise DataError(f"covariate {name!r} has one level only ({levels[0]!r}): it cannot explain differences")
        _check_levels(name, values, frame, levels)
        return CovariateColumn(name, "categorical", levels=tuple(levels), reference=reference)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(numbers)):
        bad = ~np.isfinite(numbers)
        raise DataError(
            f"covariate {name!r} must be finite; {int(bad.sum())} customers are not (first ids: {_ids(frame, bad)})"
        )
    sd = float(np.std(numbers))
    if sd == 0.0:
        raise DataError(
            f"covariate {name!r} is the same ({numbers[0]:g}) for every customer: it cannot explain differences"
        )
    low, high = float(numbers.min()), float(numbers.max())
    if standardise:
        return CovariateColumn(name, "numeric", center=float(np.mean(numbers)), scale=sd, low=low, high=high)
    return CovariateColumn(name, "numeric", low=low, high=high)


@dataclass(frozen=True)
class CovariateSet:
    """The covariates of a model, per process (e.g. {"purchase": ("gender", "channel"), "dropout": (...)}), and
    each column's encoding (`columns`, learned once from the fitting data)."""

    processes: dict[str, tuple[str, ...]]
    columns: dict[str, CovariateColumn] = field(default_factory=dict)

    @classmethod
    def learn(
        cls,
        frame: pd.DataFrame,
        processes: Mapping[str, Sequence[str]],
        categorical: Mapping[str, str | None] | None = None,
        standardise: bool = False,
    ) -> CovariateSet:
        """The encoding of each covariate named in `processes`, from the customers of `frame`. `categorical`:
        columns to dummy-code, with their reference level (None: the first level); text columns are
        categorical in any case. `standardise`: numeric columns as (z - mean) / sd."""
        categorical = dict(categorical or {})
        names = list(dict.fromkeys(name for cols in processes.values() for name in cols))
        absent = [name for name in names if name not in frame.columns]
        if absent:
            raise DataError(
                f"covariate column(s) {', '.join(map(repr, absent))} not found; the customer table has "
                f"{', '.join(map(repr, [c for c in frame.columns][:20]))}"
            )
        columns = {name: _learn_column(name, frame[name], frame, categorical, standardise) for name in names}
        return cls(processes={p: tuple(cols) for p, cols in processes.items()}, columns=columns)

    @property
    def is_empty(self) -> bool:
        return not any(self.processes.values())

    def design_names(self, process: str) -> list[str]:
        """The design columns of one process, in order."""
        return [n for name in self.processes.get(process, ()) for n in self.columns[name].design_names]

    def design(self, frame: pd.DataFrame, process: str) -> FloatArray:
        """The design matrix of one process for the customers of `frame`, shape (rows, design columns)."""
        parts = [self._encoded(frame, name) for name in self.processes.get(process, ())]
        if not parts:
            return np.zeros((len(frame), 0))
        return np.concatenate(parts, axis=1)

    def _encoded(self, frame: pd.DataFrame, name: str) -> FloatArray:
        if name not in frame.columns:
            raise DataError(
                f"covariate {name!r} is missing: the model was fitted with covariates "
                f"{', '.join(self.columns)} and scoring needs each of them per customer"
            )
        values = frame[name]
        missing = values.isna().to_numpy()
        if missing.any():
            raise DataError(
                f"covariate {name!r} is missing for {int(missing.sum())} customers (first ids: {_ids(frame, missing)})"
            )
        return self.columns[name].encode(values, frame)

    def to_dict(self) -> dict[str, Any]:
        return {
            "processes": {p: list(cols) for p, cols in self.processes.items()},
            "columns": [c.to_dict() for c in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CovariateSet:
        columns = [CovariateColumn.from_dict(c) for c in data.get("columns", [])]
        return cls(
            processes={str(p): tuple(map(str, cols)) for p, cols in data["processes"].items()},
            columns={c.name: c for c in columns},
        )


def row_parameters(
    base: FloatArray,
    param_names: Sequence[str],
    effects: Mapping[str, Sequence[Effect]],
    designs: Mapping[str, FloatArray],
    coefficients: Mapping[str, FloatArray],
) -> FloatArray:
    """Each row's parameters, shape (rows, k): log theta_ij = log theta_j + sum over processes that move j of
    sign * (Z_process @ g_process)_i (see the module docstring). `base` is the k base parameters."""
    n = next(iter(designs.values())).shape[0] if designs else 0
    log_p = np.tile(np.log(np.asarray(base, dtype=float)), (n, 1))
    for process, moves in effects.items():
        z = designs.get(process)
        g = coefficients.get(process)
        if z is None or g is None or z.shape[1] == 0:
            continue
        eta = z @ g
        for param, sign in moves:
            log_p[:, param_names.index(param)] += sign * eta
    return np.exp(log_p)
