"""The HTML reports in a real headless browser (Debian's chromium) at 1280 px: no sideways scrolling, no broken
image, no console error; and a screenshot of the run report. The test installs nothing: `make test` installs
chromium where it can (root or sudo). Without chromium the test is skipped, except under CI, where it fails."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from clv.config import load_config
from clv.pipeline import run
from clv.report import write_outputs
from clv.report.browser import check_page, find_browser, screenshot

ROOT = Path(__file__).resolve().parents[1]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        if _in_ci():
            pytest.fail("chromium is not installed under CI=true: `make test` installs it (apt-get install chromium)")
        pytest.skip("no chromium here (make test installs it where it can); under CI this test fails instead")
    return found


def _report(tmp_path: Path, *overrides: str) -> Path:
    config = load_config(
        ROOT / "configs" / "cdnow.yaml",
        [f"output.reports_dir={tmp_path / 'reports'}", f"output.models_dir={tmp_path / 'models'}", *overrides],
    )
    return write_outputs(run(config)) / "report.html"


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


@pytest.mark.parametrize(
    "overrides",
    [(), ("data.amount=null",)],
    ids=["with amounts", "without amounts"],
)
def test_the_report_reads_well_at_1280_px(tmp_path, browser, overrides):
    page = _report(tmp_path, *overrides)
    checked = check_page(page, 1280, browser)
    assert checked.problems == []
    assert checked.images >= 5 and checked.height > 2000
    shot = screenshot(page, tmp_path / "report.png", 1280, 2400, browser)
    assert _png_size(shot) == (1280, 2400)


def test_the_check_catches_overflow_broken_images_and_console_errors(tmp_path, browser):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
        "<table><tr><td style='white-space:nowrap'>" + "wide " * 600 + "</td></tr></table>"
        "<img alt='broken chart' src='data:image/png;base64,AAAA'>"
        "<script>console.error('boom')</script></body></html>"
    )
    problems = check_page(bad, 1280, browser).problems
    assert any(p.startswith("the page is") and "px wide in a 1280 px window" in p for p in problems)
    assert "broken image: broken chart" in problems
    assert "console error: boom" in problems


def test_the_evaluation_report_reads_well_at_1280_px(tmp_path, browser):
    from clv.evaluate.job import evaluate
    from clv.report.evaluation import write_evaluation

    config = load_config(
        ROOT / "configs" / "cdnow.yaml",
        [f"output.reports_dir={tmp_path / 'reports'}", "evaluation.models=[bgnbd, pareto_nbd]"],
    )
    folder = write_evaluation(evaluate(config))
    assert check_page(folder / "evaluation.html", 1280, browser).problems == []
