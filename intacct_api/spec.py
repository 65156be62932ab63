"""The spec registry: every operation and object of Sage's OpenAPI files, indexed for lookups.

Everything that needs to know "what does the API offer" asks this module: the tap (streams),
the target (sinks, required fields, owned lines), the emulator (routes, schemas) and the CLI.

Loading: the embedded files first (sorted), then each ``extra_paths`` entry in order (a file, or
a folder whose ``*.json`` are taken sorted). For the same operationId the later file wins, and
``source_of`` tells which file that was. The index is a pure function of the files and of
this code, so it is kept on disk (``spec_cache``) and read back in ~15 ms instead of built in
~130 ms; files are decoded with ``msgspec.json`` only when something of theirs is asked for,
and schemas are resolved per object on demand (see ``schema.py``), so a listing command never
pays for schema resolution.

Path rules (``classify_path``):

* ``/objects/{app}/{obj}``: GET = list, POST = create.
* ``/objects/{app}/{obj}/{key}`` (or any sub-path such as ``/setup``): GET = get,
  PATCH/PUT = update, DELETE = delete, POST = create.
* ``/objects/{app}/{obj}::{documentName}...``: the same, for object ``{app}/{obj}`` (Order Entry,
  Purchasing and Inventory Control documents are one object per transaction definition name).
* ``/workflows/{app}/{obj}/{action}`` = workflow; ``POST /services/core/query`` = query; anything
  else under ``/services`` = service. Services have an application but no object.
* The spec's misspelt ``/objects/acounts-payable/joint-payee/{key}`` is mapped to
  ``accounts-payable`` (both ``application``/``object_name`` and the callable ``path``); the
  path as written in the file stays available as ``Operation.spec_path``.

Owned objects (``owner``/``owned_lists``): object O owns object X through property P when P is a
top-level array property of O's component schema whose ``items`` is a ``$ref`` to X's component
schema (as ``bill.lines -> accounts-payable/bill-line``). When several objects claim the same X
(e.g. a line schema reused by a summary object), the owner is the claimer that X points back
to with a property of the claimer's object name (``bill-line.bill``), else the claimer whose
object name is the longest prefix of X's, else the first in name order.

Required fields on create (``required_on_create``) come from ``<app>-<obj>RequiredProperties``
after ``allOf`` merging: the top-level ``required`` names plus, for nested objects, dotted leaf
paths (``vendor.id``); a required object whose members are themselves required is listed by its
leaf paths only. Requirements inside arrays (``lines[].dimensions``) belong to the owned object
and alternatives (``oneOf``) are conditional, so neither is listed.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec

from intacct_api.errors import UnknownObjectError, UnknownOperationError
from intacct_api.schema import SchemaResolver
from intacct_api.specs_location import embedded_spec_files

__all__ = [
    "KINDS",
    "ObjectInfo",
    "Operation",
    "Parameter",
    "SpecFile",
    "SpecRegistry",
    "classify_path",
    "default_registry",
    "object_name_from_stream",
    "stream_name",
]

KINDS = ("list", "get", "create", "update", "delete", "query", "workflow", "service")
_HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options", "trace")
_APPLICATION_ALIASES = {"acounts-payable": "accounts-payable"}
"""Misspellings of application segments found in Sage's files -> the real application."""


def stream_name(object_name: str) -> str:
    """``accounts-receivable/customer`` -> ``accounts_receivable__customer`` (Singer-safe)."""
    application, _, obj = object_name.partition("/")
    return f"{application}__{obj}".replace("-", "_")


def object_name_from_stream(stream: str) -> str:
    """Inverse of ``stream_name`` (no object or application name contains ``_``)."""
    application, sep, obj = stream.partition("__")
    if not sep:
        return stream.replace("_", "-")
    return f"{application.replace('_', '-')}/{obj.replace('_', '-')}"


def _application(segment: str) -> str:
    return _APPLICATION_ALIASES.get(segment, segment)


