"""One emulated company's data: its records and entities, lookups, and the read services.

:class:`CompanyData` owns the store, the audit clock, the query engine and the model builder,
and answers reads (query, model, list, get). Writes are in :mod:`intacct_emulator.company_writes`,
the helpers tests and seeding use in :mod:`intacct_emulator.company`.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
from typing import Any

from intacct_api.spec import ObjectInfo, SpecRegistry
from intacct_emulator import envelopes, schema_tools
from intacct_emulator.clock import AuditClock
from intacct_emulator.envelopes import (
    EmulatorError,
    not_found,
)
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
from intacct_emulator.store import Store, StoredRow, encode

__all__ = ["CompanyData"]

ENTITY_OBJECT = "company-config/entity"
USER_OBJECT = "company-config/user"
DEFAULT_USER = {"key": "1", "id": "admin", "href": f"/objects/{USER_OBJECT}/1"}


class CompanyData:
    """Data, lookups and reads of one emulated company (one lock around each call)."""

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
        self._document_named: dict[str, bool] = {}

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

    def named(self, object_name: str) -> tuple[ObjectInfo, str | None]:
        """The object of a write or read path and the document name it carries:
        ``order-entry/document::Sales Invoice`` -> (the document object, ``Sales Invoice``).
        ``::{documentName}`` is accepted only where the spec has such a path."""
        base, sep, document = object_name.partition("::")
        if not sep:
            return self.info(object_name), None
        info = self.info(base)
        if not document or not self.document_named(info):
            raise unknown_resource(object_name)
        return info, document

    def document_named(self, info: ObjectInfo) -> bool:
        """Whether the spec addresses ``info`` by ``{object}::{documentName}`` paths."""
        found = self._document_named.get(info.name)
        if found is None:
            paths = (self.registry.operation(op).path for op in info.operation_ids)
            found = any(f"{info.name.partition('/')[2]}::{{" in path for path in paths)
            self._document_named[info.name] = found
        return found

    def check_document(self, info: ObjectInfo, row: StoredRow, document: str | None) -> None:
        """A record addressed as ``{object}::{documentName}/{key}`` must have been made from
        that transaction definition (its ``documentType``): any other name answers 404, as a
        key of another object would (FIDELITY W18, assumed)."""
        if document is None:
            return
        if row.record().get("documentType") != document:
            raise not_found(f"{info.name}::{document}", str(row.key))

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

    def _row(
        self, info: ObjectInfo, key: Any, entity: str | None, document: str | None = None
    ) -> StoredRow:
        number = parse_key(key)
        if number is None:  # "1 " or "+1" is not key 1: no such record, as on Intacct
            raise not_found(info.name, str(key))
        row = self.store.get(info.name, number)
        if row is None or not self._visible(row.entity, entity):
            raise not_found(info.name, str(key))
        self.check_document(info, row, document)
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
        info, document = self.named(object_name)
        with self._lock:
            if len(keys) == 1:
                return envelopes.single(
                    self.render(info, self._row(info, keys[0], entity, document))
                )
            results: builtins.list[dict[str, Any]] = []
            errors = 0
            for key in keys:
                try:
                    results.append(self.render(info, self._row(info, key, entity, document)))
                except EmulatorError as exc:
                    errors += 1
                    results.append(envelopes.batch_error_entry(exc))
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
