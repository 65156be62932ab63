"""target-intacct tells the truth (issue 11): a result is `ok` only when the write happened.

Real binaries against the emulator over loopback HTTP. The emulator implements Sage's
documented idempotency semantics (48-hour replay, 60-day key memory, 409 on reuse with another
body) with a movable clock, so these tests fail for a client that derives keys from content
(the bug they were written for: repeated writes reported `ok` without being executed).
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

from intacct_emulator.testing import EmulatorServer
from target_intacct.target import TargetIntacct
from tests.support.target_runs import (
    BILL_SCHEMA,
    BILLS,
    TARGET,
    VENDOR_SCHEMA,
    VENDORS,
    bill,
    emulator_config,
    query_all,
    results_of,
    run_target,
)

VENDOR = "accounts-payable/vendor"
BILL = "accounts-payable/bill"
DAY = 24 * 3600


@pytest.fixture
def config(emulator: EmulatorServer, tmp_path: Path) -> dict[str, Any]:
    return emulator_config(emulator, tmp_path)


# -- helpers ---------------------------------------------------------------------------------


def schema_line(stream: str, schema: dict[str, Any], keys: list[str]) -> str:
    return json.dumps(
        {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": keys}
    )


def record_line(stream: str, record: Any) -> str:
    return json.dumps({"type": "RECORD", "stream": stream, "record": record})


def state_line(value: Any) -> str:
    return json.dumps({"type": "STATE", "value": value})


def write_input(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def writes(emulator: EmulatorServer, request: str) -> int:
    return emulator.requests().get(request, 0)


def vendor_input(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> Path:
    lines = [schema_line(VENDORS, VENDOR_SCHEMA, ["id"])]
    lines += [record_line(VENDORS, r) for r in records]
    return write_input(tmp_path / name, lines)


def bill_input(tmp_path: Path, name: str, numbers: list[str]) -> Path:
    lines = [schema_line(BILLS, BILL_SCHEMA, ["billNumber"])]
    lines += [record_line(BILLS, bill(n)) for n in numbers]
    return write_input(tmp_path / name, lines)


def make_vendor(config: dict[str, Any], tmp_path: Path) -> None:
    path = vendor_input(tmp_path, "v.singer", [{"id": "V-00001", "name": "Bill vendor"}])
    done = run_target(config, path, tmp_path)
    assert done.returncode == 0, done.stderr


# -- repeated writes are real writes ----------------------------------------------------------


def test_inactive_active_inactive_ends_inactive_with_three_real_writes(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    make_vendor(config, tmp_path)
    before = writes(emulator, "PATCH /objects/accounts-payable/vendor/{key}")
    statuses = ["inactive", "active", "inactive"]
    for i, status in enumerate(statuses):
        path = vendor_input(tmp_path, f"s{i}.singer", [{"id": "V-00001", "status": status}])
        done = run_target(config, path, tmp_path)
        assert done.returncode == 0, done.stderr
        (result,) = results_of(config)
        assert (result["status"], result["operation"]) == ("ok", "update")
        assert "replayed" not in result
        rows = query_all(config, VENDOR, ["id", "status"])
        assert rows == [{"id": "V-00001", "status": status}]
    assert writes(emulator, "PATCH /objects/accounts-payable/vendor/{key}") - before == 3


def test_identical_bills_are_separate_writes_in_one_run_and_across_runs(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    make_vendor(config, tmp_path)
    config |= {"operation": "create", "batch_size": 1}
    path = bill_input(tmp_path, "bills.singer", ["SAME", "SAME"])
    done = run_target(config, path, tmp_path)
    assert done.returncode == 0, done.stderr
    first = results_of(config)
    assert [r["status"] for r in first] == ["ok", "ok"]
    assert len({r["key"] for r in first}) == 2
    assert len({r["idempotencyKey"] for r in first}) == 2
    assert len(query_all(config, BILL, ["key"])) == 2

    done = run_target(config, path, tmp_path)  # the same file again: two more bills
    assert done.returncode == 0, done.stderr
    assert not any(r.get("replayed") for r in results_of(config))
    assert len(query_all(config, BILL, ["key"])) == 4
    # a completed load leaves no journal behind: its keys can never be re-sent
    assert not list(tmp_path.glob(".intacct-journal-*.jsonl"))


def test_a_completed_load_rerun_after_49_emulated_hours_writes_again(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    make_vendor(config, tmp_path)
    config |= {"operation": "create"}
    path = bill_input(tmp_path, "bills.singer", ["B-1", "B-2", "B-3"])
    assert run_target(config, path, tmp_path).returncode == 0
    emulator.advance_clock(49 * 3600)
    done = run_target(config, path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["status"] for r in results_of(config)] == ["ok"] * 3
    assert len(query_all(config, BILL, ["key"])) == 6


@pytest.mark.parametrize("after_result_ttl", ["conflict", "execute"])
def test_sixty_days_of_daily_identical_upserts_never_meet_a_409(
    emulator: EmulatorServer, config: dict[str, Any], after_result_ttl: str
) -> None:
    """Works whichever way Intacct treats a key between 48 hours and 60 days (undocumented)."""
    emulator.set_idempotency(after_result_ttl=after_result_ttl)
    records = [{"id": f"D{i}", "name": f"Daily {i}", "status": "active"} for i in range(3)]
    text = "\n".join(
        [schema_line(VENDORS, VENDOR_SCHEMA, ["id"])] + [record_line(VENDORS, r) for r in records]
    )
    for day in range(61):
        target = TargetIntacct(config=config)
        target.listen(io.StringIO(text + "\n"))
        results = results_of(config)
        assert [r["status"] for r in results] == ["ok"] * 3, (day, results)
        assert all("replayed" not in r for r in results)
        emulator.advance_clock(DAY)
    assert len(query_all(config, VENDOR, ["id"])) == 3


# -- crashes: kill -9 and rerun ---------------------------------------------------------------


@pytest.mark.parametrize("kill_after", [0, 150, 420])
def test_upsert_load_killed_and_rerun_writes_each_record_once_and_results_are_true(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path, kill_after: int
) -> None:
    total = 600
    records = [{"id": f"K{i:04d}", "name": f"Kill test {i}"} for i in range(total)]
    path = vendor_input(tmp_path, "many.singer", records)
    config |= {"batch_size": 50}
    emulator.set_faults(latency_ms=120)
    proc = start_target(config, path, tmp_path)
    wait_for_results(config, kill_after, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    emulator.set_faults(latency_ms=0)
    done = run_target(config, path, tmp_path)  # the same input again
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert len(results) == total
    assert all(r["status"] == "ok" for r in results)
    stored = {row["id"]: row for row in query_all(config, VENDOR, ["key", "id", "name"])}
    assert sorted(stored) == sorted(r["id"] for r in records)  # each exactly once
    for result, record in zip(results, records, strict=True):  # every result line is true
        row = stored[record["id"]]
        assert result["key"] == str(row["key"])
        assert row["name"] == record["name"]


@pytest.mark.parametrize("kill_after", [60, 250])
def test_create_load_killed_and_resumed_from_its_last_state_writes_each_bill_once(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path, kill_after: int
) -> None:
    """Creates have no natural key to look up: exactly-once comes from STATE checkpoints (the
    rerun resumes after the last STATE the killed run emitted) and the write journal (requests
    whose outcome was not behind that STATE are re-sent with their original keys)."""
    make_vendor(config, tmp_path)
    numbers = [f"B{i:04d}" for i in range(400)]
    lines = [schema_line(BILLS, BILL_SCHEMA, ["billNumber"])]
    for i, number in enumerate(numbers):
        lines.append(record_line(BILLS, bill(number)))
        if i % 10 == 9:
            lines.append(state_line({"done": i + 1}))
    path = write_input(tmp_path / "bills.singer", lines)
    config |= {"operation": "create", "batch_size": 40}
    emulator.set_faults(latency_ms=150)
    proc = start_target(config, path, tmp_path, stdout=subprocess.PIPE)
    wait_for_results(config, kill_after, proc)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    states = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    resume_after = states[-1]["done"] if states else 0
    assert resume_after <= len(results_of(config))  # a STATE never runs ahead of results

    emulator.set_faults(latency_ms=0)
    rest = [schema_line(BILLS, BILL_SCHEMA, ["billNumber"])]
    rest += [record_line(BILLS, bill(n)) for n in numbers[resume_after:]]
    done = run_target(config, write_input(tmp_path / "rest.singer", rest), tmp_path)
    assert done.returncode == 0, done.stderr
    rerun = results_of(config)
    assert all(r["status"] == "ok" for r in rerun)
    stored = query_all(config, BILL, ["key", "billNumber"])
    assert sorted(row["billNumber"] for row in stored) == numbers  # each bill exactly once
    by_number = {row["billNumber"]: str(row["key"]) for row in stored}
    for result in rerun:  # replayed or fresh, the key reported is the bill's
        assert result["key"] == by_number[result["request"]["billNumber"]]


def start_target(
    config: dict[str, Any], path: Path, tmp_path: Path, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    return subprocess.Popen(
        [TARGET, "--config", str(config_path), "--input", str(path)],
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )


def wait_for_results(config: dict[str, Any], count: int, proc: subprocess.Popen[bytes]) -> None:
    results_path = Path(config["results_path"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if count == 0 and results_path.exists():
            return
        if results_path.exists() and len(results_path.read_text().splitlines()) >= count:
            return
        time.sleep(0.01)
    assert proc.poll() is None, "the target finished before it could be killed"


# -- STATE checkpoints -------------------------------------------------------------------------


def test_state_is_emitted_mid_load_once_its_records_have_results(
    config: dict[str, Any], tmp_path: Path
) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config | {"batch_size": 2}))
    proc = subprocess.Popen(
        [TARGET, "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    first = [
        schema_line(VENDORS, VENDOR_SCHEMA, ["id"]),
        record_line(VENDORS, {"id": "S1", "name": "one"}),
        record_line(VENDORS, {"id": "S2", "name": "two"}),
        state_line({"position": 2}),
    ]
    proc.stdin.write(("\n".join(first) + "\n").encode())
    proc.stdin.flush()
    state = json.loads(proc.stdout.readline())  # arrives while the input is still open
    assert state == {"position": 2}
    results = results_of(config)
    assert [(r["line"], r["status"]) for r in results] == [(2, "ok"), (3, "ok")]
    proc.stdin.write((record_line(VENDORS, {"id": "S3", "name": "three"}) + "\n").encode())
    proc.stdin.write((state_line({"position": 3}) + "\n").encode())
    proc.stdin.close()
    assert json.loads(proc.stdout.readline()) == {"position": 3}
    assert proc.wait(timeout=60) == 0
    proc.stdout.close()


# -- no input line aborts a load --------------------------------------------------------------


def test_every_malformed_line_is_an_error_result_and_its_neighbours_are_written(
    config: dict[str, Any], tmp_path: Path
) -> None:
    good = schema_line(VENDORS, VENDOR_SCHEMA, ["id"])
    deep: Any = "bottom"
    for _ in range(520):
        deep = {"n": deep}
    cases: list[tuple[bytes, str]] = [
        (b'{"type": "RECORD", "stream": "accounts_payable__vendor"}', "has no 'record'"),
        (record_line(VENDORS, [1]).encode(), "must be a JSON object, not an array"),
        (record_line(VENDORS, None).encode(), "must be a JSON object, not null"),
        (b'{"type": "RECORD", "stream": "x", "record": {"id": "\xff\xfe"}}', "invalid UTF-8"),
        (record_line(VENDORS, {"id": "DEEP", "name": deep}).encode(), "nested deeper than"),
        (record_line(VENDORS, {"name": "no id"}).encode(), "key_properties"),
        (record_line("orphan_stream", {"id": "O1"}).encode(), "before a corresponding schema"),
        (
            schema_line("weird", {"type": "nonsense", "properties": {}}, []).encode(),
            "invalid SCHEMA for stream 'weird'",
        ),
        (record_line("weird", {"id": "W1"}).encode(), "has no usable SCHEMA"),
        (b'{"type": "RECORD", "stream": "accounts_payable__vendor", "record": {', "malformed"),
    ]
    lines = [good.encode()]
    expected: dict[int, str] = {}
    good_ids = []
    for i, (line, reason) in enumerate(cases):
        good_id = f"G{i:02d}"
        good_ids.append(good_id)
        lines.append(record_line(VENDORS, {"id": good_id, "name": "good"}).encode())
        lines.append(line)
        expected[len(lines)] = reason
    lines.append(record_line(VENDORS, {"id": "LAST", "name": "good"}).encode())
    good_ids.append("LAST")
    path = tmp_path / "bad.singer"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = run_target(config | {"on_error": "continue"}, path, tmp_path)
    assert done.returncode == 0, done.stderr
    by_line = {r["line"]: r for r in results_of(config)}
    for line, reason in expected.items():
        assert by_line[line]["status"] == "error", (line, by_line.get(line))
        assert reason in by_line[line]["error"], (line, by_line[line]["error"])
    assert by_line[max(expected) - 1]["status"] == "ok"
    stored = sorted(row["id"] for row in query_all(config, VENDOR, ["id"]))
    assert stored == sorted(good_ids)
    assert len(by_line) == len(expected) + len(good_ids)  # nothing silently skipped

    failing = run_target(config | {"on_error": "fail"}, path, tmp_path)
    assert failing.returncode == 1  # on_error still decides the exit code, at the end
    assert len(results_of(config)) == len(expected) + len(good_ids)


def test_one_unencodable_number_among_500_fails_only_its_own_record(
    config: dict[str, Any], tmp_path: Path
) -> None:
    lines = [schema_line(VENDORS, VENDOR_SCHEMA, ["id"])]
    for i in range(500):
        limit = "1e309" if i == 137 else f"{i}.50"
        lines.append(
            f'{{"type": "RECORD", "stream": "{VENDORS}", "record": {{"id": "N{i:03d}", '
            f'"name": "n", "creditLimit": {limit}}}}}'
        )
    done = run_target(
        config | {"operation": "create"}, write_input(tmp_path / "n.singer", lines), tmp_path
    )
    assert done.returncode == 1
    results = results_of(config)
    assert len(results) == 500
    assert sum(r["status"] == "ok" for r in results) == 499
    (bad,) = [r for r in results if r["status"] != "ok"]
    assert bad["line"] == 139
    assert "N137" in bad["error"]
    assert "field 'creditLimit'" in bad["error"]
    assert "out of range" in bad["error"]
    assert len(query_all(config, VENDOR, ["id"])) == 499


# -- tokens invalidated twice inside one request's retries ------------------------------------


def test_double_401_inside_one_request_completes_with_exact_data(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    records = [{"id": f"T{i}", "name": f"Token {i}"} for i in range(5)]
    path = vendor_input(tmp_path, "t.singer", records)
    emulator.set_faults(fail_next=[401, 503, 401])
    done = run_target(config | {"operation": "create"}, path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["status"] for r in results_of(config)] == ["ok"] * 5
    stored = query_all(config, VENDOR, ["id", "name"])
    assert stored == [{"id": r["id"], "name": r["name"]} for r in records]
    assert "demo-secret" not in done.stderr + done.stdout


# -- a 429 that says the request is too large -------------------------------------------------


def test_a_too_large_429_halves_the_batch_for_the_stream_instead_of_resending_it(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    records = [{"id": f"L{i:04d}", "name": f"Large {i}"} for i in range(700)]
    path = vendor_input(tmp_path, "large.singer", records)
    emulator.set_faults(too_large_over=100)
    done = run_target(config | {"operation": "create"}, path, tmp_path)
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert [r["status"] for r in results] == ["ok"] * 700
    assert "sending at most 62 per request" in done.stderr
    # 500 -> 250 -> 125 -> 62 for the first drain; the second drain starts at 62: no 429 again
    assert emulator.stats()["responses"].get("429") == 3
    stored = query_all(config, VENDOR, ["id"])
    assert sorted(row["id"] for row in stored) == [r["id"] for r in records]


def test_no_state_passes_an_unknown_outcome_and_the_resumed_load_settles_it_once(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    """A record whose outcome is unknown must be sent again by a resuming tap: no STATE after
    it is emitted, and the keys of the records after it stay in the journal, so the rerun
    replays them all instead of writing any twice."""
    lines = [schema_line(VENDORS, VENDOR_SCHEMA, ["id"])]
    for i in range(30):
        lines.append(record_line(VENDORS, {"id": f"UK{i:02d}", "name": f"Unknown {i}"}))
        if i % 10 == 9:
            lines.append(state_line({"done": i + 1}))
    path = write_input(tmp_path / "uk.singer", lines)
    config |= {
        "operation": "create",
        "batch_size": 10,
        "max_concurrency": 1,
        "max_retries": 0,
        "on_error": "continue",
    }
    emulator.set_faults(drop_next=1)  # the first batch is written, its answer is lost
    first = run_target(config, path, tmp_path)
    assert first.returncode == 0, first.stderr
    statuses = [r["status"] for r in results_of(config)]
    assert statuses[:10] == ["unknown"] * 10
    assert statuses[10:] == ["ok"] * 20
    assert first.stdout.strip() == ""  # every STATE comes after the unknown records
    assert len(query_all(config, VENDOR, ["id"])) == 30

    rerun = run_target(config, path, tmp_path)  # a tap resuming from no state sends all again
    assert rerun.returncode == 0, rerun.stderr
    again = results_of(config)
    assert [(r["status"], r.get("replayed")) for r in again] == [("ok", True)] * 30
    assert len(query_all(config, VENDOR, ["id"])) == 30  # nothing written twice
    assert json.loads(rerun.stdout.strip().splitlines()[-1]) == {"done": 30}


def test_a_request_straddling_a_state_keeps_its_key_until_a_state_after_its_last_record(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A STATE in the middle of a batch does not settle that batch's key: the records after
    the STATE will be sent again by a resuming tap, and must be replayed, not written twice."""
    from intacct_api.write_journal import WriteJournal

    events: list[tuple[str, Any]] = []
    real_settle = WriteJournal.settle

    def settle(self: WriteJournal, keys: Any) -> None:
        keys = list(keys)
        events.append(("settle", len(keys)))
        real_settle(self, keys)

    monkeypatch.setattr(WriteJournal, "settle", settle)
    lines = [schema_line(VENDORS, VENDOR_SCHEMA, ["id"])]
    for i in range(20):
        lines.append(record_line(VENDORS, {"id": f"ST{i:02d}", "name": "straddle"}))
        if i in (4, 14):  # mid-batch: batches are records 0-9 and 10-19
            lines.append(state_line({"at": i + 1}))
    target = TargetIntacct(config=config | {"operation": "create", "batch_size": 10})
    monkeypatch.setattr(target, "write_state_line", lambda state: events.append(("state", state)))
    target.listen(io.StringIO("\n".join(lines) + "\n"))
    states = [e for e in events if e[0] == "state"]
    assert states == [("state", {"at": 5}), ("state", {"at": 15})]
    # the STATE at record 5 settles nothing: batch 1 (records 1-10) ends after it; the STATE
    # at record 15 settles batch 1's key only; batch 2's key is settled when the load ends
    assert events.index(("state", {"at": 5})) < events.index(("state", {"at": 15}))
    settles = [(i, e[1]) for i, e in enumerate(events) if e[0] == "settle"]
    first_state, second_state = events.index(states[0]), events.index(states[1])
    assert not any(first_state < i < second_state for i, _ in settles)
    after_second = [n for i, n in settles if i > second_state]
    assert after_second == [1, 1]
