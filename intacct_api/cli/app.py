"""The `intacct` operator CLI: one typer app, command groups plugged in from their own modules.

Each command-group module exposes `register(app)`; this module owns only what they share: the
global connection options (flags, `INTACCT_*` environment variables, an optional JSON config
file in the same format as the tap's and target's config), access to the registry and the
client, and turning our errors into one clean line on stderr with a non-zero exit (no
traceback for user errors).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from intacct_api.errors import IntacctError
from intacct_api.settings import SETTING_HELP, ConnectionSettings

if TYPE_CHECKING:
    from intacct_api.client import IntacctClient
    from intacct_api.spec import SpecRegistry

# Command groups, in help order. Each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = (
    "intacct_api.cli.spec_commands",
    "intacct_api.cli.auth_commands",
    "intacct_api.cli.query_commands",
    "intacct_api.cli.mutate_commands",
    "intacct_api.cli.doctor_commands",
)


@dataclass
class CliContext:
    """What every command needs, built lazily so `operations list` never touches the network."""

    overrides: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None

    @cached_property
    def settings(self) -> ConnectionSettings:
        """Config file first, then environment/flags (typer already merged those two)."""
        config: dict[str, Any] = {}
        if self.config_file is not None:
            try:
                config.update(json.loads(self.config_file.read_text()))
            except (OSError, ValueError) as exc:
                fail(f"cannot read config file {self.config_file}: {exc}")
        config.update({k: v for k, v in self.overrides.items() if v not in (None, [], "")})
        return ConnectionSettings.from_config(config)

    @cached_property
    def registry(self) -> SpecRegistry:
        """The spec registry honouring `--spec-path`/`spec_path`."""
        from intacct_api.spec import default_registry

        return default_registry(tuple(self.settings.spec_path))

    @cached_property
    def client(self) -> IntacctClient:
        """One client for the command's lifetime (pooled connections, one token manager)."""
        from intacct_api.client import IntacctClient

        return IntacctClient(self.settings, registry=self.registry)

    def close(self) -> None:
        """Release the client's pooled connections if a command opened it (run on exit)."""
        client = self.__dict__.get("client")
        if client is not None:
            client.close()


def get_context(ctx: typer.Context) -> CliContext:
    """The shared context of the running command (created by the app callback)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliContext):  # a group registered on a bare Typer in tests
        root.obj = CliContext()
        root.call_on_close(root.obj.close)
    return root.obj


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a user-facing error on stderr and exit non-zero, without a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def echo_json(document: Any) -> None:
    """Print one JSON document on stdout (the `--json` contract of listing commands)."""
    typer.echo(json.dumps(document, indent=2, default=str))


app = typer.Typer(
    name="intacct",
    help="Operate a Sage Intacct connection: log in, browse the API spec, query, call, mutate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="INTACCT_CONFIG",
            help="JSON config file (same keys as the tap/target config).",
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(envvar="INTACCT_BASE_URL", help=SETTING_HELP["base_url"])
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(envvar="INTACCT_CLIENT_ID", help=SETTING_HELP["client_id"])
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="INTACCT_CLIENT_SECRET",
            help=SETTING_HELP["client_secret"] + " Prefer the environment variable.",
        ),
    ] = None,
    username: Annotated[
        str | None,
        typer.Option(envvar="INTACCT_USERNAME", help=SETTING_HELP["username"]),
    ] = None,
    token_store: Annotated[
        str | None, typer.Option(envvar="INTACCT_TOKEN_STORE", help=SETTING_HELP["token_store"])
    ] = None,
    entity: Annotated[
        str | None, typer.Option(envvar="INTACCT_ENTITY", help=SETTING_HELP["entity"])
    ] = None,
    spec_path: Annotated[
        list[str] | None,
        typer.Option(envvar="INTACCT_SPEC_PATH", help=SETTING_HELP["spec_path"]),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG.")] = False,
) -> None:
    """Global connection options; every command reads them through `get_context`."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = cli_context = CliContext(
        overrides={
            "base_url": base_url,
            "client_id": client_id,
            "client_secret": client_secret,
            "username": username,
            "token_store": token_store,
            "entity": entity,
            "spec_path": spec_path or [],
        },
        config_file=config,
    )
    ctx.call_on_close(cli_context.close)


def build_app() -> typer.Typer:
    """Register every command group on the app (idempotent)."""
    if not getattr(app, "_intacct_registered", False):
        for module_name in COMMAND_MODULES:
            importlib.import_module(module_name).register(app)
        app._intacct_registered = True  # type: ignore[attr-defined]
    return app


def main() -> None:
    """Console-script entry point: our errors become one line on stderr, exit code 1."""
    cli = build_app()
    try:
        code = cli(standalone_mode=False)
        if isinstance(code, int) and code:  # click returns (not raises) Exit codes here
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except IntacctError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors carry their own formatting
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
