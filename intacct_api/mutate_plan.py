"""Planning a Mutate window: input records -> validated request bodies, grouped into tasks.

Pure CPU, no I/O: a caller may plan the next batch while the previous one is on the wire. Every
rule that can be checked without Intacct is checked here, once (an upsert record is prepared
both as the update and as the create it may turn out to be), so sending never validates.

A task is one request-sized chunk of one (entity, kind) group; its :class:`TaskKind` says how
it is sent: plainly (create, update, delete), after a look-up (upsert), or as lines inside
their owner's PATCH (line-create, line-update, line-delete).
"""

from __future__ import annotations

import enum
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from intacct_api.columns import ENTITY
from intacct_api.mutate_results import ERROR, MutateResult
from intacct_api.mutate_validation import (
    DEFAULT_MAX_STRING_LENGTH,
    InvalidRecordError,
    LineRequirements,
    RequestPreparer,
    dig,
)
from intacct_api.records import nest

if TYPE_CHECKING:
    from intacct_api.spec import ObjectInfo, SpecRegistry

__all__ = [
    "OPERATIONS",
    "MutateItem",
    "MutatePlan",
    "OwnerRoute",
    "Planner",
    "PreparedItem",
    "Task",
    "TaskKind",
    "owner_route",
]

logger = logging.getLogger("intacct_api.mutate")

OPERATIONS = ("create", "update", "upsert", "delete")
"""What a caller may ask for, per record."""
SOURCE_ROW_FIELD = "_sdc_line_number"
"""Where file taps (the SDK's CSV/filesystem taps) put a record's row in its source file."""
_PATH_PARAMETER = re.compile(r"\{([^{}]+)\}")
_NO_ENTITY = ""


class TaskKind(enum.StrEnum):
    """How a task's records reach Intacct."""

    CREATE = "create"
    UPDATE = "update"
    UPSERT = "upsert"
    DELETE = "delete"
    LINE_CREATE = "line-create"
    LINE_UPDATE = "line-update"
    LINE_DELETE = "line-delete"

    @property
    def is_line(self) -> bool:
        """Written inside the owner's PATCH (an owned object's records)."""
        return self.value.startswith("line-")

    @property
    def operation(self) -> str:
        """The operation a result reports (``create`` for a line created through its owner)."""
        return self.value.removeprefix("line-")


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
class PreparedItem:
    """An item ready for a request: its position in the window and its body.

    ``match_value``: the natural key an upsert looks up, or the owner's key of a line.
    ``create_body``/``create_error``: an upsert record prepared as the create it becomes when
    the look-up finds nothing (one of the two is set for such records).
    """

    pos: int
    source: MutateItem | str  # the input item (named lazily, on error) or a ready label
    body: dict[str, Any]
    key: str | None
    warnings: list[str] = field(default_factory=list)
    match_value: Any = None
    create_body: dict[str, Any] | None = None
    create_error: str | None = None

    @property
    def label(self) -> str:
        """How errors name this record (``line 7, record 3 (id 'V1')``)."""
        return self.source if isinstance(self.source, str) else label(self.source)


@dataclass
class Task:
    """One request-sized chunk of one (entity, kind) group."""

    kind: TaskKind
    entity: str | None
    items: list[PreparedItem]


@dataclass
class MutatePlan:
    """A validated, grouped window of items (see :meth:`Planner.plan`).

    ``results`` holds the results already known (invalid records) by position; ``tasks`` the
    requests still to send.
    """

    info: ObjectInfo
    match_on: str
    window: list[MutateItem]
    results: list[MutateResult | None]
    tasks: list[Task]

    @property
    def size(self) -> int:
        """Items in the plan."""
        return len(self.window)


