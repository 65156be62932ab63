"""Record shape helpers shared by the tap, the target and the CLI.

Intacct hands out the same record in two shapes: the query service returns *flat* rows keyed
by the requested field paths (``{"audit.modifiedDateTime": "...", "vendor.id": "V1"}``, plus
stray keys such as ``API_QUERY_ALIAS__25`` in real traffic), while GET-by-key and every write
use *nested* objects (``{"audit": {"modifiedDateTime": "..."}, "vendor": {"id": "V1"}}``).
The tap emits the nested shape whatever endpoint a record came from, so that a target's
flattening setting (not our choice of endpoint) decides the column layout.

The conversion runs once per record on the tap's hot path, so it is *compiled*: a
:class:`RowPlan` is built once per stream from the list of requested field paths: it generates
one Python function returning a single nested dict literal, so a row costs one ``row.get`` per
field and no string splitting, recursion or loop. Only the planned keys are read, which is
also what drops unknown keys (nothing is copied blindly).

The reverse direction, :func:`field_paths`, lists the dotted paths to request from a record
JSON Schema, honouring a selection predicate (the SDK's selection mask) and skipping what the
query service cannot return (arrays/owned lists, write-only fields, free-form objects).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import msgspec

from intacct_api.decimals import decimal_text, is_decimal_property
from intacct_api.scalars import CONVERTERS
from intacct_api.schema import admitted_types

__all__ = [
    "Breadcrumb",
    "QueryRow",
    "RowPlan",
    "SchemaPruner",
    "dotted",
    "field_paths",
    "flatten",
    "nest",
    "queryable_schema",
    "row_struct",
]

Breadcrumb = tuple[str, ...]
"""A Singer metadata breadcrumb: ``("properties", "audit", "properties", "modifiedDateTime")``."""

Selector = Callable[[Breadcrumb], bool]

_Converter = Callable[[Mapping[str, Any]], dict[str, Any]]


def _is_array(schema: Mapping[str, Any]) -> bool:
    return "array" in admitted_types(schema) or "items" in schema


def field_paths(
    schema: Mapping[str, Any],
    *,
    selected: Selector | None = None,
    exclude: Collection[str] = (),
    _prefix: str = "",
    _breadcrumb: Breadcrumb = (),
) -> list[str]:
    """Dotted query field paths for the (selected) leaves of a record schema.

    The query service returns scalar leaves only: a nested object is requested through its
    members (``audit.modifiedDateTime``), an owned list (``lines``) or any array cannot be
    requested at all, and neither can write-only fields or objects without declared
    properties. ``exclude`` names top-level properties that are not Intacct fields (columns
    the tap adds itself). ``selected`` receives the SDK breadcrumb of each property; a
    deselected object prunes its whole subtree.
    """
    paths: list[str] = []
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return paths
    for name, sub in properties.items():
        if not _prefix and name in exclude:
            continue
        if not isinstance(sub, Mapping) or sub.get("writeOnly") or _is_array(sub):
            continue
        breadcrumb = (*_breadcrumb, "properties", name)
        if selected is not None and not selected(breadcrumb):
            continue
        path = f"{_prefix}{name}"
        if isinstance(sub.get("properties"), Mapping):
            paths.extend(
                field_paths(sub, selected=selected, _prefix=f"{path}.", _breadcrumb=breadcrumb)
            )
        elif "object" in admitted_types(sub) or ("$comment" in sub and not admitted_types(sub)):
            # free-form object or a cut recursive reference: nothing addressable inside
            continue
        else:
            paths.append(path)
    return paths


def queryable_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a record schema the query service can return (same rules as
    :func:`field_paths`): arrays, write-only fields and free-form objects removed, objects
    left without members removed. The tap advertises this, so that a target never creates
    columns (owned ``lines`` lists...) that no record will ever fill.
    """
    out = dict(schema)
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return out
    kept: dict[str, Any] = {}
    for name, sub in properties.items():
        if not isinstance(sub, Mapping) or not field_paths({"properties": {name: sub}}):
            continue
        kept[name] = queryable_schema(sub) if isinstance(sub.get("properties"), Mapping) else sub
    out["properties"] = kept
    return out


