"""SIGKILL in the middle of a run, then a rerun: nothing lost, nothing written twice.

The tap is killed after it has emitted a STATE (so part of the sync is committed) and while
it is emitting the next stream; the rerun starts from the last STATE line it printed, which is
exactly what an orchestrator would have persisted. The target is killed mid-load and rerun on
the same input: idempotency keys and upsert by natural key must leave every record once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reliability.harness import (
    SEED,
    STREAMS,
    TAP,
    TARGET,
    VENDOR,
    Collector,
    emulator_keys,
    emulator_rows,
    kill_when,
    kill_when_file,
    run_tap,
    run_target,
    stop_faults,
    tap_config,
    target_config,
    write_config,
)


def _records_by_stream(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {stream: [] for stream in STREAMS.values()}
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # the kill can cut the last line in half
        if message.get("type") == "RECORD":
            out[message["stream"]].append(str(message["record"]["key"]))
    return out


def test_tap_killed_mid_stream_resumes_from_last_state(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    emulator.set_faults(latency_ms=60)  # each page takes a while: the kill lands mid-stream
    config = write_config(tmp_path / "tap.json", tap_config(emulator, tmp_path))

    def after_state_and_more_records(lines: list[str]) -> bool:
        states = [i for i, line in enumerate(lines) if line.startswith('{"type":"STATE"')]
        return bool(states) and any('"type":"RECORD"' in x for x in lines[states[0] + 1 :])

    lines, killed = kill_when([TAP, "--config", str(config)], after_state_and_more_records)
    assert killed, "the tap finished before it could be killed: make it slower"
    collector.fault("SIGKILL (tap mid-stream)")
    collector.runs_stopped_cleanly += 1
    states = [json.loads(x)["value"] for x in lines if x.startswith('{"type":"STATE"')]
    first = _records_by_stream(lines)
    finished = [s for s in STREAMS.values() if s in states[-1].get("bookmarks", {})]
    assert finished, "the last STATE bookmarks the stream that completed"

    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(states[-1]))
    stop_faults(emulator)
    second = run_tap(config, "--state", str(state_path))
    assert second.returncode == 0, second.describe()
    collector.runs_completed += 1

    for object_name, stream in STREAMS.items():
        expected = emulator_keys(emulator, object_name)
        rerun = [str(r["key"]) for r in second.records(stream)]
        assert len(set(rerun)) == len(rerun), f"{stream}: the rerun emitted a record twice"
        assert len(set(first[stream])) == len(first[stream]), f"{stream}: duplicates in run 1"
        missing, _ = collector.verified(expected, set(first[stream]) | set(rerun))
        assert not missing, f"{stream}: {len(missing)} records never emitted, e.g. {missing}"
        if stream in finished:
            assert len(rerun) < SEED, f"{stream} was bookmarked, yet re-read from the start"


def _vendor_input(prefix: str, count: int, state_every: int) -> str:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": ["string", "null"]}},
    }
    lines = [
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": "accounts_payable__vendor",
                "schema": schema,
                "key_properties": ["id"],
            }
        )
    ]
    for i in range(count):
        record = {"id": f"{prefix}{i:04d}", "name": f"Crash test vendor {i}"}
        lines.append(
            json.dumps({"type": "RECORD", "stream": "accounts_payable__vendor", "record": record})
        )
        if (i + 1) % state_every == 0:
            lines.append(json.dumps({"type": "STATE", "value": {"done": i + 1}}))
    return "\n".join(lines) + "\n"


def test_target_killed_mid_load_rerun_writes_each_record_once(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    count = 300
    prefix = "RELK"
    input_path = tmp_path / "input.singer"
    input_path.write_text(_vendor_input(prefix, count, 25))
    results = tmp_path / "results.jsonl"
    config = write_config(
        tmp_path / "target.json",
        target_config(emulator, tmp_path, batch_size=25, results_path=str(results)),
    )
    emulator.set_faults(latency_ms=80)

    killed = kill_when_file([TARGET, "--config", str(config)], input_path, results, 60)
    assert killed, "the target finished before it could be killed"
    collector.fault("SIGKILL (target mid-load)")
    collector.runs_stopped_cleanly += 1
    written_before = len(
        [r for r in emulator_rows(emulator, VENDOR, ("key", "id")) if r["id"].startswith(prefix)]
    )
    assert 0 < written_before < count, "the kill landed mid-load"

    stop_faults(emulator)
    rerun_results = tmp_path / "rerun.jsonl"
    config2 = write_config(
        tmp_path / "target2.json",
        target_config(emulator, tmp_path, batch_size=25, results_path=str(rerun_results)),
    )
    second = run_target(config2, input_path.read_text())
    assert second.returncode == 0, second.describe()
    collector.runs_completed += 1

    held = [r["id"] for r in emulator_rows(emulator, VENDOR, ("key", "id"))]
    ours = [i for i in held if i.startswith(prefix)]
    missing, dupes = collector.verified([f"{prefix}{i:04d}" for i in range(count)], ours)
    assert not missing, f"lost {len(missing)} vendors"
    assert dupes == 0, f"{dupes} vendors were created twice"
    lines = [json.loads(x) for x in rerun_results.read_text().splitlines()]
    assert len(lines) == count
    assert all(r["status"] == "ok" for r in lines), [r for r in lines if r["status"] != "ok"][:2]
    updated = sum(1 for r in lines if r["operation"] == "update")
    assert updated >= written_before, "records written before the crash are updated, not re-created"
