"""Turn one input record into the exact JSON an Intacct write request carries, or say why not.

The Mutate engine must never send a record the API would reject for a reason we can see
locally, and it must say *which field* is wrong. Two steps, compiled once per
(object, operation) and then run per record:

1. **Normalise**: drop read-only fields (Intacct rejects them; a tap's records carry `key`,
   `href`, `audit`...), drop top-level `_*` metadata (`_sdc_*`, the tap's `_modified_at`),
   reject unknown fields, turn the SDK's `date`/`datetime` objects back into `YYYY-MM-DD` /
   ISO-8601 UTC, turn amounts (`decimal-precision-N`) into decimal strings with N places after
   checking the precision, accept decimal strings (`"0.00"`, as Intacct itself returns amounts
   and the tap's schemas admit them) for `number`/`integer` properties and turn them into exact
   `Decimal`/`int` values (never float; the engine encodes a `Decimal` as a JSON number), and
   reject oversized strings (the spec carries no `maxLength`, so a generic cap applies).

   The walk is compiled once per (object, operation) into closures, one per property, keyed
   by property name: a record costs one dict lookup and one ``type(value) is ...`` check per
   field it *carries* (not per property the schema declares), and anything unusual (a
   ``datetime``, a ``Decimal``, a wrong type, a free-form object) falls back to the generic
   walk, which is the reference behaviour.
2. **Validate** the normalised body with a fastjsonschema validator compiled from the spec's
   request schema (types, enums, nested shapes). fastjsonschema is ~10x faster than jsonschema
   on the happy path; only when it fails do we ask jsonschema for a readable explanation
   naming the field, which is the slow path we can afford.

Nothing here does I/O; the engine (`mutate.py`) decides what to do with the outcome.
"""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import jsonschema

from intacct_api.compiled_validators import compiled_validator
from intacct_api.schema import admitted_types

__all__ = [
    "DEFAULT_MAX_STRING_LENGTH",
    "FieldPlan",
    "InvalidRecordError",
    "PreparedRecord",
    "RequestPreparer",
    "format_datetime",
    "format_decimal",
]

DEFAULT_MAX_STRING_LENGTH = 10_000
"""Generic cap for string values: the spec has no ``maxLength`` and Intacct's longest free-text
fields are a few thousand characters; a megabyte string is a data error, not a note."""

_PRECISION_FORMAT = re.compile(r"^(?:decimal|percent)-precision-(\d+)$")
_BINARY_FORMATS = frozenset({"base64zip", "base64url", "inbound-binary", "outbound-binary"})
_METADATA_PREFIX = "_"
"""Top-level names starting with ``_`` are Singer/tap metadata (``_sdc_*``, the tap's lifted
``_modified_at`` replication key): never Intacct fields, so they are dropped, not sent."""
_UNSET = object()
_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
"""A decimal number as text: ``12``, ``-0.50``, ``1e3``; not ``12,5``, ``1_000``, ``NaN``."""
_NUMERIC_TYPES = frozenset({"number", "integer"})
_LARGEST_NUMBER = decimal.Decimal("1.7976931348623157e308")
"""The largest JSON number a receiving parser can hold (an IEEE double): beyond it, a value
such as ``1e309`` makes the whole request body unparseable (REST-1064) and fails every record
of the batch, so it is refused for its own record before sending."""
_LARGEST_INTEGER = int(_LARGEST_NUMBER)


_ObjectFn = Callable[[Mapping[str, Any], str, list[str]], dict[str, Any]]
_ValueFn = Callable[[Any, str, str, list[str]], Any]


