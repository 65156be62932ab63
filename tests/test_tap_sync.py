"""tap-intacct against a seeded emulator: discovery, full/incremental syncs, deletes, entities,
faults, and the private SDK fast path. The tap runs both as a subprocess (the real CLI) and
in-process (to reach into the emulator between pages)."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import io
import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from singer_sdk import Stream
from singer_sdk.helpers import _catalog

from intacct_api.client import IntacctClient
from intacct_api.records import field_paths
from intacct_api.spec import default_registry
from intacct_emulator.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USERNAME
from intacct_emulator.testing import EmulatorServer
from tap_intacct.columns import SYNTHETIC_COLUMNS
from tap_intacct.streams import IntacctStream
from tap_intacct.tap import TapIntacct

CUSTOMER = "accounts-receivable/customer"
VENDOR = "accounts-payable/vendor"
CONTACT = "company-config/contact"
COUNTS = {CUSTOMER: 700, VENDOR: 260, CONTACT: 130}
STREAM = {CUSTOMER: "accounts_receivable__customer", VENDOR: "accounts_payable__vendor",
          CONTACT: "company_config__contact"}  # fmt: skip
PAGE = 250
TAP = str(Path(sys.executable).with_name("tap-intacct"))


def seeded() -> EmulatorServer:
    server = EmulatorServer().start()
    server.company.seed(1, 5, objects=["company-config/entity"])
    for name, count in COUNTS.items():
        server.company.seed_object(name, count, 11)
    return server


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = seeded()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh() -> Iterator[EmulatorServer]:
    """An emulator of its own for tests that change data."""
    server = seeded()
    try:
        yield server
    finally:
        server.stop()


def make_config(server: EmulatorServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": server.base_url,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "username": DEFAULT_USERNAME,
        "token_store": str(tmp_path / "tokens.json"),
        "objects": list(COUNTS),
        "page_size": PAGE,
        "max_retries": 8,
        "include_private": True,  # the top level sees every record, private ones included
        **extra,
    }


def run_in_process(
    config: dict[str, Any], state: dict | None = None, catalog: dict | None = None
) -> list[dict[str, Any]]:
    tap = TapIntacct(config=config, state=state, catalog=catalog)
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out):
            tap.sync_all()
            out.flush()
    finally:
        tap.close()
    return [json.loads(line) for line in raw.getvalue().splitlines()]


def run_cli(tmp_path: Path, config: dict, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [TAP, "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def records(messages: list[dict], stream: str) -> list[dict[str, Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]


def final_state(messages: list[dict]) -> dict[str, Any]:
    return [m for m in messages if m["type"] == "STATE"][-1]["value"]


def query_calls(server: EmulatorServer) -> int:
    return server.requests().get("POST /services/core/query", 0)


def dig(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def assert_matches_emulator(server: EmulatorServer, name: str, emitted: list[dict]) -> None:
    schema = default_registry().object(name).record_schema()
    paths = field_paths(schema)
    for record in emitted:
        truth = server.company.record(name, record["key"])
        for path in paths:
            assert dig(record, path) == dig(truth, path), (name, record["key"], path)
        assert set(record) - SYNTHETIC_COLUMNS <= set(schema["properties"])


# -- discovery ----------------------------------------------------------------------------------


def test_discover_lists_every_queryable_object(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = make_config(emulator, tmp_path)
    del config["objects"]
    result = run_cli(tmp_path, config, "--discover")
    assert result.returncode == 0, result.stderr
    catalog = json.loads(result.stdout)
    streams = {s["tap_stream_id"]: s for s in catalog["streams"]}
    registry = default_registry()
    assert set(streams) == {o.stream for o in registry.queryable_objects()}
    for info in registry.queryable_objects():
        entry = streams[info.stream]
        assert entry["schema"]["properties"]
        assert entry["key_properties"] == ["key"]
        expected_key = "_modified_at" if info.has_modified_timestamp else None
        assert entry.get("replication_key") == expected_key
    assert query_calls(emulator) == 0  # the spec schema needs no network


def test_model_discovery_refused_object_is_one_warning(
    emulator: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        emulator, tmp_path, schema_source="model", objects=[CUSTOMER, "no-such/obj*", VENDOR]
    )
    emulator.set_faults(fail_next=[403])
    tap = TapIntacct(config=config)
    try:
        names = sorted(tap.streams)
    finally:
        tap.close()
        emulator.reset(data=False, tokens=False)
    assert len(names) == 1  # one of the two objects was refused, the run goes on
    refused = {CUSTOMER, VENDOR} - {default_registry().object(n).name for n in names}
    warnings = [r.getMessage() for r in caplog.records if "refused this object" in r.getMessage()]
    assert len(warnings) == 1
    assert refused.pop() in warnings[0]


# -- full sync ----------------------------------------------------------------------------------


def test_full_sync_subprocess_emits_exactly_the_emulators_records(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    emulator.reset(data=False, tokens=False)
    result = run_cli(tmp_path, make_config(emulator, tmp_path))
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    for name, count in COUNTS.items():
        emitted = records(messages, STREAM[name])
        assert len(emitted) == count
        assert len({r["key"] for r in emitted}) == count
        assert_matches_emulator(emulator, name, emitted)
    assert query_calls(emulator) == sum(math.ceil(n / PAGE) for n in COUNTS.values())
    assert "Summary for 'accounts_receivable__customer'" in result.stderr
    assert DEFAULT_CLIENT_SECRET not in result.stdout + result.stderr
    state = final_state(messages)["bookmarks"]
    customers = records(messages, STREAM[CUSTOMER])
    assert state[STREAM[CUSTOMER]]["replication_key_value"] == customers[-1]["_modified_at"]
    assert "replication_key" not in state.get(STREAM[CONTACT], {})  # full table


def test_only_selected_fields_are_requested_and_emitted(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Also guards the private fast path that skips the SDK's deselect walk."""
    params = list(inspect.signature(Stream._generate_record_messages).parameters)
    assert params == ["self", "record"]  # the SDK method we override still has this shape
    assert callable(_catalog.pop_deselected_record_properties)  # ...and what we skip exists
    assert "_generate_record_messages" in IntacctStream.__dict__

    config = make_config(emulator, tmp_path, objects=[CUSTOMER])
    tap = TapIntacct(config=config)
    catalog = tap.catalog_dict
    tap.close()
    entry = catalog["streams"][0]
    for md in entry["metadata"]:
        crumb = tuple(md["breadcrumb"])
        if crumb == () or crumb in {("properties", "name"), ("properties", "audit")}:
            md["metadata"]["selected"] = True
        elif len(crumb) == 2:
            md["metadata"]["selected"] = False
    messages = run_in_process(config, catalog=catalog)
    emitted = records(messages, STREAM[CUSTOMER])
    assert len(emitted) == COUNTS[CUSTOMER]
    assert {tuple(sorted(r)) for r in emitted} == {("_modified_at", "audit", "key", "name")}
    assert emitted[0]["audit"]["modifiedDateTime"] == emitted[0]["_modified_at"]


