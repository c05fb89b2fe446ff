"""The models' log-likelihoods as PyTensor graphs over the compressed weighted rows, for the samplers' compilers.

Each graph is the maximum-likelihood function of its model (the `LikelihoodProblem` of the fit: unique histories
on the rescaled data, with weights), written with the same numerical care: log space throughout (`gammaln`,
log-sum-exp with the maximum taken out), terms that depend on the purchase count alone computed once per count
and gathered, Euler's transformation and the bounded continued fraction for the Pareto/NBD hypergeometric terms
(`clv.bayes.hyp2f1_op`). Branches that a row does not take are evaluated at safe arguments and masked, so that
values and gradients are finite everywhere on the valid domain. Gradients are PyTensor's exact reverse-mode
derivatives of the graph.

The numpy functions stay the source of the formulas (their docstrings carry the papers' equations); the
equality test (tests/test_graphs.py) holds every graph and its gradient to them to 1e-10 relative at random
points and at the extreme inputs of the maximum-likelihood tests.

A graph takes its data as named variables (`graph_data` gives their values), so that one compiled model serves
every data set of the same model: the data's sizes are not part of the graph.
"""

# PyTensor's graph functions are untyped, and an Op's call returns a variable or a list of them.
# mypy: disable-error-code="no-untyped-call,index"
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.gradient import disconnected_grad

from clv.bayes import psi_numba  # noqa: F401  (registers psi for the Numba backend)
from clv.bayes.hyp2f1_op import LogHyp2F1One
from clv.errors import ClvError
from clv.model import LikelihoodProblem

__all__ = ["GRAPHS", "graph_data", "row_parameters", "total_log_likelihood"]

FloatArray = NDArray[np.float64]
Tensor = Any  # pytensor.tensor.TensorVariable (PyTensor's operators are untyped)
#: (parameters as scalars, data variables by name) -> per-row log-likelihood
RowGraph = Callable[[Sequence[Tensor], Mapping[str, Tensor]], Tensor]


def _betaln(a: Tensor, b: Tensor) -> Tensor:
    return pt.gammaln(a) + pt.gammaln(b) - pt.gammaln(a + b)


def _logaddexp(u: Tensor, v: Tensor) -> Tensor:
    """log(e^u + e^v) with the maximum taken out (its gradient cancels, so it is not differentiated)."""
    top = disconnected_grad(pt.maximum(u, v))
    return top + pt.log(pt.exp(u - top) + pt.exp(v - top))


def _logsumexp_rows(terms: Tensor) -> Tensor:
    top = disconnected_grad(pt.max(terms, axis=1, keepdims=True))
    return top[:, 0] + pt.log(pt.sum(pt.exp(terms - top), axis=1))


def _by_count(k: FloatArray, x: FloatArray) -> dict[str, FloatArray]:
    """The grid of purchase counts 0..max(x) and each row's index into it (see `beta_geometric._by_count`)."""
    return {"k": k, "index": x.astype(np.int64)}


# ---------- BG/NBD and MBG/NBD ----------


def _counted(f: Callable[[Tensor], Tensor], data: Mapping[str, Tensor], *moved: Tensor) -> Tensor:
    """A term that depends on the purchase count and on the parameters `moved`: computed once per count of the
    grid 0..max(x) and gathered when those parameters are scalars, else per row (parameters that vary by row,
    with covariates or pooled groups)."""
    if all(p.ndim == 0 for p in moved):
        return f(data["k"])[data["index"]]
    return f(data["x"])


def beta_geometric(c: int) -> RowGraph:
    """The BG/NBD (c = 0) or MBG/NBD (c = 1) per-row log-likelihood (FHL 2005, Eq. 6; Batislam et al. 2007):
    `clv.purchase.beta_geometric.loglik` as a graph. The parameters are scalars, or per-row vectors (each
    customer's own, `row_parameters`)."""

    def graph(params: Sequence[Tensor], data: Mapping[str, Tensor]) -> Tensor:
        r, alpha, a, b = params
        x, t_x, T = (data[n] for n in ("x", "t_x", "T"))
        common = _counted(lambda n: pt.gammaln(r + n) - pt.gammaln(r), data, r) + r * pt.log(alpha) - _betaln(a, b)
        alive = common + _counted(lambda n: _betaln(a, b + n + c), data, a, b) - (r + x) * pt.log(alpha + T)
        # only used where x + c > 0, where it equals b + x + c - 1 (as in `beta_geometric._terms`)
        drop_term = _counted(lambda n: _betaln(a + 1.0, pt.maximum(b + n + c - 1.0, b)), data, a, b)
        drop = common + drop_term - (r + x) * pt.log(alpha + t_x)
        if c > 0:  # every row has a drop-out term
            return _logaddexp(alive, drop)
        # rows with x = 0 have none: the term is computed at t_x (finite) and masked
        return pt.switch(x > 0, _logaddexp(alive, drop), alive)

    return graph


