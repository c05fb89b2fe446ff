"""Take docs/report.png, the README's picture of reports/<name>/report.html: a screenshot of the page's top in
headless Chromium at 1280 px (what a reader sees first), after checking the page as the browser test does (no
sideways scrolling, no broken image, no console error).

Usage: python docs/report_picture.py reports/cdnow/report.html docs/report.png [height]
(`clv demo` writes reports/cdnow/report.html; Debian's chromium must be installed.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from clv.report.browser import check_page, screenshot


def main(page: Path, target: Path, height: int = 2600) -> None:
    problems = check_page(page, 1280).problems
    if problems:
        raise SystemExit(f"{page} does not read well at 1280 px: " + "; ".join(problems))
    print(screenshot(page, target, 1280, height))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *(int(a) for a in sys.argv[3:4]))
