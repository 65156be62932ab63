"""The pieces of a fleet, each on its own: the multi-company emulator, the fleet file, Dagster defs.

The emulator runs as a real process serving two companies; requests are told apart only by
credentials, and each company has its own data, faults and stats. The fleet file refuses what
would leak or misroute (a secret in the file, an unknown group), and the Dagster definitions
built from it have one asset per stream group partitioned by company, a schedule per company
that asks for one, and one fleet-job op per company x group carrying the company's tag.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intacct_dagster.fleet import FleetError, parse_fleet
from intacct_dagster.runner import (
    MeltanoLog,
    error_summary,
    meltano_env,
    meltano_project,
    read_metrics,
    tap_config,
)
from intacct_emulator.multi_company import load_companies
from intacct_emulator.testing import EmulatorProcess
from tests.support.paths import ROOT

COMPANIES = [
    {
        "name": "acme",
        "client_id": "acme-client",
        "client_secret": "acme-secret",
        "username": "svc@ACME",
        "seed_records": 12,
        "random_seed": 1,
        "faults": {"max_concurrent": 3},
    },
    {
        "name": "globex",
        "client_id": "globex-client",
        "client_secret": "globex-secret",
        "username": "svc@GLOBEX",
        "seed_records": 25,
        "random_seed": 2,
    },
]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    path = tmp_path_factory.mktemp("companies") / "companies.json"
    path.write_text(json.dumps({"companies": COMPANIES}))
    with EmulatorProcess(["--companies", str(path)]) as server:
        yield server


def login(emulator: EmulatorProcess, name: str) -> dict[str, str]:
    return emulator.auth_headers(
        client_id=f"{name}-client", client_secret=f"{name}-secret", username=f"svc@{name.upper()}"
    )


def vendor_ids(emulator: EmulatorProcess, headers: dict[str, str]) -> set[str]:
    body = {"object": "accounts-payable/vendor", "fields": ["id"], "size": 1000}
    response = emulator.http.post(
        emulator.base_url + "/services/core/query", json=body, headers=headers
    )
    response.raise_for_status()
    return {row["id"] for row in response.json()["ia::result"]}


def companies(emulator: EmulatorProcess) -> dict[str, Any]:
    result: dict[str, Any] = emulator.http.get(emulator.root_url + "/_emulator/companies").json()
    return result


def test_each_company_sees_its_own_data_through_its_own_credentials(
    emulator: EmulatorProcess,
) -> None:
    acme = vendor_ids(emulator, login(emulator, "acme"))
    globex = vendor_ids(emulator, login(emulator, "globex"))
    assert acme
    assert globex
    assert len(globex) > len(acme), "seeded with 25 and 12 records"
    summary = companies(emulator)
    assert summary["acme"]["max_concurrent"] == 3
    assert summary["globex"]["max_concurrent"] is None
    assert summary["acme"]["peak_in_flight"] >= 1


def test_a_wrong_secret_or_unknown_token_is_refused_without_touching_another_company(
    emulator: EmulatorProcess,
) -> None:
    before = companies(emulator)["globex"]["stats"]["total"]
    wrong = emulator.http.post(
        emulator.base_url + "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "acme-client",
            "client_secret": "not-it",
            "username": "svc@ACME",
        },
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    unknown = emulator.http.post(
        emulator.base_url + "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert unknown.status_code == 401
    forged = emulator.http.get(
        emulator.base_url + "/objects/accounts-payable/vendor",
        headers={"Authorization": "Bearer forged"},
    )
    assert forged.status_code == 401
    assert forged.json()["ia::result"]["ia::error"]["errorId"] == "GW-0031"
    assert companies(emulator)["globex"]["stats"]["total"] == before


def test_faults_and_stats_are_per_company(emulator: EmulatorProcess) -> None:
    root = emulator.root_url + "/_emulator/companies"
    emulator.http.post(root + "/acme/reset", json={"tokens": False, "data": False})
    emulator.http.post(root + "/acme/faults", json={"fail_next": [503]}).raise_for_status()
    acme, globex = login(emulator, "acme"), login(emulator, "globex")
    body = {"object": "accounts-payable/vendor", "fields": ["id"], "size": 5}
    query = emulator.base_url + "/services/core/query"
    assert emulator.http.post(query, json=body, headers=globex).status_code == 200
    assert emulator.http.post(query, json=body, headers=acme).status_code == 503
    assert emulator.http.post(query, json=body, headers=acme).status_code == 200
    stats = emulator.http.get(root + "/acme/stats").json()
    assert stats["responses"] == {"200": 2, "503": 1}  # a token and a query, then the retry
    assert emulator.http.get(root + "/nobody/stats").status_code == 404


def test_companies_file_refuses_duplicate_client_ids(tmp_path: Path) -> None:
    path = tmp_path / "companies.json"
    twice = [COMPANIES[0], {**COMPANIES[1], "client_id": "acme-client"}]
    path.write_text(json.dumps({"companies": twice}))
    with pytest.raises(ValueError, match="duplicate client_id"):
        load_companies(path)


FLEET: dict[str, Any] = {
    "state_url_env": "FLEET_STATE_URL",
    "target": {"executable": "target-postgres", "url_env": "FLEET_WAREHOUSE_URL"},
    "stream_groups": {
        "masters": ["accounts-payable/vendor"],
        "ledger": ["general-ledger/journal-entry-line"],
    },
    "defaults": {"tier": 10, "parallel_groups": 3},
    "companies": [
        {
            "name": "acme",
            "base_url": "http://127.0.0.1:1/ia/api/v1",
            "client_id": "acme-client",
            "client_secret_env": "ACME_SECRET",
            "username": "svc@ACME",
            "entities": ["US"],
            "schedule": "0 2 * * *",
        },
        {
            "name": "globex",
            "base_url": "http://127.0.0.1:1/ia/api/v1",
            "client_id": "globex-client",
            "client_secret_env": "GLOBEX_SECRET",
            "username": "svc@GLOBEX",
            "groups": ["ledger"],
            "tier": 1,
        },
    ],
}


def test_fleet_file_budget_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = parse_fleet(FLEET)
    acme, globex = fleet.companies
    assert acme.per_group_concurrency == 3, "tier 10 over 3 groups at once"
    assert globex.per_group_concurrency == 1, "never below one request"
    assert globex.groups == ("ledger",)
    config = tap_config(acme, fleet.stream_groups["masters"], Path("/tmp/t.json"))
    assert config["max_concurrency"] == 3
    assert config["entities"] == ["US"]
    assert config["client_secret"] == "${ACME_SECRET}", "only a reference Meltano expands"
    monkeypatch.delenv("ACME_SECRET", raising=False)
    with pytest.raises(FleetError, match="ACME_SECRET"):
        acme.client_secret()
    leaked = {**FLEET, "companies": [{**FLEET["companies"][0], "client_secret": "s3cret"}]}
    with pytest.raises(FleetError, match="must not hold secrets"):
        parse_fleet(leaked)
    unknown = {**FLEET, "companies": [{**FLEET["companies"][1], "groups": ["nope"]}]}
    with pytest.raises(FleetError, match="unknown stream group"):
        parse_fleet(unknown)


def test_plugin_logs_give_counts_and_the_clear_error() -> None:
    log = "\n".join(
        [
            'x | METRIC: {"type":"counter","metric":"http_request_count","value":3,"tags":{}}',
            'x | METRIC: {"type":"counter","metric":"record_count","value":29,'
            '"tags":{"stream":"vendor"}}',
            'x | METRIC: {"type":"counter","metric":"record_count","value":1,'
            '"tags":{"stream":"vendor"}}',
            "Traceback (most recent call last):",
            '  File "auth.py", line 259, in _token_request',
            "intacct_api.errors.ConfigError: oauth2/token: client authentication failed "
            "(invalid_client): check client_id and client_secret",
        ]
    )
    assert read_metrics(log) == ({"vendor": 30}, 3)
    assert error_summary(log).startswith("intacct_api.errors.ConfigError: oauth2/token")


def test_the_meltano_project_of_a_partition_holds_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each partition runs ``meltano el`` in a generated project: secrets are ``${VAR}``."""
    import yaml

    fleet = parse_fleet(
        {
            **FLEET,
            "target": {
                "executable": "/opt/targets/target-postgres",
                "url_env": "WAREHOUSE_URL",
                "config": {"batch_size_rows": 10},
            },
        }
    )
    monkeypatch.setenv("ACME_SECRET", "s3cret-value")
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://u:pw-value@db/warehouse")
    project = meltano_project(fleet, fleet.companies[0], "masters", tmp_path)
    text = yaml.safe_dump(project)
    assert "s3cret-value" not in text
    assert "pw-value" not in text
    (tap,) = project["plugins"]["extractors"]
    (target,) = project["plugins"]["loaders"]
    assert tap["config"]["client_secret"] == "${ACME_SECRET}"
    assert tap["config"]["objects"] == list(fleet.stream_groups["masters"])
    assert "state" in tap["capabilities"], "Meltano keeps the state only for stateful taps"
    assert target["name"] == "target-postgres"
    assert target["config"] == {
        "batch_size_rows": 10,
        "default_target_schema": "acme",
        "sqlalchemy_url": "${WAREHOUSE_URL}",
    }
    wrapper = Path(target["executable"]).read_text()
    assert "/opt/targets/target-postgres" in wrapper, "the wrapper execs the real target"
    assert "prctl" in wrapper, "... after asking to die with Meltano"


