"""Look at a report the way a person does: in headless Chromium at a laptop's width (1280 px).

`check_page` loads the page with a small script injected at the top of a copy of it, which records console
errors and failed loads, and after the load writes what it measured into the DOM that `--dump-dom` prints: the
document's width against the viewport's (horizontal overflow), the images that did not decode (naturalWidth 0),
and the page's height. `screenshot` takes a PNG of the page. Both drive the `chromium` binary (Debian's package)
and need nothing else: no browser automation library, no network.
"""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from clv.errors import UsageError

__all__ = ["BROWSERS", "PageCheck", "check_page", "find_browser", "screenshot"]

#: the browser binaries tried, in order
BROWSERS = ("chromium", "chromium-browser", "google-chrome")

_MARK = "clv-page-check"
_PROBE = """<script>
(function () {
  var errors = [];
  var original = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var t = e.target;
    errors.push(t && t !== window ? "failed to load " + (t.tagName || "?") : String(e.message));
  }, true);
  window.addEventListener("load", function () {
    var doc = document.documentElement;
    var broken = Array.prototype.filter.call(document.images, function (i) {
      return !i.complete || i.naturalWidth === 0;
    });
    var wide = Array.prototype.filter.call(document.querySelectorAll("body *"), function (el) {
      return el.getBoundingClientRect().right > window.innerWidth + 1;
    }).slice(0, 5).map(function (el) { return el.tagName + (el.className ? "." + el.className : ""); });
    var out = document.createElement("pre");
    out.id = "__MARK__";
    out.textContent = JSON.stringify({
      scroll_width: doc.scrollWidth, viewport_width: window.innerWidth, height: doc.scrollHeight,
      images: document.images.length, broken_images: broken.map(function (i) { return i.alt || i.src.slice(0, 40); }),
      errors: errors, too_wide: wide
    });
    document.body.appendChild(out);
  });
})();
</script>""".replace("__MARK__", _MARK)


@dataclass(frozen=True)
class PageCheck:
    """What the browser measured on a page."""

    scroll_width: int
    viewport_width: int
    height: int
    images: int
    broken_images: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    too_wide: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Each thing a reader would notice: sideways scrolling, a broken image, a console error."""
        out = []
        if self.scroll_width > self.viewport_width:
            out.append(
                f"the page is {self.scroll_width} px wide in a {self.viewport_width} px window "
                f"(too wide: {', '.join(self.too_wide) or '?'})"
            )
        out += [f"broken image: {name}" for name in self.broken_images]
        out += [f"console error: {message}" for message in self.errors]
        return out


def find_browser() -> str | None:
    """The path of the first browser of `BROWSERS` on the PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], width: int, height: int, timeout: float) -> str:
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # root in containers and CI; the page is our own file
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
        "--virtual-time-budget=5000",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise UsageError(f"{Path(browser).name} exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout


def _browser(browser: str | None) -> str:
    found = browser or find_browser()
    if found is None:
        raise UsageError(
            f"no headless browser found (looked for {', '.join(BROWSERS)})",
            hint="install Debian's chromium: apt-get install -y chromium",
        )
    return found


def check_page(page: Path, width: int = 1280, browser: str | None = None, timeout: float = 120.0) -> PageCheck:
    """Load `page` (an HTML file) at `width` px and measure it (see the module docstring)."""
    html = page.read_text(encoding="utf-8")
    probed = re.sub(r"<head>", "<head>" + _PROBE, html, count=1) if "<head>" in html else _PROBE + html
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / page.name
        copy.write_text(probed, encoding="utf-8")
        dom = _run(_browser(browser), ["--dump-dom", copy.resolve().as_uri()], width, 900, timeout)
    found = re.search(rf'<pre id="{_MARK}">(.*?)</pre>', dom, flags=re.S)
    if found is None:
        raise UsageError(f"the page check did not run in the browser on {page} (no load event within the budget)")
    data = json.loads(html_lib.unescape(found.group(1)))
    return PageCheck(**data)


def screenshot(
    page: Path, target: Path, width: int = 1280, height: int = 2400, browser: str | None = None, timeout: float = 120.0
) -> Path:
    """A PNG of the top `height` px of `page` at `width` px, written to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    args = [f"--screenshot={target.resolve()}", page.resolve().as_uri()]
    _run(_browser(browser), args, width, height, timeout)
    if not target.is_file() or target.stat().st_size == 0:
        raise UsageError(f"the browser wrote no screenshot to {target}")
    return target
