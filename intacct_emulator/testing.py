"""Run a real emulator from Python: for tests, benchmarks and the demo.

Two variants with the same surface (`base_url`, `root_url`, `stats()`, `reset()`,
`set_faults(**knobs)`, `token()`):

* `EmulatorServer` runs uvicorn in a background thread of this process and also exposes
  `.company`, for tests that need to reach into the data (e.g. `company.touch(...)`).
* `EmulatorProcess` runs the `intacct-emulator serve` console script as a child process: what
  end-to-end tests and benchmarks use, so the server's CPU time is not the client's.

Both bind a free loopback port chosen by the OS (never a fixed one) and stop on context exit;
the child process also exits by itself if its parent dies.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import uvicorn

from intacct_emulator.app import create_app
from intacct_emulator.cli import READY_PREFIX, bind_listener
from intacct_emulator.config import (
    API_PREFIX,
    CONTROL_PREFIX,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_USERNAME,
    EmulatorConfig,
)

START_TIMEOUT = 30.0


class _Controls:
    """Control-endpoint helpers shared by both variants (sync httpx, short timeouts)."""

    root_url: str
    _http: httpx.Client | None = None

    def start(self) -> Self:
        """Start the emulator (each variant implements it)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the emulator (each variant implements it)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What a client's `base_url` setting should be."""
        return self.root_url + API_PREFIX

    @property
    def http(self) -> httpx.Client:
        """A keep-alive client for control calls (a fresh httpx client costs ~15 ms)."""
        if self._http is None:
            self._http = httpx.Client(timeout=10.0)
        return self._http

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _control(self, method: str, name: str, json: Any = None) -> Any:
        response = self.http.request(method, f"{self.root_url}{CONTROL_PREFIX}/{name}", json=json)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        """`{"requests": {"POST /services/core/query": n, ...}, "responses": {...}}`."""
        result: dict[str, Any] = self._control("GET", "stats")
        return result

    def requests(self) -> dict[str, int]:
        """Just the per-endpoint request counts."""
        counts: dict[str, int] = self.stats()["requests"]
        return counts

    def reset(self, **parts: bool) -> None:
        """Reset stats, faults, data, tokens, idempotency; `tokens=False` keeps tokens."""
        self._control("POST", "reset", json=parts)

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the emulated clock (idempotency windows) forward by ``seconds``."""
        result: dict[str, Any] = self._control("POST", "clock", {"advance_seconds": seconds})
        return result

    def set_idempotency(self, **options: Any) -> dict[str, Any]:
        """Switch undocumented idempotency behaviour (``after_result_ttl``)."""
        result: dict[str, Any] = self._control("POST", "idempotency", options)
        return result

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        """Change fault knobs (names as in `intacct_emulator.faults.FaultKnobs`)."""
        result: dict[str, Any] = self._control("POST", "faults", json=knobs)
        return result

    def token(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        username: str = DEFAULT_USERNAME,
    ) -> dict[str, Any]:
        """A client-credentials token response (for tests that do not exercise auth itself)."""
        response = self.http.post(
            f"{self.base_url}/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "username": username,
            },
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def auth_headers(self, **kwargs: str) -> dict[str, str]:
        """`{"Authorization": "Bearer ..."}` for a fresh client-credentials token."""
        return {"Authorization": "Bearer " + self.token(**kwargs)["access_token"]}


class EmulatorServer(_Controls):
    """The emulator in a background thread of this process.

    `EmulatorServer(seed_records=20)` or `EmulatorServer(EmulatorConfig(...))`; keyword
    arguments override fields of the config.
    """

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        config = config or EmulatorConfig()
        for name, value in overrides.items():
            if not hasattr(config, name):
                raise TypeError(f"EmulatorConfig has no field {name!r}")
            setattr(config, name, value)
        self.config = config
        self.app = create_app(config)
        self.company = self.app.state.emulator.company
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.root_url = ""

    def start(self) -> Self:
        self._sock = bind_listener("127.0.0.1", 0)
        port = self._sock.getsockname()[1]
        self.root_url = f"http://127.0.0.1:{port}"
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
        )
        self._server = server
        sockets = [self._sock]
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": sockets}, name="intacct-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._close_http()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _console_command() -> list[str]:
    """The installed `intacct-emulator` script next to this interpreter, else `-m`."""
    script = Path(sys.executable).with_name("intacct-emulator")
    if script.exists():
        return [str(script)]
    found = shutil.which("intacct-emulator")
    return [found] if found else [sys.executable, "-m", "intacct_emulator.cli"]


class EmulatorProcess(_Controls):
    """The emulator as a child process running `intacct-emulator serve --port 0 ...`.

    `args` are extra CLI flags, e.g. `["--seed-records", "1000", "--db", path]`. The child's
    stdout/stderr are drained in the background (kept in `.output` for diagnostics).
    """

    def __init__(self, args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.args = list(args or [])
        self.env = env
        self.root_url = ""
        self.output: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._returncode: int | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Self:
        command = [
            *_console_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--exit-with-parent",
            str(os.getpid()),
            *self.args,
        ]
        self._proc = subprocess.Popen(  # noqa: S603 - our own console script, no shell
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(self.env or {})},
        )
        lines: queue.Queue[str | None] = queue.Queue()
        stream = self._proc.stdout
        if stream is None:  # pragma: no cover - stdout=PIPE always gives a stream
            raise RuntimeError("no stdout pipe")
        self._reader = threading.Thread(target=self._drain, args=(stream, lines), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise RuntimeError("the emulator process did not start:\n" + "".join(self.output))
            if line.startswith(READY_PREFIX):
                base_url = line[len(READY_PREFIX) :].strip()
                self.root_url = base_url.removesuffix(API_PREFIX)
                break
        self._wait_healthy(deadline)
        return self

    def _drain(self, stream: IO[str], lines: queue.Queue[str | None]) -> None:
        for line in stream:
            self.output.append(line)
            lines.put(line)
        lines.put(None)

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get(f"{self.root_url}{CONTROL_PREFIX}/health").is_success:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator process never became healthy")
            time.sleep(0.02)

    def stop(self) -> None:
        self._close_http()
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)  # EOF after exit; close only once it stopped reading
        if proc.stdout is not None:
            proc.stdout.close()
        self._returncode = proc.returncode
        self._proc = None

    @property
    def returncode(self) -> int | None:
        """The exit status once stopped (uvicorn exits 0 after a graceful SIGTERM shutdown)."""
        return self._proc.poll() if self._proc is not None else self._returncode
