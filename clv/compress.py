"""Compressing customers to unique histories: millions of customers share far fewer (x, t_x, T) rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = ["unique_histories", "unique_rows"]


def _first_rows(code: NDArray[np.intp], n_unique: int) -> NDArray[np.intp]:
    """The first row of each of `n_unique` codes (a reversed scatter: the earliest row writes last)."""
    first = np.empty(n_unique, dtype=np.intp)
    first[code[::-1]] = np.arange(code.size - 1, -1, -1)
    return first


def _renumber(code: NDArray[np.int64], size: int) -> tuple[NDArray[np.intp], int]:
    """Codes in [0, size) renumbered 0, 1, ... in order of first appearance (as `pd.factorize` numbers them),
    and how many there are. A small enough range is renumbered by counting (no hashing of the rows)."""
    n = code.size
    if size > 2 * n + (1 << 22):
        renumbered, uniques = pd.factorize(code)
        return renumbered.astype(np.intp), len(uniques)
    present = np.bincount(code, minlength=size) > 0
    by_key = (np.cumsum(present) - 1)[code]  # 0, 1, ... in order of the codes' values
    n_unique = int(present.sum())
    rank = np.empty(n_unique, dtype=np.intp)
    rank[np.argsort(_first_rows(by_key, n_unique), kind="stable")] = np.arange(n_unique)
    return rank[by_key], n_unique


def unique_rows(
    *columns: NDArray[np.float64],
) -> tuple[list[NDArray[np.float64]], NDArray[np.intp], NDArray[np.float64]]:
    """Unique combinations of equal-length columns, by hashing each column (no sort of the full data), numbered
    in order of first appearance.

    Returns the unique columns, the index of each input row into them, and how many rows each unique row has.
    The columns' codes are combined in mixed radix, renumbered only when the next column would overflow the
    range that `_renumber` counts over.
    """
    n = columns[0].shape[0]
    code = np.zeros(n, dtype=np.int64)
    size = 1
    for col in columns:
        col_code, col_uniques = pd.factorize(col, use_na_sentinel=False)
        k = max(len(col_uniques), 1)
        if size * k > 2 * n + (1 << 22) and size > 1:
            renumbered, size = _renumber(code, size)
            code = renumbered.astype(np.int64)
        code = code * k + col_code
        size *= k
    inverse, n_unique = _renumber(code, size)
    first = _first_rows(inverse, n_unique)
    counts = np.bincount(inverse, minlength=n_unique).astype(float)
    return [np.asarray(col)[first] for col in columns], inverse, counts


def unique_histories(
    rfm: pd.DataFrame, covariates: Sequence[str] = ()
) -> tuple[pd.DataFrame, NDArray[np.intp], NDArray[np.float64]]:
    """The distinct (frequency, recency, T) histories of an RFM frame as a frame, the index of each customer's
    history, and how many customers share each. With `covariates` (the columns a model with covariates reads),
    customers are alike only when their covariates are too, and the frame carries those columns."""
    keys = ("frequency", "recency", "T")
    columns = [rfm[c].to_numpy(dtype=float) for c in keys]
    if covariates:
        columns.append(pd.MultiIndex.from_frame(rfm[list(covariates)]).factorize()[0].astype(float))
    _, inverse, counts = unique_rows(*columns)
    first = _first_rows(inverse, counts.size)
    frame = rfm.iloc[first][[*keys, *covariates]].reset_index(drop=True)
    frame = frame.astype({"frequency": float, "recency": float, "T": float})
    return frame, inverse, counts