def test_meltano_runs_against_the_fleet_database_without_the_workers_plugin_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = parse_fleet(FLEET)
    monkeypatch.setenv(fleet.state_url_env, "postgresql://fleet@db/fleet")
    monkeypatch.setenv("TAP_INTACCT_BASE_URL", "https://elsewhere.example")
    monkeypatch.setenv("TAP_INTACCT_SECRET_OF_ACME", "kept: the project refers to it")
    monkeypatch.setenv("TARGET_POSTGRES_SQLALCHEMY_URL", "postgresql://other/db")
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", "/somewhere/else")
    env = meltano_env(fleet, "target-postgres", keep=("TAP_INTACCT_SECRET_OF_ACME",))
    assert env["MELTANO_DATABASE_URI"] == "postgresql+psycopg://fleet@db/fleet"
    assert "TAP_INTACCT_BASE_URL" not in env
    assert "TARGET_POSTGRES_SQLALCHEMY_URL" not in env
    assert "MELTANO_PROJECT_ROOT" not in env
    assert env["TAP_INTACCT_SECRET_OF_ACME"].startswith("kept")


def test_meltano_log_gives_counts_the_state_and_the_plugins_clear_error() -> None:
    def line(event: str, **extra: str) -> str:
        return json.dumps({"event": event, "level": "info", **extra})

    tap = {"name": "tap-intacct", "stdio": "stderr", "cmd_type": "extractor"}
    text = "\n".join(
        [
            line("Reading state from Database"),
            line(
                'METRIC: {"type":"counter","metric":"http_request_count","value":2,"tags":{}}',
                **tap,
            ),
            line("oauth2/token: client authentication failed (invalid_client): check ...", **tap),
            line("fix: set client_id and client_secret", **tap),
            json.dumps({"event": "Extraction failed", "level": "error"}),
            "not json: a stray line",
        ]
    )
    log = MeltanoLog.parse(text, "target-postgres")
    assert log.resumed, "Meltano did not say it found no state"
    assert read_metrics("\n".join(log.tap)) == ({}, 2)
    assert "(invalid_client)" in log.error()
    fresh = MeltanoLog.parse(
        "\n".join(
            [line("Reading state from Database"), line("No state was found, complete import.")]
        ),
        "target-postgres",
    )
    assert not fresh.resumed


