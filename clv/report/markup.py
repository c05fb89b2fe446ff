"""The pieces of our HTML pages: the style sheet, escaping, number formatting, tables and headline cards.

Numbers read as a person writes them: thousands separators, never scientific notation, shares and
probabilities as percentages (`5.0%`), money with its currency named (in the column header, or beside a headline
number), and ids exactly as written. Tables wrap their headers and scroll inside their own box when they are
wider than the page, so the page itself never scrolls sideways.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "STYLE",
    "Format",
    "card",
    "escape",
    "fixed",
    "money",
    "number",
    "page",
    "percent",
    "percent_below",
    "table",
    "text",
]

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1040px;color:#1d2430;
line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #dde2ea;padding-bottom:.3rem}
.sub{color:#5b6475;margin-top:0}.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{background:#f4f6fa;border-radius:8px;padding:.7rem 1rem;min-width:170px;max-width:100%}
.card b{display:block;font-size:1.35rem}.card span{color:#5b6475;font-size:.85rem}
.table{max-width:100%;overflow-x:auto;margin:.6rem 0}
table{border-collapse:collapse;font-size:.88rem;font-variant-numeric:tabular-nums}
th,td{padding:.25rem .55rem;text-align:right;border-bottom:1px solid #e6e9ef;vertical-align:bottom}
th{background:#f4f6fa;font-weight:600;max-width:9.5rem;white-space:normal}td{white-space:nowrap}
td:first-child,th:first-child{text-align:left}.text{text-align:left}td.long{white-space:normal;min-width:18rem}
img{max-width:100%;height:auto}.warn{background:#fff4e0;border-left:4px solid #d9822b;padding:.5rem .8rem}
.note{color:#5b6475;font-size:.85rem}p,li{overflow-wrap:anywhere}
"""

#: a cell formatter: value -> HTML-safe text
Format = Callable[[Any], str]


def escape(value: Any) -> str:
    """Text made safe for HTML."""
    return html.escape(str(value))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value))


def _fixed(x: float, digits: int) -> str:
    """`x` in fixed notation: `digits` decimals from 1 up, 4 significant digits below 1, and `< 0.000001` below
    that (never scientific notation)."""
    if x == 0 or abs(x) >= 1:
        return f"{x:,.{digits}f}"
    if abs(x) < 1e-6:
        return ("-" if x < 0 else "") + "&lt; 0.000001"  # HTML: the cells are inserted as markup
    decimals = min(6, 3 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def number(value: Any, digits: int = 2) -> str:
    """A value for a table cell: thousands separators, `digits` decimals (4 significant below 1), – for none."""
    if _missing(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return _fixed(float(value), digits)
    return escape(value)


def fixed(value: Any, digits: int = 2) -> str:
    """A number with thousands separators and exactly `digits` decimals (amounts: 0.00, never `< 0.000001`)."""
    return "–" if _missing(value) else f"{float(value):,.{digits}f}"


def percent(value: Any, digits: int = 1) -> str:
    """A share or a probability as a percentage: 0.05 -> `5.0%`."""
    return "–" if _missing(value) else f"{100.0 * float(value):,.{digits}f}%"


def percent_below(value: Any, digits: int = 1) -> str:
    """A percentage rounded down (0.2997 -> `29.9%`), for values listed because they are below a threshold:
    rounding to nearest would show 30.0% in a list of those under 30%."""
    if _missing(value):
        return "–"
    scale = 10.0**digits
    return f"{math.floor(100.0 * float(value) * scale) / scale:,.{digits}f}%"


def money(value: Any, currency: str | None = None, digits: int = 2) -> str:
    """An amount with thousands separators, prefixed with its currency when it is known: `USD 1,234.50`."""
    if _missing(value):
        return "–"
    amount = f"{float(value):,.{digits}f}"
    return f"{escape(currency)} {amount}" if currency else amount


def text(value: Any) -> str:
    """An id or a label exactly as written (no number formatting: `00509` stays `00509`, `2332` is no `2,332`)."""
    return "–" if _missing(value) else escape(value)


def table(
    frame: pd.DataFrame,
    index: bool = False,
    bold: set[tuple[int, str]] | None = None,
    formats: Mapping[str, Format] | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """A frame as an HTML table in a box that scrolls sideways when it must; `bold` marks cells by (row position,
    column); `formats` formats a column's cells (default `number`; text columns are left-aligned); `headers`
    renames columns for the reader."""
    bold, formats, headers = bold or set(), formats or {}, headers or {}
    columns = [str(c) for c in frame.columns]
    left = [formats.get(c) is text or (len(frame) > 0 and isinstance(frame[c].iloc[0], str)) for c in columns]
    aligned = [" class='text'" if flag else "" for flag in left]
    names = [f"<th>{escape(frame.index.name or '')}</th>"] if index else []
    names += [f"<th{a}>{escape(headers.get(c, c))}</th>" for c, a in zip(columns, aligned, strict=True)]
    rows = []
    for position, (key, row) in enumerate(frame.iterrows()):
        cells = [f"<td>{escape(key)}</td>"] if index else []
        for column, a, v in zip(columns, aligned, row.to_numpy(), strict=True):
            value = formats.get(column, number)(v)
            value = f"<b>{value}</b>" if (position, column) in bold else value
            long = " class='text long'" if a and isinstance(v, str) and len(v) > 40 else a
            cells.append(f"<td{long}>{value}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(names)
    return f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def card(label: str, value: str) -> str:
    """A headline number with its label."""
    return f'<div class="card"><b>{value}</b><span>{escape(label)}</span></div>'


def page(title: str, parts: list[str]) -> str:
    """A whole self-contained page."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )
