"""The model service (``GET /services/core/model``), built from the registry's record schemas.

The real service describes a record as ``fields`` (scalars), ``groups`` (nested objects),
``refs`` (references to other objects, with ``apiObject``) and ``lists`` (owned collections).
We derive exactly that split from the resolved record schema, so a tap that builds its schema
from the live model gets the same answer from the emulator as from Intacct (compared key by key
with the recorded responses in the fidelity test).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from intacct_api.spec import ObjectInfo, SpecRegistry
from intacct_emulator import envelopes, schema_tools
from intacct_emulator.envelopes import EmulatorError

_METHOD_ORDER = (
    ("get", "GET"),
    ("list", "GET"),
    ("create", "POST"),
    ("delete", "DELETE"),
    ("update", "PATCH"),
)
SERVICES = ("core/query", "core/model")


def http_methods(info: ObjectInfo) -> str:
    """``OPTIONS,GET,POST,DELETE,PATCH`` limited to the operations the spec defines."""
    methods = ["OPTIONS"]
    for kind, method in _METHOD_ORDER:
        if getattr(info, f"{kind}_operation_id") and method not in methods:
            methods.append(method)
    return ",".join(methods)


def model_href(api_object: str) -> str:
    """The model's self link, as in the recordings."""
    return f"/services/core/model?version=v1&name={api_object}"


def _enum_and_nullable(schema: Mapping[str, Any]) -> tuple[list[Any] | None, bool]:
    """Recover the model's ``enum``/``nullable`` from a record schema.

    Record schemas make everything nullable, so the spec's intent is read from the enum's
    ``default``: the recordings show enums whose default is ``null`` (``preferredPaymentMethod``,
    ``restrictionType``) as nullable with ``null`` kept in the enum, and every other enum
    (``status``, ``advanceBillByType``) as not nullable, without ``null``.
    """
    enum = schema.get("enum")
    if not isinstance(enum, list):
        return None, True
    if "default" in schema and schema["default"] is None:
        return list(enum), True
    return [e for e in enum if e is not None], False


def field_model(
    name: str,
    schema: Mapping[str, Any],
    *,
    inherited_read_only: bool,
    top_level: bool,
    inherited_deprecated: bool = False,
) -> dict[str, Any]:
    """One field's attributes in the model service's vocabulary."""
    out: dict[str, Any] = {}
    if schema.get("deprecated") or inherited_deprecated:
        out["deprecated"] = True
    if schema.get("default") is not None:
        out["default"] = schema["default"]
    enum, nullable = _enum_and_nullable(schema)
    if enum is not None:
        out["enum"] = enum
    fmt = schema.get("format")
    if isinstance(fmt, str):
        out["format"] = fmt
    out["type"] = schema_tools.main_type(schema) or "string"
    read_only = bool(schema.get("readOnly")) or inherited_read_only
    out["readOnly"] = read_only
    out["writeOnly"] = bool(schema.get("writeOnly"))
    out["required"] = False
    out["nullable"] = nullable
    out["mutable"] = not read_only and not (top_level and name == "id")
    return out