class RowPlan:
    """A precompiled conversion of flat query rows into nested records.

    ``fields`` are the dotted paths to place in the record (normally what was requested).
    ``aliases`` adds top-level copies of row values (``{"_modified_at":
    "audit.modifiedDateTime"}``) so that a nested value can also serve as the SDK's top-level
    replication key; an alias source need not be among ``fields``. ``constants`` adds fixed
    top-level values (the entity a partition was read from). ``kinds`` maps fields to their
    declared kind (:func:`~intacct_api.scalars.field_kinds`): a value of another JSON type is
    converted (a JSON number in an ``x-singer.decimal`` field becomes exact decimal text, ``1``
    in a string field ``"1"``...), so records never contradict the advertised schema;
    ``decimals`` is shorthand for fields of kind ``decimal``. Keys of the row
    that the plan does not name are ignored, which is how ``API_QUERY_ALIAS__*`` and other
    strays vanish; a planned key missing from the row becomes ``None``.

    The plan is generated once as Python source for one function returning a single nested
    dict literal (``g = row.get; return {"key": g("key"), "audit": {"modifiedDateTime":
    g("audit.modifiedDateTime")}}``), about twice as fast per row as walking a plan tree.
    Field names and aliases enter that source only as string literals made by :func:`repr`,
    and constants only as names bound in the function's namespace, so no input text is ever
    code. Key order in a record: top-level leaves, aliases, objects, constants (each object:
    its leaves, then its sub-objects); a later entry with the same name replaces the value
    in place, as a dict assignment would.
    """

    __slots__ = ("_constants", "_convert", "aliases", "fields", "kinds")

    def __init__(
        self,
        fields: Iterable[str],
        *,
        aliases: Mapping[str, str] | None = None,
        constants: Mapping[str, Any] | None = None,
        decimals: Iterable[str] = (),
        kinds: Mapping[str, str] | None = None,
    ) -> None:
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(fields))
        self.aliases: dict[str, str] = dict(aliases or {})
        self._constants: dict[str, Any] = dict(constants or {})
        planned = frozenset(self.fields)
        merged = {**dict(kinds or {}), **dict.fromkeys(decimals, "decimal")}
        self.kinds: dict[str, str] = {
            path: kind for path, kind in merged.items() if path in planned and kind in CONVERTERS
        }
        factory = _compiled(
            self.fields,
            tuple(self.aliases.items()),
            tuple(self._constants),
            tuple(sorted(self.kinds.items())),
        )
        self._convert: _Converter = factory(*self._constants.values())

    def __call__(self, row: Mapping[str, Any] | QueryRow) -> dict[str, Any]:
        """Build the nested record of one row (a flat dict or a :func:`row_struct` row)."""
        return self._convert(row)  # type: ignore[arg-type]

    @property
    def convert(self) -> _Converter:
        """The generated ``row -> record`` function itself (saves a call on hot loops)."""
        return self._convert

    def requested_fields(self) -> list[str]:
        """What to ask the query service for: the planned fields plus alias sources."""
        return list(dict.fromkeys([*self.fields, *self.aliases.values()]))

    def with_constants(self, constants: Mapping[str, Any]) -> RowPlan:
        """The same plan with other constant columns (one plan per entity partition)."""
        return RowPlan(self.fields, aliases=self.aliases, constants=constants, kinds=self.kinds)


def _tree(paths: Iterable[str]) -> dict[str, Any]:
    """Paths as a nested dict; a leaf is ``None``. A group wins over a leaf of the same name."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node.setdefault(parts[-1], None)
    return tree


def _literal_items(node: Mapping[str, Any], prefix: str, value: Callable[[str], str]) -> list[str]:
    """``'name': <value(path)>`` items of one object: its leaves first, then its sub-objects."""
    leaves = [f"{name!r}: {value(prefix + name)}" for name, child in node.items() if child is None]
    groups = [
        f"{name!r}: {{{', '.join(_literal_items(child, f'{prefix}{name}.', value))}}}"
        for name, child in node.items()
        if child is not None
    ]
    return leaves + groups


def _record_literal(
    tree: Mapping[str, Any],
    aliases: tuple[tuple[str, str], ...],
    constants: tuple[str, ...],
    value: Callable[[str], str],
) -> str:
    """The record's dict display: top-level leaves, aliases, objects, constants."""
    items = _literal_items(tree, "", value)
    n_leaves = sum(1 for child in tree.values() if child is None)
    items[n_leaves:n_leaves] = [f"{name!r}: {value(src)}" for name, src in aliases]
    items += [f"{name!r}: _c{i}" for i, name in enumerate(constants)]
    return "{" + ", ".join(items) + "}"


