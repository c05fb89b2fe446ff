"""nutpie's compiled model, with the machine code cached on disk across processes.

nutpie (`nutpie.compile_pymc_model`) turns the PyMC model's log density and gradient into a PyTensor graph
compiled by Numba, and wraps that function in a C callback that reads the model's data from a pointer. The
graph's own code is cached on disk by PyTensor (`pytensor.link.numba.cache`, keyed by the graph), but nutpie's
callback cannot be: it closes over Python objects ("dynamic globals"), so Numba compiles it, and with it the
whole graph's typing and lowering, in every process (8-18 s for BG/NBD on these 2-core machines, against 2-5 s of
sampling).

Here the same two callbacks (log density with gradient; the expansion to the stored variables) are generated as
source whose only globals are the graph's function and this module's pointer intrinsic, registered with
PyTensor's cache locator under a key made of the graph's own key and the callback's source. Numba then loads
them from the cache in later processes. The data layout is this module's: the callback's user data is an int64
array holding, per data variable in the graph's argument order, its address and shape; the arrays themselves are
kept alive by the returned model.

`compile_model` returns nutpie's own `CompiledPyMCModel` (nutpie samples it as it samples its own models) or
raises `NotCacheableError` when the graph has no cache key (an operation without a cacheable Numba implementation):
the caller then uses `nutpie.compile_pymc_model`.
"""

# nutpie and PyTensor are untyped; the generated callbacks are compiled from source.
# mypy: disable-error-code="no-untyped-call,untyped-decorator"
from __future__ import annotations

import dataclasses
import hashlib
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pymc as pm
from numba.core import cgutils, types
from numba.extending import intrinsic
from numpy.typing import NDArray

__all__ = ["compile_model", "with_data"]

#: bump when the layout or the generated source below changes meaning (the source is in the key too)
_VERSION = "3"
#: the libraries and clv's modules the compiled code depends on: their versions and sources are in the key
_LIBRARIES = ("pytensor", "pymc", "nutpie", "numba", "llvmlite", "numpy")
_SOURCES = ("graphs.py", "hyp2f1_op.py", "psi_numba.py", "nutpie_cache.py")


@intrinsic
def _pointer(typingctx: Any, address: Any) -> Any:
    """A void pointer from an integer address (the data arrays' addresses in the user data)."""
    sig = types.voidptr(address)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


_LOGP_SIG = types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                        types.CPointer(types.double), types.voidptr)  # fmt: skip
_EXPAND_SIG = types.int64(types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                          types.voidptr)  # fmt: skip


def _offsets(layout: list[str], arrays: dict[str, NDArray[Any]]) -> tuple[dict[str, int], int]:
    """Where each data variable's address is in the user data (its shape follows it), and the header's length."""
    offsets, offset = {}, 0
    for name in layout:
        offsets[name] = offset
        offset += 1 + arrays[name].ndim
    return offsets, max(offset, 1)


def _unpack_source(names: list[str], layout: list[str], arrays: dict[str, NDArray[Any]]) -> list[str]:
    """Source lines that rebuild the callback's data arrays from the user data (address, then shape, per array)."""
    offsets, head = _offsets(layout, arrays)
    lines = [f"    head = numba.carray(user_data_, ({head},), np.int64)"]
    for i, name in enumerate(names):
        value, at = arrays[name], offsets[name]
        shape = "".join(f"head[{at + 1 + d}], " for d in range(value.ndim))
        lines.append(f"    d{i} = numba.carray(_pointer(head[{at}]), ({shape}), np.{value.dtype.name})")
    return lines


def _callback_source(
    kind: str, n_dim: int, n_expanded: int, names: list[str], layout: list[str], arrays: dict[str, Any]
) -> str:
    unpack = _unpack_source(names, layout, arrays)
    args = "".join(f", d{i}" for i in range(len(names)))
    if kind == "logp":
        body = [
            "def clv_logp(dim, x_, out_, logp_, user_data_):",
            f"    if dim != {n_dim}:",
            "        return -1",
            *unpack,
            f"    x = numba.carray(x_, ({n_dim},))",
            f"    out = numba.carray(out_, ({n_dim},))",
            "    logp = numba.carray(logp_, (1,))",
            f"    value, grad = inner(x{args})",
            "    logp[0] = value",
            f"    for i in range({n_dim}):",
            "        out[i] = grad[i]",
            f"    for i in range({n_dim}):",
            "        if not np.isfinite(out[i]):",
            "            return 3",
            "    if not np.isfinite(value):",
            "        return 4",
            "    return 0",
        ]
    else:
        body = [
            "def clv_expand(dim, expanded, x_, out_, user_data_):",
            f"    if dim != {n_dim} or expanded != {n_expanded}:",
            "        return -1",
            *unpack,
            f"    x = numba.carray(x_, ({n_dim},))",
            f"    out = numba.carray(out_, ({n_expanded},))",
            f"    (values,) = inner(x{args})",
            f"    for i in range({n_expanded}):",
            "        out[i] = values[i]",
            "    return 0",
        ]
    return "\n".join(body) + "\n"


