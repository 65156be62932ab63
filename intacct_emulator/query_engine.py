"""The query service (``POST /services/core/query``): validation, SQL push-down, paging.

Why two paths: the everyday incremental query (filter and sort on ``key``, ``id`` or
``audit.modifiedDateTime``, conjunctive filters, or an ``or`` expression whose every filter is on
those columns, like the pager's keyset fallback) must stay fast on a million records, so it is
answered by SQLite on indexed columns with ``LIMIT``/``OFFSET``; anything else (text operators,
other fields, ``or`` expressions over them, case-insensitive comparison, related-object fields)
is evaluated in Python over the rows SQLite pre-selects. Both paths share the operator semantics
of :mod:`filters`, so results do not depend on which path ran. Result rows are built from the
sparse stored bodies by walking only the members a record holds (:func:`_project_all`).

The everyday page (SQL-only conditions and order, no related-object fields) skips even that:
each stored row carries its leaves as a flat JSON object (``flat`` column, see :mod:`store`),
which msgspec decodes straight into a struct generated once per requested field list (fields
in request order, absent ones ``null``, members not requested skipped in C) and encodes again;
no per-row Python code runs (:func:`_flat_rows`).
"""

from __future__ import annotations

import decimal
import gc
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec

from intacct_api.spec import SpecRegistry
from intacct_emulator import envelopes, filters, schema_tools
from intacct_emulator.clock import canonical
from intacct_emulator.envelopes import EmulatorError
from intacct_emulator.store import Store, decode, decode_many

MAX_PAGE_SIZE = 4000
DEFAULT_PAGE_SIZE = 100
QUERY_KEYS = frozenset(
    {
        "object",
        "fields",
        "filters",
        "filterExpression",
        "filterParameters",
        "orderBy",
        "start",
        "size",
    }
)
FILTER_PARAMETERS = frozenset(
    {"asOfDate", "includeHierarchyFields", "caseSensitiveComparison", "includePrivate"}
)

# Defaults of the REST-1106 configuration: fields real Intacct refused in recorded traffic
# (`action` in the fact sheet's recording; `createAPBill` in keboola's recorded traffic).
DEFAULT_REFUSED_QUERY_FIELDS: dict[str, set[str]] = {
    "accounts-receivable/invoice": {"action", "createAPBill"}
}
_KEY_TEXT = re.compile(r"[0-9]+")
_KEY_SQL_TEXT = "CAST(key AS TEXT)"


@dataclass(frozen=True)
class QueryOptions:
    """Where tenants (or a deliberate deviation) differ; set from the fault switches.

    ``key_sort``/``key_compare``: whether ``orderBy key`` and comparisons on ``key`` treat the
    numeric-string keys as numbers or as text (Intacct's behaviour is not documented: both are
    emulated; a tenant that sorts one way and compares the other breaks keyset paging, which
    ``intacct doctor`` detects). ``refused_field_form``: how REST-1106 names the field.
    """

    key_sort: str = "numeric"
    key_compare: str = "numeric"
    refused_field_form: str = "placeholder"


Fetch = Callable[[str, str], dict[str, Any] | None]
"""Look up a related record (object name, key) for child->parent dotted fields."""


@dataclass(frozen=True)
class FieldRef:
    """A requested field path, resolved against the record schema."""

    name: str
    path: tuple[str, ...]  # path inside this object's record
    join: tuple[str, tuple[str, ...]] | None  # (related object, path inside it) or None
    kind: str  # key | number | datetime | bool | text | array | other
    column: str | None  # indexed SQL column when the field has one


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside the block (a query page or a write batch).

    Decoding a 4,000-row page allocates hundreds of thousands of dicts and strings, none of
    them cyclic; the collector would run dozens of times during it, each pass walking the
    whole heap (the spec registry included) for nothing: about a third of a page's decode time.
    Re-enabled afterwards only if it was enabled before (nesting, threads).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _kind(path: Sequence[str], schema: Mapping[str, Any]) -> str:
    if path[-1] == "key":
        return "key"
    if schema.get("x-intacct-type") in ("number", "decimal"):
        return "number"
    found = schema_tools.types(schema)
    if "number" in found or "integer" in found:
        return "number"
    if "boolean" in found:
        return "bool"
    if "array" in found:
        return "array"
    if schema.get("format") == "date-time":
        return "datetime"
    if "string" in found:
        return "text"
    return "other"