class Planner:
    """Validation and grouping for one registry (thread-safe; preparers built once)."""

    def __init__(
        self,
        registry: SpecRegistry,
        *,
        dry_run: bool = False,
        entity: str | None = None,
        match_on: str = "id",
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    ) -> None:
        self.registry = registry
        self.dry_run = dry_run
        self.entity = entity or None
        self.match_on = match_on or "id"
        self.max_string_length = max_string_length
        self._preparers: dict[tuple[str, str], RequestPreparer] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()

    def preparer(
        self, info: ObjectInfo, operation: str, *, via_owner: bool = False
    ) -> RequestPreparer:
        """The compiled preparer for (object, create|update), built once.

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
        required = required_members(info, operation, via_owner=via_owner)
        preparer = RequestPreparer(
            writable_required(schema, required),
            operation=operation,
            required=required,
            object_name=info.name,
            keep_fields=("key",) if operation == "update" else (),
            max_string_length=self.max_string_length,
            line_required=line_requirements(self.registry, info) if operation == "create" else None,
        )
        with self._lock:
            self._preparers.setdefault(cache_key, preparer)
        return preparer

    def plan(
        self,
        object_name: str,
        items: Sequence[MutateItem],
        *,
        batch_size: int,
        match_on: str | None = None,
    ) -> MutatePlan:
        """Validate and group ``items`` into tasks of at most ``batch_size`` records."""
        info = self.registry.object(object_name)
        match = match_on or self.match_on
        window = list(items)
        results: list[MutateResult | None] = [None] * len(window)
        groups: dict[tuple[str, TaskKind], list[PreparedItem]] = {}
        for pos, item in enumerate(window):
            entity = self._entity_of(item)
            if item.error is not None:
                results[pos] = _failed(info, item, entity, item.error, item.error_code)
                continue
            prepared, kind_or_error = self._prepare(info, item, pos, match)
            if prepared is None:
                assert isinstance(kind_or_error, str)
                results[pos] = _failed(info, item, entity, kind_or_error, "invalidRecord")
                continue
            assert isinstance(kind_or_error, TaskKind)
            groups.setdefault((entity or _NO_ENTITY, kind_or_error), []).append(prepared)
        tasks = [
            Task(kind, entity or None, chunk)
            for (entity, kind), members in groups.items()
            for chunk in chunks(members, batch_size)
        ]
        return MutatePlan(info, match, window, results, tasks)

    # -- one record -----------------------------------------------------------------------

    def _entity_of(self, item: MutateItem) -> str | None:
        record_entity = item.record.get(ENTITY) if isinstance(item.record, Mapping) else None
        return str(record_entity) if record_entity else (item.entity or self.entity)

    def _prepare(
        self, info: ObjectInfo, item: MutateItem, pos: int, match_on: str
    ) -> tuple[PreparedItem | None, TaskKind | str]:
        """(prepared, its task kind) or (None, error message)."""
        record = item.record
        if not isinstance(record, Mapping):
            return None, f"{label(item)}: not a JSON object"
        if ENTITY in record:
            record = {k: v for k, v in record.items() if k != ENTITY}
        if any("." in k and "::" not in k for k in record):
            record = nest(record)
        operation = item.operation
        key = record.get("key")
        key = None if key in (None, "") else str(key)
        if key is not None and "," in key:  # would address several records in a URL path
            return None, (
                f"{label(item)}: field 'key': {_short(key)} contains ',', which Intacct reads "
                "as a list of keys"
            )
        if operation == "delete":
            if key is None:
                return None, f"{label(item)}: field 'key': a delete needs the record's key"
            owner_key = owner_key_of(info, record)
            if owner_key is not None:  # a line: delete it through its owner
                problem = self.owner_write_problem(info)
                if problem is not None:
                    return None, f"{label(item)}: {problem}"
                body = {"key": key, "ia::operation": "delete"}
                return PreparedItem(pos, item, body, key, [], owner_key), TaskKind.LINE_DELETE
            if info.delete_operation_id is None:
                return None, f"{label(item)}: {_no_operation(info, 'delete')}"
            return PreparedItem(pos, item, {"key": key}, key), TaskKind.DELETE
        if info.owner is not None:
            return self._prepare_line(info, record, operation, pos, item, key)
        missing = "update" if operation == "upsert" else operation
        if getattr(info, f"{missing}_operation_id") is None:
            return None, f"{label(item)}: {_no_operation(info, missing)}"
        keyed_upsert = operation == "upsert" and key is not None
        if keyed_upsert and self.dry_run:
            operation = "update"
        if operation == "update" and key is None:
            return None, f"{label(item)}: field 'key': an update needs the record's key"
        if operation == "upsert" and self.dry_run:
            # no look-up in a dry run: validate as the stricter create (as an update where
            # Intacct has no create: only the records found would be written)
            operation = "create" if info.create_operation_id is not None else "update"
        if operation == "upsert":
            # A record with a key is an update without a look-up, but stays in the upsert
            # group so a batch costs one update request, not two.
            preparer = self.preparer(info, "update")
            match_value = None if keyed_upsert else dig(record, match_on)
        else:
            preparer = self.preparer(info, operation)
            match_value = None
        try:
            prepared = preparer.prepare(record)
        except InvalidRecordError as exc:
            return None, f"{label(item)}: {exc}"
        dropped = prepared.dropped_read_only
        if operation == "upsert":  # the match field is how we found it, not data to write
            dropped = [name for name in dropped if name != match_on]
        warnings = self._read_only_warnings(info, dropped)
        body = prepared.body
        if operation != "update" and not keyed_upsert:
            body.pop("key", None)
        result = PreparedItem(pos, item, body, key, warnings, match_value)
        if operation == "upsert" and not keyed_upsert and info.create_operation_id is None:
            result.create_error = _no_operation(info, "create")
        elif operation == "upsert" and not keyed_upsert:
            try:  # validated now as the create it becomes if the look-up finds nothing
                create = self.preparer(info, "create").prepare(record)
                create.body.pop("key", None)
                result.create_body = create.body
            except InvalidRecordError as exc:
                result.create_error = str(exc)
        return result, TaskKind(operation)

    def _prepare_line(
        self,
        info: ObjectInfo,
        record: Mapping[str, Any],
        operation: str,
        pos: int,
        item: MutateItem,
        key: str | None,
    ) -> tuple[PreparedItem | None, TaskKind | str]:
        """A line of an owned object becomes an element of its owner's list in a PATCH."""
        owner, back_ref = info.owner, info.owner_reference
        assert owner is not None
        assert back_ref is not None
        where = label(item)
        problem = self.owner_write_problem(info)
        if problem is not None:
            return None, f"{where}: {problem}"
        owner_key = owner_key_of(info, record)
        if owner_key is None:
            return None, (
                f"{where}: field '{back_ref}.key': {info.name} is written through its owner "
                f"{owner}, so each line must name the owner's key"
            )
        line_op = "update" if key is not None and operation != "create" else "create"
        if operation == "update" and key is None:
            return None, f"{where}: field 'key': an update needs the record's key"
        body_source = {k: v for k, v in record.items() if k != back_ref}
        try:
            prepared = self.preparer(info, line_op, via_owner=True).prepare(body_source)
        except InvalidRecordError as exc:
            return None, f"{where}: {exc}"
        body = prepared.body
        if line_op == "create":
            body.pop("key", None)
        warnings = self._read_only_warnings(info, prepared.dropped_read_only)
        kind = TaskKind.LINE_CREATE if line_op == "create" else TaskKind.LINE_UPDATE
        return PreparedItem(pos, item, body, key, warnings, str(owner_key)), kind

    def owner_write_problem(self, info: ObjectInfo) -> str | None:
        """Why lines of ``info`` cannot be written through their owner, or None (see
        :func:`owner_route`)."""
        route = owner_route(self.registry, info)
        return route if isinstance(route, str) else None

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


