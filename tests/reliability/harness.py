"""Shared machinery of the reliability suite: running the binaries, reading emulator data,
a recording loopback server, planted secrets, and the figures the summary prints.

Why subprocesses: the promises under test (exit status, stderr text, STATE lines on stdout,
the token store shared between processes, SIGKILL) only exist at the process boundary, so
every product run here is the installed console script, never an in-process call.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
TAP = str(BIN / "tap-intacct")
TARGET = str(BIN / "target-intacct")
INTACCT = str(BIN / "intacct")

# Recognisable secrets: an extra OAuth client registered with the emulator at start.
PLANTED_CLIENT_ID = "reliability-client"
PLANTED_SECRET = "PLANTED-S3CRET-c1i3nt-9d1e7f"
PLANTED_USER = "admin@DEMO"
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
"""Any JWT-shaped string: the emulator's tokens are JWTs, so this catches rotated ones too."""

SEED = 120
"""Records per everyday object in the session emulator: small, yet many pages at PAGE."""
PAGE = 25
CUSTOMER = "accounts-receivable/customer"
VENDOR = "accounts-payable/vendor"
STREAMS = {CUSTOMER: "accounts_receivable__customer", VENDOR: "accounts_payable__vendor"}


# ---------------------------------------------------------------------------------- figures


@dataclass
class Collector:
    """What the suite proved, accumulated by the tests and printed by `pytest_terminal_summary`.

    Faults are counted as the emulator (or a test server) actually delivered them, not as
    requested, so the summary never claims a fault nobody met.
    """

    faults: Counter[str] = field(default_factory=Counter)
    runs_completed: int = 0
    runs_stopped_cleanly: int = 0
    records_verified: int = 0
    records_lost: int = 0
    duplicates: int = 0
    bad_inputs: Counter[str] = field(default_factory=Counter)
    secret_scans: int = 0
    secrets_leaked: int = 0
    default_retry_runs: int = 0
    """Runs made with the retry settings a user has (test_write_truth), not shortened ones."""

    def fault(self, kind: str, count: int = 1) -> None:
        if count > 0:
            self.faults[kind] += count

    def verified(self, expected: Iterable[str], seen: Iterable[str]) -> tuple[set[str], int]:
        """Compare keys; count loss and duplicates; return (missing keys, duplicate count)."""
        expected_set = set(expected)
        seen_list = list(seen)
        counts = Counter(seen_list)
        missing = expected_set - set(seen_list)
        dupes = sum(n - 1 for n in counts.values() if n > 1)
        self.records_verified += len(expected_set)
        self.records_lost += len(missing)
        self.duplicates += dupes
        return missing, dupes

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.bad_inputs.items())) or "none"
        return [
            f"faults injected:        {sum(self.faults.values())} ({faults})",
            f"runs completed:         {self.runs_completed}",
            f"runs stopped cleanly:   {self.runs_stopped_cleanly} (clear error, exit != 0)",
            f"records verified:       {self.records_verified}",
            f"records lost:           {self.records_lost}",
            f"duplicates:             {self.duplicates}",
            f"bad inputs rejected:    {sum(self.bad_inputs.values())} with reasons ({rejected})",
            f"outputs scanned:        {self.secret_scans}, secrets leaked: {self.secrets_leaked}",
            f"default retry settings: {self.default_retry_runs} runs (write truth: replays, "
            "unknown outcomes, double 401, kill -9 reruns)",
        ]


COLLECTOR = Collector()


# ---------------------------------------------------------------------------------- running


@dataclass
class Run:
    """One finished subprocess run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def messages(self) -> list[dict[str, Any]]:
        """Singer messages on stdout (a tap's output)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [
            m["record"]
            for m in self.messages()
            if m.get("type") == "RECORD" and m.get("stream") == stream
        ]

    def describe(self) -> str:
        tail = "\n".join(self.stderr.splitlines()[-25:])
        return f"{' '.join(self.argv[:3])} -> {self.returncode}\n{tail}"


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(config))
    return path


