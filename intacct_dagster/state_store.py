"""Singer state and partition attempts in PostgreSQL: the one place every worker reaches.

A worker's disk dies with the worker (a Kubernetes pod, a Celery host), so a company's state
can only live somewhere shared. Two tables, created on first use:

* ``intacct_fleet_state``: the latest Singer STATE per state id (``fleet:<company>:<group>``,
  the same shape as Meltano's ``<env>:<tap>-to-<target>`` ids). It is written each time the
  target emits STATE, i.e. after the target committed the rows before it, so a retry resumes
  from the last committed point and the target's upsert absorbs the replayed tail.
* ``intacct_fleet_attempts``: one row per partition attempt (pid, start, end, outcome,
  counts), for the fleet summary and for an operator asking "which worker ran acme?".

Meltano's own system database can live on the same server (``MELTANO_DATABASE_URI``); this
store is separate because the partitions run the plugins directly, without a Meltano project
on every worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

_SCHEMA = """
create table if not exists intacct_fleet_state (
    state_id text primary key,
    state jsonb not null,
    updated_at timestamptz not null default now()
);
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


def state_id(company: str, group: str) -> str:
    """The state id of one company's stream group."""
    return f"fleet:{company}:{group}"


def libpq_url(url: str) -> str:
    """psycopg wants ``postgresql://``; SQLAlchemy-style ``postgresql+psycopg://`` is accepted."""
    scheme, sep, rest = url.partition("://")
    return ("postgresql" + sep + rest) if scheme.startswith("postgresql+") else url


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


class StateStore:
    """A small client for the two tables; one short connection per call (workers are many)."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    def ensure_schema(self) -> None:
        with self._connect() as con:
            # Two workers creating the tables at once must not both fail: serialise on a lock.
            con.execute("select pg_advisory_lock(7317001)")
            try:
                con.execute(_SCHEMA)
            finally:
                con.execute("select pg_advisory_unlock(7317001)")

    def get(self, sid: str) -> dict[str, Any] | None:
        with self._connect() as con:
            row = con.execute("select state from intacct_fleet_state where state_id = %s", (sid,))
            found = row.fetchone()
        return None if found is None else dict(found[0])

    def put(self, sid: str, state: dict[str, Any]) -> None:
        with self._connect() as con:
            con.execute(
                "insert into intacct_fleet_state (state_id, state) values (%s, %s) "
                "on conflict (state_id) do update set state = excluded.state, updated_at = now()",
                (sid, Jsonb(state)),
            )

    def clear(self, sid: str) -> None:
        with self._connect() as con:
            con.execute("delete from intacct_fleet_state where state_id = %s", (sid,))

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
    ) -> None:
        with self._connect() as con:
            con.execute(
                "update intacct_fleet_attempts set status = %s, records = %s, api_calls = %s, "
                "seconds = %s, error = %s, finished_at = now() where id = %s",
                (status, records, api_calls, seconds, error, attempt_id),
            )

    def attempts(self, run_id: str | None = None) -> list[Attempt]:
        """Every attempt (of one Dagster run, if given), oldest first."""
        query = (
            "select company, stream_group, attempt, pid, resumed, status, records, api_calls, "
            "seconds, error from intacct_fleet_attempts"
        )
        params: tuple[Any, ...] = ()
        if run_id is not None:
            query += " where run_id = %s"
            params = (run_id,)
        with self._connect() as con:
            rows = con.execute(query + " order by id", params).fetchall()
        return [Attempt(*row) for row in rows]


def dumps_state(state: dict[str, Any]) -> str:
    """Compact JSON for the tap's ``--state`` file."""
    return json.dumps(state, separators=(",", ":"))
