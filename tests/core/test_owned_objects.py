"""Every owned object of the spec is written through its owner, and a dry run says exactly
what the real run does (issue 14).

The owner's back-reference (``bill`` on a bill line, ``arAdvance`` on an AR advance line) has
one home, :attr:`ObjectInfo.owner_property`, read by the Mutate engine, the target's sinks and
the emulator alike. Where a line's write goes is :func:`owner_route`: its owner's PATCH, its
owner's owner's PATCH when the owner is a line (journal-entry tax entries), a
``document::{documentName}`` path for documents, or, when Intacct has no update for the owner
(a deposit), only inside a new owner created with its lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_api.mutate import MutateEngine
from intacct_api.mutate_plan import owner_route
from intacct_api.settings import ConnectionSettings
from intacct_api.spec import ObjectInfo, SpecRegistry
from intacct_api.template import example_for
from intacct_emulator.testing import EmulatorServer
from tests.support.connection import demo_connection


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


def _schema_at(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    node = schema
    for part in path.split("."):
        props = node.get("properties") or {}
        if part not in props:
            return None
        node = props[part]
    return node


def minimal_record(registry: SpecRegistry, name: str) -> dict[str, Any]:
    """A record with its required members (spec examples), the owner reference left out."""
    info = registry.object(name)
    back_ref = info.owner_reference
    request = (
        registry.operation(info.create_operation_id).request_schema()
        if info.create_operation_id
        else info.record_schema()
    )
    record: dict[str, Any] = {}
    for path in info.required_on_create:
        if back_ref is not None and (path == back_ref or path.startswith(back_ref + ".")):
            continue
        schema = _schema_at(request, path) or _schema_at(info.record_schema(), path) or {}
        *parents, leaf = path.split(".")
        node = record
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = example_for(schema)
    return record


def line_record(registry: SpecRegistry, name: str, owner_key: str) -> dict[str, Any]:
    """A minimal line: its required members (spec examples) and its owner's key."""
    back_ref = registry.object(name).owner_reference
    assert back_ref is not None
    return {back_ref: {"key": owner_key}, **minimal_record(registry, name)}


def list_property(owner: ObjectInfo, owned: str) -> str:
    return next(prop for prop, name in owner.owned_lists.items() if name == owned)


def new_owner_with_line(registry: SpecRegistry, info: ObjectInfo) -> tuple[str, dict[str, Any]]:
    """The top-level record to create with ``info`` nested in it (two levels deep when its
    owner is a line too): (object, record)."""
    assert info.owner is not None
    owner = registry.object(info.owner)
    nested: dict[str, Any] = {
        list_property(owner, info.name): [minimal_record(registry, info.name)]
    }
    if owner.owner is None:
        return owner.name, {**minimal_record(registry, owner.name), **nested}
    top = registry.object(owner.owner)
    element = {**minimal_record(registry, owner.name), **nested}
    return top.name, {
        **minimal_record(registry, top.name),
        list_property(top, owner.name): [element],
    }


def latest_key(client: IntacctClient, name: str) -> str:
    query = {"object": name, "fields": ["key"], "orderBy": [{"key": "desc"}], "size": 1}
    return str(client.query(query).json()["ia::result"][0]["key"])


def lines_in(emulator: EmulatorServer, path: list[tuple[str, str, str]]) -> int:
    """How many lines the rendered record holds at ``path``: (object, key, list member) from
    the top record down; a key of ``""`` means the last element of the list."""
    (top, key, prop), *deeper = path
    elements = emulator.company.record(top, key).get(prop) or []
    for _, inner_key, inner_prop in deeper:
        element = next((e for e in elements if str(e.get("key")) == inner_key), {})
        elements = element.get(inner_prop) or []
    return len(elements)


