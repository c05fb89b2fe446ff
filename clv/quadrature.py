"""Gauss quadrature rules used to take expectations over the mixing distributions of the models.

`beta_rule(a, b, n)` integrates E[f(p)] for p ~ Beta(a, b) exactly for polynomials of degree 2n - 1 (Gauss-Jacobi
with the beta density as the weight), so expectations such as E_p[(1 - (1 + p t / alpha)^-r) / p] of BG/NBD need
no hypergeometric function and have no removable singularity at a = 1. Rules are cached: a model evaluates
few distinct (a, b, n).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, special

__all__ = ["beta_rule", "beta_rules", "nodes_for_pole", "nodes_for_poles", "unit_legendre_rule"]

FloatArray = NDArray[np.float64]


def _jacobi_recurrence(a: float, b: FloatArray, n: int) -> tuple[FloatArray, FloatArray]:
    """Diagonal (rows, n) and squared off-diagonal (rows, n - 1) of the Jacobi matrix of each Beta(a, b[i]) on
    [-1, 1]: the three-term recurrence of the monic Jacobi polynomials P^(b-1, a-1) (Gautschi 2004, Table 1.1)."""
    al, be = b[:, None] - 1.0, a - 1.0
    k = np.arange(n, dtype=float)[None, :]
    s = 2.0 * k + al + be
    with np.errstate(divide="ignore", invalid="ignore"):
        diag = np.where(np.abs(s * (s + 2.0)) > 0, (be * be - al * al) / (s * (s + 2.0)), 0.0)
        first = np.where(np.abs(al[:, 0] + be) < 1e-14, (be - al[:, 0]) / (al[:, 0] + be + 2.0), diag[:, 0])
    diag[:, 0] = first
    k1 = k[:, 1:]
    s1 = 2.0 * k1 + al + be
    with np.errstate(divide="ignore", invalid="ignore"):
        off2 = 4.0 * k1 * (k1 + al) * (k1 + be) * (k1 + al + be) / (s1 * s1 * (s1 + 1.0) * (s1 - 1.0))
    if n > 1:  # k = 1: the factor (1 + al + be) cancels, which matters when it is 0 (a + b = 1)
        off2[:, 0] = 4.0 * (1.0 + al[:, 0]) * (1.0 + be) / ((2.0 + al[:, 0] + be) ** 2 * (3.0 + al[:, 0] + be))
    return diag, off2


@lru_cache(maxsize=4096)
def _beta_rule_cached(a: float, b: float, n: int) -> tuple[FloatArray, FloatArray]:
    """Golub-Welsch on the Jacobi matrix of the Beta(a, b) density (Golub & Welsch 1969).

    The Jacobi matrix of `_jacobi_recurrence` on [-1, 1] is mapped to [0, 1]; the weights are the squared first
    components of the eigenvectors, normalised to 1, so that the total mass (a beta function that overflows for
    large a, b) is never formed.
    """
    diag, off2 = _jacobi_recurrence(a, np.array([float(b)]), n)
    nodes, vectors = linalg.eigh_tridiagonal((1.0 + diag[0]) / 2.0, np.sqrt(off2[0]) / 2.0)
    w = vectors[0, :] ** 2
    w = w / w.sum()
    p = np.clip(nodes, np.finfo(float).tiny, 1.0 - np.finfo(float).eps)
    p.setflags(write=False)
    w.setflags(write=False)
    return p, w


def beta_rules(a: float, b: FloatArray, n: int) -> tuple[FloatArray, FloatArray]:
    """`beta_rule` for many b at once (rows of the results): the same Jacobi matrices, diagonalised as one
    stacked dense eigenproblem, which costs far less than one call per b when there are many."""
    b = np.asarray(b, dtype=float)
    diag, off2 = _jacobi_recurrence(a, b, n)
    matrices = np.zeros((b.size, n, n))
    idx = np.arange(n)
    matrices[:, idx, idx] = (1.0 + diag) / 2.0
    off = np.sqrt(off2) / 2.0
    matrices[:, idx[1:], idx[:-1]] = off
    matrices[:, idx[:-1], idx[1:]] = off
    nodes, vectors = np.linalg.eigh(matrices)
    w = vectors[:, 0, :] ** 2
    w = w / w.sum(axis=1, keepdims=True)
    p = np.clip(nodes, np.finfo(float).tiny, 1.0 - np.finfo(float).eps)
    return p, w


def beta_rule(a: float, b: float, n: int) -> tuple[FloatArray, FloatArray]:
    """Nodes in (0, 1) and weights summing to 1 for expectations over p ~ Beta(a, b)."""
    return _beta_rule_cached(float(a), float(b), int(n))


@lru_cache(maxsize=64)
def unit_legendre_rule(n: int) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes and weights on (0, 1)."""
    x, w = special.roots_legendre(n)
    nodes, weights = (x + 1.0) / 2.0, w / 2.0
    nodes.setflags(write=False)  # cached and shared by every caller: read-only
    weights.setflags(write=False)
    return nodes, weights


def nodes_for_pole(distance: float, lo: int = 24, hi: int = 400) -> int:
    """Nodes a Gauss rule on [0, 1] needs for ~1e-15 accuracy when the integrand has a pole at -distance.

    The error of an n-point rule decays like rho^(-2n), rho the Bernstein ellipse parameter of the pole
    (Trefethen, "Approximation Theory and Approximation Practice", Thm 19.3).
    """
    return int(nodes_for_poles(np.array([distance]), lo, hi)[0])


def nodes_for_poles(distances: FloatArray, lo: int = 24, hi: int = 400) -> NDArray[np.int64]:
    """`nodes_for_pole` of each distance of an array (one per posterior draw, say)."""
    x0 = 1.0 + 2.0 * np.maximum(distances, 1e-12)
    with np.errstate(over="ignore"):  # a pole beyond 1e154: rho = inf, and the fewest nodes, as it should be
        rho = x0 + np.sqrt(x0 * x0 - 1.0)
    return np.clip(np.ceil(18.0 / np.log(rho)), lo, hi).astype(np.int64)
