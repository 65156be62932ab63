"""Exact decimals on the way out: how the tap declares amounts and how it writes them.

Why this exists: Intacct sends amounts as decimal strings (``"68400.00"``) and sometimes as JSON
numbers (``creditLimit: 5000``), and the spec types them as ``number`` or as strings with a
``decimal-precision-N`` format. A record schema (:func:`intacct_api.schema.to_record_schema`)
admits both with ``["string", "number", "null"]``, which is right for validating what Intacct
returns and what a target sends, but which SQL targets cannot type: a union of types becomes
TEXT in target-postgres and a float in target-duckdb.

So what the tap *advertises* is narrowed here (:func:`to_warehouse_schema`): every numeric
property becomes a string with singer-sdk's ``x-singer.decimal`` format, the shape the SDK's SQL
connector maps to ``DECIMAL(precision, scale)`` (``JSONSchemaToSQL._handle_singer_decimal``;
target-postgres inherits it and creates NUMERIC columns). ``decimal-precision-N`` and
``percent-precision-N`` give the scale N, with precision :data:`DECIMAL_PRECISION`; a plain
``number`` gives neither (NUMERIC without a limit in PostgreSQL). The ``x-intacct-type`` marker
and the spec's format (as ``x-intacct-format``) are kept for readers that want them.

And what the tap *writes* follows the declaration (:func:`decimal_text`): a JSON number becomes
its exact decimal text, never a float, so a record never contradicts its schema.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "DECIMAL_FORMAT",
    "DECIMAL_PRECISION",
    "decimal_paths",
    "decimal_text",
    "is_decimal_property",
    "to_warehouse_schema",
]

DECIMAL_FORMAT = "x-singer.decimal"
"""singer-sdk's string format for exact decimals (SQL targets: DECIMAL/NUMERIC columns)."""

DECIMAL_PRECISION = 38
"""Total digits declared when the spec gives a scale. 38 is the widest DECIMAL that DuckDB,
Snowflake, Redshift and BigQuery's NUMERIC family accept (PostgreSQL accepts more), and it holds
any Intacct amount; SQLAlchemy only writes a scale together with a precision."""

_SCALE_RE = re.compile(r"^(?:decimal|percent)-precision-(\d+)$")
_NUMERIC_MARKERS = frozenset({"number", "decimal"})


def is_decimal_property(schema: Mapping[str, Any]) -> bool:
    """True for a property the tap writes as a decimal string (advertised or record schema)."""
    return schema.get("format") == DECIMAL_FORMAT or (
        schema.get("x-intacct-type") in _NUMERIC_MARKERS
    )


def decimal_text(value: Any) -> Any:
    """``value`` as exact decimal text: numbers become strings, strings and None pass.

    An empty string (no amount) becomes None, because no SQL NUMERIC accepts ``''``. A float
    is written through its shortest round-trip ``repr``, which is the decimal text it was
    parsed from for every amount with up to 15 significant digits; NaN and infinities become
    None. Anything else (a boolean, an object) passes untouched for the target to reject.
    """
    if type(value) is str:
        return value or None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f") if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else None
    return value


def _scale(fmt: Any) -> int | None:
    match = _SCALE_RE.match(fmt) if isinstance(fmt, str) else None
    return int(match.group(1)) if match else None


def _decimal_property(schema: Mapping[str, Any]) -> dict[str, Any]:
    types = schema.get("type")
    nullable = isinstance(types, list) and "null" in types
    out = {k: v for k, v in schema.items() if k not in ("type", "format")}
    out["type"] = ["string", "null"] if nullable else "string"
    out["format"] = DECIMAL_FORMAT
    spec_format = schema.get("format")
    if isinstance(spec_format, str):
        out["x-intacct-format"] = spec_format
    scale = _scale(spec_format)
    if scale is not None:
        out["precision"] = DECIMAL_PRECISION
        out["scale"] = scale
    for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        out.pop(bound, None)  # numeric keywords say nothing about a string
    return out


def to_warehouse_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a record schema with every numeric property as an exact decimal string.

    Recurses into object properties, array items and unions; other properties are shared with
    the input, not copied (callers must not mutate them).
    """
    if schema.get("x-intacct-type") in _NUMERIC_MARKERS:
        return _decimal_property(schema)
    out = dict(schema)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        out["properties"] = {
            name: to_warehouse_schema(sub) if isinstance(sub, Mapping) else sub
            for name, sub in properties.items()
        }
    items = schema.get("items")
    if isinstance(items, Mapping):
        out["items"] = to_warehouse_schema(items)
    for key in ("anyOf", "allOf"):
        members = schema.get(key)
        if isinstance(members, list):
            out[key] = [to_warehouse_schema(m) if isinstance(m, Mapping) else m for m in members]
    return out


def decimal_paths(schema: Mapping[str, Any], _prefix: str = "") -> frozenset[str]:
    """Dotted paths of the decimal properties of a record schema (objects, not arrays)."""
    found: set[str] = set()
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return frozenset()
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        path = f"{_prefix}{name}"
        if is_decimal_property(sub):
            found.add(path)
        elif isinstance(sub.get("properties"), Mapping):
            found |= decimal_paths(sub, f"{path}.")
    return frozenset(found)
