"""Bulk jobs (issue 16): the emulator's bulk service, the engine's bulk path, the target's
``write_mode``. Everything over real loopback HTTP against the emulator.

What is promised and checked here: a bulk write gives the same per-record results as the batch
path (status, key/id/href, echoed request, input line, input order) with a handful of job
calls; one failing record fails alone; a job that fails, is killed mid-way or whose results
cannot be read leaves its records ``unknown`` with the job id, and a rerun (upsert) resolves
them by look-up without creating anything twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from intacct_api.bulk import BulkWriter
from intacct_api.client import IntacctClient
from intacct_api.errors import ConfigError
from intacct_api.mutate import MutateEngine, MutateItem, MutateResult
from intacct_api.settings import ConnectionSettings
from intacct_api.spec import SpecRegistry, default_registry
from intacct_emulator.testing import EmulatorServer
from tests.support.target_runs import emulator_config, results_of, run_target

CUSTOMER = "accounts-receivable/customer"
CUSTOMERS = "accounts_receivable__customer"
CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "name": {"type": ["string", "null"]}},
}


@pytest.fixture(scope="module")
def registry() -> SpecRegistry:
    return default_registry()


@pytest.fixture
def client(emulator: EmulatorServer, tmp_path: Path) -> Iterator[IntacctClient]:
    emulator.reset()
    bulk_knobs(emulator, reset=True)
    settings = ConnectionSettings(
        base_url=emulator.base_url,
        client_id="demo-client",
        client_secret="demo-secret",
        username="admin@DEMO",
        token_store=str(tmp_path / "tokens.json"),
        max_retries=2,  # an always-failing download gives up quickly
    )
    with IntacctClient(settings) as api:
        yield api
    bulk_knobs(emulator, reset=True)


@pytest.fixture
def api(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    """An authenticated HTTP client against this module's (freshly reset) emulator."""
    emulator.reset()
    bulk_knobs(emulator, reset=True)
    with httpx.Client(
        base_url=emulator.base_url, headers=emulator.auth_headers(), timeout=10
    ) as http:
        yield http
    bulk_knobs(emulator, reset=True)


def bulk_knobs(emulator: EmulatorServer, **knobs: Any) -> dict[str, Any]:
    """POST /_emulator/bulk (the emulator's pace and faults of bulk jobs)."""
    answer = emulator.http.post(emulator.root_url + "/_emulator/bulk", json=knobs)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def writes(emulator: EmulatorServer) -> dict[str, int]:
    """Request counts without the token call."""
    return {k: v for k, v in emulator.requests().items() if "oauth2" not in k}


def customers(count: int, suffix: str = "", prefix: str = "BK") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i:06d}", "name": f"Customer {i}{suffix}"} for i in range(count)]


def run_bulk(
    engine: MutateEngine, records: list[dict[str, Any]], operation: str = "upsert"
) -> list[MutateResult]:
    """Plan in drains of 500 (as the target does) and send everything as bulk jobs."""
    items = [
        MutateItem(record=r, operation=operation, index=i, line=i + 2)
        for i, r in enumerate(records)
    ]
    plans = [engine.plan_items(CUSTOMER, items[i : i + 500]) for i in range(0, len(items), 500)]
    return engine.run_bulk(plans)


def stored(client: IntacctClient, prefix: str = "BK") -> list[dict[str, Any]]:
    """Every customer whose id starts with ``prefix``, as the emulator holds it (all pages)."""
    rows: list[dict[str, Any]] = []
    start: int | None = 1
    while start is not None:
        body = {
            "object": CUSTOMER,
            "fields": ["key", "id", "name"],
            "filters": [{"$contains": {"id": prefix}}],
            "orderBy": [{"key": "asc"}],
            "start": start,
            "size": 4000,
        }
        payload = client.query(body).json()
        rows.extend(payload["ia::result"])
        start = payload["ia::meta"].get("next")
    return rows


# -- the engine's bulk path --------------------------------------------------------------


