"""``python -m intacct_dagster run|sequential FLEET_FILE``: a fleet run without a Dagster daemon.

``run`` executes the fleet job with Dagster's multiprocess executor on a Dagster instance in
``--dagster-home`` (a temporary one by default), at most ``parallel_groups`` steps of one
company at once, then prints a JSON summary of the run (per partition: status, attempts,
records, API calls, seconds; totals) built from the attempts table in PostgreSQL. Exit status
0 only when every partition succeeded.

``sequential`` runs the same partitions one after another in this process, without Dagster:
the baseline ``benchmarks/bench_fleet.py`` compares against.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

from intacct_dagster.fleet import Fleet, load_fleet
from intacct_dagster.fleet_db import Attempt, FleetDB
from intacct_dagster.runner import PartitionFailedError, prepare, run_partition


def summarize(attempts: list[Attempt], wall_seconds: float, run_id: str) -> dict[str, Any]:
    """One entry per partition (its last attempt decides), plus fleet totals."""
    partitions: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        key = f"{attempt.company}/{attempt.stream_group}"
        entry = partitions.setdefault(key, {"attempts": 0})
        entry["attempts"] += 1
        entry.update(
            status=attempt.status,
            records=attempt.records,
            api_calls=attempt.api_calls,
            seconds=attempt.seconds,
            resumed=attempt.resumed,
            error=attempt.error,
        )
    succeeded = [p for p in partitions.values() if p["status"] == "succeeded"]
    return {
        "run_id": run_id,
        "wall_seconds": round(wall_seconds, 3),
        "partitions": partitions,
        "succeeded": len(succeeded),
        "failed": sorted(k for k, p in partitions.items() if p["status"] != "succeeded"),
        "records": sum(p["records"] or 0 for p in succeeded),
        "api_calls": sum(p["api_calls"] or 0 for p in succeeded),
        "partition_seconds": round(sum(p["seconds"] or 0.0 for p in succeeded), 3),
    }


def run_dagster(
    fleet_file: str,
    workers: int,
    dagster_home: str | None,
    only: list[str] | None = None,
    load: bool = False,
) -> dict[str, Any]:
    """The fleet job (or with ``load`` the fleet load job) on the multiprocess executor.

    ``only`` names companies to run (their ops are selected); by default the whole fleet.
    Returns the summary.
    """
    from dagster import DagsterInstance, execute_job, reconstructable

    from intacct_dagster.definitions import (
        FLEET_FILE_ENV,
        fleet_job_from_env,
        load_job_from_env,
    )

    fleet = load_fleet(fleet_file)
    os.environ[FLEET_FILE_ENV] = os.path.abspath(fleet_file)
    os.environ["INTACCT_FLEET_WORKERS"] = str(workers)
    prepare(fleet)
    home = dagster_home or tempfile.mkdtemp(prefix="intacct-dagster-")
    with DagsterInstance.local_temp(tempdir=home) as instance:
        started = time.monotonic()
        selection = None
        if only and load:
            selection = [f"load__{company}" for company in only]
        elif only:
            selection = [
                f"sync__{company}__{group}"
                for company in only
                for group in fleet.company(company).groups
            ]
        builder = load_job_from_env if load else fleet_job_from_env
        result = execute_job(reconstructable(builder), instance=instance, op_selection=selection)
        wall = time.monotonic() - started
        run_id = result.run_id
    summary = summarize(FleetDB(fleet.state_url()).attempts(run_id), wall, run_id)
    summary["dagster_success"] = result.success
    summary["workers"] = workers
    return summary


def run_sequential(fleet: Fleet) -> dict[str, Any]:
    """Every partition one after another in this process (the benchmark's baseline)."""
    store = prepare(fleet)
    run_id = f"sequential-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    for company in fleet.companies:
        for group in company.groups:
            try:
                run_partition(fleet, company, group, store, run_id=run_id, attempt=1)
            except PartitionFailedError as failed:
                print(f"failed: {failed}", file=sys.stderr)
    return summarize(store.attempts(run_id), time.monotonic() - started, run_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m intacct_dagster")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the fleet job on Dagster's multiprocess executor")
    run.add_argument("fleet_file")
    run.add_argument("--workers", type=int, default=4, help="step processes at once")
    run.add_argument("--dagster-home", default=None, help="Dagster instance folder (temp)")
    run.add_argument("--only", default=None, help="comma-separated companies (default: all)")
    load = commands.add_parser("load", help="the fleet load job: warehouse -> target-intacct")
    load.add_argument("fleet_file")
    load.add_argument("--workers", type=int, default=4, help="step processes at once")
    load.add_argument("--dagster-home", default=None, help="Dagster instance folder (temp)")
    load.add_argument("--only", default=None, help="comma-separated companies (default: all)")
    sequential = commands.add_parser("sequential", help="one partition after another")
    sequential.add_argument("fleet_file")
    args = parser.parse_args(argv)
    if args.command in ("run", "load"):
        only = [name.strip() for name in args.only.split(",")] if args.only else None
        summary = run_dagster(
            args.fleet_file, args.workers, args.dagster_home, only, load=args.command == "load"
        )
    else:
        summary = run_sequential(load_fleet(args.fleet_file))
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0 if not summary["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
