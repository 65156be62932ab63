"""Request templates ("template picker") for any operationId.

Why: an operator who wants to call, say, ``create-accounts-payable-bill`` needs to know which
parameters it takes and what a body looks like, without reading a 450 KB OpenAPI file. The
template is plain data (``operation_template``) so the CLI can print it as JSON, and
``render_template`` turns it into text for humans.

Rules:

* parameters: name, location, required, JSON type, description, example;
* body fields: one entry per leaf or object property, dotted paths (``vendor.id``), array items as
  ``lines[].txnAmount``. ``required`` means "listed in its parent's ``required``" (so ``vendor.id``
  is required whenever ``vendor`` is sent, which is how Sage's ``*RequiredProperties`` read);
* read-only properties are left out: the server ignores or rejects them in a request;
* example per field: the spec's ``example`` when present, else one derived from type/format/enum;
* the skeleton is a body with an example value at every writable leaf; unions take their first
  non-null member.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from intacct_api.schema import schema_types
from intacct_api.spec import Operation

__all__ = ["example_for", "operation_template", "render_template"]

JsonSchema = Mapping[str, Any]
_MAX_DEPTH = 8


def _main_type(schema: JsonSchema) -> str:
    non_null = [t for t in schema_types(schema) if t != "null"]
    if non_null:
        return non_null[0]
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "any"


def _pick_member(schema: JsonSchema) -> JsonSchema:
    """Collapse ``anyOf`` to its first informative member (templates show one valid shape)."""
    members = schema.get("anyOf")
    if not isinstance(members, list):
        return schema
    for member in members:
        if isinstance(member, Mapping) and schema_types(member) != ["null"]:
            merged = {k: v for k, v in schema.items() if k != "anyOf"}
            merged.update(member)
            return merged
    return schema


def example_for(schema: JsonSchema) -> Any:
    """Spec example if any, else an example that fits the type, format and enum."""
    schema = _pick_member(schema)
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    enum = schema.get("enum")
    if isinstance(enum, list):
        for value in enum:
            if value is not None:
                return value
    typ = _main_type(schema)
    fmt = schema.get("format")
    if typ == "string":
        if fmt == "date":
            return "2025-01-31"
        if fmt == "date-time":
            return "2025-01-31T12:00:00Z"
        match = re.match(r"^(?:decimal|percent)-precision-(\d+)$", str(fmt or ""))
        if match:
            digits = int(match.group(1))
            return "0." + "0" * digits if digits else "0"
        return "string"
    if typ in ("number", "integer"):
        return 0
    if typ == "boolean":
        return False
    if typ == "array":
        return []
    if typ == "object":
        return {}
    return None


def _param_entry(parameter: Any) -> dict[str, Any]:
    return {
        "name": parameter.name,
        "in": parameter.location,
        "required": parameter.required,
        "type": _main_type(parameter.schema),
        "description": parameter.description,
        "example": parameter.example
        if parameter.example is not None
        else example_for(parameter.schema),
    }


def _walk(
    schema: JsonSchema, path: str, required: bool, fields: list[dict[str, Any]], depth: int
) -> Any:
    """Collect field entries under ``path`` and return the skeleton value for this schema."""
    schema = _pick_member(schema)
    typ = _main_type(schema)
    if path:
        entry: dict[str, Any] = {"path": path, "type": typ, "required": required}
        for key in ("format", "enum", "description", "deprecated", "writeOnly", "default"):
            if key in schema:
                entry[key] = schema[key]
        if typ not in ("object", "array"):
            entry["example"] = example_for(schema)
        fields.append(entry)
    if depth >= _MAX_DEPTH:
        return example_for(schema)
    if typ == "object" and isinstance(schema.get("properties"), Mapping):
        required_names = set(schema.get("required") or ())
        skeleton: dict[str, Any] = {}
        for name, sub in schema["properties"].items():
            if not isinstance(sub, Mapping) or sub.get("readOnly") is True:
                continue
            child_path = f"{path}.{name}" if path else name
            skeleton[name] = _walk(sub, child_path, name in required_names, fields, depth + 1)
        return skeleton
    if typ == "array" and isinstance(schema.get("items"), Mapping):
        item = _walk(schema["items"], f"{path}[]", False, fields, depth + 1)
        return [item]
    return example_for(schema)


def operation_template(operation: Operation) -> dict[str, Any]:
    """Everything needed to call ``operation``: parameters, body fields and a body skeleton."""
    template: dict[str, Any] = {
        "operationId": operation.operation_id,
        "method": operation.method,
        "path": operation.path,
        "kind": operation.kind,
        "application": operation.application,
        "object": operation.object_name,
        "summary": operation.summary,
        "source_file": operation.source_file,
        "parameters": [_param_entry(p) for p in operation.parameters],
        "body": None,
    }
    schema = operation.request_schema()
    if schema is not None:
        fields: list[dict[str, Any]] = []
        skeleton = _walk(schema, "", True, fields, 0)
        template["body"] = {
            "required": operation.request_body_required(),
            "type": _main_type(schema),
            "fields": fields,
            "skeleton": skeleton,
        }
    return template


def _describe(entry: Mapping[str, Any]) -> str:
    text = str(entry["type"])
    if entry.get("format"):
        text += f" ({entry['format']})"
    if entry.get("enum"):
        text += " one of " + ", ".join(json.dumps(v) for v in entry["enum"])
    if "example" in entry:
        text += f"  e.g. {json.dumps(entry['example'])}"
    if entry.get("deprecated"):
        text += "  [deprecated]"
    return text


def render_template(template: Mapping[str, Any]) -> str:
    """Human-readable form of ``operation_template`` output; ``*`` marks required items."""
    lines = [f"{template['operationId']}  {template['method']} {template['path']}"]
    if template.get("summary"):
        lines.append(str(template["summary"]))
    lines.append(f"kind: {template['kind']}   source: {template['source_file']}")
    lines.append("")
    lines.append("Parameters:")
    params = template.get("parameters") or []
    if not params:
        lines.append("  (none)")
    for param in params:
        mark = "*" if param["required"] else " "
        lines.append(f"  {mark} {param['name']} [{param['in']}]  {_describe(param)}")
    body = template.get("body")
    lines.append("")
    if body is None:
        lines.append("Request body: none")
    else:
        lines.append(f"Request body ({'required' if body['required'] else 'optional'}):")
        for entry in body["fields"]:
            mark = "*" if entry["required"] else " "
            lines.append(f"  {mark} {entry['path']}  {_describe(entry)}")
        lines.append("")
        lines.append("Skeleton:")
        lines.append(json.dumps(body["skeleton"], indent=2))
    lines.append("")
    lines.append("* = required (for nested fields: required whenever the parent is sent)")
    return "\n".join(lines)