@lru_cache(maxsize=256)
def _compiled(
    fields: tuple[str, ...],
    aliases: tuple[tuple[str, str], ...],
    constants: tuple[str, ...],
    kinds: tuple[tuple[str, str], ...] = (),
) -> Callable[..., _Converter]:
    """Generate (once per field list, aliases and constant names) a converter factory.

    The factory takes the constants' values and returns the converter, which returns one
    dict literal. For a plain ``dict`` row holding every planned key (what the query service
    returns: it answers every requested field, null or not) the values come out of one
    ``operator.itemgetter`` call unpacked into locals; any other row (a key missing, another
    mapping type) takes the ``row.get`` form, where a missing key is ``None``. Cached because
    plans are rebuilt per partition and :func:`nest` builds one per distinct key set.

    A field with a kind is converted (:data:`~intacct_api.scalars.CONVERTERS`, bound as
    ``_k_<kind>``): on the fast path only when its value is neither None nor already of the
    kind's class (``_S``/``_I``/``_B``: str, int, bool), on the ``row.get`` path always.

    The generated source holds nothing but :func:`repr`-made string literals, the names
    ``row``, ``g``, ``_k_*``, ``_S``, ``_I``, ``_B``, ``_v<i>``, ``_c<i>`` and ``_ig``, and
    punctuation.
    """
    tree = _tree(fields)
    sources: dict[str, int] = {}
    kind_of = dict(kinds)

    def local(path: str) -> str:
        name = f"_v{sources.setdefault(path, len(sources))}"
        kind = kind_of.get(path)
        if kind is None:
            return name
        ready = _FAST_CHECKS[kind](name)
        return f"({name} if {name} is None or {ready} else _k_{_ident(kind)}({name}))"

    def lookup(path: str) -> str:
        kind = kind_of.get(path)
        return f"_k_{_ident(kind)}(g({path!r}))" if kind else f"g({path!r})"

    fast = _record_literal(tree, aliases, constants, local)
    slow = _record_literal(tree, aliases, constants, lookup)
    params = ", ".join(f"_c{i}" for i in range(len(constants)))
    if len(sources) >= 2:  # itemgetter returns a tuple only for two keys or more
        unpack = ", ".join(f"_v{i}" for i in range(len(sources)))
        body = (
            "        if type(row) is dict:\n"
            "            try:\n"
            f"                {unpack}, = _ig(row)\n"
            "            except KeyError:\n"
            "                pass\n"
            "            else:\n"
            f"                return {fast}\n"
        )
    else:
        body = ""
    source = (
        f"def factory({params}):\n"
        "    by_type = {}\n"
        "    def convert(row):\n"
        "        typed = by_type.get(row.__class__)\n"
        "        if typed is not None:\n"
        "            return typed(row)\n"
        f"{body}"
        "        if isinstance(row, _QR):\n"
        f"            typed = by_type[row.__class__] = _typed(row.__class__)({params})\n"
        "            return typed(row)\n"
        "        g = row.get\n"
        f"        return {slow}\n"
        "    return convert\n"
    )
    namespace: dict[str, Any] = {
        "_ig": itemgetter(*sources) if sources else None,
        "_QR": QueryRow,
        "_typed": lambda row_type: _typed_factory(row_type, tree, aliases, constants, kinds),
        **_KIND_NAMES,
    }
    return _generated_factory(
        source, namespace, "RowPlan", lambda: _walker(tree, aliases, constants, kind_of)
    )


def _generated_factory(
    source: str,
    namespace: dict[str, Any],
    label: str,
    too_deep: Callable[[], Callable[..., _Converter]],
) -> Callable[..., _Converter]:
    """The ``factory`` that generated ``source`` defines; ``too_deep()`` (the interpreted
    conversion) when paths nest beyond what the compiler accepts."""
    try:
        code = compile(source, f"<intacct_api.records.{label}>", "exec")
    except (SyntaxError, RecursionError, MemoryError):  # absurdly deep paths: walk instead
        return too_deep()
    exec(code, namespace)  # noqa: S102
    factory: Callable[..., _Converter] = namespace["factory"]
    return factory


_KIND_NAMES: dict[str, Any] = {
    "_S": str,
    "_I": int,
    "_B": bool,
    **{f"_k_{kind.replace('-', '_')}": convert for kind, convert in CONVERTERS.items()},
}
"""What generated converters may name besides their own locals and constants."""