def _purchase_rows(problem: LikelihoodProblem) -> dict[str, FloatArray]:
    rows = problem.rows
    x = rows["x"]
    k = np.arange(int(x.max(initial=0)) + 1, dtype=float)
    return {"x": x, "t_x": rows["t_x"], "T": rows["T"], **_by_count(k, x)}


# ---------- BG/CNBD-k and MBG/CNBD-k ----------


def erlang_geometric(c: int) -> RowGraph:
    """The BG/CNBD-k (c = 0) or MBG/CNBD-k (c = 1) per-row log-likelihood at a fixed Erlang order k, without
    the regularity term (Reutterer, Platzer & Schroeder 2021, Eq. A.5; BTYDplus `mbgcnbd.LL`):
    `clv.purchase.erlang_geometric.loglik_grad` as a graph. The data carry the phase grid j = 0..k-1 (`j`), so
    that one compiled graph serves every k. The regularity term (k - 1) sum_log_intervals - x log((k-1)!) does
    not depend on (r, alpha, a, b): at a fixed k it leaves the posterior as it is, and is left out."""

    def graph(params: Sequence[Tensor], data: Mapping[str, Tensor]) -> Tensor:
        r, alpha, a, b = params
        x, t_x, T, j = (data[n] for n in ("x", "t_x", "T", "j"))
        order = pt.cast(j.shape[0], "float64")
        s = r + order * x
        common = (
            _counted(lambda n: pt.gammaln(r + order * n) - pt.gammaln(r), data, r) + r * pt.log(alpha) - _betaln(a, b)
        )
        u = T - t_x
        open_ = u > 0
        # log(u / (alpha + T)) at a safe u where u = 0; those rows keep only the j = 0 term
        log_ratio = pt.log(pt.switch(open_, u, 1.0)) - pt.log(alpha + T)
        grow = _counted(
            lambda n: (
                pt.gammaln((r + order * n)[:, None] + j[None, :])
                - pt.gammaln(r + order * n)[:, None]
                - pt.gammaln(j + 1.0)[None, :]
            ),
            data,
            r,
        )
        used = open_[:, None] | pt.eq(j, 0.0)[None, :]
        phase = pt.switch(used, grow + j[None, :] * log_ratio[:, None], -np.inf)
        alive = common + _counted(lambda n: _betaln(a, b + n + c), data, a, b)
        alive = alive + _logsumexp_rows(phase) - s * pt.log(alpha + T)
        # only used where x + c > 0, where it equals b + x + c - 1 (as in `erlang_geometric._terms`)
        drop_term = _counted(lambda n: _betaln(a + 1.0, pt.maximum(b + n + c - 1.0, b)), data, a, b)
        drop = common + drop_term - s * pt.log(alpha + t_x)
        if c > 0:
            return _logaddexp(alive, drop)
        return pt.switch(x > 0, _logaddexp(alive, drop), alive)

    return graph


def _phase_rows(problem: LikelihoodProblem) -> dict[str, FloatArray]:
    """`_purchase_rows` with the phase grid j = 0..k-1 of the problem's Erlang order (`rows["j"]`)."""
    return {**_purchase_rows(problem), "j": problem.rows["j"]}


# ---------- Pareto/NBD ----------

_LOG_HYP = LogHyp2F1One()


def _log_hyp(B: Tensor, C: Tensor, z: Tensor) -> Tensor:
    return _LOG_HYP(B + pt.zeros_like(z), C + pt.zeros_like(z), z)[0]


