"""Settings, login and connection problems end a tap run in two lines, not a traceback.

The installed ``tap-intacct`` runs against the emulator (or a closed loopback port) with a
wrong secret, no credentials at all, and an unreachable ``base_url``. Each run must exit 1 with
an ERROR line saying what is wrong and one naming the setting to fix, and no traceback, unless
the log level is DEBUG.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from intacct_emulator.testing import EmulatorServer

TAP = Path(sys.executable).parent / "tap-intacct"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_tap(tmp_path: Path, config: dict, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"objects": ["accounts-payable/vendor"], **config}))
    return subprocess.run(
        [str(TAP), "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed_records=2) as server:
        yield server


@pytest.mark.parametrize(
    ("case", "expected", "setting"),
    [
        ("wrong_secret", "invalid_client", "TAP_INTACCT_CLIENT_SECRET"),
        ("no_credentials", "no usable token", "TAP_INTACCT_USERNAME"),
        ("unreachable", "cannot reach", "TAP_INTACCT_BASE_URL"),
    ],
)
def test_settings_errors_are_two_lines_naming_the_fix(
    tmp_path: Path, emulator: EmulatorServer, case: str, expected: str, setting: str
) -> None:
    config: dict = {"base_url": emulator.base_url, "token_store": str(tmp_path / "t.json")}
    if case == "wrong_secret":
        config.update(client_id="demo-client", client_secret="WRONG", username="admin@DEMO")
    elif case == "unreachable":
        config.update(client_id="demo-client", client_secret="demo-secret", max_retries=1)
        config["username"] = "admin@DEMO"
        config["base_url"] = f"http://127.0.0.1:{closed_port()}/ia/api/v1"
    done = run_tap(tmp_path, config)
    assert done.returncode == 1
    assert done.stdout == ""  # no SCHEMA, no RECORD: nothing started
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 2, done.stderr
    assert expected in errors[0]
    assert "fix:" in errors[1]
    assert setting in errors[1]
    assert "Traceback" not in done.stderr
    assert "WRONG" not in done.stderr  # the secret itself is never logged


def test_the_traceback_is_there_at_debug_level(tmp_path: Path, emulator: EmulatorServer) -> None:
    config = {
        "base_url": emulator.base_url,
        "token_store": str(tmp_path / "t.json"),
        "client_id": "demo-client",
        "client_secret": "WRONG",
    }
    done = run_tap(tmp_path, config, TAP_INTACCT_LOGLEVEL="DEBUG")
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "fix:" in done.stderr