def test_dagster_definitions_from_a_fleet() -> None:
    from intacct_dagster.definitions import (
        COMPANY_TAG,
        FLEET_JOB,
        PARTITIONS,
        build_definitions,
    )

    defs = build_definitions(parse_fleet(FLEET))
    fleet_job = defs.resolve_job_def(FLEET_JOB)
    ops = {node.name: node.definition for node in fleet_job.graph.node_dict.values()}
    assert sorted(ops) == ["sync__acme__ledger", "sync__acme__masters", "sync__globex__ledger"]
    assert ops["sync__globex__ledger"].tags[COMPANY_TAG] == "globex"
    assert ops["sync__acme__masters"].retry_policy is not None
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"intacct/masters", "intacct/ledger"}
    for key in graph.get_all_asset_keys():
        assert graph.get(key).partitions_def == PARTITIONS
    schedules = [s.name for s in defs.schedules or []]
    assert schedules == ["intacct_acme_schedule"], "only acme has a schedule"


def test_the_example_fleet_file_builds_its_definitions() -> None:
    from intacct_dagster.definitions import FLEET_JOB, LOAD_JOB, build_definitions
    from intacct_dagster.fleet import load_fleet

    fleet = load_fleet(ROOT / "fleet" / "fleet.example.yml")
    globex = fleet.company("globex")
    assert globex.per_group_concurrency == 6, "tier 20 over 3 groups at once"
    defs = build_definitions(fleet)
    sync_ops = defs.resolve_job_def(FLEET_JOB).graph.node_dict
    assert len(sync_ops) == 3 + 2, "acme: every group; globex: masters and ledger"
    assert set(defs.resolve_job_def(LOAD_JOB).graph.node_dict) == {"load__acme", "load__globex"}
    assert len(list(defs.schedules or [])) == 2
