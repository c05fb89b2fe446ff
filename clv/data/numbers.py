"""Numbers as spreadsheets write them: a decimal comma, thousands separators, a currency symbol or code.

The rule (`data.decimal`, `data.thousands`, `data.currency`), for a text column of amounts, quantities or prices:

1. With `data.currency` set, its code and symbol (EUR and €, GBP and £, USD and $, ...; matched without regard
   to case) are removed wherever they stand, and so is the space around them.
2. What is left must be a number written with the declared separators: an optional sign, digits (grouped by
   threes with `data.thousands` when it is set), and an optional decimal part after `data.decimal`. Anything
   else (another currency, a second decimal point, a thousands separator that was not declared) is not a
   number, and the row is an invalid row that names its line: a value is never half-read.

With the defaults (`.`, no thousands separator, no currency) a value is read as DuckDB reads a number, which also
accepts `1e3` and `inf` (the latter then reported as not finite).
"""

from __future__ import annotations

import re

from clv.config import DataConfig
from clv.currency import currency_tokens

__all__ = ["number_expr", "parses_strictly", "suggest_number_settings"]

# Spaces a spreadsheet writes: the ordinary one, the no-break space and the narrow no-break space.
_SPACE = "[ \u00a0\u202f]"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parses_strictly(spec: DataConfig) -> bool:
    """Whether numbers follow the declared-separators rule (any setting other than the defaults)."""
    return spec.decimal != "." or spec.thousands is not None or spec.currency is not None


def _pattern(spec: DataConfig) -> str:
    """The regular expression a cleaned number must match."""
    dec = re.escape(spec.decimal)
    if spec.thousands is None:
        whole = r"\d+"
    else:
        sep = _SPACE if spec.thousands == " " else re.escape(spec.thousands)
        whole = rf"(\d+|\d{{1,3}}({sep}\d{{3}})+)"
    return rf"^[+-]?({whole}({dec}\d*)?|{dec}\d+)$"


def number_expr(raw: str, spec: DataConfig) -> str:
    """SQL for the number in the text expression `raw` (NULL when it is not one) under the spec's separators."""
    if not parses_strictly(spec):
        return f"try_cast(trim({raw}) AS DOUBLE)"
    text = raw
    if spec.currency is not None:
        tokens = sorted(currency_tokens(spec.currency), key=len, reverse=True)
        alternatives = "|".join(re.escape(t) for t in tokens)
        text = f"regexp_replace({text}, {_literal(f'{_SPACE}*({alternatives}){_SPACE}*')}, '', 'gi')"
    text = f"regexp_replace({text}, {_literal(f'^{_SPACE}+|{_SPACE}+$')}, '', 'g')"
    plain = text
    if spec.thousands is not None:
        sep = _SPACE if spec.thousands == " " else re.escape(spec.thousands)
        plain = f"regexp_replace({plain}, {_literal(sep)}, '', 'g')"
    if spec.decimal != ".":
        plain = f"replace({plain}, {_literal(spec.decimal)}, '.')"
    return f"CASE WHEN regexp_full_match({text}, {_literal(_pattern(spec))}) THEN try_cast({plain} AS DOUBLE) END"


def suggest_number_settings(values: list[str], spec: DataConfig, every: bool = True) -> str | None:
    """A hint from the values that did not parse: which of data.decimal, data.thousands, data.currency to set
    (None when nothing would read them and not `every` row failed: then they are bad values, not bad settings)."""
    tips: list[str] = []
    comma_decimal = any(re.search(r"\d,\d{1,2}$", v.strip()) for v in values)
    if spec.decimal == "." and comma_decimal:
        tips.append("data.decimal: ','")
        if any(re.search(r"\d\.\d{3}(,|$)", v) for v in values):
            tips.append("data.thousands: '.'")
    elif spec.thousands is None and any(re.search(r"\d[,. ']\d{3}\b", v) for v in values):
        sep = next(m.group(1) for v in values if (m := re.search(r"\d([,. '])\d{3}\b", v)))
        if sep != spec.decimal:
            tips.append(f"data.thousands: {sep!r}")
    symbols = sorted({ch for v in values for ch in re.sub(r"[\d\s.,'+-]", "", v)})
    if symbols and spec.currency is None:
        tips.append("data.currency (e.g. EUR or €) to strip the currency from the amounts")
    if not tips and not every:
        return None
    shown = ", ".join(repr(v) for v in values[:3])
    settings = ", ".join(
        f"data.{key} {'not set' if value is None else repr(value)}"
        for key, value in (("decimal", spec.decimal), ("thousands", spec.thousands), ("currency", spec.currency))
    )
    advice = f"set {' and '.join(tips)}" if tips else "check data.decimal, data.thousands and data.currency"
    return f"numbers like {shown} do not parse with {settings}: {advice}"
