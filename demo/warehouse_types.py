"""A typed layer over the demo warehouse: exact DECIMAL amounts, DATE dates, TIMESTAMPTZ times.

Why a layer and not another loader: the demo loads DuckDB with the Hub's ``target-duckdb``
(0.8.0). It maps every JSON ``number`` to DOUBLE (floats: not exact) and every string, whatever
its ``format``, to VARCHAR, except ``date-time`` (TIMESTAMP). Since tap-intacct declares amounts
as ``x-singer.decimal`` strings, the raw tables hold every amount as its exact decimal *text*,
so nothing is lost at load time; only the column types are wrong. A view per stream, generated
from the tap's own catalog, casts them back:

* ``x-singer.decimal`` -> ``DECIMAL(38, scale)``: the scale the spec gives
  (``decimal-precision-N``), else :data:`DEFAULT_SCALE`. DuckDB rounds silently when a value has
  more decimals than the scale, so :func:`create_typed_views` first checks every raw value and
  refuses to build a view that would round (exact or nothing).
* ``date`` -> ``DATE``; ``date-time`` (stored as UTC TIMESTAMP) -> ``TIMESTAMPTZ``.
* everything else as loaded (integers, booleans, JSON for objects deeper than the flattening).

Writing and maintaining our own DuckDB loader would duplicate the Hub's for one type mapping;
views cost nothing to refresh (they read the raw tables, so every incremental load shows at
once) and keep the raw layer untouched for auditing. The module needs only ``duckdb`` and the
standard library, so it runs in the Meltano tool venv that ``make demo`` uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_SCALE", "create_typed_views", "typed_expression"]

DECIMAL_FORMAT = "x-singer.decimal"
DEFAULT_SCALE = 10
"""Scale for amounts the spec types as a bare ``number`` (no ``decimal-precision-N``)."""
PRECISION = 38
FLATTEN_SEPARATOR = "__"  # target-duckdb's separator for flattened nested properties


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    return {kind} if isinstance(kind, str) else set(kind or ())


def column_schema(schema: Mapping[str, Any], column: str) -> Mapping[str, Any] | None:
    """The property a (flattened, lower-cased) raw column came from, or None."""
    node: Mapping[str, Any] = schema
    for part in column.split(FLATTEN_SEPARATOR):
        properties = node.get("properties") or {}
        found = next((sub for name, sub in properties.items() if name.lower() == part), None)
        if found is None:
            return None
        node = found
    return node


def typed_expression(column: str, prop: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """``(select expression, decimal type or None)`` for one raw column."""
    quoted = _quote(column)
    if prop is None or "object" in _types(prop):
        return quoted, None
    fmt = prop.get("format")
    if fmt == DECIMAL_FORMAT:
        scale = prop.get("scale")
        decimal = f"DECIMAL({PRECISION}, {DEFAULT_SCALE if scale is None else int(scale)})"
        return f"CAST({quoted} AS {decimal}) AS {quoted}", decimal
    if fmt == "date":
        return f"CAST({quoted} AS DATE) AS {quoted}", None
    if fmt == "date-time":
        return f"CAST({quoted} AS TIMESTAMPTZ) AS {quoted}", None
    return quoted, None


def _fractional_digits_over(con: Any, table: str, column: str, scale: int) -> int:
    """Raw values of ``column`` with more decimals than ``scale`` (they would be rounded)."""
    quoted = _quote(column)
    row = con.execute(
        f"SELECT count(*) FROM {table} WHERE {quoted} IS NOT NULL "  # noqa: S608 - quoted names
        f"AND length(split_part(CAST({quoted} AS VARCHAR), '.', 2)) > {scale}"
    ).fetchone()
    return int(row[0])


def create_typed_views(
    database: Path, catalog_file: Path, raw_schema: str, typed_schema: str
) -> dict[str, list[str]]:
    """Create ``typed_schema.<stream>`` over ``raw_schema.<stream>`` for each loaded stream.

    Returns the decimal columns per view. Raises ``ValueError`` when a raw amount has more
    decimals than its column's scale (a view would round it).
    """
    import duckdb

    catalog = json.loads(catalog_file.read_text())
    schemas = {entry["tap_stream_id"]: entry["schema"] for entry in catalog["streams"]}
    decimals: dict[str, list[str]] = {}
    with duckdb.connect(str(database)) as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(typed_schema)}")
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY 1",
            [raw_schema],
        ).fetchall()
        for (table,) in tables:
            schema = schemas.get(table) or next(
                (s for name, s in schemas.items() if name.lower() == table), None
            )
            if schema is None:
                continue
            columns = [
                name
                for (name,) in con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                    [raw_schema, table],
                ).fetchall()
            ]
            raw = f"{_quote(raw_schema)}.{_quote(table)}"
            expressions = []
            for column in columns:
                expression, decimal = typed_expression(column, column_schema(schema, column))
                if decimal is not None:
                    scale = int(decimal.split(",")[1].strip(" )"))
                    over = _fractional_digits_over(con, raw, column, scale)
                    if over:
                        raise ValueError(
                            f"{table}.{column}: {over} values have more than {scale} decimals; "
                            "a DECIMAL view would round them"
                        )
                    decimals.setdefault(table, []).append(column)
                expressions.append(expression)
            con.execute(
                f"CREATE OR REPLACE VIEW {_quote(typed_schema)}.{_quote(table)} AS "  # noqa: S608
                f"SELECT {', '.join(expressions)} FROM {raw}"
            )
    return decimals
