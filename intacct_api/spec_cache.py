"""The spec index on disk, so that a process start does not rebuild it from 6 MB of JSON.

Why: every tap, target, emulator and ``intacct`` process needs the registry's index (2,152
operations, 529 objects, owners and owned lists). Building it decodes all of Sage's files and
walks them: ~130 ms, a third of a short target run's start-up beyond Python and singer-sdk.
Reading it back from the disk cache takes ~15 ms, and the files are then decoded only when a
schema of theirs is needed (``SpecFile``).

The key (``intacct_api.disk_cache``) is every spec file in load order (path, size,
modification time; the order matters, later files win) and the code that builds the index, so
an added ``spec_path`` file, an upgraded wheel or an edited checkout builds it again. What is
stored is exactly what the builder computed (the lazily computed facts, such as
``has_modified_timestamp``, stay lazy); ``tests/core/test_disk_caches.py`` checks that a
registry read from the cache equals one built from the files, schemas included. A file decoded
later must still be the one the index was built from (``SpecFile.indexed_as``): a file changed
under a running process is an error, never a silently different schema.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from intacct_api.disk_cache import DiskCache, code_stamps, file_stamps

if TYPE_CHECKING:
    from intacct_api.spec import ObjectInfo, Operation, SpecFile

__all__ = ["load", "store"]

logger = logging.getLogger(__name__)

FORMAT = 1
"""Raised when the rows below change shape."""
_CODE = ("intacct_api/spec.py", "intacct_api/schema.py", "intacct_api/spec_cache.py")
_KEEP = 8
"""Index files kept (several installs or spec_path sets on one machine)."""


class _ParameterRow(msgspec.Struct, array_like=True):
    name: str
    location: str
    required: bool
    schema: dict[str, Any]
    description: str | None
    example: Any


class _OperationRow(msgspec.Struct, array_like=True):
    operation_id: str
    method: str
    path: str
    application: str | None
    object_name: str | None
    kind: str
    parameters: list[_ParameterRow]
    summary: str
    description: str
    spec_path: str
    source: int  # position of its file in the registry's load order
    spec_method: str


class _ObjectRow(msgspec.Struct, array_like=True):
    name: str
    application: str
    schema_name: str
    list_operation_id: str | None
    get_operation_id: str | None
    create_operation_id: str | None
    update_operation_id: str | None
    delete_operation_id: str | None
    required_on_create: list[str]
    owner: str | None
    owned_lists: dict[str, str]
    operation_ids: list[str]
    source: int


class _Index(msgspec.Struct, array_like=True):
    operations: list[_OperationRow]
    objects: list[_ObjectRow]


_DECODER = msgspec.msgpack.Decoder(_Index)


def _entry(
    sources: Sequence[SpecFile],
) -> tuple[DiskCache, Path | None, list[tuple[str, int, int]]]:
    cache = DiskCache("spec-index", prefix="index", suffix=".msgpack", keep=_KEEP)
    files = file_stamps(source.path for source in sources)
    if len(files) != len(sources):  # a file is missing: building says which, loudly
        return cache, None, files
    parts = {"format": FORMAT, "files": files, "code": code_stamps(*_CODE)}
    return cache, cache.path_for(parts), files


def load(
    sources: Sequence[SpecFile],
) -> tuple[dict[str, Operation], dict[str, ObjectInfo]] | None:
    """The cached index for these files, or None (absent, unreadable, or caching off)."""
    from intacct_api.spec import ObjectInfo, Operation, Parameter

    cache, path, stamps = _entry(sources)
    data = cache.read(path)
    if data is None:
        return None
    try:
        index = _DECODER.decode(data)
        operations = {
            row.operation_id: Operation(
                operation_id=row.operation_id,
                method=row.method,
                path=row.path,
                application=row.application,
                object_name=row.object_name,
                kind=row.kind,
                parameters=tuple(
                    Parameter(p.name, p.location, p.required, p.schema, p.description, p.example)
                    for p in row.parameters
                ),
                summary=row.summary,
                source_file=sources[row.source].name,
                description=row.description,
                spec_path=row.spec_path,
                _source=sources[row.source],
                _method=row.spec_method,
            )
            for row in index.operations
        }
        objects = {
            row.name: ObjectInfo(
                name=row.name,
                application=row.application,
                schema_name=row.schema_name,
                source_file=sources[row.source].name,
                list_operation_id=row.list_operation_id,
                get_operation_id=row.get_operation_id,
                create_operation_id=row.create_operation_id,
                update_operation_id=row.update_operation_id,
                delete_operation_id=row.delete_operation_id,
                required_on_create=tuple(row.required_on_create),
                owner=row.owner,
                owned_lists=row.owned_lists,
                operation_ids=tuple(row.operation_ids),
                _source=sources[row.source],
            )
            for row in index.objects
        }
    except (msgspec.DecodeError, msgspec.ValidationError, IndexError) as exc:
        logger.info("spec index cache %s unusable (%s); building the index again", path, exc)
        return None
    for source, (_, size, mtime_ns) in zip(sources, stamps, strict=True):
        source.indexed_as = (size, mtime_ns)
    return operations, objects


def store(
    sources: Sequence[SpecFile],
    operations: Mapping[str, Operation],
    objects: Mapping[str, ObjectInfo],
) -> None:
    """Keep a freshly built index for the next process (a failure is only logged)."""
    cache, path, _ = _entry(sources)
    if path is None:
        return
    position = {id(source): i for i, source in enumerate(sources)}
    index = _Index(
        operations=[
            _OperationRow(
                operation_id=op.operation_id,
                method=op.method,
                path=op.path,
                application=op.application,
                object_name=op.object_name,
                kind=op.kind,
                parameters=[
                    _ParameterRow(
                        p.name, p.location, p.required, p.schema, p.description, p.example
                    )
                    for p in op.parameters
                ],
                summary=op.summary,
                description=op.description,
                spec_path=op.spec_path,
                source=position[id(op._source)],
                spec_method=op._method,
            )
            for op in operations.values()
        ],
        objects=[
            _ObjectRow(
                name=info.name,
                application=info.application,
                schema_name=info.schema_name,
                list_operation_id=info.list_operation_id,
                get_operation_id=info.get_operation_id,
                create_operation_id=info.create_operation_id,
                update_operation_id=info.update_operation_id,
                delete_operation_id=info.delete_operation_id,
                required_on_create=list(info.required_on_create),
                owner=info.owner,
                owned_lists=dict(info.owned_lists),
                operation_ids=list(info.operation_ids),
                source=position[id(info._source)],
            )
            for info in objects.values()
        ],
    )
    try:
        data = msgspec.msgpack.encode(index)
    except (msgspec.EncodeError, OverflowError, TypeError) as exc:  # e.g. an integer > 2**64
        logger.info("spec index not cached (%s); it is built again next time", exc)
        return
    cache.write(path, data)