# -- owners -------------------------------------------------------------------------------

DOCUMENT_NAME = "documentName"
"""The path parameter of objects addressed as ``{object}::{documentName}/{key}``."""


@dataclass(frozen=True)
class OwnerRoute:
    """Where the lines of an owned object are written: inside a PATCH of ``target``, their
    owner, or, when the owner is itself a line (``via``: a journal-entry line owning tax
    entries), the owner's owner, whose element for that line carries them. ``named``: the
    target's path names its transaction definition (``document::{documentName}/{key}``)."""

    target: str
    via: str | None = None
    named: bool = False


def owner_route(registry: SpecRegistry, info: ObjectInfo) -> OwnerRoute | str:
    """How lines of ``info`` reach Intacct, or why they cannot (a message).

    Decided from the spec alone, so a dry run refuses exactly what the real run could not
    write. Refused: an owner without an update operation that is not itself a line, or whose
    own owner has none either (Intacct has no endpoint for such lines: they exist only inside
    a new top-level record, created with its lines), and a path parameter other than the key
    and ``documentName``.
    """
    owner_name = info.owner
    assert owner_name is not None
    owner = registry.object(owner_name)
    read_only = _read_only_list(registry, owner, info.name)
    if read_only is not None:
        return (
            f"{info.name} cannot be written: Sage's spec marks {owner_name}.{read_only} "
            "read-only (Intacct fills it)"
        )
    target, via = owner, None
    if owner.update_operation_id is None and owner.owner is not None:
        target, via = registry.object(owner.owner), owner
    if target.update_operation_id is None and target.create_operation_id is None:
        return (
            f"{info.name} cannot be written: Intacct has neither a create nor an update for "
            f"{target.name}"
        )
    if target.update_operation_id is None:
        top = target.name
        inside = f"its {owner_name} lines and their lines" if via is not None else "its lines"
        return (
            f"{info.name} can only be written inside a new {top} (Intacct has no update for "
            f"{top}): create the {top} with {inside}"
        )
    if via is not None and via.owner_property is None:  # nothing to look its owner up by
        return (
            f"{info.name} belongs to {via.name}, whose records do not name their "
            f"{target.name} in Sage's spec: write it inside that record's lines"
        )
    path = registry.operation(target.update_operation_id).path
    extra = [p for p in _PATH_PARAMETER.findall(path) if p not in ("key", DOCUMENT_NAME)]
    if extra:
        return (
            f"{target.name} is addressed by {', '.join(extra)} as well as its key; "
            "write its lines with `intacct call` and that parameter"
        )
    return OwnerRoute(target.name, via.name if via is not None else None, DOCUMENT_NAME in path)


