"""Every owned object of the spec is written through its owner, or refused before sending with
the reason, and a dry run says exactly what the real run does (issue 14).

The owner's back-reference (``bill`` on a bill line, ``arAdvance`` on an AR advance line) has
one home, :attr:`ObjectInfo.owner_property`, read by the Mutate engine, the target's sinks and
the emulator alike; before, four copies disagreed on 11 objects and an advance line could not
be written either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_api.mutate import MutateEngine
from intacct_api.settings import ConnectionSettings
from intacct_api.spec import SpecRegistry
from intacct_api.template import example_for
from intacct_emulator.testing import EmulatorServer

REFUSALS = (
    "can only be written inside a new",  # the owner has no update operation
    "itself written through",  # the owner is a line of another object
    "as well as its key",  # the owner's path needs documentName
    "field 'id': is required on create",  # the spec requires a member it marks read-only
)


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


def line_record(registry: SpecRegistry, name: str, owner_key: str) -> dict[str, Any]:
    """A minimal line: its required members (spec examples) and its owner's key."""
    info = registry.object(name)
    back_ref = info.owner_reference
    assert back_ref is not None
    request = (
        registry.operation(info.create_operation_id).request_schema()
        if info.create_operation_id
        else info.record_schema()
    )
    record: dict[str, Any] = {back_ref: {"key": owner_key}}
    for path in info.required_on_create:
        if path == back_ref or path.startswith(back_ref + "."):
            continue
        schema = _schema_at(request, path) or _schema_at(info.record_schema(), path) or {}
        *parents, leaf = path.split(".")
        node = record
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = example_for(schema)
    return record


def test_every_owned_object_is_written_through_its_owner_or_refused_alike(
    emulator: EmulatorServer, tmp_path: Path, registry: SpecRegistry
) -> None:
    emulator.reset()
    settings = ConnectionSettings.from_config(
        {
            "base_url": emulator.base_url,
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "username": "admin@DEMO",
            "token_store": str(tmp_path / "tokens.json"),
        }
    )
    owned = sorted(info.name for info in registry.objects.values() if info.owner)
    written, refused, disagreements = [], [], []
    with IntacctClient(settings) as client:
        dry, real = MutateEngine(registry, dry_run=True), MutateEngine(registry, client)
        for name in owned:
            owner = registry.object(name).owner
            assert owner is not None
            emulator.company.seed_object(owner, 1)  # the owner record the line belongs to
            query = {"object": owner, "fields": ["key"], "orderBy": [{"key": "desc"}], "size": 1}
            owner_key = str(client.query(query).json()["ia::result"][0]["key"])
            record = line_record(registry, name, owner_key)
            (planned,) = dry.mutate(name, [record], operation="create")
            (sent,) = real.mutate(name, [record], operation="create")
            if planned.status != sent.status:
                disagreements.append((name, planned.error, sent.error))
            elif sent.ok:
                written.append(name)
            else:
                assert sent.error is not None
                assert any(reason in sent.error for reason in REFUSALS), (name, sent.error)
                assert not writes_reached(emulator, name), name  # refused before sending
                refused.append(name)
    assert not disagreements
    assert "accounts-receivable/advance-line" in written
    assert "accounts-payable/advance-line" in written
    assert "accounts-payable/bill-line" in written
    assert len(written) >= 140, (len(written), refused)
    assert len(written) + len(refused) == len(owned)


def writes_reached(emulator: EmulatorServer, name: str) -> bool:
    """Whether a write request for ``name`` itself reached the emulator."""
    return any(
        what.startswith(("POST", "PATCH")) and f"/objects/{name}" in what
        for what in emulator.requests()
    )
