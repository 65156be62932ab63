"""Model-service answers (recorded from a real sandbox) -> record schema; spec vs model diffs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from intacct_api.model_schema import (
    TypeMismatch,
    compare_record_schemas,
    model_result,
    model_to_record_schema,
)
from intacct_api.spec import SpecRegistry
from tests.support.paths import RECORDED

CASES = {
    "accounts-receivable/customer": "01_full_load_customers.json",
    "accounts-payable/vendor": "03_full_load_vendors.json",
    "general-ledger/account": "05_full_load_gl_accounts.json",
}


def _interactions(fixture: str) -> list[dict[str, Any]]:
    return json.loads((RECORDED / fixture).read_text())["interactions"]


def _model_body(object_name: str) -> dict[str, Any]:
    (body,) = [
        json.loads(it["response"]["body"]["string"])
        for it in _interactions(CASES[object_name])
        if "services/core/model" in it["request"]["uri"]
    ]
    return body


def _query_rows(object_name: str) -> list[dict[str, Any]]:
    return [
        row
        for it in _interactions(CASES[object_name])
        if "services/core/query" in it["request"]["uri"]
        for row in json.loads(it["response"]["body"]["string"])["ia::result"]
    ]


@pytest.fixture(scope="module")
def registry() -> SpecRegistry:
    return SpecRegistry.load()


def test_customer_model_shape() -> None:
    body = _model_body("accounts-receivable/customer")
    model = model_result(body)
    schema = model_to_record_schema(body)
    props = schema["properties"]
    assert schema["x-intacct-object"] == "accounts-receivable/customer"
    # every field, group, ref and list of the model becomes a property
    expected = (
        set(model["fields"]) | set(model["groups"]) | set(model["refs"]) | set(model["lists"])
    )
    assert set(props) == expected
    assert model["fields"]["key"]["nullable"] is True
    assert props["key"]["type"] == "string"  # but the primary key is made non-null
    assert props["name"]["type"] == ["string", "null"]
    assert props["creditLimit"]["type"] == ["string", "number", "null"]  # model says number
    assert props["creditLimit"]["x-intacct-type"] == "number"
    audit = props["audit"]
    assert audit["type"] == ["object", "null"]
    assert audit["properties"]["modifiedDateTime"]["format"] == "date-time"
    assert audit["properties"]["modifiedDateTime"]["readOnly"] is True
    created_by = audit["properties"]["createdByUser"]  # a ref inside a group
    assert created_by["x-intacct-object"] == "company-config/user"
    assert set(created_by["properties"]) == {"key", "id", "href"}
    assert props["term"]["x-intacct-object"] == model["refs"]["term"]["apiObject"]
    contacts = props["contactList"]
    assert contacts["type"] == ["array", "null"]
    assert contacts["items"]["x-intacct-object"] == "accounts-receivable/customer-contact"
    assert props["activationDate"]["deprecated"] is True
    assert props["name"]["x-intacct-mutable"] is True


def test_model_enum_and_nullability() -> None:
    props = model_to_record_schema(_model_body("accounts-receivable/customer"))["properties"]
    # status is "nullable": false in the model, but the record treatment admits null anyway
    assert props["status"]["type"] == ["string", "null"]
    assert props["status"]["enum"] == ["active", "activeNonPosting", "inactive", None]
    assert props["status"]["default"] == "active"


@pytest.mark.parametrize("object_name", sorted(CASES))
def test_recorded_rows_validate_against_model_schema(object_name: str) -> None:
    rows = _query_rows(object_name)
    assert rows
    validator = Draft202012Validator(model_to_record_schema(_model_body(object_name)))
    for row in rows:
        errors = list(validator.iter_errors(row))
        assert not errors, errors[0].message


def test_customer_spec_vs_model(registry: SpecRegistry) -> None:
    diff = compare_record_schemas(
        registry.object("accounts-receivable/customer").record_schema(),
        model_to_record_schema(_model_body("accounts-receivable/customer")),
    )
    # the sandbox has two custom relationships the published spec cannot know about
    assert diff.only_right == ["nsp::r10007", "nsp::r10008"]
    assert "webURL" in diff.only_left
    # the spec reconstruction lost integer vs number; the model knows healthScore is integer
    assert (
        TypeMismatch(
            "customerAccountHealth.healthScore",
            ("number", "string", "x-intacct-type=number"),
            ("integer",),
        )
        in diff.type_mismatches
    )
    as_data = diff.as_dict()
    assert as_data["left_label"] == "spec"
    assert {"path", "spec", "model"} <= set(as_data["type_mismatches"][0])
    json.dumps(as_data)  # JSON-ready
    assert not diff.identical


def test_vendor_and_account_spec_vs_model(registry: SpecRegistry) -> None:
    vendor = compare_record_schemas(
        registry.object("accounts-payable/vendor").record_schema(),
        model_to_record_schema(_model_body("accounts-payable/vendor")),
    )
    assert {"customer", "employee", "webURL"} <= set(vendor.only_left)
    assert "defaultLeadTime" in {m.path for m in vendor.type_mismatches}
    account = compare_record_schemas(
        registry.object("general-ledger/account").record_schema(),
        model_to_record_schema(_model_body("general-ledger/account")),
    )
    assert "enableGLMatching" in account.only_left
    assert account.only_right == []
    assert account.type_mismatches == []
    # both sides agree on the audit group, which the tap relies on for incremental sync
    assert not [p for p in account.only_left + account.only_right if p.startswith("audit.")]


def test_compare_synthetic() -> None:
    left = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"x": {"type": "integer"}}},
            },
            "only": {"type": "string"},
        },
    }
    right = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},  # nullability alone is not a difference
            "lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"x": {"type": "boolean"}, "y": {}}},
            },
        },
    }
    diff = compare_record_schemas(left, right, left_label="old", right_label="new")
    assert diff.only_left == ["only"]
    assert diff.only_right == ["lines[].y"]
    assert diff.type_mismatches == [TypeMismatch("lines[].x", ("integer",), ("boolean",))]
    assert compare_record_schemas(left, left).identical


def test_model_result_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        model_result({"ia::result": [1, 2]})
