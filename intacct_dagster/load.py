"""The reverse direction: warehouse rows -> target-intacct, one company at a time, results kept.

For each company, the rows of the fleet file's ``load.tables`` (looked up in the company's own
schema, or ``load.schema``) are read from PostgreSQL and written to target-intacct's stdin as
Singer SCHEMA/RECORD messages, one stream per table mapped to its Intacct object. The target
writes one result per record; each company's results file and write journal live in
``<results_dir>/<company>/``, so a fleet load leaves one folder per company to inspect, and a
rerun after a crash finds that company's journal (the target replays instead of writing twice).

The company's whole tier is the target's ``max_concurrency``: a company's load runs alone. It
holds every one of the company's request slots (``FleetDB.partition_lock``), so no sync of the
same company runs beside it, on any worker, in any run.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from intacct_dagster.fleet import Company, Fleet, FleetError
from intacct_dagster.fleet_db import FleetDB, LockTimeoutError, libpq_url
from intacct_dagster.runner import (
    PartitionFailedError,
    child_env,
    die_with_parent,
    error_summary,
    executable,
)

LOAD_GROUP = "load"
"""The stream-group name load attempts are recorded under in the attempts table."""

_PG_TYPES = {
    "integer": "integer",
    "bigint": "integer",
    "smallint": "integer",
    "numeric": "number",
    "double precision": "number",
    "real": "number",
    "boolean": "boolean",
    "jsonb": "object",
    "json": "object",
}


@dataclass
class LoadResult:
    """One company's load: result statuses counted from its results file, and where it is."""

    company: str
    statuses: dict[str, int] = field(default_factory=dict)
    records: int = 0
    results_path: str = ""
    seconds: float = 0.0


def _schema_message(stream: str, columns: list[tuple[str, str]]) -> dict[str, Any]:
    properties = {
        name: {"type": [_PG_TYPES.get(pg_type, "string"), "null"]} for name, pg_type in columns
    }
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"properties": properties},
        "key_properties": [],
    }


def _write_table(con: psycopg.Connection[Any], schema: str, table: str, out: IO[str]) -> int:
    """SCHEMA then one RECORD per row of ``schema.table``; returns the number of rows."""
    columns = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table),
    ).fetchall()
    if not columns:
        raise PartitionFailedError(f"load: table {schema}.{table} not found", retryable=False)
    out.write(json.dumps(_schema_message(table, columns)) + "\n")
    count = 0
    query = f'select to_jsonb(t)::text from "{schema}"."{table}" t'  # noqa: S608 - names checked
    for (row,) in con.execute(query):
        out.write('{"type":"RECORD","stream":' + json.dumps(table) + ',"record":' + row + "}\n")
        count += 1
    return count


def run_load(
    fleet: Fleet,
    company: Company,
    store: FleetDB,
    *,
    run_id: str,
    attempt: int,
    timeout: float = 3600.0,
) -> LoadResult:
    """Load one company's tables into its Intacct company; raises PartitionFailedError."""
    spec = fleet.load
    if spec is None:
        raise FleetError("the fleet file has no load section")
    url = os.environ.get(spec.url_env)
    if not url:
        raise FleetError(f"load: environment variable {spec.url_env} is not set")
    folder = Path(spec.results_dir) / company.name
    folder.mkdir(parents=True, exist_ok=True)
    result = LoadResult(company.name, results_path=str(folder / "results.jsonl"))
    slots = company.parallel_groups
    try:
        with store.partition_lock(company.name, LOAD_GROUP, slots, all_slots=True, timeout=timeout):
            attempt_id = store.start_attempt(
                run_id, company.name, LOAD_GROUP, attempt, os.getpid(), False
            )
            started = time.monotonic()
            try:
                _load(fleet, company, url, folder, result)
            except PartitionFailedError as failed:
                seconds = time.monotonic() - started
                store.finish_attempt(attempt_id, "failed", 0, 0, seconds, str(failed))
                raise
            result.seconds = time.monotonic() - started
            store.finish_attempt(attempt_id, "succeeded", result.records, 0, result.seconds)
    except LockTimeoutError as busy:
        raise PartitionFailedError(str(busy), retryable=True) from None
    return result


def _load(fleet: Fleet, company: Company, url: str, folder: Path, result: LoadResult) -> None:
    spec = fleet.load
    assert spec is not None
    secret = company.client_secret()
    schema = spec.schema or company.name
    config = {
        **spec.target_config,
        "base_url": company.base_url,
        "client_id": company.client_id,
        "username": company.username,
        "max_concurrency": company.tier,
        "results_path": result.results_path,
        "journal_path": str(folder / "journal.jsonl"),
        "streams": {table: {"object": obj} for obj, table in spec.tables.items()},
    }
    with tempfile.TemporaryDirectory(prefix=f"intacct-load-{company.name}-") as tmp:
        work = Path(tmp)
        config["token_store"] = str(work / "tokens.json")
        config_file = work / "target.json"
        config_file.write_text(json.dumps(config))
        log = work / "target.log"
        with log.open("w") as err:
            target = subprocess.Popen(  # noqa: S603 - configured executable, no shell
                [
                    executable(spec.target_executable),
                    "--config",
                    str(config_file),
                    "--config",
                    "ENV",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=work,
                env=child_env({"TARGET_INTACCT_CLIENT_SECRET": secret}),
                text=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl
            )
            assert target.stdin is not None
            try:
                with psycopg.connect(libpq_url(url)) as con:
                    for table in spec.tables.values():
                        result.records += _write_table(con, schema, table, target.stdin)
            finally:
                target.stdin.close()
            code = target.wait(timeout=3600)
        statuses: Counter[str] = Counter()
        results_file = Path(result.results_path)
        if results_file.exists():
            for line in results_file.read_text().splitlines():
                if line.strip():
                    statuses[str(json.loads(line).get("status"))] += 1
        result.statuses = dict(statuses)
        if code != 0:
            error = error_summary(log.read_text())
            raise PartitionFailedError(
                f"{company.name}/load: target-intacct exited {code}: {error} "
                f"(results: {result.results_path})",
                retryable="invalid_client" not in error and "ConfigError" not in error,
            )