def test_every_owned_object_is_written_through_its_owner(
    emulator: EmulatorServer, tmp_path: Path, registry: SpecRegistry
) -> None:
    emulator.reset()
    settings = ConnectionSettings.from_config(demo_connection(emulator.base_url, tmp_path))
    owned = sorted(info.name for info in registry.objects.values() if info.owner)
    written: list[str] = []
    # the owner's list is read-only in its every write, or the owner has no write at all
    not_writable: list[str] = []
    failures: list[tuple[str, Any, Any]] = []
    with IntacctClient(settings) as client:
        dry, real = MutateEngine(registry, dry_run=True), MutateEngine(registry, client)

        def both(name: str, record: dict[str, Any]) -> tuple[Any, Any]:
            (planned,) = dry.mutate(name, [record], operation="create")
            (sent,) = real.mutate(name, [record], operation="create")
            return planned, sent

        for name in owned:
            info = registry.object(name)
            owner = registry.object(info.owner or "")
            route = owner_route(registry, info)
            if isinstance(route, str) and "cannot be written" in route:  # no write at all
                planned, sent = both(name, line_record(registry, name, "1"))
                assert not sent.ok, name
                assert planned.error == sent.error, name
                assert "cannot be written" in (sent.error or ""), sent.error
                not_writable.append(name)
                continue
            if isinstance(route, str):  # no endpoint: only inside a new top-level record
                planned, sent = both(name, line_record(registry, name, "1"))
                assert not planned.ok, name
                assert not sent.ok, name
                assert planned.error == sent.error, name
                assert "can only be written inside a new" in (sent.error or ""), sent.error
                top, record = new_owner_with_line(registry, info)
                planned, sent = both(top, record)
                if not (planned.ok and sent.ok):
                    failures.append((name, planned.error, sent.error))
                    continue
                if owner.owner is None:
                    path = [(top, str(sent.key), list_property(owner, name))]
                else:  # two levels: the new owner line holds the line
                    via_prop = list_property(registry.object(top), owner.name)
                    inner = emulator.company.record(top, str(sent.key))[via_prop][0]["key"]
                    path = [
                        (top, str(sent.key), via_prop),
                        (owner.name, str(inner), list_property(owner, name)),
                    ]
                assert lines_in(emulator, path) == 1, (name, path)
                written.append(name)
                continue
            if route.via is not None:  # the owner is a line of the record PATCHed
                emulator.company.seed_object(route.target, 1)
                top_key = latest_key(client, route.target)
                planned, sent = both(owner.name, line_record(registry, owner.name, top_key))
                assert planned.ok, (owner.name, planned.error)
                assert sent.ok, (owner.name, sent.error)
                owner_key = latest_key(client, owner.name)
                path = [
                    (
                        owner.owner or "",
                        top_key,
                        list_property(registry.object(route.target), owner.name),
                    ),
                    (owner.name, owner_key, list_property(owner, name)),
                ]
            else:
                emulator.company.seed_object(owner.name, 1)  # the owner the line belongs to
                owner_key = latest_key(client, owner.name)
                path = [(owner.name, owner_key, list_property(owner, name))]
            before = lines_in(emulator, path)
            planned, sent = both(name, line_record(registry, name, owner_key))
            if not (planned.ok and sent.ok):
                failures.append((name, planned.error, sent.error))
                continue
            assert lines_in(emulator, path) == before + 1, (name, path)
            written.append(name)
    assert not failures
    assert "accounts-receivable/advance-line" in written
    assert "accounts-payable/advance-line" in written
    assert "general-ledger/journal-entry-tax-entry" in written
    assert "accounts-receivable/dunning-invoice" in written
    assert "order-entry/document-line-detail" in written
    assert sorted(not_writable) == [
        "cash-management/bank-file-detail",  # bank-file: no create, no update
        "cash-management/bank-reconciliation-record",  # list read-only
        "cash-management/credit-card-reconciliation-record",  # list read-only
        "cash-management/provider-payment-method",  # payment-provider: no create, no update
        "company-config/role-user-group-map",  # list read-only
        "company-config/role-user-map",  # list read-only
        "expenses/expense-to-approve-line",  # expense-to-approve: no create, no update
        "fixed-assets/depreciation-schedule-entry",  # depreciation-schedule: neither
        "fixed-assets/disposal-depreciation-schedule-map",  # disposal: neither
        "inventory-control/replenishment-run-line",  # replenishment-run: neither
        "inventory-control/supplies-document-detail",  # supplies-document: neither
    ]
    assert len(written) == len(owned) - len(not_writable) == 184
