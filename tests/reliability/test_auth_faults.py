"""Tokens under stress: rotation shared by two processes, and grants that are gone for good.

* A tap and a target run at the same time on one token store while every access token is
  killed every 0.2 s. Each kill forces a refresh, and the emulator rotates refresh tokens (a
  used one is dead), so any process that refreshes with a stale refresh token gets
  `invalid_grant`. Both runs must succeed and the emulator must never have answered
  `invalid_grant`: only the store's lock and re-read can achieve that. The emulator runs in a
  thread here only so its OAuth server can be instrumented; tap and target are subprocesses.
* A revoked grant, and a grant superseded by a second authorization (REST-2102), cannot be
  fixed by retrying: the run must stop with a clear "log in again" and make exactly one token
  request (no refresh loop).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from intacct_emulator.config import ClientConfig, EmulatorConfig, default_clients
from intacct_emulator.oauth import OAuthError
from intacct_emulator.testing import EmulatorServer
from reliability.harness import (
    CUSTOMER,
    INTACCT,
    PLANTED_CLIENT_ID,
    PLANTED_SECRET,
    PLANTED_USER,
    SEED,
    TAP,
    TARGET,
    VENDOR,
    Collector,
    emulator_keys,
    emulator_rows,
    run_tap,
    stop_faults,
    tap_config,
    target_config,
    write_config,
)


@pytest.fixture
def instrumented() -> Iterator[tuple[EmulatorServer, Counter[str]]]:
    """An in-thread emulator whose token endpoint outcomes are counted (grant and error)."""
    config = EmulatorConfig(
        clients=[*default_clients(), ClientConfig(PLANTED_CLIENT_ID, PLANTED_SECRET, PLANTED_USER)]
    )
    server = EmulatorServer(config).start()
    server.company.seed(1, 5, objects=["company-config/entity"])
    server.company.seed_object(CUSTOMER, SEED, 3)
    oauth = server.app.state.emulator.oauth
    outcomes: Counter[str] = Counter()
    original = oauth.token

    def counting(params: Any, basic: Any) -> Any:
        try:
            body = original(params, basic)
        except OAuthError as exc:
            outcomes[f"error:{exc.error}"] += 1
            raise
        outcomes[f"grant:{params.get('grant_type')}"] += 1
        return body

    oauth.token = counting
    try:
        yield server, outcomes
    finally:
        server.stop()


def test_rotation_shared_by_tap_and_target_running_at_once(
    instrumented: tuple[EmulatorServer, Counter[str]], tmp_path: Path, collector: Collector
) -> None:
    server, outcomes = instrumented
    tap_cfg = write_config(
        tmp_path / "tap.json", tap_config(server, tmp_path, objects=[CUSTOMER], page_size=10)
    )
    target_cfg = write_config(
        tmp_path / "target.json", target_config(server, tmp_path, batch_size=10)
    )
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    }
    lines = [
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": "accounts_payable__vendor",
                "schema": schema,
                "key_properties": ["id"],
            }
        )
    ]
    lines += [
        json.dumps(
            {
                "type": "RECORD",
                "stream": "accounts_payable__vendor",
                "record": {"id": f"ROT{i:03d}", "name": f"Rotation {i}"},
            }
        )
        for i in range(150)
    ]
    input_path = tmp_path / "input.singer"
    input_path.write_text("\n".join(lines) + "\n")
    server.set_faults(latency_ms=25)

    stop = threading.Event()
    kills = [0]

    def expire() -> None:
        while not stop.wait(0.2):
            server.set_faults(expire_tokens_now=True)
            kills[0] += 1

    threading.Thread(target=expire, daemon=True).start()
    with input_path.open("rb") as stdin:
        tap = subprocess.Popen(
            [TAP, "--config", str(tap_cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        target = subprocess.Popen(
            [TARGET, "--config", str(target_cfg)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        tap_out, tap_err = tap.communicate(timeout=120)
        _, target_err = target.communicate(timeout=120)
    stop.set()
    stop_faults(server)

    assert tap.returncode == 0, tap_err.decode()[-3000:]
    assert target.returncode == 0, target_err.decode()[-3000:]
    collector.runs_completed += 2
    assert kills[0] >= 3
    assert outcomes["grant:refresh_token"] >= 2, f"no rotation happened: {outcomes}"
    assert not [k for k in outcomes if k.startswith("error:")], f"token errors: {outcomes}"
    collector.fault("access token expired (2 processes)", kills[0])
    collector.fault("refresh-token rotation", outcomes["grant:refresh_token"])

    emitted = [
        str(json.loads(line)["record"]["key"])
        for line in tap_out.decode().splitlines()
        if line.startswith('{"type":"RECORD"')
    ]
    missing, dupes = collector.verified(emulator_keys(server, CUSTOMER), emitted)
    assert not missing
    assert dupes == 0
    written = [r["id"] for r in emulator_rows(server, VENDOR) if str(r["id"]).startswith("ROT")]
    missing, dupes = collector.verified([f"ROT{i:03d}" for i in range(150)], written)
    assert not missing
    assert dupes == 0


def _login(emulator: Any, store: Path) -> None:
    """`intacct login --paste`: the real CLI, with the browser played by httpx."""
    argv = [
        INTACCT,
        "--base-url",
        emulator.base_url,
        "--client-id",
        PLANTED_CLIENT_ID,
        "--token-store",
        str(store),
        "login",
        "--paste",
        "--no-browser",
        "--redirect-uri",
        "http://127.0.0.1:9/callback",
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"INTACCT_CLIENT_SECRET": PLANTED_SECRET, "PATH": "/usr/bin:/bin"},
    )
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        found = re.search(r"https?://\S+/oauth2/authorize\S+", line)
        if found:
            url = found.group(0)
            break
    assert url, "login printed no authorization URL"
    consent = httpx.get(url, follow_redirects=False, timeout=10)
    assert consent.status_code == 302
    out, err = proc.communicate(consent.headers["location"] + "\n", timeout=60)
    assert proc.returncode == 0, err
    assert "Logged in" in out


@pytest.mark.parametrize("how", ["revoked", "second authorization (REST-2102)"])
def test_dead_grant_stops_with_log_in_again_and_no_loop(
    emulator: Any, tmp_path: Path, collector: Collector, how: str
) -> None:
    store = tmp_path / "tokens.json"
    _login(emulator, store)
    if how == "revoked":
        entry = next(iter(json.loads(store.read_text())["tokens"].values()))
        response = httpx.post(
            emulator.base_url + "/oauth2/revoke",
            data={
                "client_id": PLANTED_CLIENT_ID,
                "client_secret": PLANTED_SECRET,
                "token": entry["refresh_token"],
            },
            timeout=10,
        )
        assert response.status_code == 200
    else:
        _login(emulator, tmp_path / "other-machine.json")  # supersedes the first consent
    before = emulator.stats()["requests"]

    config = tap_config(emulator, tmp_path, token_store=str(store))
    del config["username"]  # auth-code tokens from `intacct login`; no client-credentials escape
    result = run_tap(write_config(tmp_path / "tap.json", config), timeout=60)
    after = emulator.stats()["requests"]

    assert result.returncode != 0
    last_lines = "\n".join(result.stderr.strip().splitlines()[-5:])
    assert "intacct login" in last_lines, last_lines
    token_calls = after.get("POST /oauth2/token", 0) - before.get("POST /oauth2/token", 0)
    queries = after.get("POST /services/core/query", 0) - before.get("POST /services/core/query", 0)
    assert token_calls == 1, f"{token_calls} token requests: a dead grant must not be retried"
    assert queries <= 2, f"{queries} query calls: the 401 must not be retried in a loop"
    collector.fault(f"grant {how}")
    collector.runs_stopped_cleanly += 1
