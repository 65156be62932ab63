"""Security promises, checked on the real binaries over real sockets.

* Planted secrets (a client secret, tokens given in config, every token the store holds
  afterwards, and anything JWT-shaped) never appear in any output of full runs at DEBUG:
  stdout, stderr, the results file, `--about` (text and JSON), `intacct token`, the text of a
  failing run.
* The token store is created 0600 and refused, with a clear message, once others can read it.
* TLS is verified; plain http:// is refused except to loopback, before any connection; no
  credential ever follows a redirect to another server.
* Key values from input data cannot change a request path (`../x`, `1,2`, `%2e%2e`...).
"""

from __future__ import annotations

import json
import shutil
import ssl
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reliability.harness import (
    INTACCT,
    PLANTED_CLIENT_ID,
    PLANTED_SECRET,
    PLANTED_USER,
    SEED,
    TARGET,
    VENDOR,
    Collector,
    RecordingServer,
    Run,
    Seen,
    emulator_rows,
    json_reply,
    leaks,
    run,
    run_tap,
    run_target,
    stop_faults,
    stored_tokens,
    tap_config,
    target_config,
    write_config,
)

DEBUG = {"LOGLEVEL": "DEBUG", "TAP_INTACCT_LOGLEVEL": "DEBUG", "TARGET_INTACCT_LOGLEVEL": "DEBUG"}


def _cli(emulator_url: str, store: Path, *args: str, **kwargs: Any) -> Run:
    """`intacct` with the planted client; the secret via the environment, as documented."""
    env = {"INTACCT_CLIENT_SECRET": PLANTED_SECRET, **DEBUG, **kwargs.pop("env", {})}
    argv = [
        INTACCT,
        "--base-url",
        emulator_url,
        "--client-id",
        PLANTED_CLIENT_ID,
        "--username",
        PLANTED_USER,
        "--token-store",
        str(store),
        *args,
    ]
    return run(argv, env=env, **kwargs)


