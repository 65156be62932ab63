"""The bulk job service: ``POST /services/bulk/job/create`` and ``GET /services/bulk/job/status``.

What Sage documents (docs/FIDELITY.md, shared docs §7): a multipart/form-data POST with a part
``ia::requestBody`` (JSON ``{objectName, operation create|update|delete, jobFile,
fileContentType: "json"}``) and a file part holding a JSON array of records; the answer is
``{jobId, statusURL, createdDateTime}``. The job goes queued -> processing -> completed (or
failed); polling the status URL shows it, and ``download=true`` on a completed job returns the
per-record results. Each record is its own transaction: one that fails does not fail the
others.

What the emulator chooses where Sage is silent (each choice is a FIDELITY row): the file part
may be named ``file`` or after ``jobFile`` (sources disagree); the results file is a batch
answer (``ia::result`` one entry per input record in file order, ``ia::meta`` counts); a job
advances only when polled, so a test controls its pace without timers:

``POST /_emulator/bulk`` (``GET`` reads them; ``{"reset": true}`` restores the defaults):

* ``polls_per_state`` (0): status polls a job stays ``queued`` before it starts processing;
* ``records_per_poll`` (0 = all): records one status poll processes;
* ``fail_jobs`` (0): the next N jobs end ``failed`` before writing anything;
* ``kill_after_records`` (null): the next job writes this many records, then ends ``failed``
  (a job killed mid-way: its first records are written, the rest are not);
* ``fail_downloads`` (0): the next N result downloads answer 500.

Records are written through the company's public ``create``/``update``/``delete`` in chunks of
500 non-atomic records, so a bulk write validates and stores exactly like a batch write.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from intacct_emulator import envelopes
from intacct_emulator.api_routes import entity_of
from intacct_emulator.config import API_PREFIX, CONTROL_PREFIX
from intacct_emulator.envelopes import MAX_BATCH, EmulatorError
from intacct_emulator.http_errors import error_response, invalid_request, json_response
from intacct_emulator.state import EmulatorState

__all__ = ["BulkKnobs", "BulkService"]

CREATE_PATH = API_PREFIX + "/services/bulk/job/create"
STATUS_PATH = API_PREFIX + "/services/bulk/job/status"
OPERATIONS = ("create", "update", "delete")


@dataclass
class BulkKnobs:
    """The pace and faults of bulk jobs (see the module docstring)."""

    polls_per_state: int = 0
    records_per_poll: int = 0
    fail_jobs: int = 0
    kill_after_records: int | None = None
    fail_downloads: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "polls_per_state": self.polls_per_state,
            "records_per_poll": self.records_per_poll,
            "fail_jobs": self.fail_jobs,
            "kill_after_records": self.kill_after_records,
            "fail_downloads": self.fail_downloads,
        }


@dataclass
class BulkJob:
    """One submitted job and its per-record results so far."""

    job_id: str
    object_name: str
    operation: str
    entity: str | None
    records: list[Any]
    created: str
    fail: bool = False
    kill_after: int | None = None
    status: str = "queued"
    polls: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def percent(self) -> int:
        total = len(self.records)
        return 100 if not total else int(100 * len(self.results) / total)


class BulkService:
    """Bulk jobs of one company (thread-safe)."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.company = state.company
        self.knobs = BulkKnobs()
        self.jobs: dict[str, BulkJob] = {}
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [
            Route(CREATE_PATH, self.create, methods=["POST"]),
            Route(STATUS_PATH, self.status, methods=["GET"]),
            Route(CONTROL_PREFIX + "/bulk", self.control, methods=["GET", "POST"]),
        ]

    # -- the API ------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        """``post-bulk-job-create``: validate the request body part and the file, queue."""
        parts = _multipart(request.headers.get("content-type", ""), await request.body())
        if parts is None:
            return invalid_request(
                "The bulk request must be multipart/form-data with an ia::requestBody part",
                "REST-1028",
            )
        try:
            spec = msgspec.json.decode(parts.get("ia::requestBody", (None, b""))[1] or b"null")
        except msgspec.DecodeError:
            spec = None
        if not isinstance(spec, dict):
            return invalid_request("ia::requestBody must be a JSON object", "REST-1064")
        missing = [
            k for k in ("objectName", "operation", "jobFile", "fileContentType") if not spec.get(k)
        ]
        if missing:
            return invalid_request(f"ia::requestBody lacks {', '.join(missing)}", "REST-1064")
        operation = str(spec["operation"])
        if operation not in OPERATIONS or spec["fileContentType"] != "json":
            return invalid_request(
                f"operation must be one of {', '.join(OPERATIONS)} and fileContentType json",
                "REST-1064",
            )
        object_name = str(spec["objectName"])
        if object_name not in self.company.registry.objects:
            return error_response(404, "notFound", f"Unknown object {object_name}", "REST-1050")
        file_part = parts.get("file") or parts.get(str(spec["jobFile"]))
        try:
            records = msgspec.json.decode(file_part[1]) if file_part else None
        except msgspec.DecodeError:
            records = None
        if not isinstance(records, list):
            return invalid_request("The job file must hold a JSON array of records", "REST-1064")
        entity = entity_of(request, self.state.faults.entity_header_names())
        if entity is not None and not self.company.has_entity(entity):
            return invalid_request(
                f"The entity {entity} is not a valid entity of this company", "REST-1010"
            )
        knobs = self.knobs
        with self._lock:
            fail = knobs.fail_jobs > 0
            knobs.fail_jobs = max(0, knobs.fail_jobs - 1)
            kill_after, knobs.kill_after_records = knobs.kill_after_records, None
            job = BulkJob(
                job_id=str(uuid.uuid4()),
                object_name=object_name,
                operation=operation,
                entity=entity,
                records=records,
                created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                fail=fail,
                kill_after=kill_after,
            )
            self.jobs[job.job_id] = job
        return json_response(
            {
                "ia::result": {
                    "jobId": job.job_id,
                    "statusURL": f"/services/bulk/job/status?jobId={job.job_id}",
                    "createdDateTime": job.created,
                },
                "ia::meta": {"totalCount": 1, "totalSuccess": 1, "totalError": 0},
            }
        )

    async def status(self, request: Request) -> Response:
        """``get-bulk-job-status``: advance the job by one poll; or download its results."""
        job = self.jobs.get(request.query_params.get("jobId", ""))
        if job is None:
            return error_response(404, "notFound", "No bulk job with this jobId", "REST-1050")
        if request.query_params.get("download", "").lower() == "true":
            return self._download(job)
        await run_in_threadpool(self._advance, job)
        result: dict[str, Any] = {
            "jobId": job.job_id,
            "status": job.status,
            "percentComplete": job.percent,
        }
        if job.status == "completed":
            result["downloadURL"] = f"/services/bulk/job/status?jobId={job.job_id}&download=true"
            result["jobStatusFile"] = f"{job.job_id}-response.json"
        return json_response({"ia::result": result, "ia::meta": _meta(job)})

    def _download(self, job: BulkJob) -> Response:
        with self._lock:
            broken = self.knobs.fail_downloads > 0
            self.knobs.fail_downloads = max(0, self.knobs.fail_downloads - 1)
        if broken:
            return error_response(
                500, "internalError", "The results file could not be read", "REST-5000"
            )
        if job.status != "completed":
            return invalid_request(
                f"The bulk job is {job.status}: results can be downloaded once it is completed",
                "REST-1064",
            )
        return json_response({"ia::result": job.results, "ia::meta": _meta(job)})

    # -- processing: one step per status poll ---------------------------------------------

    def _advance(self, job: BulkJob) -> None:
        with job.lock:
            if job.status in ("completed", "failed"):
                return
            job.polls += 1
            if job.status == "queued":
                if job.polls <= self.knobs.polls_per_state:
                    return
                if job.fail:
                    job.status = "failed"
                    return
                job.status, job.polls = "processing", 0
            budget = self.knobs.records_per_poll or len(job.records)
            end = min(len(job.records), len(job.results) + budget)
            if job.kill_after is not None:
                end = min(end, job.kill_after)
            while len(job.results) < end:
                start = len(job.results)
                self._write(job, job.records[start : min(end, start + MAX_BATCH)])
            if job.kill_after is not None and len(job.results) >= job.kill_after:
                job.status = "failed"
            elif len(job.results) >= len(job.records):
                job.status = "completed"

    def _write(self, job: BulkJob, chunk: list[Any]) -> None:
        """Write a chunk non-atomically; one result entry per record, in order."""
        company, name, entity = self.company, job.object_name, job.entity
        try:
            if job.operation == "create":
                status, body = company.create(name, chunk, entity=entity, transaction=False)
            elif job.operation == "update":
                status, body = company.update(name, None, chunk, entity=entity, transaction=False)
            else:
                keys = [str(r.get("key")) if isinstance(r, dict) else str(r) for r in chunk]
                if len(keys) == 1:  # the company's single delete raises on failure
                    company.delete(name, keys, entity=entity, transaction=False)
                    status, body = 204, None
                else:
                    status, body = company.delete(name, keys, entity=entity, transaction=False)
        except EmulatorError as exc:  # the whole chunk refused (e.g. an owned object)
            entries = [envelopes.batch_error_entry(exc) for _ in chunk]
        else:
            if status == 204 or not body:
                entries = [{"ia::status": 204} for _ in chunk]
            else:
                entries = list(body.get("ia::result") or [])
        job.errors += sum(1 for e in entries if "ia::error" in e)
        job.results.extend(entries)

    # -- control ------------------------------------------------------------------------

    def reset(self) -> None:
        """Default knobs, no jobs (``/_emulator/reset``)."""
        with self._lock:
            self.knobs = BulkKnobs()
            self.jobs.clear()

    async def control(self, request: Request) -> Response:
        """GET the knobs; POST changes the named ones (``{"reset": true}``: defaults)."""
        if request.method == "POST":
            raw = await request.body()
            try:
                patch = msgspec.json.decode(raw) if raw.strip() else {}
            except msgspec.DecodeError:
                patch = None
            if not isinstance(patch, dict):
                return json_response({"error": "body must be a JSON object"}, 400)
            known = {*BulkKnobs().snapshot(), "reset"}
            unknown = set(patch) - known
            if unknown:
                return json_response(
                    {"error": f"unknown bulk option(s): {', '.join(sorted(unknown))}"}, 400
                )
            with self._lock:
                if patch.pop("reset", False):
                    self.knobs = BulkKnobs()
                    self.jobs.clear()
                try:
                    for name, value in patch.items():
                        setattr(
                            self.knobs,
                            name,
                            None if value is None else max(0, int(value)),
                        )
                except (TypeError, ValueError):
                    return json_response({"error": "bulk options take whole numbers"}, 400)
        return json_response({**self.knobs.snapshot(), "jobs": len(self.jobs)})


def _meta(job: BulkJob) -> dict[str, int]:
    done = len(job.results)
    return {"totalCount": done, "totalSuccess": done - job.errors, "totalError": job.errors}


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]] | None:
    """Parts of a multipart/form-data body by field name: (filename, bytes).

    Small and dependency-free on purpose (the emulator's extra stays as it is): form fields
    and file parts as HTTP clients (httpx, curl) send them.
    """
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return None
    boundary = ""
    for param in params.split(";"):
        param_name, _, value = param.strip().partition("=")
        if param_name.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        return None
    parts: dict[str, tuple[str | None, bytes]] = {}
    delimiter = b"--" + boundary.encode()
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name: str | None = None
        filename: str | None = None
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() != "content-disposition":
                continue
            for item in value.split(";"):
                attr, _, raw = item.strip().partition("=")
                if attr == "name":
                    name = raw.strip('"')
                elif attr == "filename":
                    filename = raw.strip('"')
        if name is not None:
            parts[name] = (filename, content)
    return parts
