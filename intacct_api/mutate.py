"""The Mutate engine: write any number of records to one Intacct object, one result per record.

Shared by `target-intacct` and `intacct mutate`. The work is split by job:

* :mod:`intacct_api.mutate_plan` validates every record once against the spec's request schema
  (read-only fields dropped, dates/decimals serialised, types/enums/required/precision/size
  checked; invalid records get an error result naming the field and never reach the API) and
  groups the rest by entity and :class:`~intacct_api.mutate_plan.TaskKind` into requests of at
  most ``batch_size`` (<= 500) records;
* :mod:`intacct_api.mutate_send` sends one request with an Idempotency-Key unique to that write
  attempt (:mod:`intacct_api.write_journal`) and reads the answer record by record: replayed
  answers are ``replayed``, writes that may have executed are ``unknown``, a batch refused as
  a whole is bisected, a too-large batch is shrunk;
* :mod:`intacct_api.mutate_upsert` looks the natural keys up and splits an upsert into one
  create and one update; :mod:`intacct_api.mutate_lines` writes owned lines through their
  owner's PATCH;
* this module ties them together: names to objects, windows of records to plans, plans to
  results **in input order**, window by window, so memory stays bounded for millions of
  records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from intacct_api.errors import (
    ConfigError,
    IntacctError,
    UnknownObjectError,
    UnknownOperationError,
)
from intacct_api.mutate_lines import run_lines
from intacct_api.mutate_plan import OPERATIONS, MutateItem, MutatePlan, Planner, Task, TaskKind
from intacct_api.mutate_results import ERROR, OK, UNKNOWN, ItemOutcome, ItemResult, MutateResult
from intacct_api.mutate_send import Outcomes, RequestSender
from intacct_api.mutate_upsert import run_upsert
from intacct_api.mutate_validation import DEFAULT_MAX_STRING_LENGTH, RequestPreparer
from intacct_api.write_journal import FreshKeys, KeySource

if TYPE_CHECKING:
    from intacct_api.client import IntacctClient
    from intacct_api.spec import ObjectInfo, SpecRegistry

__all__ = [
    "DEFAULT_BULK_THRESHOLD",
    "MAX_BATCH_SIZE",
    "OPERATIONS",
    "WRITE_MODES",
    "MutateEngine",
    "MutateItem",
    "MutatePlan",
    "MutateResult",
    "TaskKind",
]

MAX_BATCH_SIZE = 500
"""Intacct's limit of records per multi-record request."""
WRITE_MODES = ("batch", "bulk", "auto")
"""How records are sent: 500-record batches, bulk jobs, or bulk above ``bulk_threshold``."""
DEFAULT_BULK_THRESHOLD = 10_000
"""``auto``: records per stream and object above which bulk jobs replace batches."""


class MutateEngine:
    """Batch writer for one registry + client; thread-safe, reusable across objects.

    ``client`` may be None for dry runs. ``max_workers`` (default: the client's
    ``max_concurrency``) is how many requests of one plan go out together; a caller with a
    worker pool of its own (the target) passes 1 so there is only one pool.
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
        write_mode: str = "batch",
        bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
        bulk_poll_timeout: float = 3600.0,
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
        self.keys: KeySource = keys or FreshKeys()
        if write_mode not in WRITE_MODES:
            raise ValueError(f"write_mode must be one of {WRITE_MODES}, not {write_mode!r}")
        if atomic and write_mode == "bulk":
            raise ConfigError(
                "write_mode bulk cannot be atomic: each record of a bulk job is its own "
                "transaction; use write_mode batch with atomic: true"
            )
        if atomic:  # auto keeps the all-or-nothing promise by never switching to bulk
            write_mode = "batch"
        self.write_mode = write_mode
        """``batch``, ``bulk`` or ``auto``: how a caller that accumulates records (the target)
        sends them; :meth:`run_bulk` is the bulk path (``intacct_api.bulk``)."""
        self.bulk_threshold = max(1, int(bulk_threshold))
        self.bulk_poll_timeout = float(bulk_poll_timeout)
        self.planner = Planner(
            registry,
            dry_run=dry_run,
            entity=self.entity,
            match_on=self.match_on,
            max_string_length=max_string_length,
        )
        self.sender = (
            RequestSender(registry, client, self.keys, atomic=atomic, batch_size=self.batch_size)
            if client is not None
            else None
        )

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
        """The compiled preparer for (object, create|update) (see :class:`Planner`)."""
        return self.planner.preparer(info, operation, via_owner=via_owner)

    def batch_size_for(self, object_name: str) -> int:
        """Records per request for an object (less than ``batch_size`` after a too-large
        429 for it)."""
        if self.sender is None:
            return self.batch_size
        return self.sender.batch_size_for(object_name)

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
        return self.planner.plan(
            object_name,
            items,
            batch_size=self.batch_size_for(object_name),
            match_on=match_on,
        )

    def run_plan(self, plan: MutatePlan) -> list[MutateResult]:
        """Send a plan's requests and return one result per item of the plan, in input order."""
        outcomes: Outcomes = {}
        if self.dry_run:
            for task in plan.tasks:
                for prepared in task.items:
                    outcomes[prepared.pos] = ItemResult(
                        task.kind.operation, ItemOutcome(ok=True), None
                    )
        elif plan.tasks:
            run: Callable[[Task], Outcomes] = lambda task: self.run_task(plan, task)  # noqa: E731
            if len(plan.tasks) == 1 or self.max_workers == 1:
                for task in plan.tasks:
                    outcomes.update(run(task))
            else:
                with ThreadPoolExecutor(
                    max_workers=min(self.max_workers, len(plan.tasks)),
                    thread_name_prefix="intacct-mutate",
                ) as pool:
                    for found in pool.map(run, plan.tasks):
                        outcomes.update(found)
        return self.results_for(plan, outcomes)

    def run_bulk(self, plans: Sequence[MutatePlan]) -> list[MutateResult]:
        """Send planned records by bulk jobs instead of batches (``intacct_api.bulk``): one
        result per item of every plan, plans in order, the same result shape as
        :meth:`run_plan`."""
        from intacct_api.bulk import BulkWriter  # the bulk path imports this module's parts

        return BulkWriter(self, poll_timeout=self.bulk_poll_timeout).run(plans)

    def run_task(self, plan: MutatePlan, task: Task) -> Outcomes:
        """Send one task of a plan by batch requests (also the bulk path's owned lines)."""
        sender = self.sender
        assert sender is not None
        if task.kind is TaskKind.UPSERT:
            return run_upsert(sender, plan.info, task, plan.match_on)
        if task.kind.is_line:
            return run_lines(sender, self.registry, plan.info, task)
        return sender.send(plan.info, task.kind.operation, task.entity, task.items)

    def results_for(self, plan: MutatePlan, outcomes: Outcomes) -> list[MutateResult]:
        """The plan's results in input order from the outcomes of its sent records."""
        results = plan.results
        for task in plan.tasks:
            for prepared in task.items:
                operation, outcome, request = outcomes[prepared.pos]
                item = plan.window[prepared.pos]
                status = OK if outcome.ok else UNKNOWN if outcome.unknown else ERROR
                results[prepared.pos] = MutateResult(
                    index=item.index,
                    operation=operation,
                    object=plan.info.name,
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
