"""Spec registry: counts checked against the raw files, lookups, kinds, overrides, owners."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from intacct_api.errors import UnknownObjectError, UnknownOperationError
from intacct_api.spec import (
    KINDS,
    SpecRegistry,
    default_registry,
    object_name_from_stream,
    stream_name,
)
from intacct_api.specs_location import embedded_spec_files, specs_dir
from tests.support.paths import SPECS

METHODS = ("get", "post", "put", "patch", "delete")


def _raw_documents() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(SPECS.glob("*.json"))}


def _raw_operations() -> list[tuple[str, str, str, str]]:
    """(file, method, path, operationId) straight from the JSON, independent of the registry."""
    found = []
    for name, doc in _raw_documents().items():
        for path, item in doc["paths"].items():
            for method in METHODS:
                if method in item:
                    found.append((name, method.upper(), path, item[method]["operationId"]))
    return found


@pytest.fixture(scope="module")
def registry() -> SpecRegistry:
    return SpecRegistry.load()


@pytest.fixture(scope="module")
def raw_ops() -> list[tuple[str, str, str, str]]:
    return _raw_operations()


def test_specs_location_finds_embedded_files() -> None:
    files = embedded_spec_files()
    assert specs_dir().is_dir()
    assert [p.name for p in files] == sorted(p.name for p in SPECS.glob("*.json"))
    assert "common-resources.json" in {p.name for p in files}


def test_operation_counts_match_raw_files(registry: SpecRegistry, raw_ops: list) -> None:
    assert len(registry.operations) == len({op_id for *_, op_id in raw_ops})
    per_file: dict[str, int] = {}
    for file_name, *_ in raw_ops:
        per_file[file_name] = per_file.get(file_name, 0) + 1
    registry_per_file: dict[str, int] = {}
    for op in registry.operations.values():
        registry_per_file[op.source_file] = registry_per_file.get(op.source_file, 0) + 1
    assert registry_per_file == per_file
    assert per_file["common-resources.json"] == 35
    for file_name, method, path, op_id in raw_ops:
        op = registry.operation(op_id)
        assert (op.method, op.spec_path, op.source_file) == (method, path, file_name)


def test_application_counts_match_raw_paths(registry: SpecRegistry, raw_ops: list) -> None:
    expected = sum(
        1
        for _, _, path, _ in raw_ops
        if path.split("/")[2] == "accounts-receivable" and path.split("/")[1] != "services"
    ) + sum(1 for _, _, path, _ in raw_ops if path.startswith("/services/accounts-receivable/"))
    assert len(registry.find_operations(application="accounts-receivable")) == expected
    assert expected > 100


@pytest.mark.parametrize(
    ("operation_id", "kind", "object_name", "application"),
    [
        ("list-accounts-receivable-customer", "list", "accounts-receivable/customer", None),
        ("get-accounts-payable-bill-key", "get", "accounts-payable/bill", None),
        ("create-accounts-payable-bill", "create", "accounts-payable/bill", None),
        ("update-accounts-payable-bill-key", "update", "accounts-payable/bill", None),
        ("delete-accounts-payable-bill-key", "delete", "accounts-payable/bill", None),
        ("post-services-query", "query", None, "core"),
        ("get-services-model", "service", None, "core"),
        ("post-bulk-job-create", "service", None, "bulk"),
        ("list-order-entry-named-document", "list", "order-entry/document", None),
        ("update-order-entry-document-key", "update", "order-entry/document", None),
    ],
)
def test_kinds(
    registry: SpecRegistry,
    operation_id: str,
    kind: str,
    object_name: str | None,
    application: str | None,
) -> None:
    op = registry.operation(operation_id)
    assert op.kind == kind
    assert op.object_name == object_name
    assert op.application == (application or object_name.partition("/")[0])  # type: ignore[union-attr]


def test_kind_rules_hold_for_every_operation(registry: SpecRegistry) -> None:
    for op in registry.operations.values():
        assert op.kind in KINDS
        if op.path.startswith("/workflows/"):
            assert op.kind == "workflow"
            assert op.object_name is not None
        elif op.path.startswith("/services/"):
            assert op.kind in ("query", "service")
            assert op.object_name is None
        elif op.method == "DELETE":
            assert op.kind == "delete"
        elif op.method == "PATCH":
            assert op.kind == "update"
        elif op.method == "GET":
            assert op.kind == ("get" if op.path.count("/") >= 4 else "list")
    assert [op.operation_id for op in registry.find_operations(kind="query")] == [
        "post-services-query"
    ]
    workflows = registry.find_operations(kind="workflow", object_name="accounts-payable/bill")
    assert "submit" in {op.path.rsplit("/", 1)[-1] for op in workflows}


def test_parameters_merged_and_refs_resolved(registry: SpecRegistry) -> None:
    op = registry.operation("get-accounts-payable-bill-key")  # key declared at path level
    (key,) = [p for p in op.parameters if p.name == "key"]
    assert (key.location, key.required, key.schema.get("type")) == ("path", True, "string")
    named = [
        op
        for op in registry.find_operations(application="inventory-control")
        if "::{documentName}" in op.path
    ]
    assert named
    for op in named:  # documentName is a $ref to components/parameters in that file
        assert "documentName" in {p.name for p in op.parameters if p.location == "path"}


def test_path_typo_is_mapped_to_accounts_payable(registry: SpecRegistry) -> None:
    typo = [op for op in registry.operations.values() if "/acounts-payable/" in op.spec_path]
    assert typo, "the spec files still carry the misspelt path"
    for op in typo:
        assert op.application == "accounts-payable"
        assert op.object_name == "accounts-payable/joint-payee"
        assert op.path == op.spec_path.replace("/acounts-payable/", "/accounts-payable/")
    assert "acounts-payable" not in registry.applications()
    info = registry.object("acounts-payable/joint-payee")
    assert info is registry.object("accounts-payable/joint-payee")
    assert {op.operation_id for op in typo} <= set(info.operation_ids)
    assert info.get_operation_id in {op.operation_id for op in typo}


def test_lookups_and_suggestions(registry: SpecRegistry) -> None:
    with pytest.raises(UnknownOperationError) as op_error:
        registry.operation("create-accounts-payable-bil")
    assert "create-accounts-payable-bill" in op_error.value.suggestions
    assert "create-accounts-payable-bill" in str(op_error.value)
    with pytest.raises(UnknownObjectError) as obj_error:
        registry.object("accounts-payable/vendr")
    assert obj_error.value.suggestions[0] == "accounts-payable/vendor"
    assert registry.object("accounts_receivable__customer").name == "accounts-receivable/customer"
    assert registry.find_operations(object_name="accounts_receivable__customer") == (
        registry.find_operations(object_name="accounts-receivable/customer")
    )
    apps = registry.applications()
    assert {"accounts-payable", "core", "general-ledger", "reports"} <= set(apps)
    assert registry.source_of("post-services-query") == "common-resources.json"


def test_objects_index(registry: SpecRegistry) -> None:
    raw_schema_names = {
        name for doc in _raw_documents().values() for name in doc["components"]["schemas"]
    }
    for info in registry.objects.values():
        assert info.schema_name in raw_schema_names
        assert info.stream == stream_name(info.name)
        assert object_name_from_stream(info.stream) == info.name
        assert registry.object(info.stream) is info
    bill = registry.object("accounts-payable/bill")
    assert (bill.list_operation_id, bill.create_operation_id, bill.delete_operation_id) == (
        "list-accounts-payable-bill",
        "create-accounts-payable-bill",
        "delete-accounts-payable-bill-key",
    )
    document = registry.object("order-entry/document")  # plain path preferred over ::name
    assert document.list_operation_id == "list-order-entry-document"
    assert document.create_operation_id == "create-order-entry-named-document"
    assert all(info.list_operation_id for info in registry.queryable_objects())
    # a family whose record schema is not called objects.<app>.<obj>
    assert registry.object("contracts/revenue-schedule").schema_name == (
        "contracts-revenue-schedule"
    )


def test_required_on_create(registry: SpecRegistry) -> None:
    raw = _raw_documents()["accounts-receivable.json"]["components"]["schemas"]
    assert registry.object("accounts-receivable/customer").required_on_create == tuple(
        raw["accounts-receivable-customerRequiredProperties"]["required"]
    )
    bill = registry.object("accounts-payable/bill").required_on_create
    assert set(bill) == {"dueDate", "createdDate", "vendor.id", "currency.txnCurrency"}
    bill_line = registry.object("accounts-payable/bill-line").required_on_create
    assert "bill.key" in bill_line
    assert "bill" not in bill_line  # listed by its required leaf
    assert "dimensions.location" not in bill_line  # inside a oneOf: conditional


@pytest.mark.parametrize(
    ("owned", "owner", "prop"),
    [
        ("accounts-payable/bill-line", "accounts-payable/bill", "lines"),
        ("accounts-receivable/invoice-line", "accounts-receivable/invoice", "lines"),
        ("general-ledger/journal-entry-line", "general-ledger/journal-entry", "lines"),
    ],
)
def test_owner_detection(registry: SpecRegistry, owned: str, owner: str, prop: str) -> None:
    assert registry.object(owned).owner == owner
    assert registry.object(owner).owned_lists[prop] == owned
    assert registry.object(owner).owner is None
    owner_schema = registry.object(owner).record_schema()["properties"][prop]
    assert set(owner_schema["items"]["properties"]) == set(
        registry.object(owned).record_schema()["properties"]
    )


def test_owned_lists_are_consistent(registry: SpecRegistry) -> None:
    for info in registry.objects.values():
        if info.owner is not None:
            assert info.name in registry.object(info.owner).owned_lists.values()
        for prop, owned in info.owned_lists.items():
            schema = info.record_schema()["properties"][prop]
            assert "array" in schema["type"]
            assert registry.object(owned).owner is not None


def test_modified_timestamp_flag_matches_record_schema(registry: SpecRegistry) -> None:
    flagged = 0
    for info in registry.objects.values():
        audit = info.record_schema()["properties"].get("audit") or {}
        expected = "modifiedDateTime" in (audit.get("properties") or {})
        assert info.has_modified_timestamp == expected, info.name
        flagged += expected
    assert flagged > 300
    assert registry.object("accounts-receivable/customer").has_modified_timestamp


def _override_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "override", "version": "1"},
        "paths": {
            "/objects/accounts-receivable/customer/{key}": {
                "parameters": [{"name": "key", "in": "path", "required": True}],
                "get": {
                    "operationId": "get-accounts-receivable-customer-key",
                    "summary": "Overridden customer get",
                    "responses": {"204": {"description": "none"}},
                },
            },
            "/objects/accounts-receivable/brand-new": {
                "get": {
                    "operationId": "list-accounts-receivable-brand-new",
                    "summary": "A new object",
                    "responses": {"204": {"description": "none"}},
                },
            },
        },
        "components": {
            "schemas": {
                "objects.accounts-receivable.customer": {
                    "type": "object",
                    "properties": {"key": {"type": "string"}, "extra": {"type": "string"}},
                },
                "objects.accounts-receivable.brand-new": {
                    "type": "object",
                    "properties": {"key": {"type": "string"}},
                },
            }
        },
    }


def test_later_file_wins(tmp_path: Path) -> None:
    folder = tmp_path / "overrides"
    folder.mkdir()
    (folder / "zz-override.json").write_text(json.dumps(_override_document()))
    registry = SpecRegistry.load([folder])
    op = registry.operation("get-accounts-receivable-customer-key")
    assert op.summary == "Overridden customer get"
    assert registry.source_of(op.operation_id) == "zz-override.json"
    assert registry.source_of("list-accounts-receivable-customer") == "accounts-receivable.json"
    assert len(registry.operations) == len(SpecRegistry.load().operations) + 1
    customer = registry.object("accounts-receivable/customer")
    assert customer.source_file == "zz-override.json"
    assert set(customer.record_schema()["properties"]) == {"key", "extra"}
    assert registry.object("accounts-receivable/brand-new").list_operation_id == (
        "list-accounts-receivable-brand-new"
    )
    # a single file works too, and a second file later in the list wins over the first
    second = _override_document()
    second["paths"]["/objects/accounts-receivable/customer/{key}"]["get"]["summary"] = "second"
    (tmp_path / "second.json").write_text(json.dumps(second))
    both = SpecRegistry.load([folder / "zz-override.json", tmp_path / "second.json"])
    assert both.operation("get-accounts-receivable-customer-key").summary == "second"
    assert both.source_of("get-accounts-receivable-customer-key") == "second.json"


def test_missing_spec_path_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SpecRegistry.load([tmp_path / "nope.json"])


def test_default_registry_is_cached() -> None:
    assert default_registry() is default_registry(())
    assert len(default_registry().operations) > 2000


def test_stream_names() -> None:
    assert stream_name("accounts-receivable/customer") == "accounts_receivable__customer"
    assert object_name_from_stream("general_ledger__journal_entry_line") == (
        "general-ledger/journal-entry-line"
    )


def test_operations_are_hashable_and_schemas_lazy(registry: SpecRegistry) -> None:
    ops = set(registry.operations.values())
    assert len(ops) == len(registry.operations)
    create = registry.operation("create-accounts-payable-bill")
    assert create.request_body_required()
    assert create.request_schema()["required"] == ["dueDate", "createdDate"]  # type: ignore[index]
    response = create.response_schema()
    assert response is not None
    assert set(response["properties"]["ia::result"]["properties"]) >= {"key", "id", "href"}
    assert registry.operation("delete-accounts-payable-bill-key").response_schema() is None
    assert registry.operation("get-accounts-payable-bill-key").request_schema() is None