def _to_number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return decimal.Decimal(str(value))
    try:
        return decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return str(value)


def parse_key(value: Any) -> int | None:
    """A record key as its number, or None when ``value`` is not a key's exact spelling.

    Keys are decimal record numbers sent as strings; ``"1 "``, ``"+1"`` or ``"1_0"`` are not
    key 1 (Python's ``int()`` would accept them), so they match no record.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and _KEY_TEXT.fullmatch(value):
        return int(value)
    return None


def _to_key(value: Any) -> Any:
    if value is None:
        return None
    number = parse_key(value)
    return number if number is not None else str(value)


def _key_text(value: Any) -> Any:
    return None if value is None else str(value)


def normaliser(kind: str, case_sensitive: bool) -> Callable[[Any], Any]:
    """How values of a field are made comparable (both record values and filter targets)."""
    if kind == "key":
        return _to_key
    if kind == "key_text":
        return _key_text
    if kind == "number":
        return _to_number
    if kind == "datetime":
        return lambda v: canonical(v) if isinstance(v, str) else v
    if not case_sensitive:
        return lambda v: v.lower() if isinstance(v, str) else v
    return lambda v: v


def sort_value(kind: str, value: Any) -> tuple[int, Any]:
    """Total order for ``orderBy``: nulls first, numbers numerically, text as text."""
    if value is None:
        return (0, 0)
    if kind == "key_text":
        return (2, str(value))
    if kind in ("key", "number"):
        converted = _to_key(value) if kind == "key" else _to_number(value)
        if isinstance(converted, int | decimal.Decimal):
            return (1, converted)
        return (2, str(converted))
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value))


def query_error(status: int, message: str, error_id: str, **placeholders: str) -> EmulatorError:
    """An ``invalidRequest`` error about the query body."""
    return envelopes.fail(
        status,
        "invalidRequest",
        message,
        error_id,
        message_id="IA.INVALID_QUERY",
        placeholders=placeholders,
    )


def invalid_field(target: str, message: str) -> EmulatorError:
    """REST-1064 with a REST-1043 detail naming the offending member (the spec's example)."""
    return envelopes.payload_errors(
        [
            envelopes.detail(
                "invalidRequest",
                message,
                "REST-1043",
                target,
                message_id="IA.NOT_A_VALID_FIELD",
                placeholders={"FIELD": target.lstrip("/")},
            )
        ]
    )


class QueryEngine:
    """Validates and runs query bodies against a :class:`Store`, reading the registry."""

    def __init__(self, registry: SpecRegistry) -> None:
        self.registry = registry
        self.options: Callable[[], QueryOptions] = QueryOptions
        """Read per query (the emulator wires it to the fault switches)."""
        self._names = tuple(sorted(registry.objects))
        self._fields: dict[tuple[str, str], FieldRef | str] = {}
        self._schemas: dict[str, Mapping[str, Any]] = {}

    # -- validation -----------------------------------------------------------------------

    def object_info_for(self, name: Any) -> Any:
        """The ``ObjectInfo`` of a query's ``object`` (``app/obj::TYPE`` forms accepted)."""
        if not isinstance(name, str) or not name:
            raise invalid_field("/object", "/object is a required field")
        base = name.split("::", 1)[0] if "::" not in name.split("/", 1)[0] else name
        info = self.registry.objects.get(base)
        if info is None:
            raise query_error(
                400,
                f"The object {name} is not a valid object in version 1",
                "REST-1105",
                OBJECT=name,
            )
        return info

    def resolve(self, object_name: str, field: str, refused: set[str]) -> FieldRef:
        """Resolve a field path, raising REST-1106 / unknown-field errors like Intacct."""
        cache_key = (object_name, field)
        cached = self._fields.get(cache_key)
        if cached is None:
            cached = self._resolve(object_name, field)
            self._fields[cache_key] = cached
        if field in refused:
            raise refused_field(field, object_name, self.options().refused_field_form)
        if isinstance(cached, str):
            if cached == "refused":
                raise refused_field(field, object_name, self.options().refused_field_form)
            raise query_error(
                400,
                f"The {field} field in {object_name} object is not a valid field in version 1",
                "REST-1104",
                FIELD=field,
                OBJECT=object_name,
            )
        return cached

    def _resolve(self, object_name: str, field: str) -> FieldRef | str:
        info = self.registry.objects[object_name]
        schema = self._schemas.get(object_name)
        if schema is None:  # record_schema() deep-copies on every call: once per object
            schema = self._schemas[object_name] = info.record_schema()
        parts = tuple(field.split("."))
        if not field or any(not p for p in parts):
            return "unknown"
        node: Mapping[str, Any] = schema
        for index, part in enumerate(parts):
            props = schema_tools.properties(node)
            if part not in props:
                if index > 0 and schema_tools.is_ref(node):
                    target = schema_tools.ref_target(
                        self._names, info.application, parts[index - 1], node
                    )
                    if target is not None and target in self.registry.objects:
                        inner = self._resolve(target, ".".join(parts[index:]))
                        if isinstance(inner, str):
                            return inner
                        return FieldRef(
                            field, parts[:index], (target, inner.path), inner.kind, None
                        )
                return "unknown"
            node = props[part]
        if node.get("writeOnly") or schema_tools.is_list(node) or schema_tools.is_object(node):
            return "refused"
        kind = _kind(parts, node)
        column = None
        if parts == ("key",):
            column = "key"
        elif parts == ("id",):
            column = "id"
        elif parts == ("audit", "modifiedDateTime") and info.has_modified_timestamp:
            column = "modified"
        return FieldRef(field, parts, None, kind, column)

    # -- execution ------------------------------------------------------------------------

    def run(
        self,
        body: Any,
        *,
        store: Store,
        entity: str | None,
        refused_fields: Mapping[str, set[str]],
        fetch: Fetch,
    ) -> dict[str, Any]:
        """Answer one query body (the full response body, ``ia::result`` + ``ia::meta``)."""
        return decode(
            self.run_json(
                body, store=store, entity=entity, refused_fields=refused_fields, fetch=fetch
            )
        )

    def run_json(
        self,
        body: Any,
        *,
        store: Store,
        entity: str | None,
        refused_fields: Mapping[str, set[str]],
        fetch: Fetch,
    ) -> bytes:
        """:meth:`run`, answered as the encoded JSON response body (what the route sends)."""
        if not isinstance(body, Mapping):
            raise envelopes.fail(
                400,
                "invalidRequest",
                "A POST request requires a payload",
                "REST-1028",
                message_id="IA.REQUEST_REQUIRES_A_PAYLOAD",
                placeholders={"OPERATION": "POST"},
            )
        for member in body:
            if member not in QUERY_KEYS:
                raise invalid_field(f"/{member}", f"/{member} is not a valid field")
        info = self.object_info_for(body.get("object"))
        name = info.name
        refused = refused_fields.get(name, set())
        fields = body.get("fields")
        if not isinstance(fields, list) or not fields:
            raise invalid_field("/fields", "/fields is a required field")
        if any(not isinstance(f, str) for f in fields) or "*" in fields:
            raise query_error(
                400, "The fields list must name fields; '*' is not supported", "REST-1107"
            )
        selected = [self.resolve(name, f, refused) for f in fields]

        params = body.get("filterParameters") or {}
        if not isinstance(params, Mapping):
            raise invalid_field("/filterParameters", "/filterParameters must be an object")
        for member in params:
            if member not in FILTER_PARAMETERS:
                raise invalid_field(
                    f"/filterParameters/{member}",
                    f"/filterParameters/{member} is not a valid field",
                )
        case_sensitive = params.get("caseSensitiveComparison", True) is not False
        include_private = params.get("includePrivate", False) is True

        conditions = self._filters(name, body.get("filters"), refused, case_sensitive)
        expression_text = body.get("filterExpression")
        if expression_text is not None and not isinstance(expression_text, str):
            raise invalid_field("/filterExpression", "/filterExpression must be a string")
        try:
            expression = (
                filters.parse_expression(expression_text, len(conditions))
                if expression_text
                else None
            )
        except filters.ExpressionError as exc:
            raise query_error(400, str(exc), "REST-1109") from exc
        order = self._order(name, body.get("orderBy"), refused)
        start, size = self._paging(body)
        options = self.options()
        key_text = options.key_compare == "string"
        sort_text = options.key_sort == "string"
        if key_text:
            conditions = [
                (_as_key_text(ref), operator, target) for ref, operator, target in conditions
            ]

        where, args = _scope(entity, include_private)
        and_only = filters.uses_only_and(expression_text) and case_sensitive
        sql_forms = (
            [_sql_condition(ref, operator, target) for ref, operator, target in conditions]
            if case_sensitive
            else [None] * len(conditions)
        )
        python_conditions: list[tuple[FieldRef, str, Any]] = []
        python_expression = None
        if and_only:
            for condition, sql in zip(conditions, sql_forms, strict=True):
                if sql is None:
                    python_conditions.append(condition)
                else:
                    where.append(sql[0])
                    args.extend(sql[1])
        elif case_sensitive and expression_text and all(sql is not None for sql in sql_forms):
            # every filter has an SQL form: the whole expression runs in SQLite (the pager's
            # "modified > t OR (modified = t AND key > k)" after a mass update)
            clause, clause_args = filters.expression_sql(
                expression_text, [sql for sql in sql_forms if sql is not None]
            )
            where.append(clause)
            args.extend(clause_args)
        else:
            python_conditions = conditions
            python_expression = expression

        sql_order = all(ref.column for ref, _ in order)
        # "+key": an equality or IN on ``id`` (the target's upsert look-up) must be served by
        # the id index, not by walking the key index to avoid a sort of a handful of rows; the
        # unary plus applies to an explicit ``orderBy`` on key as well as to the tiebreak.
        by_id = and_only and _selects_by_id(conditions, sql_forms)
        tail = _KEY_SQL_TEXT if sort_text else "+key" if by_id else "key"
        order_sql = ", ".join(
            f"{tail if ref.column == 'key' else ref.column} {direction}" for ref, direction in order
        )
        order_sql = f"{order_sql}, {tail}" if order_sql else tail

        if not python_conditions and sql_order and all(ref.join is None for ref in selected):
            total = store.count(name, where, args)
            flats = store.flat_page(
                name, where, args, order=order_sql, limit=size, offset=start - 1
            )
            rows = _flat_rows(tuple(dict.fromkeys(ref.name for ref in selected)), flats)
            return _ENCODER.encode(envelopes.page(rows, total=total, start=start, size=size))
        if not python_conditions and sql_order:
            total = store.count(name, where, args)
            records = decode_many(
                store.page(name, where, args, order=order_sql, limit=size, offset=start - 1)
            )
        else:
            rows = store.select(name, where, args, order=order_sql if sql_order else tail)
            records = decode_many([r[2] for r in rows])
            if python_conditions:
                records = self._filter_python(
                    records, python_conditions, python_expression, case_sensitive, fetch
                )
            if not sql_order:
                for ref, direction in reversed(order):
                    sort_ref = _as_key_text(ref) if sort_text else ref
                    records.sort(key=_sort_key(sort_ref, fetch), reverse=direction == "desc")
            total = len(records)
            records = records[start - 1 : start - 1 + size]
        result_rows = _project_all(selected, records, fetch)
        return _ENCODER.encode(envelopes.page(result_rows, total=total, start=start, size=size))

    def _filters(
        self, name: str, raw: Any, refused: set[str], case_sensitive: bool
    ) -> list[tuple[FieldRef, str, Any]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise invalid_field("/filters", "/filters must be an array")
        out: list[tuple[FieldRef, str, Any]] = []
        for number, item in enumerate(raw, start=1):
            if not isinstance(item, Mapping) or len(item) != 1:
                raise query_error(
                    400, f"Filter {number} must have exactly one operator", "REST-1109"
                )
            operator, operand = next(iter(item.items()))
            if operator not in filters.OPERATORS:
                raise query_error(
                    400,
                    f"{operator} is not a valid filter operator",
                    "REST-1109",
                    OPERATOR=operator,
                )
            if not isinstance(operand, Mapping) or len(operand) != 1:
                raise query_error(400, f"Filter {number} must name exactly one field", "REST-1109")
            field, target = next(iter(operand.items()))
            ref = self.resolve(name, field, refused)
            if field == "href" or ref.path[-1:] == ("href",):
                raise refused_field(field, name)
            _check_operand(operator, target, number)
            out.append((ref, operator, target))
        return out

    def _order(self, name: str, raw: Any, refused: set[str]) -> list[tuple[FieldRef, str]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise invalid_field("/orderBy", "/orderBy must be an array")
        out: list[tuple[FieldRef, str]] = []
        for item in raw:
            if not isinstance(item, Mapping) or len(item) != 1:
                raise query_error(400, "Each orderBy entry names one field", "REST-1109")
            field, direction = next(iter(item.items()))
            if direction not in ("asc", "desc"):
                raise query_error(
                    400, f"Sort order for {field} must be asc or desc", "REST-1109", FIELD=field
                )
            ref = self.resolve(name, field, refused)
            if field == "href":
                raise refused_field(field, name)
            out.append((ref, direction))
        return out

    @staticmethod
    def _paging(body: Mapping[str, Any]) -> tuple[int, int]:
        start = body.get("start", 1)
        size = body.get("size", DEFAULT_PAGE_SIZE)
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise query_error(400, "start must be a positive integer", "REST-1108")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise query_error(400, "size must be a positive integer", "REST-1108")
        if size > MAX_PAGE_SIZE:
            raise query_error(
                400,
                f"The size {size} exceeds the maximum page size of {MAX_PAGE_SIZE}",
                "REST-1108",
                SIZE=str(size),
                MAX=str(MAX_PAGE_SIZE),
            )
        return start, size

    def _filter_python(
        self,
        records: list[dict[str, Any]],
        conditions: list[tuple[FieldRef, str, Any]],
        expression: Callable[[Sequence[bool]], bool] | None,
        case_sensitive: bool,
        fetch: Fetch,
    ) -> list[dict[str, Any]]:
        tests: list[tuple[Callable[[dict[str, Any]], Any], Callable[[Any], Any], Any]] = []
        for ref, operator, target in conditions:
            norm = normaliser(ref.kind, case_sensitive)
            tests.append((_getter(ref, fetch), norm, filters.predicate(operator, target, norm)))
        if expression is None:
            return [r for r in records if all(test(norm(get(r))) for get, norm, test in tests)]
        return [r for r in records if expression([test(norm(get(r))) for get, norm, test in tests])]


def refused_field(field: str, object_name: str, form: str = "placeholder") -> EmulatorError:
    """Intacct's REST-1106 for a field that exists but cannot be queried.

    ``form``: ``placeholder`` (recorded: ``placeholders.FIELD`` on the error),
    ``details_field_path`` (keboola's extractor: a REST-1064 envelope whose ``details[]`` entry
    carries REST-1106 and ``placeholders.FIELD_PATH``), or ``opaque`` (a deliberate deviation:
    no id and no field name, which ``intacct doctor`` must report as unrecognisable).
    """
    message = f"The {field} field in {object_name} object cannot be used in query in version 1"
    if form == "details_field_path":
        return envelopes.payload_errors(
            [
                envelopes.detail(
                    "invalidRequest",
                    message,
                    "REST-1106",
                    f"/{field}",
                    message_id="IA.FIELD_CANNOT_BE_USED_IN_QUERY",
                    placeholders={"FIELD_PATH": field, "OBJECT": object_name},
                )
            ]
        )
    if form == "opaque":
        return query_error(400, "The query cannot be processed", "REST-1100")
    return query_error(400, message, "REST-1106", FIELD=field)


def _as_key_text(ref: FieldRef) -> FieldRef:
    """The same field compared as text (the ``string`` key order), through SQL or Python."""
    if ref.kind != "key":
        return ref
    column = _KEY_SQL_TEXT if ref.column == "key" else None
    return FieldRef(ref.name, ref.path, ref.join, "key_text", column)


def _check_operand(operator: str, target: Any, number: int) -> None:
    if operator in filters.LIST_OPERATORS and not isinstance(target, list):
        raise query_error(400, f"{operator} in filter {number} needs an array", "REST-1109")
    if operator in filters.RANGE_OPERATORS and (not isinstance(target, list) or len(target) != 2):
        raise query_error(
            400, f"{operator} in filter {number} needs an array of two values", "REST-1109"
        )
    if target is None and operator not in filters.NULLABLE_OPERATORS:
        raise query_error(400, f"{operator} in filter {number} does not accept null", "REST-1109")


def _scope(entity: str | None, include_private: bool) -> tuple[list[str], list[Any]]:
    """Entity visibility: an entity sees shared + its own; top level sees shared (or all)."""
    if entity is not None:
        return ["entity IS NULL OR entity = ?"], [entity]
    if include_private:
        return [], []
    return ["entity IS NULL"], []


_SQL_OPS = {"$eq": "=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}


def _sql_value(ref: FieldRef, value: Any) -> Any:
    if ref.column == "key":
        converted = parse_key(value)
        if converted is None:
            raise ValueError(value)
        return converted
    if ref.column == _KEY_SQL_TEXT:
        return str(value)
    if ref.column == "modified":
        if not isinstance(value, str):
            raise ValueError(value)
        return canonical(value)
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def _sql_condition(ref: FieldRef, operator: str, target: Any) -> tuple[str, list[Any]] | None:
    """The SQL form of one condition on an indexed column, or None (evaluate in Python)."""
    column = ref.column
    if column is None:
        return None
    try:
        if operator in ("$eq", "$ne") and target is None:
            return (f"{column} IS NULL" if operator == "$eq" else f"{column} IS NOT NULL"), []
        if operator in _SQL_OPS:
            return f"{column} {_SQL_OPS[operator]} ?", [_sql_value(ref, target)]
        if operator == "$ne":
            return f"{column} IS NOT ?", [_sql_value(ref, target)]
        if operator in filters.LIST_OPERATORS:
            values = [_sql_value(ref, v) for v in target if v is not None]
            marks = ", ".join("?" for _ in values) or "NULL"
            if operator == "$in":
                return f"{column} IN ({marks})", values
            return f"{column} IS NULL OR {column} NOT IN ({marks})", values
        if operator in filters.RANGE_OPERATORS:
            low, high = (_sql_value(ref, v) for v in target)
            if operator == "$between":
                return f"{column} BETWEEN ? AND ?", [low, high]
            return f"{column} IS NOT NULL AND NOT ({column} BETWEEN ? AND ?)", [low, high]
    except ValueError:
        return None
    return None


def _selects_by_id(
    conditions: Sequence[tuple[FieldRef, str, Any]],
    sql_forms: Sequence[tuple[str, list[Any]] | None],
) -> bool:
    """True when an SQL condition pins ``id`` to one value or a list of values."""
    return any(
        sql is not None and ref.column == "id" and operator in ("$eq", "$in") and target is not None
        for (ref, operator, target), sql in zip(conditions, sql_forms, strict=True)
    )


def _sort_key(ref: FieldRef, fetch: Fetch) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    """``orderBy`` key of one field (Python's sort is stable, so later keys break ties)."""
    getter = _getter(ref, fetch)
    kind = ref.kind
    return lambda record: sort_value(kind, getter(record))


_ENCODER = msgspec.json.Encoder()
_ROW_DECODERS: dict[tuple[str, ...], msgspec.json.Decoder[Any]] = {}


def _flat_rows(names: tuple[str, ...], flats: list[bytes]) -> list[Any]:
    """Result rows of a page from the stored flat forms, as structs that encode to the rows.

    One struct type per distinct field list (cached): field ``f<i>`` encodes as the i-th
    requested name, defaults to ``null``; unknown members of the flat form (fields not
    requested) are skipped by the decoder. Values are decoded as plain JSON values.
    """
    decoder = _ROW_DECODERS.get(names)
    if decoder is None:
        row_type = msgspec.defstruct(
            "QueryRow",
            [(f"f{index}", Any, None) for index in range(len(names))],
            rename={f"f{index}": name for index, name in enumerate(names)},
            gc=False,
        )
        decoder = msgspec.json.Decoder(list[row_type])  # type: ignore[valid-type]
        if len(_ROW_DECODERS) >= 128:
            _ROW_DECODERS.clear()
        _ROW_DECODERS[names] = decoder
    if not flats:
        return []
    rows: list[Any] = decoder.decode(b"[" + b",".join(flats) + b"]")
    return rows


def flat_form(record: dict[str, Any], leaves: frozenset[str]) -> dict[str, Any]:
    """A stored record's leaves keyed by dotted path: what a query row holds for it.

    Mirrors :func:`_project_all` exactly: nested objects are walked, except at a path the
    schema declares a leaf (a free-form value), which is kept whole; members whose name holds
    a dot can never be requested and are left out.
    """
    out: dict[str, Any] = {}
    _flatten(record, "", leaves, out)
    return out


def _flatten(
    node: dict[str, Any], prefix: str, leaves: frozenset[str], out: dict[str, Any]
) -> None:
    for member, value in node.items():
        if "." in member:
            continue
        path = prefix + member
        if value.__class__ is dict and path not in leaves:
            _flatten(value, path + ".", leaves, out)
        else:
            out[path] = value


def schema_leaves(schema: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of a record schema that are not groups (objects with known members)."""
    found: set[str] = set()
    for member, sub in schema_tools.properties(schema).items():
        if schema_tools.is_object(sub):
            found |= schema_leaves(sub, f"{prefix}{member}.")
        else:
            found.add(prefix + member)
    return found


def _project_all(
    selected: Sequence[FieldRef], records: list[dict[str, Any]], fetch: Fetch
) -> list[dict[str, Any]]:
    """Flat result rows (literal dotted keys, in request order) of a page of stored records.

    The hot loop of a 4,000-row page. Stored bodies are sparse (a customer stores ~35 of its
    151 leaves), so instead of looking up every requested path in every record, each row
    starts as a copy of an all-null template in request order and only the members the record
    actually holds are walked, through a tree of the requested paths (``plan``). Related
    (joined) fields and any path the tree cannot hold use their generic getters.
    """
    template: dict[str, Any] = {}
    plan: dict[str, Any] = {}
    others: list[tuple[str, Callable[[dict[str, Any]], Any]]] = []
    for ref in selected:
        if ref.name in template:
            continue  # a field named twice: one key, as in a dict literal
        template[ref.name] = None
        if ref.join is None and _plan_add(plan, ref.path, ref.name):
            continue
        others.append((ref.name, _getter(ref, fetch)))
    copy = template.copy
    get_step = plan.get
    rows: list[dict[str, Any]] = []
    append = rows.append
    for record in records:
        out = copy()
        for member, value in record.items():
            step = get_step(member)
            if step is None:
                continue
            if step.__class__ is str:
                out[step] = value
            elif value.__class__ is dict:
                _walk(value, step, out)
        for name, getter in others:
            out[name] = getter(record)
        append(out)
    return rows


def _plan_add(plan: dict[str, Any], path: Sequence[str], name: str) -> bool:
    """Add one leaf path to the tree; False when it clashes with a path already there."""
    node = plan
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif child.__class__ is not dict:
            return False
        node = child
    if path[-1] in node:
        return False
    node[path[-1]] = name
    return True


def _walk(group: dict[str, Any], plan: dict[str, Any], out: dict[str, Any]) -> None:
    for member, value in group.items():
        step = plan.get(member)
        if step is None:
            continue
        if step.__class__ is str:
            out[step] = value
        elif value.__class__ is dict:
            _walk(value, step, out)


def _getter(ref: FieldRef, fetch: Fetch) -> Callable[[dict[str, Any]], Any]:
    """A fast accessor for one field of a stored (sparse) record."""
    path = ref.path
    if ref.join is not None:
        target, inner_path = ref.join
        local = _path_getter((*path, "key"))
        inner = _path_getter(inner_path)

        def joined(record: dict[str, Any]) -> Any:
            key = local(record)
            if key is None:
                return None
            related = fetch(target, str(key))
            return inner(related) if related is not None else None

        return joined
    return _path_getter(path)


def _path_getter(path: Sequence[str]) -> Callable[[dict[str, Any]], Any]:
    if len(path) == 1:
        name = path[0]
        return lambda record: record.get(name)
    if len(path) == 2:
        first, second = path

        def two(record: dict[str, Any]) -> Any:
            node = record.get(first)
            return node.get(second) if isinstance(node, dict) else None

        return two

    def deep(record: dict[str, Any]) -> Any:
        node: Any = record
        for part in path:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    return deep