class ModelBuilder:
    """Builds (and caches) model responses for the objects of one registry."""

    def __init__(self, registry: SpecRegistry) -> None:
        self.registry = registry
        self._names = tuple(sorted(registry.objects))
        self._cache: dict[str, dict[str, Any]] = {}

    def ref_target(
        self, info: ObjectInfo, prop: str, schema: Mapping[str, Any], group: str = ""
    ) -> str | None:
        """Object a reference property of ``info`` points at (see ``schema_tools.ref_target``).

        Two conventions of the spec the name alone misses: ``*User`` members (audit) point at
        users, and the members of a ``contacts`` group point at contacts.
        """
        found = schema_tools.ref_target(self._names, info.application, prop, schema)
        if found is None and prop.endswith("User") and "company-config/user" in self._names:
            return "company-config/user"
        if found is None and group == "contacts" and "company-config/contact" in self._names:
            return "company-config/contact"
        return found or self._nearest(info, prop)

    def _nearest(self, info: ObjectInfo, prop: str) -> str:
        """Last resort (the model always names an ``apiObject``): an object whose name ends
        with the property's words, the same application preferred, else a derived name."""
        suffix = "-" + schema_tools.camel_to_kebab(prop)
        matches = [n for n in self._names if n.endswith(suffix)]
        for name in matches:
            if name.startswith(info.application + "/"):
                return name
        return matches[0] if matches else f"{info.application}/{suffix[1:]}"

    def describe(self, info: ObjectInfo) -> dict[str, Any]:
        """The full model of one object (the ``ia::result`` of ``?name=``)."""
        cached = self._cache.get(info.name)
        if cached is None:
            cached = self._describe(info)
            self._cache[info.name] = cached
        copied: dict[str, Any] = schema_tools.deep_copy(cached)
        return copied

    def _describe(self, info: ObjectInfo) -> dict[str, Any]:
        parts = self._parts(
            info, info.record_schema(), read_only=False, top_level=True, deprecated=False
        )
        api_object = f"objects/{info.name}"
        return {
            "fields": parts.get("fields", {}),
            "groups": parts.get("groups", {}),
            "refs": parts.get("refs", {}),
            "lists": parts.get("lists") or [],
            "httpMethods": http_methods(info),
            "idempotenceSupported": bool(info.create_operation_id or info.update_operation_id),
            "apiObject": api_object,
            "type": "ownedObject" if info.owner else "rootObject",
            "href": model_href(api_object),
        }

    def _parts(
        self,
        info: ObjectInfo,
        schema: Mapping[str, Any],
        *,
        read_only: bool,
        top_level: bool,
        deprecated: bool,
        group: str = "",
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        groups: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        lists: dict[str, Any] = {}
        for name, sub in schema_tools.properties(schema).items():
            sub_read_only = read_only or bool(sub.get("readOnly"))
            sub_deprecated = deprecated or bool(sub.get("deprecated"))
            if schema_tools.is_list(sub):
                owned = info.owned_lists.get(name) if top_level else None
                items = sub.get("items") or {}
                target = owned or schema_tools.href_target(items) or self._guess_list(info, name)
                lists[name] = {"apiObject": target}
            elif schema_tools.is_object(sub) and schema_tools.is_ref(sub):
                ref: dict[str, Any] = {"apiObject": self.ref_target(info, name, sub, group)}
                ref.update(
                    self._parts(
                        info,
                        sub,
                        read_only=sub_read_only,
                        top_level=False,
                        deprecated=sub_deprecated,
                        group=name,
                    )
                )
                refs[name] = ref
            elif schema_tools.is_object(sub):
                groups[name] = self._parts(
                    info,
                    sub,
                    read_only=sub_read_only,
                    top_level=False,
                    deprecated=sub_deprecated,
                    group=name,
                )
            else:
                fields[name] = field_model(
                    name,
                    sub,
                    inherited_read_only=read_only,
                    top_level=top_level,
                    inherited_deprecated=deprecated,
                )
        out: dict[str, Any] = {}
        if fields:
            out["fields"] = fields
        if groups:
            out["groups"] = groups
        if refs:
            out["refs"] = refs
        if lists:
            out["lists"] = lists
        return out

    def _guess_list(self, info: ObjectInfo, name: str) -> str:
        target = schema_tools.ref_target(self._names, info.application, name, {})
        return target or f"{info.name}-{schema_tools.camel_to_kebab(name)}"

    # -- the service ---------------------------------------------------------------------

    def resources(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """The short list of resources, filtered by ``type`` and ``filter`` like Intacct."""
        wanted = {t.strip() for t in params.get("type", "").split(",") if t.strip()}
        pattern = params.get("filter")
        try:
            regex = re.compile(pattern) if pattern else None
        except re.error as exc:
            raise envelopes.fail(
                400, "invalidRequest", f"Invalid filter expression: {exc}", "REST-1109"
            ) from exc
        out: list[dict[str, Any]] = []
        for name in self._names:
            info = self.registry.objects[name]
            kind = "ownedObject" if info.owner else "rootObject"
            api_object = f"objects/{name}"
            if wanted and not (wanted & {kind, "object"}):
                continue
            if regex and not regex.search(api_object) and not regex.search(name):
                continue
            out.append(
                {
                    "apiObject": api_object,
                    "type": kind,
                    "httpMethods": http_methods(info),
                    "href": model_href(api_object),
                }
            )
        for service in SERVICES:
            api_object = f"services/{service}"
            if wanted and not (wanted & {"service"}):
                continue
            if regex and not regex.search(api_object):
                continue
            methods = "OPTIONS,POST" if service == "core/query" else "OPTIONS,GET"
            out.append(
                {
                    "apiObject": api_object,
                    "type": "service",
                    "httpMethods": methods,
                    "href": model_href(api_object),
                }
            )
        return out

    def answer(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The whole response body for ``GET /services/core/model`` with these parameters."""
        name = params.get("name")
        if not name:
            rows = self.resources(params)
            return {
                "ia::result": rows,
                "ia::meta": {"totalCount": len(rows), "totalSuccess": len(rows), "totalError": 0},
            }
        plain = name.removeprefix("objects/").split("::", 1)[0]
        info = self.registry.objects.get(plain)
        if info is None:
            raise unknown_resource(name)
        return envelopes.single(self.describe(info))


def unknown_resource(name: str) -> EmulatorError:
    """404 for a model or object name the spec does not define."""
    return envelopes.fail(
        404,
        "notFound",
        f"The resource {name} was not found in version 1",
        "REST-1105",
        message_id="IA.RESOURCE_NOT_FOUND",
        placeholders={"RESOURCE": name},
    )
