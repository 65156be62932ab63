"""The fleet's PostgreSQL: Meltano's system database, plus the fleet's attempts and locks.

A worker's disk dies with the worker (a Kubernetes pod, a Celery host), so everything a
retry on another worker needs lives in one PostgreSQL database every worker reaches (the
fleet file's ``state_url_env``):

* **Singer state: Meltano's own state backend.** Each partition runs ``meltano el`` with
  ``MELTANO_DATABASE_URI`` pointing here and the state id ``fleet:<company>:<group>``; Meltano
  keeps the state in its ``state`` table, writing each STATE the target emits (after the
  target committed the rows before it) as it arrives, so a killed run resumes from its last
  committed point. This module never writes that table; ``ensure_meltano_db`` only makes sure
  Meltano's schema exists before many workers start Meltano at once.
* ``intacct_fleet_attempts`` (the fleet's own): one row per partition attempt (pid, start,
  end, outcome, counts), for the fleet summary and for an operator asking "which worker ran
  acme?".
* **Session advisory locks**, held on one connection for a partition's whole run and released
  by the server when that connection ends (a killed worker's too):
  one per company x group (two workers never run the same group of a company at once, on any
  worker, in any run), and ``parallel_groups`` slots per company (a group holds one slot; a
  company's load holds all of them), so the requests in flight against one company never
  exceed ``parallel_groups x (tier // parallel_groups) <= tier`` across every run and worker.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

_SCHEMA = """
create table if not exists intacct_fleet_attempts (
    id bigserial primary key,
    run_id text not null,
    company text not null,
    stream_group text not null,
    attempt int not null,
    pid int not null,
    resumed boolean not null,
    status text not null default 'running',
    records bigint,
    api_calls bigint,
    seconds double precision,
    error text,
    started_at timestamptz not null default now(),
    finished_at timestamptz
);
"""
_SCHEMA_LOCK = 7317001
_MELTANO_LOCK = 7317002
_GROUP_LOCKS = 7317003
"""First key of the two-key advisory locks: one per company x group."""
_SLOT_LOCKS = 7317004
"""First key of the per-company slot locks."""
_POLL = 0.1

MELTANO_BOOTSTRAP_PROJECT = (
    "project_id: intacct-fleet-bootstrap\nsend_anonymous_usage_stats: false\n"
)


def state_id(company: str, group: str) -> str:
    """The Meltano state id of one company's stream group."""
    return f"fleet:{company}:{group}"


def libpq_url(url: str) -> str:
    """psycopg wants ``postgresql://``; SQLAlchemy-style ``postgresql+psycopg://`` is accepted."""
    scheme, sep, rest = url.partition("://")
    return ("postgresql" + sep + rest) if scheme.startswith("postgresql+") else url


def sqlalchemy_url(url: str) -> str:
    """Meltano's ``MELTANO_DATABASE_URI`` for the same server, with the psycopg 3 driver."""
    scheme, sep, rest = url.partition("://")
    return ("postgresql+psycopg" + sep + rest) if scheme in ("postgresql", "postgres") else url


class LockTimeoutError(TimeoutError):
    """A partition waited longer than allowed for its group lock or a company slot."""


