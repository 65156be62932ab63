"""target-intacct's results are true, with the default retry settings (issue 11).

Every other module of this suite shortens the retry waits to stay fast; these runs keep the
defaults a user has (5 retries, full-jitter backoff from 1 s, server-directed waits honoured),
because the bugs they guard against (a replay reported as a fresh write, a written record
reported as failed, a load aborted by one line) live exactly in the retry and rerun paths.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reliability.harness import (
    COLLECTOR,
    TARGET,
    VENDOR,
    Collector,
    Run,
    emulator_rows,
    kill_when_file,
    run_target,
    stop_faults,
    target_config,
    write_config,
)
from tests.support.target_runs import BILL_SCHEMA, BILLS, VENDOR_SCHEMA, VENDORS, bill

BILL = "accounts-payable/bill"


def default_retries(emulator: Any, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The harness's target config without its shortened retry settings."""
    config = target_config(emulator, tmp_path, **extra)
    config.pop("max_retries", None)
    config.pop("max_retry_wait", None)
    return config


def run_default(config_path: Path, text: str) -> Run:
    """One target run with the default retry settings (counted for the summary)."""
    COLLECTOR.default_retry_runs += 1
    return run_target(config_path, text)


def singer(stream: str, schema: dict[str, Any], keys: list[str], records: list[Any]) -> str:
    lines = [
        json.dumps({"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": keys})
    ]
    lines += [json.dumps({"type": "RECORD", "stream": stream, "record": r}) for r in records]
    return "\n".join(lines) + "\n"


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def a_vendor_id(emulator: Any) -> str:
    return str(emulator_rows(emulator, VENDOR, ("key", "id"))[0]["id"])


