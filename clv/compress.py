"""Compressing customers to unique histories: millions of customers share far fewer (x, t_x, T) rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = ["unique_histories", "unique_rows"]


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
    first = np.empty(counts.size, dtype=np.intp)
    first[inverse[::-1]] = np.arange(inverse.size - 1, -1, -1)
    frame = rfm.iloc[first][[*keys, *covariates]].reset_index(drop=True)
    frame = frame.astype({"frequency": float, "recency": float, "T": float})
    return frame, inverse, counts
