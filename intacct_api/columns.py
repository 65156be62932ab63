"""The column contract between tap-intacct's output and target-intacct's input.

The tap adds these top-level columns to Intacct's records; the target reads them back when the
same records are loaded into Intacct (a round trip). One definition, read by both sides:

``_modified_at``
    A copy of ``audit.modifiedDateTime``: singer-sdk only understands a *top-level*
    replication key. The target drops it (Intacct sets the timestamp itself).
``_entity``
    The entity (location) id the record was read from, or null for the top level. The target
    writes the record to that entity (it sets the entity header per record group).
``_sdc_deleted_at``
    Set on records that announce a deleted key. The target deletes them by ``key`` when
    ``allow_deletes`` is on, and reports them ``skipped`` otherwise.

Every name starts with an underscore, so it can never collide with an Intacct field.
"""

from __future__ import annotations

__all__ = ["DELETED_AT", "ENTITY", "MODIFIED_AT", "SYNTHETIC_COLUMNS"]

MODIFIED_AT = "_modified_at"
ENTITY = "_entity"
DELETED_AT = "_sdc_deleted_at"
SYNTHETIC_COLUMNS = frozenset({MODIFIED_AT, ENTITY, DELETED_AT})
