"""Bulk jobs: write many records of one object with a handful of calls instead of 500-record
batches, with the same per-record results as the batch path.

Sage's bulk service (``post-bulk-job-create``, ``get-bulk-job-status``; docs/FIDELITY.md):
one multipart POST carries a JSON file of records and answers a job id; the job is polled
until ``completed`` or ``failed``; a completed job's per-record results are downloaded with
``download=true``. Each record is its own transaction, so one failing record fails alone.

What this module keeps from the batch path, so a result means the same whichever path wrote
it:

* **planning**: records arrive as :class:`~intacct_api.mutate_plan.MutatePlan` objects built
  by the engine's planner (validated exactly as in batch mode; invalid records already carry
  their error result and never reach a job);
* **upsert**: natural keys are looked up with the query service in chunks of 500
  (:func:`~intacct_api.mutate_upsert.lookup_keys`, up to ``max_concurrency`` queries at once),
  then one create job and one update job;
* **results**: one :class:`~intacct_api.mutate_results.MutateResult` per record in input
  order, read from the results file by position exactly like a batch answer.

What differs, and why: no ``Idempotency-Key`` is documented for the bulk service, so none is
sent and the create call is never re-sent after a lost answer. A job that fails, cannot be
followed to its end or whose results cannot be downloaded leaves its records **unknown** (some
may have been written; each record is its own transaction) with the job id in the result. A
rerun settles them by the natural-key look-up an upsert does anyway: a record the job wrote
is found and updated, not created twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from intacct_api.client import DEFAULT_ENTITY
from intacct_api.errors import IntacctError
from intacct_api.mutate_plan import MutatePlan, PreparedItem, TaskKind
from intacct_api.mutate_results import (
    ItemOutcome,
    ItemResult,
    MutateResult,
    outcome_from_exception,
    outcomes_from_response,
)
from intacct_api.mutate_send import BODY_ENCODER, already_deleted
from intacct_api.mutate_upsert import lookup_keys, upsert_route

if TYPE_CHECKING:
    from intacct_api.mutate import MutateEngine
    from intacct_api.spec import ObjectInfo

__all__ = [
    "CREATE_PATH",
    "LOOKUP_CHUNK",
    "MAX_RECORDS_PER_JOB",
    "STATUS_PATH",
    "BulkWriter",
]

logger = logging.getLogger("intacct_api.bulk")

CREATE_PATH = "/services/bulk/job/create"
STATUS_PATH = "/services/bulk/job/status"
MAX_RECORDS_PER_JOB = 100_000
"""Records per job. Sage documents no limit; a bound keeps one file (and one lost job) to a
size a rerun settles quickly."""
LOOKUP_CHUNK = 500
"""Match values per upsert look-up query (what one batch looks up)."""
_DONE = ("completed", "failed")
_FIRST_WAIT = 0.25
_MAX_WAIT = 10.0

Position = tuple[int, int]
"""A record's place: (plan number, position in that plan's window)."""


class BulkWriter:
    """Sends planned records as bulk jobs (one engine; one job at a time, in this thread)."""

    def __init__(
        self,
        engine: MutateEngine,
        *,
        poll_timeout: float = 3600.0,
        records_per_job: int = MAX_RECORDS_PER_JOB,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if engine.client is None and not engine.dry_run:  # pragma: no cover - engine checks
            raise ValueError("a client is required unless dry_run is set")
        self.engine = engine
        self.poll_timeout = float(poll_timeout)
        self.records_per_job = max(1, int(records_per_job))
        self._sleep = sleep

    # -- entry point ----------------------------------------------------------------------

    def run(self, plans: Sequence[MutatePlan]) -> list[MutateResult]:
        """Write every plan's records by bulk jobs; one result per item, plans in order."""
        engine = self.engine
        if engine.dry_run:
            return [r for plan in plans for r in engine.run_plan(plan)]
        outcomes: dict[Position, ItemResult] = {}
        groups: dict[tuple[str, str | None], list[tuple[Position, PreparedItem]]] = {}
        upserts: dict[tuple[str, str | None], list[tuple[Position, PreparedItem]]] = {}
        info = plans[0].info if plans else None
        for number, plan in enumerate(plans):
            for task in plan.tasks:
                if task.kind.is_line:  # owned lines go through their owner's PATCH: batches
                    for pos, found in engine.run_task(plan, task).items():
                        outcomes[(number, pos)] = found
                    continue
                placed = [((number, p.pos), p) for p in task.items]
                if task.kind is TaskKind.UPSERT:
                    upserts.setdefault((plan.match_on, task.entity), []).extend(placed)
                else:
                    groups.setdefault((task.kind.operation, task.entity), []).extend(placed)
        while info is not None and (groups or upserts):
            # a round: look up, then the jobs; a natural key new to Intacct that occurs again
            # later in the input waits for the next round, where the look-up finds what this
            # round created (as a later batch's would): updated, not created twice
            later: dict[tuple[str, str | None], list[tuple[Position, PreparedItem]]] = {}
            for (match_on, entity), items in upserts.items():
                deferred = self._split_upserts(info, match_on, entity, items, groups, outcomes)
                if deferred:
                    later[(match_on, entity)] = deferred
            # creates, then updates, then deletes: a record written earlier in the input and
            # deleted later (a tap's _sdc_deleted_at) is not deleted before it is written
            for (operation, entity), items in sorted(groups.items(), key=_job_order):
                for start in range(0, len(items), self.records_per_job):
                    part = items[start : start + self.records_per_job]
                    outcomes.update(self._run_job(info, operation, entity, part))
            groups, upserts = {}, later
        by_plan: list[dict[int, ItemResult]] = [{} for _ in plans]
        for (number, pos), found in outcomes.items():
            by_plan[number][pos] = found
        results: list[MutateResult] = []
        for plan, mine in zip(plans, by_plan, strict=True):
            results.extend(engine.results_for(plan, mine))
        return results

    # -- upsert: look up, then creates and updates --------------------------------------------

    def _split_upserts(
        self,
        info: ObjectInfo,
        match_on: str,
        entity: str | None,
        items: list[tuple[Position, PreparedItem]],
        groups: dict[tuple[str, str | None], list[tuple[Position, PreparedItem]]],
        outcomes: dict[Position, ItemResult],
    ) -> list[tuple[Position, PreparedItem]]:
        """Look the natural keys up in chunks; route each record to the create or update job
        (the same decisions as ``mutate_upsert.run_upsert``, made for a whole job). Returns
        the records whose natural key an earlier record of this round creates."""
        client = self.engine.client
        assert client is not None
        values = sorted(
            {str(p.match_value) for _, p in items if p.key is None and p.match_value is not None}
        )
        existing: dict[str, list[str]] = {}
        chunks = [values[i : i + LOOKUP_CHUNK] for i in range(0, len(values), LOOKUP_CHUNK)]
        try:
            # look-ups are reads: up to max_concurrency at once (a job waits for all of them)
            workers = max(1, min(int(client.settings.max_concurrency or 1), len(chunks) or 1))
            with ThreadPoolExecutor(workers, thread_name_prefix="intacct-bulk-lookup") as pool:
                found = pool.map(
                    lambda chunk: lookup_keys(client, info, match_on, chunk, entity), chunks
                )
                for part in found:
                    for value, keys in part.items():
                        existing.setdefault(value, []).extend(keys)
        except Exception as exc:
            if not isinstance(exc, IntacctError):
                logger.exception("unexpected failure looking up %s", info.name)
            failed = outcome_from_exception(exc)
            failed.error = f"upsert lookup by {match_on!r} failed: {failed.error}"
            for where, p in items:
                outcomes[where] = ItemResult("upsert", failed, p.body)
            return []
        deferred: list[tuple[Position, PreparedItem]] = []
        creating: set[str] = set()
        creates = groups.setdefault(("create", entity), [])
        updates = groups.setdefault(("update", entity), [])
        for where, prepared in items:
            route = upsert_route(prepared, existing, match_on)
            if isinstance(route, ItemResult):
                outcomes[where] = route
            elif route == "update":
                updates.append((where, prepared))
            elif prepared.match_value and str(prepared.match_value) in creating:
                deferred.append((where, prepared))  # created by this round: update next round
            else:
                if prepared.match_value:
                    creating.add(str(prepared.match_value))
                prepared.body = prepared.create_body or {}
                creates.append((where, prepared))
        for operation in ("create", "update"):
            if not groups[(operation, entity)]:
                del groups[(operation, entity)]
        return deferred

    # -- one job ------------------------------------------------------------------------------

    def _run_job(
        self,
        info: ObjectInfo,
        operation: str,
        entity: str | None,
        items: list[tuple[Position, PreparedItem]],
    ) -> dict[Position, ItemResult]:
        """Submit, follow and read one job; every record of it gets an outcome."""
        echo = [p.body if operation != "delete" else {"key": p.key} for _, p in items]
        count = len(items)
        job_id: str | None = None
        try:
            job_id = self._submit(info, operation, entity, echo)
            logger.info("%s: bulk %s job %s with %d records", info.name, operation, job_id, count)
            status = self._wait(job_id, info.name)
            if status != "completed":
                reason = (
                    f"bulk job {job_id} ended {status!r}"
                    if status in _DONE
                    else f"bulk job {job_id} still {status!r} after {self.poll_timeout:g} s"
                )
                code = "bulkJobFailed" if status == "failed" else "bulkJobTimeout"
                outcomes = [_unknown(reason, code, job_id) for _ in range(count)]
            else:
                outcomes = self._download(job_id, info.name, count)
        except Exception as exc:
            if not isinstance(exc, IntacctError):
                logger.exception("unexpected failure in a bulk job for %s", info.name)
            failed = outcome_from_exception(exc)
            if job_id is not None:  # the job exists: it may be writing right now
                reason = f"bulk job {job_id} could not be followed to its end ({failed.error})"
                failed = _unknown(reason, "bulkJobLost", job_id)
            elif failed.unknown:
                failed = _unknown(
                    f"the bulk job submission may have been accepted ({failed.error})",
                    failed.error_code or "bulkSubmitUnknown",
                    None,
                )
            outcomes = [failed for _ in range(count)]
        if operation == "delete":
            outcomes = [
                already_deleted(o, p.key) for o, (_, p) in zip(outcomes, items, strict=True)
            ]
        for outcome in outcomes:
            if job_id is not None and outcome.note is None:
                outcome.note = f"bulk job {job_id}"
        return {
            where: ItemResult(operation, outcome, body)
            for (where, _), outcome, body in zip(items, outcomes, echo, strict=True)
        }

    def _submit(
        self, info: ObjectInfo, operation: str, entity: str | None, records: list[Any]
    ) -> str:
        """``post-bulk-job-create``: the request body part and the JSON file of records."""
        client = self.engine.client
        assert client is not None
        job_file = f"{info.name.replace('/', '-')}-{operation}.json"
        request_body = {
            "objectName": info.name,
            "operation": operation,
            "jobFile": job_file,
            "fileContentType": "json",
        }
        response = client.request(
            "POST",
            CREATE_PATH,
            form={"ia::requestBody": json.dumps(request_body)},
            files={"file": (job_file, BODY_ENCODER.encode(records), "application/json")},
            entity=entity if entity is not None else DEFAULT_ENTITY,
            operation=info.name,
            expected=(200, 201, 202),
        )
        result = _result(response.json())
        job_id = result.get("jobId")
        if not job_id:
            raise IntacctError(f"{info.name}: the bulk service answered no jobId")
        return str(job_id)

    def _wait(self, job_id: str, what: str) -> str:
        """Poll ``get-bulk-job-status`` until the job ends or ``poll_timeout`` passes; waits
        grow from 0.25 s to 10 s (the client itself honours 429/503 retry hints)."""
        client = self.engine.client
        assert client is not None
        deadline = time.monotonic() + self.poll_timeout
        wait = _FIRST_WAIT
        while True:
            answer = client.request(
                "GET", STATUS_PATH, params={"jobId": job_id}, operation=what, expected=(200,)
            )
            result = _result(answer.json())
            status = str(result.get("status") or "")
            if status in _DONE:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return status or "unknown"
            logger.debug(
                "%s: bulk job %s %s (%s%%)", what, job_id, status, result.get("percentComplete")
            )
            self._sleep(min(wait, remaining))
            wait = min(wait * 2, _MAX_WAIT)

    def _download(self, job_id: str, what: str, count: int) -> list[ItemOutcome]:
        """The completed job's results file, read by position like a batch answer."""
        client = self.engine.client
        assert client is not None
        try:
            answer = client.request(
                "GET",
                STATUS_PATH,
                params={"jobId": job_id, "download": "true"},
                operation=what,
                expected=(200,),
            )
            payload = answer.json()
        except IntacctError as exc:
            reason = f"bulk job {job_id} completed but its results could not be read ({exc})"
            return [_unknown(reason, "bulkResultsUnavailable", job_id) for _ in range(count)]
        if isinstance(payload, list):  # a bare array of results is read the same way
            payload = {"ia::result": payload}
        if not isinstance(payload, Mapping) or not isinstance(payload.get("ia::result"), list):
            reason = f"bulk job {job_id} completed but its results file is not a list of results"
            return [_unknown(reason, "bulkResultsUnavailable", job_id) for _ in range(count)]
        outcomes = outcomes_from_response(200, payload, count)
        if len(payload["ia::result"]) < count:  # missing entries: maybe written, not known
            for outcome in outcomes[len(payload["ia::result"]) :]:
                outcome.unknown = True
                outcome.error = f"bulk job {job_id}: no result for this record (maybe written)"
        return outcomes


def _job_order(group: tuple[tuple[str, str | None], Any]) -> int:
    return ("create", "update", "delete").index(group[0][0])


def _result(payload: Any) -> dict[str, Any]:
    """``ia::result`` of a bulk service answer (an object), or the answer itself."""
    if isinstance(payload, Mapping):
        inner = payload.get("ia::result")
        if isinstance(inner, Mapping):
            return dict(inner)
        return dict(payload)
    return {}


def _unknown(reason: str, code: str, job_id: str | None) -> ItemOutcome:
    """A record a job may or may not have written: never ok, never failed."""
    return ItemOutcome(
        ok=False,
        unknown=True,
        error=(
            f"outcome unknown: {reason}; some records may have been written (each is its own "
            "transaction). Rerun the load with operation upsert: each record is looked up by "
            "its match key and updated if the job wrote it, so nothing is created twice"
        ),
        error_code=code,
        note=f"bulk job {job_id}" if job_id else None,
    )
