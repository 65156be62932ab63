"""tap-intacct against a seeded emulator: discovery, full/incremental syncs, deletes, entities,
faults, and the private SDK fast path. The tap runs both as a subprocess (the real CLI) and
in-process (to reach into the emulator between pages)."""

from __future__ import annotations

import datetime as dt
import inspect
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
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers import _catalog
from singer_sdk.helpers import _state as singer_state
from singer_sdk.helpers._state import StateWriter
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage

from intacct_api.client import IntacctClient
from intacct_api.decimals import to_warehouse_schema
from intacct_api.records import field_paths
from intacct_api.scalars import CONVERTERS, field_kinds
from intacct_api.spec import default_registry
from intacct_emulator.config import DEFAULT_CLIENT_SECRET
from intacct_emulator.testing import EmulatorServer
from tap_intacct.columns import SYNTHETIC_COLUMNS
from tap_intacct.sdk_overrides import StreamOverrides
from tap_intacct.streams import IntacctStream
from tap_intacct.tap import TapIntacct
from tap_intacct.writer import RecordBufferedWriter
from tests.support.connection import demo_connection
from tests.support.tap_runs import capture, seeded_emulator, sync_messages

CUSTOMER = "accounts-receivable/customer"
VENDOR = "accounts-payable/vendor"
CONTACT = "company-config/contact"
COUNTS = {CUSTOMER: 700, VENDOR: 260, CONTACT: 130}
STREAM = {CUSTOMER: "accounts_receivable__customer", VENDOR: "accounts_payable__vendor",
          CONTACT: "company_config__contact"}  # fmt: skip
PAGE = 250
TAP = str(Path(sys.executable).with_name("tap-intacct"))


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with seeded_emulator(COUNTS) as server:
        yield server


@pytest.fixture
def fresh() -> Iterator[EmulatorServer]:
    """An emulator of its own for tests that change data."""
    with seeded_emulator(COUNTS) as server:
        yield server


def make_config(server: EmulatorServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **demo_connection(server.base_url, tmp_path),
        "objects": list(COUNTS),
        "page_size": PAGE,
        "max_retries": 8,
        "include_private": True,  # the top level sees every record, private ones included
        **extra,
    }


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
    # values go out as the advertised schema types them (amounts as exact decimal text...)
    kinds = field_kinds(to_warehouse_schema(schema))
    for record in emitted:
        truth = server.company.record(name, record["key"])
        for path in paths:
            expected = dig(truth, path)
            if path in kinds:
                expected = CONVERTERS[kinds[path]](expected)
            assert dig(record, path) == expected, (name, record["key"], path)
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


def test_the_private_sdk_methods_we_override_keep_their_shape() -> None:
    """An SDK upgrade that renames, reshapes or stops calling these fails here, loudly."""
    pinned = {
        "_generate_record_messages": ["self", "record"],
        "_write_record_message": ["self", "record"],
        "_process_record": ["self", "record", "child_context", "partition_context"],
        "_increment_stream_state": ["self", "latest_record", "context"],
    }
    for name, params in pinned.items():
        assert list(inspect.signature(getattr(Stream, name)).parameters) == params, name
        assert name in StreamOverrides.__dict__, name
    assert callable(_catalog.pop_deselected_record_properties)  # what we skip exists
    # ...and the per-record loop still calls them the way the overrides expect
    loop = inspect.getsource(Stream._sync_records)
    assert "self._process_record(" in loop
    assert "self._write_record_message(record)" in loop
    assert "self._increment_stream_state(record, context=current_context)" in loop
    assert "self._generate_record_messages(record)" in inspect.getsource(
        Stream._write_record_message
    )
    assert "self.state_manager.is_flushed = False" in inspect.getsource(
        Stream._write_record_message
    )
    increment = inspect.getsource(singer_state.increment_state)
    assert 'progress_dict["replication_key_value"] = new_rk_value' in increment
    assert "not check_sorted" in increment