# -- incremental --------------------------------------------------------------------------------


def test_incremental_rerun_emits_only_changes_plus_lookback(
    fresh: EmulatorServer, tmp_path: Path
) -> None:
    config = make_config(fresh, tmp_path, objects=[CUSTOMER], lookback_minutes=5)
    first = run_in_process(config)
    state = final_state(first)
    bookmark = state["bookmarks"][STREAM[CUSTOMER]]["replication_key_value"]

    company = fresh.company
    for key in ("3", "150", "600"):
        company.touch(CUSTOMER, key, name=f"changed {key}")
    exact = "98765432109876543210.99"  # more digits than a float can hold
    company.touch(CUSTOMER, "600", totalDue=exact)
    new_key = company.insert(CUSTOMER, {"id": "NEW-1", "name": "brand new"})["key"]
    fresh.reset(data=False, tokens=False)

    second = run_in_process(config, state=state)
    emitted = {r["key"]: r for r in records(second, STREAM[CUSTOMER])}
    floor = dt.datetime.fromisoformat(bookmark) - dt.timedelta(minutes=5)
    expected = {
        str(r["key"])
        for r in records(first, STREAM[CUSTOMER])
        if dt.datetime.fromisoformat(r["_modified_at"]) >= floor
    } | {"3", "150", "600", new_key}
    assert set(emitted) == expected
    assert emitted["150"]["name"] == "changed 150"
    assert emitted["600"]["totalDue"] == exact  # amounts stay exact decimal strings
    assert query_calls(fresh) == 1, fresh.stats()
    new_bookmark = final_state(second)["bookmarks"][STREAM[CUSTOMER]]["replication_key_value"]
    assert new_bookmark > bookmark


