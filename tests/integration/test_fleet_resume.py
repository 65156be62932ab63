"""A fleet partition killed mid-run resumes from the STATE Meltano stored during that run.

``test_fleet.py`` kills a worker and checks the retry is exact, but its partitions are short:
target-postgres emits STATE only when it drains every sink (singer-sdk 0.54.9,
``Target.drain_all``): at the end of its input, on SIGTERM/SIGINT, and when its oldest
undrained record is older than ``Target._MAX_RECORD_AGE_IN_MINUTES`` (5 minutes). Filling a
sink (``batch_size_rows``) commits rows but emits no STATE, so a partition killed in its first
five minutes resumes from the state before the run. And the tap (singer-sdk's
``Stream.STATE_MSG_FREQUENCY``) emits a mid-stream STATE every 10,000 records.

Here one partition reads 20,000 customers, 1,000 a page, through the real ``meltano el`` with
Meltano's state in PostgreSQL. The one change to stock target-postgres is that age: a
wrapper executable (still named ``target-postgres``) sets it to one second before running
the stock CLI, so that the drain-and-STATE a five-minute partition gets every five minutes
comes every second. The partition's worker is SIGKILLed (with its process group: Meltano, the
tap and the target) once Meltano's ``state`` table holds a bookmark of this run; the rerun
reads only the rows from that bookmark (minus the tap's look-back) on, every row is in the
warehouse exactly once, and the final bookmark is the newest ``modifiedDateTime``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from intacct_emulator.testing import EmulatorProcess
from tap_intacct.settings import DEFAULT_LOOKBACK_MINUTES
from tests.integration.test_fleet import (
    MELTANO,
    TARGET_POSTGRES,
    fleet_env,
    meltano_states,
    postgres,  # noqa: F401 - the module's PostgreSQL server fixture
    truth,
)
from tests.support.paths import ROOT

COMPANY = "resume"
GROUP = "customers"
OBJECT = "accounts-receivable/customer"
TABLE = "accounts_receivable__customer"
RECORDS = 20_000
"""Customers to seed (a few fewer come out): the tap's first mid-stream STATE is halfway."""
PAGE_SIZE = 1000
LATENCY_MS = 300
"""Ten pages after the first mid-stream STATE: about three seconds to see it and kill."""
MAX_RECORD_AGE_SECONDS = 1.0
SID = f"fleet:{COMPANY}:{GROUP}"

_TARGET_WRAPPER = '''#!{python}
"""Stock target-postgres, with its drain-and-STATE age at {seconds} s instead of 5 minutes."""
import sys

from target_postgres.target import TargetPostgres

TargetPostgres._MAX_RECORD_AGE_IN_MINUTES = {seconds} / 60
sys.exit(TargetPostgres.cli())
'''

_WORKER = """
import sys
from intacct_dagster.fleet import load_fleet
from intacct_dagster.runner import prepare, run_partition

fleet = load_fleet(sys.argv[1])
db = prepare(fleet)
run_partition(fleet, fleet.company(sys.argv[2]), sys.argv[3], db, run_id="killed", attempt=1)
"""


