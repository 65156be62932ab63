"""The Mutate engine: write any number of records to one Intacct object, one result per record.

Shared by `target-intacct` and `intacct mutate`. Given an object (or an operationId, or a
stream name) and an iterable of records it:

* prepares each record (`mutate_validation`): read-only fields dropped, dates/decimals
  serialised, types/enums/required/precision/size checked. Invalid records never reach the API
  and get an error result naming the field;
* groups records by entity (setting, per call, or a record's `_entity` field) and operation,
  in order of first appearance, and cuts each group into requests of at most `batch_size`
  (<= 500) records. The cut depends only on the input, so a rerun on the same input produces
  the same request bodies;
* sends every POST/PATCH with an `Idempotency-Key` unique to that write attempt, taken from a
  `KeySource` (`intacct_api.write_journal`): the client re-sends it only for retries of that
  request, and a target's write journal re-sends it only for the rerun of a load interrupted
  before the request's outcome was recorded. A replayed answer is reported `replayed`; a write
  whose outcome is unknown after all retries is reported `unknown`, never `error`. DELETE
  carries no key (Intacct does not support one there); deleting an already-deleted key is `ok`
  with a note. Upsert by natural key (`match_on`) covers reruns after the replay window;
* isolates the culprits when Intacct rejects a whole multi-record request without naming a
  record (400, e.g. a body it cannot parse): the batch is split and re-sent in halves (fresh
  keys, bounded), so the good records are written and only the bad ones fail;
* runs requests in parallel (a small thread pool sized to the client's concurrency; the
  client's own semaphore is the real bound) and yields results **in input order**, window by
  window, so memory stays bounded for a stream of millions of records.

Upsert: a record carrying `key` is an update. The others are looked up by `match_on` (default
`id`) in one query per request-sized chunk (`$in`), then split into one create request and one
update request. Owned objects (bill lines, journal-entry lines...) are written through their
owner: a PATCH of the owner whose owned list carries the lines.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from intacct_api.client import DEFAULT_ENTITY, encode_path_value
from intacct_api.columns import ENTITY
from intacct_api.errors import (
    IntacctAPIError,
    IntacctError,
    UnknownObjectError,
    UnknownOperationError,
)
from intacct_api.mutate_results import (
    ERROR,
    OK,
    UNKNOWN,
    ItemOutcome,
    MutateResult,
    is_whole_request_error,
    outcome_from_exception,
    outcomes_from_response,
)
from intacct_api.mutate_validation import (
    DEFAULT_MAX_STRING_LENGTH,
    InvalidRecordError,
    RequestPreparer,
)
from intacct_api.records import nest
from intacct_api.write_journal import FreshKeys, KeySource, request_fingerprint

if TYPE_CHECKING:
    from intacct_api.client import IntacctClient
    from intacct_api.spec import ObjectInfo, SpecRegistry

__all__ = [
    "MAX_BATCH_SIZE",
    "OPERATIONS",
    "MutateEngine",
    "MutateItem",
    "MutatePlan",
    "MutateResult",
]

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 500
"""Intacct's limit of records per multi-record request."""
OPERATIONS = ("create", "update", "upsert", "delete")
ENTITY_FIELD = ENTITY
SOURCE_ROW_FIELD = "_sdc_line_number"
"""Where file taps (the SDK's CSV/filesystem taps) put a record's row in its source file."""
LOOKUP_PAGE_SIZE = 4000
_BODY_ENCODER = msgspec.json.Encoder(order="sorted", decimal_format="number")
"""Request bodies: keys sorted (a rerun of the same input builds the same bytes, which is how
the write journal recognises an interrupted request), ``Decimal`` amounts as exact JSON
numbers."""
MAX_ISOLATION_REQUESTS = 64
"""Requests one rejected batch may be split into while isolating the records that made
Intacct refuse it as a whole (one bad record among 500 costs about 2 x log2(500) = 18)."""
CACHED_DATE_HEADER = "x-ia-idempotency-cached-date"
"""Sent by Intacct when it answers from its idempotency cache instead of executing."""
_NO_ENTITY = ""
_SINGLE_STATUSES = (200, 201, 204, 207)
_NOT_FOUND_CODES = frozenset({"404", "REST-1050", "notFound"})
_PATH_PARAMETER = re.compile(r"\{([^{}]+)\}")
_BATCH_STATUSES = (*_SINGLE_STATUSES, 400, 404, 409, 422)