def _cached_callback(
    kind: str, jit_fn: Any, n_dim: int, n_expanded: int, names: list[str], layout: list[str], arrays: dict[str, Any],
    structure: str,
) -> Any:  # fmt: skip
    """The C callback for `jit_fn` (a PyTensor graph compiled by Numba), from the disk cache when there."""
    from pytensor.link.numba.cache import compile_numba_function_src

    source = _callback_source(kind, n_dim, n_expanded, names, layout, arrays)
    key = hashlib.sha256(f"{_code_key()}\n{structure}\n{source}".encode()).hexdigest()
    name = "clv_logp" if kind == "logp" else "clv_expand"
    env = {"__name__": __name__, "numba": numba, "np": np, "_pointer": _pointer, "inner": jit_fn}
    func = compile_numba_function_src(source, name, global_env=env, cache_key=key)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=numba.NumbaWarning)
        return numba.cfunc(_LOGP_SIG if kind == "logp" else _EXPAND_SIG, cache=True)(func)


@cache
def _code_key() -> str:
    """What the compiled graph depends on besides the model's structure: the versions of the libraries that
    build and compile it, and the source of clv's modules that write it."""
    from importlib.metadata import version

    parts = [f"clv-nutpie-{_VERSION}"] + [f"{lib} {version(lib)}" for lib in _LIBRARIES]
    for module in _SOURCES:
        path = Path(__file__).with_name(module)
        parts.append(f"{module} {hashlib.sha256(path.read_bytes()).hexdigest()}")
    return "\n".join(parts)


def _layout(logp_fn: Any, expand_fn: Any) -> list[str]:
    """The data variables in the user data's order: the log density's, then the expansion's others."""
    names = [v.name for v in logp_fn.get_shared()]
    return names + [v.name for v in expand_fn.get_shared() if v.name not in names]


def _user_data(layout: list[str], arrays: dict[str, NDArray[Any]]) -> NDArray[np.int64]:
    words: list[int] = []
    for name in layout:
        value = arrays[name]
        words += [value.ctypes.data, *value.shape]
    return np.array(words or [0], dtype=np.int64)


def compile_model(pm_model: pm.Model, structure: str) -> Any:
    """nutpie's `CompiledPyMCModel` for `pm_model`, its callbacks cached on disk (see the module's text) under a
    key made of `structure` (what fixes the model's graph: the model, its parameters and priors, and the source
    of the code that builds the PyMC model), the versions and sources of `_code_key`, and the callback's
    source."""
    from nutpie import compile_pymc as nutpie_pymc
    from pymc.initial_point import make_initial_point_fn

    point_fn = make_initial_point_fn(
        model=pm_model, default_strategy="support_point", jitter_rvs=set(pm_model.free_RVs), return_transformed=True
    )
    n_dim, n_expanded, logp_pt, expand_pt, initial_fn, shape_info = nutpie_pymc._make_functions(
        pm_model, mode="NUMBA", compute_grad=True, join_expanded=True, pymc_initial_point_fn=point_fn
    )
    logp_names = [v.name for v in logp_pt.get_shared()]
    expand_names = [v.name for v in expand_pt.get_shared()]
    layout = _layout(logp_pt, expand_pt)
    shared = {v.name: v for v in [*logp_pt.get_shared(), *expand_pt.get_shared()]}
    arrays = {name: np.ascontiguousarray(np.asarray(v.get_value())) for name, v in shared.items()}
    sizes = (n_dim, n_expanded)
    logp_cb = _cached_callback("logp", logp_pt.vm.jit_fn, *sizes, logp_names, layout, arrays, structure)
    expand_cb = _cached_callback("expand", expand_pt.vm.jit_fn, *sizes, expand_names, layout, arrays, structure)
    dims, coords = nutpie_pymc._prepare_dims_and_coords(pm_model, shape_info)
    model = nutpie_pymc.CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_cb,
        compiled_expand_func=expand_cb,
        initial_point_func=initial_fn,
        shared_data=arrays,
        user_data=np.zeros(1, dtype=np.int64),
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
    )
    return with_data(model, {})


def with_data(model: Any, updates: dict[str, NDArray[Any]]) -> Any:
    """`model` with new values of its data variables (same names, ranks and dtypes; any lengths)."""
    arrays = dict(model.shared_data)
    for name, value in updates.items():
        old = arrays[name]
        new = np.ascontiguousarray(np.asarray(value, dtype=old.dtype))
        if new.ndim != old.ndim:
            raise ValueError(f"data variable {name} must have rank {old.ndim}")
        arrays[name] = new
    layout = _layout(model.logp_func, model.expand_func)
    return dataclasses.replace(model, shared_data=arrays, user_data=_user_data(layout, arrays))