def test_planted_secrets_never_appear_in_any_output(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    seeded = emulator.token(PLANTED_CLIENT_ID, PLANTED_SECRET, PLANTED_USER)
    planted = [PLANTED_SECRET, seeded["access_token"], seeded["refresh_token"]]
    store = tmp_path / "tokens.json"
    outputs: dict[str, str] = {}

    def keep(name: str, result: Run) -> Run:
        outputs[f"{name} stdout"] = result.stdout
        outputs[f"{name} stderr"] = result.stderr
        return result

    tap_path = write_config(
        tmp_path / "tap.json",
        tap_config(
            emulator,
            tmp_path,
            access_token=seeded["access_token"],
            refresh_token=seeded["refresh_token"],
        ),
    )
    # A full sync at DEBUG with a forced refresh in the middle (new tokens are minted).
    emulator.set_faults(fail_next=[401], latency_ms=5)
    synced = keep("tap sync", run_tap(tap_path, env=DEBUG))
    assert synced.returncode == 0, synced.describe()
    assert "DEBUG" in synced.stderr, "the run really logged at DEBUG"
    keep("tap discover", run_tap(tap_path, "--discover", env=DEBUG))
    for fmt in ((), ("--format", "json"), ("--format", "markdown")):
        about = keep(f"tap about {fmt}", run_tap(tap_path, "--about", *fmt, env=DEBUG))
        assert about.returncode == 0
        about_target = keep(
            f"target about {fmt}",
            run([TARGET, "--config", str(tap_path), "--about", *fmt], env=DEBUG),
        )
        assert about_target.returncode == 0

    # A target run that writes some records and fails others (on_error=fail: non-zero exit).
    results = tmp_path / "results.jsonl"
    target_path = write_config(
        tmp_path / "target.json",
        target_config(emulator, tmp_path, results_path=str(results), on_error="fail"),
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
    for i, name in enumerate(["ok", "x" * 20000, "ok again"]):
        lines.append(
            json.dumps(
                {
                    "type": "RECORD",
                    "stream": "accounts_payable__vendor",
                    "record": {"id": f"SEC-{i}", "name": name},
                }
            )
        )
    loaded = keep("target", run_target(target_path, "\n".join(lines) + "\n", env=DEBUG))
    assert loaded.returncode != 0
    outputs["results file"] = results.read_text()

    token = keep("intacct token", _cli(emulator.base_url, store, "token"))
    assert token.returncode == 0, token.describe()
    keep("intacct token --json", _cli(emulator.base_url, store, "token", "--json"))
    keep("intacct -v query", _cli(emulator.base_url, store, "-v", "query", VENDOR, "--limit", "3"))

    # A failing run: the grant revoked, so the tap stops with LoginRequiredError text.
    stored = stored_tokens(store)
    assert stored, "the store holds the issued tokens"
    for value in stored:
        httpx.post(
            emulator.base_url + "/oauth2/revoke",
            data={"client_id": PLANTED_CLIENT_ID, "client_secret": PLANTED_SECRET, "token": value},
            timeout=10,
        ).raise_for_status()
    failing_config = json.loads(tap_path.read_text())
    del failing_config["username"], failing_config["access_token"], failing_config["refresh_token"]
    failing = keep(
        "tap failing run", run_tap(write_config(tmp_path / "fail.json", failing_config), env=DEBUG)
    )
    assert failing.returncode != 0
    collector.runs_stopped_cleanly += 1
    collector.runs_completed += 1

    secrets = [*planted, *stored, *stored_tokens(store)]
    for name, text in outputs.items():
        found = leaks(text, secrets)
        collector.secret_scans += 1
        collector.secrets_leaked += len(found)
        assert not found, f"{name}: {found}"


def test_token_store_is_0600_and_refused_when_readable_by_others(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    store = tmp_path / "private" / "tokens.json"
    config = write_config(
        tmp_path / "tap.json", tap_config(emulator, tmp_path, token_store=str(store))
    )
    first = run_tap(config)
    assert first.returncode == 0, first.describe()
    collector.runs_completed += 1
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) & 0o077 == 0

    store.chmod(0o644)
    emulator.reset(data=False, tokens=False, faults=False, idempotency=False)
    target = write_config(
        tmp_path / "target.json",
        target_config(emulator, tmp_path, token_store=str(store), on_error="fail"),
    )
    refused = [
        run_tap(config),
        run_target(target, _one_vendor("STORE-1")),
        _cli(emulator.base_url, store, "token"),
        _cli(emulator.base_url, store, "query", VENDOR, "--limit", "1"),
    ]
    results_file = tmp_path / "results.jsonl"
    for result in refused:
        assert result.returncode != 0, result.describe()
        text = result.stdout + result.stderr
        if result.argv[0].endswith("target-intacct"):
            text += results_file.read_text()  # the reason is per record, in the results
        assert "chmod 600" in text, result.describe()
        assert str(store) in text
    assert emulator.stats()["total"] == 0, "nothing was sent with a leaked token store"
    collector.runs_stopped_cleanly += len(refused)


def _one_vendor(vendor_id: str) -> str:
    schema = {"type": "object", "properties": {"id": {"type": "string"}}}
    return (
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": "accounts_payable__vendor",
                "schema": schema,
                "key_properties": ["id"],
            }
        )
        + "\n"
        + json.dumps(
            {"type": "RECORD", "stream": "accounts_payable__vendor", "record": {"id": vendor_id}}
        )
        + "\n"
    )