def classify_path(method: str, path: str) -> tuple[str | None, str | None, str]:
    """Return ``(application, object_name, kind)`` for an operation (rules in module doc)."""
    method = method.upper()
    segments = [s for s in path.split("/") if s]
    root = segments[0] if segments else ""
    if root == "objects" and len(segments) >= 3:
        application = _application(segments[1])
        obj = segments[2].split("::", 1)[0]
        is_item = len(segments) > 3
        if method == "GET":
            kind = "get" if is_item else "list"
        elif method == "POST":
            kind = "create"
        elif method in ("PATCH", "PUT"):
            kind = "update"
        elif method == "DELETE":
            kind = "delete"
        else:
            kind = "service"
        return application, f"{application}/{obj}", kind
    if root == "workflows" and len(segments) >= 3:
        application = _application(segments[1])
        return application, f"{application}/{segments[2]}", "workflow"
    if root == "services":
        service_app = segments[1] if len(segments) > 1 else None
        is_query = method == "POST" and segments[1:3] == ["core", "query"] and len(segments) == 3
        return service_app, None, "query" if is_query else "service"
    return None, None, "service"


def _canonical_path(path: str) -> str:
    segments = path.split("/")
    if len(segments) > 2 and segments[1] in ("objects", "workflows"):
        segments[2] = _application(segments[2])
    return "/".join(segments)


@dataclass(frozen=True)
class Parameter:
    """One operation parameter; ``schema`` is already JSON Schema."""

    name: str
    location: str  # "path" | "query" | "header"
    required: bool
    schema: dict[str, Any]
    description: str | None
    example: Any = None

    def __hash__(self) -> int:  # ``schema`` is a dict: hash the identity instead
        return hash((self.name, self.location))


@dataclass(frozen=True)
class Operation:
    """One OpenAPI operation. Schemas are resolved lazily through the file's cached resolver."""

    operation_id: str
    method: str
    path: str
    application: str | None
    object_name: str | None
    kind: str
    parameters: tuple[Parameter, ...]
    summary: str
    source_file: str
    description: str = ""
    spec_path: str = ""  # the path exactly as written in the spec (differs only for typos)
    _source: SpecFile | None = field(default=None, repr=False, compare=False)
    _method: str = field(default="", repr=False, compare=False)  # the spec's key: "get", ...

    def __hash__(self) -> int:  # usable in sets/dict keys despite the dict-valued fields
        return hash((self.operation_id, self.source_file, self.spec_path))

    @property
    def _resolver(self) -> SchemaResolver | None:
        return None if self._source is None else self._source.resolver

    @property
    def _node(self) -> Mapping[str, Any]:
        """The operation's object in its file (``paths[spec_path][method]``)."""
        if self._source is None:
            return {}
        paths = self._source.resolver.document.get("paths") or {}
        node = (paths.get(self.spec_path) or {}).get(self._method)
        if not isinstance(node, Mapping):  # the index and the file disagree: never guess
            raise RuntimeError(
                f"{self._source.path}: {self._method.upper()} {self.spec_path} "
                f"({self.operation_id}) is not in the file its index was built from"
            )
        return node

    def request_schema(self) -> dict[str, Any] | None:
        """JSON Schema of the JSON request body, or None when the operation takes none."""
        if self._resolver is None:
            return None
        body = self._resolver.deref(self._node.get("requestBody"))
        schema = _json_media_schema(body)
        return None if schema is None else self._resolver.resolve(schema)

    def request_body_required(self) -> bool:
        """Whether the spec marks the request body as required."""
        if self._resolver is None:
            return False
        body = self._resolver.deref(self._node.get("requestBody"))
        return isinstance(body, Mapping) and body.get("required") is True

    def response_schema(self) -> dict[str, Any] | None:
        """JSON Schema of the first 2xx JSON response (None for 204-only operations)."""
        first = next(self._success_schemas(), None)
        if first is None or self._resolver is None:
            return None
        return self._resolver.resolve(first)

    def result_schema_name(self) -> str | None:
        """Component name that ``ia::result`` (or its items) of the 2xx response refers to."""
        for schema in self._success_schemas():
            result = (schema.get("properties") or {}).get("ia::result")
            if isinstance(result, Mapping) and isinstance(result.get("items"), Mapping):
                result = result["items"]
            name = _component_ref(result)
            if name:
                return name
        return None

    def _success_schemas(self) -> Iterator[Mapping[str, Any]]:
        """Unresolved JSON schemas of the 2xx responses, in status order."""
        if self._resolver is None:
            return
        responses = self._node.get("responses")
        if not isinstance(responses, Mapping):
            return
        for status in sorted(str(s) for s in responses):
            if status.startswith("2"):
                schema = _json_media_schema(self._resolver.deref(responses[status]))
                if schema is not None:
                    yield schema


