"""Amounts are declared as singer-sdk's exact decimals and written as decimal text; every other
scalar is written as the advertised schema types it."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

import pytest
from singer_sdk.sql.connector import JSONSchemaToSQL
from sqlalchemy.types import DECIMAL, VARCHAR

from intacct_api.decimals import (
    DECIMAL_FORMAT,
    decimal_paths,
    decimal_text,
    to_warehouse_schema,
)
from intacct_api.records import RowPlan, SchemaPruner
from intacct_api.scalars import CONVERTERS, field_kinds
from intacct_api.spec import default_registry
from tap_intacct.discovery import object_definition
from tap_intacct.settings import TapOptions


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("68400.00", "68400.00"),
        (5000, "5000"),
        (12.5, "12.5"),
        (0.1, "0.1"),
        (1234567890.12, "1234567890.12"),
        (1e16, "10000000000000000"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.010"), "-0.010"),
        (None, None),
        ("", None),
        (float("nan"), None),
        (True, True),
    ],
)
def test_decimal_text_is_exact(value: object, text: object) -> None:
    assert decimal_text(value) == text


def test_amount_properties_become_sql_decimals() -> None:
    record = {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "totalDue": {
                "type": ["string", "number", "null"],
                "format": "decimal-precision-2",
                "x-intacct-type": "decimal",
                "description": "Due",
            },
            "creditLimit": {"type": ["string", "number", "null"], "x-intacct-type": "number"},
            "count": {"type": ["integer", "null"]},
            "audit": {
                "type": ["object", "null"],
                "properties": {
                    "rate": {
                        "type": ["string", "number", "null"],
                        "format": "percent-precision-8",
                        "x-intacct-type": "decimal",
                    }
                },
            },
        },
    }
    out = to_warehouse_schema(record)
    due = out["properties"]["totalDue"]
    assert due == {
        "type": ["string", "null"],
        "format": DECIMAL_FORMAT,
        "precision": 38,
        "scale": 2,
        "x-intacct-type": "decimal",
        "x-intacct-format": "decimal-precision-2",
        "description": "Due",
    }
    assert out["properties"]["creditLimit"]["format"] == DECIMAL_FORMAT
    assert "scale" not in out["properties"]["creditLimit"]
    assert out["properties"]["count"] == {"type": ["integer", "null"]}
    assert out["properties"]["audit"]["properties"]["rate"]["scale"] == 8
    assert decimal_paths(out) == {"totalDue", "creditLimit", "audit.rate"}
    assert record["properties"]["totalDue"]["format"] == "decimal-precision-2"  # input kept

    # What singer-sdk's SQL connector (target-postgres's base) makes of them:
    to_sql = JSONSchemaToSQL()
    due_type = to_sql.to_sql_type(due)
    assert isinstance(due_type, DECIMAL)
    assert (due_type.precision, due_type.scale) == (38, 2)
    assert isinstance(to_sql.to_sql_type(out["properties"]["creditLimit"]), DECIMAL)
    # ...and of the old union, which became text:
    assert isinstance(to_sql.to_sql_type(record["properties"]["totalDue"]), VARCHAR)


def test_row_plan_and_pruner_write_numbers_as_decimal_text() -> None:
    plan = RowPlan(
        ["key", "creditLimit", "audit.rate", "name"], decimals={"creditLimit", "audit.rate"}
    )
    row = {"key": "1", "creditLimit": 5000, "audit.rate": 0.25, "name": "5"}
    assert plan(row) == {"key": "1", "creditLimit": "5000", "name": "5", "audit": {"rate": "0.25"}}
    assert plan({"key": "1"})["creditLimit"] is None  # the row.get path converts too
    assert plan.with_constants({"_entity": "E1"})({**row})["creditLimit"] == "5000"

    schema = to_warehouse_schema(
        {
            "properties": {
                "amount": {"type": ["string", "number", "null"], "x-intacct-type": "number"},
                "lines": {
                    "type": "array",
                    "items": {
                        "properties": {
                            "qty": {"type": ["string", "number"], "x-intacct-type": "number"}
                        }
                    },
                },
            }
        }
    )
    pruned = SchemaPruner(schema)({"amount": 7, "lines": [{"qty": 1.5, "x": 1}], "y": 2})
    assert pruned == {"amount": "7", "lines": [{"qty": "1.5"}]}


def test_every_discovered_stream_declares_its_amounts_as_decimals() -> None:
    registry = default_registry()
    info = registry.object("accounts-receivable/customer")
    definition = object_definition(info.stream, info.name, info.record_schema(), TapOptions())
    props = definition.schema["properties"]
    assert props["creditLimit"]["format"] == DECIMAL_FORMAT
    assert props["totalDue"]["scale"] == 2
    assert "creditLimit" in definition.decimal_fields
    for prop in props.values():
        types = prop.get("type") or []
        assert "number" not in types  # no union a SQL target would turn into text or floats


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("integer", "12", 12),
        ("integer", 12.0, 12),
        ("integer", True, 1),
        ("integer", "", None),
        ("integer", "x", "x"),
        ("boolean", "true", True),
        ("boolean", "F", False),
        ("boolean", 1, True),
        ("string", 1, "1"),
        ("string", 0.5, "0.5"),
        ("string", False, "false"),
        ("date-time", "2024-01-01T00:00:00", "2024-01-01T00:00:00Z"),
        ("date-time", "2024-01-01T00:00:00+02:00", "2024-01-01T00:00:00+02:00"),
    ],
)
def test_values_are_converted_to_their_declared_kind(
    kind: str, value: object, expected: object
) -> None:
    assert CONVERTERS[kind](value) == expected
    plan = RowPlan(["key", "v"], kinds={"v": kind})
    assert plan({"key": "1", "v": value})["v"] == expected  # generated fast path
    assert plan(MappingProxyType({"v": value}))["v"] == expected  # row.get path


def test_field_kinds_follow_the_advertised_schema() -> None:
    schema = to_warehouse_schema(
        {
            "properties": {
                "lineNumber": {"type": ["string", "null"]},
                "count": {"type": ["integer", "null"]},
                "flag": {"type": "boolean"},
                "when": {"type": ["string", "null"], "format": "date-time"},
                "day": {"type": ["string", "null"], "format": "date"},
                "amount": {"type": ["string", "number", "null"], "x-intacct-type": "number"},
                "either": {"type": ["string", "integer"]},
                "audit": {"properties": {"by": {"type": "string"}}},
            }
        }
    )
    assert field_kinds(schema) == {
        "lineNumber": "string",
        "count": "integer",
        "flag": "boolean",
        "when": "date-time",
        "amount": "decimal",
        "audit.by": "string",
    }
