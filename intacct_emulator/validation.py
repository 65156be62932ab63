"""Write-body validation against the registry's record schema, with Intacct-shaped errors.

What Intacct does and what we chose (documented in the emulator notes):

* unknown members -> 400 ``REST-1064`` "Payload contains errors" with one ``details[]`` entry
  per problem (``REST-1043`` "/x is not a valid field", ``target`` "/x"), the shape the spec's
  own error example shows;
* wrong JSON type, value outside an ``enum``, malformed date / date-time / decimal -> the same
  envelope, detail ``REST-1044`` (emulator's choice of id), target naming the field;
* required-on-create members missing or null -> same envelope, detail ``REST-1045`` (ours);
  a required reference (``vendor.id``) is satisfied by either its ``id`` or its ``key``;
* read-only members (``key``, ``href``, ``audit``, computed totals) are *ignored*, as Intacct
  ignores them on write: a client may send back a record it read.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from intacct_emulator import envelopes, schema_tools
from intacct_emulator.envelopes import EmulatorError

OPERATION_MEMBER = "ia::operation"


@dataclass
class Problems:
    """Details collected while walking one body (reported together, like Intacct)."""

    details: list[dict[str, Any]] = field(default_factory=list)

    def unknown(self, target: str) -> None:
        self.details.append(
            envelopes.detail(
                "invalidRequest",
                f"{target} is not a valid field",
                "REST-1043",
                target,
                message_id="IA.NOT_A_VALID_FIELD",
                placeholders={"FIELD": target.lstrip("/")},
            )
        )

    def invalid(self, target: str, message: str) -> None:
        self.details.append(
            envelopes.detail(
                "invalidRequest",
                message,
                "REST-1044",
                target,
                message_id="IA.INVALID_VALUE",
                placeholders={"FIELD": target.lstrip("/")},
            )
        )

    def missing(self, target: str) -> None:
        self.details.append(
            envelopes.detail(
                "invalidRequest",
                f"Required field {target} is missing",
                "REST-1045",
                target,
                message_id="IA.REQUIRED_FIELD_MISSING",
                placeholders={"FIELD": target.lstrip("/")},
            )
        )

    def error(self) -> EmulatorError:
        return envelopes.payload_errors(self.details)


def payload_required(operation: str) -> EmulatorError:
    """REST-1028: the body is missing or not a JSON object."""
    return envelopes.fail(
        400,
        "invalidRequest",
        f"A {operation} request requires a payload",
        "REST-1028",
        message_id="IA.REQUEST_REQUIRES_A_PAYLOAD",
        placeholders={"OPERATION": operation},
    )


def clean(
    schema: Mapping[str, Any],
    body: Any,
    *,
    skip: frozenset[str] = frozenset(),
    keep: frozenset[str] = frozenset(),
    problems: Problems,
    prefix: str = "",
) -> dict[str, Any]:
    """Check ``body`` against an object schema; return it without read-only members.

    ``skip`` names top-level members handled by the caller (owned lists); ``keep`` names
    read-only members the caller needs (a line's ``key``, ``ia::operation``).
    """
    return _object_plan(schema).clean(body, skip, keep, problems, prefix)


_DROP = object()

Check = Callable[[Any, str, Problems], Any]
"""A compiled validator of one schema: (value, target, problems) -> cleaned value or _DROP."""

_MAX_CACHED = 4096
_PLANS: dict[int, tuple[Mapping[str, Any], _ObjectPlan]] = {}
_CHECKS: dict[int, tuple[Mapping[str, Any], Check]] = {}


def _object_plan(schema: Mapping[str, Any]) -> _ObjectPlan:
    """The compiled plan of an object schema, built once per schema object.

    Keyed by identity (the record schemas are resolved once per company and kept); the schema
    itself is kept beside its plan, so an id can never be reused by another schema meanwhile.
    """
    found = _PLANS.get(id(schema))
    if found is None or found[0] is not schema:
        if len(_PLANS) > _MAX_CACHED:  # many short-lived companies (tests): start afresh
            _PLANS.clear()
            _CHECKS.clear()
        found = (schema, _ObjectPlan(schema))
        _PLANS[id(schema)] = found
    return found[1]


def _check_for(schema: Mapping[str, Any]) -> Check:
    found = _CHECKS.get(id(schema))
    if found is None or found[0] is not schema:
        found = (schema, _compile(schema))
        _CHECKS[id(schema)] = found
    return found[1]


class _ObjectPlan:
    """Members of one object schema: read-only flags and (lazily compiled) member checks."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.props = schema_tools.properties(schema)
        self.read_only = frozenset(name for name, sub in self.props.items() if sub.get("readOnly"))
        self.checks: dict[str, Check] = {}

    def clean(
        self,
        body: Mapping[str, Any],
        skip: frozenset[str],
        keep: frozenset[str],
        problems: Problems,
        prefix: str,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        props = self.props
        checks = self.checks
        read_only = self.read_only
        for name, value in body.items():
            if name in skip:
                continue
            if name in keep:
                out[name] = value
                continue
            check = checks.get(name)
            if check is None:
                sub = props.get(name)
                if sub is None:
                    problems.unknown(f"{prefix}/{name}")
                    continue
                check = checks[name] = _check_for(sub)
            if name in read_only:
                continue
            if value is None:
                out[name] = None
                continue
            checked = check(value, f"{prefix}/{name}", problems)
            if checked is not _DROP:
                out[name] = checked
        return out


def _accept(value: Any, target: str, problems: Problems) -> Any:
    return value


def _compile(schema: Mapping[str, Any]) -> Check:
    """One schema -> its check; mirrors the rules in the module docstring, decided once."""
    if not schema or ("$comment" in schema and len(schema) == 1):
        return _accept  # recursion cut or free-form: accept as is
    kinds = schema_tools.types(schema)
    if "object" in kinds and schema_tools.properties(schema):
        plan = _object_plan(schema)
        empty: frozenset[str] = frozenset()

        def check_object(value: Any, target: str, problems: Problems) -> Any:
            if value is None:
                return None
            if value.__class__ is not dict and not isinstance(value, Mapping):
                problems.invalid(target, f"{target} must be an object")
                return _DROP
            return plan.clean(value, empty, empty, problems, target)

        return check_object
    if "array" in kinds:
        items = schema.get("items")
        item_check = _check_for(items) if isinstance(items, Mapping) and items else None

        def check_array(value: Any, target: str, problems: Problems) -> Any:
            if value is None:
                return None
            if not isinstance(value, list):
                problems.invalid(target, f"{target} must be an array")
                return _DROP
            if item_check is None:
                return value
            return [
                None if v is None else item_check(v, f"{target}/{i}", problems)
                for i, v in enumerate(value)
            ]

        return check_array
    enum = schema.get("enum")
    enum_list = enum if isinstance(enum, list) else None
    decimal_kind = schema.get("x-intacct-type") in ("number", "decimal")
    allows_bool = "boolean" in kinds
    allows_int = "integer" in kinds or "number" in kinds
    allows_float = "number" in kinds
    allows_str = "string" in kinds
    fmt = schema.get("format")
    expected = " or ".join(kinds)
    no_kinds = not kinds

    def check_scalar(value: Any, target: str, problems: Problems) -> Any:
        if value is None:
            return None
        if enum_list is not None and value not in enum_list:
            allowed = ", ".join(repr(e) for e in enum_list if e is not None)
            problems.invalid(
                target, f"{target} has an invalid value {value!r}; expected one of {allowed}"
            )
            return _DROP
        if no_kinds:
            return value
        if decimal_kind:
            return _decimal(value, target, problems)
        cls = value.__class__
        if cls is str:
            if allows_str:
                return value if fmt is None else _formatted(fmt, value, target, problems)
        elif cls is bool:
            if allows_bool:
                return value
        elif cls is int:
            if allows_int:
                return value
        elif cls is float:
            if allows_float:
                return value
        elif isinstance(value, bool):
            if allows_bool:
                return value
        elif isinstance(value, int):
            if allows_int:
                return value
        elif isinstance(value, float):
            if allows_float:
                return value
        elif isinstance(value, str) and allows_str:
            return _formatted(fmt, value, target, problems)
        problems.invalid(target, f"{target} must be of type {expected}")
        return _DROP

    return check_scalar


def _decimal(value: Any, target: str, problems: Problems) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.invalid(target, f"{target} must be a number or a decimal string")
        return _DROP
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        problems.invalid(target, f"{target} must be a number or a decimal string")
        return _DROP
    if not number.is_finite():
        problems.invalid(target, f"{target} must be a finite number")
        return _DROP
    return value


def _formatted(fmt: Any, value: str, target: str, problems: Problems) -> Any:
    try:
        if fmt == "date":
            dt.date.fromisoformat(value)
        elif fmt == "date-time":
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems.invalid(target, f"{target} is not a valid {fmt}: {value!r}")
        return _DROP
    return value


def check_required(
    body: Mapping[str, Any], required: tuple[str, ...], problems: Problems, *, prefix: str = ""
) -> None:
    """Report required-on-create paths (``vendor.id``) that are absent or null."""
    for path in required:
        parts = path.split(".")
        node: Any = body
        for index, part in enumerate(parts):
            if not isinstance(node, Mapping):
                node = None
                break
            if index == len(parts) - 1 and part in ("id", "key") and node.get(part) is None:
                node = node.get("key" if part == "id" else "id")
            else:
                node = node.get(part)
        if node is None or node in ([], ""):
            problems.missing(prefix + "/" + path.replace(".", "/"))
