"""Docs run: the README's Python examples are executed (the Bayesian one samples, so it is slow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) == 4


def test_models_example_runs():
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[0], "README.md (models)", "exec"), namespace)  # our own README
    assert round(namespace["bg"].params_["r"], 3) == 0.243  # type: ignore[attr-defined]


@pytest.mark.slow
def test_bayesian_example_runs():
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[0], "README.md (models)", "exec"), namespace)  # our own README
    exec(compile(BLOCKS[2], "README.md (bayes)", "exec"), namespace)
    assert namespace["post"].diagnostics.passed  # type: ignore[attr-defined]


def test_evaluation_example_runs(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the example reads configs/cdnow.yaml
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[3], "README.md (evaluate)", "exec"), namespace)  # our own README
    assert namespace["ev"].best["candidate"] == "pareto_nbd (mle)"  # type: ignore[attr-defined]
    assert namespace["scores"].metrics["actual_purchases"] == 1882  # type: ignore[attr-defined]


def test_covariates_example_runs(monkeypatch):
    root = Path(__file__).resolve().parents[1]
    if not (root.parent / "shared" / "data" / "clvtools_apparelTrans.csv").exists():
        pytest.skip("../shared/data is absent")
    monkeypatch.chdir(root)  # the example reads ../shared/data
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[1], "README.md (covariates)", "exec"), namespace)  # our own README
    coefficients = namespace["pnbd"].coefficients_  # type: ignore[attr-defined]
    assert round(coefficients["purchase"]["Channel"], 3) == 0.624
