"""Record shape helpers: flat query rows <-> nested records, field lists from schemas."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from intacct_api.records import (
    RowPlan,
    SchemaPruner,
    dotted,
    field_paths,
    flatten,
    nest,
    queryable_schema,
    row_struct,
)
from intacct_api.scalars import field_kinds
from intacct_api.spec import default_registry

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "id": {"type": ["string", "null"]},
        "secret": {"type": ["string", "null"], "writeOnly": True},
        "totalDue": {"type": ["string", "number", "null"]},
        "audit": {
            "type": ["object", "null"],
            "properties": {
                "modifiedDateTime": {"type": ["string", "null"], "format": "date-time"},
                "createdBy": {
                    "type": ["object", "null"],
                    "properties": {"id": {"type": ["string", "null"]}},
                },
            },
        },
        "lines": {"type": ["array", "null"], "items": {"type": "object", "properties": {}}},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "blob": {"type": ["object", "null"]},
        "_entity": {"type": ["string", "null"]},
    },
}


def test_field_paths_lists_scalar_leaves_only() -> None:
    assert field_paths(SCHEMA, exclude={"_entity"}) == [
        "key",
        "id",
        "totalDue",
        "audit.modifiedDateTime",
        "audit.createdBy.id",
    ]


def test_field_paths_honours_selection_and_prunes_deselected_subtrees() -> None:
    deselected = {("properties", "audit"), ("properties", "id")}

    def selected(breadcrumb: tuple[str, ...]) -> bool:
        return breadcrumb not in deselected

    assert field_paths(SCHEMA, selected=selected, exclude={"_entity"}) == ["key", "totalDue"]

    seen: list[str] = []

    def record_calls(breadcrumb: tuple[str, ...]) -> bool:
        seen.append(dotted(breadcrumb))
        return True

    field_paths(SCHEMA, selected=record_calls)
    assert "audit.createdBy.id" in seen
    assert "lines" not in seen  # arrays are skipped before selection is even asked


def test_field_paths_of_a_real_spec_object_never_names_owned_lists() -> None:
    info = default_registry().object("accounts-receivable/customer")
    paths = field_paths(info.record_schema())
    assert "key" in paths
    assert "audit.modifiedDateTime" in paths
    assert "customerType.id" in paths
    for owned in info.owned_lists:
        assert not any(p == owned or p.startswith(owned + ".") for p in paths)


def test_row_plan_nests_aliases_and_drops_unknown_keys() -> None:
    plan = RowPlan(
        ["key", "totalDue", "audit.modifiedDateTime", "audit.createdBy.id", "vendor.id"],
        aliases={"_modified_at": "audit.modifiedDateTime"},
        constants={"_entity": "E1"},
    )
    row = {
        "key": "7",
        "totalDue": "68400.00",
        "audit.modifiedDateTime": "2026-01-02T03:04:05Z",
        "audit.createdBy.id": "admin",
        "vendor.id": None,
        "API_QUERY_ALIAS__25": None,
    }
    assert plan(row) == {
        "key": "7",
        "totalDue": "68400.00",
        "_modified_at": "2026-01-02T03:04:05Z",
        "audit": {"modifiedDateTime": "2026-01-02T03:04:05Z", "createdBy": {"id": "admin"}},
        "vendor": {"id": None},
        "_entity": "E1",
    }
    assert plan.requested_fields() == [
        "key",
        "totalDue",
        "audit.modifiedDateTime",
        "audit.createdBy.id",
        "vendor.id",
    ]


def test_row_plan_alias_source_need_not_be_a_record_field() -> None:
    plan = RowPlan(["key"], aliases={"_modified_at": "audit.modifiedDateTime"})
    assert plan.requested_fields() == ["key", "audit.modifiedDateTime"]
    assert plan({"key": "1", "audit.modifiedDateTime": "t"}) == {"key": "1", "_modified_at": "t"}


def test_row_plan_missing_fields_become_null_and_groups_win_over_leaves() -> None:
    plan = RowPlan(["vendor", "vendor.id", "name"])
    assert plan({"vendor.id": "V1"}) == {"name": None, "vendor": {"id": "V1"}}
    assert plan.with_constants({"_entity": None})({}) == {
        "name": None,
        "vendor": {"id": None},
        "_entity": None,
    }


def test_amounts_stay_exact_strings() -> None:
    plan = RowPlan(["amount"])
    value = "12345678901234567890.123456789"
    record = plan({"amount": value})
    assert record["amount"] == value
    assert isinstance(record["amount"], str)


def test_nest_and_flatten_are_inverse() -> None:
    row = {"a": 1, "b.c": 2, "b.d.e": [1, 2], "f": None}
    nested = nest(row)
    assert nested == {"a": 1, "b": {"c": 2, "d": {"e": [1, 2]}}, "f": None}
    assert flatten(nested) == row


def test_schema_pruner_drops_undeclared_keys_recursively() -> None:
    schema = {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "audit": {"type": "object", "properties": {"modifiedDateTime": {"type": "string"}}},
            "lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"amount": {"type": "string"}}},
            },
            "free": {"type": "object"},
        },
    }
    prune = SchemaPruner(schema)
    record = {
        "key": "1",
        "API_QUERY_ALIAS__25": None,
        "audit": {"modifiedDateTime": "t", "extra": 1},
        "lines": [{"amount": "1.00", "junk": True}, {"amount": "2.00"}],
        "free": {"anything": {"goes": 1}},
    }
    assert prune(record) == {
        "key": "1",
        "audit": {"modifiedDateTime": "t"},
        "lines": [{"amount": "1.00"}, {"amount": "2.00"}],
        "free": {"anything": {"goes": 1}},
    }
    assert prune({"key": "2", "audit": None}) == {"key": "2", "audit": None}


def test_queryable_schema_keeps_exactly_what_field_paths_can_request() -> None:
    trimmed = queryable_schema(SCHEMA)
    assert set(trimmed["properties"]) == {"key", "id", "totalDue", "audit", "_entity"}
    assert field_paths(trimmed) == field_paths(SCHEMA)
    empty = {"properties": {"o": {"type": "object", "properties": {"l": {"type": "array"}}}}}
    assert queryable_schema(empty)["properties"] == {}


def _reference_plan(fields: list[str], aliases: dict[str, str], constants: dict[str, Any]) -> Any:
    """The plain interpreted conversion the generated code must equal (values and key order)."""
    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node.setdefault(parts[-1], None)

    def build(row: dict[str, Any], node: dict[str, Any], prefix: str) -> dict[str, Any]:
        out = {n: row.get(prefix + n) for n, c in node.items() if c is None}
        for n, c in node.items():
            if c is not None:
                out[n] = build(row, c, f"{prefix}{n}.")
        return out

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        out = {n: row.get(n) for n, c in tree.items() if c is None}
        out.update((n, row.get(src)) for n, src in aliases.items())
        for n, c in tree.items():
            if c is not None:
                out[n] = build(row, c, f"{n}.")
        out.update(constants)
        return out

    return convert


def _shape(value: Any) -> Any:
    """Values plus key order, recursively (dict equality ignores order)."""
    if isinstance(value, dict):
        return [(k, _shape(v)) for k, v in value.items()]
    return value


def test_generated_plan_equals_the_interpreted_conversion_on_a_real_object() -> None:
    schema = default_registry().object("accounts-receivable/customer").record_schema()
    fields = field_paths(schema)
    aliases = {"_modified_at": "audit.modifiedDateTime"}
    constants = {"_entity": "E1", "_sdc_deleted_at": None}
    plan = RowPlan(fields, aliases=aliases, constants=constants)
    reference = _reference_plan(fields, aliases, constants)
    full = {f: f"v{i}" for i, f in enumerate(fields)} | {"API_QUERY_ALIAS__25": "x"}
    sparse = {f: i for i, f in enumerate(fields) if i % 3 == 0}
    for row in (full, sparse, {}):
        assert _shape(plan(row)) == _shape(reference(row))
    assert plan.convert(full) == plan(full)
    assert "API_QUERY_ALIAS__25" not in plan(full)


def test_field_names_are_data_never_code() -> None:
    nasty = [
        "a'b",
        'q"uote',
        "back\\slash",
        "new\nline",
        "__import__('os').system('exit 3')",
        "x.}); import os; ({",
        "üñí.çødé",
        "g",
        "row",
        "_c0",
    ]
    aliases = {"al'ias": "a'b", "row": "g"}
    constants = {"_c0": {"not": "code"}, "c'1": "E1"}
    plan = RowPlan(nasty, aliases=aliases, constants=constants)
    row = {name: f"value of {name}" for name in nasty}
    assert _shape(plan(row)) == _shape(_reference_plan(nasty, aliases, constants)(row))
    assert plan(row)["x"] == {"}); import os; ({": "value of x.}); import os; ({"}


def test_same_names_replace_in_place_like_assignment() -> None:
    # an alias or constant with a field's name: the field's position, the later value
    plan = RowPlan(["key", "name", "audit.by"], aliases={"name": "key", "audit": "key"},
                   constants={"key": "K"})  # fmt: skip
    record = plan({"key": "1", "name": "n", "audit.by": "me"})
    assert list(record.items()) == [("key", "K"), ("name", "1"), ("audit", {"by": "me"})]


def test_paths_too_deep_for_the_compiler_still_convert() -> None:
    deep = ".".join(f"l{i}" for i in range(300))
    plan = RowPlan(["key", deep], aliases={"k": "key"}, constants={"_entity": "E"})
    record = plan({"key": "1", deep: "bottom"})
    assert list(record) == ["key", "k", "l0", "_entity"]
    node = record["l0"]
    for i in range(1, 299):
        node = node[f"l{i}"]
    assert node == {"l299": "bottom"}


def test_plans_share_generated_code_and_bind_their_own_constants() -> None:
    base = RowPlan(["key", "a.b"], aliases={"m": "a.b"})
    e1, e2 = base.with_constants({"_entity": "E1"}), base.with_constants({"_entity": "E2"})
    row = {"key": "1", "a.b": "x"}
    assert e1(row)["_entity"] == "E1"
    assert e2(row)["_entity"] == "E2"
    assert base(row) == {"key": "1", "m": "x", "a": {"b": "x"}}
    first = nest({"p.q": 1, "r": 2})
    assert nest({"p.q": 3, "r": 4}) == {"r": 4, "p": {"q": 3}}
    assert first == {"r": 2, "p": {"q": 1}}


def test_any_mapping_converts_the_same_and_is_never_changed() -> None:
    from collections import defaultdict
    from types import MappingProxyType

    plan = RowPlan(["key", "a.b", "a.c"], aliases={"m": "a.b"}, constants={"_entity": "E"})
    expected = {"key": "1", "m": None, "a": {"b": None, "c": "x"}, "_entity": "E"}
    complete = {"key": "1", "a.b": None, "a.c": "x", "stray": 0}  # the query service's rows
    assert plan(complete) == expected
    assert plan(MappingProxyType(complete)) == expected
    sparse: defaultdict[str, Any] = defaultdict(lambda: "invented", {"key": "1", "a.c": "x"})
    assert plan(sparse) == expected  # a missing key is None, never a default factory's value
    assert set(sparse) == {"key", "a.c"}


def _struct_row(fields: tuple[str, ...], row: dict[str, Any]) -> Any:
    """``row`` as the pager's typed decoding would hand it over (decoded from JSON bytes)."""
    page = msgspec.json.encode({"ia::result": [row]})
    return msgspec.json.decode(page, type=dict[str, list[row_struct(fields)]])["ia::result"][0]  # type: ignore[misc]