@dataclass
class MutateItem:
    """One input record and how to write it.

    ``error`` marks an item that already failed before the engine (a malformed JSON line, an
    unknown stream); it is reported in order without being processed.
    """

    record: Mapping[str, Any]
    operation: str
    index: int = 0
    entity: str | None = None
    error: str | None = None
    error_code: str | None = None
    line: int | None = None


@dataclass
class _Prepared:
    """An item ready for a request: its position in the window and its body."""

    pos: int
    source: MutateItem | str  # the input item (named lazily, on error) or a ready label
    body: dict[str, Any]
    key: str | None
    original: Mapping[str, Any]
    warnings: list[str] = field(default_factory=list)
    match_value: Any = None

    @property
    def label(self) -> str:
        """How errors name this record (``line 7 (id 'V1')``)."""
        return self.source if isinstance(self.source, str) else _label(self.source)


@dataclass
class _Task:
    """One request-sized chunk of one (entity, operation) group."""

    operation: str
    entity: str | None
    items: list[_Prepared]


@dataclass
class MutatePlan:
    """A validated, grouped window of items (see :meth:`MutateEngine.plan_items`).

    ``results`` holds the results already known (invalid records) by position; ``tasks`` the
    requests still to send.
    """

    info: ObjectInfo
    match_on: str
    window: list[MutateItem]
    results: list[MutateResult | None]
    tasks: list[_Task]

    @property
    def size(self) -> int:
        """Items in the plan."""
        return len(self.window)


def _label(item: MutateItem) -> str:
    """How errors name a record: its input line and ordinal in its stream (or its position),
    the source row a file tap reports (``_sdc_line_number``), and its id or key if any."""
    record = item.record
    if item.line is not None:
        where = f"line {item.line}, record {item.index + 1}"
        row = record.get(SOURCE_ROW_FIELD) if isinstance(record, Mapping) else None
        if isinstance(row, int) and not isinstance(row, bool):
            where += f" (source row {row})"
    else:
        where = f"record {item.index}"
    ident = record.get("id") if isinstance(record, Mapping) else None
    key = record.get("key") if isinstance(record, Mapping) else None
    if ident is not None:
        return f"{where} (id {ident!r})"
    if key is not None:
        return f"{where} (key {key!r})"
    return where