def _json_media_schema(container: Any) -> Mapping[str, Any] | None:
    if not isinstance(container, Mapping):
        return None
    content = container.get("content")
    if not isinstance(content, Mapping):
        return None
    for media_type, media in content.items():
        if "json" in str(media_type) and isinstance(media, Mapping):
            schema = media.get("schema")
            if isinstance(schema, Mapping):
                return schema
    return None


def _component_ref(node: Any) -> str | None:
    prefix = "#/components/schemas/"
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(prefix):
            return ref[len(prefix) :]
        for part in node.get("allOf") or ():
            name = _component_ref(part)
            if name:
                return name
    return None


@dataclass
class ObjectInfo:
    """One ``/objects/{app}/{obj}`` family: its operations and what readers/writers need."""

    name: str
    application: str
    schema_name: str
    source_file: str
    list_operation_id: str | None = None
    get_operation_id: str | None = None
    create_operation_id: str | None = None
    update_operation_id: str | None = None
    delete_operation_id: str | None = None
    required_on_create: tuple[str, ...] = ()
    owner: str | None = None
    owned_lists: dict[str, str] = field(default_factory=dict)
    operation_ids: tuple[str, ...] = ()  # every operation of the family, workflows included
    _source: SpecFile | None = field(default=None, repr=False, compare=False)

    @property
    def _resolver(self) -> SchemaResolver | None:
        return None if self._source is None else self._source.resolver

    @property
    def stream(self) -> str:
        return stream_name(self.name)

    # The two below are computed on first use: a run reads one or two objects of the 500+.

    @cached_property
    def has_modified_timestamp(self) -> bool:
        """Whether the record has ``audit.modifiedDateTime`` (the incremental replication key)."""
        return self._resolver is not None and _has_modified_timestamp(
            self._resolver, self.schema_name
        )

    @cached_property
    def owner_property(self) -> str | None:
        """The member of an owned record that references its owner (``bill`` on a bill line,
        ``arAdvance`` on an AR advance line): the one place engine, target and emulator read
        it."""
        return None if self.owner is None else _owner_property(self, self.owner)

    @property
    def owner_reference(self) -> str | None:
        """Where an input line names its owner (``<this>.key``): the spec's member referencing
        the owner (:attr:`owner_property`) or, for the lines whose schema has none, the owner's
        name in camelCase (``payment`` on an AP payment line), a convention of this project."""
        if self.owner is None:
            return None
        return self.owner_property or _camel(self.owner.partition("/")[2])

    def record_schema(self) -> dict[str, Any]:
        """Resolved JSON Schema of a full record (cached per file and schema name)."""
        if self._resolver is None:
            return {"type": "object", "properties": {}}
        return self._resolver.record_schema(self.schema_name)


