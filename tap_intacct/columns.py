"""How a stream's schema gets the top-level columns the tap adds to Intacct's records.

Their names and meaning are the tap/target contract, defined once in :mod:`intacct_api.columns`
(re-exported here for the tap's modules).
"""

from __future__ import annotations

import copy
from typing import Any

from intacct_api.columns import DELETED_AT, ENTITY, MODIFIED_AT, SYNTHETIC_COLUMNS

__all__ = [
    "DELETED_AT",
    "ENTITY",
    "MODIFIED_AT",
    "SYNTHETIC_COLUMNS",
    "with_synthetic_columns",
]


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
