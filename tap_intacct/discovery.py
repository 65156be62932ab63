"""What streams exist and with which schema: from the input catalog, the spec or the live model.

Three sources, in the order the tap consults them:

1. **The input catalog** (Meltano passes one on every run): streams are rebuilt from its
   *selected* entries, schemas taken as they are, and neither the spec's schemas nor the
   network are touched. Deselected entries are not instantiated at all (a catalog lists all
   523 objects; building streams only to skip them cost time and one log line each).
   Selected entries that name no known object or configured operation are skipped with a
   warning (a catalog from an older spec).
2. **The spec** (``schema_source: spec``, default): one stream per queryable object of the
   registry, offline.
3. **The live model service** (``schema_source: model``): the company's own description of each
   object, with its custom fields. An object the user's permissions or subscription refuse is
   one warning naming the object and is left out of the catalog; the run goes on.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from intacct_api.decimals import decimal_paths, to_warehouse_schema
from intacct_api.errors import IntacctAPIError, UnknownObjectError
from intacct_api.model_schema import model_to_record_schema
from intacct_api.pager import MODIFIED_FIELD
from intacct_api.records import queryable_schema
from intacct_api.scalars import field_kinds
from intacct_api.schema import to_record_schema
from intacct_api.spec import ObjectInfo, SpecRegistry
from tap_intacct.columns import MODIFIED_AT, with_synthetic_columns
from tap_intacct.report_streams import BALANCE_STREAM_NAMES
from tap_intacct.settings import OperationSpec, TapOptions

if TYPE_CHECKING:
    from singer_sdk.singerlib import Catalog

    from intacct_api.client import IntacctClient

__all__ = [
    "StreamDefinition",
    "catalog_definitions",
    "model_definitions",
    "operation_definition",
    "select_objects",
    "spec_definitions",
]

logger = logging.getLogger(__name__)

# Statuses with which the model service says "not for you" rather than "try again".
_REFUSED_STATUSES = frozenset({400, 403, 404, 405, 422})


@dataclass(frozen=True)
class StreamDefinition:
    """Everything needed to instantiate one stream, whatever source it came from."""

    name: str
    schema: dict[str, Any]
    key_properties: tuple[str, ...]
    replication_key: str | None
    object_name: str | None = None
    timestamp_field: str | None = None
    """Query field copied into ``_modified_at`` (None: the object has no timestamp)."""
    operation: OperationSpec | None = None

    @cached_property
    def decimal_fields(self) -> frozenset[str]:
        """Dotted paths written as exact decimal strings (see :mod:`intacct_api.decimals`)."""
        return decimal_paths(self.schema)

    @cached_property
    def field_kinds(self) -> dict[str, str]:
        """Dotted path -> declared kind, for the row plan's conversions (decimals included)."""
        return field_kinds(self.schema)


def _has_modified(schema: dict[str, Any]) -> bool:
    audit = (schema.get("properties") or {}).get("audit") or {}
    return "modifiedDateTime" in (audit.get("properties") or {})


def _key_properties(schema: dict[str, Any], options: TapOptions) -> tuple[str, ...]:
    if "key" not in (schema.get("properties") or {}):
        return ()
    # Keys are unique per object across the company, and with entity partitions each record
    # is still emitted once (shared ones by the first partition): `key` alone identifies it.
    return ("key",)


def without_deprecated_case_twins(schema: dict[str, Any], stream: str = "") -> dict[str, Any]:
    """Drop deprecated properties whose name differs from a current one only by case.

    Sage's spec keeps deprecated lower-case aliases beside their replacements (vendor has
    ``accountlabel`` and ``accountLabel``). Warehouses fold column names to one case, so both
    would land on the same column and fail the load; the deprecated twin carries nothing the
    current one does not, so it is left out of the advertised schema (and so of the query).
    """
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    by_folded: dict[str, list[str]] = {}
    for prop in properties:
        by_folded.setdefault(prop.lower(), []).append(prop)
    dropped = {
        prop
        for twins in by_folded.values()
        if len(twins) > 1
        for prop in twins
        if properties[prop].get("deprecated")
        and not all(properties[t].get("deprecated") for t in twins)
    }
    if dropped:
        logger.info("%s: left out deprecated case-twins %s", stream, sorted(dropped))
    kept = {
        prop: without_deprecated_case_twins(sub, stream) if isinstance(sub, dict) else sub
        for prop, sub in properties.items()
        if prop not in dropped
    }
    return {**schema, "properties": kept}


def object_definition(
    name: str, object_name: str, record_schema: dict[str, Any], options: TapOptions
) -> StreamDefinition:
    """The stream of one object, given the record schema from the spec or the model."""
    timestamp = MODIFIED_FIELD if _has_modified(record_schema) else None
    schema = with_synthetic_columns(
        to_warehouse_schema(queryable_schema(without_deprecated_case_twins(record_schema, name))),
        modified_at=timestamp is not None,
        deletes=options.deletes != "off",
    )
    return StreamDefinition(
        name=name,
        schema=schema,
        key_properties=_key_properties(schema, options),
        replication_key=MODIFIED_AT if timestamp else None,
        object_name=object_name,
        timestamp_field=timestamp,
    )


