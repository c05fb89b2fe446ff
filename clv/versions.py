"""The versions of Python and of the packages a run depends on, recorded in outputs and saved models."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["package_versions"]

_PACKAGES = ("clv", "numpy", "scipy", "pandas", "duckdb", "pyarrow", "pymc", "arviz")


def package_versions() -> dict[str, str]:
    """Python's version and each package's installed version ("unknown" when not installed)."""
    out = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out
