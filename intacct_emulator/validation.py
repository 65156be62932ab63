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
from collections.abc import Mapping
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
        return envelopes.fail(
            400,
            "invalidRequest",
            "Payload contains errors",
            "REST-1064",
            message_id="IA.PAYLOAD_CONTAINS_ERRORS",
            details=self.details,
        )


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
    out: dict[str, Any] = {}
    props = schema_tools.properties(schema)
    for name, value in body.items():
        target = f"{prefix}/{name}"
        if name in skip:
            continue
        if name in keep:
            out[name] = value
            continue
        sub = props.get(name)
        if sub is None:
            problems.unknown(target)
            continue
        if sub.get("readOnly"):
            continue
        checked = _value(sub, value, target, problems)
        if checked is not _DROP:
            out[name] = checked
    return out


_DROP = object()


def _value(schema: Mapping[str, Any], value: Any, target: str, problems: Problems) -> Any:
    if value is None:
        return None
    if not schema or ("$comment" in schema and len(schema) == 1):
        return value  # recursion cut or free-form: accept as is
    kinds = schema_tools.types(schema)
    if "object" in kinds and schema_tools.properties(schema):
        if not isinstance(value, Mapping):
            problems.invalid(target, f"{target} must be an object")
            return _DROP
        return clean(schema, value, problems=problems, prefix=target)
    if "array" in kinds:
        if not isinstance(value, list):
            problems.invalid(target, f"{target} must be an array")
            return _DROP
        items = schema.get("items")
        if isinstance(items, Mapping) and items:
            return [_value(items, v, f"{target}/{i}", problems) for i, v in enumerate(value)]
        return value
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        allowed = ", ".join(repr(e) for e in enum if e is not None)
        problems.invalid(
            target, f"{target} has an invalid value {value!r}; expected one of {allowed}"
        )
        return _DROP
    if not kinds:
        return value
    if schema.get("x-intacct-type") in ("number", "decimal"):
        return _decimal(value, target, problems)
    if isinstance(value, bool):
        if "boolean" in kinds:
            return value
    elif isinstance(value, int):
        if "integer" in kinds or "number" in kinds:
            return value
    elif isinstance(value, float):
        if "number" in kinds:
            return value
    elif isinstance(value, str) and "string" in kinds:
        return _formatted(schema.get("format"), value, target, problems)
    expected = " or ".join(kinds)
    problems.invalid(target, f"{target} must be of type {expected}")
    return _DROP


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