@dataclass
class Attempt:
    """What the attempts table says about one partition attempt."""

    company: str
    stream_group: str
    attempt: int
    pid: int
    resumed: bool
    status: str
    records: int | None
    api_calls: int | None
    seconds: float | None
    error: str | None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class FleetDB:
    """A small client for the attempts table and the locks; one short connection per call."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    def ensure_schema(self) -> None:
        with self._connect() as con:
            # Two workers creating the table at once must not both fail: serialise on a lock.
            con.execute("select pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                con.execute(_SCHEMA)
            finally:
                con.execute("select pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))

    def ensure_meltano_db(self, meltano: str, env: dict[str, str]) -> bool:
        """Create Meltano's system tables once, before workers start Meltano concurrently.

        Every Meltano command migrates an empty system database first; several doing it at
        once on a fresh database collide (one transaction's ``create table`` fails). Under an
        advisory lock, the first caller runs ``meltano upgrade database``; the others find the
        ``state`` table. Returns whether this call migrated.
        """
        with self._connect() as con:
            con.execute("select pg_advisory_lock(%s)", (_MELTANO_LOCK,))
            try:
                found = con.execute("select to_regclass('state') is not null").fetchone()
                if found is not None and found[0]:
                    return False
                with tempfile.TemporaryDirectory(prefix="intacct-fleet-meltano-") as tmp:
                    (Path(tmp) / "meltano.yml").write_text(MELTANO_BOOTSTRAP_PROJECT)
                    done = subprocess.run(  # noqa: S603 - the configured meltano, no shell
                        [meltano, "upgrade", "database"],
                        cwd=tmp,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=300,
                        check=False,
                    )
                if done.returncode != 0:
                    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                    raise RuntimeError(f"meltano upgrade database failed: {' | '.join(tail)}")
                return True
            finally:
                con.execute("select pg_advisory_unlock(%s)", (_MELTANO_LOCK,))

    @contextlib.contextmanager
    def partition_lock(
        self, company: str, group: str, slots: int, *, all_slots: bool = False, timeout: float
    ) -> Iterator[float]:
        """Hold the company x group lock and one of the company's ``slots`` (or all of them).

        Waits (polling, so the wait is bounded by ``timeout``) and yields the seconds waited.
        The locks live as long as this connection: released on exit, or by the server when a
        killed worker's connection drops.
        """
        started = time.monotonic()
        deadline = started + timeout
        con = self._connect()
        try:
            self._wait(con, _GROUP_LOCKS, f"{company}:{group}", deadline, f"{company}/{group}")
            wanted = range(slots) if all_slots else None
            if wanted is not None:  # a load: every slot, in index order (no deadlock)
                for index in wanted:
                    self._wait(con, _SLOT_LOCKS, f"{company}#{index}", deadline, company)
            else:
                while not any(
                    self._try(con, _SLOT_LOCKS, f"{company}#{index}") for index in range(slots)
                ):
                    self._check(deadline, company)
                    time.sleep(_POLL)
            yield time.monotonic() - started
        finally:
            con.close()

    @staticmethod
    def _try(con: psycopg.Connection[Any], kind: int, name: str) -> bool:
        row = con.execute("select pg_try_advisory_lock(%s, hashtext(%s))", (kind, name))
        found = row.fetchone()
        return bool(found and found[0])

    def _wait(
        self, con: psycopg.Connection[Any], kind: int, name: str, deadline: float, what: str
    ) -> None:
        while not self._try(con, kind, name):
            self._check(deadline, what)
            time.sleep(_POLL)

    @staticmethod
    def _check(deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise LockTimeoutError(f"{what}: still running elsewhere (lock wait timed out)")

    def start_attempt(
        self, run_id: str, company: str, group: str, attempt: int, pid: int, resumed: bool
    ) -> int:
        with self._connect() as con:
            row = con.execute(
                "insert into intacct_fleet_attempts "
                "(run_id, company, stream_group, attempt, pid, resumed) "
                "values (%s, %s, %s, %s, %s, %s) returning id",
                (run_id, company, group, attempt, pid, resumed),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def finish_attempt(
        self,
        attempt_id: int,
        status: str,
        records: int,
        api_calls: int,
        seconds: float,
        error: str | None = None,
        resumed: bool | None = None,
    ) -> None:
        with self._connect() as con:
            con.execute(
                "update intacct_fleet_attempts set status = %s, records = %s, api_calls = %s, "
                "seconds = %s, error = %s, resumed = coalesce(%s, resumed), "
                "finished_at = now() where id = %s",
                (status, records, api_calls, seconds, error, resumed, attempt_id),
            )

    def attempts(self, run_id: str | None = None) -> list[Attempt]:
        """Every attempt (of one Dagster run, if given), oldest first."""
        query = (
            "select company, stream_group, attempt, pid, resumed, status, records, api_calls, "
            "seconds, error, started_at, finished_at from intacct_fleet_attempts"
        )
        params: tuple[Any, ...] = ()
        if run_id is not None:
            query += " where run_id = %s"
            params = (run_id,)
        with self._connect() as con:
            rows = con.execute(query + " order by id", params).fetchall()
        return [Attempt(*row) for row in rows]
