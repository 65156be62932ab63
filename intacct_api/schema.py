"""OpenAPI 3.0 schema objects -> JSON Schema (draft 2020-12), resolved and cached.

Why this exists: singer-sdk, jsonschema/fastjsonschema and our own template picker all want
plain, self-contained JSON Schema, while Sage's files use ``$ref``, ``allOf`` overlays and the
OpenAPI-only ``nullable`` keyword. Every spec file is self-contained, so a resolver works on one
document at a time.

Decisions (documented here because the tap, the target and the emulator all rely on them):

* ``$ref`` is resolved inside the same document; sibling keywords next to a ``$ref`` (Sage puts
  ``description``/``readOnly``/``title`` there) are laid over the resolved schema.
* ``allOf`` is merged: ``properties`` deep-merged, ``required`` united, other keywords: the later
  part wins. That turns ``allOf: [record, {"properties": {"id": {"readOnly": true}}}]`` and the
  ``*RequiredProperties`` overlays into one plain object schema.
* ``oneOf`` becomes ``anyOf`` (the reconstruction of the spec files lost the difference, and
  "exactly one" over overlapping object shapes only causes false validation failures). A union
  that has an empty member (``{}`` accepts anything) collapses to ``{}``.
* ``nullable: true`` -> ``"type": [T, "null"]`` (``None`` is added to an ``enum`` as well).
* ``example`` -> ``examples: [value]``; ``readOnly``/``writeOnly``/``deprecated``/``format``/
  ``enum``/``description``/``default``/``title`` and ``x-*`` keys are kept as annotations.
* Recursive references are cut: a ``$ref`` already being expanded further up becomes
  ``{"$comment": "recursive reference to <name>"}`` (accepts anything); expansion also stops at
  ``max_depth`` nested references.

Record schemas (``record_schema``) additionally describe what Intacct actually *returns*:

* every property is nullable, except the top-level ``key``, which is made non-null even where a
  source says otherwise (Intacct returns ``null`` for unset values, and whole sub-objects with
  all members ``null``; the key is the primary key of every stream);
* ``required`` is dropped (query results carry only the selected fields);
* numbers: Intacct sends amounts as decimal strings (``"68400.00"``) while parts of the spec and
  the model service say ``number``. So ``type: number`` becomes ``["string", "number", "null"]``
  with the marker ``"x-intacct-type": "number"``, and strings with format ``decimal-precision-*``
  or ``percent-precision-*`` become ``["string", "number", "null"]`` with their ``format`` kept and
  ``"x-intacct-type": "decimal"``. The marker tells the target that the value is numeric (send it
  as a decimal string) even though the JSON type admits strings. ``integer`` stays ``integer``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AMOUNT_FORMAT_RE",
    "SchemaResolver",
    "add_null",
    "is_numeric_property",
    "merge_all_of",
    "to_record_schema",
]

JsonSchema = dict[str, Any]

AMOUNT_FORMAT_RE = re.compile(r"^(decimal|percent)-precision-\d+$")
"""Spec formats of decimal values that Intacct transports as strings."""

_ANNOTATIONS = (
    "title",
    "description",
    "format",
    "default",
    "readOnly",
    "writeOnly",
    "deprecated",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "const",
)
_RECURSIVE_COMMENT = "recursive reference to "


class SchemaResolver:
    """Resolves schemas of ONE self-contained OpenAPI document, caching per component name.

    The registry keeps one resolver per spec file, so the cache key is effectively
    (file, schema name). Public methods return deep copies so callers may mutate what they get
    (singer-sdk and the target do) without corrupting the cache.
    """

    def __init__(self, document: Mapping[str, Any], source: str = "", max_depth: int = 16) -> None:
        self.document = document
        self.source = source
        self.max_depth = max_depth
        self._components: dict[str, JsonSchema] = {}
        self._records: dict[str, JsonSchema] = {}

    # -- public API -------------------------------------------------------------------------
    def schema_names(self) -> list[str]:
        """Names under ``components/schemas`` of this document."""
        return list(self._schemas())

    def has_component(self, name: str) -> bool:
        return name in self._schemas()

    def raw_component(self, name: str) -> Mapping[str, Any] | None:
        """The untouched OpenAPI schema (for rules that look at the spec's own shape)."""
        node = self._schemas().get(name)
        return node if isinstance(node, Mapping) else None

    def component(self, name: str) -> JsonSchema:
        """Resolved JSON Schema of ``components/schemas/<name>`` (KeyError when absent)."""
        if name not in self._schemas():
            raise KeyError(f"{self.source or 'spec'}: no component schema {name!r}")
        return copy.deepcopy(self._component(name, (), set()))

    def resolve(self, node: Mapping[str, Any]) -> JsonSchema:
        """Resolve an arbitrary OpenAPI schema node of this document (e.g. a request body)."""
        return copy.deepcopy(self._convert(node, (), set()))

    def record_schema(self, name: str) -> JsonSchema:
        """Resolved component schema with the record treatment (see module docstring)."""
        cached = self._records.get(name)
        if cached is None:
            if name not in self._schemas():
                raise KeyError(f"{self.source or 'spec'}: no component schema {name!r}")
            cached = to_record_schema(self._component(name, (), set()))
            self._records[name] = cached
        return copy.deepcopy(cached)

    def deref(self, node: Any) -> Any:
        """Follow a chain of ``$ref`` (any JSON pointer in this document) without converting."""
        seen: set[str] = set()
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                return {}
            seen.add(ref)
            node = self._pointer(ref)
        return node

    # -- internals --------------------------------------------------------------------------
    def _schemas(self) -> Mapping[str, Any]:
        components = self.document.get("components") or {}
        schemas = components.get("schemas") if isinstance(components, Mapping) else None
        return schemas if isinstance(schemas, Mapping) else {}

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            return {}  # external references do not occur: every file is self-contained
        node: Any = self.document
        for raw in ref[2:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return {}
            node = node[part]
        return node

    def _component(self, name: str, stack: tuple[str, ...], cuts: set[str]) -> JsonSchema:
        cached = self._components.get(name)
        if cached is not None:
            return cached
        inner: set[str] = set()
        result = self._convert(self._schemas()[name], (*stack, name), inner)
        # A result is context-free (cacheable) unless a cut inside it pointed at an ancestor
        # that is still being expanded further up; a self-cut is fine. Depth cuts (the ref was
        # not on the stack) also make the result context-dependent.
        foreign = inner - {name}
        cuts.update(foreign)
        if not foreign:
            self._components[name] = result
        return result

    def _convert(self, node: Any, stack: tuple[str, ...], cuts: set[str]) -> JsonSchema:
        if not isinstance(node, Mapping):
            return {}
        ref = node.get("$ref")
        if isinstance(ref, str):
            base = self._convert_ref(ref, stack, cuts)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if not siblings:
                return base
            overlay = self._convert_plain(siblings, stack, cuts)
            return merge_all_of([base, overlay])
        return self._convert_plain(node, stack, cuts)

    def _convert_ref(self, ref: str, stack: tuple[str, ...], cuts: set[str]) -> JsonSchema:
        prefix = "#/components/schemas/"
        if ref.startswith(prefix):
            name = ref[len(prefix) :].replace("~1", "/").replace("~0", "~")
            if name not in self._schemas():
                return {}
            if name in stack or len(stack) >= self.max_depth:
                cuts.add(name)
                return {"$comment": _RECURSIVE_COMMENT + name}
            return self._component(name, stack, cuts)
        return self._convert(self._pointer(ref), stack, cuts)

    def _convert_plain(
        self, node: Mapping[str, Any], stack: tuple[str, ...], cuts: set[str]
    ) -> JsonSchema:
        out: JsonSchema = {}
        typ = node.get("type")
        if isinstance(typ, str | list):
            out["type"] = typ
        for key in _ANNOTATIONS:
            if key in node:
                out[key] = node[key]
        if "enum" in node and isinstance(node["enum"], list):
            out["enum"] = list(node["enum"])
        if "example" in node:
            out["examples"] = [node["example"]]
        for key, value in node.items():
            if key.startswith("x-"):
                out[key] = value
        props = node.get("properties")
        if isinstance(props, Mapping):
            out["properties"] = {k: self._convert(v, stack, cuts) for k, v in props.items()}
        required = node.get("required")
        if isinstance(required, list) and required:
            out["required"] = [str(r) for r in required]
        if "items" in node:
            out["items"] = self._convert(node["items"], stack, cuts)
        additional = node.get("additionalProperties")
        if isinstance(additional, bool):
            out["additionalProperties"] = additional
        elif isinstance(additional, Mapping):
            out["additionalProperties"] = self._convert(additional, stack, cuts)
        for union_key in ("anyOf", "oneOf"):
            members = node.get(union_key)
            if isinstance(members, list):
                converted = [self._convert(m, stack, cuts) for m in members]
                if any(not m for m in converted):
                    continue  # an empty member accepts anything: the union says nothing
                out = merge_all_of([out, {"anyOf": converted}])
        if node.get("nullable") is True:
            out = add_null(out)
        parts = node.get("allOf")
        if isinstance(parts, list):
            converted_parts = [self._convert(p, stack, cuts) for p in parts]
            out = merge_all_of([*converted_parts, out])
        return out


def merge_all_of(parts: list[JsonSchema]) -> JsonSchema:
    """Merge ``allOf`` members into one schema without mutating them.

    Properties merge recursively (an overlay like ``{"id": {"readOnly": true}}`` adds to the
    base property), ``required`` lists are united in order, a second ``anyOf`` is combined
    with the first via a nested ``allOf``; for any other keyword the later part wins, except
    that an absent/empty later value never erases an earlier one.
    """
    out: JsonSchema = {}
    for part in parts:
        for key, value in part.items():
            if key not in out:
                out[key] = value
            elif key == "properties":
                merged = dict(out["properties"])
                for name, sub in value.items():
                    merged[name] = merge_all_of([merged[name], sub]) if name in merged else sub
                out["properties"] = merged
            elif key == "required":
                out["required"] = list(dict.fromkeys([*out["required"], *value]))
            elif key == "items":
                out["items"] = merge_all_of([out["items"], value])
            elif key == "anyOf":
                existing = out.pop("anyOf")
                out["allOf"] = [*out.get("allOf", []), {"anyOf": existing}, {"anyOf": value}]
            elif key == "type":
                out["type"] = _merge_type(out["type"], value)
            else:
                out[key] = value
    return out


def _merge_type(a: Any, b: Any) -> Any:
    """An overlay narrows nothing but nullability: keep ``null`` if either side allows it."""
    if a == b:
        return a
    a_list = a if isinstance(a, list) else [a]
    b_list = b if isinstance(b, list) else [b]
    if "null" in a_list and "null" not in b_list:
        return [*b_list, "null"]
    return b


def add_null(schema: JsonSchema) -> JsonSchema:
    """Return ``schema`` also accepting ``null`` (new dict; the input is not changed)."""
    if not schema or _is_cut(schema):
        return schema  # already accepts anything
    out = dict(schema)
    typ = out.get("type")
    if isinstance(typ, str):
        out["type"] = [typ, "null"] if typ != "null" else "null"
    elif isinstance(typ, list):
        if "null" not in typ:
            out["type"] = [*typ, "null"]
    elif "anyOf" in out:
        members = out["anyOf"]
        if {"type": "null"} not in members:
            out["anyOf"] = [*members, {"type": "null"}]
    else:
        # no type: only an annotation/allOf shape; a null alternative keeps it honest
        return {"anyOf": [out, {"type": "null"}]}
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _is_cut(schema: Mapping[str, Any]) -> bool:
    comment = schema.get("$comment")
    return isinstance(comment, str) and comment.startswith(_RECURSIVE_COMMENT) and len(schema) == 1


def admitted_types(schema: Mapping[str, Any]) -> frozenset[str]:
    """Every JSON type a (resolved) schema admits, looking through anyOf/oneOf/allOf members.

    Also counts OpenAPI ``nullable`` as "null" and a typeless schema with ``properties`` as
    "object", which is how the spec writes some nested objects.
    """
    found: set[str] = set(schema_types(schema))
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, ()) or ():
            if isinstance(sub, Mapping):
                found |= admitted_types(sub)
    if schema.get("nullable") is True:
        found.add("null")
    if not found and "properties" in schema:
        found.add("object")
    return frozenset(found)


def schema_types(schema: Mapping[str, Any]) -> list[str]:
    """The JSON types a schema names (`type` as a string or a list); [] when it names none."""
    typ = schema.get("type")
    if isinstance(typ, str):
        return [typ]
    if isinstance(typ, list):
        return [str(t) for t in typ]
    return []


def is_numeric_property(schema: Mapping[str, Any]) -> bool:
    """True for properties whose values are numbers in substance (see module docstring)."""
    if "x-intacct-type" in schema:
        return schema["x-intacct-type"] in ("number", "decimal")
    types = schema_types(schema)
    if "number" in types:
        return True
    fmt = schema.get("format")
    return "string" in types and isinstance(fmt, str) and bool(AMOUNT_FORMAT_RE.match(fmt))


def _widen_numeric(schema: JsonSchema) -> JsonSchema:
    types = schema_types(schema)
    fmt = schema.get("format")
    if "number" in types:
        marker = "number"
    elif "string" in types and isinstance(fmt, str) and AMOUNT_FORMAT_RE.match(fmt):
        marker = "decimal"
    else:
        return schema
    out = dict(schema)
    out["type"] = ["string", "number", "null"] if "null" in types else ["string", "number"]
    out["x-intacct-type"] = marker
    return out


def to_record_schema(schema: JsonSchema, *, top_level: bool = True) -> JsonSchema:
    """Apply the record treatment (nullable everywhere but top-level ``key``, numeric widening,
    no ``required``) to a resolved schema. Returns a new dict."""
    out = dict(schema)
    out.pop("required", None)
    props = out.get("properties")
    if isinstance(props, dict):
        new_props: JsonSchema = {}
        for name, sub in props.items():
            converted = _record_property(sub)
            if top_level and name == "key":
                converted = _drop_null(converted)  # the primary key is never null
            else:
                converted = add_null(converted)
            new_props[name] = converted
        out["properties"] = new_props
    return out


def _drop_null(schema: JsonSchema) -> JsonSchema:
    types = schema.get("type")
    if not isinstance(types, list) or "null" not in types:
        return schema
    out = dict(schema)
    rest = [t for t in types if t != "null"]
    out["type"] = rest[0] if len(rest) == 1 else rest
    return out


def _record_property(schema: JsonSchema) -> JsonSchema:
    out = to_record_schema(schema, top_level=False)
    if isinstance(out.get("items"), dict):
        out["items"] = _record_property(out["items"])
    for key in ("anyOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [_record_property(m) for m in out[key]]
    return _widen_numeric(out)