class QueryRow(msgspec.Struct, gc=False):
    """Base of the row types :func:`row_struct` generates: a query row without a dict.

    Decoding a page straight into a generated ``Struct`` (one slot per requested field)
    costs under half of decoding it into dicts, holds less memory, and ``gc=False`` rows are
    never scanned by the garbage collector. The few places that read a row by field path (the
    pager's cursor, ownership and deletion checks) use :meth:`get` and ``row[path]`` as on
    the flat dict; the hot path (:class:`RowPlan`) reads the slots directly.
    """

    def get(self, path: str, default: Any = None) -> Any:
        """The value of field ``path`` (``None`` when the server left it out), as ``dict.get``."""
        attr = getattr(self.__class__, _ATTRS).get(path)
        return default if attr is None else getattr(self, attr)

    def __getitem__(self, path: str) -> Any:
        """The value of field ``path``; ``KeyError`` for a field the row type does not hold."""
        return getattr(self, getattr(self.__class__, _ATTRS)[path])


_ATTRS = "__intacct_row_attrs__"
"""Class attribute of each generated row type: field path -> slot name (kept on the type, so
it goes when the type goes)."""


def row_attrs(row_type: type[QueryRow]) -> dict[str, str]:
    """Field path -> slot name of a :func:`row_struct` type."""
    attrs: dict[str, str] = getattr(row_type, _ATTRS)
    return attrs


@lru_cache(maxsize=256)
def row_struct(fields: tuple[str, ...]) -> type[QueryRow]:
    """The row type for a query over ``fields`` (generated once per field list).

    One slot ``f<i>`` per field, renamed to the dotted wire name, any JSON value, default
    None: a field the server leaves out reads as None (what the dict path gives too), a key
    the row type does not name (``API_QUERY_ALIAS__*``) is skipped by the decoder.
    """
    attrs = {path: f"f{i}" for i, path in enumerate(dict.fromkeys(fields))}
    row_type: type[QueryRow] = msgspec.defstruct(  # type: ignore[assignment]  # bases=(QueryRow,)
        "QueryRowOf",
        [(attr, Any, None) for attr in attrs.values()],
        rename={attr: path for path, attr in attrs.items()},
        bases=(QueryRow,),
        gc=False,
    )
    setattr(row_type, _ATTRS, attrs)
    return row_type


def _typed_factory(
    row_type: type[QueryRow],
    tree: Mapping[str, Any],
    aliases: tuple[tuple[str, str], ...],
    constants: tuple[str, ...],
    kinds: tuple[tuple[str, str], ...],
) -> Callable[..., _Converter]:
    """The converter factory of one plan for rows of ``row_type``: slots read directly.

    The same record literal as the dict path, each value an attribute read (a planned field
    the row type lacks is ``None``); a field with a kind is checked and converted exactly as
    on the dict path, through an assignment expression so the slot is read once.
    """
    attrs = row_attrs(row_type)
    kind_of = dict(kinds)

    def value(path: str) -> str:
        attr = attrs.get(path)
        if attr is None:
            return "None"
        kind = kind_of.get(path)
        if kind is None:
            return f"r.{attr}"
        ready = _FAST_CHECKS[kind]("_v")
        return f"(_v if (_v := r.{attr}) is None or {ready} else _k_{_ident(kind)}(_v))"

    params = ", ".join(f"_c{i}" for i in range(len(constants)))
    source = (
        f"def factory({params}):\n"
        "    def convert(r):\n"
        f"        return {_record_literal(tree, aliases, constants, value)}\n"
        "    return convert\n"
    )
    return _generated_factory(
        source,
        dict(_KIND_NAMES),
        "RowPlan.typed",
        lambda: _walker(tree, aliases, constants, kind_of),
    )


def _ident(kind: str) -> str:
    """A kind as part of a Python name (``date-time`` -> ``date_time``)."""
    return kind.replace("-", "_")


_FAST_CHECKS: dict[str, Callable[[str], str]] = {
    # expression (over a local name) that is true when the value needs no conversion
    "decimal": lambda v: f"({v}.__class__ is _S and {v} != '')",
    "integer": lambda v: f"{v}.__class__ is _I",
    "boolean": lambda v: f"{v}.__class__ is _B",
    "string": lambda v: f"{v}.__class__ is _S",
    "date-time": lambda v: f"({v}.__class__ is _S and {v}[-1:] == 'Z')",
}


