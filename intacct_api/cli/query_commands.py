"""`intacct query` and `intacct call`: ad-hoc reads through the same pager and client as the tap.

``query`` prints one JSON object per line (JSON Lines), records nested like the tap emits them
(``--raw`` prints the query service's flat rows as they came). Without ``--order-by`` it pages
with the tap's keyset strategy (stable while data changes); with ``--order-by`` it pages by
offset in the user's order. ``call`` runs any operation of the spec by its operationId, routing
``-p name=value`` to path, query string or header as the spec declares, and prints the JSON
response.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from intacct_api.cli.app import echo_json, fail, get_context
from intacct_api.client import DEFAULT_ENTITY
from intacct_api.errors import IntacctAPIError, UnknownObjectError
from intacct_api.pager import MAX_PAGE_SIZE, MODIFIED_FIELD, QueryPager
from intacct_api.records import RowPlan, field_paths

__all__ = [
    "call_command",
    "parse_filters",
    "parse_order_by",
    "parse_params",
    "query_command",
    "register",
]

_ENCODER = msgspec.json.Encoder()
UNKNOWN_OBJECT_CODE = "REST-1105"
"""Intacct's answer to a query on an object name it does not know."""


def parse_filters(values: list[str]) -> list[dict[str, Any]]:
    """Each ``--filter`` is one JSON filter object such as ``{"$eq": {"status": "active"}}``."""
    filters: list[dict[str, Any]] = []
    for text in values:
        try:
            item = json.loads(text)
        except ValueError as exc:
            fail(f"--filter {text!r} is not JSON: {exc}")
        if not isinstance(item, dict) or len(item) != 1:
            fail(
                f"--filter {text!r} must be one object with one operator, e.g. "
                '\'{"$eq": {"status": "active"}}\''
            )
        filters.append(item)
    return filters


def parse_order_by(values: list[str]) -> list[dict[str, str]]:
    """``field:asc`` / ``field:desc`` / ``field`` (ascending)."""
    order: list[dict[str, str]] = []
    for text in values:
        name, _, direction = text.rpartition(":") if ":" in text else (text, "", "asc")
        direction = direction.lower() or "asc"
        if not name or direction not in ("asc", "desc"):
            fail(f"--order-by {text!r}: expected FIELD[:asc|desc]")
        order.append({name: direction})
    return order


def parse_params(values: list[str]) -> dict[str, str]:
    """``-p name=value`` pairs (the value may itself contain ``=``)."""
    params: dict[str, str] = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name:
            fail(f"-p {text!r}: expected NAME=VALUE")
        params[name] = value
    return params


def _body(text: str | None) -> Any:
    if text is None:
        return None
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        return json.loads(raw)
    except OSError as exc:
        fail(f"--body {text}: {exc}")
    except ValueError as exc:
        fail(f"--body is not JSON: {exc}")


def query_command(
    ctx: typer.Context,
    object_name: Annotated[
        str, typer.Argument(metavar="OBJECT", help="e.g. accounts-payable/vendor")
    ],
    fields: Annotated[
        str | None,
        typer.Option("--fields", help="Comma-separated field paths (default: every field)."),
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", help='Repeatable JSON filter, e.g. \'{"$eq": {"status": "active"}}\'.'
        ),
    ] = None,
    filter_expression: Annotated[
        str | None, typer.Option("--filter-expression", help='e.g. "(1 and 2) or 3".')
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", help="Repeatable FIELD[:asc|desc]; pages by offset."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Stop after N rows.")] = None,
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, max=MAX_PAGE_SIZE, help="Rows per call.")
    ] = MAX_PAGE_SIZE,
    entity: Annotated[
        str | None, typer.Option("--entity", help="Entity id for this query (default: global).")
    ] = None,
    include_private: Annotated[
        bool, typer.Option("--include-private", help="Include private entities' records.")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print flat rows exactly as returned.")
    ] = False,
) -> None:
    """Run a query-service query and print the records as JSON Lines."""
    cli = get_context(ctx)
    registry = cli.registry
    has_timestamp = False
    suggestions: list[str] = []
    try:
        info = registry.object(object_name)
        object_name = info.name
        has_timestamp = info.has_modified_timestamp
        default_fields = field_paths(info.record_schema())
    except UnknownObjectError as unknown:
        # Custom (nsp::) and newer objects are unknown to the spec, so the query still goes
        # out; if Intacct refuses the name too, the closest spec names are offered.
        suggestions = list(unknown.suggestions)
        default_fields = ["key", "id"]
    wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else default_fields
    if not wanted:
        fail("--fields is empty")
    pager = QueryPager(
        cli.client,
        object_name,
        wanted,
        filters=parse_filters(filters or []),
        filter_expression=filter_expression,
        order_by=parse_order_by(order_by or []) or None,
        page_size=min(page_size, limit) if limit else page_size,
        include_private=include_private,
        entity=entity if entity is not None else DEFAULT_ENTITY,
        timestamp_field=MODIFIED_FIELD if has_timestamp else None,
    )
    try:
        _print_rows(pager, wanted, limit=limit, raw=raw)
    except IntacctAPIError as exc:
        if UNKNOWN_OBJECT_CODE not in (exc.error_id, exc.code):
            raise
        hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
        fail(
            f"unknown object {object_name!r}{hint} "
            "(`intacct objects list` shows every object of the spec)"
        )


def _print_rows(pager: QueryPager, wanted: list[str], *, limit: int | None, raw: bool) -> None:
    """JSON Lines on stdout, page by page (nested records unless ``raw``)."""
    out = sys.stdout.buffer
    plan = RowPlan(wanted)
    dropped = 0
    printed = 0
    for page in pager:
        if len(pager.dropped_fields) != dropped:
            dropped = len(pager.dropped_fields)
            plan = RowPlan([f for f in wanted if f not in pager.dropped_fields])
        for row in page:
            out.write(_ENCODER.encode(row if raw else plan(row)) + b"\n")
            printed += 1
            if limit is not None and printed >= limit:
                out.flush()
                return
    out.flush()


def call_command(
    ctx: typer.Context,
    operation_id: Annotated[str, typer.Argument(metavar="OPERATION_ID")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Repeatable NAME=VALUE (path, query or header)."),
    ] = None,
    body: Annotated[
        str | None, typer.Option("--body", help="JSON request body, or @file.json.")
    ] = None,
) -> None:
    """Call any operation by operationId and print the JSON response."""
    cli = get_context(ctx)
    params, payload = parse_params(param or []), _body(body)
    response = cli.client.call(operation_id, query=params, body=payload)
    echo_json(response.json())


def register(app: typer.Typer) -> None:
    """Add `query` and `call` to the `intacct` app."""
    app.command("query")(query_command)
    app.command("call")(call_command)