def run(
    argv: list[str],
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> Run:
    """Run a console script to completion with captured output."""
    started = time.monotonic()
    proc = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def run_tap(config_path: Path, *args: str, **kwargs: Any) -> Run:
    kwargs.setdefault("cwd", config_path.parent)
    return run([TAP, "--config", str(config_path), *args], **kwargs)


def run_target(config_path: Path, input_text: str, **kwargs: Any) -> Run:
    """Run the target in the config's folder, so a default results file lands there too."""
    kwargs.setdefault("cwd", config_path.parent)
    return run([TARGET, "--config", str(config_path)], stdin=input_text, **kwargs)


def kill_when(
    argv: list[str],
    should_kill: Callable[[list[str]], bool],
    *,
    stdin_path: Path | None = None,
    timeout: float = 60,
) -> tuple[list[str], bool]:
    """Start `argv`, read stdout lines, SIGKILL it as soon as `should_kill(lines)` says so.

    Returns (stdout lines read before the kill, whether it was killed). SIGKILL, not SIGTERM:
    the point is a crash with no chance to flush or clean up.
    """
    stdin = stdin_path.open("rb") if stdin_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines: list[str] = []
    killed = False
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if should_kill(lines):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            if time.monotonic() > deadline:
                break
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        if stdin_path is not None and hasattr(stdin, "close"):
            stdin.close()  # type: ignore[union-attr]
    return lines, killed


def kill_when_file(
    argv: list[str], stdin_path: Path, watched: Path, min_lines: int, timeout: float = 60
) -> bool:
    """Start `argv` and SIGKILL it once `watched` holds `min_lines` lines (the target's results)."""
    with stdin_path.open("rb") as stdin:
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        killed = False
        while proc.poll() is None and time.monotonic() < deadline:
            if watched.exists() and watched.read_bytes().count(b"\n") >= min_lines:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return killed


# ---------------------------------------------------------------------------------- emulator


def connection(emulator: Any, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Connection settings for the planted client, with short retry waits."""
    return {
        "base_url": emulator.base_url,
        "client_id": PLANTED_CLIENT_ID,
        "client_secret": PLANTED_SECRET,
        "username": PLANTED_USER,
        "token_store": str(tmp_path / "tokens.json"),
        "max_retries": 8,
        "max_retry_wait": 2,
        **extra,
    }


def tap_config(emulator: Any, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    defaults = {"objects": list(STREAMS), "page_size": PAGE, "include_private": True}
    return connection(emulator, tmp_path, **{**defaults, **extra})


def target_config(emulator: Any, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    defaults = {"results_path": str(tmp_path / "results.jsonl"), "on_error": "continue"}
    return connection(emulator, tmp_path, **{**defaults, **extra})


def emulator_rows(
    emulator: Any, object_name: str, fields: Iterable[str] = ("key", "id")
) -> list[dict[str, Any]]:
    """Every row of an object as the emulator holds it, read over plain HTTP (not our client).

    Independent of the product's pager on purpose: a pager bug must not hide itself here.
    """
    headers = emulator.auth_headers()
    rows: list[dict[str, Any]] = []
    start = 1
    while True:
        body = {
            "object": object_name,
            "fields": list(fields),
            "orderBy": [{"key": "asc"}],
            "start": start,
            "size": 4000,
            "filterParameters": {"includePrivate": True},
        }
        response = httpx.post(
            emulator.base_url + "/services/core/query", json=body, headers=headers, timeout=30
        )
        response.raise_for_status()
        payload = response.json()
        rows.extend(payload["ia::result"])
        nxt = payload.get("ia::meta", {}).get("next")
        if not nxt:
            return rows
        start = int(nxt)


def stop_faults(emulator: Any) -> None:
    """Back to no faults (data, tokens, stats and idempotency kept), so checks read cleanly."""
    emulator.reset(stats=False, data=False, tokens=False, idempotency=False)


def emulator_keys(emulator: Any, object_name: str) -> list[str]:
    return [str(r["key"]) for r in emulator_rows(emulator, object_name, ("key",))]


def pages(records: int) -> int:
    return math.ceil(records / PAGE)


# ---------------------------------------------------------------------------------- scanning


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """Which planted secrets (or JWT-shaped tokens) occur in `text`; names only, never values."""
    found = [f"secret#{i}" for i, s in enumerate(secrets) if s and s in text]
    found.extend("jwt-shaped token" for _ in JWT_PATTERN.finditer(text))
    return found


def stored_tokens(store: Path) -> list[str]:
    """Every token value in a token store file (to grep outputs for them)."""
    if not store.exists():
        return []
    document = json.loads(store.read_text())
    values: list[str] = []
    for entry in document.get("tokens", {}).values():
        values.extend(v for k, v in entry.items() if k.endswith("_token") and v)
    return values


# ---------------------------------------------------------------------------------- server


@dataclass
class Seen:
    """One request a RecordingServer received (header names lower-case)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def carries(self, secrets: Iterable[str]) -> bool:
        blob = self.target + json.dumps(self.headers) + self.body.decode("latin-1")
        return "authorization" in self.headers or any(s and s in blob for s in secrets)


Responder = Callable[[Seen], tuple[int, dict[str, str], bytes]]


class RecordingServer:
    """A loopback HTTP(S) server that records every request and answers via `responder`.

    Used where the emulator cannot play the part: a host that redirects elsewhere, a host
    with an untrusted certificate.
    """

    def __init__(self, responder: Responder, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Seen] = []
        self.handshake_failures = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                owner.requests.append(seen)
                status, headers, body = responder(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve  # noqa: N815 - stdlib names

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                owner.handshake_failures += 1

        self._httpd = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._httpd.server_address[1]}/ia/api/v1"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def json_reply(status: int, payload: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode()
