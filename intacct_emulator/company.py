"""One emulated Intacct company: records, entities, and the behaviour of the REST services.

The HTTP layer maps each route onto one method of :class:`Company` and sends back what it
returns (or the envelope of the :class:`EmulatorError` it raises). Everything object-specific
is read from the shared spec registry, so the emulator never drifts from what the tap and the
target believe. The class is assembled by concern:

* :mod:`intacct_emulator.company_data`: store, lookups, read services (query, model, get);
* :mod:`intacct_emulator.company_writes`: create, update, delete, batches, owned lines;
* this module: the helpers tests, seeding and the control endpoints use.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from intacct_emulator import schema_tools
from intacct_emulator.clock import canonical
from intacct_emulator.company_writes import CompanyWrites, merge_changes
from intacct_emulator.envelopes import (
    MAX_BATCH,
    EmulatorError,
)
from intacct_emulator.store import StoredRow, decode, encode

__all__ = ["MAX_BATCH", "Company", "EmulatorError"]


class Company(CompanyWrites):
    """Data and behaviour of one emulated company (thread-safe: one lock around each call)."""

    # -- helpers for tests, seeding and the control endpoints --------------------------------

    def insert(
        self, object_name: str, record: Mapping[str, Any], entity: str | None = None
    ) -> dict[str, Any]:
        """Store a record as given (no validation); assigns key/href, fills audit if absent."""
        info = self.info(object_name)
        with self._atomic(True):
            data = schema_tools.deep_copy(dict(record))
            key = self.store.allocate_keys(info.name, 1)
            data["key"] = str(key)
            data["href"] = self.href(info.name, key)
            policy = self._id_policy(info)
            if policy != "none" and data.get("id") is None:
                data["id"] = str(key)
            audit = data.get("audit") if isinstance(data.get("audit"), dict) else {}
            now = self.clock.now()
            modified = audit.get("modifiedDateTime") or now
            if not audit.get("modifiedDateTime"):
                self._stamp(info, data, created=audit.get("createdDateTime") or now, modified=now)
            self.clock.advance_past(modified)
            row = StoredRow(
                info.name,
                key,
                entity,
                str(data["id"]) if data.get("id") is not None else None,
                canonical(modified) if info.has_modified_timestamp else None,
                None,
                encode(data),
                self.flat(info.name, data),
            )
            self.store.insert(row)
            return self.reference(info.name, row)

    def touch(self, object_name: str, key: str | int, **changes: Any) -> None:
        """Apply ``changes`` (no validation) and bump ``audit.modifiedDateTime``.

        Tests use it to change records between two pages of a query. An explicit
        ``audit={"modifiedDateTime": ...}`` in ``changes`` wins over the clock.
        """
        info = self.info(object_name)
        with self._atomic(True):
            row = self._row(info, key, None)
            record = merge_changes(row.record(), changes)
            explicit = (changes.get("audit") or {}).get("modifiedDateTime")
            modified = canonical(explicit) if explicit else self.clock.now()
            if explicit:
                self.clock.advance_past(modified)
            self._stamp(info, record, created=None, modified=modified)
            record_id = record.get("id")
            self.store.replace(
                StoredRow(
                    info.name,
                    row.key,
                    row.entity,
                    str(record_id) if record_id is not None else None,
                    modified if info.has_modified_timestamp else None,
                    row.parent,
                    encode(record),
                    self.flat(info.name, record),
                )
            )

    def seed(
        self,
        records_per_object: int,
        random_seed: int,
        *,
        objects: builtins.list[str] | None = None,
    ) -> None:
        """Generate deterministic demo data (see :mod:`intacct_emulator.seed`)."""
        from intacct_emulator.seed import Seeder

        with self._atomic(True):
            Seeder(self, random_seed).seed(records_per_object, objects=objects)
            self.clock.advance_past(self.store.max_modified())

    def seed_object(self, object_name: str, count: int, random_seed: int = 0) -> None:
        """Bulk path: add ``count`` generated records of one object (benchmarks: 1,000,000)."""
        from intacct_emulator.seed import Seeder

        with self._atomic(True):
            Seeder(self, random_seed).seed_object(object_name, count)
            self.clock.advance_past(self.store.max_modified())

    def reset(self) -> None:
        """Delete every record (refused-field configuration is kept)."""
        with self._lock:
            self.store.reset()

    def close(self) -> None:
        """Close the database (a file database keeps its data for the next start)."""
        with self._lock:
            self.store.close()

    def record(self, object_name: str, key: str | int) -> dict[str, Any]:
        """Test helper: the rendered record (any entity)."""
        info = self.info(object_name)
        with self._lock:
            return self.render(info, self._row(info, key, None))

    def raw(self, object_name: str, key: str | int) -> dict[str, Any] | None:
        """Test helper: the stored sparse body, or None."""
        with self._lock:
            row = self.store.get(object_name, int(key))
            return decode(row.data) if row else None