def test_bulk_upsert_writes_each_record_once_with_a_handful_of_job_calls(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    records = customers(3000)
    results = run_bulk(MutateEngine(registry, client), records)
    calls = writes(emulator)

    assert [r.index for r in results] == list(range(3000))
    assert [r.line for r in results] == [i + 2 for i in range(3000)]
    assert Counter(r.status for r in results) == {"ok": 3000}
    assert {r.operation for r in results} == {"create"}
    assert all(r.note and r.note.startswith("bulk job ") for r in results)
    assert results[7].request == records[7]
    rows = stored(client)
    assert len(rows) == 3000 == len({row["id"] for row in rows})
    by_id = {row["id"]: str(row["key"]) for row in rows}
    for result in results:  # results match the emulator's records one to one
        assert result.key == by_id[result.id or ""]
        assert result.href == f"/objects/{CUSTOMER}/{result.key}"
    assert calls["POST /services/bulk/job/create"] == 1
    assert calls["GET /services/bulk/job/status"] == 2  # one poll, one download
    assert calls["POST /services/core/query"] == 6  # look-ups: 3000 values in chunks of 500
    assert f"POST /objects/{CUSTOMER}" not in calls


def test_bulk_upsert_rerun_updates_one_update_job_and_no_duplicates(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    first = run_bulk(engine, customers(1200))
    mixed = customers(1500, suffix=" v2")  # 1200 exist, 300 are new
    second = run_bulk(engine, mixed)

    assert Counter(r.status for r in second) == {"ok": 1500}
    assert Counter(r.operation for r in second) == {"update": 1200, "create": 300}
    assert [r.key for r in second[:1200]] == [r.key for r in first]
    rows = stored(client)
    assert len(rows) == 1500 == len({row["id"] for row in rows})
    assert {row["name"] for row in rows} == {f"Customer {i} v2" for i in range(1500)}
    assert writes(emulator)["POST /services/bulk/job/create"] == 3  # create; create + update


def test_a_natural_key_repeated_in_the_input_is_created_once_then_updated(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    records = [
        *customers(3),
        {"id": "BK000001", "name": "second"},
        {"id": "BK000001", "name": "third"},
    ]
    results = run_bulk(MutateEngine(registry, client), records)

    assert [r.status for r in results] == ["ok"] * 5
    assert [r.operation for r in results] == ["create", "create", "create", "update", "update"]
    assert results[3].key == results[4].key == results[1].key
    rows = stored(client)
    assert len(rows) == 3
    assert {row["id"]: row["name"] for row in rows}["BK000001"] == "third"
    # round 1 creates the three; round 2 updates BK000001 twice, in input order, in one job
    assert writes(emulator)["POST /services/bulk/job/create"] == 2


def test_a_record_the_job_refuses_fails_alone_in_input_order(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    run_bulk(engine, customers(1))  # BK000000 exists
    results = run_bulk(engine, customers(5), operation="create")

    assert [r.status for r in results] == ["error", "ok", "ok", "ok", "ok"]
    assert results[0].error_code == "REST-1053"
    assert "already exists" in (results[0].error or "")
    assert results[0].line == 2
    assert results[0].request == customers(1)[0]
    assert len(stored(client)) == 5


def test_invalid_records_are_refused_before_the_job_as_in_batch_mode(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    records = [*customers(2), {"id": "BK-BAD", "name": 42}]
    results = run_bulk(MutateEngine(registry, client), records)

    assert [r.status for r in results] == ["ok", "ok", "error"]
    assert "name" in (results[2].error or "")
    assert len(stored(client)) == 2


def test_a_job_killed_mid_way_is_unknown_and_a_rerun_leaves_no_duplicate(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    bulk_knobs(emulator, kill_after_records=700)
    records = customers(2000)
    killed = run_bulk(engine, records)

    assert Counter(r.status for r in killed) == {"unknown": 2000}
    assert {r.error_code for r in killed} == {"bulkJobFailed"}
    job = killed[0].note or ""
    assert job.startswith("bulk job ")
    assert all(r.note == job for r in killed)
    assert job.removeprefix("bulk job ") in (killed[0].error or "")
    assert len(stored(client)) == 700  # the job wrote its first 700 records, then died

    rerun = run_bulk(engine, records)
    assert Counter(r.status for r in rerun) == {"ok": 2000}
    assert Counter(r.operation for r in rerun) == {"update": 700, "create": 1300}
    rows = stored(client)
    assert len(rows) == 2000 == len({row["id"] for row in rows})


@pytest.mark.parametrize(
    ("knobs", "code"),
    [({"fail_jobs": 1}, "bulkJobFailed"), ({"fail_downloads": 99}, "bulkResultsUnavailable")],
)
def test_a_failed_job_or_an_unreadable_results_file_leaves_records_unknown(
    emulator: EmulatorServer,
    client: IntacctClient,
    registry: SpecRegistry,
    knobs: dict[str, int],
    code: str,
) -> None:
    bulk_knobs(emulator, **knobs)
    results = run_bulk(MutateEngine(registry, client), customers(30))

    assert {r.status for r in results} == {"unknown"}
    assert {r.error_code for r in results} == {code}
    assert all("bulk job" in (r.error or "") for r in results)
    assert not any(r.ok for r in results)


def test_a_download_failing_once_is_retried_and_the_records_are_ok(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    bulk_knobs(emulator, fail_downloads=1)
    results = run_bulk(MutateEngine(registry, client), customers(20))

    assert Counter(r.status for r in results) == {"ok": 20}
    assert writes(emulator)["GET /services/bulk/job/status"] == 3  # poll, 500, download
    assert bulk_knobs(emulator)["fail_downloads"] == 0


def test_a_lost_answer_to_the_job_submission_is_unknown_and_never_re_sent(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    emulator.set_faults(fail_next=[500])  # no Idempotency-Key: a resend could run it twice
    results = run_bulk(MutateEngine(registry, client), customers(10), operation="create")

    assert {r.status for r in results} == {"unknown"}
    assert all("submission may have been accepted" in (r.error or "") for r in results)
    assert writes(emulator)["POST /services/bulk/job/create"] == 1


def test_records_beyond_the_per_job_bound_go_in_further_jobs_in_input_order(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    items = [
        MutateItem(record=r, operation="create", index=i) for i, r in enumerate(customers(2500))
    ]
    plans = [engine.plan_items(CUSTOMER, items[i : i + 500]) for i in range(0, 2500, 500)]
    results = BulkWriter(engine, records_per_job=1000).run(plans)

    assert [r.id for r in results] == [c["id"] for c in customers(2500)]
    assert len({r.note for r in results}) == 3  # three jobs: 1000, 1000, 500
    assert writes(emulator)["POST /services/bulk/job/create"] == 3
    assert len(stored(client)) == 2500


def test_polling_follows_the_job_through_its_states_with_growing_bounded_waits(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    bulk_knobs(emulator, polls_per_state=2, records_per_poll=400)
    engine = MutateEngine(registry, client)
    waits: list[float] = []
    items = [
        MutateItem(record=r, operation="create", index=i) for i, r in enumerate(customers(1000))
    ]
    plan = engine.plan_items(CUSTOMER, items)
    results = BulkWriter(engine, sleep=waits.append).run([plan])

    assert Counter(r.status for r in results) == {"ok": 1000}
    # 2 polls queued, 1 starting + 2 more processing 400 records each, + the download
    assert writes(emulator)["GET /services/bulk/job/status"] == 6
    assert len(waits) == 4
    assert waits == sorted(waits)
    assert waits[0] > 0
    assert max(waits) <= 10


def test_a_job_still_running_at_the_poll_timeout_is_unknown(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    bulk_knobs(emulator, polls_per_state=1000)
    engine = MutateEngine(registry, client)
    plan = engine.plan_items(
        CUSTOMER, [MutateItem(record=r, operation="create") for r in customers(3)]
    )
    results = BulkWriter(engine, poll_timeout=0, sleep=lambda _s: None).run([plan])

    assert {r.status for r in results} == {"unknown"}
    assert {r.error_code for r in results} == {"bulkJobTimeout"}


def test_bulk_deletes_and_deleting_again_is_already_deleted(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    created = run_bulk(engine, customers(40))
    keys = [{"key": r.key} for r in created]
    deleted = run_bulk(engine, keys, operation="delete")
    again = run_bulk(engine, keys, operation="delete")

    assert Counter(r.status for r in deleted) == {"ok": 40}
    assert {r.operation for r in deleted} == {"delete"}
    assert stored(client) == []
    assert Counter(r.status for r in again) == {"ok": 40}
    assert all((r.note or "").startswith("already deleted") for r in again)
    assert f"DELETE /objects/{CUSTOMER}/{{key}}" not in writes(emulator)


def test_owned_lines_in_bulk_mode_go_through_their_owner_and_headers_by_a_job(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    """Lines cannot be bulk-created (no create operation of their own): the bulk path sends
    them as the batch path does, through the owner's PATCH; their owners go by a job."""
    engine = MutateEngine(registry, client)
    entry = {
        "glJournal": {"id": "GJ"},
        "postingDate": "2024-01-05",
        "description": "bulk header",
        "lines": [
            {"txnType": "debit", "txnAmount": "10.50", "glAccount": {"id": "1000"}},
            {"txnType": "credit", "txnAmount": "10.50", "glAccount": {"id": "2000"}},
        ],
    }
    header_plan = engine.plan_items(
        "general-ledger/journal-entry", [MutateItem(record=entry, operation="create")]
    )
    [header] = engine.run_bulk([header_plan])
    assert header.ok, header.error
    lines = [
        {
            "journalEntry": {"key": header.key},
            "txnType": side,
            "txnAmount": "1.25",
            "glAccount": {"id": account},
        }
        for side, account in (("debit", "1000"), ("credit", "2000"))
    ]
    line_plan = engine.plan_items(
        "general-ledger/journal-entry-line",
        [MutateItem(record=r, operation="create", index=i) for i, r in enumerate(lines)],
    )
    results = engine.run_bulk([line_plan])

    assert [r.status for r in results] == ["ok", "ok"]
    calls = writes(emulator)
    assert calls["POST /services/bulk/job/create"] == 1  # the header
    assert calls["PATCH /objects/general-ledger/journal-entry/{key}"] == 1  # the lines
    stored_entry = client.request("GET", f"/objects/general-ledger/journal-entry/{header.key}")
    amounts = sorted(line["txnAmount"] for line in stored_entry.json()["ia::result"]["lines"])
    assert amounts == ["1.25", "1.25", "10.50", "10.50"]


def test_atomic_writes_never_go_by_bulk_jobs(registry: SpecRegistry) -> None:
    """A bulk job has no all-or-nothing mode: atomic keeps auto on batches, refuses bulk."""
    assert MutateEngine(registry, dry_run=True, atomic=True, write_mode="auto").write_mode == (
        "batch"
    )
    with pytest.raises(ConfigError, match="cannot be atomic"):
        MutateEngine(registry, dry_run=True, atomic=True, write_mode="bulk")


def test_a_record_updated_then_deleted_in_the_input_is_updated_first(
    emulator: EmulatorServer, client: IntacctClient, registry: SpecRegistry
) -> None:
    engine = MutateEngine(registry, client)
    [created] = run_bulk(engine, customers(1))
    items = [
        MutateItem(record={"id": "BK000000", "name": "renamed"}, operation="upsert", index=0),
        MutateItem(record={"key": created.key}, operation="delete", index=1),
    ]
    results = engine.run_bulk([engine.plan_items(CUSTOMER, items)])

    assert [(r.operation, r.status) for r in results] == [("update", "ok"), ("delete", "ok")]
    assert results[1].note is not None
    assert not results[1].note.startswith("already deleted")
    assert stored(client) == []


# -- the emulator's bulk service, as a client of the documented shape would see it -------


def _create(api: httpx.Client, spec: Any, file_name: str, records: Any) -> httpx.Response:
    return api.post(
        "/services/bulk/job/create",
        data={"ia::requestBody": json.dumps(spec)},
        files={file_name: ("customers.json", json.dumps(records).encode(), "application/json")},
    )


def test_emulator_bulk_job_lifecycle_and_documented_shapes(
    emulator: EmulatorServer, api: httpx.Client
) -> None:
    bulk_knobs(emulator, reset=True, polls_per_state=1)
    spec = {
        "objectName": CUSTOMER,
        "operation": "create",
        "jobFile": "customers.json",
        "fileContentType": "json",
    }
    # the file part named after jobFile (one of the two forms the sources show)
    created = _create(api, spec, "customers.json", customers(3, prefix="EM"))
    assert created.status_code == 200
    job = created.json()["ia::result"]
    assert job["statusURL"] == f"/services/bulk/job/status?jobId={job['jobId']}"
    assert job["createdDateTime"]

    def status() -> dict[str, Any]:
        found: dict[str, Any] = api.get(
            "/services/bulk/job/status", params={"jobId": job["jobId"]}
        ).json()["ia::result"]
        return found

    early = api.get("/services/bulk/job/status", params={"jobId": job["jobId"], "download": "true"})
    assert early.status_code == 400
    assert status()["status"] == "queued"
    done = status()
    assert done["status"] == "completed"
    assert done["percentComplete"] == 100
    assert done["downloadURL"].endswith("&download=true")
    download = api.get(
        "/services/bulk/job/status", params={"jobId": job["jobId"], "download": "true"}
    ).json()
    assert [r["id"] for r in download["ia::result"]] == ["EM000000", "EM000001", "EM000002"]
    assert download["ia::meta"] == {"totalCount": 3, "totalSuccess": 3, "totalError": 0}
    bulk_knobs(emulator, reset=True)


def test_emulator_bulk_refuses_malformed_jobs(emulator: EmulatorServer, api: httpx.Client) -> None:
    spec = {
        "objectName": CUSTOMER,
        "operation": "merge",
        "jobFile": "c.json",
        "fileContentType": "json",
    }
    assert _create(api, spec, "file", []).status_code == 400  # unknown operation
    no_body = api.post("/services/bulk/job/create", json={"objectName": CUSTOMER})
    assert no_body.status_code == 400  # not multipart
    spec["operation"] = "create"
    assert _create(api, spec, "file", {"id": "x"}).status_code == 400  # not an array
    spec["objectName"] = "accounts-receivable/nothing"
    assert _create(api, spec, "file", []).status_code == 404
    missing = api.get("/services/bulk/job/status", params={"jobId": "no-such-job"})
    assert missing.status_code == 404


# -- the target: write_mode -----------------------------------------------------------


def _singer_file(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    lines = [
        {"type": "SCHEMA", "stream": CUSTOMERS, "schema": CUSTOMER_SCHEMA, "key_properties": ["id"]}
    ]
    lines += [{"type": "RECORD", "stream": CUSTOMERS, "record": r} for r in records]
    lines.append({"type": "STATE", "value": {"bookmarks": {CUSTOMERS: {"done": True}}}})
    path = tmp_path / "input.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_target_write_mode_bulk_matches_the_batch_results_shape(
    emulator: EmulatorServer, client: IntacctClient, tmp_path: Path
) -> None:
    """The issue's "done when" at 20,000 customers (benchmarks/bench_bulk.py runs 200,000):
    written once each, results one to one with the emulator's records, a handful of calls."""
    count = 20_000
    records = customers(count, prefix="TB")
    config = emulator_config(emulator, tmp_path, write_mode="bulk")
    done = run_target(config, _singer_file(tmp_path, records), tmp_path)
    calls = writes(emulator)

    assert done.returncode == 0, done.stderr[-2000:]
    results = results_of(config)
    assert [r["index"] for r in results] == list(range(count))
    assert [r["line"] for r in results] == [i + 2 for i in range(count)]
    assert {r["status"] for r in results} == {"ok"}
    assert results[0]["request"] == records[0]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "bookmarks": {CUSTOMERS: {"done": True}}
    }
    assert calls["POST /services/bulk/job/create"] == 1
    assert calls["GET /services/bulk/job/status"] == 2
    assert f"POST /objects/{CUSTOMER}" not in calls  # instead of 40 batch requests
    rows = stored(client, prefix="TB")
    assert len(rows) == count == len({row["id"] for row in rows})
    keys = {row["id"]: str(row["key"]) for row in rows}
    assert {r["id"]: r["key"] for r in results} == keys  # one to one


@pytest.mark.parametrize(("count", "batches", "jobs"), [(300, 1, 0), (1200, 2, 1)])
def test_target_write_mode_auto_uses_bulk_above_the_threshold_only(
    emulator: EmulatorServer, tmp_path: Path, count: int, batches: int, jobs: int
) -> None:
    config = emulator_config(emulator, tmp_path, write_mode="auto", bulk_threshold=1000)
    done = run_target(config, _singer_file(tmp_path, customers(count, prefix="TA")), tmp_path)

    assert done.returncode == 0, done.stderr[-2000:]
    results = results_of(config)
    assert [r["index"] for r in results] == list(range(count))
    assert {r["status"] for r in results} == {"ok"}
    calls = writes(emulator)
    # the first 1000 records (two drains of 500) by batch, the rest by one job
    assert calls.get(f"POST /objects/{CUSTOMER}", 0) == batches
    assert calls.get("POST /services/bulk/job/create", 0) == jobs


def test_target_killed_job_reports_unknown_then_rerun_settles_without_duplicates(
    emulator: EmulatorServer, client: IntacctClient, tmp_path: Path
) -> None:
    records = customers(1000, prefix="TK")
    config = emulator_config(emulator, tmp_path, write_mode="bulk")
    bulk_knobs(emulator, kill_after_records=400)
    path = _singer_file(tmp_path, records)
    first = run_target(config, path, tmp_path)

    assert first.returncode == 1  # on_error=fail: unknown outcomes are not success
    assert {r["status"] for r in results_of(config)} == {"unknown"}
    assert all(r["note"].startswith("bulk job ") for r in results_of(config))

    second = run_target(config, path, tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    results = results_of(config)
    assert Counter(r["operation"] for r in results) == {"update": 400, "create": 600}
    rows = stored(client, prefix="TK")
    assert len(rows) == 1000 == len({row["id"] for row in rows})