class SpecFile:
    """One spec file, decoded on first use.

    With the index read from its disk cache (``spec_cache``), a run decodes only the files
    whose schemas it asks for: the target writing customers decodes one 0.5 MB file of the
    6 MB.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.indexed_as: tuple[int, int] | None = None
        """(size, mtime in ns) of the file the cached index was built from, checked when the
        file is decoded later: an index must never be paired with another version of it."""
        self._resolver: SchemaResolver | None = None
        self._lock = threading.Lock()

    @property
    def resolver(self) -> SchemaResolver:
        if self._resolver is None:
            with self._lock:
                if self._resolver is None:
                    content = self.path.read_bytes()
                    if self.indexed_as is not None:
                        info = self.path.stat()
                        if (info.st_size, info.st_mtime_ns) != self.indexed_as:
                            raise RuntimeError(
                                f"{self.path} changed while this process was running (its "
                                "index was read before the change); run it again"
                            )
                    document = msgspec.json.decode(content)
                    if not isinstance(document, dict):
                        raise ValueError(f"{self.path}: not an OpenAPI document")
                    self._resolver = SchemaResolver(document, self.name)
        return self._resolver


class SpecRegistry:
    """Index of operations and objects across the embedded and extra spec files."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files: tuple[Path, ...] = tuple(files)
        self._lock = threading.RLock()
        self.sources: tuple[SpecFile, ...] = tuple(SpecFile(path) for path in self.files)
        self._operations: dict[str, Operation] | None = None
        self._objects: dict[str, ObjectInfo] | None = None

    @classmethod
    def load(cls, extra_paths: Sequence[str | Path] = ()) -> SpecRegistry:
        """Embedded specs first, then each extra path (file or folder) in order; later wins."""
        files = list(embedded_spec_files())
        for entry in extra_paths:
            path = Path(entry).expanduser()
            if path.is_dir():
                files.extend(sorted(p for p in path.glob("*.json") if p.is_file()))
            elif path.is_file():
                files.append(path)
            else:
                raise FileNotFoundError(f"spec path not found: {path}")
        return cls(files)

    # -- indexes (built on first use) -------------------------------------------------------
    @property
    def operations(self) -> Mapping[str, Operation]:
        if self._operations is None:
            self._index()
            assert self._operations is not None
        return self._operations

    @property
    def objects(self) -> Mapping[str, ObjectInfo]:
        if self._objects is None:
            self._index()
            assert self._objects is not None
        return self._objects

    def _index(self) -> None:
        """Both indexes: from the disk cache while the files and this code are unchanged
        (~15 ms), else built from the files (~130 ms for the embedded ones) and cached."""
        with self._lock:
            if self._objects is not None:
                return
            from intacct_api import spec_cache  # it builds our dataclasses: imported late

            cached = spec_cache.load(self.sources)
            if cached is not None:
                self._operations, self._objects = cached
                return
            operations = self._index_operations()
            objects = self._index_objects(operations)
            spec_cache.store(self.sources, operations, objects)
            self._operations, self._objects = operations, objects

    def _index_operations(self) -> dict[str, Operation]:
        operations: dict[str, Operation] = {}
        for source in self.sources:
            resolver = source.resolver
            paths = resolver.document.get("paths") or {}
            for raw_path, item in paths.items():
                if not isinstance(item, Mapping):
                    continue
                shared = _parameters(resolver, item.get("parameters"))
                for method in _HTTP_METHODS:
                    node = item.get(method)
                    if not isinstance(node, Mapping) or "operationId" not in node:
                        continue
                    operation_id = str(node["operationId"])
                    own = _parameters(resolver, node.get("parameters"))
                    merged = {(p.name, p.location): p for p in (*shared, *own)}
                    application, object_name, kind = classify_path(method, raw_path)
                    operations.pop(operation_id, None)  # later file wins, and sorts last
                    operations[operation_id] = Operation(
                        operation_id=operation_id,
                        method=method.upper(),
                        path=_canonical_path(raw_path),
                        application=application,
                        object_name=object_name,
                        kind=kind,
                        parameters=tuple(merged.values()),
                        summary=str(node.get("summary") or ""),
                        source_file=source.name,
                        description=str(node.get("description") or ""),
                        spec_path=raw_path,
                        _source=source,
                        _method=method,
                    )
        return operations

    def _index_objects(self, operations: Mapping[str, Operation]) -> dict[str, ObjectInfo]:
        families: dict[str, list[Operation]] = {}
        for operation in operations.values():
            if operation.object_name:
                families.setdefault(operation.object_name, []).append(operation)
        schema_owner: dict[str, SpecFile] = {}  # component name -> last file defining it
        for source in self.sources:
            for name in source.resolver.schema_names():
                schema_owner[name] = source
        objects: dict[str, ObjectInfo] = {}
        for name, ops in sorted(families.items()):
            info = _object_info(name, ops, schema_owner)
            if info is not None:
                objects[name] = info
        _link_owned(objects)
        return objects

    # -- lookups ----------------------------------------------------------------------------
    def operation(self, operation_id: str) -> Operation:
        try:
            return self.operations[operation_id]
        except KeyError:
            raise UnknownOperationError(
                operation_id, _suggest(operation_id, self.operations)
            ) from None

    def object(self, name: str) -> ObjectInfo:
        """Look an object up by ``app/obj`` or stream name (``app__obj``)."""
        objects = self.objects
        candidates = [name]
        if "/" not in name:
            candidates.append(object_name_from_stream(name))
        for candidate in candidates:
            application, _, obj = candidate.partition("/")
            canonical = f"{_application(application)}/{obj}"
            if canonical in objects:
                return objects[canonical]
        raise UnknownObjectError(name, _suggest(name, objects))

    def find_operations(
        self,
        *,
        application: str | None = None,
        kind: str | None = None,
        object_name: str | None = None,
    ) -> list[Operation]:
        """Operations matching every given filter, ordered by operationId."""
        if object_name is not None and "/" not in object_name:
            object_name = object_name_from_stream(object_name)
        found = [
            op
            for op in self.operations.values()
            if (application is None or op.application == application)
            and (kind is None or op.kind == kind)
            and (object_name is None or op.object_name == object_name)
        ]
        return sorted(found, key=lambda op: op.operation_id)

    def applications(self) -> list[str]:
        return sorted({op.application for op in self.operations.values() if op.application})

    def source_of(self, operation_id: str) -> str:
        return self.operation(operation_id).source_file

    def queryable_objects(self) -> list[ObjectInfo]:
        return [info for info in self.objects.values() if info.list_operation_id]

    def suggest_objects(self, name: str) -> list[str]:
        return _suggest(name, self.objects)


