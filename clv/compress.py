"""Compressing customers to unique histories: millions of customers share far fewer (x, t_x, T) rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from clv.model import FittedModel

__all__ = ["covariate_columns", "unique_histories", "unique_rows"]


def unique_rows(
    *columns: NDArray[np.float64],
) -> tuple[list[NDArray[np.float64]], NDArray[np.intp], NDArray[np.float64]]:
    """Unique combinations of equal-length columns, by hashing (no sort of the full data).

    Returns the unique columns, the index of each input row into them, and how many rows each unique row has.
    """
    code = np.zeros(columns[0].shape[0], dtype=np.int64)
    for col in columns:
        col_code, col_uniques = pd.factorize(col)
        code, _ = pd.factorize(code * len(col_uniques) + col_code)
    # factorize numbers values in order of first appearance, so a reversed scatter finds each first row
    n_unique = int(code.max(initial=-1)) + 1
    first = np.empty(n_unique, dtype=np.intp)
    first[code[::-1]] = np.arange(code.size - 1, -1, -1)
    counts = np.bincount(code, minlength=n_unique).astype(float)
    return [np.asarray(col)[first] for col in columns], code.astype(np.intp), counts


def unique_histories(
    rfm: pd.DataFrame, columns: Sequence[str] = ()
) -> tuple[pd.DataFrame, NDArray[np.intp], NDArray[np.float64]]:
    """The distinct (frequency, recency, T) histories of an RFM frame as a frame, the index of each customer's
    history, and how many customers share each. With `columns` (a covariate model's, see `covariate_columns`)
    a history is distinct per value of those columns too, and the frame carries them."""
    history = ("frequency", "recency", "T")
    values = [rfm[c].to_numpy(dtype=float) for c in history] + [rfm[c].to_numpy() for c in columns]
    uniques, inverse, counts = unique_rows(*values)
    return pd.DataFrame(dict(zip((*history, *columns), uniques, strict=True))), inverse, counts


def covariate_columns(model: FittedModel | None) -> tuple[str, ...]:
    """The covariate columns a fitted model predicts from (none without covariates): predictions on unique
    histories keep them, since customers with the same history and other covariates differ."""
    covariates = None if model is None else model.covariates_
    return () if covariates is None else tuple(covariates.columns)