class InvalidRecordError(ValueError):
    """A record that must not reach the API; ``field`` is a dotted path ('' for the record)."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field = field_path
        self.message = message
        super().__init__(f"field '{field_path}': {message}" if field_path else message)


@dataclass
class FieldPlan:
    """What normalisation needs to know about one property, precomputed from its schema."""

    read_only: bool = False
    types: frozenset[str] = frozenset()
    fmt: str | None = None
    precision: int | None = None
    max_length: int | None = None
    nullable: bool = True
    properties: dict[str, FieldPlan] | None = None  # object with declared members
    items: FieldPlan | None = None  # array
    blank_is_null: bool = False
    """A blank string means "no value" here: the property is not a free string (a number, a
    boolean, an enum without ``""``). CSV files and spreadsheets send empty cells as ``""``."""

    @property
    def numeric(self) -> bool:
        """A ``number``/``integer`` property that is not also a string: decimal text accepted."""
        return bool(self.types & _NUMERIC_TYPES) and "string" not in self.types


@dataclass
class PreparedRecord:
    """A request-ready body plus what was silently dropped (for a warning, not an error)."""

    body: dict[str, Any]
    dropped_read_only: list[str] = field(default_factory=list)


def format_datetime(value: dt.datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, the way Intacct writes ``audit.modifiedDateTime``.

    Naive datetimes are taken as UTC (Singer timestamps without an offset are UTC by
    convention).
    """
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def format_decimal(value: decimal.Decimal, places: int | None) -> str:
    """A decimal string; with ``places`` exactly that many digits after the point."""
    if places is None:
        return format(value, "f")
    return format(value.quantize(decimal.Decimal(1).scaleb(-places)), "f")


