"""The pieces of our HTML pages: the style sheet, escaping, number formatting, tables and headline cards."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["STYLE", "card", "escape", "number", "page", "table"]

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:980px;color:#1d2430;
line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #dde2ea;padding-bottom:.3rem}
.sub{color:#5b6475;margin-top:0}.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{background:#f4f6fa;border-radius:8px;padding:.7rem 1rem;min-width:170px}
.card b{display:block;font-size:1.35rem}.card span{color:#5b6475;font-size:.85rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{padding:.25rem .6rem;text-align:right;
border-bottom:1px solid #e6e9ef}th{background:#f4f6fa}td:first-child,th:first-child{text-align:left}
img{max-width:100%}.warn{background:#fff4e0;border-left:4px solid #d9822b;padding:.5rem .8rem}
.note{color:#5b6475;font-size:.85rem}
"""


def escape(value: Any) -> str:
    """Text made safe for HTML."""
    return html.escape(str(value))


def number(value: Any, digits: int = 2) -> str:
    """A value for a table cell: thousands separators, `digits` decimals (4 significant below 1), – for none."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return f"{x:,.{digits}f}" if abs(x) >= 1 or x == 0 else f"{x:.4g}"
    return escape(value)


def table(frame: pd.DataFrame, index: bool = False, bold: set[tuple[int, str]] | None = None) -> str:
    """A frame as an HTML table; `bold` marks cells by (row position, column)."""
    bold = bold or set()
    head = "".join(f"<th>{escape(c)}</th>" for c in ([frame.index.name or ""] if index else []) + list(frame.columns))
    rows = []
    for position, (key, row) in enumerate(frame.iterrows()):
        cells = [f"<td>{escape(key)}</td>"] if index else []
        for column, v in zip(frame.columns, row.to_numpy(), strict=True):
            text = number(v)
            cells.append(f"<td><b>{text}</b></td>" if (position, column) in bold else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def card(label: str, value: str) -> str:
    """A headline number with its label."""
    return f'<div class="card"><b>{value}</b><span>{escape(label)}</span></div>'


def page(title: str, parts: list[str]) -> str:
    """A whole self-contained page."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )
