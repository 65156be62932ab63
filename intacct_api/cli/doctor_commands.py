"""`intacct doctor`: check a company against what the connector assumes (see intacct_api.doctor).

Objects to check come from ``--object`` (repeatable) or, when a tap config is given with
``--config``, from its ``objects`` list (exact names; patterns with ``*`` are skipped), and the
audit-history check runs unless the config says ``deletes`` is something other than
``audit``. Exit status 1 when any check fails, so it can gate a deployment.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from intacct_api.cli.app import echo_json, fail, get_context
from intacct_api.doctor import Doctor, format_table, results_json
from intacct_api.errors import IntacctError

__all__ = ["doctor_command", "register"]


def _config_file_values(ctx: typer.Context) -> dict[str, Any]:
    path = get_context(ctx).config_file
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # the shared settings already reported an unreadable file
    return data if isinstance(data, dict) else {}


def doctor_command(
    ctx: typer.Context,
    objects: Annotated[
        list[str] | None,
        typer.Option(
            "--object",
            "-o",
            metavar="OBJECT",
            help="Object to check read access for (repeatable).",
        ),
    ] = None,
    write_test: Annotated[
        str | None,
        typer.Option(
            "--write-test",
            metavar="OBJECT",
            help="Also create, update and delete throw-away records of OBJECT (sandbox advised).",
        ),
    ] = None,
    write_record: Annotated[
        str | None,
        typer.Option(
            "--write-record",
            metavar="JSON",
            help='JSON fields for the throw-away record (default {"id": ..., "name": ...}).',
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Check this company against every behaviour the connector relies on (read-only by default)."""
    cli = get_context(ctx)
    config = _config_file_values(ctx)
    chosen = list(objects or [])
    if not chosen:
        configured = config.get("objects")
        if isinstance(configured, list):
            chosen = [str(o) for o in configured if isinstance(o, str) and "*" not in o]
    record: dict[str, Any] = {}
    if write_record:
        try:
            parsed = json.loads(write_record)
        except ValueError as exc:
            fail(f"--write-record is not JSON: {exc}")
        if not isinstance(parsed, dict):
            fail("--write-record must be a JSON object")
        record = parsed
    try:
        doctor = Doctor(
            cli.client,
            objects=[cli.registry.object(name).name for name in chosen],
            audit_deletes=config.get("deletes", "audit") == "audit",
            write_object=cli.registry.object(write_test).name if write_test else None,
            write_record=record,
        )
        results = doctor.run()
    except IntacctError as exc:
        fail(str(exc))
    if as_json:
        echo_json(results_json(results))
    else:
        typer.echo(format_table(results))
    if any(r.status == "fail" for r in results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `doctor` to the `intacct` app."""
    app.command("doctor")(doctor_command)
