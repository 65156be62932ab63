"""Fast stream-schema validation for the target, through the SDK's ``get_validator`` hook.

The SDK validates every RECORD against its stream SCHEMA with jsonschema, which is ~85% of a
target's CPU (docs/singer-sdk-notes.md §7). We keep validation on and make it cheap:
fastjsonschema compiles the schema to Python once per sink; only a failing record pays for
jsonschema, which explains the failure naming the field.

Each value is validated once, against the stricter contract that applies to it: a top-level
property the engine validates against the spec's *request* schema on every path to the API
(writable in both the create and the update request of the object: ``checked_downstream``) is
left to that check, which is the one that decides what Intacct accepts and names the field
the same way. Everything else (read-only fields the engine drops but a tap sends, ``key``,
metadata, fields unknown to the request schema) is still checked against the stream SCHEMA
here. A record is therefore never sent without its values having been validated.

A failing record must become an error *result*, not a crash: raising ``InvalidRecord`` from the
hook either aborts the run (``fail_on_record_validation_exception``) or logs a traceback per
record and continues. So :meth:`FastRecordValidator.validate` never raises. It remembers the
failure by the record object's identity; the sink picks it up in ``process_record`` (the same
object, a few calls later in ``Target._process_record_message``) and reports it.

The SDK then parses top-level date/date-time/time strings into Python objects and raises on a
value it cannot parse (``datetime_error_treatment`` ERROR). The validator checks those fields
first: a date field holding a full timestamp is cut to its date; anything unparseable makes the
record invalid and is nulled in place (the original is kept for the result) so the SDK's parse
cannot abort the run.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

import fastjsonschema
import jsonschema
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from intacct_api.compiled_validators import compiled_validator

__all__ = ["FastRecordValidator", "RecordFailure"]

_DATELIKE = ("date-time", "date", "time")


class RecordFailure:
    """Why a record failed stream validation, and the record as it arrived."""

    __slots__ = ("message", "original")

    def __init__(self, message: str, original: dict[str, Any]) -> None:
        self.message = message
        self.original = original


def _datelike(schema: Mapping[str, Any]) -> str | None:
    """The SDK's rule: a string property with a date-like format (directly or in anyOf)."""
    options = [schema, *[s for s in schema.get("anyOf", ()) if isinstance(s, Mapping)]]
    for option in options:
        types = option.get("type", [])
        if ("string" in types) and option.get("format") in _DATELIKE:
            return str(option["format"])
    return None


def _check_datelike(kind: str, value: str) -> str | None:
    """Return a replacement value, or raise ValueError if the SDK could not parse it."""
    if kind == "date":
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return dt.datetime.fromisoformat(value).date().isoformat()
        return None
    if kind == "time":
        dt.time.fromisoformat(value)
        return None
    dt.datetime.fromisoformat(value)
    return None


class FastRecordValidator(BaseJSONSchemaValidator):
    """fastjsonschema on the hot path, jsonschema to explain; never raises per record."""

    def __init__(
        self,
        schema: dict[str, Any],
        *,
        check_schema: bool = True,
        checked_downstream: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(schema)
        self.check_schema = check_schema
        props = schema.get("properties") or {}
        # Properties the request schema validates for every record that reaches the API are
        # not checked twice (see the module docstring); everything else still is.
        self.checked_downstream = frozenset(name for name in checked_downstream if name in props)
        checked = schema
        if self.checked_downstream:
            checked = dict(schema)
            checked["properties"] = {
                name: sub for name, sub in props.items() if name not in self.checked_downstream
            }
        self._compiled = compiled_validator(checked)
        self._explainer = jsonschema.Draft202012Validator(checked)
        self._datelike = {
            name: kind
            for name, sub in props.items()
            if isinstance(sub, Mapping) and (kind := _datelike(sub)) is not None
        }
        self._failures: dict[int, RecordFailure] = {}
        self._lock = threading.Lock()

    def validate(self, record: dict[str, Any]) -> None:
        """Validate ``record``; remember (do not raise) a failure for the sink to report."""
        message = self._schema_error(record) if self.check_schema else None
        bad_dates = self._bad_datelike(record) if message is None else list(self._datelike)
        if message is None and bad_dates:
            name = bad_dates[0]
            message = (
                f"field '{name}': {record[name]!r} is not a valid {self._datelike[name]} value"
            )
        if message is None:
            return
        original = copy.deepcopy(record)
        for name in bad_dates:  # keep the SDK's timestamp parse from aborting the run
            if name in record and not _parses(self._datelike[name], record[name]):
                record[name] = None
        with self._lock:
            self._failures[id(record)] = RecordFailure(message, original)

    @property
    def has_failures(self) -> bool:
        """Any failure waiting to be taken (a cheap check before :meth:`take_failure`)."""
        return bool(self._failures)

    def take_failure(self, record: Mapping[str, Any]) -> RecordFailure | None:
        """The failure remembered for this very record object (removed once taken)."""
        with self._lock:
            return self._failures.pop(id(record), None)

    def _schema_error(self, record: dict[str, Any]) -> str | None:
        try:
            self._compiled(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            error = jsonschema.exceptions.best_match(self._explainer.iter_errors(record))
            if error is None:
                path = ".".join(str(p) for p in (exc.path or [])[1:])
                return f"field '{path}': {exc.message}"
            path = ".".join(str(p) for p in error.absolute_path)
            text = error.message if len(error.message) <= 300 else error.message[:297] + "..."
            return f"field '{path}': {text}" if path else text
        return None

    def _bad_datelike(self, record: dict[str, Any]) -> list[str]:
        bad: list[str] = []
        for name, kind in self._datelike.items():
            value = record.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                bad.append(name)
                continue
            try:
                replacement = _check_datelike(kind, value)
            except ValueError:
                bad.append(name)
                continue
            if replacement is not None:
                record[name] = replacement
        return bad


def _parses(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        _check_datelike(kind, value)
    except ValueError:
        return False
    return True