def test_struct_rows_convert_exactly_like_dict_rows_on_a_real_object() -> None:
    """The typed path (slots read directly) is checked against the dict path, value kinds
    included: numbers in decimal/string fields, empty strings, strays and missing fields."""
    info = default_registry().object("accounts-receivable/customer")
    fields = field_paths(info.record_schema())
    kinds = field_kinds(info.record_schema())
    assert {"decimal", "boolean", "string"} <= set(kinds.values())
    plan = RowPlan(
        fields,
        aliases={"_modified_at": "audit.modifiedDateTime"},
        constants={"_entity": "E1"},
        kinds=kinds,
    )
    wire = tuple(fields)
    odd: dict[str, Any] = {}
    for i, path in enumerate(fields):
        kind = kinds.get(path)
        odd[path] = {"decimal": 12.5, "boolean": i % 2 == 0, "string": i}.get(kind or "", f"v{i}")
    full = {f: f"v{i}" for i, f in enumerate(fields)} | {"API_QUERY_ALIAS__25": "x"}
    sparse = {f: i for i, f in enumerate(fields) if i % 3 == 0}
    empty_amounts = {f: "" for f, k in kinds.items() if k == "decimal"}
    for row in (full, odd, sparse, empty_amounts, {}):
        typed = _struct_row(wire, row)
        assert plan(typed) == plan(dict.fromkeys(fields) | row), sorted(row)[:3]
    # a narrower row type (a field dropped after REST-1106): the missing field is None
    narrower = _struct_row(wire[1:], full)
    assert plan(narrower) == plan({**full, fields[0]: None})


def test_struct_rows_read_by_path_like_the_flat_dict() -> None:
    row = _struct_row(
        ("key", "audit.modifiedDateTime", "vendor.id"), {"key": "7", "vendor.id": "V"}
    )
    assert row["key"] == "7"
    assert row.get("audit.modifiedDateTime") is None
    assert row.get("vendor.id") == "V"
    assert row.get("nope", 1) == 1
    with pytest.raises(KeyError):
        row["nope"]
    assert row_struct(("key", "id")) is row_struct(("key", "id"))  # generated once per field list
