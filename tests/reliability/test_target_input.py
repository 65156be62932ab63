"""target-intacct: partial batches, atomic batches, write faults and bad input.

The target's promise is "a result for every record": each RECORD line of the input gets
exactly one line in the results file, failures carry a reason naming the record (its input
line, its id) and the field, and the emulator afterwards holds exactly the good records, once.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reliability.harness import (
    VENDOR,
    Collector,
    emulator_rows,
    run_target,
    stop_faults,
    target_config,
    write_config,
)

STREAM = "accounts_payable__vendor"
VENDOR_SCHEMA = {
    "type": "object",
    "properties": {
        "key": {"type": ["string", "null"]},
        "id": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"]},
        "creditLimit": {"type": ["number", "null"]},
        "favouriteColour": {"type": ["string", "null"]},
        "_sdc_deleted_at": {"type": ["string", "null"]},
    },
}


def schema(stream: str = STREAM, keys: tuple[str, ...] = ("id",)) -> str:
    return json.dumps(
        {"type": "SCHEMA", "stream": stream, "schema": VENDOR_SCHEMA, "key_properties": list(keys)}
    )


def record(data: dict[str, Any], stream: str = STREAM) -> str:
    return json.dumps({"type": "RECORD", "stream": stream, "record": data})


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def vendor_ids(emulator: Any) -> Counter[str]:
    return Counter(str(r["id"]) for r in emulator_rows(emulator, VENDOR))


def test_207_partial_batch_reports_each_record_in_order(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    existing = sorted(vendor_ids(emulator))[:5]
    ids = [f"P207-{i:02d}" for i in range(35)]
    for n, taken in enumerate(existing):
        ids.insert(n * 7 + 3, taken)  # duplicates spread through the batch
    text = "\n".join([schema(), *(record({"id": i, "name": f"Partial {i}"}) for i in ids)]) + "\n"
    config = target_config(emulator, tmp_path, operation="create")
    result = run_target(write_config(tmp_path / "t.json", config), text)
    stats = emulator.stats()
    assert result.returncode == 0, result.describe()
    collector.runs_completed += 1
    assert stats["responses"].get("207", 0) >= 1, "the emulator answered a partial batch"
    collector.fault("207 partial batch")

    results = results_of(tmp_path / "results.jsonl")
    assert [r["index"] for r in results] == list(range(len(ids))), "one result each, in order"
    assert [r["request"]["id"] for r in results] == ids
    for r in results:
        if r["request"]["id"] in existing:
            assert r["status"] == "error"
            assert r["request"]["id"] in r["error"], r["error"]
            collector.bad_inputs["duplicate id (207)"] += 1
        else:
            assert r["status"] == "ok", r
    held = vendor_ids(emulator)
    new = [i for i in ids if i not in existing]
    missing, dupes = collector.verified(new, [i for i in held.elements() if i.startswith("P207")])
    assert not missing
    assert dupes == 0
    assert all(held[i] == 1 for i in existing), "the duplicates were not written"


def test_atomic_batch_is_rejected_whole(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    taken = sorted(vendor_ids(emulator))[0]
    ids = [f"ATOM-{i:02d}" for i in range(29)]
    ids.insert(17, taken)
    text = "\n".join([schema(), *(record({"id": i, "name": "Atomic"}) for i in ids)]) + "\n"
    config = target_config(emulator, tmp_path, operation="create", atomic=True, on_error="fail")
    result = run_target(write_config(tmp_path / "t.json", config), text)
    assert result.returncode != 0, "on_error=fail: a failed batch fails the run"
    assert "on_error=fail" in result.stderr
    collector.runs_stopped_cleanly += 1
    collector.fault("atomic batch rejected")

    results = results_of(tmp_path / "results.jsonl")
    assert len(results) == len(ids)
    assert all(r["status"] == "error" for r in results), "all-or-nothing: nothing reported ok"
    offending = results[17]
    assert taken in offending["error"], offending["error"]
    held = vendor_ids(emulator)
    assert not [i for i in held if i.startswith("ATOM-")], "a rejected batch wrote nothing"
    collector.bad_inputs["atomic batch member"] += len(ids)


def test_write_faults_leave_each_record_once(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    """Random 503/500s and connections dropped after the server wrote: re-sent with the same
    Idempotency-Key, so nothing is created twice and nothing is lost.

    Random rather than queued faults: queued ones would all hit the first (look-up) request.
    With seed 4 the dice hit both look-ups and creates, including a create whose response was
    cut after the server had written the batch (the replay is what prevents a duplicate).
    """
    ids = [f"WF-{i:03d}" for i in range(200)]
    text = "\n".join([schema(), *(record({"id": i, "name": f"Fault {i}"}) for i in ids)]) + "\n"
    emulator.set_faults(
        drop_connection_rate=0.15,
        error_rate_503=0.05,
        error_rate_500=0.05,
        retry_after_seconds=0.1,
        random_seed=4,
    )
    config = target_config(emulator, tmp_path, batch_size=20, on_error="fail")
    result = run_target(write_config(tmp_path / "t.json", config), text)
    stats = emulator.stats()
    stop_faults(emulator)
    assert result.returncode == 0, result.describe()
    collector.runs_completed += 1
    errors = {s: stats["responses"].get(s, 0) for s in ("500", "503")}
    extra = stats["total"] - 1 - 2 * (len(ids) // 20)  # beyond 1 token + 10 look-ups + 10 creates
    drops = extra - sum(errors.values())
    writes = stats["requests"].get("POST /objects/accounts-payable/vendor", 0)
    assert writes > len(ids) // 20, "some create batches were re-sent"
    assert drops >= 1, "no connection was dropped: the case proves less than it claims"
    collector.fault("500", errors["500"])
    collector.fault("503", errors["503"])
    collector.fault("dropped connection", drops)

    results = results_of(tmp_path / "results.jsonl")
    assert len(results) == len(ids)
    assert all(r["status"] == "ok" for r in results)
    held = vendor_ids(emulator)
    missing, dupes = collector.verified(ids, [i for i in held.elements() if i.startswith("WF-")])
    assert not missing, f"lost {sorted(missing)[:5]}"
    assert dupes == 0, f"{dupes} vendors created twice"


def _bad_input() -> tuple[str, dict[int, tuple[str, str | None]]]:
    """The input and, per RECORD line number, (expected status, a word the reason must name)."""
    huge = "x" * 20000
    lines: list[tuple[str, tuple[str, str | None] | None]] = [
        (schema(), None),
        (record({"id": "BAD-GOOD1", "name": "Good"}), ("ok", None)),
        (
            record({"id": "BAD-TYPE", "name": "Wrong type", "creditLimit": "lots"}),
            ("error", "creditLimit"),
        ),
        (record({"id": "BAD-ENUM", "name": "Bad enum", "status": "sleepy"}), ("error", "status")),
        (record({"id": "BAD-HUGE", "name": huge}), ("error", "name")),
        (
            record({"id": "BAD-UNKNOWN", "name": "x", "favouriteColour": "blue"}),
            ("error", "favouriteColour"),
        ),
        (
            '{"type":"RECORD","stream":"accounts_payable__vendor","record":{"id":"BAD-BROKEN"',
            ("error", "JSON"),
        ),
        ("this is not json at all", ("error", "JSON")),
        (schema("vendor_updates"), None),
        (
            record({"id": "BAD-NOKEY", "name": "update without key"}, "vendor_updates"),
            ("error", "key"),
        ),
        (schema("vendor_deletes"), None),
        (
            record(
                {"id": "BAD-NODELKEY", "_sdc_deleted_at": "2025-01-01T00:00:00Z"}, "vendor_deletes"
            ),
            ("error", "key"),
        ),
        (schema("no_such_stream"), None),
        (record({"id": "BAD-LOST"}, "no_such_stream"), ("error", "no_such_stream")),
        (record({"id": "BAD-GOOD2", "name": "Good after the bad ones"}), ("ok", None)),
        (json.dumps({"type": "STATE", "value": {"done": True}}), None),
    ]
    text = "\n".join(line for line, _ in lines) + "\n"
    expected = {n: exp for n, (_, exp) in enumerate(lines, start=1) if exp is not None}
    return text, expected


@pytest.mark.parametrize("on_error", ["continue", "fail"])
def test_bad_input_every_record_line_gets_one_result_with_a_reason(
    emulator: Any, tmp_path: Path, collector: Collector, on_error: str
) -> None:
    text, expected = _bad_input()
    config = target_config(
        emulator,
        tmp_path,
        on_error=on_error,
        allow_deletes=True,
        streams={
            "vendor_updates": {"object": VENDOR, "operation": "update"},
            "vendor_deletes": {"object": VENDOR, "operation": "delete"},
        },
    )
    result = run_target(write_config(tmp_path / "t.json", config), text)
    if on_error == "continue":
        assert result.returncode == 0, result.describe()
        collector.runs_completed += 1
    else:
        assert result.returncode != 0
        assert "failed" in result.stderr.splitlines()[-1] or "on_error=fail" in result.stderr
        collector.runs_stopped_cleanly += 1

    results = results_of(tmp_path / "results.jsonl")
    by_line = Counter(r.get("line") for r in results)
    assert set(by_line) == set(expected), f"lines with results {sorted(by_line, key=str)}"
    assert all(n == 1 for n in by_line.values()), "exactly one result per record line"
    for r in results:
        status, word = expected[r["line"]]
        assert r["status"] == status, r
        if status == "error":
            reason = r["error"]
            assert f"line {r['line']}" in reason, reason
            assert word is not None
            assert word.lower() in reason.lower(), f"reason must name {word!r}: {reason}"
            collector.bad_inputs[r.get("errorCode") or "error"] += 1
    assert "STATE" not in result.stdout or '"done": true' in result.stdout
    held = vendor_ids(emulator)
    assert held["BAD-GOOD1"] == 1
    assert held["BAD-GOOD2"] == 1
    assert not [i for i in held if i.startswith("BAD-") and "GOOD" not in i]


def test_record_before_schema_is_one_error_result_and_the_load_goes_on(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    text = (
        "\n".join(
            [
                schema(),
                record({"id": "ORDER-1", "name": "Before"}),
                record({"id": "C-ORPHAN"}, "accounts_receivable__customer"),
                record({"id": "ORDER-2", "name": "After"}),
            ]
        )
        + "\n"
    )
    config = target_config(emulator, tmp_path, on_error="fail")
    result = run_target(write_config(tmp_path / "t.json", config), text)
    assert result.returncode == 1, "on_error=fail decides the exit code, at the end"
    assert "accounts_receivable__customer" in result.stderr
    assert "schema" in result.stderr.lower()
    collector.runs_completed += 1

    results = results_of(tmp_path / "results.jsonl")
    by_line = {r["line"]: r for r in results}
    assert by_line[2]["status"] == "ok", "the record read before the bad line was written"
    assert by_line[3]["status"] == "error"
    assert "line 3" in by_line[3]["error"]
    assert by_line[4]["status"] == "ok", "the record read after the bad line was written"
    collector.bad_inputs[by_line[3].get("errorCode") or "record before schema"] += 1
    assert vendor_ids(emulator)["ORDER-1"] == 1
    assert vendor_ids(emulator)["ORDER-2"] == 1
