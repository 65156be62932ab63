"""The Mutate engine against the emulator over loopback HTTP: batching, upsert, 207, atomic,
idempotency, deletes, owned lines, entities, dry-run validation and value serialisation."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_api.mutate import MutateEngine
from intacct_api.mutate_validation import InvalidRecordError, RequestPreparer
from intacct_api.settings import ConnectionSettings
from intacct_api.spec import SpecRegistry, default_registry
from intacct_emulator.testing import EmulatorServer

VENDOR = "accounts-payable/vendor"
VENDOR_PATH = "/objects/accounts-payable/vendor"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


@pytest.fixture(scope="module")
def registry() -> SpecRegistry:
    return default_registry()


@pytest.fixture
def client(emulator: EmulatorServer, tmp_path: Path) -> Iterator[IntacctClient]:
    emulator.reset()
    settings = ConnectionSettings(
        base_url=emulator.base_url,
        client_id="demo-client",
        client_secret="demo-secret",
        username="admin@DEMO",
        token_store=str(tmp_path / "tokens.json"),
    )
    with IntacctClient(settings) as api:
        yield api


def writes(emulator: EmulatorServer) -> dict[str, int]:
    """Request counts without the token call (which depends on test order)."""
    return {k: v for k, v in emulator.requests().items() if "oauth2" not in k}


def all_vendors(client: IntacctClient) -> list[dict[str, Any]]:
    body = {"object": VENDOR, "fields": ["key", "id", "name"], "size": 4000}
    rows: list[dict[str, Any]] = client.query(body).json()["ia::result"]
    return rows


def vendors(count: int, suffix: str = "") -> list[dict[str, Any]]:
    return [{"id": f"V{i:05d}", "name": f"Vendor {i}{suffix}"} for i in range(count)]


def test_1234_creates_cost_three_requests(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    results = list(engine.mutate(VENDOR, vendors(1234), operation="create"))
    assert [r.index for r in results] == list(range(1234))
    assert all(r.ok and r.key for r in results)
    assert writes(emulator) == {f"POST {VENDOR_PATH}": 3}
    stored = all_vendors(client)
    assert len(stored) == 1234
    assert {r.key for r in results} == {row["key"] for row in stored}


def test_upsert_new_then_changed(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    first = list(engine.mutate(VENDOR, vendors(1234)))
    assert {r.operation for r in first} == {"create"}
    assert all(r.ok for r in first)
    assert writes(emulator) == {f"POST {VENDOR_PATH}": 3, "POST /services/core/query": 3}

    emulator.reset(data=False, tokens=False, idempotency=False)
    second = list(engine.mutate(VENDOR, vendors(1234, suffix=" changed")))
    assert {r.operation for r in second} == {"update"}
    assert all(r.ok for r in second)
    assert [r.key for r in second] == [r.key for r in first]
    assert writes(emulator) == {"POST /services/core/query": 3, f"PATCH {VENDOR_PATH}": 3}
    stored = all_vendors(client)
    assert len(stored) == 1234
    assert all(row["name"].endswith(" changed") for row in stored)


def test_upsert_with_key_updates_and_mixed_batch_splits(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    existing = list(engine.mutate(VENDOR, vendors(3), operation="create"))
    emulator.reset(data=False, tokens=False, idempotency=False)
    batch = [
        {"key": existing[0].key, "name": "by key"},
        {"id": "V00001", "name": "by id"},
        {"id": "NEW1", "name": "brand new"},
    ]
    results = list(engine.mutate(VENDOR, batch))
    assert [(r.operation, r.ok) for r in results] == [
        ("update", True),
        ("update", True),
        ("create", True),
    ]
    assert results[1].key == existing[1].key
    assert writes(emulator) == {
        "POST /services/core/query": 1,
        f"PATCH {VENDOR_PATH}": 1,
        f"POST {VENDOR_PATH}": 1,
    }
    names = {row["id"]: row["name"] for row in all_vendors(client)}
    assert names == {
        "V00000": "by key",
        "V00001": "by id",
        "V00002": "Vendor 2",
        "NEW1": "brand new",
    }


def test_partial_failure_207_results_in_order(
    client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    list(engine.mutate(VENDOR, [{"id": "DUP", "name": "first"}], operation="create"))
    batch = [{"id": "A", "name": "a"}, {"id": "DUP", "name": "again"}, {"id": "B", "name": "b"}]
    results = list(engine.mutate(VENDOR, batch, operation="create"))
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert results[1].error is not None
    assert "record 1 (id 'DUP')" in results[1].error
    assert results[1].error_code == "REST-1053"
    assert results[0].key
    assert results[2].key
    assert results[1].key is None
    assert sorted(row["id"] for row in all_vendors(client)) == ["A", "B", "DUP"]


def test_atomic_batch_is_all_or_nothing(client: IntacctClient, registry: SpecRegistry) -> None:
    list(
        MutateEngine(registry, client).mutate(
            VENDOR, [{"id": "DUP", "name": "x"}], operation="create"
        )
    )
    engine = MutateEngine(registry, client, atomic=True)
    batch = [{"id": "A", "name": "a"}, {"id": "DUP", "name": "again"}, {"id": "B", "name": "b"}]
    results = list(engine.mutate(VENDOR, batch, operation="create"))
    assert [r.status for r in results] == ["error", "error", "error"]
    assert results[1].error_code == "REST-1053"
    assert {results[0].error_code, results[2].error_code} == {"REST-1054"}
    assert [row["id"] for row in all_vendors(client)] == ["DUP"]


def test_each_write_gets_a_fresh_idempotency_key(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    """Identical writes are separate writes: a content-derived key would make Intacct replay
    the second one instead of executing it (issue 11)."""
    engine = MutateEngine(registry, client)
    first = list(engine.mutate(VENDOR, vendors(3), operation="create"))
    assert all(r.ok and not r.replayed for r in first)
    keys = {r.idempotency_key for r in first}
    assert len(keys) == 1  # one request, one key
    assert None not in keys
    again = list(engine.mutate(VENDOR, vendors(3), operation="upsert"))
    assert {r.idempotency_key for r in again}.isdisjoint(keys)
    assert [r.operation for r in again] == ["update"] * 3
    assert not any(r.replayed for r in again)


def test_deletes_by_key_with_partial_failure(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    created = list(engine.mutate(VENDOR, vendors(3), operation="create"))
    doomed = [{"key": created[0].key}, {"key": "999999"}, {"key": created[2].key}, {"id": "x"}]
    results = list(engine.mutate(VENDOR, doomed, operation="delete"))
    # a key that is already gone is what a delete asks for: ok, with a note saying so
    assert [r.status for r in results] == ["ok", "ok", "ok", "error"]
    assert results[1].note is not None
    assert "already deleted" in results[1].note
    assert "999999" in results[1].note
    assert results[0].note is None
    assert results[3].error is not None
    assert "field 'key'" in results[3].error
    assert [row["id"] for row in all_vendors(client)] == ["V00001"]
    # DELETE carries no Idempotency-Key (Intacct does not support one there)
    assert all(r.idempotency_key is None for r in results)
    again = list(engine.mutate(VENDOR, [{"key": created[0].key}], operation="delete"))
    assert again[0].ok
    assert again[0].note is not None
    assert "already deleted" in again[0].note


def test_owned_lines_are_written_through_the_owner(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    entry = {
        "glJournal": {"id": "GJ"},
        "postingDate": dt.date(2024, 1, 5),
        "description": "header with nested lines",
        "lines": [
            {"txnType": "debit", "txnAmount": decimal.Decimal("10.5"), "glAccount": {"id": "1000"}},
            {"txnType": "credit", "txnAmount": "10.50", "glAccount": {"id": "2000"}},
        ],
    }
    [header] = list(engine.mutate("general-ledger/journal-entry", [entry], operation="create"))
    assert header.ok, header.error
    lines = [
        {
            "journalEntry": {"key": header.key},
            "txnType": "debit",
            "txnAmount": "1.25",
            "glAccount": {"id": "1000"},
        },
        {
            "journalEntry": {"key": header.key},
            "txnType": "credit",
            "txnAmount": "1.25",
            "glAccount": {"id": "2000"},
        },
        {"txnType": "credit", "txnAmount": "1.25"},
    ]
    results = list(engine.mutate("general-ledger/journal-entry-line", lines, operation="create"))
    assert [r.status for r in results] == ["ok", "ok", "error"]
    assert results[2].error is not None
    assert "journalEntry.key" in results[2].error
    assert writes(emulator)["PATCH /objects/general-ledger/journal-entry/{key}"] == 1
    stored = client.request("GET", f"/objects/general-ledger/journal-entry/{header.key}").json()
    amounts = sorted(line["txnAmount"] for line in stored["ia::result"]["lines"])
    assert amounts == ["1.25", "1.25", "10.50", "10.50"]


def test_records_are_grouped_by_entity(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    batch = [
        {"id": "E1A", "name": "a", "_entity": "E1"},
        {"id": "TOP", "name": "t"},
        {"id": "E1B", "name": "b", "_entity": "E1"},
    ]
    results = list(engine.mutate(VENDOR, batch, operation="create"))
    assert [r.entity for r in results] == ["E1", None, "E1"]
    assert all(r.ok for r in results), [r.error for r in results]
    assert writes(emulator) == {f"POST {VENDOR_PATH}": 2}
    assert "_entity" not in (results[0].request or {})


def test_dry_run_names_fields_and_never_calls_the_api(
    emulator: EmulatorServer, registry: SpecRegistry
) -> None:
    emulator.reset()
    engine = MutateEngine(registry, dry_run=True)
    batch = [
        {"id": "OK", "name": "fine", "key": "12", "href": "/x"},
        {"id": "NONAME"},
        {"id": "BAD", "name": "b", "status": "sleepy"},
        {"id": "UNK", "name": "u", "favouriteColour": "blue"},
        {"id": "TYPE", "name": 42},
        {"id": "HUGE", "name": "x" * 20_000},
    ]
    results = list(engine.mutate(VENDOR, batch, operation="create"))
    assert results[0].ok
    assert results[0].dry_run
    assert results[0].request == {"id": "OK", "name": "fine"}
    assert results[0].warnings == ["read-only fields dropped: href, key"]
    errors = [r.error or "" for r in results[1:]]
    assert errors[0] == "record 1 (id 'NONAME'): field 'name': is required on create"
    assert "field 'status'" in errors[1]
    assert "sleepy" in errors[1]
    assert "field 'favouriteColour': unknown field" in errors[2]
    assert "field 'name'" in errors[3]
    assert "type" in errors[3]
    assert "field 'name': string of 20000 characters" in errors[4]
    assert emulator.requests() == {}


def test_decimal_and_date_serialisation(registry: SpecRegistry) -> None:
    bill = registry.object("accounts-payable/bill")
    preparer = RequestPreparer(
        registry.operation(bill.create_operation_id or "").request_schema() or {},
        operation="create",
        object_name=bill.name,
    )
    prepared = preparer.prepare(
        {
            "billNumber": "B-1",
            "postingDate": dt.date(2024, 2, 29),
            "dueDate": dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.UTC),
            "createdDate": "2024-02-28",
            "vendor": {"id": "V1"},
            "lines": [{"txnAmount": decimal.Decimal("12.5")}, {"txnAmount": 3}],
        }
    )
    body = prepared.body
    assert body["postingDate"] == "2024-02-29"
    assert body["dueDate"] == "2024-03-01"
    assert [line["txnAmount"] for line in body["lines"]] == ["12.50", "3.00"]
    with pytest.raises(InvalidRecordError, match=r"lines\.0\.txnAmount|lines\[0\]\.txnAmount"):
        preparer.prepare({**body, "lines": [{"txnAmount": decimal.Decimal("1.005")}]})

    audit = RequestPreparer(
        {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}},
        operation="update",
    )
    local = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert audit.prepare({"at": local}).body == {"at": "2024-01-01T10:00:00Z"}


def test_chunks_are_deterministic(registry: SpecRegistry) -> None:
    engine = MutateEngine(registry, dry_run=True, batch_size=2000)
    assert engine.batch_size == 500
    first = [r.request for r in engine.mutate(VENDOR, vendors(1100), operation="create")]
    second = [r.request for r in engine.mutate(VENDOR, vendors(1100), operation="create")]
    assert first == second


def test_cli_mutate_prints_one_result_per_line(emulator: EmulatorServer, tmp_path: Path) -> None:
    emulator.reset()
    lines = [
        '{"id": "C1", "name": "one"}',
        "{not json",
        '{"id": "C2"}',
        '{"id": "C3", "name": "x"}',
    ]
    command = [
        str(Path(sys.executable).with_name("intacct")),
        "--base-url",
        emulator.base_url,
        "--client-id",
        "demo-client",
        "--username",
        "admin@DEMO",
        "--token-store",
        str(tmp_path / "tokens.json"),
        "mutate",
        "create-accounts-payable-vendor",
    ]
    env = {"INTACCT_CLIENT_SECRET": "demo-secret", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        command,
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["line"], r["status"], r["operation"]) for r in results] == [
        (1, "ok", "create"),
        (2, "error", "create"),
        (3, "error", "create"),
        (4, "ok", "create"),
    ]
    assert "line 2: malformed JSON" in results[1]["error"]
    assert "field 'name'" in results[2]["error"]
    assert done.returncode == 1
    assert "demo-secret" not in done.stdout + done.stderr
    assert emulator.requests()["POST /objects/accounts-payable/vendor"] == 1


def test_numeric_fields_accept_decimal_strings_exactly(registry: SpecRegistry) -> None:
    vendor = registry.object(VENDOR)
    preparer = MutateEngine(registry, dry_run=True).preparer(vendor, "create")
    big = "1234567890123456.78"  # beyond float precision
    body = preparer.prepare({"id": "N1", "name": "n", "creditLimit": big}).body
    assert body["creditLimit"] == decimal.Decimal(big)
    blank = preparer.prepare({"id": "N1", "name": "n", "creditLimit": "  "}).body
    assert "creditLimit" not in blank  # an empty cell is no value, not a bad number
    for bad in ("12,5x", "1_000", "NaN", "abc"):
        with pytest.raises(InvalidRecordError, match=r"field 'creditLimit': .* is not a number"):
            preparer.prepare({"id": "N1", "name": "n", "creditLimit": bad})
    integer = RequestPreparer(
        {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}}},
        operation="create",
    )
    assert integer.prepare({"n": "12", "x": " -0.50 "}).body == {
        "n": 12,
        "x": decimal.Decimal("-0.50"),
    }
    with pytest.raises(InvalidRecordError, match=r"field 'n': '1.5' is not an integer"):
        integer.prepare({"n": "1.5"})


def test_exact_amounts_on_the_wire(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    [result] = engine.mutate(VENDOR, [{"id": "W1", "name": "w", "creditLimit": "10.10"}])
    assert result.ok, result.error
    assert result.request == {"id": "W1", "name": "w", "creditLimit": decimal.Decimal("10.10")}
    stored = client.query(
        {"object": VENDOR, "fields": ["creditLimit"], "filters": [{"$eq": {"id": "W1"}}]}
    ).json()["ia::result"]
    assert float(stored[0]["creditLimit"]) == 10.1


@pytest.mark.parametrize("operation", ["create", "update"])
def test_compiled_normaliser_matches_the_generic_walk(
    registry: SpecRegistry, operation: str
) -> None:
    """The compiled fast paths must give exactly the generic walk's bodies and errors."""
    engine = MutateEngine(registry, dry_run=True)
    records: list[dict[str, Any]] = [
        {"id": "A", "name": "a", "key": "1", "href": "/x", "_sdc_deleted_at": None},
        {"id": "A", "name": None, "creditLimit": "0.00", "status": "active"},
        {"id": "A", "name": "a", "creditLimit": decimal.Decimal("1.5"), "isOnHold": True},
        {"id": "A", "name": "a", "creditLimit": True},
        {"id": "A", "name": "a", "creditLimit": "x"},
        {"id": "A", "name": 42},
        {"id": "A", "name": "a", "nsp::custom": {"d": dt.date(2024, 1, 2)}},
        {"id": "A", "name": "a", "favouriteColour": "blue"},
        {"id": "A", "contacts": {"default": {"mailingAddress": {"city": "c"}, "email1": "e"}}},
        {"id": "A", "contacts": {"default": {"href": "/only-read-only"}}},
        {"id": "A", "contacts": "not an object"},
        {"id": "A", "name": "x" * 20_000},
        {"id": "A", "name": "a", "totalDue": "10.5", "discountPercent": 3},
    ]
    for object_name in (VENDOR, "accounts-receivable/customer"):
        info = registry.object(object_name)
        preparer = engine.preparer(info, operation)
        for record in records:
            outcomes = []
            for prepare in (preparer.prepare, preparer.prepare_generic):
                try:
                    prepared = prepare(record)
                    outcomes.append((prepared.body, prepared.dropped_read_only))
                except InvalidRecordError as exc:
                    outcomes.append(str(exc))
            assert outcomes[0] == outcomes[1], (object_name, record)
    bill = registry.object("accounts-payable/bill")
    preparer = engine.preparer(bill, "update")
    line_record = {
        "billNumber": "B",
        "vendor": {"id": "V"},
        "postingDate": dt.date(2024, 1, 1),
        "dueDate": "2024-02-01",
        "createdDate": "2024-01-01",
        "lines": [{"txnAmount": "1.5", "glAccount": {"id": "1", "href": "/ro"}}, {"memo": None}],
    }
    assert preparer.prepare(line_record).body == preparer.prepare_generic(line_record).body


def test_a_key_with_a_comma_is_an_error_result_not_a_crash(registry: SpecRegistry) -> None:
    engine = MutateEngine(registry, dry_run=True)
    for operation in ("delete", "update"):
        [result] = engine.mutate(VENDOR, [{"key": "1,2", "name": "x"}], operation=operation)
        assert result.status == "error"
        assert "field 'key': '1,2' contains ','" in (result.error or "")