def _walker(
    tree: Mapping[str, Any],
    aliases: tuple[tuple[str, str], ...],
    constants: tuple[str, ...],
    kind_of: Mapping[str, str] | None = None,
) -> Callable[..., _Converter]:
    """The same conversion interpreted (for trees too deep for the compiler's nesting limit)."""
    converters = {path: CONVERTERS[kind] for path, kind in (kind_of or {}).items()}

    def leaf(get: Callable[[str], Any], path: str) -> Any:
        convert = converters.get(path)
        return get(path) if convert is None else convert(get(path))

    def build(get: Callable[[str], Any], node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out = {name: leaf(get, prefix + name) for name, child in node.items() if child is None}
        for name, child in node.items():
            if child is not None:
                out[name] = build(get, child, f"{prefix}{name}.")
        return out

    n_leaves = sum(1 for child in tree.values() if child is None)

    def factory(*values: Any) -> _Converter:
        def convert(row: Mapping[str, Any]) -> dict[str, Any]:
            get = row.get
            record = build(get, tree, "")
            if aliases:  # aliases sit between the top-level leaves and the objects
                items = list(record.items())
                record = dict(items[:n_leaves])
                record.update((name, get(src)) for name, src in aliases)
                record.update(items[n_leaves:])
            record.update(zip(constants, values, strict=True))
            return record

        return convert

    return factory


def nest(row: Mapping[str, Any]) -> dict[str, Any]:
    """Nest any flat row by its dotted keys, without a schema (ad-hoc CLI output).

    The converter for a key set is generated once and cached, so calling this per row of a
    query (whose rows share their keys) costs one cache lookup, not a compilation.
    """
    return _nester(tuple(row))(row)


@lru_cache(maxsize=256)
def _nester(keys: tuple[str, ...]) -> _Converter:
    converter: _Converter = _compiled(keys, (), ())()
    return converter


def flatten(record: Mapping[str, Any], *, _prefix: str = "") -> dict[str, Any]:
    """The reverse of :func:`nest`: nested objects become dotted keys; lists stay values."""
    flat: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, _prefix=f"{_prefix}{name}."))
        else:
            flat[f"{_prefix}{name}"] = value
    return flat


class SchemaPruner:
    """Drops keys a record schema does not declare, recursively (compiled once per schema).

    Used for records that arrive already nested (GET-by-key, operation streams), where the
    row plan does not apply. Objects without declared properties are kept whole; arrays of
    objects are pruned item by item. Decimal properties
    (:func:`~intacct_api.decimals.is_decimal_property`) are written as exact decimal text,
    as the row plan writes them.
    """

    __slots__ = ("_allowed", "_children", "_decimals", "_items")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        properties = schema.get("properties")
        self._allowed: frozenset[str] | None = (
            frozenset(properties) if isinstance(properties, Mapping) else None
        )
        self._children: dict[str, SchemaPruner] = {}
        self._decimals: frozenset[str] = frozenset(
            name
            for name, sub in (properties.items() if isinstance(properties, Mapping) else ())
            if isinstance(sub, Mapping) and is_decimal_property(sub)
        )
        items = schema.get("items")
        self._items: SchemaPruner | None = (
            SchemaPruner(items) if isinstance(items, Mapping) and _declares(items) else None
        )
        if isinstance(properties, Mapping):
            for name, sub in properties.items():
                if isinstance(sub, Mapping) and _declares(sub):
                    self._children[name] = SchemaPruner(sub)

    def __call__(self, value: Any) -> Any:
        """The pruned copy of ``value`` (a record, a sub-object or a list)."""
        if isinstance(value, list):
            if self._items is None:
                return value
            return [self._items(item) for item in value]
        if not isinstance(value, Mapping) or self._allowed is None:
            return value
        allowed = self._allowed
        children = self._children
        decimals = self._decimals
        out: dict[str, Any] = {}
        for name, item in value.items():
            if name not in allowed:
                continue
            if name in decimals:
                out[name] = decimal_text(item)
                continue
            child = children.get(name)
            out[name] = child(item) if child is not None and item is not None else item
        return out


def _declares(schema: Mapping[str, Any]) -> bool:
    """True when a subschema constrains keys somewhere (so pruning below it matters)."""
    if isinstance(schema.get("properties"), Mapping):
        return True
    items = schema.get("items")
    return isinstance(items, Mapping) and _declares(items)


def dotted(breadcrumb: Sequence[str]) -> str:
    """``("properties", "audit", "properties", "x")`` -> ``"audit.x"`` (for messages)."""
    return ".".join(breadcrumb[1::2])
