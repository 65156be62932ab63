"""Deterministic, plausible demo data generated from the record schemas.

Why from the schemas: the emulator must never keep its own field lists, so values are chosen by
walking each object's record schema (formats, enums, amounts, references) with a few name
heuristics for realism (``email`` looks like an address, ``currency`` is ``USD``).

Why a "pool": the benchmarks seed a million customers. Walking the schema per record would take
minutes, so a few hundred bodies are generated from the schema and each record takes one of them
plus its own key, id, name, entity and audit timestamps. Same ``random_seed`` -> same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from intacct_api.spec import ObjectInfo
from intacct_emulator import schema_tools
from intacct_emulator.store import encode

if TYPE_CHECKING:
    from intacct_emulator.company import Company

EVERYDAY_OBJECTS = (
    "company-config/entity",
    "company-config/user",
    "company-config/department",
    "company-config/location",
    "company-config/class",
    "general-ledger/journal",
    "general-ledger/account",
    "accounts-receivable/customer",
    "accounts-payable/vendor",
    "company-config/employee",
    "projects/project",
    "inventory-control/item",
    "general-ledger/journal-entry",
    "accounts-receivable/invoice",
    "accounts-payable/bill",
)
FIXED_COUNTS = {"company-config/entity": 3, "company-config/user": 3}
ENTITIES = (("E100", "United States"), ("E200", "Canada"), ("E300", "United Kingdom"))
USERS = (("admin", "Admin User"), ("jdoe", "Jane Doe"), ("asmith", "Alex Smith"))
PRIVATE_SHARE = 0.1
POOL_SIZE = 400
TIMELINE_START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
TIMELINE_END = int(datetime(2025, 12, 31, 23, 0, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000

_ADJECTIVES = (
    "Amazing", "Reliable", "Universal", "Pacific", "Summit", "Golden", "Northern", "Bright",
    "Granite", "Evergreen", "Silver", "Atlas", "Harbor", "Prairie", "Coastal", "Metro",
)  # fmt: skip
_NOUNS = (
    "Retail", "Alarms", "Security", "Foods", "Logistics", "Supplies", "Systems", "Partners",
    "Outfitters", "Labs", "Builders", "Consulting", "Energy", "Media", "Health", "Freight",
)  # fmt: skip
_SUFFIXES = ("Inc", "LLC", "Co", "Group", "Ltd", "Corp")
_FIRST = ("Mary", "Paul", "Rocco", "Anna", "Wes", "Caroline", "Fred", "Lena", "Omar", "Priya")
_LAST = ("Garcia", "Stevens", "Thomas", "Wong", "Young", "Novak", "Okafor", "Silva", "Kim")
_CITIES = ("Portland", "Austin", "Denver", "Toronto", "London", "Boston", "Seattle", "Atlanta")
_WORDS = ("quarterly", "service", "equipment", "consulting", "license", "freight", "supplies")
_PERSON_OBJECTS = ("employee", "user", "contact")
_ID_PREFIX = {
    "accounts-receivable/customer": "C",
    "accounts-payable/vendor": "V",
    "company-config/department": "D",
    "company-config/location": "L",
    "company-config/class": "CL",
    "company-config/employee": "EMP",
    "projects/project": "P",
    "inventory-control/item": "I",
    "general-ledger/journal": "J",
}


def _timestamp_formatter() -> Callable[[int], str]:
    """Fast canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (day prefix cached): millions per run."""
    days: dict[int, str] = {}

    def fmt(epoch_ms: int) -> str:
        day, rest = divmod(epoch_ms, DAY_MS)
        prefix = days.get(day)
        if prefix is None:
            prefix = datetime.fromtimestamp(day * 86400, tz=UTC).strftime("%Y-%m-%dT")
            days[day] = prefix
        seconds, ms = divmod(rest, 1000)
        hours, seconds = divmod(seconds, 3600)
        minutes, seconds = divmod(seconds, 60)
        return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"

    return fmt


class Seeder:
    """Generates records for one company with one random seed."""

    def __init__(self, company: Company, random_seed: int) -> None:
        self.company = company
        self.registry = company.registry
        self.random_seed = random_seed
        self._fmt = _timestamp_formatter()
        self._refs: dict[str, list[tuple[int, str | None]]] = {}
        self._entity_ids: list[str] = []
        self._entity_refs: dict[str, dict[str, Any]] = {}

    # -- entry points -------------------------------------------------------------------------

    def seed(self, records_per_object: int, *, objects: list[str] | None = None) -> None:
        """Seed the everyday objects (or ``objects``), references pointing at seeded records."""
        names = [n for n in (objects or EVERYDAY_OBJECTS) if n in self.registry.objects]
        for name in names:
            count = FIXED_COUNTS.get(name, records_per_object)
            self.seed_object(name, count)

    def seed_object(self, object_name: str, count: int) -> None:
        """Add ``count`` records of one object (and the lines of owned lists we seed)."""
        info = self.registry.objects[object_name]
        if count <= 0:
            return
        self._load_entities()
        rng = random.Random(f"{self.random_seed}:{object_name}")  # noqa: S311 - demo data
        plan = self._plan(info, depth=0)
        pool = [self._body(plan, rng) for _ in range(min(count, POOL_SIZE))]
        first_key = self.company.store.allocate_keys(object_name, count)
        line_specs = self._line_specs(info)
        policy = self.company._id_policy(info)
        store = self.company.store
        has_entity = "entity" in schema_tools.properties(self.company.schema(info))
        has_audit = "audit" in schema_tools.properties(self.company.schema(info))
        span = TIMELINE_END - TIMELINE_START
        document_type = self._document_type(info)
        batch: list[tuple[Any, ...]] = []
        for index in range(count):
            key = first_key + index
            body = dict(pool[index % len(pool)])
            record_id = self._record_id(info, policy, key, index)
            record: dict[str, Any] = {"key": str(key)}
            if record_id is not None:
                record["id"] = record_id
            record["href"] = f"/objects/{object_name}/{key}"
            record.update(body)
            self._identity(info, record, rng, index)
            if document_type is not None:  # `{object}::{documentName}/{key}` finds it
                record["documentType"] = document_type
            entity = self._entity_for(info, rng)
            if has_entity and entity is not None:
                record["entity"] = self._entity_refs[entity]
            modified_ms = TIMELINE_START + (index * span) // count
            modified = self._fmt(modified_ms)
            if has_audit:
                created = self._fmt(max(TIMELINE_START, modified_ms - rng.randrange(30 * DAY_MS)))
                record["audit"] = self._audit(created, modified)
            lines_total = 0
            for spec in line_specs:
                lines_total += self._seed_lines(spec, info, record, key, entity, modified, rng)
            if line_specs:
                for total in ("totalTxnAmount", "totalBaseAmount", "totalEntered"):
                    if total in record or total in schema_tools.properties(
                        self.company.schema(info)
                    ):
                        record[total] = f"{lines_total / 100:.2f}"
            batch.append(
                (
                    object_name,
                    key,
                    entity,
                    record_id,
                    modified if info.has_modified_timestamp else None,
                    None,
                    encode(record),
                    self.company.flat(object_name, record),
                )
            )
            if len(batch) >= 20000:
                store.insert_many(batch)
                batch.clear()
        store.insert_many(batch)
        self._refs.pop(object_name, None)

    def _document_type(self, info: ObjectInfo) -> str | None:
        """The transaction definition of an object addressed by ``::{documentName}`` paths:
        the spec's example of its ``documentType`` (``Sales Invoice``)."""
        if not self.company.document_named(info):
            return None
        member = schema_tools.properties(self.company.schema(info)).get("documentType") or {}
        examples = [member.get("example"), *(member.get("examples") or ())]
        return next((str(e) for e in examples if e), None)

    # -- identity -----------------------------------------------------------------------------

    def _record_id(self, info: ObjectInfo, policy: str, key: int, index: int) -> str | None:
        if policy == "none":
            return None
        if policy == "system":
            return str(key)
        if info.name == "company-config/entity" and index < len(ENTITIES):
            return ENTITIES[index][0]
        if info.name == "company-config/user" and index < len(USERS):
            return USERS[index][0]
        if info.name == "general-ledger/account":
            return str(10000 + key * 10)
        prefix = (
            _ID_PREFIX.get(info.name)
            or "".join(part[0] for part in info.name.split("/", 1)[1].split("-")).upper()
        )
        return f"{prefix}-{key:05d}"

    def _identity(
        self, info: ObjectInfo, record: dict[str, Any], rng: random.Random, index: int
    ) -> None:
        """Per-record human-looking names (the pool body is shared by many records)."""
        props = schema_tools.properties(self.company.schema(info))
        if "name" not in props or props["name"].get("readOnly"):
            return
        short = info.name.split("/", 1)[1]
        if info.name == "company-config/entity" and index < len(ENTITIES):
            record["name"] = ENTITIES[index][1]
        elif info.name == "company-config/user" and index < len(USERS):
            record["name"] = USERS[index][1]
        elif short in _PERSON_OBJECTS:
            record["name"] = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        elif short in ("location", "department", "class"):
            record["name"] = f"{rng.choice(_CITIES)} {rng.choice(_NOUNS)}"
        else:
            record["name"] = (
                f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_SUFFIXES)}"
            )

    def _audit(self, created: str, modified: str) -> dict[str, Any]:
        user = self.company.audit_user
        return {
            "createdDateTime": created,
            "modifiedDateTime": modified,
            "createdBy": user["key"],
            "modifiedBy": user["key"],
            "createdByUser": dict(user),
            "modifiedByUser": dict(user),
        }

    # -- entities -----------------------------------------------------------------------------

    def _load_entities(self) -> None:
        rows = self.company.store.select(
            "company-config/entity", [], [], columns="key, id, data", limit=50
        )
        from intacct_emulator.store import decode

        self._entity_refs = {
            str(i): {
                "key": str(k),
                "id": i,
                "name": decode(d).get("name"),
                "href": f"/objects/company-config/entity/{k}",
            }
            for k, i, d in rows
            if i is not None
        }
        self._entity_ids = sorted(self._entity_refs)

    def _entity_for(self, info: ObjectInfo, rng: random.Random) -> str | None:
        if not self._entity_ids or info.name in FIXED_COUNTS:
            return None
        if rng.random() >= PRIVATE_SHARE:
            return None
        return rng.choice(self._entity_ids)

    # -- lines --------------------------------------------------------------------------------

    def _line_specs(self, info: ObjectInfo) -> list[tuple[str, ObjectInfo, list[Any], str | None]]:
        """Owned lists seeded with the owner: ``lines`` of journal entries, invoices, bills."""
        specs = []
        for prop, line_name in info.owned_lists.items():
            if prop != "lines" or line_name not in self.registry.objects:
                continue
            line_info = self.registry.objects[line_name]
            plan = self._plan(line_info, depth=0)
            rng = random.Random(f"{self.random_seed}:{line_name}")  # noqa: S311 - demo data
            pool = [self._body(plan, rng) for _ in range(50)]
            specs.append((prop, line_info, pool, self.company.owner_property(line_info)))
        return specs

    def _seed_lines(
        self,
        spec: tuple[str, ObjectInfo, list[Any], str | None],
        owner: ObjectInfo,
        record: dict[str, Any],
        owner_key: int,
        entity: str | None,
        modified: str,
        rng: random.Random,
    ) -> int:
        """Insert 2-3 lines for one owner; returns their total in cents."""
        _prop, line_info, pool, owner_prop = spec
        count = 2 if owner.name == "general-ledger/journal-entry" else rng.randint(1, 3)
        first = self.company.store.allocate_keys(line_info.name, count)
        props = schema_tools.properties(self.company.schema(line_info))
        cents = rng.randrange(1_000, 5_000_000)
        total = 0
        rows = []
        for offset in range(count):
            key = first + offset
            line = dict(pool[rng.randrange(len(pool))])
            line["key"] = str(key)
            if "id" in props:
                line["id"] = str(key)
            line["href"] = f"/objects/{line_info.name}/{key}"
            if "lineNumber" in props:
                line["lineNumber"] = offset + 1
            if owner.name == "general-ledger/journal-entry" and "txnType" in props:
                line["txnType"] = "debit" if offset == 0 else "credit"
            else:
                cents = rng.randrange(1_000, 5_000_000)
            if "txnAmount" in props:
                line["txnAmount"] = f"{cents / 100:.2f}"
            total += cents if offset == 0 or owner.name != "general-ledger/journal-entry" else 0
            if owner_prop:
                line[owner_prop] = {
                    "key": str(owner_key),
                    "id": record.get("id"),
                    "href": record["href"],
                }
            if "audit" in props and "audit" in record:
                line["audit"] = record["audit"]
            if entity is not None and "entity" in props:
                line["entity"] = self._entity_refs[entity]
            rows.append(
                (
                    line_info.name,
                    key,
                    entity,
                    line.get("id"),
                    modified if line_info.has_modified_timestamp else None,
                    owner_key,
                    encode(line),
                    self.company.flat(line_info.name, line),
                )
            )
        self.company.store.insert_many(rows)
        return total

    # -- schema walk --------------------------------------------------------------------------

    def _plan(self, info: ObjectInfo, depth: int) -> list[tuple[str, Any]]:
        """(member, generator) pairs for writable members worth filling, from the schema."""
        plan: list[tuple[str, Any]] = []
        props = schema_tools.properties(self.company.schema(info))
        for name, sub in props.items():
            if name in ("key", "id", "href", "audit", "entity", "name") or name in info.owned_lists:
                continue
            generator = self._generator(info, name, sub, depth)
            if generator is not None:
                plan.append((name, generator))
        return plan

    def _generator(self, info: ObjectInfo, name: str, schema: Mapping[str, Any], depth: int) -> Any:
        if schema.get("deprecated") or schema.get("writeOnly"):
            return None
        if schema.get("readOnly") and schema_tools.is_object(schema):
            return None  # computed sub-objects; read-only scalars (totals, dates) are filled
        if schema_tools.is_array(schema):
            return None
        if schema_tools.is_object(schema):
            if schema_tools.is_ref(schema):
                target = self.company.models.ref_target(info, name, schema)
                if target is None or (target == info.name and depth > 0):
                    return None
                refs = self._existing(target)
                if not refs:
                    return None
                return ("ref", target, refs)
            if depth >= 1:
                return None
            members = []
            for member, sub in schema_tools.properties(schema).items():
                generator = self._generator(info, member, sub, depth + 1)
                if generator is not None:
                    members.append((member, generator))
            return ("group", members) if members else None
        return ("scalar", name, schema)

    def _existing(self, object_name: str) -> list[tuple[int, str | None]]:
        cached = self._refs.get(object_name)
        if cached is None:
            rows = self.company.store.select(
                object_name, ["entity IS NULL"], [], columns="key, id", limit=500
            )
            cached = [(int(k), i) for k, i in rows]
            self._refs[object_name] = cached
        return cached

    def _body(self, plan: list[tuple[str, Any]], rng: random.Random) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, generator in plan:
            value = self._value(generator, rng)
            if value is not None:
                out[name] = value
        return out

    def _value(self, generator: Any, rng: random.Random) -> Any:
        kind = generator[0]
        if kind == "ref":
            _, target, refs = generator
            key, record_id = refs[rng.randrange(len(refs))]
            return {"key": str(key), "id": record_id, "href": f"/objects/{target}/{key}"}
        if kind == "group":
            group = self._body(generator[1], rng)
            return group or None
        _, name, schema = generator
        return scalar_value(name, schema, rng)


