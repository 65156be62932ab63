"""Parallel partitioned reads (``parallel_slices``) against a seeded emulator over loopback HTTP.

Every record exactly once with 4 slices; a run killed mid-way resumes from its last STATE
without loss; no emitted bookmark passes an unfinished slice; rows modified during the read
are not lost; the setting off leaves the sorted read as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_emulator.testing import EmulatorServer
from tap_intacct.slices import SLICES_STATE, key_edges, time_edges
from tap_intacct.streams import QueryStream
from tap_intacct.tap import TapIntacct
from tests.support.connection import demo_connection
from tests.support.tap_runs import capture, seeded_emulator, sync_until_failure

CUSTOMER = "accounts-receivable/customer"
STREAM = "accounts_receivable__customer"
COUNT = 700
PAGE = 50


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with seeded_emulator({CUSTOMER: COUNT}) as server:
        yield server


@pytest.fixture
def fresh() -> Iterator[EmulatorServer]:
    """An emulator of its own for tests that change data."""
    with seeded_emulator({CUSTOMER: COUNT}) as server:
        yield server


def make_config(server: EmulatorServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **demo_connection(server.base_url, tmp_path),
        "objects": [CUSTOMER],
        "page_size": PAGE,
        "max_retries": 8,
        "include_private": True,
        **extra,
    }


def records(messages: list[dict]) -> list[dict[str, Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == STREAM]


def states(messages: list[dict]) -> list[dict[str, Any]]:
    return [m["value"] for m in messages if m["type"] == "STATE"]


def bookmark_of(state: dict[str, Any]) -> dict[str, Any]:
    return state["bookmarks"][STREAM]


def query_calls(server: EmulatorServer) -> int:
    return server.requests().get("POST /services/core/query", 0)


def when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def moment(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def in_slice(record: dict[str, Any], piece: dict[str, Any], first: bool, nulls: bool) -> bool:
    value = when(record["_modified_at"])
    if value is None:
        return first and nulls
    lower, upper = when(piece["lower"]), when(piece["upper"])
    return (lower is None or value >= lower) and (upper is None or value < upper)


@pytest.fixture
def frequent_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A STATE every 30 records (the SDK's default is every 10,000)."""
    monkeypatch.setattr(QueryStream, "STATE_MSG_FREQUENCY", 30)


def fail_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    """The run dies at its ``calls``-th query call (a process killed mid-way)."""
    original = IntacctClient.query
    seen = {"n": 0}

    def query(self: IntacctClient, body: Any, **kwargs: Any) -> Any:
        seen["n"] += 1
        if seen["n"] >= calls:
            raise RuntimeError("killed")
        return original(self, body, **kwargs)

    monkeypatch.setattr(IntacctClient, "query", query)


# -- edges ----------------------------------------------------------------------------------


def test_edges_split_a_range_into_increasing_whole_second_bounds() -> None:
    edges = time_edges("2025-01-01T00:00:00.250Z", "2025-01-01T00:00:40Z", 4)
    assert edges == ["2025-01-01T00:00:10Z", "2025-01-01T00:00:20Z", "2025-01-01T00:00:30Z"]
    assert time_edges("2025-01-01T00:00:00Z", "2025-01-01T00:00:03Z", 4) == [
        "2025-01-01T00:00:01Z",
        "2025-01-01T00:00:02Z",
    ]
    assert time_edges("2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z", 4) == []
    assert key_edges("1", "101", 4) == ["26", "51", "76"]
    assert key_edges("A-1", "B-9", 4) == []


# -- (a) every record exactly once ----------------------------------------------------------


