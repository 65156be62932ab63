"""Live model-service answers -> record JSON Schema, and comparing two record schemas.

Why: the published spec and a real company can disagree (custom fields, ``nsp::`` custom
relationships, quarterly additions, subscription-dependent fields). The model service
(``GET /services/core/model?name=<object>&schema=true``) describes what *this* company returns, so
the tap can build its schema from it and the CLI can show where spec and company differ.

Shape mapping (the result has the same shape as ``SpecRegistry.object(...).record_schema()``):

* ``fields``  -> scalar properties (``type``/``format``/``enum``/``readOnly``/``writeOnly``/
  ``deprecated``/``default`` kept; ``nullable`` honoured; the model's ``required`` is always false,
  so it is ignored; ``mutable`` is kept as ``x-intacct-mutable``);
* ``groups``  -> nested objects (``audit``, ``contacts``...), recursively with their own fields,
  refs, groups and lists;
* ``refs``    -> nested objects with the reference's fields, annotated ``x-intacct-object``;
* ``lists``   -> arrays of objects (owned collections), items annotated ``x-intacct-object``.

Then the same record treatment as the spec path (``schema.to_record_schema``): everything
nullable except top-level ``key``; numbers and decimal strings widened with ``x-intacct-type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from intacct_api.schema import add_null, to_record_schema

__all__ = [
    "SchemaDiff",
    "TypeMismatch",
    "compare_record_schemas",
    "model_result",
    "model_to_record_schema",
]

JsonSchema = dict[str, Any]

_FIELD_KEYWORDS = ("type", "format", "enum", "readOnly", "writeOnly", "deprecated", "default")


def model_result(response: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept either the whole response body or its ``ia::result``; return the model itself."""
    result = response.get("ia::result", response)
    if not isinstance(result, Mapping):
        raise ValueError("model response has no object 'ia::result'")
    return result


def model_to_record_schema(response: Mapping[str, Any]) -> JsonSchema:
    """Record JSON Schema of one object from a model-service response (see module doc)."""
    model = model_result(response)
    schema = _container(model)
    api_object = model.get("apiObject")
    if isinstance(api_object, str):
        schema["x-intacct-object"] = api_object.removeprefix("objects/")
    return to_record_schema(schema)


def _field(spec: Mapping[str, Any]) -> JsonSchema:
    out: JsonSchema = {k: spec[k] for k in _FIELD_KEYWORDS if k in spec}
    if isinstance(out.get("enum"), list):
        out["enum"] = list(out["enum"])
    if "mutable" in spec:
        out["x-intacct-mutable"] = bool(spec["mutable"])
    if spec.get("nullable") is True:
        out = add_null(out)
    return out


def _container(node: Mapping[str, Any]) -> JsonSchema:
    """An object schema for a model node that may have fields, groups, refs and lists."""
    props: JsonSchema = {}
    fields = node.get("fields")
    if isinstance(fields, Mapping):
        for name, spec in fields.items():
            if isinstance(spec, Mapping):
                props[name] = _field(spec)
    for section in ("groups", "refs"):
        children = node.get(section)
        if not isinstance(children, Mapping):
            continue
        for name, child in children.items():
            if not isinstance(child, Mapping):
                continue
            sub = _container(child)
            if isinstance(child.get("apiObject"), str):
                sub["x-intacct-object"] = child["apiObject"]
            props[name] = sub
    lists = node.get("lists")
    if isinstance(lists, Mapping):
        for name, child in lists.items():
            if not isinstance(child, Mapping):
                continue
            items = _container(child)
            if not items["properties"]:
                del items["properties"]  # the model names the owned object, not its fields
            if isinstance(child.get("apiObject"), str):
                items["x-intacct-object"] = child["apiObject"]
            props[name] = {"type": "array", "items": items}
    return {"type": "object", "properties": props}


@dataclass(frozen=True)
class TypeMismatch:
    """A property present on both sides whose JSON types (or numeric marker) differ."""

    path: str
    left: tuple[str, ...]
    right: tuple[str, ...]


@dataclass
class SchemaDiff:
    """Differences between two record schemas, as data (paths are dotted, arrays as ``x[]``)."""

    left_label: str
    right_label: str
    only_left: list[str] = field(default_factory=list)
    only_right: list[str] = field(default_factory=list)
    type_mismatches: list[TypeMismatch] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.only_left or self.only_right or self.type_mismatches)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``intacct schema --json`` and reports)."""
        data = asdict(self)
        data["type_mismatches"] = [
            {"path": m.path, self.left_label: list(m.left), self.right_label: list(m.right)}
            for m in self.type_mismatches
        ]
        return data


def compare_record_schemas(
    left: Mapping[str, Any],
    right: Mapping[str, Any],
    *,
    left_label: str = "spec",
    right_label: str = "model",
) -> SchemaDiff:
    """Compare two record schemas property by property (recursing into objects and arrays).

    Types are compared as sets without ``null`` (nullability differs only by convention), with
    the ``x-intacct-type`` marker as a pseudo-type so "decimal string" vs "number" shows up.
    """
    diff = SchemaDiff(left_label=left_label, right_label=right_label)
    _compare(left, right, "", diff)
    return diff


def _type_key(schema: Mapping[str, Any]) -> tuple[str, ...]:
    typ = schema.get("type")
    types = [typ] if isinstance(typ, str) else list(typ) if isinstance(typ, list) else []
    key = sorted(str(t) for t in types if t != "null")
    marker = schema.get("x-intacct-type")
    if isinstance(marker, str):
        key.append(f"x-intacct-type={marker}")
    return tuple(key)


def _properties(schema: Any) -> Mapping[str, Any]:
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    return props if isinstance(props, Mapping) else {}


def _compare(
    left: Mapping[str, Any], right: Mapping[str, Any], prefix: str, diff: SchemaDiff
) -> None:
    left_props, right_props = _properties(left), _properties(right)
    for name in sorted(set(left_props) | set(right_props)):
        path = f"{prefix}{name}"
        if name not in right_props:
            diff.only_left.append(path)
            continue
        if name not in left_props:
            diff.only_right.append(path)
            continue
        a, b = left_props[name], right_props[name]
        if not isinstance(a, Mapping) or not isinstance(b, Mapping):
            continue
        ka, kb = _type_key(a), _type_key(b)
        if ka and kb and ka != kb:
            diff.type_mismatches.append(TypeMismatch(path, ka, kb))
        if "properties" in a and "properties" in b:
            _compare(a, b, f"{path}.", diff)
            continue
        items_a, items_b = _properties(a.get("items")), _properties(b.get("items"))
        if items_a and items_b:
            _compare(a["items"], b["items"], f"{path}[].", diff)