def _merged(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Shallow-merge ``allOf`` members so a not-yet-flattened schema still yields properties."""
    out: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for sub in schema.get("allOf", ()) or ():
        if not isinstance(sub, Mapping):
            continue
        for key, value in _merged(sub).items():
            if key == "properties":
                props = dict(out.get("properties", {}))
                for name, prop in value.items():
                    props[name] = {**props.get(name, {}), **prop} if name in props else prop
                out["properties"] = props
            elif key == "required":
                out["required"] = sorted({*out.get("required", ()), *value})
            else:
                out.setdefault(key, value)
    return out


def build_plan(schema: Mapping[str, Any]) -> FieldPlan:
    """Precompute the normalisation plan for a property (recursively)."""
    schema = _merged(schema)
    fmt = schema.get("format")
    if fmt is None:
        for key in ("anyOf", "oneOf"):
            for sub in schema.get(key, ()) or ():
                if isinstance(sub, Mapping) and sub.get("format"):
                    fmt = sub["format"]
    precision_match = _PRECISION_FORMAT.match(fmt) if isinstance(fmt, str) else None
    types = admitted_types(schema)
    plan = FieldPlan(
        read_only=bool(schema.get("readOnly")),
        types=types,
        fmt=fmt if isinstance(fmt, str) else None,
        precision=int(precision_match.group(1)) if precision_match else None,
        max_length=schema.get("maxLength"),
        nullable="null" in types or not types,
    )
    enum = schema.get("enum")
    plan.blank_is_null = bool(types) and (
        "string" not in types or (isinstance(enum, list) and "" not in enum)
    )
    props = schema.get("properties")
    if isinstance(props, Mapping) and props:
        plan.properties = {name: build_plan(sub) for name, sub in props.items()}
    items = schema.get("items")
    if isinstance(items, Mapping):
        plan.items = build_plan(items)
    return plan


def _request_validation_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema fastjsonschema checks: read-only members and ``required`` removed.

    Read-only members are dropped by normalisation before validation, and required fields are
    checked in Python with a clearer message, so both are removed here; ``default`` is removed
    so no validator ever injects values into a body.
    """

    def strip(node: Any) -> Any:
        if isinstance(node, list):
            return [strip(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in {"required", "default", "readOnly", "writeOnly", "example", "examples"}:
                continue
            if key == "format":  # formats are handled by normalisation
                continue
            if key == "properties" and isinstance(value, Mapping):
                out[key] = {
                    name: strip(sub)
                    for name, sub in value.items()
                    if not (isinstance(sub, Mapping) and sub.get("readOnly"))
                }
            elif key == "description":
                continue
            else:
                out[key] = strip(value)
        if node.get("nullable") is True:
            out.pop("nullable", None)
            raw = out.get("type")
            if isinstance(raw, str):
                out["type"] = [raw, "null"]
            elif isinstance(raw, list) and "null" not in raw:
                out["type"] = [*raw, "null"]
        return out

    stripped: dict[str, Any] = strip(_merged(schema))
    return stripped


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class RequestPreparer:
    """Compiled normaliser + validator for one (object, operation) request schema.

    ``operation`` is ``create`` or ``update`` (deletes carry only keys). On create, fields in
    ``required`` must be present and non-null, and null values are dropped (unset means the
    default). On update a null clears a nullable field and is dropped for a non-nullable one
    (a tap emits null for "unset", which a PATCH cannot express for such fields).
    """

    def __init__(
        self,
        schema: Mapping[str, Any],
        *,
        operation: str,
        required: Sequence[str] = (),
        object_name: str = "",
        keep_fields: Sequence[str] = (),
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
        line_required: LineRequirements | None = None,
    ) -> None:
        self.object_name = object_name
        self.operation = operation
        self.required = tuple(required)
        self.line_required: LineRequirements = dict(line_required or {})
        self.keep_fields = frozenset(keep_fields)
        self.max_string_length = max_string_length
        merged = _merged(schema)
        self.plan = build_plan(merged)
        self._validation_schema = _request_validation_schema(merged)
        self._validation_schema.pop("required", None)
        self._compiled: Callable[[Any], Any] | None = None  # on first use: see _validate
        self._explainer: jsonschema.protocols.Validator | None = None
        self._fast: _ObjectFn | None = (
            self._compile_object(self.plan, top=True) if self.plan.properties else None
        )

    # -- normalisation -------------------------------------------------------------------

    def prepare(self, record: Mapping[str, Any]) -> PreparedRecord:
        """Return the request body for ``record`` or raise :class:`InvalidRecordError`."""
        dropped: list[str] = []
        if self._fast is not None:
            body = self._fast(record, "", dropped)
        else:
            body = self._normalise_object(record, self.plan, "", dropped, top=True)
        if self.operation == "create":
            for name in self.required:
                value = dig(body, name)
                if isinstance(value, str) and not value.strip():
                    raise InvalidRecordError(name, "is required on create and may not be blank")
                if value is None and not _reference_by_key(body, name):
                    raise InvalidRecordError(name, "is required on create")
            if self.line_required:
                _check_line_required(body, self.line_required, "")
        self._validate(body)
        return PreparedRecord(body=body, dropped_read_only=dropped)

    def prepare_generic(self, record: Mapping[str, Any]) -> PreparedRecord:
        """:meth:`prepare` through the generic walk only (the reference the compiled one must
        match; used by tests)."""
        fast, self._fast = self._fast, None
        try:
            return self.prepare(record)
        finally:
            self._fast = fast

    # -- the compiled walk ---------------------------------------------------------------

    def _compile_object(self, plan: FieldPlan, *, top: bool = False) -> _ObjectFn:
        """A closure normalising one object of ``plan`` (which has declared properties).

        Semantics are exactly :meth:`_normalise_object`'s; only common value types take a
        specialised path, the rest call the generic :meth:`_normalise_value`.
        """
        props = plan.properties or {}
        entries: dict[str, tuple[bool, bool, bool, _ValueFn | None]] = {}
        for name, sub in props.items():
            if top and (name.startswith(_METADATA_PREFIX) or name in self.keep_fields):
                continue  # handled by the fallback below, before any property lookup
            entries[name] = (
                sub.read_only,
                sub.nullable,
                sub.blank_is_null,
                self._compile_value(sub),
            )
        keep_fields = self.keep_fields
        create = self.operation == "create"
        object_name = self.object_name
        plain = self._plain

        def normalise(record: Mapping[str, Any], prefix: str, dropped: list[str]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            get = entries.get
            for name, value in record.items():
                entry = get(name)
                if entry is None:
                    if top and (name.startswith(_METADATA_PREFIX) or name in keep_fields):
                        if name in keep_fields:
                            out[name] = value
                        continue
                    if "::" in name:  # custom fields (nsp::...) and ia::operation on lines
                        out[name] = plain(value, prefix + name)
                        continue
                    raise InvalidRecordError(
                        prefix + name,
                        f"unknown field for {object_name or 'this object'}" + _suggest(name, props),
                    )
                read_only, nullable, blank_is_null, handler = entry
                if read_only:
                    dropped.append(prefix + name)
                    continue
                if value is None or (
                    blank_is_null and value.__class__ is str and not value.strip()
                ):  # null, or an empty cell: no value
                    if create or not nullable:
                        continue
                    out[name] = None
                    continue
                assert handler is not None
                normalised = handler(value, prefix, name, dropped)
                if normalised is not _UNSET:
                    out[name] = normalised
            return out

        return normalise

    def _compile_value(self, plan: FieldPlan) -> _ValueFn | None:
        """A specialised handler for a common property shape (falls back to the generic)."""
        if plan.read_only:
            return None
        generic = self._normalise_value

        def slow(value: Any, prefix: str, name: str, dropped: list[str]) -> Any:
            return generic(value, plan, prefix + name, dropped)

        types = plan.types - {"null"}
        if plan.properties is not None:
            members = self._compile_object(plan)

            def obj(value: Any, prefix: str, name: str, dropped: list[str]) -> Any:
                if type(value) is not dict:
                    return slow(value, prefix, name, dropped)
                out = members(value, f"{prefix}{name}.", dropped)
                return _UNSET if value and not out else out

            return obj
        if plan.items is not None:
            item_fn = self._compile_value(plan.items)
            if item_fn is None:
                return slow

            def array(value: Any, prefix: str, name: str, dropped: list[str]) -> Any:
                if type(value) is not list:
                    return slow(value, prefix, name, dropped)
                assert item_fn is not None
                items = [
                    item_fn(item, prefix, f"{name}[{i}]", dropped) for i, item in enumerate(value)
                ]
                return [{} if item is _UNSET else item for item in items]

            return array
        if plan.precision is not None:
            return slow
        if types == {"string"}:
            limit = plan.max_length or (
                None if plan.fmt in _BINARY_FORMATS else self.max_string_length
            )

            dated = plan.fmt in ("date", "date-time")

            def string(value: Any, prefix: str, name: str, dropped: list[str]) -> Any:
                if type(value) is not str:
                    return slow(value, prefix, name, dropped)
                if dated:
                    value = _dated_text(value, plan, prefix + name)
                if limit is not None and len(value) > limit:
                    raise InvalidRecordError(
                        prefix + name,
                        f"string of {len(value)} characters exceeds the limit of {limit}",
                    )
                return value

            return string
        if types and types <= _NUMERIC_TYPES:

            def number(value: Any, prefix: str, name: str, dropped: list[str]) -> Any:
                kind = type(value)
                if kind is int:  # the common case checked inline: no path built, no call
                    if -_LARGEST_INTEGER <= value <= _LARGEST_INTEGER:
                        return value
                    return _in_range(value, prefix + name)
                if kind is float:
                    return value if math.isfinite(value) else _in_range(value, prefix + name)
                if kind is str or kind is decimal.Decimal:
                    return _to_number(value, plan, prefix + name)
                return slow(value, prefix, name, dropped)

            return number
        if types == {"boolean"}:

            def boolean(value: Any, prefix: str, name: str, dropped: list[str]) -> Any:
                if type(value) is bool:
                    return value
                if type(value) is str:
                    word = _BOOLEAN_WORDS.get(value.strip().lower())
                    if word is not None:
                        return word
                return slow(value, prefix, name, dropped)

            return boolean
        return slow

    # -- the generic walk ----------------------------------------------------------------

    def _normalise_object(
        self,
        record: Mapping[str, Any],
        plan: FieldPlan,
        prefix: str,
        dropped: list[str],
        *,
        top: bool = False,
    ) -> dict[str, Any]:
        props = plan.properties
        out: dict[str, Any] = {}
        for name, value in record.items():
            path = f"{prefix}{name}"
            if top and (name.startswith(_METADATA_PREFIX) or name in self.keep_fields):
                if name in self.keep_fields:
                    out[name] = value
                continue
            if props is None:  # free-form object: pass through, only fix Python types
                out[name] = self._plain(value, path)
                continue
            sub = props.get(name)
            if sub is None:
                if "::" in name:  # custom fields (nsp::...) and ia::operation on lines
                    out[name] = self._plain(value, path)
                    continue
                raise InvalidRecordError(
                    path,
                    f"unknown field for {self.object_name or 'this object'}"
                    + _suggest(name, props),
                )
            if sub.read_only:
                dropped.append(path)
                continue
            if value is None or (
                sub.blank_is_null and isinstance(value, str) and not value.strip()
            ):  # null, or an empty cell: no value
                if self.operation == "create" or not sub.nullable:
                    continue
                out[name] = None
                continue
            normalised = self._normalise_value(value, sub, path, dropped)
            if normalised is _UNSET:
                continue
            out[name] = normalised
        return out

    def _normalise_value(self, value: Any, plan: FieldPlan, path: str, dropped: list[str]) -> Any:
        if isinstance(value, Mapping):
            if plan.properties is None and "object" not in plan.types and plan.types:
                return dict(value)  # wrong type: let the validator name it
            had_members = bool(value)
            out = self._normalise_object(value, plan, f"{path}.", dropped)
            if had_members and not out:
                return _UNSET  # only read-only members (e.g. a reference's name/href)
            return out
        if isinstance(value, list | tuple):
            if plan.items is None:
                return [self._plain(item, path) for item in value]
            items = [
                self._normalise_value(item, plan.items, f"{path}[{i}]", dropped)
                for i, item in enumerate(value)
            ]
            return [{} if item is _UNSET else item for item in items]
        if isinstance(value, dt.datetime):
            if plan.fmt == "date":
                return value.date().isoformat()
            return format_datetime(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, dt.time):
            return value.isoformat()
        if isinstance(value, str):
            value = _coerce_text(value, plan)
            if isinstance(value, str) and plan.fmt in ("date", "date-time"):
                value = _dated_text(value, plan, path)
        if plan.precision is not None or (
            "string" in plan.types and isinstance(value, decimal.Decimal)
        ):
            return self._decimal(value, plan, path)
        if plan.numeric and isinstance(value, str | decimal.Decimal):
            return _to_number(value, plan, path)
        if isinstance(value, decimal.Decimal | float | int) and not isinstance(value, bool):
            _in_range(value, path)
        if isinstance(value, decimal.Decimal):
            return _decimal_to_number(value, plan.types)
        if isinstance(value, str):
            limit = plan.max_length or (
                None if plan.fmt in _BINARY_FORMATS else self.max_string_length
            )
            if limit is not None and len(value) > limit:
                raise InvalidRecordError(
                    path, f"string of {len(value)} characters exceeds the limit of {limit}"
                )
        return value

    def _decimal(self, value: Any, plan: FieldPlan, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float | decimal.Decimal):
            return value  # wrong type: the validator reports it
        try:
            number = (
                decimal.Decimal(str(value).strip())
                if not isinstance(value, decimal.Decimal)
                else value
            )
        except decimal.InvalidOperation:
            raise InvalidRecordError(path, f"{_describe(value)} is not a decimal number") from None
        if not number.is_finite():
            raise InvalidRecordError(path, f"{_describe(value)} is not a finite decimal number")
        _in_range(number, path)
        places = plan.precision
        if places is not None:
            exponent = number.normalize().as_tuple().exponent
            actual = -exponent if isinstance(exponent, int) and exponent < 0 else 0
            if actual > places:
                raise InvalidRecordError(
                    path,
                    f"{_describe(value)} has {actual} decimal places; "
                    f"{plan.fmt} allows at most {places}",
                )
        if "string" in plan.types or not plan.types:
            return format_decimal(number, places)
        return _decimal_to_number(number, plan.types)

    def _plain(self, value: Any, path: str) -> Any:
        """JSON-native form of a value with no schema (custom fields, free-form objects)."""
        if isinstance(value, Mapping):
            return {k: self._plain(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._plain(v, path) for v in value]
        if isinstance(value, dt.datetime):
            return format_datetime(value)
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, decimal.Decimal):
            _in_range(value, path)
            return format_decimal(value, None)
        if isinstance(value, float | int) and not isinstance(value, bool):
            return _in_range(value, path)
        if isinstance(value, str) and len(value) > self.max_string_length:
            raise InvalidRecordError(
                path,
                f"string of {len(value)} characters exceeds the limit of {self.max_string_length}",
            )
        return value

    # -- validation ----------------------------------------------------------------------

    def _validate(self, body: dict[str, Any]) -> None:
        try:
            compiled = self._compiled
            if compiled is None:  # compiled on first use: a load that never updates never
                # pays for the update schema's validator (~25 ms, or ~1 ms from the disk cache)
                compiled = self._compiled = compiled_validator(self._validation_schema)
            compiled(body)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise self.explain(body, exc) from None

    def explain(
        self, body: Mapping[str, Any], exc: fastjsonschema.JsonSchemaValueException
    ) -> InvalidRecordError:
        """Ask jsonschema for the most relevant error (slow path, failures only)."""
        if self._explainer is None:
            self._explainer = jsonschema.Draft202012Validator(self._validation_schema)
        error = jsonschema.exceptions.best_match(self._explainer.iter_errors(body))
        if error is None:  # the two validators disagree: fall back to fastjsonschema's words
            path = ".".join(str(p) for p in (exc.path or [])[1:])
            return InvalidRecordError(path, exc.message.replace(exc.name or "", "value", 1))
        path = ".".join(str(p) for p in error.absolute_path)
        message = error.message
        if error.validator == "enum":
            message = f"{_describe(error.instance)} is not one of {error.validator_value}"
        elif error.validator == "type":
            message = f"{_describe(error.instance)} is not of type {error.validator_value}"
        return InvalidRecordError(path, message)


def dig(body: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path (``vendor.id``), None when any step is missing."""
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def member_of(row: Any, path: str) -> Any:
    """A member of a query row or an input record: the flat dotted key query rows carry
    (``"bill.key"``), else the nested path (:func:`dig`); None for anything but a mapping."""
    if not isinstance(row, Mapping):
        return None
    value = row.get(path)
    return dig(row, path) if value is None else value


LineRequirements = dict[str, tuple[tuple[str, ...], "LineRequirements"]]
"""Owned list -> (members each of its lines needs on create, the same for the line's lists)."""


def _check_line_required(
    body: Mapping[str, Any], requirements: LineRequirements, prefix: str
) -> None:
    """Lines created inside a new owner need their own required members (``lines[0].amount``),
    their owner reference excepted (the owner being created is their owner)."""
    for prop, (required, nested) in requirements.items():
        lines = body.get(prop)
        if not isinstance(lines, list):
            continue
        for i, line in enumerate(lines):
            if not isinstance(line, Mapping):
                continue
            where = f"{prefix}{prop}[{i}]"
            for name in required:
                value = dig(line, name)
                if isinstance(value, str) and not value.strip():
                    raise InvalidRecordError(
                        f"{where}.{name}", "is required on create and may not be blank"
                    )
                if value is None and not _reference_by_key(line, name):
                    raise InvalidRecordError(f"{where}.{name}", "is required on create")
            if nested:
                _check_line_required(line, nested, f"{where}.")


def _reference_by_key(body: Mapping[str, Any], path: str) -> bool:
    """A required reference ``vendor.id`` is equally satisfied by ``vendor.key``."""
    parent, _, leaf = path.rpartition(".")
    return bool(parent) and leaf == "id" and dig(body, f"{parent}.key") is not None


def _decimal_to_number(value: decimal.Decimal, types: frozenset[str]) -> int | decimal.Decimal:
    """A Decimal (msgspec and the SDK parse JSON fractions as Decimal) kept exact: an ``int``
    for an integral value of an integer property, else the Decimal itself, which the engine
    encodes as a JSON number (never through float)."""
    if "integer" in types and "number" not in types and value == value.to_integral_value():
        return int(value)
    return value


def _to_number(value: str | decimal.Decimal, plan: FieldPlan, path: str) -> int | decimal.Decimal:
    """A decimal string or Decimal for a ``number``/``integer`` property, exact, or raise.

    Intacct returns amounts as strings (``"0.00"``) and the tap's record schemas admit them,
    so a round trip must accept them; anything that is not a plain decimal number is an error
    naming the field.
    """
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER_TEXT.match(text):
            raise InvalidRecordError(path, f"{_describe(value)} is not a number")
        number = decimal.Decimal(text)
    else:
        number = value
        if not number.is_finite():
            raise InvalidRecordError(path, f"{_describe(value)} is not a finite number")
    _in_range(number, path)
    if "number" in plan.types:
        return number
    if number != number.to_integral_value():
        raise InvalidRecordError(path, f"{_describe(value)} is not an integer")
    return _in_range(int(number), path)


_BOOLEAN_WORDS = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "1": True,
    "0": False,
}
"""How spreadsheets and CSV files spell booleans (compared stripped and lower-cased)."""


def _coerce_text(value: str, plan: FieldPlan) -> Any:
    """Text as a CSV or spreadsheet source sends it, read by the property's known type.

    A boolean word becomes a boolean; an ISO timestamp for a ``date`` becomes its date, an ISO
    date for a ``date-time`` becomes midnight UTC. Numbers are read exactly elsewhere
    (:func:`_to_number`); anything else is returned unchanged for the validator to judge.
    """
    if "boolean" in plan.types and "string" not in plan.types:
        word = _BOOLEAN_WORDS.get(value.strip().lower())
        return value if word is None else word
    text = value.strip()
    if plan.fmt == "date" and len(text) > 10 and text[10] in "Tt ":
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            return value
    if plan.fmt == "date-time" and len(text) == 10:
        try:
            return dt.date.fromisoformat(text).isoformat() + "T00:00:00Z"
        except ValueError:
            return value
    return value


def _dated_text(value: str, plan: FieldPlan, path: str) -> str:
    """An ISO date (``date``) or timestamp (``date-time``) from text, or raise naming the
    field: Intacct refuses the whole record for a date it cannot read."""
    coerced = _coerce_text(value, plan)
    text = coerced if isinstance(coerced, str) else value
    try:
        if plan.fmt == "date":
            dt.date.fromisoformat(text)
        else:
            dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRecordError(path, f"{_describe(value)} is not a valid {plan.fmt}") from None
    return text


def _in_range(value: Any, path: str) -> Any:
    """``value`` if it can travel as a JSON number Intacct can parse, else raise naming it.

    Non-finite floats are not JSON at all; numbers beyond a double (``1e309``) make the request
    body unparseable, which would fail the whole batch.
    """
    if type(value) is int:
        if -_LARGEST_INTEGER <= value <= _LARGEST_INTEGER:
            return value
        digits = len(str(abs(value)))
        raise InvalidRecordError(path, f"an integer of {digits} digits is out of range")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRecordError(path, f"{value!r} is not a finite number")
        return value
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise InvalidRecordError(path, f"{_describe(value)} is not a finite number")
        if value and abs(value) > _LARGEST_NUMBER:
            raise InvalidRecordError(path, f"{_describe(value)} is out of range for a JSON number")
    return value


def _suggest(name: str, props: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(props), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