def _suggest(name: str, names: Iterable[str], limit: int = 5) -> list[str]:
    """Closest names by difflib, topped up with names containing the query as a substring."""
    pool = list(names)
    found = difflib.get_close_matches(name, pool, n=limit, cutoff=0.6)
    if len(found) < limit and name:
        lowered = name.lower()
        for candidate in sorted(pool):
            if lowered in candidate.lower() and candidate not in found:
                found.append(candidate)
                if len(found) >= limit:
                    break
    return found


def _parameters(resolver: SchemaResolver, raw: Any) -> list[Parameter]:
    result: list[Parameter] = []
    if not isinstance(raw, list):
        return result
    for entry in raw:
        node = resolver.deref(entry)
        if not isinstance(node, Mapping) or "name" not in node:
            continue
        schema_node = node.get("schema")
        schema = resolver.resolve(schema_node) if isinstance(schema_node, Mapping) else {}
        location = str(node.get("in") or "query")
        result.append(
            Parameter(
                name=str(node["name"]),
                location=location,
                required=bool(node.get("required")) or location == "path",
                schema=schema,
                description=node.get("description"),
                example=node.get("example"),
            )
        )
    return result


def _pick(ops: list[Operation], kind: str) -> str | None:
    """Prefer the plain path (no ``::{documentName}``), then the ``{key}``/collection shape."""
    candidates = [op for op in ops if op.kind == kind]
    if not candidates:
        return None

    def rank(op: Operation) -> tuple[int, int, str]:
        last = op.path.rsplit("/", 1)[-1]
        collection = kind in ("list", "create")
        shape_ok = (last == "{key}") != collection
        return ("::" in op.path, not shape_ok, op.operation_id)

    return min(candidates, key=rank).operation_id


def _object_info(
    name: str, ops: list[Operation], schema_owner: Mapping[str, SpecFile]
) -> ObjectInfo | None:
    if not any(op.path.startswith("/objects/") for op in ops):
        return None
    application, _, obj = name.partition("/")
    schema_name = f"objects.{application}.{obj}"
    source = schema_owner.get(schema_name)
    if source is None:
        # a few families name their record schema differently; the get operation says which
        for op in sorted(ops, key=lambda o: o.kind != "get"):
            ref = op.result_schema_name() if op.kind == "get" else None
            if ref and ref in schema_owner and ref != "object-reference":
                schema_name, source = ref, schema_owner[ref]
                break
    if source is None:
        return None
    resolver = source.resolver
    info = ObjectInfo(
        name=name,
        application=application,
        schema_name=schema_name,
        source_file=source.name,
        list_operation_id=_pick(ops, "list"),
        get_operation_id=_pick(ops, "get"),
        create_operation_id=_pick(ops, "create"),
        update_operation_id=_pick(ops, "update"),
        delete_operation_id=_pick(ops, "delete"),
        operation_ids=tuple(sorted(op.operation_id for op in ops)),
        _source=source,
    )
    required_name = f"{application}-{obj}RequiredProperties"
    if resolver.has_component(required_name):
        info.required_on_create = tuple(_required_paths(resolver.component(required_name), ""))
    return info


def _required_paths(schema: Mapping[str, Any], prefix: str) -> list[str]:
    props = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
    assert isinstance(props, Mapping)
    nested: dict[str, list[str]] = {}
    for prop, sub in props.items():
        if isinstance(sub, Mapping) and sub.get("type") in ("object", ["object", "null"]):
            paths = _required_paths(sub, f"{prefix}{prop}.")
            if paths:
                nested[prop] = paths
    out: list[str] = []
    for name in schema.get("required") or ():
        out.extend(nested.pop(name, [f"{prefix}{name}"]))
    for paths in nested.values():
        out.extend(paths)
    return list(dict.fromkeys(out))


