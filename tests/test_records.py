"""Record shape helpers: flat query rows <-> nested records, field lists from schemas."""

from __future__ import annotations

from typing import Any

from intacct_api.records import (
    RowPlan,
    SchemaPruner,
    dotted,
    field_paths,
    flatten,
    nest,
    queryable_schema,
)
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
