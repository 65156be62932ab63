"""Tap-only settings (the connection settings come from :mod:`intacct_api.settings`).

Kept apart from ``tap.py`` so that the README table, ``--about`` and the code read one list,
and so that the parsing rules (``entities`` accepting a list or ``"all"``, ``lookback_minutes``)
live next to their descriptions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from singer_sdk import typing as th

from intacct_api.pager import MAX_PAGE_SIZE

__all__ = ["TAP_SETTINGS", "TapOptions"]

DeleteMode = Literal["off", "keyscan", "audit"]
SchemaSource = Literal["spec", "model"]

DEFAULT_LOOKBACK_MINUTES = 5
MAX_PARALLEL_SLICES = 64

TAP_SETTINGS = th.PropertiesList(
    th.Property(
        "start_date",
        th.DateTimeType,
        description=(
            "Earliest `audit.modifiedDateTime` to extract (UTC ISO-8601) on the first run of an "
            "incremental stream. Later runs start from the stream's bookmark."
        ),
    ),
    th.Property(
        "lookback_minutes",
        th.IntegerType,
        default=DEFAULT_LOOKBACK_MINUTES,
        description=(
            "Incremental runs re-read this many minutes before the bookmark, to catch records "
            "committed late with an earlier timestamp (overlap rows are emitted again)."
        ),
    ),
    th.Property(
        "page_size",
        th.IntegerType,
        default=MAX_PAGE_SIZE,
        description=(
            "Query-service page size (1-4000). A full sync of N records costs ceil(N/page_size) "
            "query calls per stream and entity."
        ),
    ),
    th.Property(
        "parallel_slices",
        th.IntegerType,
        default=1,
        description=(
            "Parallel partitioned reads: split each query stream's read (per entity) into this "
            "many contiguous `audit.modifiedDateTime` slices (key ranges for objects read on "
            "`key`) and page them concurrently, within `max_concurrency`. 1 (default) = off: "
            "one keyset read in ascending order. When on, records arrive unordered across "
            "slices, the bookmark only advances to the earliest unfinished slice while the read "
            "runs (per-slice progress is kept in the state, so a killed run resumes without "
            "loss), and the stream is declared unsorted. Costs one extra round of two size-1 "
            "range queries per stream and entity."
        ),
    ),
    th.Property(
        "objects",
        th.ArrayType(th.StringType),
        description=(
            "Limit discovery to these objects: object names (`accounts-receivable/customer`), "
            "stream names (`accounts_receivable__customer`) or shell patterns "
            "(`accounts-receivable/*`). Empty = every queryable object of the spec, with only "
            "the curated finance objects (GL, AR, AP, dimensions) selected by default. "
            "Meltano's plugin definition sets it to those curated objects: add an object here "
            "to opt in to it."
        ),
    ),
    th.Property(
        "schema_source",
        th.StringType,
        default="spec",
        allowed_values=["spec", "model"],
        description=(
            "Where `--discover` takes record schemas from: `spec` (the embedded OpenAPI files, "
            "offline) or `model` (the live model service: adds the tenant's custom `nsp::` "
            "fields, drops fields the tenant lacks; one model call per object). Objects the "
            "model service refuses are skipped with one warning each."
        ),
    ),
    th.Property(
        "catalog_cache",
        th.BooleanType,
        default=True,
        description=(
            "Keep the catalog `--discover` builds from the spec in the user's cache folder and "
            "reuse it while the spec files, the tap's code and the discovery settings are "
            "unchanged (Meltano discovers before every run). Never used with "
            "`schema_source: model`."
        ),
    ),
    th.Property(
        "entities",
        # A type list, not anyOf: singer-sdk 0.54 appends a bare "null" member to an anyOf of
        # an optional property, which is not valid JSON Schema.
        th.CustomType({"type": ["array", "string"], "items": {"type": "string"}}),
        description=(
            "Multi-entity companies: empty = top level only (or the connection's `entity`); a "
            "list of entity ids = one partition per entity, each with its own bookmark; `all` "
            "= every entity that company-config/entity lists. Records carry the entity id in "
            "the `_entity` column."
        ),
    ),
    th.Property(
        "include_private",
        th.BooleanType,
        default=False,
        description="Also read records of private entities from the top level (includePrivate).",
    ),
    th.Property(
        "deletes",
        th.StringType,
        default="off",
        allowed_values=["off", "keyscan", "audit"],
        description=(
            "Deleted-record detection. `off`: none. `keyscan`: after each run read every key "
            "(fields [key], 4000 per call: ceil(N/4000) extra query calls per stream and "
            "entity), compare with the keys kept (compactly) in state and emit a record with "
            "`_sdc_deleted_at` for each vanished key. `audit`: read delete events from "
            "company-config/audit-history since the last run (usually one call per stream); "
            "needs permission to the audit trail, and says so in the log when it is refused."
        ),
    ),
    th.Property(
        "operations",
        th.ArrayType(
            th.ObjectType(
                th.Property("name", th.StringType, required=True),
                th.Property("operation_id", th.StringType, required=True),
                th.Property("parameters", th.ObjectType(additional_properties=True)),
                th.Property("body", th.ObjectType(additional_properties=True)),
            )
        ),
        description=(
            "Query by operationId: extra streams `{name, operation_id, parameters, body}`. The "
            "schema is the operation's response `ia::result` (item); parameters go to the "
            "path, query string or headers as the spec declares them."
        ),
    ),
)


@dataclass(frozen=True)
class OperationSpec:
    """One configured operation stream."""

    name: str
    operation_id: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TapOptions:
    """The tap settings, parsed and validated once (streams read this, not raw config)."""

    start_date: str | None = None
    lookback: dt.timedelta = dt.timedelta(minutes=DEFAULT_LOOKBACK_MINUTES)
    page_size: int = MAX_PAGE_SIZE
    parallel_slices: int = 1
    objects: tuple[str, ...] = ()
    schema_source: SchemaSource = "spec"
    entities: tuple[str, ...] | Literal["all"] = ()
    include_private: bool = False
    deletes: DeleteMode = "off"
    operations: tuple[OperationSpec, ...] = ()
    catalog_cache: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TapOptions:
        """Parse a validated tap config (defaults already filled in by the SDK)."""
        page_size = int(config.get("page_size") or MAX_PAGE_SIZE)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        lookback = config.get("lookback_minutes")
        slices = int(config.get("parallel_slices") or 1)
        if not 1 <= slices <= MAX_PARALLEL_SLICES:
            raise ValueError(f"parallel_slices must be between 1 and {MAX_PARALLEL_SLICES}")
        deletes = str(config.get("deletes") or "off")
        if deletes not in ("off", "keyscan", "audit"):
            raise ValueError(f"deletes must be off, keyscan or audit, not {deletes!r}")
        source = str(config.get("schema_source") or "spec")
        if source not in ("spec", "model"):
            raise ValueError(f"schema_source must be spec or model, not {source!r}")
        return cls(
            start_date=config.get("start_date") or None,
            lookback=dt.timedelta(
                minutes=DEFAULT_LOOKBACK_MINUTES if lookback is None else int(lookback)
            ),
            page_size=page_size,
            parallel_slices=slices,
            objects=tuple(string_list(config.get("objects"))),
            schema_source=source,  # type: ignore[arg-type]
            entities=_entities(config.get("entities")),
            include_private=bool(config.get("include_private")),
            catalog_cache=config.get("catalog_cache") is not False,
            deletes=deletes,  # type: ignore[arg-type]
            operations=tuple(
                OperationSpec(
                    name=str(op["name"]),
                    operation_id=str(op["operation_id"]),
                    parameters=dict(op.get("parameters") or {}),
                    body=op.get("body"),
                )
                for op in config.get("operations") or ()
            ),
        )


def string_list(value: Any) -> list[str]:
    """A list setting as given (JSON list) or as text (comma-separated, from an env var)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Sequence):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ValueError(f"expected a list of strings, got {value!r}")


def _entities(value: Any) -> tuple[str, ...] | Literal["all"]:
    items = string_list(value)
    if any(item.lower() == "all" for item in items):
        return "all"
    return tuple(dict.fromkeys(items))