def test_status_sequence_and_identical_bills_are_real_writes(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    config = write_config(tmp_path / "t.json", default_retries(emulator, tmp_path))
    results = tmp_path / "results.jsonl"
    vendor_id = a_vendor_id(emulator)
    for status in ("inactive", "active", "inactive"):
        text = singer(VENDORS, VENDOR_SCHEMA, ["id"], [{"id": vendor_id, "status": status}])
        run = run_default(config, text)
        assert run.returncode == 0, run.describe()
        collector.runs_completed += 1
        (result,) = results_of(results)
        assert (result["status"], result["operation"]) == ("ok", "update")
        assert not result.get("replayed")
        held = {
            str(r["id"]): r["status"] for r in emulator_rows(emulator, VENDOR, ("id", "status"))
        }
        assert held[vendor_id] == status, "the write reported ok must have happened"
        collector.records_verified += 1

    before = len(emulator_rows(emulator, BILL, ("key",)))
    bills_config = write_config(
        tmp_path / "b.json",
        default_retries(emulator, tmp_path, operation="create", batch_size=1),
    )
    text = singer(BILLS, BILL_SCHEMA, ["billNumber"], [bill("SAME", vendor_id)] * 1000)
    run = run_default(bills_config, text)
    assert run.returncode == 0, run.describe()
    collector.runs_completed += 1
    lines = results_of(results)
    assert Counter(r["status"] for r in lines) == {"ok": 1000}
    assert len({r["key"] for r in lines}) == 1000, "1,000 identical bills are 1,000 bills"
    assert len(emulator_rows(emulator, BILL, ("key",))) - before == 1000
    collector.records_verified += 1000


@pytest.mark.parametrize("kill_after", [20, 120, 230])
def test_upsert_killed_at_several_points_and_rerun_holds_each_record_once(
    emulator: Any, tmp_path: Path, collector: Collector, kill_after: int
) -> None:
    count, prefix = 300, f"TRUTH{kill_after}-"
    records = [{"id": f"{prefix}{i:04d}", "name": f"Truth {i}"} for i in range(count)]
    input_path = tmp_path / "input.singer"
    input_path.write_text(singer(VENDORS, VENDOR_SCHEMA, ["id"], records))
    results = tmp_path / "results.jsonl"
    config = write_config(tmp_path / "t.json", default_retries(emulator, tmp_path, batch_size=25))
    emulator.set_faults(latency_ms=80)
    COLLECTOR.default_retry_runs += 1
    killed = kill_when_file([TARGET, "--config", str(config)], input_path, results, kill_after)
    assert killed, "the target finished before it could be killed"
    collector.fault("SIGKILL (target mid-load, default retries)")
    collector.runs_stopped_cleanly += 1

    stop_faults(emulator)
    run = run_default(config, input_path.read_text())
    assert run.returncode == 0, run.describe()
    collector.runs_completed += 1
    rows = emulator_rows(emulator, VENDOR, ("key", "id", "name"))
    ours = [r for r in rows if str(r["id"]).startswith(prefix)]
    missing, dupes = collector.verified([r["id"] for r in records], [r["id"] for r in ours])
    assert not missing
    assert dupes == 0
    held = {str(r["id"]): r for r in ours}
    for result, record in zip(results_of(results), records, strict=True):
        assert result["status"] == "ok"
        assert result["key"] == str(held[record["id"]]["key"]), "the result names the record"
        assert held[record["id"]]["name"] == record["name"]


def test_double_401_inside_one_write_completes_with_exact_data(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    records = [{"id": f"TOK-{i}", "name": f"Token {i}"} for i in range(20)]
    config = write_config(
        tmp_path / "t.json", default_retries(emulator, tmp_path, operation="create")
    )
    emulator.set_faults(fail_next=[401, 503, 401])
    run = run_default(config, singer(VENDORS, VENDOR_SCHEMA, ["id"], records))
    assert run.returncode == 0, run.describe()
    collector.fault("401 twice inside one request's retries")
    collector.runs_completed += 1
    assert Counter(r["status"] for r in results_of(tmp_path / "results.jsonl")) == {"ok": 20}
    held = Counter(
        str(r["id"]) for r in emulator_rows(emulator, VENDOR) if str(r["id"]).startswith("TOK-")
    )
    missing, dupes = collector.verified([r["id"] for r in records], held.elements())
    assert not missing
    assert dupes == 0


def test_lost_answers_are_unknown_then_a_rerun_settles_them_without_writing_twice(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    records = [{"id": f"LOST-{i}", "name": "Lost"} for i in range(5)]
    config = write_config(
        tmp_path / "t.json", default_retries(emulator, tmp_path, operation="create")
    )
    text = singer(VENDORS, VENDOR_SCHEMA, ["id"], records)
    emulator.set_faults(drop_next=6)  # executed, then the answer to every attempt lost
    first = run_default(config, text)
    collector.fault("answer lost on every attempt", 6)
    assert first.returncode == 0, first.describe()  # on_error=continue
    assert "unknown 5" in first.stderr
    lines = results_of(tmp_path / "results.jsonl")
    assert Counter(r["status"] for r in lines) == {"unknown": 5}, "never 'error': it was written"
    stop_faults(emulator)
    rerun = run_default(config, text)
    assert rerun.returncode == 0, rerun.describe()
    collector.runs_completed += 2
    settled = results_of(tmp_path / "results.jsonl")
    assert [(r["status"], r.get("replayed")) for r in settled] == [("ok", True)] * 5
    held = [
        str(r["id"]) for r in emulator_rows(emulator, VENDOR) if str(r["id"]).startswith("LOST-")
    ]
    missing, dupes = collector.verified([r["id"] for r in records], held)
    assert not missing
    assert dupes == 0


def test_one_unencodable_number_among_500_fails_alone(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    lines = [
        json.dumps(
            {"type": "SCHEMA", "stream": VENDORS, "schema": VENDOR_SCHEMA, "key_properties": ["id"]}
        )
    ]
    for i in range(500):
        limit = "1e309" if i == 250 else f"{i}.25"
        lines.append(
            f'{{"type": "RECORD", "stream": "{VENDORS}", "record": {{"id": "BIG-{i:03d}", '
            f'"name": "n", "creditLimit": {limit}}}}}'
        )
    config = write_config(
        tmp_path / "t.json", default_retries(emulator, tmp_path, operation="create")
    )
    run = run_default(config, "\n".join(lines) + "\n")
    assert run.returncode == 0, run.describe()
    collector.runs_completed += 1
    results = results_of(tmp_path / "results.jsonl")
    assert len(results) == 500
    (bad,) = [r for r in results if r["status"] != "ok"]
    assert "BIG-250" in bad["error"]
    assert "field 'creditLimit'" in bad["error"]
    collector.bad_inputs["number out of range"] += 1
    held = [
        str(r["id"]) for r in emulator_rows(emulator, VENDOR) if str(r["id"]).startswith("BIG-")
    ]
    missing, dupes = collector.verified([f"BIG-{i:03d}" for i in range(500) if i != 250], held)
    assert not missing
    assert dupes == 0