@pytest.fixture
def untrusted_tls(tmp_path: Path) -> Iterator[RecordingServer]:
    """An https loopback server with a self-signed certificate (openssl CLI)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a self-signed certificate"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with RecordingServer(lambda seen: json_reply(200, {"access_token": "x"}), tls=context) as s:
        yield s


def test_tls_verification_is_on(
    untrusted_tls: RecordingServer, tmp_path: Path, collector: Collector
) -> None:
    config = tap_config(untrusted_tls, tmp_path, max_retries=0)
    tap = run_tap(write_config(tmp_path / "tap.json", config), timeout=60)
    cli = _cli(untrusted_tls.base_url, tmp_path / "t.json", "login", "--client-credentials")
    for result in (tap, cli):
        assert result.returncode != 0
        assert "certificate verify failed" in result.stderr.lower(), result.describe()
    assert untrusted_tls.requests == [], "no request got through an unverified TLS session"
    collector.fault("untrusted TLS certificate", 2)
    collector.runs_stopped_cleanly += 2


def test_plain_http_to_a_remote_host_is_refused_before_connecting(
    tmp_path: Path, collector: Collector
) -> None:
    remote = "http://example.invalid/ia/api/v1"
    config = write_config(
        tmp_path / "c.json",
        {
            "base_url": remote,
            "client_id": PLANTED_CLIENT_ID,
            "client_secret": PLANTED_SECRET,
            "username": PLANTED_USER,
            "token_store": str(tmp_path / "tokens.json"),
            "objects": [VENDOR],
        },
    )
    record = json.dumps(
        {"type": "RECORD", "stream": "accounts_payable__vendor", "record": {"id": "X"}}
    )
    schema = json.dumps(
        {
            "type": "SCHEMA",
            "stream": "accounts_payable__vendor",
            "schema": {"type": "object", "properties": {"id": {"type": "string"}}},
            "key_properties": ["id"],
        }
    )
    results = [
        run_tap(config, timeout=30),
        run_target(config, f"{schema}\n{record}\n", timeout=30),
        _cli(remote, tmp_path / "tokens.json", "query", VENDOR, timeout=30),
        _cli(remote, tmp_path / "tokens.json", "login", "--client-credentials", timeout=30),
    ]
    for result in results:
        assert result.returncode != 0
        text = result.stdout + result.stderr
        assert "http://" in text, result.describe()
        assert "loopback" in text, result.describe()
        assert "example.invalid" in text
        for dns_error in ("Name or service not known", "NameResolutionError", "ConnectError"):
            assert dns_error not in text, "it tried to connect before refusing"
        assert not leaks(text, [PLANTED_SECRET])
    collector.runs_stopped_cleanly += len(results)


@pytest.mark.parametrize("where", ["api", "token endpoint"])
@pytest.mark.parametrize("status", [302, 307])
def test_credentials_never_follow_a_redirect_to_another_server(
    tmp_path: Path, collector: Collector, where: str, status: int
) -> None:
    planted_token = "PLANTED-ACCESS-TOKEN-4b1d"

    with RecordingServer(lambda seen: json_reply(200, {"access_token": "from-elsewhere"})) as b:

        def first(seen: Seen) -> tuple[int, dict[str, str], bytes]:
            is_token = seen.target.startswith("/ia/api/v1/oauth2/token")
            if is_token and where == "api":
                return json_reply(
                    200, {"access_token": planted_token, "token_type": "Bearer", "expires_in": 3600}
                )
            return status, {"Location": b.base_url.removesuffix("/ia/api/v1") + seen.target}, b""

        with RecordingServer(first) as a:
            config = tap_config(a, tmp_path, objects=[VENDOR], max_retries=1)
            result = run_tap(write_config(tmp_path / "tap.json", config), timeout=60)

    assert a.requests, "the configured server was asked"
    leaked = [
        f"{r.method} {r.target}" for r in b.requests if r.carries([PLANTED_SECRET, planted_token])
    ]
    collector.fault(f"{status} redirect ({where})")
    assert not leaked, f"credentials reached the other server: {leaked}"
    assert result.returncode != 0
    assert "redirect" in result.stderr.lower(), result.describe()
    collector.runs_stopped_cleanly += 1


def _vendor_snapshot(emulator: Any) -> dict[str, dict[str, Any]]:
    return {str(r["key"]): r for r in emulator_rows(emulator, VENDOR, ("key", "id", "name"))}


def _hostile_keys(k1: str, k2: str) -> list[str]:
    return [
        f"../{k1}",
        f"{k1},{k2}",
        "%2e%2e",
        "..",
        ".",
        f"{k1}/../{k2}",
        f"{k1}?x=1",
        f"{k1}#f",
        f"%2F{k1}",
        f"..%2F{k1}",
        f"../../customer/{k1}",
    ]


def _assert_untouched(emulator: Any, before: dict[str, dict[str, Any]], how: str) -> None:
    stats = emulator.stats()["requests"]
    stop_faults(emulator)
    after = _vendor_snapshot(emulator)
    gone = sorted(set(before) - set(after), key=int)
    changed = sorted(k for k in after if k in before and after[k] != before[k])
    assert not gone, f"{how}: hostile keys deleted vendors {gone}"
    assert not changed, f"{how}: hostile keys changed vendors {changed}"
    customers = len(emulator_rows(emulator, "accounts-receivable/customer", ("key",)))
    assert customers == SEED
    allowed = ("/objects/accounts-payable/vendor", "/oauth2/token", "/services/core/query")
    strays = [name for name in stats if not name.split(" ", 1)[1].startswith(allowed)]
    assert not strays, f"{how}: requests left the vendor path: {strays}"


def test_key_values_in_target_input_cannot_change_the_request_path(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    """update (single-record PATCH .../vendor/{key}) and delete (DELETE .../vendor/{keys})
    with hostile keys: every one is an error result, and no vendor is touched."""
    before = _vendor_snapshot(emulator)
    k1, k2 = sorted(before, key=int)[:2]
    hostile = _hostile_keys(k1, k2)
    schema = {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "name": {"type": "string"},
            "_sdc_deleted_at": {"type": ["string", "null"]},
        },
    }
    lines = []
    for stream in ("vendor_updates", "vendor_deletes"):
        lines.append(
            json.dumps(
                {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": ["key"]}
            )
        )
        for value in hostile:
            data = {"key": value, "name": "HACKED"}
            if stream == "vendor_deletes":
                data["_sdc_deleted_at"] = "2025-01-01T00:00:00Z"
            lines.append(json.dumps({"type": "RECORD", "stream": stream, "record": data}))
    config = target_config(
        emulator,
        tmp_path,
        batch_size=1,  # single-record requests put the key in the path
        allow_deletes=True,
        streams={
            "vendor_updates": {"object": VENDOR, "operation": "update"},
            "vendor_deletes": {"object": VENDOR, "operation": "delete"},
        },
    )
    result = run_target(write_config(tmp_path / "t.json", config), "\n".join(lines) + "\n")
    assert result.returncode == 0, result.describe()
    collector.runs_completed += 1
    _assert_untouched(emulator, before, "target-intacct")
    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == 2 * len(hostile)
    wrongly_ok = [r["request"]["key"] for r in results if r["status"] == "ok"]
    assert not wrongly_ok, f"hostile keys reported as written: {wrongly_ok}"
    collector.bad_inputs["hostile key"] += len(results)


@pytest.mark.parametrize(
    "operation", ["delete-accounts-payable-vendor-key", "update-accounts-payable-vendor-key"]
)
def test_intacct_call_path_parameters_cannot_change_the_request_path(
    emulator: Any, tmp_path: Path, collector: Collector, operation: str
) -> None:
    before = _vendor_snapshot(emulator)
    k1, k2 = sorted(before, key=int)[:2]
    store = tmp_path / "tokens.json"
    body = ["--body", json.dumps({"name": "HACKED"})] if operation.startswith("update") else []
    for value in _hostile_keys(k1, k2):
        _cli(emulator.base_url, store, "call", operation, "-p", f"key={value}", *body)
    _assert_untouched(emulator, before, f"intacct call {operation}")
    collector.runs_completed += 1