def test_start_date_limits_the_first_run(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = make_config(emulator, tmp_path, objects=[VENDOR], start_date="2025-07-01T00:00:00Z")
    emitted = records(run_in_process(config), STREAM[VENDOR])
    assert 0 < len(emitted) < COUNTS[VENDOR]
    assert all(r["_modified_at"] >= "2025-07-01" for r in emitted)


# -- deletes ------------------------------------------------------------------------------------


def test_keyscan_deletes_arrive_on_the_main_stream(fresh: EmulatorServer, tmp_path: Path) -> None:
    config = make_config(fresh, tmp_path, objects=[CUSTOMER], deletes="keyscan")
    first = run_in_process(config)
    state = final_state(first)
    stored = state["bookmarks"][STREAM[CUSTOMER]]["keyscan"]
    assert stored == {"ranges": f"1-{COUNTS[CUSTOMER]}", "count": COUNTS[CUSTOMER]}
    assert query_calls(fresh) == math.ceil(COUNTS[CUSTOMER] / PAGE)  # full read: no extra scan

    status, _ = fresh.company.delete(CUSTOMER, ["10", "11", "500"], entity=None, transaction=True)
    assert status in (200, 204)
    fresh.company.touch(CUSTOMER, "20", name="still here")
    fresh.reset(data=False, tokens=False)

    second = run_in_process(config, state=state)
    emitted = records(second, STREAM[CUSTOMER])
    deleted = [r for r in emitted if r.get("_sdc_deleted_at")]
    assert sorted(r["key"] for r in deleted) == ["10", "11", "500"]
    assert all(set(r) >= {"key", "_sdc_deleted_at", "_modified_at"} for r in deleted)
    assert any(r["key"] == "20" and r["_sdc_deleted_at"] is None for r in emitted)
    # incremental read (1 call) + key scan of the remaining 697 keys (1 call at 4000 a page)
    assert query_calls(fresh) == 2
    after = final_state(second)["bookmarks"][STREAM[CUSTOMER]]["keyscan"]
    assert after["count"] == COUNTS[CUSTOMER] - 3


def test_audit_deletes_refused_is_said_clearly(
    emulator: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(
        refuse_query_fields={"company-config/audit-history": ["changeSource.accessDateTime"]}
    )
    try:
        config = make_config(emulator, tmp_path, objects=[VENDOR, CUSTOMER], deletes="audit")
        messages = run_in_process(config)
    finally:
        emulator.reset(data=False, tokens=False)
    assert len(records(messages, STREAM[VENDOR])) == COUNTS[VENDOR]
    said = [r.getMessage() for r in caplog.records if "NOT being detected" in r.getMessage()]
    assert len(said) == 1  # once per run, not once per stream
    assert "audit-history" in said[0]


# -- entities -----------------------------------------------------------------------------------


def test_all_entities_each_get_a_partition_and_state(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = make_config(emulator, tmp_path, objects=[CUSTOMER], entities="all")
    messages = run_in_process(config)
    emitted = records(messages, STREAM[CUSTOMER])
    per_entity = Counter(r["_entity"] for r in emitted)
    assert set(per_entity) == {"E100", "E200", "E300"}
    partitions = final_state(messages)["bookmarks"][STREAM[CUSTOMER]]["partitions"]
    assert sorted(p["context"]["_entity"] for p in partitions) == ["E100", "E200", "E300"]
    assert all(p["replication_key_value"] for p in partitions)
    # an entity sees the shared records plus its own private ones, never another's
    top_config = make_config(emulator, tmp_path, objects=[CUSTOMER], include_private=False)
    top_level = len(records(run_in_process(top_config), STREAM[CUSTOMER]))
    for entity, count in per_entity.items():
        assert top_level <= count < COUNTS[CUSTOMER], entity
    assert sum(per_entity.values()) - 3 * top_level == COUNTS[CUSTOMER] - top_level


# -- faults -------------------------------------------------------------------------------------


def test_faults_mid_stream_yield_the_same_records(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(emulator, tmp_path, objects=[CUSTOMER])
    clean = records(run_in_process(config), STREAM[CUSTOMER])

    emulator.set_faults(retry_after_seconds=0.01)
    original = IntacctClient.query
    calls = {"n": 0}

    def query_with_faults(self: IntacctClient, body: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # after the first page: 429, 503, dropped connection, dead token
            emulator.set_faults(fail_next=[429, 503], drop_next=1, expire_tokens_now=True)
        return original(self, body, **kwargs)

    monkeypatch.setattr(IntacctClient, "query", query_with_faults)
    monkeypatch.setattr("intacct_api.retry.RetryPolicy.pause", lambda self, wait: None)
    try:
        faulty = records(run_in_process(config), STREAM[CUSTOMER])
        responses = emulator.stats()["responses"]
    finally:
        emulator.reset(data=False, tokens=False)
    assert faulty == clean
    assert responses.get("429") == 1
    assert responses.get("503") == 1
    assert responses.get("401") == 1
