"""target-intacct as a subprocess (and once in-process) against the emulator over loopback.

Input files live in tests/data/*.singer; the kill-and-rerun input is generated per test.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_api.mutate import MutateEngine
from intacct_api.settings import ConnectionSettings
from intacct_api.spec import default_registry
from intacct_emulator.testing import EmulatorServer
from target_intacct.target import TargetIntacct
from tests.support.paths import DATA
from tests.support.target_runs import (
    TARGET,
    emulator_config,
    query_all,
    results_of,
    run_target,
)

VENDOR = "accounts-payable/vendor"
STREAM = "accounts_payable__vendor"


@pytest.fixture
def config(emulator: EmulatorServer, tmp_path: Path) -> dict[str, Any]:
    return emulator_config(emulator, tmp_path)


def stored_vendors(config: dict[str, Any]) -> list[dict[str, Any]]:
    return query_all(config, VENDOR, ["key", "id", "name"])


def test_load_writes_results_summary_and_state(config: dict[str, Any], tmp_path: Path) -> None:
    done = run_target(config, DATA / "target_vendors.singer", tmp_path)
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert [(r["line"], r["status"], r["operation"]) for r in results] == [
        (2, "ok", "create"),
        (3, "ok", "create"),
        (5, "ok", "create"),
    ]
    assert all(r["stream"] == STREAM and r["key"] for r in results)
    assert results[0]["request"] == {"id": "TV1", "name": "Target One", "creditLimit": 1000.5}
    assert "Summary for stream 'accounts_payable__vendor': created 3, updated 0" in done.stderr
    states = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert states[-1] == {"bookmarks": {STREAM: {"replication_key_value": "3"}}}
    assert sorted(v["id"] for v in stored_vendors(config)) == ["TV1", "TV2", "TV3"]

    again = run_target(config, DATA / "target_vendors.singer", tmp_path)  # upsert: updates
    assert again.returncode == 0, again.stderr
    assert [r["operation"] for r in results_of(config)] == ["update"] * 3
    assert len(stored_vendors(config)) == 3


@pytest.mark.parametrize(("on_error", "code"), [("continue", 0), ("fail", 1)])
def test_bad_input_is_reported_not_lost(
    config: dict[str, Any], tmp_path: Path, on_error: str, code: int
) -> None:
    config |= {
        "on_error": on_error,
        "streams": {"vendor_updates": {"object": VENDOR, "operation": "update"}},
    }
    done = run_target(config, DATA / "target_bad_input.singer", tmp_path)
    assert done.returncode == code, done.stderr
    by_line = {r["line"]: r for r in results_of(config)}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 9, 11, 12]
    assert by_line[2]["status"] == "ok"
    assert by_line[12]["status"] == "ok"
    assert "field 'creditLimit'" in by_line[3]["error"]
    assert "field 'status'" in by_line[4]["error"]
    assert "field 'name': string of 20000 characters" in by_line[5]["error"]
    assert "field 'favouriteColour': unknown field" in by_line[6]["error"]
    assert by_line[7]["errorCode"] == "malformedLine"
    assert by_line[7]["stream"] == STREAM
    assert "field 'key'" in by_line[9]["error"]
    assert by_line[11]["errorCode"] == "unknownStream"
    assert "no_such_stream" in by_line[11]["error"]
    assert sorted(v["id"] for v in stored_vendors(config)) == ["GOOD1", "GOOD2"]
    assert "failed 5" in done.stderr


def test_record_before_schema_is_an_error_result_and_the_load_goes_on(
    config: dict[str, Any], tmp_path: Path
) -> None:
    done = run_target(config, DATA / "target_record_before_schema.singer", tmp_path)
    assert done.returncode == 1  # on_error=fail: decided at the end, after every record
    results = sorted(results_of(config), key=lambda r: r["line"])
    assert [(r["line"], r["status"]) for r in results] == [(2, "ok"), (3, "error"), (4, "ok")]
    assert "encountered before a corresponding schema" in results[1]["error"]
    assert results[1]["stream"] == "accounts_receivable__customer"
    assert sorted(v["id"] for v in stored_vendors(config)) == ["GOOD1", "GOOD2"]


@pytest.mark.parametrize("allow", [True, False])
def test_deleted_records(config: dict[str, Any], tmp_path: Path, allow: bool) -> None:
    settings = ConnectionSettings.from_config(config)
    with IntacctClient(settings) as client:
        engine = MutateEngine(default_registry(), client)
        made = list(engine.mutate(VENDOR, [{"id": "D1", "name": "a"}, {"id": "D2", "name": "b"}]))
    schema = {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "id": {"type": "string"},
            "name": {"type": "string"},
        },
    }
    lines = [
        {"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["key"]},
        {
            "type": "RECORD",
            "stream": STREAM,
            "record": {"key": made[0].key, "id": "D1", "_sdc_deleted_at": "2024-05-01T00:00:00Z"},
        },
        {
            "type": "RECORD",
            "stream": STREAM,
            "record": {"key": made[1].key, "id": "D2", "name": "kept"},
        },
    ]
    path = tmp_path / "deletes.singer"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_target(config | {"allow_deletes": allow}, path, tmp_path)
    assert done.returncode == 0, done.stderr
    first, second = results_of(config)
    assert second["operation"] == "update"
    if allow:
        assert (first["status"], first["operation"]) == ("ok", "delete")
        assert [v["id"] for v in stored_vendors(config)] == ["D2"]
    else:
        assert (first["status"], first["errorCode"]) == ("skipped", "deleteNotAllowed")
        assert sorted(v["id"] for v in stored_vendors(config)) == ["D1", "D2"]


def test_dry_run_writes_results_without_calling_the_api(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    done = run_target(config | {"dry_run": True}, DATA / "target_vendors.singer", tmp_path)
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert [r["dryRun"] for r in results] == [True, True, True]
    assert emulator.requests() == {}


def test_state_is_emitted_only_after_results_are_recorded(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = TargetIntacct(config=config | {"batch_size": 2})
    seen: list[tuple[dict[str, Any], int]] = []

    def spy(state: dict[str, Any]) -> None:
        path = Path(config["results_path"])
        seen.append((state, len(path.read_text().splitlines()) if path.exists() else 0))

    monkeypatch.setattr(target, "_write_state_message", spy)
    text = (DATA / "target_vendors.singer").read_text()
    target.listen(io.StringIO(text))
    assert seen, "no STATE was emitted"
    assert seen[-1] == ({"bookmarks": {STREAM: {"replication_key_value": "3"}}}, 3)


def test_kill_and_rerun_leaves_no_duplicates(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    total = 600
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    }
    path = tmp_path / "many.singer"
    with path.open("w") as out:
        out.write(
            json.dumps(
                {"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["id"]}
            )
            + "\n"
        )
        for i in range(total):
            record = {"id": f"K{i:04d}", "name": f"Kill test {i}"}
            out.write(json.dumps({"type": "RECORD", "stream": STREAM, "record": record}) + "\n")
    config |= {"operation": "create", "batch_size": 50}
    emulator.set_faults(latency_ms=150)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [TARGET, "--config", str(config_path), "--input", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    results_path = Path(config["results_path"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results_path.exists() and len(results_path.read_text().splitlines()) >= 100:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    written_before = len(stored_vendors(config))
    assert 100 <= written_before < total

    emulator.set_faults(latency_ms=0)
    done = run_target(config, path, tmp_path)  # same input, same batches, same keys
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert len(results) == total
    assert all(r["status"] == "ok" for r in results), [r for r in results if r["status"] != "ok"]
    ids = [v["id"] for v in stored_vendors(config)]
    assert len(ids) == total
    assert len(set(ids)) == total


def test_decimal_string_amounts_round_trip_and_bad_amounts_are_named(
    config: dict[str, Any], tmp_path: Path
) -> None:
    """Real Intacct returns amounts as strings ("0.00") and the tap's schema admits them: the
    target accepts decimal strings for number fields, sends them as exact JSON numbers, and
    reports a non-numeric string as an error naming the record and the field."""
    schema = default_registry().object(VENDOR).record_schema()  # what tap-intacct emits
    assert "string" in schema["properties"]["creditLimit"]["type"]
    records = [
        {"id": "AMT1", "name": "zero", "creditLimit": "0.00"},
        {"id": "AMT2", "name": "cents", "creditLimit": "1000.50"},
        {"id": "AMT3", "name": "bad", "creditLimit": "12,5x"},
        {"id": "AMT4", "name": "number", "creditLimit": 250},
    ]
    lines = [{"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["id"]}]
    lines += [{"type": "RECORD", "stream": STREAM, "record": r} for r in records]
    path = tmp_path / "amounts.singer"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_target(config | {"on_error": "continue"}, path, tmp_path)
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert [(r["line"], r["status"]) for r in results] == [
        (2, "ok"),
        (3, "ok"),
        (4, "error"),
        (5, "ok"),
    ]
    assert "(id 'AMT3')" in results[2]["error"]
    assert "field 'creditLimit': '12,5x' is not a number" in results[2]["error"]
    # sent as exact JSON numbers (never through float): the echo is what went on the wire
    raw = Path(config["results_path"]).read_text().splitlines()
    assert '"creditLimit":0.00' in raw[0]
    assert '"creditLimit":1000.50' in raw[1]
    settings = ConnectionSettings.from_config(config)
    with IntacctClient(settings) as client:
        body = {"object": VENDOR, "fields": ["id", "creditLimit"], "size": 100}
        stored = {r["id"]: r["creditLimit"] for r in client.query(body).json()["ia::result"]}
    assert stored == {"AMT1": 0, "AMT2": 1000.5, "AMT4": 250}


def test_batches_pipelined_keep_results_in_order_and_state_last(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    """Batches are sent in the background while the next one is read; results still come out
    in input order, upserts see the previous batch's creates, STATE follows the results."""
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    }
    lines: list[dict[str, Any]] = [
        {"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["id"]}
    ]
    for i in range(23):  # P0003 appears again later: an update, not a second create
        lines.append(
            {"type": "RECORD", "stream": STREAM, "record": {"id": f"P{i:04d}", "name": "a"}}
        )
    lines.append({"type": "RECORD", "stream": STREAM, "record": {"id": "P0003", "name": "b"}})
    lines.append({"type": "STATE", "value": {"done": 1}})
    path = tmp_path / "pipelined.singer"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    emulator.set_faults(latency_ms=30)
    try:
        done = run_target(config | {"batch_size": 5}, path, tmp_path)
    finally:
        emulator.set_faults(latency_ms=0)
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert [r["line"] for r in results] == list(range(2, 26))
    assert [r["operation"] for r in results] == ["create"] * 23 + ["update"]
    assert results[-1]["key"] == results[3]["key"]
    assert [json.loads(s) for s in done.stdout.splitlines() if s.strip()] == [{"done": 1}]
    assert writes_of(emulator) == {  # one $in lookup per batch of 5
        "POST /services/core/query": 5,
        "POST /objects/accounts-payable/vendor": 5,
        "PATCH /objects/accounts-payable/vendor/{key}": 1,
    }
    assert len(stored_vendors(config)) == 23


def test_create_only_batches_overlap_and_results_stay_in_order(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    """Batches that only create do not depend on each other, so several are on the wire at
    once; the emulator, limited to one request at a time, answers the overlap with 429s (which
    the client waits out), and the results file still follows the input order."""
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    }
    lines: list[dict[str, Any]] = [
        {"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["id"]}
    ]
    lines += [
        {"type": "RECORD", "stream": STREAM, "record": {"id": f"O{i:04d}", "name": "a"}}
        for i in range(20)
    ]
    path = tmp_path / "overlap.singer"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    emulator.set_faults(latency_ms=150, max_concurrent=1, retry_after_seconds=0.05)
    try:
        overlap_config = config | {"batch_size": 5, "operation": "create", "max_retries": 50}
        done = run_target(overlap_config, path, tmp_path)
        throttled = emulator.stats()["responses"].get("429", 0)
    finally:
        emulator.set_faults(latency_ms=0, max_concurrent=None, retry_after_seconds=1.0)
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert [r["line"] for r in results] == list(range(2, 22))
    assert [r["status"] for r in results] == ["ok"] * 20
    assert throttled >= 1  # two batches of the stream were in flight together
    assert len(stored_vendors(config)) == 20


def test_unordered_batches_leave_nothing_behind() -> None:
    """Lane-less batches overlap freely and are forgotten once collected (memory stays flat)."""
    from intacct_api.mutate_results import MutateResult
    from target_intacct.pipeline import ResultPipeline

    written: list[int] = []
    pipeline = ResultPipeline(lambda _s, rs: written.extend(r.index for r in rs), 2)
    for i in range(50):
        result = MutateResult(index=i, operation="create", object="", status="ok")
        pipeline.submit(None, "S", lambda result=result: [result])
    pipeline.close()
    assert written == list(range(50))
    assert pipeline._lanes == {}


def test_a_broken_connection_fails_the_run_even_with_on_error_continue(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    """on_error=continue tolerates bad records, not a connection that can write none."""
    store = Path(config["token_store"])
    store.write_text("{}")
    store.chmod(0o644)  # readable by others: refused before any token is sent
    schema = {"type": "object", "properties": {"id": {"type": "string"}}}
    lines = [
        {"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["id"]},
        {"type": "RECORD", "stream": STREAM, "record": {"id": "C1", "name": "x"}},
    ]
    path = tmp_path / "broken.singer"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_target(config | {"on_error": "continue"}, path, tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "Cannot write to Intacct" in last
    assert "chmod 600" in last  # the one line names the fix
    assert "(InsecureTokenStoreError)" in last
    assert "Traceback" not in done.stderr
    [result] = results_of(config)
    assert result["status"] == "error"
    assert "chmod 600" in result["error"]
    assert writes_of(emulator) == {}


def writes_of(emulator: EmulatorServer) -> dict[str, int]:
    return {k: v for k, v in emulator.requests().items() if "oauth2" not in k}


def test_result_pipeline_writes_in_submission_order() -> None:
    import threading

    from intacct_api.mutate_results import MutateResult
    from target_intacct.pipeline import ResultPipeline

    written: list[tuple[str, list[int]]] = []
    pipeline = ResultPipeline(lambda s, rs: written.append((s, [r.index for r in rs])), 3)
    gate = threading.Event()

    def job(index: int, wait: bool = False) -> Any:
        def run() -> list[MutateResult]:
            if wait:
                gate.wait(10)
            return [MutateResult(index=index, operation="create", object="o", status="ok")]

        return run

    pipeline.submit("a", "A", job(0, wait=True))  # slow: everything after it must wait
    pipeline.submit("b", "B", job(1))
    pipeline.add("C", [MutateResult(index=2, operation="read", object="", status="error")])
    assert written == []
    gate.set()
    pipeline.submit("a", "A", job(3))  # same lane: waits for job 0 first
    pipeline.wait_all()
    assert written == [("A", [0]), ("B", [1]), ("C", [2]), ("A", [3])]

    def boom() -> list[MutateResult]:
        raise RuntimeError("unexpected")

    pipeline.submit("a", "A", boom)
    with pytest.raises(RuntimeError, match="unexpected"):
        pipeline.wait_all()
    pipeline.close()  # nothing left: no second raise


def test_pipeline_overlaps_batches_of_disjoint_records_and_orders_shared_ones() -> None:
    """Issue 15: an upsert batch waits only for in-flight batches touching the same records;
    its look-up then sees what they wrote, and results stay in submission order."""
    import threading

    from intacct_api.mutate_results import MutateResult
    from target_intacct.pipeline import ResultPipeline

    written: list[int] = []
    pipeline = ResultPipeline(lambda s, rs: written.extend(r.index for r in rs), 4)
    first_gate, started = threading.Event(), threading.Event()
    order: list[int] = []

    def job(index: int, gate: threading.Event | None = None) -> Any:
        def run() -> list[MutateResult]:
            order.append(index)
            if index == 1:
                started.set()
            if gate is not None:
                gate.wait(10)
            return [MutateResult(index=index, operation="update", object="o", status="ok")]

        return run

    pipeline.submit("lane", "S", job(0, first_gate), frozenset({("match", "V1")}))
    # disjoint records: submitted and run while batch 0 is still in flight
    pipeline.submit("lane", "S", job(1), frozenset({("match", "V2")}))
    assert started.wait(10), "a batch of other records did not overlap the one in flight"
    assert order == [0, 1]
    assert written == []  # batch 1 finished, but results wait for batch 0 (input order)
    first_gate.set()
    # the same record as batch 0: runs only after batch 0 is done
    pipeline.submit("lane", "S", job(2), frozenset({("match", "V1")}))
    pipeline.wait_all()
    assert order == [0, 1, 2]
    assert written == [0, 1, 2]
    pipeline.close()


def test_upserts_of_the_same_record_across_overlapping_batches_apply_in_input_order(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    }
    lines = [
        json.dumps({"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["id"]})
    ]
    expected: dict[str, str] = {}
    for round_ in range(3):  # every vendor written three times, in three different batches
        for i in range(30):
            vendor_id, name = f"OV{i:02d}", f"round {round_} vendor {i}"
            expected[vendor_id] = name
            record = {"id": vendor_id, "name": name}
            lines.append(json.dumps({"type": "RECORD", "stream": STREAM, "record": record}))
    path = tmp_path / "overlap.singer"
    path.write_text("\n".join(lines) + "\n")
    emulator.set_faults(latency_ms=40)
    done = run_target(config | {"batch_size": 7}, path, tmp_path)
    emulator.set_faults(latency_ms=0)
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert [r["line"] for r in results] == list(range(2, 92))  # input order
    assert all(r["status"] == "ok" for r in results)
    stored = {v["id"]: v["name"] for v in stored_vendors(config)}
    assert stored == expected  # the last write of each vendor won, none was created twice