def _top_properties(resolver: SchemaResolver, schema_name: str) -> dict[str, Any]:
    """Raw (unresolved) top-level properties of a component, looking through ``allOf``."""
    found: dict[str, Any] = {}
    stack = [resolver.raw_component(schema_name)]
    seen: set[int] = set()
    while stack:
        node = resolver.deref(stack.pop())
        if not isinstance(node, Mapping) or id(node) in seen:
            continue
        seen.add(id(node))
        props = node.get("properties")
        if isinstance(props, Mapping):
            for key, value in props.items():
                found.setdefault(key, value)
        stack.extend(reversed(node.get("allOf") or []))
    return found


def _has_modified_timestamp(resolver: SchemaResolver, schema_name: str) -> bool:
    audit = _top_properties(resolver, schema_name).get("audit")
    if not isinstance(audit, Mapping):
        return False
    props = resolver.resolve(audit).get("properties") or {}
    return "modifiedDateTime" in props


def _link_owned(objects: dict[str, ObjectInfo]) -> None:
    by_schema = {info.schema_name: info.name for info in objects.values()}
    claims: dict[str, list[tuple[str, str]]] = {}  # owned -> [(owner, property)]
    for info in objects.values():
        if info._resolver is None:
            continue
        for prop, raw in _top_properties(info._resolver, info.schema_name).items():
            node = info._resolver.deref(raw)
            if not isinstance(node, Mapping) or node.get("type") != "array":
                continue
            target = by_schema.get(_component_ref(node.get("items")) or "")
            if target and target != info.name:
                claims.setdefault(target, []).append((info.name, prop))
    for owned, claimers in claims.items():
        owned_info = objects[owned]
        back_refs: set[str] = set()
        if owned_info._resolver is not None:
            back_refs = set(_top_properties(owned_info._resolver, owned_info.schema_name))
        owned_obj = owned.partition("/")[2]
        owner = min(claimers, key=lambda c: _owner_rank(c[0], owned_obj, back_refs))[0]
        owned_info.owner = owner
        for claimer, prop in claimers:
            objects[claimer].owned_lists[prop] = owned
    for info in objects.values():
        info.owned_lists = dict(sorted(info.owned_lists.items()))


def _owner_property(owned: ObjectInfo, owner: str) -> str | None:
    """The owned record's member referencing ``owner``: named after it (``bill``) or after it
    with ``Header`` (``documentHeader`` on an order-entry document line, which Sage's schema
    requires on create, where ``relatedDocument`` is a change order's source); failing that, a
    reference whose example ``href`` points at the owner's collection (``arAdvance``
    -> ``/objects/accounts-receivable/advance/23``); failing that, the one reference named
    after the owner with a prefix (``apAdvance``, whose example href Sage misspelled)."""
    if owned._resolver is None:
        return None
    props = _top_properties(owned._resolver, owned.schema_name)
    named = _camel(owner.partition("/")[2])
    if named in props:
        return named
    if named + "Header" in props:  # document lines: `documentHeader` (required on create)
        return named + "Header"
    prefix = f"/objects/{owner}/"
    suffix = named[:1].upper() + named[1:]
    qualified: list[str] = []  # `apAdvance` for `advance`: the owner's name with a prefix
    for name, raw in props.items():
        node = owned._resolver.resolve(raw)
        members = (node.get("properties") or {}) if isinstance(node, Mapping) else {}
        href = members.get("href")
        examples = [*(href.get("examples") or ()), href.get("example")] if href else []
        if any(isinstance(e, str) and e.startswith(prefix) for e in examples):
            return name
        if name.endswith(suffix) and ("key" in members or "id" in members):
            qualified.append(name)
    return qualified[0] if len(qualified) == 1 else None


def _owner_rank(claimer: str, owned_obj: str, back_refs: set[str]) -> tuple[bool, int, str]:
    """Sort key among objects claiming the same owned object (best first; see module doc)."""
    claimer_obj = claimer.partition("/")[2]
    pointed_back = _camel(claimer_obj) in back_refs
    prefix_len = len(claimer_obj) if owned_obj.startswith(claimer_obj + "-") else 0
    return (not pointed_back, -prefix_len, claimer)


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_DEFAULT: dict[tuple[str, ...], SpecRegistry] = {}
_DEFAULT_LOCK = threading.Lock()


def default_registry(extra_paths: Sequence[str | Path] = ()) -> SpecRegistry:
    """Process-wide registry per list of extra paths (building it is the costly part)."""
    key = tuple(str(p) for p in extra_paths)
    with _DEFAULT_LOCK:
        registry = _DEFAULT.get(key)
        if registry is None:
            registry = SpecRegistry.load(key)
            _DEFAULT[key] = registry
        return registry
