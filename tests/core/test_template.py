"""Request templates: parameters, body fields with required marks, examples, skeleton."""

from __future__ import annotations

import json

import pytest

from intacct_api.spec import SpecRegistry
from intacct_api.template import example_for, operation_template, render_template
from tests.support.paths import SPECS


@pytest.fixture(scope="module")
def registry() -> SpecRegistry:
    return SpecRegistry.load()


def test_create_bill_template(registry: SpecRegistry) -> None:
    template = operation_template(registry.operation("create-accounts-payable-bill"))
    assert (template["method"], template["path"], template["kind"]) == (
        "POST",
        "/objects/accounts-payable/bill",
        "create",
    )
    assert template["parameters"] == []
    body = template["body"]
    assert body["required"] is True
    fields = {f["path"]: f for f in body["fields"]}
    assert fields["dueDate"]["required"] is True
    assert fields["createdDate"]["required"] is True
    assert fields["vendor.id"]["required"] is True  # from billRequiredProperties via allOf
    assert fields["vendor.key"]["required"] is False
    assert fields["description"]["required"] is False
    # read-only properties cannot be sent, so they are not in the template
    assert "totalTxnAmount" not in fields
    assert "key" not in fields
    raw = json.loads((SPECS / "accounts-payable.json").read_text())
    raw_bill = raw["components"]["schemas"]["objects.accounts-payable.bill"]["properties"]
    assert fields["dueDate"]["example"] == raw_bill["dueDate"]["example"]
    assert fields["state"]["enum"] == raw_bill["state"]["enum"]
    assert fields["lines[].txnAmount"]["format"] == "decimal-precision-2"
    skeleton = body["skeleton"]
    assert skeleton["vendor"]["id"] == fields["vendor.id"]["example"]
    assert isinstance(skeleton["lines"], list)
    assert "txnAmount" in skeleton["lines"][0]
    assert "totalTxnAmount" not in skeleton


def test_get_template_parameters(registry: SpecRegistry) -> None:
    template = operation_template(registry.operation("get-accounts-payable-bill-key"))
    assert template["body"] is None
    (key,) = template["parameters"]
    assert key == {
        "name": "key",
        "in": "path",
        "required": True,
        "type": "string",
        "description": "System-assigned unique key for the bill.",
        "example": "99",
    }
    text = render_template(template)
    assert "* key [path]" in text
    assert "Request body: none" in text


def test_render_marks_required(registry: SpecRegistry) -> None:
    text = render_template(operation_template(registry.operation("create-accounts-payable-bill")))
    assert "create-accounts-payable-bill  POST /objects/accounts-payable/bill" in text
    assert "  * dueDate  string (date)" in text
    assert "  * vendor.id  string" in text
    assert "    vendor.key  string" in text
    assert "Skeleton:" in text


def test_every_operation_has_a_template(registry: SpecRegistry) -> None:
    with_body = 0
    for op in registry.operations.values():
        template = operation_template(op)
        json.dumps(template)
        assert template["operationId"] == op.operation_id
        path_params = {p["name"] for p in template["parameters"] if p["in"] == "path"}
        assert path_params == {seg[1:-1] for seg in op.path.split("/") if seg.startswith("{")} | {
            part.split("::{", 1)[1][:-1] for part in op.path.split("/") if "::{" in part
        }
        with_body += template["body"] is not None
    assert with_body > 600


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "format": "date"}, "2025-01-31"),
        ({"type": "string", "format": "date-time"}, "2025-01-31T12:00:00Z"),
        ({"type": ["string", "null"], "format": "decimal-precision-2"}, "0.00"),
        ({"type": "string", "enum": [None, "b"]}, "b"),
        ({"type": "integer"}, 0),
        ({"type": "boolean"}, False),
        ({"type": "object"}, {}),
        ({"type": "string", "examples": ["given"]}, "given"),
        ({"anyOf": [{"type": "null"}, {"type": "boolean"}]}, False),
        ({}, None),
    ],
)
def test_example_for(schema: dict, expected: object) -> None:
    assert example_for(schema) == expected