def _read_only_list(registry: SpecRegistry, owner: ObjectInfo, owned: str) -> str | None:
    """The owner's list of ``owned`` records when every write request of the owner marks it
    read-only (a bank reconciliation's source records), else None."""
    props = [prop for prop, name in owner.owned_lists.items() if name == owned]
    schemas = [
        registry.operation(op_id).request_schema() or {}
        for op_id in (owner.create_operation_id, owner.update_operation_id)
        if op_id is not None
    ]
    if not props or not schemas:
        return None
    for prop in props:
        nodes = [(schema.get("properties") or {}).get(prop) for schema in schemas]
        if any(not isinstance(node, Mapping) or not node.get("readOnly") for node in nodes):
            return None
    return props[0]


# -- helpers ------------------------------------------------------------------------------


def label(item: MutateItem) -> str:
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


def chunks(items: list[PreparedItem], size: int) -> Iterator[list[PreparedItem]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _no_operation(info: ObjectInfo, operation: str) -> str:
    """Why a record is refused before sending: Sage's spec gives the object no such operation
    (the real API answers 404/405; a dry run must say the same)."""
    return f"Intacct has no {operation} for {info.name} (Sage's spec lists no such operation)"


def line_requirements(
    registry: SpecRegistry, info: ObjectInfo, _seen: frozenset[str] = frozenset()
) -> LineRequirements:
    """What lines created inside a new ``info`` need, list by list and level by level."""
    out: LineRequirements = {}
    for prop, owned in info.owned_lists.items():
        if owned in _seen or owned not in registry.objects:
            continue
        line = registry.object(owned)
        nested = line_requirements(registry, line, _seen | {info.name})
        required = required_members(line, "create", via_owner=True)
        if required or nested:
            out[prop] = (required, nested)
    return out


def required_members(info: ObjectInfo, operation: str, *, via_owner: bool) -> tuple[str, ...]:
    """Members required on create; a line written inside its owner does not name the owner."""
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


def writable_required(schema: Mapping[str, Any], required: Sequence[str]) -> dict[str, Any]:
    """``schema`` with the members required on create writable: a spec that requires a member
    it marks read-only (``id`` of a fixed-asset depreciation rule) gets the value sent when
    given, instead of a record refused for lacking what it was never allowed to send (FIDELITY
    W17, assumed). Copies only the nodes on the way to such a member."""

    def unlock(node: Mapping[str, Any], parts: list[str]) -> dict[str, Any]:
        props = node.get("properties")
        if not isinstance(props, Mapping) or parts[0] not in props:
            return dict(node)
        member = props[parts[0]]
        if not isinstance(member, Mapping):
            return dict(node)
        changed = {k: v for k, v in member.items() if k != "readOnly"}
        if len(parts) > 1:
            changed = unlock(changed, parts[1:])
        return {**node, "properties": {**props, parts[0]: changed}}

    out = dict(schema)
    for path in required:
        if _read_only_on_path(out, path.split(".")):
            out = unlock(out, path.split("."))
    return out


def _read_only_on_path(node: Mapping[str, Any], parts: list[str]) -> bool:
    for part in parts:
        props = node.get("properties")
        member = props.get(part) if isinstance(props, Mapping) else None
        if not isinstance(member, Mapping):
            return False
        if member.get("readOnly"):
            return True
        node = member
    return False


def owner_key_of(info: ObjectInfo, record: Mapping[str, Any]) -> str | None:
    """The owner's key a line record names (``bill.key`` for a bill line), if any."""
    if info.owner_reference is None:
        return None
    value = dig(record, f"{info.owner_reference}.key")
    return None if value in (None, "") else str(value)


def _failed(
    info: ObjectInfo, item: MutateItem, entity: str | None, error: str, code: str | None
) -> MutateResult:
    """The result of an item refused before any request."""
    return MutateResult(
        index=item.index,
        operation=_reported_operation(item),
        object=info.name,
        status=ERROR,
        request=item.record,
        error=error,
        error_code=code or "invalidInput",
        entity=entity,
        line=item.line,
    )


def _reported_operation(item: MutateItem) -> str:
    if item.error is None and item.operation == "upsert" and isinstance(item.record, Mapping):
        return "update" if item.record.get("key") not in (None, "") else "upsert"
    return item.operation


def _short(value: str) -> str:
    return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
