"""Where a line's write goes when its owner is not a plain record (issue 14): inside the
owner's owner (journal-entry tax entries), at a document's ``::{documentName}`` path, and
refusals the spec decides; plus the owner references of document lines."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_api.errors import IntacctAPIError
from intacct_api.mutate import MutateEngine
from intacct_api.mutate_plan import OwnerRoute, owner_route
from intacct_api.settings import ConnectionSettings
from intacct_api.spec import SpecRegistry
from intacct_emulator.testing import EmulatorServer
from tests.core.test_owned_objects import latest_key, line_record
from tests.support.connection import demo_connection

TAX_ENTRY = "general-ledger/journal-entry-tax-entry"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def client(emulator: EmulatorServer, tmp_path: Path) -> Iterator[IntacctClient]:
    emulator.reset()
    settings = ConnectionSettings.from_config(demo_connection(emulator.base_url, tmp_path))
    with IntacctClient(settings) as found:
        yield found


def test_document_lines_name_their_document_by_its_header(registry: SpecRegistry) -> None:
    for app in ("order-entry", "purchasing", "inventory-control"):
        assert registry.object(f"{app}/document-line").owner_property == "documentHeader"
        assert registry.object(f"{app}/document-subtotal").owner_property == "documentHeader"
    for app in ("order-entry", "purchasing"):
        line = registry.object(f"{app}/recurring-document-line")
        assert line.owner_property == "recurringDocumentHeader"
    assert owner_route(registry, registry.object("order-entry/document-line")) == OwnerRoute(
        "order-entry/document", named=True
    )
    assert owner_route(registry, registry.object(TAX_ENTRY)) == OwnerRoute(
        "general-ledger/journal-entry", via="general-ledger/journal-entry-line"
    )


def test_tax_entries_are_written_inside_their_journal_entry_and_an_unknown_line_is_named(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    entry: dict[str, Any] = {
        "glJournal": {"id": "GJ"},
        "postingDate": dt.date(2024, 1, 5),
        "description": "tax entries inside",
        "lines": [
            {"txnType": "debit", "txnAmount": "10", "glAccount": {"id": "1000"}},
            {"txnType": "credit", "txnAmount": "10", "glAccount": {"id": "2000"}},
        ],
    }
    (header,) = engine.mutate("general-ledger/journal-entry", [entry], operation="create")
    assert header.ok, header.error
    rendered = emulator.company.record("general-ledger/journal-entry", str(header.key))
    lines = [str(line["key"]) for line in rendered["lines"]]
    records = [
        line_record(registry, TAX_ENTRY, lines[0]),
        line_record(registry, TAX_ENTRY, lines[1]),
        line_record(registry, TAX_ENTRY, "999999"),
        line_record(registry, TAX_ENTRY, lines[0]),
    ]
    dry = list(MutateEngine(registry, dry_run=True).mutate(TAX_ENTRY, records, operation="create"))
    assert [r.status for r in dry] == ["ok"] * 4  # a dry run cannot look the lines up
    before = dict(emulator.requests())
    results = list(engine.mutate(TAX_ENTRY, records, operation="create"))
    assert [r.status for r in results] == ["ok", "ok", "error", "ok"]
    assert "general-ledger/journal-entry-line 999999 was not found" in (results[2].error or "")
    assert results[2].error is not None
    assert results[2].error.startswith("record 2")
    after = emulator.requests()
    patches = {k: after[k] - before.get(k, 0) for k in after if k.startswith("PATCH")}
    assert patches == {"PATCH /objects/general-ledger/journal-entry/{key}": 1}
    rendered = emulator.company.record("general-ledger/journal-entry", str(header.key))
    assert [len(line.get("taxEntries") or []) for line in rendered["lines"]] == [2, 1]


def test_document_lines_patch_the_document_by_its_name_and_a_wrong_name_is_404(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    emulator.company.seed_object("order-entry/document", 1)
    key = latest_key(client, "order-entry/document")
    engine = MutateEngine(registry, client)
    record = line_record(registry, "order-entry/document-line", key)
    (sent,) = engine.mutate("order-entry/document-line", [record], operation="create")
    assert sent.ok, sent.error
    assert any("document::" in what for what in emulator.requests() if what.startswith("PATCH"))
    named = {**record, "documentHeader": {"key": key, "documentType": "Sales Order"}}
    (wrong,) = engine.mutate("order-entry/document-line", [named], operation="create")
    assert wrong.status == "error"
    assert "Sales Order" in (wrong.error or "")
    with pytest.raises(IntacctAPIError) as caught:
        client.request("PATCH", f"/objects/order-entry/document::Sales%20Order/{key}", json={})
    assert caught.value.status == 404
    response = client.request("GET", f"/objects/order-entry/document::Sales%20Invoice/{key}")
    assert response.json()["ia::result"]["documentType"] == "Sales Invoice"


def test_a_member_required_on_create_is_sent_though_marked_read_only(
    registry: SpecRegistry,
) -> None:
    name = "fixed-assets/asset-depreciation-rule"
    record = {**line_record(registry, name, "7"), "id": "DR-1"}
    engine = MutateEngine(registry, dry_run=True)
    (planned,) = engine.mutate(name, [record], operation="create")
    assert planned.ok, planned.error
    assert planned.request is not None
    assert planned.request["id"] == "DR-1"
    (missing,) = engine.mutate(name, [{"asset": {"key": "7"}}], operation="create")
    assert "field 'id': is required on create" in (missing.error or "")


def test_lines_created_inside_a_new_owner_need_their_own_required_members(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    """A bill created with a line lacking ``glAccount`` is refused alike by the dry and the
    real run, naming ``lines[1].glAccount``; nothing is sent."""
    emulator.company.seed_object("accounts-payable/vendor", 1)
    vendor = latest_key(client, "accounts-payable/vendor")
    good_line = {"txnAmount": "10.00", "glAccount": {"id": "6000"}}
    bill = {
        "vendor": {"key": vendor},
        "billNumber": "B-REQ-1",
        "createdDate": "2026-11-01",
        "dueDate": "2026-12-01",
        "currency": {"txnCurrency": "USD"},
        "lines": [good_line, {"txnAmount": "5.00"}],
    }
    before = emulator.requests().get("POST /objects/accounts-payable/bill", 0)
    for engine in (MutateEngine(registry, dry_run=True), MutateEngine(registry, client)):
        (result,) = engine.mutate("accounts-payable/bill", [bill], operation="create")
        assert not result.ok
        assert "field 'lines[1].glAccount': is required on create" in (result.error or "")
    assert emulator.requests().get("POST /objects/accounts-payable/bill", 0) == before


def test_an_operation_sage_does_not_list_is_refused_alike_dry_and_real(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    """``company-config/company-preference`` has an update but no create: a create is refused
    before sending in both runs (it used to be ok in a dry run and a 405 for real)."""
    name = "company-config/company-preference"
    info = registry.object(name)
    assert info.create_operation_id is None
    assert info.update_operation_id is not None
    for engine in (MutateEngine(registry, dry_run=True), MutateEngine(registry, client)):
        (created,) = engine.mutate(name, [{"key": "1"}], operation="create")
        assert not created.ok
        assert f"Intacct has no create for {name}" in (created.error or "")
    assert not any(name in what and what.startswith("POST") for what in emulator.requests())
