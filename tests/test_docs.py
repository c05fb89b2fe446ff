"""Docs run: every docstring example in the package is executed."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import clv

MODULES = sorted(m.name for m in pkgutil.walk_packages(clv.__path__, "clv."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_some_examples_exist():
    total = sum(doctest.testmod(importlib.import_module(n), report=False).attempted for n in MODULES)
    assert total >= 5
