"""`intacct mutate`: the Mutate engine from the shell, JSON lines in, JSON lines out.

    intacct mutate accounts-payable/vendor --operation upsert < vendors.jsonl

One result line per input line, in input order (``line`` = input line number). A line that is
not a JSON object becomes an error result naming its line number; the others continue. The
exit code is 1 when any record failed, unless ``--no-fail-on-error``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec
import typer

from intacct_api.cli.app import fail, get_context
from intacct_api.errors import IntacctError
from intacct_api.mutate import OPERATIONS, MutateEngine, MutateItem

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder(enc_hook=str)


def _items(stream: Any, operation: str, entity: str | None) -> Iterator[MutateItem]:
    """Parse stdin lazily; blank lines are skipped, malformed ones become error items."""
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            record = _DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            yield MutateItem(
                record={},
                operation=operation,
                index=number - 1,
                line=number,
                error=f"line {number}: malformed JSON: {exc}",
                error_code="malformedLine",
            )
            continue
        if not isinstance(record, dict):
            yield MutateItem(
                record={},
                operation=operation,
                index=number - 1,
                line=number,
                error=f"line {number}: expected a JSON object, got {type(record).__name__}",
                error_code="malformedLine",
            )
            continue
        yield MutateItem(
            record=record, operation=operation, index=number - 1, line=number, entity=entity
        )


def mutate(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Object (app/object), stream name or operationId.")],
    operation: Annotated[
        str | None,
        typer.Option(
            "--operation",
            "-o",
            help="create | update | upsert | delete (default: from the operationId, else upsert).",
        ),
    ] = None,
    match_on: Annotated[
        str, typer.Option("--match-on", help="Upsert: natural-key field to look records up by.")
    ] = "id",
    atomic: Annotated[
        bool, typer.Option("--atomic", help="Each request all-or-nothing (transaction header).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate only; never call the API.")
    ] = False,
    entity: Annotated[
        str | None, typer.Option("--entity", help="Entity for every record (or `_entity`).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=500)] = 500,
    fail_on_error: Annotated[
        bool,
        typer.Option("--fail-on-error/--no-fail-on-error", help="Exit 1 when any record failed."),
    ] = True,
) -> None:
    """Write JSON-lines records from stdin; print one JSON result per input line."""
    cli = get_context(ctx)
    if operation is not None and operation not in OPERATIONS:
        fail(f"--operation must be one of {', '.join(OPERATIONS)}")
    try:
        engine = MutateEngine(
            cli.registry,
            None if dry_run else cli.client,
            batch_size=batch_size,
            atomic=atomic,
            dry_run=dry_run,
            entity=entity or cli.settings.entity,
            match_on=match_on,
        )
        info, op = engine.resolve(target, operation)
    except IntacctError as exc:
        fail(str(exc))
    failed = 0
    out = sys.stdout
    for result in engine.mutate_items(info.name, _items(sys.stdin, op, entity), match_on=match_on):
        failed += not result.ok
        out.write(_ENCODER.encode(result.to_dict()).decode() + "\n")
    out.flush()
    if failed:
        typer.echo(f"{failed} record(s) failed", err=True)
        if fail_on_error:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `intacct mutate` to the app."""
    app.command("mutate")(mutate)
