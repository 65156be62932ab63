"""The top-level columns the tap adds to Intacct's records, and how a schema gets them.

All of them start with an underscore so they can never collide with an Intacct field name and
a reader can tell at a glance which columns came from the tap:

``_modified_at``
    A copy of ``audit.modifiedDateTime``. singer-sdk only understands a *top-level* replication
    key (state reads ``record[replication_key]``), while Intacct keeps the timestamp nested.
    The nested value stays in ``audit`` too (when selected), so the record keeps Intacct's shape.
``_entity``
    The entity (location) id the record was read from: the partition's entity, the
    connection's ``entity`` setting, or null for the top level.
``_sdc_deleted_at``
    Only with ``deletes`` enabled: set on the records that announce a deleted key (all other
    fields absent), null otherwise. The ``_sdc_`` prefix is the Singer convention targets know.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "DELETED_AT",
    "ENTITY",
    "MODIFIED_AT",
    "SYNTHETIC_COLUMNS",
    "with_synthetic_columns",
]

MODIFIED_AT = "_modified_at"
ENTITY = "_entity"
DELETED_AT = "_sdc_deleted_at"
SYNTHETIC_COLUMNS = frozenset({MODIFIED_AT, ENTITY, DELETED_AT})

_DATETIME = {"type": ["string", "null"], "format": "date-time"}


def with_synthetic_columns(
    schema: dict[str, Any], *, modified_at: bool, deletes: bool
) -> dict[str, Any]:
    """A copy of a record schema with the tap's columns added (idempotent)."""
    out = copy.copy(schema)
    properties = dict(out.get("properties") or {})
    if modified_at:
        properties.setdefault(
            MODIFIED_AT,
            {**_DATETIME, "description": "Copy of audit.modifiedDateTime (replication key)."},
        )
    properties.setdefault(
        ENTITY,
        {"type": ["string", "null"], "description": "Entity id the record was read from."},
    )
    if deletes:
        properties.setdefault(
            DELETED_AT, {**_DATETIME, "description": "Set when the record was deleted."}
        )
    out["properties"] = properties
    out.setdefault("type", "object")
    return out
