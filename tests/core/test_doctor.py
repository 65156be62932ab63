"""`intacct doctor` against the emulator: every check passes on the emulator's defaults, and
each deliberate deviation (a fault switch) makes the matching check fail with a clear reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from intacct_api.cli.app import build_app
from intacct_api.client import IntacctClient
from intacct_api.doctor import CheckResult, Doctor
from intacct_api.settings import ConnectionSettings
from intacct_emulator.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USERNAME
from intacct_emulator.testing import EmulatorServer

VENDOR = "accounts-payable/vendor"
CUSTOMER = "accounts-receivable/customer"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        server.company.seed(1, 5, objects=["company-config/entity"])
        server.company.seed_object(CUSTOMER, 130, 2)  # keys cross 9->10 and 99->100
        server.company.seed_object(VENDOR, 30, 2)
        yield server


@pytest.fixture
def emu(emulator: EmulatorServer) -> EmulatorServer:
    emulator.reset(data=False)
    return emulator


def run_doctor(server: EmulatorServer, tmp_path: Path, **options: Any) -> list[CheckResult]:
    settings = ConnectionSettings(
        base_url=server.base_url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        token_store=str(tmp_path / "tokens.json"),
        max_retries=1,
    )
    with IntacctClient(settings) as client:
        return Doctor(client, objects=[CUSTOMER, VENDOR], **options).run()


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_every_check_passes_on_the_emulator(emu: EmulatorServer, tmp_path: Path) -> None:
    results = run_doctor(emu, tmp_path, write_object=VENDOR)
    assert [(r.name, r.status) for r in results if r.status != "pass"] == []
    names = set(by_name(results))
    assert {
        "token grant",
        "token refresh",
        "invalid token answer",
        "entity header",
        "query paging",
        "key ordering",
        "REST-1106 form",
        "model general-ledger/account",
        f"read {VENDOR}",
        "audit history",
        "rate-limit headers",
        "idempotency replay",
        "idempotency 409",
        "update",
        "transaction header",
        "delete",
    } <= names
    # the throw-away records are gone again
    leftovers = emu.http.post(
        emu.base_url + "/services/core/query",
        json={
            "object": VENDOR,
            "fields": ["key"],
            "filters": [{"$startsWith": {"id": "DOCTOR-"}}],
        },
        headers=emu.auth_headers(),
    ).json()["ia::result"]
    assert leftovers == []


READ_DEVIATIONS = [
    ({"entity_headers": ["X-IA-API-ParamEntity"]}, "entity header", "fail", "is ignored"),
    ({"key_sort": "numeric", "key_compare": "string"}, "key ordering", "fail", "disagree"),
    ({"key_sort": "string", "key_compare": "numeric"}, "key ordering", "fail", "disagree"),
    ({"refused_field_form": "opaque"}, "REST-1106 form", "fail", "does not name the field"),
    (
        {"tenant_lacks_objects": ["general-ledger/account"]},
        "model general-ledger/account",
        "fail",
        "not available to this company",
    ),
    ({"rate_limit_headers": False}, "rate-limit headers", "fail", "cannot pace"),
    (
        {"forbidden_objects": ["company-config/audit-history"]},
        "audit history",
        "not permitted",
        "deletes: audit cannot work",
    ),
    ({"forbidden_objects": [VENDOR]}, f"read {VENDOR}", "not permitted", "permission"),
    ({"refresh_failure": 400}, "token refresh", "fail", "refresh grant was refused"),
]


READ_IDS = [
    "entity_header",
    "key_sort_numeric_compare_string",
    "key_sort_string_compare_numeric",
    "refused_field_opaque",
    "tenant_lacks_object",
    "rate_limit_headers",
    "audit_forbidden",
    "object_forbidden",
    "refresh_failure",
]


@pytest.mark.parametrize(("knobs", "check", "status", "reason"), READ_DEVIATIONS, ids=READ_IDS)
def test_each_deviation_fails_the_matching_check(
    emu: EmulatorServer,
    tmp_path: Path,
    knobs: dict[str, Any],
    check: str,
    status: str,
    reason: str,
) -> None:
    emu.set_faults(**knobs)
    results = by_name(run_doctor(emu, tmp_path))
    assert results[check].status == status, results[check]
    assert reason in results[check].summary
    forbidden = knobs.get("forbidden_objects", [])
    others = [
        r.name
        for r in results.values()
        if r.status != "pass" and r.name != check and not any(o in r.name for o in forbidden)
    ]
    assert others == []


@pytest.mark.parametrize(
    ("knobs", "check", "reason"),
    [
        ({"transaction_headers": ["X-IA-API-ParamTransaction"]}, "transaction header", "ignored"),
        ({"idempotency_keys": False}, "idempotency replay", "executed again"),
    ],
    ids=["transaction_header", "idempotency_keys"],
)
def test_write_deviations_fail_the_matching_write_check(
    emu: EmulatorServer, tmp_path: Path, knobs: dict[str, Any], check: str, reason: str
) -> None:
    emu.set_faults(**knobs)
    results = by_name(run_doctor(emu, tmp_path, write_object=VENDOR))
    assert results[check].status == "fail"
    assert reason in results[check].summary


def test_a_tenant_answering_bad_tokens_with_400_rest_1206_still_passes(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emu.set_faults(token_error_status=400)
    results = by_name(run_doctor(emu, tmp_path))
    assert results["invalid token answer"].status == "pass"


def test_cli_prints_a_table_and_json_and_exits_1_on_failure(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    env = {
        "INTACCT_BASE_URL": emu.base_url,
        "INTACCT_CLIENT_ID": DEFAULT_CLIENT_ID,
        "INTACCT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "INTACCT_USERNAME": DEFAULT_USERNAME,
        "INTACCT_TOKEN_STORE": str(tmp_path / "tokens.json"),
    }
    config = tmp_path / "tap.json"
    config.write_text(json.dumps({"objects": [CUSTOMER, "accounts-payable/*"], "deletes": "none"}))
    runner = CliRunner()
    table = runner.invoke(build_app(), ["--config", str(config), "doctor"], env=env)
    assert table.exit_code == 0, table.output
    assert "key ordering" in table.output
    assert "audit history" not in table.output  # deletes is not audit in that config
    assert f"read {CUSTOMER}" in table.output
    assert DEFAULT_CLIENT_SECRET not in table.output

    emu.set_faults(rate_limit_headers=False)
    failed = runner.invoke(build_app(), ["doctor", "--json", "-o", VENDOR], env=env)
    assert failed.exit_code == 1
    document = json.loads(failed.stdout)
    statuses = {item["name"]: item["status"] for item in document}
    assert statuses["rate-limit headers"] == "fail"
    assert statuses[f"read {VENDOR}"] == "pass"