def _log_hyp_term(r: Tensor, alpha: Tensor, s: Tensor, beta: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """`clv.purchase.pareto_nbd._log_hyp_term` as a graph: both of Euler's branches, the one not taken at z = 0
    (where 2F1 = 1 at once, and nothing is differentiated through a large |z|)."""
    c = r + s + x + 1.0
    first = alpha >= beta
    z1 = pt.switch(first, (alpha - beta) / (alpha + t), 0.0)
    z2 = pt.switch(first, 0.0, (beta - alpha) / (beta + t))
    log_at, log_bt = pt.log(alpha + t), pt.log(beta + t)
    term1 = _log_hyp(r + x, c, z1) - (r + x) * log_at - s * log_bt
    term2 = _log_hyp(s + 1.0, c, z2) - (r + x - 1.0) * log_at - (s + 1.0) * log_bt
    return pt.switch(first, term1, term2)


def pareto_nbd(params: Sequence[Tensor], data: Mapping[str, Tensor]) -> Tensor:
    """The Pareto/NBD per-row log-likelihood (Fader & Hardie 2005, Eq. 22): `clv.purchase.pareto_nbd.loglik`
    as a graph. A_0 = term(t_x) - term(T) is taken as e^u1 (1 - e^(u2 - u1)); where it is 0 (t_x = T, or equal to
    rounding) the row's bracket is the alive term alone."""
    r, alpha, s, beta = params
    x, t_x, T = (data[n] for n in ("x", "t_x", "T"))
    log_alive = -(r + x) * pt.log(alpha + T) - s * pt.log(beta + T)
    u1 = _log_hyp_term(r, alpha, s, beta, x, t_x)
    u2 = _log_hyp_term(r, alpha, s, beta, x, T)
    empty = (t_x >= T) | (u2 >= u1)
    diff = pt.switch(empty, -1.0, u2 - u1)
    second = pt.log(s) - pt.log(r + s + x) + u1 + pt.log(-pt.expm1(diff))
    bracket = pt.switch(empty, log_alive, _logaddexp(log_alive, second))
    log_r = _counted(lambda n: pt.gammaln(r + n) - pt.gammaln(r), data, r)
    return log_r + r * pt.log(alpha) + s * pt.log(beta) + bracket


# ---------- BG/BB ----------


def bgbb(params: Sequence[Tensor], data: Mapping[str, Tensor]) -> Tensor:
    """The BG/BB per-row log-likelihood (Fader, Hardie & Shang 2010, Eq. 5): `clv.purchase.bgbb._terms` as a
    graph, the terms of opportunities a row does not have masked out of the log-sum-exp."""
    al, be, ga, de = params
    x, t_x, n, i = data["x"], data["t_x"], data["T"], data["i"]
    base = -_betaln(al, be) - _betaln(ga, de)
    alive = base + _betaln(al + x, be + n - x) + _betaln(ga, de + n)
    died = base + _betaln(al + x[:, None], be + (t_x - x)[:, None] + i[None, :])
    died = died + _betaln(ga + 1.0, de + t_x[:, None] + i[None, :])
    used = i[None, :] < (n - t_x)[:, None]
    terms = pt.concatenate([alive[:, None], pt.switch(used, died, -np.inf)], axis=1)
    return _logsumexp_rows(terms)


def _bgbb_rows(problem: LikelihoodProblem) -> dict[str, FloatArray]:
    rows = problem.rows
    x, t_x, n = rows["x"], rows["t_x"], rows["T"]
    width = int(np.max(n - t_x)) if n.size else 0
    return {"x": x, "t_x": t_x, "T": n, "i": np.arange(width, dtype=float)}


# ---------- Gamma-Gamma ----------


def gamma_gamma_total(params: Sequence[Tensor], data: Mapping[str, Tensor]) -> Tensor:
    """The Gamma-Gamma weighted total log-likelihood (Fader & Hardie 2013, Eq. 5), reduced as in
    `clv.spend.gamma_gamma.SpendStatistics`: the gamma functions per purchase count, ln(v + m x) per row. With
    parameters that vary by row (covariates on v, pooled groups) the density is summed row by row."""
    p, q, v = params
    if not all(param.ndim == 0 for param in params):
        return _gamma_gamma_rows(p, q, v, data)
    k, w_k = data["k"], data["w_k"]
    w, wx, mx = data["weights"], data["wx"], data["mx"]
    total = pt.sum(w)
    log_vmx = pt.log(v + mx)
    value = pt.dot(w_k, pt.gammaln(p * k + q) - pt.gammaln(p * k)) - total * pt.gammaln(q)
    value = value + q * pt.log(v) * total + p * data["constant_p"][0] + data["constant"][0]
    return value - p * pt.dot(wx, log_vmx) - q * pt.dot(w, log_vmx)


def _gamma_gamma_rows(p: Tensor, q: Tensor, v: Tensor, data: Mapping[str, Tensor]) -> Tensor:
    """The Gamma-Gamma density of each row's mean spend (the note, Eq. 5, as `clv.spend.gamma_gamma.loglik_grad`)
    at each row's own parameters, weighted and summed:
    lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(v + m x)."""
    x, log_m, log_x, mx = data["x"], data["log_m"], data["log_x"], data["mx"]
    px = p * x
    ll = pt.gammaln(px + q) - pt.gammaln(px) - pt.gammaln(q) + q * pt.log(v)
    ll = ll + (px - 1.0) * log_m + px * log_x - (px + q) * pt.log(v + mx)
    return pt.dot(data["weights"], ll)


def _spend_rows(problem: LikelihoodProblem) -> dict[str, FloatArray]:
    x, m, w = problem.rows["x"], problem.rows["m"], problem.weights
    counts = np.bincount(x.astype(np.intp), weights=w)
    k = np.flatnonzero(counts).astype(float)
    log_m, log_x = np.log(m), np.log(x)
    return {
        "x": x,
        "log_m": log_m,
        "log_x": log_x,
        "k": k,
        "w_k": counts[k.astype(np.intp)],
        "weights": w,
        "wx": w * x,
        "mx": m * x,
        "constant_p": np.array([float((w * x) @ (log_m + log_x))]),
        "constant": np.array([-float(w @ log_m)]),
    }


def _weighted(rows: RowGraph) -> Callable[[Sequence[Tensor], Mapping[str, Tensor]], Tensor]:
    def total(params: Sequence[Tensor], data: Mapping[str, Tensor]) -> Tensor:
        return pt.dot(data["weights"], rows(params, data))

    return total


def _with_weights(
    rows: Callable[[LikelihoodProblem], dict[str, FloatArray]],
) -> Callable[[LikelihoodProblem], dict[str, FloatArray]]:
    return lambda problem: {**rows(problem), "weights": problem.weights}


#: model name -> (the graph of the weighted total log-likelihood, the values of its data variables)
GRAPHS: dict[
    str,
    tuple[
        Callable[[Sequence[Tensor], Mapping[str, Tensor]], Tensor], Callable[[LikelihoodProblem], dict[str, FloatArray]]
    ],
] = {
    "bgnbd": (_weighted(beta_geometric(0)), _with_weights(_purchase_rows)),
    "mbgnbd": (_weighted(beta_geometric(1)), _with_weights(_purchase_rows)),
    "pareto_nbd": (_weighted(pareto_nbd), _with_weights(_purchase_rows)),
    "bgbb": (_weighted(bgbb), _with_weights(_bgbb_rows)),
    "bgcnbd": (_weighted(erlang_geometric(0)), _with_weights(_phase_rows)),
    "mbgcnbd": (_weighted(erlang_geometric(1)), _with_weights(_phase_rows)),
    "gamma_gamma": (gamma_gamma_total, _spend_rows),
}


def _entry(
    problem: LikelihoodProblem,
) -> tuple[
    Callable[[Sequence[Tensor], Mapping[str, Tensor]], Tensor], Callable[[LikelihoodProblem], dict[str, FloatArray]]
]:
    if problem.model_name not in GRAPHS:
        raise ClvError(f"no likelihood graph for model {problem.model_name!r} (known: {', '.join(GRAPHS)})")
    return GRAPHS[problem.model_name]


def graph_data(problem: LikelihoodProblem) -> dict[str, FloatArray]:
    """The values of the graph's data variables for `problem` (rescaled unique rows, weights, count grids)."""
    return _entry(problem)[1](problem)


def total_log_likelihood(problem: LikelihoodProblem, params: Sequence[Tensor], data: Mapping[str, Tensor]) -> Tensor:
    """The weighted total log-likelihood of `problem`'s model as a graph of its rescaled parameters (scalars)
    and data variables (named as `graph_data`'s keys): `problem.total` as a graph."""
    return _entry(problem)[0](params, data)


def row_parameters(
    base: Sequence[Tensor],
    param_names: Sequence[str],
    effects: Mapping[str, Sequence[tuple[str, float]]],
    designs: Mapping[str, Tensor],
    coefficients: Mapping[str, Tensor],
) -> list[Tensor]:
    """Each row's parameters as graphs (`clv.covariates.row_parameters`, whose formula this is): theta_ij =
    theta_j exp(sum over the processes that move j of sign * (Z_process @ g_process)_i); a parameter no process
    moves stays a scalar."""
    shifts: dict[int, Tensor] = {}
    for process, moves in effects.items():
        if process not in designs or process not in coefficients:
            continue
        eta = pt.dot(designs[process], coefficients[process])
        for param, sign in moves:
            j = list(param_names).index(param)
            shifts[j] = shifts[j] + sign * eta if j in shifts else sign * eta
    return [theta * pt.exp(shifts[j]) if j in shifts else theta for j, theta in enumerate(base)]