def _dig(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


class MutateEngine:
    """Batch writer for one registry + client; thread-safe, reusable across objects.

    ``client`` may be None for dry runs. ``max_workers`` defaults to the client's
    ``max_concurrency``.
    """

    def __init__(
        self,
        registry: SpecRegistry,
        client: IntacctClient | None = None,
        *,
        batch_size: int = MAX_BATCH_SIZE,
        atomic: bool = False,
        dry_run: bool = False,
        entity: str | None = None,
        match_on: str = "id",
        max_workers: int | None = None,
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
        keys: KeySource | None = None,
    ) -> None:
        if client is None and not dry_run:
            raise ValueError("a client is required unless dry_run is set")
        self.registry = registry
        self.client = client
        self.batch_size = max(1, min(int(batch_size or MAX_BATCH_SIZE), MAX_BATCH_SIZE))
        self.atomic = atomic
        self.dry_run = dry_run
        self.entity = entity or None
        self.match_on = match_on or "id"
        concurrency = client.settings.max_concurrency if client is not None else 1
        self.max_workers = max(1, int(max_workers or concurrency or 1))
        self.max_string_length = max_string_length
        self.keys: KeySource = keys or FreshKeys()
        self._size_limits: dict[str, int] = {}
        """Per object: the largest batch Intacct accepted after refusing a larger one as too
        large (a 429 "bulk size exceeds rate limit"); later plans cut their requests to it."""
        self._preparers: dict[tuple[str, str], RequestPreparer] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()

    # -- resolving names -----------------------------------------------------------------

    def resolve(self, target: str, operation: str | None = None) -> tuple[ObjectInfo, str]:
        """Object and operation for an object name, a stream name or an operationId."""
        try:
            info = self.registry.object(target)
        except UnknownObjectError:
            try:
                op = self.registry.operation(target)
            except UnknownOperationError:
                raise UnknownObjectError(target, self.registry.suggest_objects(target)) from None
            if op.object_name is None:
                raise IntacctError(
                    f"{target} is not an object operation; use `intacct call`"
                ) from None
            info = self.registry.object(op.object_name)
            if operation is None:
                operation = op.kind if op.kind in OPERATIONS else None
        operation = operation or "upsert"
        if operation not in OPERATIONS:
            raise IntacctError(f"unknown operation {operation!r}; use one of {OPERATIONS}")
        return info, operation

    def preparer(
        self, info: ObjectInfo, operation: str, *, via_owner: bool = False
    ) -> RequestPreparer:
        """The compiled preparer for (object, create|update), built once per engine.

        ``via_owner``: a line written inside its owner does not name the owner itself, so
        required properties under the back-reference (``bill.key``) are not required.
        """
        cache_key = (info.name, f"{operation}{'@owner' if via_owner else ''}")
        with self._lock:
            cached = self._preparers.get(cache_key)
        if cached is not None:
            return cached
        op_id = info.create_operation_id if operation == "create" else info.update_operation_id
        schema = None
        if op_id is not None:
            schema = self.registry.operation(op_id).request_schema()
        if not schema or not schema.get("properties"):
            schema = info.record_schema()
        preparer = RequestPreparer(
            schema,
            operation=operation,
            required=_required(info, operation, via_owner=via_owner),
            object_name=info.name,
            keep_fields=("key",) if operation == "update" else (),
            max_string_length=self.max_string_length,
        )
        with self._lock:
            self._preparers.setdefault(cache_key, preparer)
        return preparer

    # -- public entry points -------------------------------------------------------------

    def mutate(
        self,
        target: str,
        records: Iterable[Mapping[str, Any]],
        *,
        operation: str | None = None,
        match_on: str | None = None,
        entity: str | None = None,
    ) -> Iterator[MutateResult]:
        """Write ``records`` (one operation for all) and yield one result per record in order."""
        info, op = self.resolve(target, operation)
        items = (
            MutateItem(record=record, operation=op, index=i, entity=entity)
            for i, record in enumerate(records)
        )
        return self.mutate_items(info.name, items, match_on=match_on)

    def mutate_items(
        self,
        object_name: str,
        items: Iterable[MutateItem],
        *,
        match_on: str | None = None,
    ) -> Iterator[MutateResult]:
        """Like :meth:`mutate` with a per-item operation/entity (the target's deletes)."""
        window_size = self.batch_size * self.max_workers * 2
        window: list[MutateItem] = []
        for item in items:
            window.append(item)
            if len(window) >= window_size:
                yield from self.run_plan(self.plan_items(object_name, window, match_on=match_on))
                window = []
        if window:
            yield from self.run_plan(self.plan_items(object_name, window, match_on=match_on))

    # -- one window: plan (CPU only), then run (the requests) ----------------------------

    def plan_items(
        self, object_name: str, items: Sequence[MutateItem], *, match_on: str | None = None
    ) -> MutatePlan:
        """Validate and group ``items`` into requests without sending anything.

        Pure CPU and no I/O, so a caller may plan the next batch while the previous one's
        requests are on the wire (the target does). :meth:`run_plan` sends the requests.
        """
        info = self.registry.object(object_name)
        match = match_on or self.match_on
        window = list(items)
        results: list[MutateResult | None] = [None] * len(window)
        groups: dict[tuple[str, str], list[_Prepared]] = {}
        for pos, item in enumerate(window):
            entity = self._entity_of(item)
            operation = item.operation
            if item.error is not None:
                results[pos] = MutateResult(
                    index=item.index,
                    operation=operation,
                    object=info.name,
                    status=ERROR,
                    request=item.record,
                    error=item.error,
                    error_code=item.error_code or "invalidInput",
                    entity=entity,
                    line=item.line,
                )
                continue
            prepared, op_or_error = self._prepare(info, item, pos, match)
            if prepared is None:
                results[pos] = MutateResult(
                    index=item.index,
                    operation=_dry_operation(item),
                    object=info.name,
                    status=ERROR,
                    request=_echo(item.record),
                    error=op_or_error,
                    error_code="invalidRecord",
                    entity=entity,
                    line=item.line,
                )
                continue
            groups.setdefault((entity or _NO_ENTITY, op_or_error), []).append(prepared)

        size = self.batch_size_for(info.name)
        tasks = [
            _Task(operation, entity or None, chunk)
            for (entity, operation), members in groups.items()
            for chunk in _chunks(members, size)
        ]
        return MutatePlan(info, match, window, results, tasks)

    def batch_size_for(self, object_name: str) -> int:
        """Records per request for an object: ``batch_size``, or less once Intacct refused a
        request of that size as too large."""
        with self._lock:
            return min(self.batch_size, self._size_limits.get(object_name, self.batch_size))

    def _shrink(self, object_name: str, refused: int) -> int:
        """Remember that ``refused`` records were too many for one request; the new size."""
        half = max(1, refused // 2)
        with self._lock:
            current = self._size_limits.get(object_name, self.batch_size)
            self._size_limits[object_name] = min(current, half)
        logger.warning(
            "%s: Intacct refused %d records in one request as too large; sending at most %d "
            "per request from now on",
            object_name,
            refused,
            half,
        )
        return half

    def run_plan(self, plan: MutatePlan) -> list[MutateResult]:
        """Send a plan's requests (in parallel when there are several) and return one result
        per item of the plan, in input order."""
        info, match_on, window, results, tasks = (
            plan.info,
            plan.match_on,
            plan.window,
            plan.results,
            plan.tasks,
        )
        outcomes: dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]] = {}
        if self.dry_run:
            for task in tasks:
                for prepared in task.items:
                    outcomes[prepared.pos] = (task.operation, ItemOutcome(ok=True), None)
        elif tasks:
            run: Callable[[_Task], dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]]]
            run = lambda task: self._run_task(info, task, match_on)  # noqa: E731
            if len(tasks) == 1 or self.max_workers == 1:
                for task in tasks:
                    outcomes.update(run(task))
            else:
                with ThreadPoolExecutor(
                    max_workers=min(self.max_workers, len(tasks)),
                    thread_name_prefix="intacct-mutate",
                ) as pool:
                    for found in pool.map(run, tasks):
                        outcomes.update(found)

        for task in tasks:
            for prepared in task.items:
                operation, outcome, request = outcomes[prepared.pos]
                item = window[prepared.pos]
                status = OK if outcome.ok else UNKNOWN if outcome.unknown else ERROR
                results[prepared.pos] = MutateResult(
                    index=item.index,
                    operation=operation,
                    object=info.name,
                    status=status,
                    request=request if request is not None else prepared.body,
                    key=outcome.key or (prepared.key if outcome.ok else None),
                    id=outcome.id,
                    href=outcome.href,
                    error=None if outcome.ok else f"{prepared.label}: {outcome.error}",
                    error_code=outcome.error_code,
                    entity=task.entity,
                    warnings=prepared.warnings if self.dry_run else [],
                    dry_run=self.dry_run,
                    line=item.line,
                    replayed=outcome.replayed,
                    note=outcome.note,
                    idempotency_key=outcome.idempotency_key,
                )
        return [r for r in results if r is not None]

    def _entity_of(self, item: MutateItem) -> str | None:
        record_entity = item.record.get(ENTITY_FIELD) if isinstance(item.record, Mapping) else None
        return str(record_entity) if record_entity else (item.entity or self.entity)

    def _prepare(
        self, info: ObjectInfo, item: MutateItem, pos: int, match_on: str
    ) -> tuple[_Prepared | None, str]:
        """(prepared, group operation) or (None, error message)."""
        record = item.record
        if not isinstance(record, Mapping):
            return None, f"{_label(item)}: not a JSON object"
        if ENTITY_FIELD in record:
            record = {k: v for k, v in record.items() if k != ENTITY_FIELD}
        if any("." in k and "::" not in k for k in record):
            record = nest(record)
        operation = item.operation
        key = record.get("key")
        key = None if key in (None, "") else str(key)
        if key is not None and "," in key:  # would address several records in a URL path
            return None, (
                f"{_label(item)}: field 'key': {_short(key)} contains ',', which Intacct reads "
                "as a list of keys"
            )
        if operation == "delete":
            if key is None:
                return None, f"{_label(item)}: field 'key': a delete needs the record's key"
            owner_key = _owner_key(info, record)
            if owner_key is not None:  # a line: delete it through its owner
                body = {"key": key, "ia::operation": "delete"}
                return _Prepared(pos, item, body, key, record, [], owner_key), "owned-delete"
            return _Prepared(pos, item, {"key": key}, key, record), "delete"
        if info.owner is not None:
            return self._prepare_owned(
                info, record=record, operation=operation, pos=pos, item=item, key=key
            )
        keyed_upsert = operation == "upsert" and key is not None
        if keyed_upsert and self.dry_run:
            operation = "update"
        if operation == "update" and key is None:
            return None, f"{_label(item)}: field 'key': an update needs the record's key"
        if operation == "upsert" and self.dry_run:
            operation = "create"  # no lookup in a dry run: validate as the stricter create
        if operation == "upsert":
            # shape-check now; required-on-create is checked after the lookup says "new".
            # A record with a key is an update without a lookup, but stays in the upsert
            # group so a batch costs one update request, not two.
            preparer = self.preparer(info, "update")
            match_value = None if keyed_upsert else _dig(record, match_on)
        else:
            preparer = self.preparer(info, operation)
            match_value = None
        try:
            prepared = preparer.prepare(record)
        except InvalidRecordError as exc:
            return None, f"{_label(item)}: {exc}"
        dropped = prepared.dropped_read_only
        if operation == "upsert":  # the match field is how we found it, not data to write
            dropped = [name for name in dropped if name != match_on]
        warnings = self._read_only_warnings(info, dropped)
        body = prepared.body
        if operation != "update" and not keyed_upsert:
            body.pop("key", None)
        return (
            _Prepared(pos, item, body, key, record, warnings, match_value),
            operation,
        )

    def _prepare_owned(
        self,
        info: ObjectInfo,
        *,
        record: Mapping[str, Any],
        operation: str,
        pos: int,
        item: MutateItem,
        key: str | None,
    ) -> tuple[_Prepared | None, str]:
        """A line of an owned object becomes an element of its owner's list in a PATCH."""
        owner = info.owner
        back_ref = info.owner_reference
        assert owner is not None
        assert back_ref is not None
        label = _label(item)
        problem = self._owner_write_problem(info)
        if problem is not None:
            return None, f"{label}: {problem}"
        owner_key = _owner_key(info, record)
        if owner_key is None:
            return None, (
                f"{label}: field '{back_ref}.key': {info.name} is written through its owner "
                f"{owner}, so each line must name the owner's key"
            )
        line_op = "update" if key is not None and operation != "create" else "create"
        if operation == "update" and key is None:
            return None, f"{label}: field 'key': an update needs the record's key"
        body_source = {k: v for k, v in record.items() if k != back_ref}
        try:
            prepared = self.preparer(info, line_op, via_owner=True).prepare(body_source)
        except InvalidRecordError as exc:
            return None, f"{label}: {exc}"
        body = prepared.body
        if line_op == "create":
            body.pop("key", None)
        warnings = self._read_only_warnings(info, prepared.dropped_read_only)
        return (
            _Prepared(pos, item, body, key, record, warnings, str(owner_key)),
            f"owned-{line_op}",
        )

    def _owner_write_problem(self, info: ObjectInfo) -> str | None:
        """Why lines of ``info`` cannot be written through their owner, or None.

        Decided from the spec at planning time, so a dry run refuses exactly what the real run
        could not write: an owner without an update operation (its lines are written only
        inside a new owner), an owner that is itself a line (written through its own owner),
        an owner whose path needs a parameter beyond the key (``document::{documentName}``).
        """
        owner_name = info.owner
        assert owner_name is not None
        owner = self.registry.object(owner_name)
        if owner.update_operation_id is None:
            if owner.owner is not None:
                return (
                    f"{info.name} belongs to {owner_name}, itself written through "
                    f"{owner.owner}: write it inside that record's lines"
                )
            return (
                f"{info.name} can only be written inside a new {owner_name} (Intacct has no "
                f"update for {owner_name}): create the {owner_name} with its lines"
            )
        path = self.registry.operation(owner.update_operation_id).path
        extra = [p for p in _PATH_PARAMETER.findall(path) if p != "key"]
        if extra:
            return (
                f"{owner_name} is addressed by {', '.join(extra)} as well as its key; "
                "write its lines with `intacct call` and that parameter"
            )
        return None

    def _read_only_warnings(self, info: ObjectInfo, dropped: Sequence[str]) -> list[str]:
        if not dropped:
            return []
        message = f"read-only fields dropped: {', '.join(sorted(set(dropped)))}"
        signature = (info.name, message)
        with self._lock:
            first = signature not in self._warned
            self._warned.add(signature)
        if first and not self.dry_run:
            logger.warning("%s: %s (Intacct sets them itself)", info.name, message)
        return [message]

    # -- requests ------------------------------------------------------------------------

    def _run_task(
        self, info: ObjectInfo, task: _Task, match_on: str
    ) -> dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]]:
        if task.operation == "upsert":
            return self._run_upsert(info, task, match_on)
        if task.operation.startswith("owned-"):
            return self._run_owned(info, task)
        return self._send(info, task.operation, task.entity, task.items)

    def _collection_path(self, info: ObjectInfo) -> str:
        """The object's collection URL (some of Sage's POST paths end in ``/{key}``)."""
        for op_id in (info.create_operation_id, info.list_operation_id):
            if op_id:
                return self.registry.operation(op_id).path.removesuffix("/{key}")
        return f"/objects/{info.name}"

    def _send(
        self,
        info: ObjectInfo,
        operation: str,
        entity: str | None,
        items: list[_Prepared],
        *,
        object_name: str | None = None,
        path_info: ObjectInfo | None = None,
        budget: list[int] | None = None,
    ) -> dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]]:
        """One write request for ``items``; outcomes by window position.

        A multi-record request Intacct refuses as a whole (400, no record named) is split in
        halves and re-sent, within ``budget`` requests, so one bad record fails alone.
        """
        assert self.client is not None
        target = path_info or info
        limit = self.batch_size_for(target.name)
        if len(items) > limit:  # planned before Intacct said this size is too large
            out: dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]] = {}
            remaining = items
            while remaining:
                size = self.batch_size_for(target.name)
                part, remaining = remaining[:size], remaining[size:]
                out.update(
                    self._send(
                        info,
                        operation,
                        entity,
                        part,
                        object_name=object_name,
                        path_info=path_info,
                        budget=budget,
                    )
                )
            return out
        echo = [p.body if operation != "delete" else {"key": p.key} for p in items]
        try:
            method, path, body = self._request_for(target, operation, items)
        except IntacctError as exc:  # e.g. a key that cannot be put in a path
            failed = outcome_from_exception(exc)
            return {p.pos: (operation, failed, e) for p, e in zip(items, echo, strict=True)}
        effective_entity = entity or self.client.settings.entity
        # encoded once: the bytes sent are the bytes the journal fingerprints (Decimal amounts
        # as exact JSON numbers; the client passes a Raw value through unchanged)
        content = None if body is None else _BODY_ENCODER.encode(body)
        key = None
        if method != "DELETE":  # Intacct: GET and DELETE do not support Idempotency-Key
            fingerprint = request_fingerprint(
                object_name or info.name,
                operation,
                method,
                path,
                content if content is not None else b"null",
                entity=effective_entity,
                transaction=self.atomic,
            )
            key = self.keys.key_for(fingerprint, what=f"{operation} {len(items)} {target.name}")
        whole_request_rejected = too_large = False
        try:
            response = self.client.request(
                method,
                path,
                json=None if content is None else msgspec.Raw(content),
                entity=entity if entity is not None else DEFAULT_ENTITY,
                idempotency_key=key,
                transaction=self.atomic,
                operation=target.name,
                # a multi-record answer with a 4xx status (an atomic batch rolled back) still
                # carries one entry per record: read it rather than raise on the first error
                expected=_BATCH_STATUSES if isinstance(body, list) else _SINGLE_STATUSES,
            )
            payload = response.json()
            outcomes = outcomes_from_response(response.status, payload, len(items))
            whole_request_rejected = response.status == 400 and is_whole_request_error(payload)
            if response.headers.get(CACHED_DATE_HEADER):
                cached = response.headers[CACHED_DATE_HEADER]
                for outcome in outcomes:
                    outcome.replayed = True
                    outcome.note = (
                        f"replayed: Intacct answered from its idempotency cache ({cached}); "
                        "this request had already been executed, it was not executed again"
                    )
        except Exception as exc:  # every record of the request gets the failure
            if not isinstance(exc, IntacctError):
                logger.exception("unexpected failure writing %s", target.name)
            failed = outcome_from_exception(exc)
            outcomes = [failed for _ in items]
            whole_request_rejected = (
                isinstance(exc, IntacctAPIError) and exc.status == 400 and not failed.unknown
            )
            too_large = isinstance(exc, IntacctAPIError) and exc.is_too_large
        if operation == "delete":
            outcomes = [_already_deleted(o, p.key) for o, p in zip(outcomes, items, strict=True)]
        if too_large and len(items) > 1:  # nothing was written: send it again, smaller
            if key is not None:
                self.keys.settle([key])
            self._shrink(target.name, len(items))
            return self._send(
                info,
                operation,
                entity,
                items,
                object_name=object_name,
                path_info=path_info,
                budget=budget,
            )
        if whole_request_rejected and len(items) > 1 and not self.atomic:
            budget = budget if budget is not None else [MAX_ISOLATION_REQUESTS]
            if budget[0] >= 2:
                budget[0] -= 2
                if key is not None:
                    self.keys.settle([key])  # answered: this key is never needed again
                half = len(items) // 2
                logger.warning(
                    "%s: Intacct refused a request of %d records as a whole (%s); re-sending "
                    "it in halves to find the records at fault",
                    target.name,
                    len(items),
                    outcomes[0].error,
                )
                halves: dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]] = {}
                for part in (items[:half], items[half:]):
                    halves.update(
                        self._send(
                            info,
                            operation,
                            entity,
                            part,
                            object_name=object_name,
                            path_info=path_info,
                            budget=budget,
                        )
                    )
                return halves
        if self.atomic and not all(o.ok for o in outcomes):
            outcomes = _roll_back(outcomes, items)
        for outcome in outcomes:
            outcome.idempotency_key = key
        return {p.pos: (operation, o, e) for p, o, e in zip(items, outcomes, echo, strict=True)}

    def _request_for(
        self, target: ObjectInfo, operation: str, items: list[_Prepared]
    ) -> tuple[str, str, Any]:
        """(method, path, body) of the write request for ``items``."""
        collection = self._collection_path(target)
        body: Any
        if operation == "delete":
            keys = [p.key for p in items]
            method, path, body = "DELETE", f"{collection}/{_encode_keys(keys)}", None
        elif operation == "create":
            method, path = "POST", collection
            body = items[0].body if len(items) == 1 else [p.body for p in items]
        else:  # update
            method = "PATCH"
            if len(items) == 1:
                single = dict(items[0].body)
                key = single.pop("key", items[0].key)
                path, body = f"{collection}/{_encode_keys([key])}", single
            else:
                path, body = collection, [p.body for p in items]
        return method, path, body

    def _run_upsert(
        self, info: ObjectInfo, task: _Task, match_on: str
    ) -> dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]]:
        values = sorted(
            {str(p.match_value) for p in task.items if p.key is None and p.match_value is not None}
        )
        try:
            existing = self._lookup(info, match_on, values, task.entity)
        except Exception as exc:
            if not isinstance(exc, IntacctError):
                logger.exception("unexpected failure looking up %s", info.name)
            failed = outcome_from_exception(exc)
            failed.error = f"upsert lookup by {match_on!r} failed: {failed.error}"
            return {p.pos: ("upsert", failed, p.body) for p in task.items}
        creates: list[_Prepared] = []
        updates: list[_Prepared] = []
        out: dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]] = {}
        create_preparer = self.preparer(info, "create")
        for prepared in task.items:
            if prepared.key is not None:  # carried its key: an update, no lookup needed
                updates.append(prepared)
                continue
            keys = existing.get(str(prepared.match_value), []) if prepared.match_value else []
            if len(keys) > 1:
                out[prepared.pos] = (
                    "upsert",
                    ItemOutcome(
                        ok=False,
                        error=f"field '{match_on}': {len(keys)} existing records match "
                        f"{prepared.match_value!r} (keys {', '.join(keys)}); cannot choose",
                        error_code="ambiguousMatch",
                    ),
                    prepared.body,
                )
            elif keys:
                prepared.key = keys[0]
                prepared.body = {"key": keys[0], **prepared.body}
                updates.append(prepared)
            else:
                try:
                    fresh = create_preparer.prepare(prepared.original)
                except InvalidRecordError as exc:
                    out[prepared.pos] = (
                        "create",
                        ItemOutcome(ok=False, error=str(exc), error_code="invalidRecord"),
                        prepared.body,
                    )
                    continue
                fresh.body.pop("key", None)
                prepared.body = fresh.body
                creates.append(prepared)
        if creates:
            out.update(self._send(info, "create", task.entity, creates))
        if updates:
            out.update(self._send(info, "update", task.entity, updates))
        return out

    def _lookup(
        self, info: ObjectInfo, match_on: str, values: Sequence[str], entity: str | None
    ) -> dict[str, list[str]]:
        """Existing keys by match value: one `$in` query (paged only beyond 4,000 rows)."""
        assert self.client is not None
        found: dict[str, list[str]] = {}
        if not values:
            return found
        start: int | None = 1
        while start is not None:
            body = {
                "object": info.name,
                "fields": ["key", match_on],
                "filters": [{"$in": {match_on: list(values)}}],
                "orderBy": [{"key": "asc"}],
                "start": start,
                "size": LOOKUP_PAGE_SIZE,
            }
            payload = self.client.query(
                body, entity=entity if entity is not None else DEFAULT_ENTITY
            ).json()
            for row in payload.get("ia::result") or ():
                value = row.get(match_on)
                if value is None:
                    value = _dig(row, match_on)
                if value is not None and row.get("key") is not None:
                    found.setdefault(str(value), []).append(str(row["key"]))
            meta = payload.get("ia::meta") or {}
            next_start = meta.get("next")
            start = int(next_start) if next_start else None
        return found

    def _run_owned(
        self, info: ObjectInfo, task: _Task
    ) -> dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]]:
        """PATCH the owners: one element per owner carrying its lines (<= 500 owners)."""
        assert info.owner is not None
        owner_info = self.registry.object(info.owner)
        list_prop = next(
            (prop for prop, owned in owner_info.owned_lists.items() if owned == info.name),
            "lines",
        )
        line_op = task.operation.removeprefix("owned-")
        back_ref = info.owner_reference
        assert back_ref is not None
        by_owner: dict[str, list[_Prepared]] = {}
        for prepared in task.items:
            by_owner.setdefault(str(prepared.match_value), []).append(prepared)
        owners = [
            _Prepared(
                pos=-1 - i,
                source=f"{info.owner} {owner_key}",
                body={"key": owner_key, list_prop: [p.body for p in lines]},
                key=owner_key,
                original={},
            )
            for i, (owner_key, lines) in enumerate(by_owner.items())
        ]
        sent = self._send(
            owner_info, "update", task.entity, owners, object_name=f"{info.name}@owner"
        )
        out: dict[int, tuple[str, ItemOutcome, dict[str, Any] | None]] = {}
        for owner, (owner_key, lines) in zip(owners, by_owner.items(), strict=True):
            _, outcome, _request = sent[owner.pos]
            for prepared in lines:
                line_outcome = dataclasses.replace(outcome, key=prepared.key, id=None)
                echo = {back_ref: {"key": owner_key}, **prepared.body}
                out[prepared.pos] = (line_op, line_outcome, echo)
        return out