def _without_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's own per-record path and writer (what the fast paths must reproduce)."""
    for name in ("_write_record_message", "_process_record", "_increment_stream_state"):
        monkeypatch.setattr(IntacctStream, name, getattr(Stream, name))
    monkeypatch.setattr(TapIntacct, "message_writer_class", MsgSpecWriter)


def _comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        copy = dict(message)
        assert copy.pop("time_extracted", "x") is not None
        out.append(copy)
    return out


def test_fast_paths_emit_what_the_sdk_would(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records, partitions, full-table and incremental streams, mid-stream STATE messages:
    the same messages in the same order with and without our private-API fast paths."""
    monkeypatch.setattr(IntacctStream, "STATE_MSG_FREQUENCY", 97)
    config = make_config(emulator, tmp_path, entities=["E100", "E200"])
    framed = Counter[str]()
    original = RecordBufferedWriter.write_record

    def counting(self: RecordBufferedWriter, head: bytes, record: Any, tail: bytes) -> None:
        framed["records"] += 1
        original(self, head, record, tail)

    with monkeypatch.context() as patched:
        patched.setattr(RecordBufferedWriter, "write_record", counting)
        fast = sync_messages(config)
    assert framed["records"] == len([m for m in fast if m["type"] == "RECORD"])  # fast path ran
    with monkeypatch.context() as patched:
        _without_fast_paths(patched)
        stock = sync_messages(config)
    assert _comparable(fast) == _comparable(stock)
    states = [m for m in fast if m["type"] == "STATE"]
    assert len(states) > len(COUNTS) * 2  # mid-stream states were compared too
    assert {m["type"] for m in fast} == {"SCHEMA", "RECORD", "STATE"}


def test_record_lines_are_byte_identical_to_the_sdk_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer = RecordBufferedWriter()
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    record = {"key": "1", "totalDue": "12.30", "audit": {"by": '\u00e9\n"q"'}, "n": None}
    for stream, version, extracted in [
        ("accounts_receivable__customer", None, moment),
        ('we"ird\\name', 1764000000, moment),
        ("s", 7, None),
        ("s", None, None),
    ]:
        head, tail = writer.record_frame(stream, version, extracted)
        message = RecordMessage(stream=stream, record=record, version=version,
                                time_extracted=extracted)  # fmt: skip
        expected = bytes(MsgSpecWriter().format_message(message))
        out = _Stdout()
        monkeypatch.setattr(sys, "stdout", out)
        writer.write_record(head, record, tail)
        writer.flush()
        assert b"".join(data for _, data in out.events) == expected


class _Stdout:
    """A stdout double that logs each write to the binary layer and each flush."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.buffer = self

    def write(self, data: bytes) -> int:
        self.events.append(("write", bytes(data)))
        return len(data)

    def flush(self) -> None:
        self.events.append(("flush", b""))


def test_writer_holds_records_until_a_non_record_message_or_a_full_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    writer = RecordBufferedWriter()
    writer.buffer_size = 1000
    head, tail = writer.record_frame("s", None, None)
    writer.write_message(SchemaMessage("s", {"type": "object"}, ["key"]))
    assert [kind for kind, _ in out.events] == ["write", "flush"]
    for i in range(5):
        writer.write_record(head, {"key": str(i), "pad": "x" * 90}, tail)
    assert len(out.events) == 2  # five ~120-byte records stay in our buffer
    writer.write_message(RecordMessage(stream="s", record={"key": "5", "pad": "x" * 90}))
    assert len(out.events) == 2  # a RECORD through the SDK's entry point is held back too
    writer.write_message(StateMessage({"bookmarks": {"s": {"replication_key_value": "5"}}}))
    assert [kind for kind, _ in out.events] == ["write", "flush", "write", "flush"]
    lines = out.events[2][1].splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["RECORD"] * 6 + ["STATE"]
    assert [json.loads(line)["record"]["key"] for line in lines[:6]] == list("012345")
    for i in range(12):  # past buffer_size: written without waiting for a STATE
        writer.write_record(head, {"key": str(i), "pad": "x" * 90}, tail)
    assert out.events[4][0] == "write"
    assert out.events[-1][0] == "write"
    writer.flush()
    written = b"".join(data for kind, data in out.events[4:])
    assert [json.loads(line)["record"]["key"] for line in written.splitlines()] == [
        str(i) for i in range(12)
    ]

    class Unencodable:
        def __str__(self) -> str:
            raise ValueError("no text for this")

    with pytest.raises(ValueError, match="no text"):
        writer.write_record(head, {"key": "13", "bad": Unencodable()}, tail)
    writer.flush()
    assert out.events[-2:] == [("flush", b"")] * 2  # a failed encoding leaves nothing behind


def test_records_reach_stdout_even_when_no_state_follows_them(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK skips a STATE that did not change; the end of a read flushes anyway."""
    monkeypatch.setattr(StateWriter, "write_state", lambda self, state: None)
    config = make_config(emulator, tmp_path, objects=[CONTACT, CUSTOMER])
    messages = sync_messages(config)
    assert [m["type"] for m in messages if m["type"] == "STATE"] == []
    for name in (CONTACT, CUSTOMER):
        assert len(records(messages, STREAM[name])) == COUNTS[name]


def test_record_limit_stops_the_read_without_leaving_a_thread(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The SDK's dry run (``--test``) aborts each stream after one record."""
    import threading

    emulator.reset(data=False, tokens=False)
    tap = TapIntacct(config=make_config(emulator, tmp_path))
    messages, _ = capture(tap, lambda: tap.run_sync_dry_run(dry_run_record_limit=1))
    assert not [t for t in threading.enumerate() if t.name.startswith("intacct-prefetch")]
    for name in COUNTS:
        assert len(records(messages, STREAM[name])) == 1
    assert query_calls(emulator) <= 2 * len(COUNTS)  # the first page, at most one prefetched


def test_only_selected_fields_are_requested_and_emitted(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Also guards the private fast path that skips the SDK's deselect walk (pinned above)."""

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
    messages = sync_messages(config, catalog=catalog)
    emitted = records(messages, STREAM[CUSTOMER])
    assert len(emitted) == COUNTS[CUSTOMER]
    assert {tuple(sorted(r)) for r in emitted} == {("_modified_at", "audit", "key", "name")}
    assert emitted[0]["audit"]["modifiedDateTime"] == emitted[0]["_modified_at"]


# -- incremental --------------------------------------------------------------------------------


def test_incremental_rerun_emits_only_changes_plus_lookback(
    fresh: EmulatorServer, tmp_path: Path
) -> None:
    config = make_config(fresh, tmp_path, objects=[CUSTOMER], lookback_minutes=5)
    first = sync_messages(config)
    state = final_state(first)
    bookmark = state["bookmarks"][STREAM[CUSTOMER]]["replication_key_value"]

    company = fresh.company
    for key in ("3", "150", "600"):
        company.touch(CUSTOMER, key, name=f"changed {key}")
    exact = "98765432109876543210.99"  # more digits than a float can hold
    company.touch(CUSTOMER, "600", totalDue=exact)
    new_key = company.insert(CUSTOMER, {"id": "NEW-1", "name": "brand new"})["key"]
    fresh.reset(data=False, tokens=False)

    second = sync_messages(config, state=state)
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
    emitted = records(sync_messages(config), STREAM[VENDOR])
    assert 0 < len(emitted) < COUNTS[VENDOR]
    assert all(r["_modified_at"] >= "2025-07-01" for r in emitted)


# -- deletes ------------------------------------------------------------------------------------


def test_keyscan_deletes_arrive_on_the_main_stream(fresh: EmulatorServer, tmp_path: Path) -> None:
    config = make_config(fresh, tmp_path, objects=[CUSTOMER], deletes="keyscan")
    first = sync_messages(config)
    state = final_state(first)
    stored = state["bookmarks"][STREAM[CUSTOMER]]["keyscan"]
    assert stored == {"ranges": f"1-{COUNTS[CUSTOMER]}", "count": COUNTS[CUSTOMER]}
    assert query_calls(fresh) == math.ceil(COUNTS[CUSTOMER] / PAGE)  # full read: no extra scan

    status, _ = fresh.company.delete(CUSTOMER, ["10", "11", "500"], entity=None, transaction=True)
    assert status in (200, 204)
    fresh.company.touch(CUSTOMER, "20", name="still here")
    fresh.reset(data=False, tokens=False)

    second = sync_messages(config, state=state)
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
        messages = sync_messages(config)
    finally:
        emulator.reset(data=False, tokens=False)
    assert len(records(messages, STREAM[VENDOR])) == COUNTS[VENDOR]
    said = [r.getMessage() for r in caplog.records if "NOT being detected" in r.getMessage()]
    assert len(said) == 1  # once per run, not once per stream
    assert "audit-history" in said[0]


# -- entities -----------------------------------------------------------------------------------


def test_all_entities_each_get_a_partition_and_each_record_appears_once(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A shared record appears once, owned by the top level (``_entity`` null); a record
    private to an entity appears once, with that entity (issue 13: shared vendors were
    repeated once per entity)."""
    config = make_config(emulator, tmp_path, objects=[CUSTOMER], entities="all")
    messages = sync_messages(config)
    emitted = records(messages, STREAM[CUSTOMER])
    keys = [r["key"] for r in emitted]
    assert len(keys) == len(set(keys)) == COUNTS[CUSTOMER]  # every customer, each once
    partitions = final_state(messages)["bookmarks"][STREAM[CUSTOMER]]["partitions"]
    assert sorted(p["context"]["_entity"] for p in partitions) == ["E100", "E200", "E300"]
    assert all(p["replication_key_value"] for p in partitions)
    # the owner each record is emitted with is the one the emulator holds
    rows = emulator.company.query(
        {
            "object": CUSTOMER,
            "fields": ["key", "entity.id"],
            "size": 4000,
            "filterParameters": {"includePrivate": True},
        },
        entity=None,
    )["ia::result"]
    owner = {str(r["key"]): r.get("entity.id") for r in rows}
    assert {r["key"]: r["_entity"] for r in emitted} == owner
    per_entity = Counter(r["_entity"] for r in emitted)
    assert per_entity[None] > 0
    assert {"E100", "E200", "E300"} & set(per_entity)  # the seed has private customers


# -- faults -------------------------------------------------------------------------------------


def test_faults_mid_stream_yield_the_same_records(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(emulator, tmp_path, objects=[CUSTOMER])
    clean = records(sync_messages(config), STREAM[CUSTOMER])

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
        faulty = records(sync_messages(config), STREAM[CUSTOMER])
        responses = emulator.stats()["responses"]
    finally:
        emulator.reset(data=False, tokens=False)
    assert faulty == clean
    assert responses.get("429") == 1
    assert responses.get("503") == 1
    assert responses.get("401") == 1


def test_an_object_without_an_entity_member_loses_no_record_across_entities(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Departments have no ``entity`` member, so a row cannot say which entity owns it: each
    partition emits what it reads (with its entity), and no department is lost, private ones
    included (an earlier version requested an empty field name and failed the stream)."""
    department = "company-config/department"
    emulator.company.seed_object(department, 25)
    config = make_config(emulator, tmp_path, objects=[department], entities="all")
    messages = sync_messages(config)
    emitted = records(messages, "company_config__department")
    every = emulator.company.query(
        {
            "object": department,
            "fields": ["key"],
            "size": 4000,
            "filterParameters": {"includePrivate": True},
        },
        entity=None,
    )["ia::result"]
    assert every
    assert {r["key"] for r in emitted} == {str(row["key"]) for row in every}
    assert {r["_entity"] for r in emitted} <= {"E100", "E200", "E300"}
