"""Display strings for typed field values, shared by the renderers that show text."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from deskside.card import Field, FieldType, Value

__all__ = ["display", "json_number", "json_value"]

_CURRENCY_SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "INR": "₹",
    "AUD": "A$",
    "CAD": "CA$",
    "CHF": "CHF ",
    "SEK": "SEK ",
    "NOK": "NOK ",
    "DKK": "DKK ",
}


def display(field: Field) -> str:
    """How ``field``'s value reads to an agent: ``$1,234.50``, ``12 Mar 2027``, ``Yes``."""
    value = field.value
    match field.type:
        case FieldType.NUMBER:
            return _number(value)
        case FieldType.CURRENCY:
            return _money(value, field.currency or "USD")
        case FieldType.DATETIME if isinstance(value, datetime):
            value = value.astimezone(UTC)
            return f"{value.day} {value:%b %Y, %H:%M} UTC"
        case FieldType.DATE | FieldType.DATETIME if isinstance(value, date):
            return f"{value.day} {value:%b %Y}"
        case FieldType.BOOLEAN:
            return "Yes" if value else "No"
    return str(value)


def json_value(field: Field) -> bool | int | float | str:
    """``field``'s value as typed JSON: numbers stay numbers, dates become ISO 8601 strings
    (times in UTC with ``Z``), booleans stay booleans, everything else is its text."""
    value = field.value
    if field.type in (FieldType.NUMBER, FieldType.CURRENCY):
        return json_number(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if field.type is FieldType.BOOLEAN:
        return bool(value)
    return str(value)


def json_number(value: Value) -> int | float:
    """A number for JSON: integers stay integers, decimals become floats."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return value
    return int(value) if value == int(value) else float(value)


def _number(value: Value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float | Decimal):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{int(value):,}"
    return str(value)


def _money(value: Value, currency: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return str(value)
    symbol = _CURRENCY_SYMBOLS.get(currency, f"{currency} ")
    digits = 0 if currency == "JPY" else 2
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{abs(value):,.{digits}f}"
