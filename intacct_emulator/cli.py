"""`intacct-emulator serve`: run the emulator as a real HTTP server on loopback.

argparse rather than typer: the console script starts in a fraction of the time, which matters
because end-to-end tests and benchmarks start it as a subprocess many times. uvicorn runs one
worker (all state is in-process); its `auto` loop/http settings pick uvloop/httptools when they
happen to be installed, and the access log is off unless `--log-level debug` (it costs more than
the routing does).

The socket is bound here, before uvicorn starts, so `--port 0` works: the line
`Intacct emulator listening on http://HOST:PORT/ia/api/v1` carries the real port, and helpers
(`intacct_emulator.testing.EmulatorProcess`) read it from stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from intacct_emulator.config import (
    API_PREFIX,
    CONTROL_PREFIX,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TOKEN_LIFETIME,
    ClientConfig,
    EmulatorConfig,
    default_clients,
)

READY_PREFIX = "Intacct emulator listening on "
"""Start of the stdout line announcing the base URL (parsed by EmulatorProcess)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intacct-emulator",
        description="A local server that behaves like the Sage Intacct REST API v1.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the emulator")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    serve.add_argument("--db", default=":memory:", help="SQLite file, or :memory: (default)")
    serve.add_argument(
        "--seed-records",
        type=int,
        default=0,
        metavar="N",
        help="generate N records per everyday object on an empty database",
    )
    serve.add_argument(
        "--random-seed",
        type=int,
        default=0,
        metavar="S",
        help="seed for generated data and random faults (same seed, same data)",
    )
    serve.add_argument(
        "--token-lifetime",
        type=float,
        default=DEFAULT_TOKEN_LIFETIME,
        metavar="SECONDS",
        help="access-token lifetime (default 43200)",
    )
    serve.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="ID:SECRET:USER",
        help="extra OAuth client (user as user@COMPANY); repeatable",
    )
    serve.add_argument(
        "--spec-path",
        action="append",
        default=[],
        metavar="PATH",
        help="extra OpenAPI file or folder (later wins); repeatable",
    )
    serve.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        metavar="N",
        help="concurrent request limit (429 beyond it)",
    )
    serve.add_argument(
        "--rate-per-minute",
        type=int,
        default=None,
        metavar="N",
        help="request rate limit per minute (429 beyond it)",
    )
    serve.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="any fault or fidelity switch at start, value as JSON (e.g. token_error_status=400, "
        "entity_headers='[\"X-IA-API-ParamEntity\"]'); repeatable, see docs/FIDELITY.md",
    )
    serve.add_argument(
        "--companies",
        default=None,
        metavar="FILE",
        help="serve several companies from a JSON file, told apart by credentials "
        "(intacct_emulator/multi_company.py); each company's data and faults come from the file",
    )
    serve.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--exit-with-parent", type=int, default=None, metavar="PID", help=argparse.SUPPRESS
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Translate parsed flags into the EmulatorConfig every front end shares."""
    clients = default_clients()
    for spec in args.client:
        try:
            clients.append(ClientConfig.parse(spec))
        except ValueError as exc:
            raise SystemExit(f"--client {spec.split(':', 1)[0]}:...: {exc}") from None
    faults: dict[str, object] = {"random_seed": args.random_seed}
    if args.max_concurrent:
        faults["max_concurrent"] = args.max_concurrent
    if args.rate_per_minute:
        faults["rate_per_minute"] = args.rate_per_minute
    if args.latency_ms:
        faults["latency_ms"] = args.latency_ms
    for item in args.fault:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--fault {item!r}: expected NAME=JSON")
        try:
            faults[name.strip()] = json.loads(raw)
        except ValueError:
            faults[name.strip()] = raw  # a bare word: a string value
    return EmulatorConfig(
        db=args.db,
        seed_records=args.seed_records,
        random_seed=args.random_seed,
        token_lifetime=args.token_lifetime,
        clients=clients,
        faults=faults,
        spec_paths=list(args.spec_path),
    )


def _banner(config: EmulatorConfig, base_url: str, root_url: str) -> str:
    """Start-up text: where to point clients and with which (demo) credentials."""
    lines = [
        READY_PREFIX + base_url,
        f"  control:       {root_url}{CONTROL_PREFIX}/stats | /reset | /faults | /health",
        f"  database:      {config.db}",
        f"  client id:     {DEFAULT_CLIENT_ID}",
        f"  client secret: {DEFAULT_CLIENT_SECRET}",
        f"  username:      {config.clients[0].username}",
    ]
    lines.extend(f"  extra client:  {c.client_id} (user {c.username})" for c in config.clients[1:])
    return "\n".join(lines)


def _watch_parent(pid: int, stop: threading.Event) -> None:
    """Exit when the process that started us is gone (a crashed test must not leak servers)."""
    while not stop.wait(0.5):
        try:
            os.kill(pid, 0)
        except OSError:
            os._exit(0)
        if os.getppid() != pid:
            os._exit(0)


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn, bound before start so port 0 can be reported.

    `proto=IPPROTO_TCP` is not a formality: asyncio only sets TCP_NODELAY on accepted sockets
    whose listener says TCP, and without it every keep-alive response stalls ~40 ms on Nagle +
    delayed ACK (measured: 44 ms vs 0.3 ms per request).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections queue from now on, so announcing the URL is truthful
    return sock


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Placeholder handler; see `serve`."""


def serve(args: argparse.Namespace) -> int:
    # Imported here so `intacct-emulator --help` does not pay for Starlette, uvicorn, the specs.
    import uvicorn

    from intacct_emulator.app import create_app

    config = config_from_args(args)
    if args.companies:
        from intacct_emulator.multi_company import create_multi_company_app, load_companies

        app: Any = create_multi_company_app(load_companies(args.companies))
    else:
        app = create_app(config)
    # Everything loaded so far (spec registry, schemas, Starlette, uvicorn) lives as long as the
    # server: keep it out of the collector's generations so a full collection does not walk it.
    gc.collect()
    gc.freeze()
    sock = bind_listener(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if sock.family == socket.AF_INET6 else args.host
    root_url = f"http://{host}:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=args.log_level,
            access_log=args.log_level == "debug",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    stop = threading.Event()
    if args.exit_with_parent:
        threading.Thread(
            target=_watch_parent, args=(args.exit_with_parent, stop), daemon=True
        ).start()
    print(_banner(config, root_url + API_PREFIX, root_url), flush=True)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal against the
    # handler it found at start; a no-op handler turns that into a normal exit with status 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore_signal)
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        sock.close()
    return 0 if server.started else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    args = build_parser().parse_args(argv)
    try:
        import starlette  # noqa: F401 - only to tell the user what is missing
        import uvicorn  # noqa: F401
    except ImportError:
        print(
            "intacct-emulator needs its server stack: pip install 'intacct-singer[emulator]'",
            file=sys.stderr,
        )
        return 2
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
