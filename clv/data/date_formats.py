"""Date formats: no silent day/month swap, and a format to suggest when dates do not parse.

The rules, for a text date column:

1. Without `data.date_format`, dates written day-or-month first (`03/04/2020`, `31.12.1997`, `3-4-20`) are
   refused: their order cannot be read from the text (DuckDB would read `3/4/20` as the year 3), so the error
   asks for a date_format and names the formats that parse the dates, with counts.
2. With a `data.date_format` that has both `%d` and `%m`, the same format with the two swapped is tried too; when
   it parses more rows than the given one, the file is refused with both formats and both counts: the given
   order only parses the rows whose day is 12 or less, read with day and month exchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from clv.errors import DataError

__all__ = [
    "DateOrderFacts",
    "check_date_order",
    "date_order_facts",
    "date_order_problem",
    "suggest_date_formats",
    "swapped",
]

_DATES = (
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%d/%m/%y",
    "%m/%d/%y",
    "%d.%m.%y",
    "%Y%m%d",
    "%Y/%m/%d",
    "%d %b %Y",
    "%b %d %Y",
    "%d-%b-%Y",
)
_TIMES = ("", " %H:%M", " %H:%M:%S")
# Day or month first: one or two digits, a separator, one or two digits, a separator, a two- or four-digit year.
_DAY_OR_MONTH_FIRST = r"^\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2}(\d{2})?\b"
_SAMPLE = 2000


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def swapped(date_format: str) -> str | None:
    """The format with %d and %m exchanged, or None when it lacks one of them."""
    if "%d" not in date_format or "%m" not in date_format:
        return None
    return date_format.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def _counts(con: duckdb.DuckDBPyConnection, raw: str, source: str, formats: list[str]) -> list[int]:
    counts = ", ".join(f"count(try_strptime({raw}, {_literal(f)}))" for f in formats)
    row = con.execute(f"SELECT {counts} FROM {source}").fetchone()
    return [int(n) for n in row] if row is not None else [0] * len(formats)


def suggest_date_formats(con: duckdb.DuckDBPyConnection, values: list[str]) -> list[tuple[str, int]]:
    """The formats that parse the most of `values` (all of the best, with their counts), best first."""
    if not values:
        return []
    con.execute("CREATE OR REPLACE TEMP TABLE clv_date_sample (v VARCHAR)")
    con.executemany("INSERT INTO clv_date_sample VALUES (?)", [[v.strip()] for v in values])
    formats = [d + t for d in _DATES for t in _TIMES]
    counts = _counts(con, "v", "clv_date_sample", formats)
    con.execute("DROP TABLE clv_date_sample")
    best = max(counts)
    return [(f, n) for f, n in zip(formats, counts, strict=True) if n == best and n > 0]


def _format_list(found: list[tuple[str, int]], of: int) -> str:
    return " or ".join(f"{f!r} ({n:,} of {of:,})" for f, n in found[:2])


@dataclass
class DateOrderFacts:
    """What rules 1 and 2 read off text dates: without a format, how many are written day or month first and
    the first of them (up to 2,000); with a format that has %d and %m, how many it and its swap parse. Facts of
    parts of a log add up (`combine`, for `clv.spark`)."""

    day_or_month_first: int = 0
    examples: list[str] = field(default_factory=list)
    given: int = 0
    alternative: int = 0

    def combine(self, other: DateOrderFacts) -> DateOrderFacts:
        return DateOrderFacts(
            self.day_or_month_first + other.day_or_month_first,
            [*self.examples, *other.examples][:_SAMPLE],
            self.given + other.given,
            self.alternative + other.alternative,
        )


def date_order_facts(con: duckdb.DuckDBPyConnection, raw: str, source: str, date_format: str | None) -> DateOrderFacts:
    """The facts of rules 1 and 2 on the text dates `raw` (a SQL expression over `source`)."""
    if date_format is None:
        n, examples = con.execute(
            f"SELECT count(*), list({raw})[1:{_SAMPLE}] FROM {source} WHERE regexp_matches({raw}, "
            f"{_literal(_DAY_OR_MONTH_FIRST)})"
        ).fetchone() or (0, [])
        return DateOrderFacts(day_or_month_first=int(n), examples=[str(v) for v in examples or []])
    other = swapped(date_format)
    if other is None:
        return DateOrderFacts()
    given, alternative = _counts(con, raw, source, [date_format, other])
    return DateOrderFacts(given=given, alternative=alternative)


def date_order_problem(
    con: duckdb.DuckDBPyConnection, facts: DateOrderFacts, date_format: str | None, label: str, column: str
) -> DataError | None:
    """The refusal of rules 1 and 2 for `facts`, or None (`con`: any connection, to try formats on the examples)."""
    if date_format is None:
        if not facts.day_or_month_first:
            return None
        examples = facts.examples
        found = suggest_date_formats(con, examples)
        shown = ", ".join(repr(v) for v in examples[:3])
        advice = f"; of the first {len(examples):,}, {_format_list(found, len(examples))} parse" if found else ""
        return DataError(
            f"{label}: {facts.day_or_month_first:,} date(s) in column {column!r} are written day or month first "
            f"({shown}): the order cannot be guessed{advice}",
            hint="set data.date_format to the file's format, e.g. data.date_format: '%d/%m/%Y' (day first) or "
            "'%m/%d/%Y' (month first)",
        )
    other = swapped(date_format)
    if other is None or facts.alternative <= facts.given:
        return None
    return DataError(
        f"{label}: data.date_format {date_format!r} parses {facts.given:,} date(s) of column {column!r}, but "
        f"{other!r} parses {facts.alternative:,}: day and month look swapped (the given order reads only the days "
        f"up to 12, with day and month exchanged)",
        hint=f"set data.date_format: {other!r} if that is the file's order",
    )


def check_date_order(
    con: duckdb.DuckDBPyConnection, raw: str, source: str, date_format: str | None, label: str, column: str
) -> None:
    """Rules 1 and 2 on the text dates `raw` (a SQL expression over `source`); raise DataError."""
    problem = date_order_problem(con, date_order_facts(con, raw, source, date_format), date_format, label, column)
    if problem is not None:
        raise problem