def _required(info: ObjectInfo, operation: str, *, via_owner: bool) -> tuple[str, ...]:
    if operation != "create":
        return ()
    back_ref = info.owner_reference
    if not via_owner or back_ref is None:
        return info.required_on_create
    return tuple(
        name
        for name in info.required_on_create
        if name != back_ref and not name.startswith(back_ref + ".")
    )


def _owner_key(info: ObjectInfo, record: Mapping[str, Any]) -> str | None:
    """The owner's key a line record names (``bill.key`` for a bill line), if any."""
    if info.owner_reference is None:
        return None
    value = _dig(record, f"{info.owner_reference}.key")
    return None if value in (None, "") else str(value)


def _already_deleted(outcome: ItemOutcome, key: str | None) -> ItemOutcome:
    """A delete answered "not found" did what was asked: the record is gone (a rerun, or a
    retry of a delete whose first answer was lost). Reported ``ok`` with a note, not an error.

    Only for a key Intacct could have issued (its keys are whole numbers): any other value
    never named a record, so "not found" stays an error that names it.
    """
    if outcome.ok or outcome.unknown or not (key or "").isdigit():
        return outcome
    code = outcome.error_code or ""
    if code in _NOT_FOUND_CODES or "not found" in (outcome.error or "").lower():
        return ItemOutcome(
            ok=True,
            note=f"already deleted: Intacct has no record with this key ({outcome.error})",
        )
    return outcome


def _roll_back(outcomes: list[ItemOutcome], items: list[_Prepared]) -> list[ItemOutcome]:
    """Atomic batch with a failure: Intacct wrote nothing, so no record may be reported ok."""
    first = next(
        (f"{p.label}: {o.error}" for p, o in zip(items, outcomes, strict=True) if not o.ok), ""
    )
    return [
        o
        if not o.ok
        else ItemOutcome(
            ok=False,
            error=f"not written: the atomic batch was rolled back ({first})",
            error_code="rolledBack",
        )
        for o in outcomes
    ]


def _chunks(items: list[_Prepared], size: int) -> Iterator[list[_Prepared]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _short(value: str) -> str:
    return repr(value) if len(value) <= 60 else repr(value[:57] + "...")


def _encode_keys(keys: Sequence[str | None]) -> str:
    return encode_path_value([str(k) for k in keys])


def _echo(record: Any) -> Any:
    """The record as given, made JSON-safe for the results line."""
    return record


def _dry_operation(item: MutateItem) -> str:
    if item.operation == "upsert" and isinstance(item.record, Mapping):
        return "update" if item.record.get("key") not in (None, "") else "upsert"
    return item.operation
