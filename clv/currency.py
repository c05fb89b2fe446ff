"""Currencies: the common ISO 4217 codes with their symbols, so that `data.currency` may be given either way.

Outputs state a currency by its code (`€` given is `EUR` written); reading strips the code and its symbols
from amounts (clv.data.numbers). A symbol that several codes share (`kr`) is left as written.
"""

from __future__ import annotations

__all__ = ["CURRENCY_SYMBOLS", "currency_code", "currency_tokens"]

#: The symbols of the common currency codes; a code given as `data.currency` strips these too.
CURRENCY_SYMBOLS: dict[str, tuple[str, ...]] = {
    "EUR": ("€",),
    "GBP": ("£",),
    "USD": ("US$", "$"),
    "CAD": ("CA$", "C$"),
    "AUD": ("AU$", "A$"),
    "JPY": ("¥", "JP¥"),
    "CNY": ("CN¥", "元"),
    "INR": ("₹",),
    "CHF": ("Fr.",),
    "SEK": ("kr",),
    "NOK": ("kr",),
    "DKK": ("kr.", "kr"),
    "PLN": ("zł",),
    "BRL": ("R$",),
    "KRW": ("₩",),
}


def currency_tokens(currency: str) -> list[str]:
    """What `data.currency` strips: the code and its symbols, or a symbol and the one code it belongs to."""
    code = currency.upper()
    if code in CURRENCY_SYMBOLS:
        return [code, *CURRENCY_SYMBOLS[code]]
    codes = [c for c, symbols in CURRENCY_SYMBOLS.items() if currency in symbols]
    return [currency, *codes] if len(codes) == 1 else [currency]


def currency_code(currency: str) -> str:
    """The ISO code of `currency` when it is a known code (any case) or the symbol of exactly one; else as given."""
    text = currency.strip()
    if text.upper() in CURRENCY_SYMBOLS:
        return text.upper()
    codes = [c for c, symbols in CURRENCY_SYMBOLS.items() if text in symbols]
    return codes[0] if len(codes) == 1 else text
