"""A metafield's value against its declared type: whether it fits (the rule a METAFIELDS row is
checked by) and the typed JSON value the platform shows beside the text (`json_value`).

The platform's list of types is CUT OFF; its metafields follow Shopify's (`value_type`
`single_line_text_field`, `is_list` apart), so Shopify's types are the list (`METAFIELD_TYPES`).
A list's encoding is CUT OFF too: a list is a JSON array of items, each of the type, as the
Platform API's `json_value` writes it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bspk_pipelines.model.entities import METAFIELD_TRUTH

# ASCII digits only and `\Z`, never `\d` and `$`: Python's `\d` takes any script's digits (`٣`,
# which int() reads as 3) and `$` matches before a final line break (`5\n` would be a whole number).
WHOLE = re.compile(r"^-?[0-9]{1,13}\Z")  # Shopify's range: at most 13 digits
NUMBER = re.compile(r"^-?[0-9]{1,13}(\.[0-9]{1,9})?\Z")
COLOR = re.compile(r"^#[0-9A-Fa-f]{6}\Z")
LINK = re.compile(r"^(https?://|mailto:|tel:|sms:)[^\s]+\Z")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?\Z")
# A number_decimal's most digits before and after the point (NUMBER's).
WHOLE_DIGITS, FRACTION_DIGITS = 13, 9
# Types whose value is a JSON object (amount and currency, value and unit, rich text, ...).
OBJECTS = frozenset({"money", "weight", "volume", "dimension", "rating", "link", "rich_text_field"})

EXPECTED = {
    "single_line_text_field": "one line of text",
    "boolean": "true or false in lower case",
    "number_integer": "a whole number of at most 13 digits",
    "number_decimal": "a number such as 12.5",
    "date": "a date YYYY-MM-DD",
    "date_time": "an ISO 8601 date-time such as 2022-01-17T19:23:22Z",
    "url": "an http(s), mailto, tel or sms link",
    "color": "a colour #RRGGBB",
    "json": "JSON",
    **{t: "a JSON object" for t in OBJECTS},
}


def _date(text: str) -> bool:
    if not DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _date_time(text: str) -> bool:
    if not DATETIME.match(text):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_INVALID = object()


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> Decimal:
    """A JSON number with a fraction or exponent, exact; refused when no float holds it (`1e400`):
    `json_value` writes it as a JSON number, and JSON has no Infinity."""
    if math.isinf(float(text)):
        raise ValueError(f"{text} is beyond what a JSON number holds")
    return Decimal(text)


def _unpaired_surrogate(value: Any) -> bool:
    """Whether a JSON value holds text that is no Unicode (`"\\ud800"`): no UTF-8 answer can carry it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, list):
        return any(_unpaired_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_unpaired_surrogate(k) or _unpaired_surrogate(v) for k, v in value.items())
    return False


def _json(text: str) -> Any:
    """`text` read as JSON, numbers with a fraction exact (`Decimal`, never a float's noise), NaN,
    Infinity and numbers beyond a float refused, and text escaping half a surrogate pair;
    `_INVALID` when it is not JSON."""
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_not_a_number)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return _INVALID
    try:
        return _INVALID if _unpaired_surrogate(value) else value
    except RecursionError:
        return _INVALID


def _decimal_fits(item: Decimal) -> bool:
    """A list's JSON number against number_decimal's digits, without writing it out first
    (`1e999999999` written out is a gigabyte of zeros)."""
    _, digits, exponent = item.as_tuple()
    if not isinstance(exponent, int):
        return False
    whole, fraction = max(len(digits) + exponent, 0), max(-exponent, 0)
    return whole <= WHOLE_DIGITS and fraction <= FRACTION_DIGITS and bool(NUMBER.match(format(item, "f")))


def _plain(value: Any) -> Any:
    """A JSON value with its exact decimals as JSON numbers again (a float), for `json_value`."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _item_fits(value_type: str, item: Any, parsed: bool = False) -> bool:
    """One item against its type: a single value's text, or (`parsed`) an item of a JSON array, a
    string, number, boolean or object as JSON gave it."""
    if value_type == "json":
        return parsed or _json(item) is not _INVALID
    if value_type in OBJECTS:
        return isinstance(item if parsed else _json(item), dict)
    if isinstance(item, bool):
        return value_type == "boolean"
    if isinstance(item, int):
        return value_type in ("number_integer", "number_decimal") and bool(WHOLE.match(str(item)))
    if isinstance(item, Decimal):
        return value_type == "number_decimal" and _decimal_fits(item)
    if not isinstance(item, str):
        return False
    match value_type:
        case "boolean":
            return item in METAFIELD_TRUTH
        case "number_integer":
            return bool(WHOLE.match(item))
        case "number_decimal":
            return bool(NUMBER.match(item))
        case "date":
            return _date(item)
        case "date_time":
            return _date_time(item)
        case "url":
            return bool(LINK.match(item))
        case "color":
            return bool(COLOR.match(item))
        case "single_line_text_field":
            return "\n" not in item and "\r" not in item
    return True  # multi-line text, ids and references: any text


def misfit(value_type: str | None, is_list: bool | None, value: str | None) -> str | None:
    """Why `value` does not fit its declared type, or None when it does (or when the type or the
    list flag is missing: their own rules reject that)."""
    if value is None or value_type is None or is_list is None:
        return None
    expected = EXPECTED.get(value_type, "text")
    if is_list:
        items = _json(value)
        if not isinstance(items, list):
            return f"a list is a JSON array such as [\"Blue\",\"Red\"], each item {expected} ({value_type})"
        bad = next((i for i, item in enumerate(items) if not _item_fits(value_type, item, parsed=True)), None)
        return None if bad is None else f"item {bad + 1} of the list is not {expected} ({value_type})"
    return None if _item_fits(value_type, value) else f"not {expected} ({value_type})"


def _exact(number: Decimal) -> str:
    """A decimal's text as written, without a sign on a zero (`-0.0` is `0.0`)."""
    text = format(number, "f")
    return text.lstrip("-") if number == 0 else text


def _typed(value_type: str, item: Any, parsed: bool = False) -> Any:
    if parsed and value_type == "json" or value_type in OBJECTS and not isinstance(item, str):
        return _plain(item)
    if not isinstance(item, str):
        if value_type == "number_decimal":
            return _exact(item) if isinstance(item, Decimal) else str(item)
        return _plain(item)
    match value_type:
        case "boolean":
            return item == METAFIELD_TRUTH[0]
        case "number_integer":
            return int(item)
        case "number_decimal":
            # Exact, as the brand wrote it: JSON's numbers would be floats.
            try:
                return _exact(Decimal(item))
            except InvalidOperation:
                return item
        case _ if value_type == "json" or value_type in OBJECTS:
            return _plain(_json(item))
    return item


def json_value(value_type: str, is_list: bool, value: str) -> Any:
    """The value typed as JSON: a number, a boolean, an object, a list of them; a decimal stays
    exact text. Only for values that fit (`misfit` is None)."""
    if is_list:
        return [_typed(value_type, item, parsed=True) for item in _json(value)]
    return _typed(value_type, value)