def test_four_slices_emit_every_record_exactly_once(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    sequential, failure = sync_until_failure(make_config(emulator, tmp_path))
    assert failure is None
    emulator.reset(data=False, tokens=False)
    sliced, failure = sync_until_failure(make_config(emulator, tmp_path, parallel_slices=4))
    assert failure is None
    calls = query_calls(emulator)

    expected = {r["key"]: r for r in records(sequential)}
    emitted = records(sliced)
    assert len(expected) == COUNT
    assert Counter(r["key"] for r in emitted) == Counter(list(expected))  # each key once
    assert {r["key"]: r for r in emitted} == expected  # and the same records
    # two range queries, then about ceil(COUNT / 4 / PAGE) pages per slice
    assert calls <= 2 + 4 * math.ceil(COUNT / 4 / PAGE + 1), calls
    final = bookmark_of(states(sliced)[-1])
    assert final == bookmark_of(states(sequential)[-1])
    assert SLICES_STATE not in final


def test_entity_partitions_each_read_in_slices_emit_each_record_once(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    sequential, _ = sync_until_failure(make_config(emulator, tmp_path, entities="all"))
    sliced, failure = sync_until_failure(
        make_config(emulator, tmp_path, entities="all", parallel_slices=3)
    )
    assert failure is None
    key_entity = Counter((r["key"], r["_entity"]) for r in records(sliced))
    assert key_entity == Counter((r["key"], r["_entity"]) for r in records(sequential))
    assert max(key_entity.values()) == 1
    partitions = bookmark_of(states(sliced)[-1])["partitions"]
    assert len(partitions) > 1
    assert all(SLICES_STATE not in p for p in partitions)


# -- (b) killed mid-way, resumed from the last STATE ----------------------------------------


@pytest.mark.usefixtures("frequent_state")
def test_a_run_killed_mid_way_resumes_from_its_last_state_without_loss(
    fresh: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(fresh, tmp_path, parallel_slices=4)
    with monkeypatch.context() as patch:
        fail_after(patch, 10)  # 2 range queries + 7 pages, then the process "dies"
        first, failure = sync_until_failure(config)
    assert isinstance(failure, RuntimeError)
    last = max(i for i, m in enumerate(first) if m["type"] == "STATE")
    delivered = {r["key"] for r in records(first[:last])}  # committed with that STATE
    state = first[last]["value"]
    progress = bookmark_of(state)[SLICES_STATE]
    assert any(s["done"] or s["resume"] for s in progress["slices"])
    assert 0 < len(delivered) < COUNT

    fresh.reset(data=False, tokens=False)
    second, failure = sync_until_failure(config, state=state)
    assert failure is None
    resumed = [r["key"] for r in records(second)]
    assert delivered | set(resumed) == {str(k) for k in range(1, COUNT + 1)}
    assert len(resumed) < COUNT  # finished slices were skipped
    final = bookmark_of(states(second)[-1])
    assert SLICES_STATE not in final
    assert final["replication_key_value"] == max(
        (r["_modified_at"] for r in records(first) + records(second)), key=moment
    )


@pytest.mark.usefixtures("frequent_state")
def test_a_killed_run_resumed_with_the_setting_off_loses_nothing(
    fresh: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bookmark alone (a sequential read ignores ``slices``) is also a safe resume point."""
    with monkeypatch.context() as patch:
        fail_after(patch, 12)
        first, failure = sync_until_failure(make_config(fresh, tmp_path, parallel_slices=4))
    assert failure is not None
    last = max(i for i, m in enumerate(first) if m["type"] == "STATE")
    delivered = {r["key"] for r in records(first[:last])}
    second, failure = sync_until_failure(make_config(fresh, tmp_path), state=first[last]["value"])
    assert failure is None
    assert len(delivered | {r["key"] for r in records(second)}) == COUNT


def test_a_tap_process_killed_after_a_state_resumes_without_loss(tmp_path: Path) -> None:
    """The real CLI, SIGKILLed right after a STATE it wrote mid-read (the SDK writes one every
    10,000 records), then resumed from that STATE: every record is delivered."""
    count = 12_000
    server = EmulatorServer().start()
    try:
        server.company.seed_object(CUSTOMER, count, 3)
        config = make_config(server, tmp_path, parallel_slices=4, page_size=500)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        tap = str(Path(sys.executable).with_name("tap-intacct"))
        proc = subprocess.Popen(
            [tap, "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        delivered: set[str] = set()
        state = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                message = json.loads(line)
                if message["type"] == "RECORD":
                    delivered.add(message["record"]["key"])
                elif message["type"] == "STATE" and SLICES_STATE in json.dumps(message):
                    state = message["value"]
                    proc.kill()
                    break
        finally:
            proc.kill()
            proc.wait(timeout=60)
            if proc.stdout is not None:
                proc.stdout.close()
        assert state is not None, "no STATE was written while slices ran"
        assert 0 < len(delivered) < count
        resumed, failure = sync_until_failure(config, state=state)
        assert failure is None
        assert delivered | {r["key"] for r in records(resumed)} == {
            str(k) for k in range(1, count + 1)
        }
        assert len(records(resumed)) < count
    finally:
        server.stop()


# -- (c) no bookmark past an unfinished slice -----------------------------------------------


@pytest.mark.usefixtures("frequent_state")
def test_no_emitted_bookmark_passes_an_unfinished_slice(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    messages, failure = sync_until_failure(make_config(emulator, tmp_path, parallel_slices=4))
    assert failure is None
    checked = 0
    emitted: list[dict[str, Any]] = []
    all_records = records(messages)
    for message in messages:
        if message["type"] == "RECORD":
            emitted.append(message["record"])
            continue
        if message["type"] != "STATE":
            continue
        entry = bookmark_of(message["value"])
        progress = entry.get(SLICES_STATE)
        if progress is None:
            continue
        checked += 1
        pieces = progress["slices"]
        unfinished = [p for p in pieces if not p["done"]]
        assert unfinished
        bookmark = when(entry.get("replication_key_value"))
        first_start = unfinished[0]["resume"] or unfinished[0]["lower"]
        assert bookmark == when(first_start)
        for piece in unfinished:
            start = when(piece["resume"] or piece["lower"])
            assert bookmark is None or start is None or bookmark <= start
        # everything a resume would skip was emitted before this STATE
        so_far = {r["key"] for r in emitted}
        for i, piece in enumerate(pieces):
            mine = [r for r in all_records if in_slice(r, piece, i == 0, progress["nulls"])]
            if piece["done"]:
                skipped = mine
            elif piece["resume"]:
                resume = moment(piece["resume"])
                skipped = [r for r in mine if moment(r["_modified_at"]) < resume]
            else:
                skipped = []
            assert {r["key"] for r in skipped} <= so_far, (i, piece)
    assert checked >= 3


# -- (d) rows modified during the read ------------------------------------------------------


def test_records_modified_during_the_read_are_not_lost(
    fresh: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Modified rows get a newer timestamp: the open-ended last slice, or the next run (its
    bookmark is below the new timestamps), delivers their new values; nothing is lost."""
    config = make_config(fresh, tmp_path, parallel_slices=4)
    original = IntacctClient.query
    seen = {"n": 0}
    touched = ("3", "180", "360", "690")

    def query(self: IntacctClient, body: Any, **kwargs: Any) -> Any:
        seen["n"] += 1
        if seen["n"] == 5:  # the slices have each read about one page
            for key in touched:
                fresh.company.touch(CUSTOMER, key, name=f"changed {key}")
            fresh.company.insert(CUSTOMER, {"id": "NEW-DURING", "name": "inserted during"})
        return original(self, body, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(IntacctClient, "query", query)
        first, failure = sync_until_failure(config)
    assert failure is None
    second, failure = sync_until_failure(config, state=states(first)[-1])
    assert failure is None
    latest: dict[str, dict[str, Any]] = {}
    for record in records(first) + records(second):
        latest[record["key"]] = record
    assert len(latest) == COUNT + 1
    for key in touched:
        assert latest[key]["name"] == f"changed {key}"
    assert "inserted during" in {r["name"] for r in latest.values()}
    assert {r["key"] for r in records(first)} >= {str(k) for k in range(1, COUNT + 1)}


# -- (e) the setting off --------------------------------------------------------------------


def test_setting_off_keeps_the_sorted_read_and_its_state(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    emulator.reset(data=False, tokens=False)
    default, _ = sync_until_failure(make_config(emulator, tmp_path))
    calls = query_calls(emulator)
    off, _ = sync_until_failure(make_config(emulator, tmp_path, parallel_slices=1))
    assert records(off) == records(default)
    emitted = records(off)
    order = [(when(r["_modified_at"]), int(r["key"])) for r in emitted]
    assert order == sorted(order)
    assert states(off) == states(default)
    assert SLICES_STATE not in json.dumps(states(off))
    assert calls == math.ceil(COUNT / PAGE)
    tap = TapIntacct(config=make_config(emulator, tmp_path))
    on = TapIntacct(config=make_config(emulator, tmp_path, parallel_slices=4))
    try:
        assert tap.streams[STREAM].is_sorted
        assert not on.streams[STREAM].is_sorted
    finally:
        tap.close()
        on.close()


def test_keyscan_deletes_still_work_with_slices(fresh: EmulatorServer, tmp_path: Path) -> None:
    config = make_config(fresh, tmp_path, parallel_slices=4, deletes="keyscan")
    first, _ = sync_until_failure(config)
    assert len({r["key"] for r in records(first)}) == COUNT
    fresh.company.delete(CUSTOMER, ["42"], entity=None, transaction=True)
    second, failure = sync_until_failure(config, state=states(first)[-1])
    assert failure is None
    deleted = [r for r in records(second) if r.get("_sdc_deleted_at")]
    assert [r["key"] for r in deleted] == ["42"]


# -- the rest keeps working ------------------------------------------------------------------


def test_a_refused_replication_field_is_read_in_key_slices(
    fresh: EmulatorServer, tmp_path: Path
) -> None:
    """The range query meets the refusal first: the stream falls back to a full read, in
    slices of ``key``, remembered in the state (as without slices)."""
    fresh.set_faults(refuse_query_fields={CUSTOMER: ["audit.modifiedDateTime"]})
    messages, failure = sync_until_failure(make_config(fresh, tmp_path, parallel_slices=4))
    assert failure is None
    keys = [r["key"] for r in records(messages)]
    assert Counter(keys) == Counter(str(k) for k in range(1, COUNT + 1))
    final = bookmark_of(states(messages)[-1])
    assert "incremental_refused" in final
    assert SLICES_STATE not in final
    calls = query_calls(fresh)
    assert calls >= 4 + 4  # the refused range query, a key range, pages of 4 slices
    assert calls <= 2 + 2 + 4 * math.ceil(COUNT / 4 / PAGE + 1)


def test_a_record_limit_stops_the_slices_without_leaving_a_thread(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The SDK's dry run (``--test``) aborts the stream after one record."""
    import threading

    tap = TapIntacct(config=make_config(emulator, tmp_path, parallel_slices=4))
    messages, _ = capture(tap, lambda: tap.run_sync_dry_run(dry_run_record_limit=1))
    assert not [t for t in threading.enumerate() if t.name.startswith("intacct-slice")]
    assert len(records(messages)) == 1


def test_a_small_incremental_run_is_not_split(fresh: EmulatorServer, tmp_path: Path) -> None:
    """Fewer rows since the bookmark than one page (the range query's totalCount): one
    sequential call after the range round, and the same records as with the setting off."""
    config = make_config(fresh, tmp_path, parallel_slices=4)
    first, _ = sync_until_failure(config)
    state = states(first)[-1]
    for key in ("3", "400"):
        fresh.company.touch(CUSTOMER, key, name=f"changed {key}")
    fresh.reset(data=False, tokens=False)
    sliced, failure = sync_until_failure(config, state=state)
    assert failure is None
    assert query_calls(fresh) == 2 + 1
    sequential, _ = sync_until_failure(make_config(fresh, tmp_path), state=state)
    assert records(sliced) == records(sequential)
    assert {"3", "400"} <= {r["key"] for r in records(sliced)}
    assert bookmark_of(states(sliced)[-1]) == bookmark_of(states(sequential)[-1])
