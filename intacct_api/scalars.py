"""Scalar values as the advertised schema types them (the tap's records never contradict it).

Why: the tap emits records without singer-sdk's type conformance (too slow, see
``tap_intacct/streams.py``), and Intacct's values do not always have the JSON type the spec
declares: a line number declared ``string`` arrives as ``1``, an integer as ``"12"``, a flag as
``"true"``. Strict targets (target-jsonl validates every record) then refuse the record, and SQL
targets type the column from the schema and fail on the value. So each leaf of a record is
passed through the converter of its declared kind (:func:`field_kinds`); a value that already
has the right type costs one class check in the generated row converter
(:class:`intacct_api.records.RowPlan`).

Kinds: ``decimal`` (exact decimal text, :mod:`intacct_api.decimals`), ``integer``,
``boolean``, ``string`` (plain strings, no format) and ``date-time`` (UTC ``Z`` added to a
timestamp without an offset). Dates and everything else pass untouched. A value that cannot be
converted is passed as it is, for the target to report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from intacct_api.decimals import decimal_text, is_decimal_property

__all__ = ["CONVERTERS", "field_kinds", "to_bool", "to_datetime", "to_int", "to_str"]

_TRUE = frozenset({"true", "t", "1", "yes"})
_FALSE = frozenset({"false", "f", "0", "no"})
_OFFSET_RE = re.compile(r"(Z|[+-]\d\d:?\d\d)$")
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def to_int(value: Any) -> Any:
    """An integer for ``"12"``, ``12.0``, ``True``; anything else unchanged."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            try:
                number = Decimal(text)
            except InvalidOperation:
                return value
            return int(number) if number == number.to_integral_value() else value
    return value


def to_bool(value: Any) -> Any:
    """A boolean for ``"true"``/``"false"`` (and t/f, yes/no, 1/0) and for 0/1."""
    if value is None or type(value) is bool:
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        if not lowered:
            return None
    return value


def to_str(value: Any) -> Any:
    """Text for a number or a boolean (numbers exactly, booleans as ``true``/``false``)."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return decimal_text(value)
    return value


def to_datetime(value: Any) -> Any:
    """A timestamp without an offset gets ``Z`` (Intacct's timestamps are UTC)."""
    if isinstance(value, str) and _TIMESTAMP_RE.match(value) and not _OFFSET_RE.search(value):
        return value + "Z"
    return value


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "decimal": decimal_text,
    "integer": to_int,
    "boolean": to_bool,
    "string": to_str,
    "date-time": to_datetime,
}
"""Converter of each kind; :class:`~intacct_api.records.RowPlan` also uses the expected
Python class of ``integer``, ``boolean`` and ``string`` to skip the call for correct values."""


def _kind(schema: Mapping[str, Any]) -> str | None:
    if is_decimal_property(schema):
        return "decimal"
    kind = schema.get("type")
    types = {kind} if isinstance(kind, str) else set(kind or ())
    types.discard("null")
    if len(types) != 1:
        return None
    (only,) = types
    fmt = schema.get("format")
    if only == "string":
        if fmt == "date-time":
            return "date-time"
        return "string" if fmt is None else None
    return only if only in ("integer", "boolean") else None


def field_kinds(schema: Mapping[str, Any], _prefix: str = "") -> dict[str, str]:
    """Dotted path -> kind for every convertible leaf of a record schema (not in arrays)."""
    found: dict[str, str] = {}
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return found
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        path = f"{_prefix}{name}"
        if isinstance(sub.get("properties"), Mapping):
            found.update(field_kinds(sub, f"{path}."))
            continue
        kind = _kind(sub)
        if kind is not None:
            found[path] = kind
    return found
