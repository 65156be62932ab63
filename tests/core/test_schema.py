"""OpenAPI -> JSON Schema resolution on synthetic documents and on real Intacct objects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from intacct_api.schema import SchemaResolver, add_null, is_numeric_property, merge_all_of
from intacct_api.spec import SpecRegistry
from tests.support.paths import RECORDED


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SYNTHETIC: dict[str, Any] = {
    "openapi": "3.0.3",
    "paths": {},
    "components": {
        "schemas": {
            "Thing": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "key": {"type": "string", "readOnly": True},
                    "name": {"type": "string", "example": "n1"},
                    "amount": {"type": "string", "format": "decimal-precision-2"},
                    "rate": {"type": "number"},
                    "count": {"type": "integer"},
                    "status": {"type": "string", "enum": ["a", "b"], "nullable": True},
                    "ref": {**_ref("Ref"), "description": "overlaid", "readOnly": True},
                    "tags": {"type": "array", "items": _ref("Ref")},
                },
            },
            "Ref": {
                "type": "object",
                "description": "base",
                "properties": {"id": {"type": "string", "writeOnly": True, "deprecated": True}},
            },
            "Combined": {
                "allOf": [
                    _ref("Thing"),
                    {
                        "type": "object",
                        "properties": {"name": {"readOnly": True}, "extra": {"type": "boolean"}},
                        "required": ["extra"],
                    },
                ]
            },
            "Tree": {
                "type": "object",
                "properties": {"value": {"type": "string"}, "child": _ref("Tree")},
            },
            "Ping": {"type": "object", "properties": {"pong": _ref("Pong")}},
            "Pong": {
                "type": "object",
                "properties": {"ping": _ref("Ping"), "n": {"type": "string"}},
            },
            "Loose": {"oneOf": [{}, {"type": "object", "properties": {"x": {"type": "string"}}}]},
            "Either": {"oneOf": [{"type": "string"}, {"type": "integer"}], "nullable": True},
        }
    },
}


@pytest.fixture
def resolver() -> SchemaResolver:
    return SchemaResolver(SYNTHETIC, "synthetic.json")


def test_refs_and_sibling_overlay(resolver: SchemaResolver) -> None:
    thing = resolver.component("Thing")
    ref = thing["properties"]["ref"]
    assert ref["properties"]["id"]["type"] == "string"
    assert ref["description"] == "overlaid"  # sibling of $ref wins over the target's
    assert ref["readOnly"] is True
    assert thing["properties"]["tags"]["items"]["description"] == "base"
    assert "$ref" not in json.dumps(thing)


def test_annotations_kept(resolver: SchemaResolver) -> None:
    thing = resolver.component("Thing")
    assert thing["properties"]["key"]["readOnly"] is True
    assert thing["properties"]["name"]["examples"] == ["n1"]
    ident = thing["properties"]["ref"]["properties"]["id"]
    assert (ident["writeOnly"], ident["deprecated"]) == (True, True)
    assert thing["properties"]["amount"]["format"] == "decimal-precision-2"
    assert thing["required"] == ["name"]


def test_nullable_becomes_type_union(resolver: SchemaResolver) -> None:
    status = resolver.component("Thing")["properties"]["status"]
    assert status["type"] == ["string", "null"]
    assert status["enum"] == ["a", "b", None]
    either = resolver.component("Either")
    assert {"type": "null"} in either["anyOf"]
    assert {"type": "integer"} in either["anyOf"]


def test_all_of_merges_properties_and_required(resolver: SchemaResolver) -> None:
    combined = resolver.component("Combined")
    assert combined["type"] == "object"
    assert combined["required"] == ["name", "extra"]
    assert combined["properties"]["name"] == {
        "type": "string",
        "examples": ["n1"],
        "readOnly": True,
    }
    assert combined["properties"]["extra"] == {"type": "boolean"}
    assert "key" in combined["properties"]


def test_union_with_empty_member_collapses(resolver: SchemaResolver) -> None:
    assert resolver.component("Loose") == {}


def test_recursion_is_cut(resolver: SchemaResolver) -> None:
    tree = resolver.component("Tree")
    assert tree["properties"]["child"] == {"$comment": "recursive reference to Tree"}
    ping = resolver.component("Ping")
    pong = resolver.component("Pong")  # computed after Ping: must still be complete and finite
    assert ping["properties"]["pong"]["properties"]["ping"]["$comment"].endswith("Ping")
    assert "recursive reference to Ping" in json.dumps(pong)  # finite: cut somewhere below
    assert pong["properties"]["n"] == {"type": "string"}
    Draft202012Validator.check_schema(tree)
    Draft202012Validator(tree).validate({"value": "a", "child": {"child": {"child": {}}}})
    assert ping["properties"]["pong"]["properties"]["n"] == {"type": "string"}


def test_depth_limit() -> None:
    chain: dict[str, Any] = {
        f"S{i}": {"type": "object", "properties": {"next": _ref(f"S{i + 1}")}} for i in range(30)
    }
    chain["S30"] = {"type": "string"}
    resolver = SchemaResolver({"components": {"schemas": chain}}, max_depth=5)
    node = resolver.component("S0")
    depth = 0
    while "properties" in node:
        node = node["properties"]["next"]
        depth += 1
    assert depth == 5
    assert node["$comment"].startswith("recursive reference to")


def test_record_schema_treatment(resolver: SchemaResolver) -> None:
    record = resolver.record_schema("Thing")
    props = record["properties"]
    assert props["key"]["type"] == "string"  # the key is never null
    assert props["name"]["type"] == ["string", "null"]
    assert "required" not in record
    assert props["amount"]["type"] == ["string", "number", "null"]
    assert props["amount"]["x-intacct-type"] == "decimal"
    assert props["amount"]["format"] == "decimal-precision-2"
    assert props["rate"]["type"] == ["string", "number", "null"]
    assert props["rate"]["x-intacct-type"] == "number"
    assert props["count"]["type"] == ["integer", "null"]
    assert props["ref"]["type"] == ["object", "null"]
    assert props["ref"]["properties"]["id"]["type"] == ["string", "null"]
    assert props["tags"]["items"]["properties"]["id"]["type"] == ["string", "null"]
    assert is_numeric_property(props["amount"])
    assert is_numeric_property(props["rate"])
    assert not is_numeric_property(props["count"])
    validator = Draft202012Validator(record)
    validator.validate({"key": "1", "name": None, "amount": "12.50", "rate": 1.5, "ref": None})
    assert list(validator.iter_errors({"key": None}))


def test_results_are_copies(resolver: SchemaResolver) -> None:
    first = resolver.record_schema("Thing")
    first["properties"].clear()
    assert resolver.record_schema("Thing")["properties"]
    comp = resolver.component("Thing")
    comp["properties"]["name"]["type"] = "boolean"
    assert resolver.component("Thing")["properties"]["name"]["type"] == "string"


def test_helpers() -> None:
    assert add_null({"type": "string"}) == {"type": ["string", "null"]}
    assert add_null({}) == {}
    assert add_null({"description": "x"}) == {"anyOf": [{"description": "x"}, {"type": "null"}]}
    merged = merge_all_of(
        [{"type": ["object", "null"], "properties": {"a": {"type": "string"}}}, {"type": "object"}]
    )
    assert merged["type"] == ["object", "null"]
    with pytest.raises(KeyError):
        SchemaResolver(SYNTHETIC).component("Nope")


@pytest.fixture(scope="module")
def registry() -> SpecRegistry:
    return SpecRegistry.load()


def test_real_bill_schema(registry: SpecRegistry) -> None:
    bill = registry.object("accounts-payable/bill").record_schema()
    props = bill["properties"]
    assert props["totalTxnAmount"]["x-intacct-type"] == "decimal"
    assert props["totalTxnAmount"]["readOnly"] is True
    assert props["audit"]["properties"]["modifiedDateTime"]["format"] == "date-time"
    assert props["audit"]["properties"]["createdByUser"]["readOnly"] is True  # allOf + overlay
    line = props["lines"]["items"]["properties"]
    assert line["txnAmount"]["type"] == ["string", "number", "null"]
    customer = registry.object("accounts-receivable/customer").record_schema()["properties"]
    assert customer["creditLimit"]["x-intacct-type"] == "number"


def test_every_record_schema_is_resolved(registry: SpecRegistry) -> None:
    names = sorted(registry.objects)
    for name in names:
        text = json.dumps(registry.objects[name].record_schema())
        assert '"$ref"' not in text, name
        assert '"nullable"' not in text, name
    # full metaschema validation is ~17 ms per object: check a spread sample plus the big ones
    sample = set(names[::25]) | {"accounts-payable/bill", "order-entry/document"}
    for name in sorted(sample):
        Draft202012Validator.check_schema(registry.objects[name].record_schema())


@pytest.mark.parametrize(
    ("fixture", "object_name"),
    [
        ("01_full_load_customers.json", "accounts-receivable/customer"),
        ("03_full_load_vendors.json", "accounts-payable/vendor"),
        ("05_full_load_gl_accounts.json", "general-ledger/account"),
    ],
)
def test_recorded_records_validate(registry: SpecRegistry, fixture: str, object_name: str) -> None:
    """Real query rows (amounts as strings, nulls everywhere) pass the spec record schema."""
    interactions = json.loads((RECORDED / fixture).read_text())["interactions"]
    rows = [
        row
        for it in interactions
        if "services/core/query" in it["request"]["uri"]
        for row in json.loads(it["response"]["body"]["string"])["ia::result"]
    ]
    assert rows
    validator = Draft202012Validator(registry.object(object_name).record_schema())
    for row in rows:
        errors = list(validator.iter_errors(row))
        assert not errors, errors[0].message
