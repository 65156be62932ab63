"""Small readers over the registry's resolved record schemas.

The emulator keeps no list of its own of objects or fields: everything it knows about a record
(which members are references, groups or owned lists, which are read-only, what type a field
has) is read from ``ObjectInfo.record_schema()`` through these helpers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

Schema = Mapping[str, Any]

_HREF_RE = re.compile(r"^/objects/([a-z0-9-]+)/([a-z0-9:-]+)(/|$)")


def types(schema: Schema) -> list[str]:
    """The JSON types a schema admits, ``null`` excluded."""
    typ = schema.get("type")
    if isinstance(typ, str):
        return [] if typ == "null" else [typ]
    if isinstance(typ, list):
        return [str(t) for t in typ if t != "null"]
    if "properties" in schema:
        return ["object"]
    return []


def main_type(schema: Schema) -> str | None:
    """The model-service ``type`` of a field: the first non-null type, amounts as spec'd."""
    marker = schema.get("x-intacct-type")
    if marker == "number":
        return "number"
    if marker == "decimal":
        return "string"
    found = types(schema)
    return found[0] if found else None


def properties(schema: Schema) -> Mapping[str, Schema]:
    """Properties of an object schema (empty for anything else)."""
    props = schema.get("properties")
    return props if isinstance(props, Mapping) else {}


def is_object(schema: Schema) -> bool:
    """A nested object with known members (a group or a reference)."""
    return bool(properties(schema))


def is_array(schema: Schema) -> bool:
    """An array member (owned list or list of scalars)."""
    return "array" in types(schema)


def is_list(schema: Schema) -> bool:
    """An array of objects: what the model calls a ``list`` and the query refuses."""
    items = schema.get("items")
    return is_array(schema) and isinstance(items, Mapping) and is_object(items)


def is_ref(schema: Schema) -> bool:
    """A reference to another object: a nested object with ``key`` (or ``id`` and ``href``)."""
    props = properties(schema)
    return "key" in props or ("id" in props and "href" in props)


def lookup(schema: Schema, path: list[str] | tuple[str, ...]) -> Schema | None:
    """Schema of a dotted path (``["audit", "modifiedDateTime"]``), or None if unknown."""
    node: Schema = schema
    for part in path:
        props = properties(node)
        if part not in props:
            return None
        node = props[part]
    return node


def camel_to_kebab(name: str) -> str:
    """``defaultRevenueGLAccount`` -> ``default-revenue-gl-account``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1-\2", spaced)
    return spaced.lower()


def href_target(schema: Schema) -> str | None:
    """Object name from the example ``href`` of a reference (``/objects/app/obj/12``)."""
    href = properties(schema).get("href")
    if not isinstance(href, Mapping):
        return None
    for example in href.get("examples") or []:
        match = _HREF_RE.match(str(example))
        if match and "<" not in match.group(0):
            return f"{match.group(1)}/{match.group(2)}"
    return None


@lru_cache(maxsize=4096)
def _suffix_index(names: tuple[str, ...]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for name in names:
        index.setdefault(name.split("/", 1)[1], []).append(name)
    return index


def ref_target(
    object_names: tuple[str, ...], application: str, prop_name: str, schema: Schema
) -> str | None:
    """Best guess of the object a reference points at, from the spec alone.

    The resolved schema no longer carries ``$ref`` names, so: the example ``href`` first, then
    the property name as an object name (``customerType`` -> ``*/customer-type``, the same
    application preferred), then its last word (``defaultRevenueGLAccount`` -> ``*/account``
    is too loose, so only exact names are tried).
    """
    found = href_target(schema)
    if found and found in object_names:
        return found
    index = _suffix_index(object_names)
    candidates = [camel_to_kebab(prop_name)]
    if prop_name.lower().endswith("glaccount"):
        candidates.append("account")
    for candidate in candidates:
        names = index.get(candidate, [])
        if not names:
            continue
        same_app = [n for n in names if n.startswith(application + "/")]
        if same_app:
            return same_app[0]
        for preferred in ("company-config/", "general-ledger/"):
            for n in names:
                if n.startswith(preferred):
                    return n
        return sorted(names)[0]
    return found


def skeleton(schema: Schema, *, include_write_only: bool = False) -> dict[str, Any]:
    """The all-``null`` GET shape of a record: scalars null, groups nested, arrays empty.

    Intacct returns every member, unset ones as ``null``; records are stored sparse and laid
    over this skeleton on the way out.
    """
    out: dict[str, Any] = {}
    for name, sub in properties(schema).items():
        if sub.get("writeOnly") and not include_write_only:
            continue
        if is_array(sub):
            out[name] = []
        elif is_object(sub):
            out[name] = skeleton(sub, include_write_only=include_write_only)
        else:
            out[name] = None
    return out


def overlay(base: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (a fresh skeleton) with ``values`` laid over it recursively (mutates base)."""
    for name, value in values.items():
        current = base.get(name)
        if isinstance(current, dict) and isinstance(value, Mapping):
            overlay(current, value)
        else:
            base[name] = value
    return base


def deep_copy(value: Any) -> Any:
    """Fast copy of JSON-like data (dicts/lists of scalars)."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value
