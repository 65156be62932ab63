"""One emulated company's writes: create, update, delete, batches and owned lines.

Behavioural choices where Intacct's exact answer is unknown (error ids, 207 shapes, read-only
members ignored) are stated in the docstrings of the functions that make them; every error
envelope comes from :mod:`intacct_emulator.envelopes`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from intacct_api.spec import ObjectInfo
from intacct_emulator import envelopes, schema_tools, validation
from intacct_emulator.company_data import ENTITY_OBJECT, CompanyData
from intacct_emulator.envelopes import (
    MAX_BATCH,
    EmulatorError,
    duplicate_id,
    method_not_allowed,
    not_found,
    too_many,
    unprocessed,
)
from intacct_emulator.store import StoredRow, encode

__all__ = ["CompanyWrites"]


class _RollbackError(Exception):
    """Internal: undo an atomic batch after at least one record failed."""


def _never(record: Any) -> bool:
    return False


def merge_changes(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Partial update: nested groups merge member by member; everything else is replaced."""
    for name, value in changes.items():
        current = base.get(name)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merge_changes(current, value)
        else:
            base[name] = schema_tools.deep_copy(value)
    return base


class CompanyWrites(CompanyData):
    """The write services of one emulated company."""

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
                entries.append(envelopes.batch_error_entry(error))
            return failures[0].status, envelopes.batch(entries, errors=len(entries))
        errors = sum(isinstance(o, EmulatorError) for o in outcomes)
        if errors == 0 and ok_status == 204:
            return 204, None
        results: builtins.list[dict[str, Any]] = []
        for outcome in outcomes:
            if isinstance(outcome, EmulatorError):
                results.append(envelopes.batch_error_entry(outcome))
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
        info, document = self.named(object_name)
        if info.create_operation_id is None:
            hint = f"; write it through {info.owner}" if info.owner else ""
            raise method_not_allowed(object_name, "POST", hint)
        if isinstance(body, list):
            status, result = self._batch(
                body,
                lambda r: self._create_one(info, r, entity, document=document),
                transaction=transaction,
                ok_status=201,
                needs_savepoint=self._carries_lines(info),
            )
            return status, result or {}
        with self._atomic(True):
            return 201, envelopes.single(self._create_one(info, body, entity, document=document))

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
        info, document = self.named(object_name)
        if info.update_operation_id is None:
            hint = f"; write it through {info.owner}" if info.owner else ""
            raise method_not_allowed(object_name, "PATCH", hint)
        if key is not None:
            if isinstance(body, list):
                raise validation.payload_required("PATCH")
            with self._atomic(True):
                return 200, envelopes.single(
                    self._update_one(info, key, body, entity, document=document)
                )
        records = body if isinstance(body, list) else [body]

        def one(record: Any) -> dict[str, Any]:
            if not isinstance(record, Mapping):
                raise validation.payload_required("PATCH")
            record_key = record.get("key")
            if record_key is None:
                problems = validation.Problems()
                problems.missing("/key")
                raise problems.error()
            return self._update_one(info, str(record_key), record, entity, document=document)

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
        info, document = self.named(object_name)
        if info.delete_operation_id is None:
            raise method_not_allowed(object_name, "DELETE")
        if len(keys) == 1:
            with self._atomic(True):
                self._delete_one(info, keys[0], entity, document=document)
            return 204, None
        return self._batch(
            list(keys),
            lambda k: self._delete_one(info, k, entity, document=document),
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
        document: str | None = None,
    ) -> dict[str, Any]:
        """One new record and its nested lines, which may nest lines of their own (a dunning
        notice's customers and their invoices). ``document``: the transaction definition of a
        ``{object}::{documentName}`` create, kept as ``documentType`` on the record and on its
        lines (Intacct sets it; read-only in the spec)."""
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
        if document is not None and "documentType" in schema_tools.properties(self.schema(info)):
            record["documentType"] = document
        self._fill_defaults(info, record)
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
                self._create_one(
                    line_info,
                    item,
                    entity,
                    owner=(info, row),
                    cleaned=dict(item),
                    document=document,
                )
        return self.reference(info.name, row)

    def _fill_defaults(self, info: ObjectInfo, record: dict[str, Any]) -> None:
        """What Intacct fills on create: the spec's ``default`` of each absent member (a vendor
        is ``active`` unless told otherwise) and the names of referenced records (an invoice's
        ``customer.name``), so a read after a write looks like Intacct's."""
        props = schema_tools.properties(self.schema(info))
        # a line's members that its owner also has (``state``) follow the owner: not defaulted
        inherited: frozenset[str] = frozenset()
        if info.owner is not None and info.owner in self.registry.objects:
            owner_schema = self.schema(self.registry.objects[info.owner])
            inherited = frozenset(schema_tools.properties(owner_schema))
        for name, sub in props.items():
            if name in record or name in inherited or not isinstance(sub, Mapping):
                continue
            default = sub.get("default")
            if default is not None:
                record[name] = schema_tools.deep_copy(default)
        names = tuple(self.registry.objects)
        for name, value in list(record.items()):
            ref_schema = props.get(name)
            if not isinstance(value, dict) or not isinstance(ref_schema, Mapping):
                continue
            members = schema_tools.properties(ref_schema)
            if "name" not in members or value.get("name") is not None:
                continue
            target = schema_tools.ref_target(names, info.application, name, ref_schema)
            if target is None:
                continue
            found = self._referenced(target, value)
            if found is not None and found.get("name") is not None:
                value["name"] = found["name"]
                value.setdefault("key", found.get("key"))
                value.setdefault("id", found.get("id"))

    def _referenced(self, object_name: str, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored record a reference names by ``key`` or ``id`` (None if absent)."""
        key = ref.get("key")
        if key is None and ref.get("id") is not None:
            key = self.store.key_for_id(object_name, str(ref["id"]))
        if key is None:
            return None
        try:
            return self.fetch(object_name, str(key))
        except (EmulatorError, ValueError):
            return None

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
        document: str | None = None,
    ) -> dict[str, Any]:
        if cleaned is None:
            problems = validation.Problems()
            cleaned = self._validate(info, body, creating=False, problems=problems)
            if problems.details:
                raise problems.error()
        row = self._row(info, key, entity, document)
        if owner_key is not None and row.parent != owner_key:
            raise not_found(info.name, key)
        lines = {p: cleaned.pop(p) for p in list(info.owned_lists) if p in cleaned}
        for member in ("key", "id", "href", validation.OPERATION_MEMBER):
            cleaned.pop(member, None)  # identity is immutable; Intacct ignores read-only members
        record = merge_changes(row.record(), cleaned)
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
        self,
        info: ObjectInfo,
        key: str,
        entity: str | None,
        *,
        owner_key: int | None = None,
        document: str | None = None,
    ) -> None:
        row = self._row(info, key, entity, document)
        if owner_key is not None and row.parent != owner_key:
            raise not_found(info.name, key)
        for line_name in info.owned_lists.values():
            line_info = self.registry.objects.get(line_name)
            if line_info is None:
                continue
            for line in self.store.children(line_name, row.key):
                self._delete_one(line_info, str(line.key), None, owner_key=row.key)
        self.store.delete(info.name, row.key)