def select_objects(registry: SpecRegistry, patterns: Sequence[str]) -> list[ObjectInfo]:
    """Queryable objects matching the ``objects`` setting (all when it is empty)."""
    objects = registry.queryable_objects()
    if not patterns:
        return objects
    chosen = [
        info
        for info in objects
        if any(
            fnmatch.fnmatchcase(info.name, p) or fnmatch.fnmatchcase(info.stream, p)
            for p in patterns
        )
    ]
    matched = {p for p in patterns for i in chosen if fnmatch.fnmatchcase(i.name, p)} | {
        p for p in patterns for i in chosen if fnmatch.fnmatchcase(i.stream, p)
    }
    for pattern in patterns:
        if pattern not in matched:
            logger.warning("objects: %r matches no queryable object of the spec", pattern)
    return chosen


def spec_definitions(registry: SpecRegistry, options: TapOptions) -> list[StreamDefinition]:
    """One stream per selected queryable object, schemas from the embedded spec."""
    return [
        object_definition(info.stream, info.name, info.record_schema(), options)
        for info in select_objects(registry, options.objects)
    ]


def model_definitions(
    registry: SpecRegistry, options: TapOptions, client: IntacctClient, workers: int = 4
) -> list[StreamDefinition]:
    """Schemas from the live model service, several objects at a time."""
    objects = select_objects(registry, options.objects)

    def one(info: ObjectInfo) -> StreamDefinition | None:
        try:
            schema = model_to_record_schema(client.model(info.name))
        except IntacctAPIError as exc:
            if exc.status not in _REFUSED_STATUSES:
                raise
            logger.warning(
                "%s: the model service refused this object (%s); it is left out of the "
                "catalog. Check the user's permissions and the company's subscriptions.",
                info.name,
                exc,
            )
            return None
        return object_definition(info.stream, info.name, schema, options)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = list(pool.map(one, objects))
    return [d for d in found if d is not None]


def operation_definition(registry: SpecRegistry, spec: OperationSpec) -> StreamDefinition:
    """A stream over one operation's response (``ia::result`` item or object)."""
    op = registry.operation(spec.operation_id)
    response = op.response_schema() or {}
    result = (response.get("properties") or {}).get("ia::result") or {}
    if isinstance(result.get("items"), dict):
        result = result["items"]
    if not isinstance(result.get("properties"), dict):
        result = {"type": "object", "properties": {}}
    schema = with_synthetic_columns(
        to_warehouse_schema(to_record_schema(result)), modified_at=False, deletes=False
    )
    keys = ("key",) if "key" in schema["properties"] else ()
    return StreamDefinition(
        name=spec.name,
        schema=schema,
        key_properties=keys,
        replication_key=None,
        object_name=op.object_name,
        operation=spec,
    )


def catalog_definitions(
    catalog: Catalog, registry: SpecRegistry, options: TapOptions
) -> list[StreamDefinition]:
    """The selected streams exactly as the input catalog describes them (no spec read)."""
    operations = {op.name: op for op in options.operations}
    found: list[StreamDefinition] = []
    for entry in catalog.streams:
        if not entry.metadata.resolve_selection()[()]:
            continue
        name = entry.tap_stream_id
        schema = entry.schema.to_dict()
        replication_key = entry.replication_key or entry.metadata.root.replication_key
        keys = tuple(entry.key_properties or entry.metadata.root.table_key_properties or ())
        if name in operations:
            found.append(
                StreamDefinition(
                    name=name,
                    schema=schema,
                    key_properties=keys,
                    replication_key=None,
                    operation=operations[name],
                )
            )
            continue
        if name in BALANCE_STREAM_NAMES:
            continue  # built by tap_intacct.report_streams from the balance settings
        info = _known_object(registry, name)
        if info is None:
            logger.warning("catalog stream %r is no known Intacct object; skipped", name)
            continue
        has_timestamp = _has_modified(schema)
        schema = with_synthetic_columns(
            schema, modified_at=has_timestamp, deletes=options.deletes != "off"
        )
        found.append(
            StreamDefinition(
                name=name,
                schema=schema,
                key_properties=keys,
                replication_key=replication_key if has_timestamp else None,
                object_name=info.name,
                timestamp_field=MODIFIED_FIELD if has_timestamp else None,
            )
        )
    return found


def _known_object(registry: SpecRegistry, stream: str) -> ObjectInfo | None:
    try:
        return registry.object(stream)
    except UnknownObjectError:
        return None


def names(definitions: Iterable[StreamDefinition]) -> list[str]:
    """Stream names (for messages)."""
    return [d.name for d in definitions]
