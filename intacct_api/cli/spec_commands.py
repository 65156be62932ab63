"""`intacct operations|objects|schema`: browse the API spec offline.

These commands only read the spec registry (no network, no credentials) except
``schema --source model`` / ``--compare``, which ask the company's model service through the
shared client. ``--json`` always prints exactly one JSON document on stdout; errors go to stderr
as one line with a non-zero exit.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

import typer

from intacct_api.cli.app import echo_json, fail, get_context
from intacct_api.errors import IntacctError
from intacct_api.model_schema import compare_record_schemas, model_to_record_schema
from intacct_api.spec import KINDS, ObjectInfo, Operation, SpecRegistry
from intacct_api.template import operation_template, render_template

__all__ = ["register"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _registry(ctx: typer.Context) -> SpecRegistry:
    try:
        return get_context(ctx).registry
    except (IntacctError, OSError, ValueError) as exc:
        fail(f"cannot load the API spec: {exc}")


def _operation_row(op: Operation) -> dict[str, Any]:
    return {
        "operationId": op.operation_id,
        "method": op.method,
        "path": op.path,
        "kind": op.kind,
        "application": op.application,
        "object": op.object_name,
        "summary": op.summary,
        "source_file": op.source_file,
    }


def _object_row(info: ObjectInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "stream": info.stream,
        "application": info.application,
        "schema_name": info.schema_name,
        "source_file": info.source_file,
        "list": info.list_operation_id,
        "get": info.get_operation_id,
        "create": info.create_operation_id,
        "update": info.update_operation_id,
        "delete": info.delete_operation_id,
        "required_on_create": list(info.required_on_create),
        "has_modified_timestamp": info.has_modified_timestamp,
        "owner": info.owner,
        "owned_lists": dict(info.owned_lists),
    }


def _check_application(registry: SpecRegistry, application: str | None) -> None:
    if application is None or application in registry.applications():
        return
    close = difflib.get_close_matches(application, registry.applications(), n=3)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    fail(f"unknown application {application!r}{hint}")


def _table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def operations_list(
    ctx: typer.Context,
    application: Annotated[
        str | None, typer.Option("--application", "-a", help="e.g. accounts-receivable")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", "-k", help=" | ".join(KINDS))] = None,
    object_name: Annotated[
        str | None,
        typer.Option("--object", "-o", help="Object (app/object) or stream name."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List operations, optionally filtered by application, kind and object."""
    registry = _registry(ctx)
    if kind is not None and kind not in KINDS:
        fail(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
    _check_application(registry, application)
    if object_name is not None:
        try:
            object_name = registry.object(object_name).name
        except IntacctError as exc:
            fail(str(exc))
    found = registry.find_operations(application=application, kind=kind, object_name=object_name)
    if as_json:
        echo_json([_operation_row(op) for op in found])
        return
    rows = [[op.operation_id, op.method, op.kind, op.path] for op in found]
    if rows:
        typer.echo(_table(rows))
    typer.echo(f"{len(found)} operation(s)", err=True)


def operations_show(
    ctx: typer.Context,
    operation_id: Annotated[
        str, typer.Argument(help="operationId, e.g. create-accounts-payable-bill")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Show the request template of one operation: parameters and a body skeleton."""
    registry = _registry(ctx)
    try:
        template = operation_template(registry.operation(operation_id))
    except IntacctError as exc:
        fail(str(exc))
    if as_json:
        echo_json(template)
    else:
        typer.echo(render_template(template))


def objects_list(
    ctx: typer.Context,
    application: Annotated[str | None, typer.Option("--application", "-a")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List objects (one per /objects/{application}/{object} family)."""
    registry = _registry(ctx)
    _check_application(registry, application)
    found = [
        info
        for info in registry.objects.values()
        if application is None or info.application == application
    ]
    if as_json:
        echo_json([_object_row(info) for info in found])
        return
    rows = []
    for info in found:
        verbs = "".join(
            letter if op_id else "-"
            for letter, op_id in (
                ("L", info.list_operation_id),
                ("G", info.get_operation_id),
                ("C", info.create_operation_id),
                ("U", info.update_operation_id),
                ("D", info.delete_operation_id),
            )
        )
        owner = f"owned by {info.owner}" if info.owner else ""
        rows.append([info.name, verbs, owner])
    if rows:
        typer.echo(_table(rows))
    typer.echo(f"{len(found)} object(s)", err=True)


def _model_schema(ctx: typer.Context, object_name: str) -> dict[str, Any]:
    """Ask the company's model service (needs a connection) and convert the answer."""
    return model_to_record_schema(get_context(ctx).client.model(object_name, schema=True))


def schema_command(
    ctx: typer.Context,
    object_name: Annotated[str, typer.Argument(help="Object (app/object) or stream name.")],
    source: Annotated[
        str, typer.Option("--source", help="spec (offline) or model (ask the company).")
    ] = "spec",
    compare: Annotated[
        bool, typer.Option("--compare", help="Show differences between spec and model.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Print the record JSON Schema of an object (from the spec or the live model service)."""
    if source not in ("spec", "model"):
        fail(f"unknown --source {source!r}; expected spec or model")
    registry = _registry(ctx)
    try:
        info = registry.object(object_name)
        if compare:
            diff = compare_record_schemas(info.record_schema(), _model_schema(ctx, info.name))
            result: dict[str, Any] = diff.as_dict()
            result["object"] = info.name
            if as_json:
                echo_json(result)
            else:
                typer.echo(_render_diff(result))
            return
        schema = info.record_schema() if source == "spec" else _model_schema(ctx, info.name)
    except IntacctError as exc:
        fail(str(exc))
    if as_json:
        echo_json(schema)
    else:
        typer.echo(f"# {info.name} ({source}: {info.source_file if source == 'spec' else 'model'})")
        typer.echo(_render_schema(schema))


def _render_schema(schema: dict[str, Any], indent: str = "") -> str:
    lines: list[str] = []
    for name, sub in (schema.get("properties") or {}).items():
        typ = sub.get("type", "any")
        typ_text = "|".join(typ) if isinstance(typ, list) else str(typ)
        extras = [sub[k] for k in ("format",) if k in sub]
        if sub.get("readOnly"):
            extras.append("readOnly")
        if "x-intacct-type" in sub:
            extras.append(f"x-intacct-type={sub['x-intacct-type']}")
        suffix = f"  ({', '.join(map(str, extras))})" if extras else ""
        lines.append(f"{indent}{name}: {typ_text}{suffix}")
        if "properties" in sub:
            lines.append(_render_schema(sub, indent + "  "))
        elif isinstance(sub.get("items"), dict) and "properties" in sub["items"]:
            lines.append(_render_schema(sub["items"], indent + "  [] "))
    return "\n".join(line for line in lines if line)


def _render_diff(result: dict[str, Any]) -> str:
    lines = [f"# {result['object']}: spec vs model"]
    lines += [f"only in spec:  {p}" for p in result["only_left"]]
    lines += [f"only in model: {p}" for p in result["only_right"]]
    for mismatch in result["type_mismatches"]:
        path, spec, model = mismatch["path"], mismatch["spec"], mismatch["model"]
        lines.append(f"type differs:  {path}: spec {spec} / model {model}")
    if len(lines) == 1:
        lines.append("no differences")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add the `operations`, `objects` and `schema` commands to the `intacct` app."""
    operations = typer.Typer(help="Browse the API operations of the spec.", no_args_is_help=True)
    operations.command("list")(operations_list)
    operations.command("show")(operations_show)
    objects = typer.Typer(help="Browse the objects of the spec.", no_args_is_help=True)
    objects.command("list")(objects_list)
    app.add_typer(operations, name="operations")
    app.add_typer(objects, name="objects")
    app.command("schema")(schema_command)