def target_wrapper(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "target-postgres"  # the loader keeps its name (and its settings' prefix)
    python = TARGET_POSTGRES.with_name("python3")
    path.write_text(_TARGET_WRAPPER.format(python=python, seconds=MAX_RECORD_AGE_SECONDS))
    path.chmod(0o755)
    return path


def write_fleet(tmp: Path, base_url: str, target: Path) -> Path:
    fleet = {
        "state_url_env": "FLEET_STATE_URL",
        "meltano_executable": str(MELTANO),
        "target": {
            "executable": str(target),
            "url_env": "FLEET_WAREHOUSE_URL",
            "config": {"batch_size_rows": 500},
        },
        "stream_groups": {GROUP: [OBJECT]},
        "defaults": {"tier": 4, "parallel_groups": 1},
        "companies": [
            {
                "name": COMPANY,
                "base_url": base_url,
                "client_id": f"{COMPANY}-client",
                "client_secret_env": f"SECRET_{COMPANY.upper()}",
                "username": f"svc@{COMPANY.upper()}",
                "tap_config": {"page_size": PAGE_SIZE},
            }
        ],
    }
    path = tmp / "fleet.yml"
    path.write_text(yaml.safe_dump(fleet))
    return path


def stored_bookmark(state_url: str) -> str | None:
    """The partition's bookmark in Meltano's ``state`` table. ``meltano el`` without
    ``--merge-state`` stores each STATE the target emits, as it arrives, as the completed
    state (``BookmarkWriter`` with ``Payload.STATE``): mid-run or not, the table looks the same.
    """
    with psycopg.connect(state_url, autocommit=True) as con:
        try:
            state = meltano_states(con).get(SID) or {}
        except psycopg.errors.UndefinedTable:
            return None
    value = (state.get("bookmarks") or {}).get(TABLE, {}).get("replication_key_value")
    return None if value is None else str(value)


def query_calls(emulator: EmulatorProcess) -> int:
    companies = emulator.http.get(emulator.root_url + "/_emulator/companies").json()
    return int(companies[COMPANY]["stats"]["requests"].get("POST /services/core/query", 0))


def moment(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.slow
def test_a_partition_killed_mid_run_resumes_from_the_state_stored_during_that_run(
    tmp_path: Path,
    postgres: str,  # noqa: F811 - the fixture imported above
) -> None:
    from intacct_dagster.fleet import load_fleet
    from intacct_dagster.fleet_db import FleetDB
    from intacct_dagster.runner import run_partition

    assert TARGET_POSTGRES.exists(), f"{TARGET_POSTGRES} is missing: `make test` installs it"
    assert MELTANO.exists(), f"{MELTANO} is missing: `make fleet` installs it"
    entry = {
        "name": COMPANY,
        "client_id": f"{COMPANY}-client",
        "client_secret": f"{COMPANY}-secret",
        "username": f"svc@{COMPANY.upper()}",
        "seed_records": RECORDS,
        "random_seed": 17,
        "faults": {"max_concurrent": 4, "latency_ms": LATENCY_MS},
    }
    companies_file = tmp_path / "companies.json"
    companies_file.write_text(json.dumps({"companies": [entry]}))
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(f"create schema if not exists {COMPANY}")
    env = {**fleet_env(postgres), f"SECRET_{COMPANY.upper()}": f"{COMPANY}-secret"}

    with EmulatorProcess(["--companies", str(companies_file)]) as emulator:
        rows = truth(emulator, COMPANY, OBJECT, ["key", "audit.modifiedDateTime"])
        total = len(rows)  # the seed drops a few (e.g. duplicate names)
        assert total > 10_000 + 5 * PAGE_SIZE, "pages left after the tap's first mid-run STATE"
        modified = sorted(moment(row["audit.modifiedDateTime"]) for row in rows)
        fleet_file = write_fleet(tmp_path, emulator.base_url, target_wrapper(tmp_path / "bin"))
        assert stored_bookmark(postgres) is None, "no state before the first run"
        started = time.monotonic()

        # The first run, in its own process group, killed once this run stored a bookmark.
        worker = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(fleet_file), COMPANY, GROUP],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        bookmark: str | None = None
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and worker.poll() is None:
                bookmark = stored_bookmark(postgres)
                if bookmark is not None:
                    break
                time.sleep(0.05)
            alive = worker.poll() is None
            os.killpg(worker.pid, signal.SIGKILL)  # the worker, Meltano, the tap, the target
        finally:
            with_output = worker.communicate(timeout=30)[0]
        assert alive, "the run ended before a bookmark was stored:\n" + with_output[-4000:]
        assert bookmark is not None, "no bookmark stored within 120 s:\n" + with_output[-4000:]
        assert worker.returncode == -signal.SIGKILL
        killed_after = time.monotonic() - started
        gone = time.monotonic() + 10
        while time.monotonic() < gone:  # nothing of the killed run still writes
            try:
                os.killpg(worker.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("a process of the killed run survived SIGKILL of its group")

        killed_at = moment(bookmark)
        assert modified[0] < killed_at < modified[-1], "a bookmark from the middle of the run"
        (attempt,) = FleetDB(postgres).attempts("killed")
        assert attempt.status == "running", "the killed attempt never finished"
        with psycopg.connect(postgres, autocommit=True) as con:
            committed = con.execute(f'select count(*) from {COMPANY}."{TABLE}"').fetchone()
        assert committed is not None
        at_bookmark = sum(m <= killed_at for m in modified)
        assert committed[0] >= at_bookmark, "the STATE came after its rows were committed"
        assert committed[0] < total, "the kill landed before the last rows were written"

        # The rerun: Meltano hands the tap the stored bookmark.
        calls_before = query_calls(emulator)
        fleet = load_fleet(fleet_file)
        with pytest.MonkeyPatch.context() as patch:
            for key in ("FLEET_STATE_URL", "FLEET_WAREHOUSE_URL", f"SECRET_{COMPANY.upper()}"):
                patch.setenv(key, env[key])
            rerun_started = time.monotonic()
            result = run_partition(
                fleet, fleet.company(COMPANY), GROUP, FleetDB(postgres), run_id="rerun", attempt=2
            )
        calls = query_calls(emulator) - calls_before
        rerun_seconds = time.monotonic() - rerun_started

        assert result.resumed, "Meltano found the killed run's state"
        since = killed_at - dt.timedelta(minutes=DEFAULT_LOOKBACK_MINUTES)
        expected = sum(m >= since for m in modified)
        assert result.records == {TABLE: expected}, "the rows from the bookmark on, no more"
        assert expected < total
        assert calls == -(-expected // PAGE_SIZE), "pages of the rows from the bookmark on"

        with psycopg.connect(postgres, autocommit=True) as con:
            loaded = [str(r[0]) for r in con.execute(f'select key from {COMPANY}."{TABLE}"')]
            final = meltano_states(con)[SID]
        assert len(loaded) == len(set(loaded)), "no row twice"
        assert sorted(loaded) == sorted(str(row["key"]) for row in rows), "no row lost"
        final_bookmark = final["bookmarks"][TABLE]["replication_key_value"]
        assert moment(final_bookmark) == modified[-1]
        print(
            f"killed at bookmark {bookmark} ({at_bookmark} of {total} rows, "
            f"{committed[0]} committed); rerun read {expected} rows in {calls} query calls; "
            f"final bookmark {final_bookmark}; killed after {killed_after:.1f} s, "
            f"rerun {rerun_seconds:.1f} s"
        )
