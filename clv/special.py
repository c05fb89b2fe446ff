"""Special functions the models share that SciPy names only through a more general one."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import special

__all__ = ["trigamma"]


def trigamma(v: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """psi'(v), the derivative of digamma (SciPy's `polygamma(1, v)`)."""
    return np.asarray(special.polygamma(1, v), dtype=float)
