"""One emulated Intacct company: records, entities, and the behaviour of the REST services.

The HTTP layer maps each route onto one method here and sends back what it returns (or the
envelope of the :class:`EmulatorError` it raises). Everything object-specific is read from the
shared spec registry: which objects exist, their record schemas, what is required on create,
which objects are owned by which (lines), so the emulator never drifts from what the tap and the
target believe. Behavioural choices where Intacct's exact answer is unknown (error ids, 207
shapes, read-only members ignored) are stated in the docstrings of the functions that make them.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from intacct_api.spec import ObjectInfo, SpecRegistry
from intacct_emulator import envelopes, schema_tools, validation
from intacct_emulator.clock import AuditClock, canonical
from intacct_emulator.envelopes import EmulatorError
from intacct_emulator.model_service import ModelBuilder, unknown_resource
from intacct_emulator.query_engine import (
    DEFAULT_REFUSED_QUERY_FIELDS,
    MAX_PAGE_SIZE,
    QueryEngine,
    flat_form,
    parse_key,
    query_error,
    schema_leaves,
)
from intacct_emulator.store import Store, StoredRow, decode, encode

__all__ = ["MAX_BATCH", "Company", "EmulatorError"]

MAX_BATCH = 500
ENTITY_OBJECT = "company-config/entity"
USER_OBJECT = "company-config/user"
DEFAULT_USER = {"key": "1", "id": "admin", "href": f"/objects/{USER_OBJECT}/1"}


class _RollbackError(Exception):
    """Internal: undo an atomic batch after at least one record failed."""


def not_found(object_name: str, key: str) -> EmulatorError:
    """404 for a key that does not exist (or is not visible from the request's entity)."""
    return envelopes.fail(
        404,
        "notFound",
        f"The {object_name} record with key {key} was not found",
        "REST-1050",
        message_id="IA.RECORD_NOT_FOUND",
        placeholders={"OBJECT": object_name, "KEY": key},
    )


def method_not_allowed(object_name: str, operation: str, hint: str = "") -> EmulatorError:
    """405 for an operation the spec does not define for the object (e.g. owner-only lines)."""
    return envelopes.fail(
        405,
        "methodNotAllowed",
        f"{operation} is not supported for {object_name}{hint}",
        "REST-1052",
        message_id="IA.OPERATION_NOT_SUPPORTED",
        placeholders={"OBJECT": object_name, "OPERATION": operation},
    )


def duplicate_id(object_name: str, record_id: str) -> EmulatorError:
    """409: ``id`` is unique per object (the target's upsert relies on it)."""
    return envelopes.fail(
        409,
        "duplicateValue",
        f"Another {object_name} with the id {record_id} already exists",
        "REST-1053",
        message_id="IA.DUPLICATE_VALUE",
        placeholders={"OBJECT": object_name, "ID": record_id},
        details=[
            envelopes.detail(
                "duplicateValue",
                f"Another {object_name} with the id {record_id} already exists",
                "REST-1053",
                "/id",
                message_id="IA.DUPLICATE_VALUE",
                placeholders={"ID": record_id},
            )
        ],
    )


def too_many(count: int) -> EmulatorError:
    """400 for a batch above Intacct's 500-record limit (id chosen by the emulator)."""
    return envelopes.fail(
        400,
        "invalidRequest",
        f"A batch request can contain at most {MAX_BATCH} records; {count} were sent",
        "REST-1051",
        message_id="IA.BATCH_LIMIT_EXCEEDED",
        placeholders={"LIMIT": str(MAX_BATCH), "COUNT": str(count)},
    )


def unprocessed() -> EmulatorError:
    """What an atomic batch reports for records rolled back because another one failed."""
    return envelopes.fail(
        422,
        "unprocessed",
        "Not processed: another record in this transaction failed",
        "REST-1054",
        message_id="IA.UNPROCESSED",
    )


def _never(record: Any) -> bool:
    return False


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Partial update: nested groups merge member by member; everything else is replaced."""
    for name, value in changes.items():
        current = base.get(name)
        if isinstance(current, dict) and isinstance(value, Mapping):
            _merge(current, value)
        else:
            base[name] = schema_tools.deep_copy(value)
    return base


class Company:
    """Data and behaviour of one emulated company (thread-safe: one lock around each call)."""

    def __init__(self, registry: SpecRegistry, db: str = ":memory:") -> None:
        self.registry = registry
        self._leaves: dict[str, frozenset[str]] = {}
        self._schemas: dict[str, dict[str, Any]] = {}
        self.store = Store(db, self.flat)
        self.clock = AuditClock()
        self.clock.advance_past(self.store.max_modified())
        self.refused_query_fields: dict[str, set[str]] = {
            k: set(v) for k, v in DEFAULT_REFUSED_QUERY_FIELDS.items()
        }
        self.audit_user: dict[str, str] = dict(DEFAULT_USER)
        self.queries = QueryEngine(registry)
        self.models = ModelBuilder(registry)
        self._lock = threading.RLock()
        self._skeletons: dict[str, dict[str, Any]] = {}

    # -- lookups ----------------------------------------------------------------------------

    def schema(self, info: ObjectInfo) -> dict[str, Any]:
        """The record schema of an object, resolved once per company.

        ``ObjectInfo.record_schema()`` hands out a fresh deep copy on every call (safe for
        callers that mutate it, far too slow for a per-record write path), so it is cached here;
        the emulator only reads it.
        """
        found = self._schemas.get(info.name)
        if found is None:
            found = info.record_schema()
            self._schemas[info.name] = found
        return found

    def flat(self, object_name: str, record: dict[str, Any]) -> bytes:
        """The ``flat`` column of a record body (its leaves by dotted path, for queries)."""
        leaves = self._leaves.get(object_name)
        if leaves is None:
            info = self.registry.objects.get(object_name)
            found = schema_leaves(self.schema(info)) if info is not None else set()
            leaves = self._leaves[object_name] = frozenset(found)
        return encode(flat_form(record, leaves))

    def info(self, object_name: str) -> ObjectInfo:
        """Registry entry of an object, or the emulator's 404 for unknown names."""
        found = self.registry.objects.get(object_name)
        if found is None:
            raise unknown_resource(object_name)
        return found

    def href(self, object_name: str, key: int | str) -> str:
        """``/objects/{app}/{obj}/{key}``: the href Intacct puts in references."""
        return f"/objects/{object_name}/{key}"

    def reference(self, object_name: str, row: StoredRow) -> dict[str, Any]:
        """``{key, id, href}`` of a stored record (create/update/list answers)."""
        return {"key": str(row.key), "id": row.id, "href": self.href(object_name, row.key)}

    @staticmethod
    def owner_property(line: ObjectInfo) -> str | None:
        """The member of an owned record pointing at its owner (``bill`` on bill lines): the
        registry's answer (:attr:`ObjectInfo.owner_property`), shared with the connector."""
        return line.owner_property

    @staticmethod
    def _visible(row_entity: str | None, entity: str | None) -> bool:
        """Shared records are visible everywhere; a private record from the top level or its
        own entity (queries from the top level additionally need ``includePrivate``)."""
        return row_entity is None or entity is None or row_entity == entity

    def _row(self, info: ObjectInfo, key: Any, entity: str | None) -> StoredRow:
        number = parse_key(key)
        if number is None:  # "1 " or "+1" is not key 1: no such record, as on Intacct
            raise not_found(info.name, str(key))
        row = self.store.get(info.name, number)
        if row is None or not self._visible(row.entity, entity):
            raise not_found(info.name, str(key))
        return row

    def fetch(self, object_name: str, key: str) -> dict[str, Any] | None:
        """A stored record by key (for related-field lookups in queries), sparse."""
        number = parse_key(key)
        row = self.store.get(object_name, number) if number is not None else None
        return row.record() if row else None

    # -- read services ----------------------------------------------------------------------

    def query(self, body: dict[str, Any], *, entity: str | None) -> dict[str, Any]:
        """``POST /services/core/query`` response body."""
        with self._lock:
            return self.queries.run(
                body,
                store=self.store,
                entity=entity,
                refused_fields=self.refused_query_fields,
                fetch=self.fetch,
            )

    def query_json(self, body: dict[str, Any], *, entity: str | None) -> bytes:
        """:meth:`query`, encoded: the response body as bytes (the HTTP route's form)."""
        with self._lock:
            return self.queries.run_json(
                body,
                store=self.store,
                entity=entity,
                refused_fields=self.refused_query_fields,
                fetch=self.fetch,
            )

    def model(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /services/core/model`` response body."""
        return self.models.answer(params)

    def list(
        self, object_name: str, *, entity: str | None, start: int, size: int
    ) -> dict[str, Any]:
        """``GET /objects/{app}/{obj}``: references only, offset paging like the query."""
        info = self.info(object_name)
        if start < 1 or size < 1 or size > MAX_PAGE_SIZE:
            raise query_error(400, "start and size must be between 1 and 4000", "REST-1108")
        where, args = (["entity IS NULL OR entity = ?"], [entity]) if entity else ([], [])
        with self._lock:
            total = self.store.count(info.name, where, args)
            rows = self.store.select(
                info.name, where, args, limit=size, offset=start - 1, columns="key, id"
            )
        refs = [{"key": str(k), "id": i, "href": self.href(info.name, k)} for k, i in rows]
        return envelopes.page(refs, total=total, start=start, size=size)

    def get(
        self, object_name: str, keys: builtins.list[str], *, entity: str | None
    ) -> dict[str, Any]:
        """``GET /objects/{app}/{obj}/{key[,key...]}``: full records in the nested GET shape.

        One key -> the record (404 if absent). Several keys -> an array in key order; a missing
        key gets an ``ia::error`` entry in its place and is counted in ``ia::meta.totalError``
        (emulator's choice; the status stays 200, as in the architecture contract).
        """
        info = self.info(object_name)
        with self._lock:
            if len(keys) == 1:
                return envelopes.single(self.render(info, self._row(info, keys[0], entity)))
            results: builtins.list[dict[str, Any]] = []
            errors = 0
            for key in keys:
                try:
                    results.append(self.render(info, self._row(info, key, entity)))
                except EmulatorError as exc:
                    errors += 1
                    results.append({"ia::error": exc.error, "ia::status": exc.status})
        return envelopes.batch(results, errors=errors)

    def render(self, info: ObjectInfo, row: StoredRow) -> dict[str, Any]:
        """A stored (sparse) record laid over the all-null skeleton, owned lists included."""
        skeleton = self._skeletons.get(info.name)
        if skeleton is None:
            skeleton = schema_tools.skeleton(self.schema(info))
            self._skeletons[info.name] = skeleton
        record = schema_tools.overlay(schema_tools.deep_copy(skeleton), row.record())
        for prop, line_name in info.owned_lists.items():
            line_info = self.registry.objects.get(line_name)
            if line_info is None:
                continue
            lines = self.store.children(line_name, row.key)
            if lines or prop in record:
                record[prop] = [self.render(line_info, line) for line in lines]
        return record

    # -- writes -----------------------------------------------------------------------------

    @contextmanager
    def _atomic(self, transaction: bool) -> Iterator[None]:
        with self._lock, self.store.transaction() if transaction else nullcontext():
            yield

    def _batch(
        self,
        records: builtins.list[Any],
        one: Any,
        *,
        transaction: bool,
        ok_status: int,
        needs_savepoint: Callable[[Any], bool] | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        """Run ``one(record)`` per record; per-record results, 207 or all-or-nothing.

        ``needs_savepoint(record)`` False tells that ``one`` cannot raise after its first
        write for that record (no savepoint needed to undo it); None means always needed.
        """
        if len(records) > MAX_BATCH:
            raise too_many(len(records))
        if not records:
            raise validation.payload_required("batch")
        outcomes: builtins.list[dict[str, Any] | EmulatorError | None] = []
        try:
            # One SQLite transaction per batch (one commit, not one per record). A record is
            # undone on its own through a savepoint only when it can fail after writing:
            # objects with owned lists (lines); the others raise before their first write.
            with self._lock, self.store.transaction():
                for record in records:
                    try:
                        if needs_savepoint is None or needs_savepoint(record):
                            with self.store.transaction():
                                outcomes.append(one(record))
                        else:
                            outcomes.append(one(record))
                    except EmulatorError as exc:
                        outcomes.append(exc)
                if transaction and any(isinstance(o, EmulatorError) for o in outcomes):
                    raise _RollbackError
        except _RollbackError:
            failures = [o for o in outcomes if isinstance(o, EmulatorError)]
            entries = []
            for outcome in outcomes:
                error = outcome if isinstance(outcome, EmulatorError) else unprocessed()
                entries.append({"ia::error": error.error, "ia::status": error.status})
            return failures[0].status, envelopes.batch(entries, errors=len(entries))
        errors = sum(isinstance(o, EmulatorError) for o in outcomes)
        if errors == 0 and ok_status == 204:
            return 204, None
        results: builtins.list[dict[str, Any]] = []
        for outcome in outcomes:
            if isinstance(outcome, EmulatorError):
                results.append({"ia::error": outcome.error, "ia::status": outcome.status})
            elif errors:
                results.append({**(outcome or {}), "ia::status": ok_status})
            else:
                results.append(outcome or {})
        return (207 if errors else ok_status), envelopes.batch(results, errors=errors)

    def create(
        self,
        object_name: str,
        body: dict[str, Any] | builtins.list[Any],
        *,
        entity: str | None,
        transaction: bool,
    ) -> tuple[int, dict[str, Any]]:
        """``POST /objects/{app}/{obj}``: 201 with ``{key, id, href}`` (array for arrays).

        Owned objects without a create operation in the spec (journal-entry lines) answer 405:
        they can only be written through their owner's list.
        """
        info = self.info(object_name)
        if info.create_operation_id is None:
            hint = f"; write it through {info.owner}" if info.owner else ""
            raise method_not_allowed(object_name, "POST", hint)
        if isinstance(body, list):
            status, result = self._batch(
                body,
                lambda r: self._create_one(info, r, entity),
                transaction=transaction,
                ok_status=201,
                needs_savepoint=self._carries_lines(info),
            )
            return status, result or {}
        with self._atomic(True):
            return 201, envelopes.single(self._create_one(info, body, entity))

    def update(
        self,
        object_name: str,
        key: str | None,
        body: dict[str, Any] | builtins.list[Any],
        *,
        entity: str | None,
        transaction: bool,
    ) -> tuple[int, dict[str, Any]]:
        """``PATCH``: partial update (omitted members unchanged); 200 with the reference.

        Without a path key the body is an array (or one object) whose elements carry ``key``.
        """
        info = self.info(object_name)
        if info.update_operation_id is None:
            hint = f"; write it through {info.owner}" if info.owner else ""
            raise method_not_allowed(object_name, "PATCH", hint)
        if key is not None:
            if isinstance(body, list):
                raise validation.payload_required("PATCH")
            with self._atomic(True):
                return 200, envelopes.single(self._update_one(info, key, body, entity))
        records = body if isinstance(body, list) else [body]

        def one(record: Any) -> dict[str, Any]:
            if not isinstance(record, Mapping):
                raise validation.payload_required("PATCH")
            record_key = record.get("key")
            if record_key is None:
                problems = validation.Problems()
                problems.missing("/key")
                raise problems.error()
            return self._update_one(info, str(record_key), record, entity)

        if not isinstance(body, list):
            with self._atomic(True):
                return 200, envelopes.single(one(body))
        status, result = self._batch(
            records,
            one,
            transaction=transaction,
            ok_status=200,
            needs_savepoint=self._carries_lines(info),
        )
        return status, result or {}

    def delete(
        self, object_name: str, keys: builtins.list[str], *, entity: str | None, transaction: bool
    ) -> tuple[int, dict[str, Any] | None]:
        """``DELETE``: 204 without body; partial success 207 (successes carry no key)."""
        info = self.info(object_name)
        if info.delete_operation_id is None:
            raise method_not_allowed(object_name, "DELETE")
        if len(keys) == 1:
            with self._atomic(True):
                self._delete_one(info, keys[0], entity)
            return 204, None
        return self._batch(
            list(keys),
            lambda k: self._delete_one(info, k, entity),
            transaction=transaction,
            ok_status=204,
            needs_savepoint=None if info.owned_lists else _never,
        )

    @staticmethod
    def _carries_lines(info: ObjectInfo) -> Callable[[Any], bool]:
        """Whether a create/update body writes owned lines (the only writes that can be
        followed by a per-record failure: a bad line after the owner was stored)."""
        owned = tuple(info.owned_lists)

        def carries(record: Any) -> bool:
            if not owned:
                return False
            if not isinstance(record, Mapping):
                return True
            return any(record.get(prop) is not None for prop in owned)

        return carries

    # -- one record -------------------------------------------------------------------------

    def _validate(
        self,
        info: ObjectInfo,
        body: Any,
        *,
        creating: bool,
        as_line: bool = False,
        prefix: str = "",
        problems: validation.Problems,
    ) -> dict[str, Any]:
        if body.__class__ is not dict and not isinstance(body, Mapping):
            raise validation.payload_required("POST" if creating else "PATCH")
        keep = frozenset({"key", validation.OPERATION_MEMBER}) if as_line else frozenset()
        cleaned = validation.clean(
            self.schema(info),
            body,
            skip=frozenset(info.owned_lists),
            keep=keep,
            problems=problems,
            prefix=prefix,
        )
        if creating:
            required = info.required_on_create
            owner_prop = self.owner_property(info) if as_line else None
            if owner_prop:
                required = tuple(
                    p for p in required if p != owner_prop and not p.startswith(owner_prop + ".")
                )
            validation.check_required(body, required, problems, prefix=prefix)
        for prop, line_name in info.owned_lists.items():
            lines = body.get(prop)
            if lines is None:
                continue
            target = f"{prefix}/{prop}"
            line_info = self.registry.objects.get(line_name)
            if not isinstance(lines, list) or line_info is None:
                problems.invalid(target, f"{target} must be an array")
                continue
            checked = []
            for index, line in enumerate(lines):
                is_new = not (isinstance(line, Mapping) and line.get("key") is not None)
                checked.append(
                    self._validate(
                        line_info,
                        line,
                        creating=is_new,
                        as_line=True,
                        prefix=f"{target}/{index}",
                        problems=problems,
                    )
                )
            cleaned[prop] = checked
        return cleaned

    def _stamp(
        self,
        info: ObjectInfo,
        record: dict[str, Any],
        *,
        created: str | None,
        modified: str,
    ) -> None:
        """Maintain the ``audit`` group when the schema has one."""
        audit_schema = schema_tools.properties(self.schema(info)).get("audit")
        if not audit_schema:
            return
        props = schema_tools.properties(audit_schema)
        audit = record.setdefault("audit", {})
        user = dict(self.audit_user)
        if created is not None:
            if "createdDateTime" in props:
                audit["createdDateTime"] = created
            if "createdByUser" in props:
                audit["createdByUser"] = user
            if "createdBy" in props:
                audit["createdBy"] = user["key"]
        if "modifiedDateTime" in props:
            audit["modifiedDateTime"] = modified
        if "modifiedByUser" in props:
            audit["modifiedByUser"] = dict(user)
        if "modifiedBy" in props:
            audit["modifiedBy"] = user["key"]

    def has_entity(self, entity: str) -> bool:
        """True for one of the company's entity ids, or for any id when it has no entities.

        A company without `company-config/entity` records is treated as not validating the
        entity header (the data layer's tests use free-form entity names).
        """
        if self.store.key_for_id(ENTITY_OBJECT, entity) is not None:
            return True
        return self.store.count(ENTITY_OBJECT, [], []) == 0

    def entity_reference(self, entity: str | None) -> dict[str, Any] | None:
        """The ``entity`` member of a record written in an entity (``None`` at top level)."""
        if entity is None:
            return None
        key = self.store.key_for_id(ENTITY_OBJECT, entity)
        if key is None:
            return {"key": None, "id": entity, "name": None, "href": None}
        row = self.store.get(ENTITY_OBJECT, key)
        name = row.record().get("name") if row else None
        return {"key": str(key), "id": entity, "name": name, "href": self.href(ENTITY_OBJECT, key)}

    def _id_policy(self, info: ObjectInfo) -> str:
        """``none`` (no id member), ``system`` (read-only: id = key) or ``user`` (unique)."""
        id_schema = schema_tools.properties(self.schema(info)).get("id")
        if id_schema is None:
            return "none"
        return "system" if id_schema.get("readOnly") else "user"

    def _create_one(
        self,
        info: ObjectInfo,
        body: Any,
        entity: str | None,
        *,
        owner: tuple[ObjectInfo, StoredRow] | None = None,
        cleaned: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if cleaned is None:
            problems = validation.Problems()
            cleaned = self._validate(info, body, creating=True, problems=problems)
            if problems.details:
                raise problems.error()
            owner = self._direct_line_owner(info, cleaned, entity)
        lines = {p: cleaned.pop(p) for p in list(info.owned_lists) if p in cleaned}
        cleaned.pop("key", None)
        if cleaned.get(validation.OPERATION_MEMBER) == "delete":
            raise self._line_problem("/ia::operation", "delete needs the key of an existing line")
        cleaned.pop(validation.OPERATION_MEMBER, None)
        policy = self._id_policy(info)
        record_id = cleaned.get("id") if policy == "user" else None
        if record_id is not None:
            record_id = str(record_id)
            if self.store.key_for_id(info.name, record_id) is not None:
                raise duplicate_id(info.name, record_id)
        key = self.store.allocate_keys(info.name, 1)
        if policy != "none" and record_id is None:
            record_id = str(key)
        record: dict[str, Any] = {"key": str(key)}
        if policy != "none":
            record["id"] = record_id
        record["href"] = self.href(info.name, key)
        record.update({k: v for k, v in cleaned.items() if k not in ("key", "id", "href")})
        if owner is not None:
            owner_info, owner_row = owner
            prop = self.owner_property(info)
            if prop:
                record[prop] = self.reference(owner_info.name, owner_row)
        if entity is not None and "entity" in schema_tools.properties(self.schema(info)):
            record["entity"] = self.entity_reference(entity)
        now = self.clock.now()
        self._stamp(info, record, created=now, modified=now)
        row = StoredRow(
            info.name,
            key,
            owner[1].entity if owner is not None else entity,
            record_id,
            now if info.has_modified_timestamp else None,
            owner[1].key if owner is not None else None,
            encode(record),
            self.flat(info.name, record),
        )
        self.store.insert(row)
        for prop, items in lines.items():
            line_info = self.registry.objects[info.owned_lists[prop]]
            for item in items:
                self._create_one(line_info, item, entity, owner=(info, row), cleaned=dict(item))
        return self.reference(info.name, row)

    def _direct_line_owner(
        self, info: ObjectInfo, cleaned: Mapping[str, Any], entity: str | None
    ) -> tuple[ObjectInfo, StoredRow] | None:
        """For a line written directly (``POST .../bill-line``): the owner it names, which must
        exist and be visible; the line is then linked like one written through the owner."""
        if not info.owner:
            return None
        prop = self.owner_property(info)
        owner_info = self.registry.objects.get(info.owner)
        ref = cleaned.get(prop) if prop else None
        if owner_info is None or not isinstance(ref, Mapping):
            return None
        key = ref.get("key")
        if key is None and ref.get("id") is not None:
            found = self.store.key_for_id(owner_info.name, str(ref["id"]))
            key = str(found) if found is not None else None
        if key is None:
            raise self._line_problem(f"/{prop}", f"/{prop} must name an existing {info.owner}")
        try:
            return owner_info, self._row(owner_info, key, entity)
        except EmulatorError:
            raise self._line_problem(f"/{prop}/key", f"{info.owner} {key} does not exist") from None

    @staticmethod
    def _line_problem(target: str, message: str) -> EmulatorError:
        problems = validation.Problems()
        problems.invalid(target, message)
        return problems.error()

    def _update_one(
        self,
        info: ObjectInfo,
        key: str,
        body: Any,
        entity: str | None,
        *,
        cleaned: dict[str, Any] | None = None,
        owner_key: int | None = None,
    ) -> dict[str, Any]:
        if cleaned is None:
            problems = validation.Problems()
            cleaned = self._validate(info, body, creating=False, problems=problems)
            if problems.details:
                raise problems.error()
        row = self._row(info, key, entity)
        if owner_key is not None and row.parent != owner_key:
            raise not_found(info.name, key)
        lines = {p: cleaned.pop(p) for p in list(info.owned_lists) if p in cleaned}
        for member in ("key", "id", "href", validation.OPERATION_MEMBER):
            cleaned.pop(member, None)  # identity is immutable; Intacct ignores read-only members
        record = _merge(row.record(), cleaned)
        for prop, items in lines.items():
            self._write_lines(info, row, prop, items, entity)
        now = self.clock.now()
        self._stamp(info, record, created=None, modified=now)
        updated = StoredRow(
            info.name,
            row.key,
            row.entity,
            row.id,
            now if info.has_modified_timestamp else None,
            row.parent,
            encode(record),
            self.flat(info.name, record),
        )
        self.store.replace(updated)
        return self.reference(info.name, updated)

    def _write_lines(
        self,
        info: ObjectInfo,
        row: StoredRow,
        prop: str,
        items: builtins.list[Any],
        entity: str | None,
    ) -> None:
        """Lines in an owner's update: no key = add, key = update, ``ia::operation: delete``."""
        line_info = self.registry.objects[info.owned_lists[prop]]
        for index, item in enumerate(items):
            line_key = item.get("key")
            operation = item.get(validation.OPERATION_MEMBER)
            if operation == "delete":
                if line_key is None:
                    raise self._line_problem(f"/{prop}/{index}/key", "delete needs a key")
                self._delete_one(line_info, str(line_key), entity, owner_key=row.key)
            elif line_key is not None:
                self._update_one(
                    line_info, str(line_key), item, entity, cleaned=dict(item), owner_key=row.key
                )
            else:
                self._create_one(line_info, item, entity, owner=(info, row), cleaned=dict(item))

    def _delete_one(
        self, info: ObjectInfo, key: str, entity: str | None, *, owner_key: int | None = None
    ) -> None:
        row = self._row(info, key, entity)
        if owner_key is not None and row.parent != owner_key:
            raise not_found(info.name, key)
        for line_name in info.owned_lists.values():
            line_info = self.registry.objects.get(line_name)
            if line_info is None:
                continue
            for line in self.store.children(line_name, row.key):
                self._delete_one(line_info, str(line.key), None, owner_key=row.key)
        self.store.delete(info.name, row.key)

    # -- helpers for tests, seeding and the control endpoints --------------------------------

    def insert(
        self, object_name: str, record: Mapping[str, Any], entity: str | None = None
    ) -> dict[str, Any]:
        """Store a record as given (no validation); assigns key/href, fills audit if absent."""
        info = self.info(object_name)
        with self._atomic(True):
            data = schema_tools.deep_copy(dict(record))
            key = self.store.allocate_keys(info.name, 1)
            data["key"] = str(key)
            data["href"] = self.href(info.name, key)
            policy = self._id_policy(info)
            if policy != "none" and data.get("id") is None:
                data["id"] = str(key)
            audit = data.get("audit") if isinstance(data.get("audit"), dict) else {}
            now = self.clock.now()
            modified = audit.get("modifiedDateTime") or now
            if not audit.get("modifiedDateTime"):
                self._stamp(info, data, created=audit.get("createdDateTime") or now, modified=now)
            self.clock.advance_past(modified)
            row = StoredRow(
                info.name,
                key,
                entity,
                str(data["id"]) if data.get("id") is not None else None,
                canonical(modified) if info.has_modified_timestamp else None,
                None,
                encode(data),
                self.flat(info.name, data),
            )
            self.store.insert(row)
            return self.reference(info.name, row)

    def touch(self, object_name: str, key: str | int, **changes: Any) -> None:
        """Apply ``changes`` (no validation) and bump ``audit.modifiedDateTime``.

        Tests use it to change records between two pages of a query. An explicit
        ``audit={"modifiedDateTime": ...}`` in ``changes`` wins over the clock.
        """
        info = self.info(object_name)
        with self._atomic(True):
            row = self._row(info, key, None)
            record = _merge(row.record(), changes)
            explicit = (changes.get("audit") or {}).get("modifiedDateTime")
            modified = canonical(explicit) if explicit else self.clock.now()
            if explicit:
                self.clock.advance_past(modified)
            self._stamp(info, record, created=None, modified=modified)
            record_id = record.get("id")
            self.store.replace(
                StoredRow(
                    info.name,
                    row.key,
                    row.entity,
                    str(record_id) if record_id is not None else None,
                    modified if info.has_modified_timestamp else None,
                    row.parent,
                    encode(record),
                    self.flat(info.name, record),
                )
            )

    def seed(
        self,
        records_per_object: int,
        random_seed: int,
        *,
        objects: builtins.list[str] | None = None,
    ) -> None:
        """Generate deterministic demo data (see :mod:`intacct_emulator.seed`)."""
        from intacct_emulator.seed import Seeder

        with self._atomic(True):
            Seeder(self, random_seed).seed(records_per_object, objects=objects)
            self.clock.advance_past(self.store.max_modified())

    def seed_object(self, object_name: str, count: int, random_seed: int = 0) -> None:
        """Bulk path: add ``count`` generated records of one object (benchmarks: 1,000,000)."""
        from intacct_emulator.seed import Seeder

        with self._atomic(True):
            Seeder(self, random_seed).seed_object(object_name, count)
            self.clock.advance_past(self.store.max_modified())

    def reset(self) -> None:
        """Delete every record (refused-field configuration is kept)."""
        with self._lock:
            self.store.reset()

    def close(self) -> None:
        """Close the database (a file database keeps its data for the next start)."""
        with self._lock:
            self.store.close()

    def record(self, object_name: str, key: str | int) -> dict[str, Any]:
        """Test helper: the rendered record (any entity)."""
        info = self.info(object_name)
        with self._lock:
            return self.render(info, self._row(info, key, None))

    def raw(self, object_name: str, key: str | int) -> dict[str, Any] | None:
        """Test helper: the stored sparse body, or None."""
        with self._lock:
            row = self.store.get(object_name, int(key))
            return decode(row.data) if row else None
