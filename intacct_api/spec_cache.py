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

import dataclasses
import logging
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from intacct_api.disk_cache import DiskCache, code_stamps, file_stamps

if TYPE_CHECKING:
    from intacct_api.spec import ObjectInfo, Operation, SpecFile

__all__ = ["load", "store"]

logger = logging.getLogger(__name__)

FORMAT = 2
"""Raised when the way rows are made (below) changes; a change of the dataclasses' fields
changes the key through ``spec.py``'s stamp."""
_CODE = ("intacct_api/spec.py", "intacct_api/schema.py", "intacct_api/spec_cache.py")
_KEEP = 8
"""Index files kept (several installs or spec_path sets on one machine)."""
_FROM_THE_FILE = ("source_file", "_source")
"""Not stored: a row keeps its file's position in the load order (``source``) instead."""

_Record = TypeVar("_Record")


_ROW_TYPES: dict[str, type[msgspec.Struct]] = {}


def _row_type(cls: type) -> type[msgspec.Struct]:
    """A msgpack row holding every field of the dataclass ``cls`` (``Operation``,
    ``ObjectInfo``) but its file, so that no field list is written twice and a new field is
    cached without a change here."""
    row_type = _ROW_TYPES.get(cls.__name__)
    if row_type is None:
        hints = typing.get_type_hints(cls)
        fields = [
            (field.name, hints[field.name])
            for field in dataclasses.fields(cls)
            if field.name not in _FROM_THE_FILE
        ]
        row_type = msgspec.defstruct(
            f"_{cls.__name__}Row", [*fields, ("source", int)], array_like=True
        )
        _ROW_TYPES[cls.__name__] = row_type
    return row_type


def _to_row(record: Any, position: Mapping[int, int]) -> msgspec.Struct:
    row_type = _row_type(type(record))
    values = {name: getattr(record, name) for name in row_type.__struct_fields__[:-1]}
    return row_type(**values, source=position[id(record._source)])


def _from_row(cls: Callable[..., _Record], row: Any, sources: Sequence[SpecFile]) -> _Record:
    source = sources[row.source]
    values = {name: getattr(row, name) for name in row.__struct_fields__[:-1]}
    return cls(**values, source_file=source.name, _source=source)


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
    from intacct_api.spec import ObjectInfo, Operation

    cache, path, stamps = _entry(sources)
    data = cache.read(path)
    if data is None:
        return None
    operation_row: Any = _row_type(Operation)
    object_row: Any = _row_type(ObjectInfo)
    try:
        operation_rows, object_rows = msgspec.msgpack.decode(
            data, type=tuple[list[operation_row], list[object_row]]
        )
        operations = {
            row.operation_id: _from_row(Operation, row, sources) for row in operation_rows
        }
        objects = {row.name: _from_row(ObjectInfo, row, sources) for row in object_rows}
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
    index = (
        [_to_row(operation, position) for operation in operations.values()],
        [_to_row(info, position) for info in objects.values()],
    )
    try:
        data = msgspec.msgpack.encode(index)
    except (msgspec.EncodeError, OverflowError, TypeError) as exc:  # e.g. an integer > 2**64
        logger.info("spec index not cached (%s); it is built again next time", exc)
        return
    cache.write(path, data)
