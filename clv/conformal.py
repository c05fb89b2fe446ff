"""Split-conformal calibration of a forecast band on past origins: arrays in, arrays out.

The band of a total is calibrated as conformalized quantile regression calibrates a quantile band (Romano,
Patterson & Candes 2019, "Conformalized Quantile Regression", NeurIPS, Eqs. (5)-(7)), on the log(1 + y) scale
(a relative error; totals of 0 stay finite), with the score normalised by the band's own width (normalised
nonconformity, Papadopoulos, Gammerman & Vovk 2008; Lei et al. 2018, JASA 113, Sec. 5.2), so that an origin
whose band was wide because its fit knew little counts its miss in units of that width. With L = log1p(lo),
U = log1p(hi), a = log1p(A) and w = U - L:

- score of an origin with band [lo, hi] and actual total A (their Eq. (6), normalised):
  s = max(L - a, a - U) / w: negative when A lies inside the band (down to -1/2 at its middle: by how much the
  band could shrink and still hold it), positive when outside (by how much it must grow), in band widths;
- adjustment: Q, the k-th smallest of the n scores with k = ceil(level (n + 1)) (their Eq. (7); the
  finite-sample rank of split conformal prediction, Vovk, Gammerman & Shafer 2005; Lei et al. 2018, Theorem
  2.2): a band widened by Q of its width holds a new exchangeable origin's total with probability >= level;
- calibrated band: log1p of it [L - Q w, U + Q w], the lower bound kept >= 0 (totals are not negative).

The rank exists only when k <= n, i.e. n >= level / (1 - level) (`min_origins`: 4 origins at 80%, 9 at 90%,
19 at 95%); with fewer the band cannot be calibrated and is reported as uncalibrated. One symmetric score, not
separate lower and upper ones (their Sec. 4's asymmetric variant): that variant needs the rank at
(1 + level) / 2 on each side, i.e. n >= (1 + level) / (1 - level) (9 origins at 80%), more than a data set's own
origins usually give.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["calibrated", "conformal_quantile", "conformal_rank", "leave_one_out", "min_origins", "scores"]

FloatArray = NDArray[np.float64]

#: level (n + 1) is rounded to this many decimals before its ceiling: 0.8 x 5 is 4.000000000000001 in floats
_DECIMALS = 9
#: the least width of a band on the log(1 + .) scale (a band of one point, e.g. a total certain to be 0)
_MIN_WIDTH = 1e-9


def _check_level(level: float) -> float:
    if not (0.0 < level < 1.0):
        raise ValueError(f"the band's level must be strictly between 0 and 1, got {level!r}")
    return float(level)


def conformal_rank(n: int, level: float) -> int | None:
    """k = ceil(level (n + 1)), the rank of the conformal quantile among n scores; None when k > n (too few)."""
    level = _check_level(level)
    if n < 1:
        return None
    k = math.ceil(round(level * (n + 1), _DECIMALS))
    return k if k <= n else None


def min_origins(level: float) -> int:
    """The fewest scores for which the conformal quantile at `level` exists: the least n with
    ceil(level (n + 1)) <= n."""
    level = _check_level(level)
    n = max(1, math.floor(round(level / (1.0 - level), _DECIMALS)))
    while conformal_rank(n, level) is None:
        n += 1
    return n


def _log_band(lo: ArrayLike, hi: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """L = log1p(lo) and the width w = log1p(hi) - L, at least `_MIN_WIDTH` (a band of one point)."""
    low = np.log1p(np.asarray(lo, dtype=float))
    return low, np.maximum(np.log1p(np.asarray(hi, dtype=float)) - low, _MIN_WIDTH)


def scores(lo: ArrayLike, hi: ArrayLike, actual: ArrayLike) -> FloatArray:
    """The normalised nonconformity score of each actual total against its band (module docstring)."""
    low, width = _log_band(lo, hi)
    a = np.log1p(np.asarray(actual, dtype=float))
    return np.asarray(np.maximum(low - a, a - low - width) / width, dtype=float)


def conformal_quantile(values: ArrayLike, level: float) -> float | None:
    """The k-th smallest score, k = `conformal_rank(n, level)`; None when there are too few scores."""
    s = np.sort(np.asarray(values, dtype=float))
    if not np.all(np.isfinite(s)):
        raise ValueError("conformal scores must be finite")
    k = conformal_rank(s.size, level)
    return None if k is None else float(s[k - 1])


def calibrated(lo: ArrayLike, hi: ArrayLike, q: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The band widened (q > 0) or narrowed (q < 0, at most to its middle: q >= -1/2) by q of its width on the
    log(1 + .) scale; the lower bound kept >= 0."""
    low, width = _log_band(lo, hi)
    shift = np.maximum(np.asarray(q, dtype=float), -0.5) * width
    return np.maximum(np.expm1(low - shift), 0.0), np.expm1(low + width + shift)


def leave_one_out(values: ArrayLike, level: float) -> tuple[NDArray[np.bool_], FloatArray] | None:
    """Each score held out in turn against the conformal quantile of the others: whether the calibrated band
    held it (score <= that quantile) and the quantile used; None when n - 1 scores are too few."""
    s = np.asarray(values, dtype=float)
    if conformal_rank(s.size - 1, level) is None:
        return None
    q = np.array([conformal_quantile(np.delete(s, i), level) for i in range(s.size)], dtype=float)
    return s <= q, q