def scalar_value(name: str, schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A plausible value for one scalar member, or None (left unset)."""
    enum = [e for e in schema.get("enum") or [] if e not in (None, "")]
    if enum:
        default = schema.get("default")
        if default in enum and rng.random() < 0.7:
            return default
        return rng.choice(enum)
    kinds = schema_tools.types(schema)
    fmt = schema.get("format")
    lowered = name.lower()
    marker = schema.get("x-intacct-type")
    if marker == "decimal" or (isinstance(fmt, str) and "precision" in fmt):
        if "percent" in lowered or "rate" in lowered:
            return f"{rng.uniform(0, 20):.2f}"
        return f"{rng.uniform(10, 50000):.2f}"
    if marker == "number":
        return rng.choice((None, 1000, 5000, 10000, 25000)) if "limit" in lowered else None
    if "boolean" in kinds:
        default = schema.get("default")
        return default if isinstance(default, bool) and rng.random() < 0.8 else rng.random() < 0.3
    if "integer" in kinds:
        return rng.randint(1, 90) if rng.random() < 0.5 else None
    if fmt == "date":
        day = rng.randrange(TIMELINE_START, TIMELINE_END) // DAY_MS
        return datetime.fromtimestamp(day * 86400, tz=UTC).strftime("%Y-%m-%d")
    if fmt == "date-time":
        moment = rng.randrange(TIMELINE_START, TIMELINE_END) // 1000
        return datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if "string" not in kinds:
        return None
    for needle, make in _STRING_RULES:
        if needle in lowered:
            return make(rng)
    return None


_STRING_RULES: tuple[tuple[str, Callable[[random.Random], str]], ...] = (
    ("currency", lambda r: "USD"),
    ("email", lambda r: f"{r.choice(_FIRST).lower()}.{r.choice(_LAST).lower()}@example.com"),
    ("phone", lambda r: f"555-{r.randrange(100, 999)}-{r.randrange(1000, 9999)}"),
    ("taxid", lambda r: f"{r.randrange(10, 99)}-{r.randrange(1000000, 9999999)}"),
    ("city", lambda r: r.choice(_CITIES)),
    ("description", lambda r: f"{r.choice(_WORDS).capitalize()} {r.choice(_WORDS)}"),
    ("memo", lambda r: f"{r.choice(_WORDS).capitalize()} {r.choice(_WORDS)}"),
    ("referencenumber", lambda r: f"REF-{r.randrange(10000, 99999)}"),
    ("number", lambda r: f"{r.randrange(100000, 999999)}"),
    ("title", lambda r: f"{r.choice(_ADJECTIVES)} {r.choice(_NOUNS)}"),
    ("category", lambda r: r.choice(("Services", "Goods", "Internal", "Capital"))),
)
