"""The main job, end to end, against the local Intacct emulator (`make demo`).

1. start `intacct-emulator` with a seeded multi-entity company (a SQLite file under demo-output/),
2. `meltano run` the extraction job: tap-intacct -> target-duckdb (the embedded warehouse), then
   build the typed layer over it (:mod:`warehouse_types`: DECIMAL amounts, DATE dates),
3. `meltano run` tap-intacct -> target-jsonl, edit some vendor records in those files,
4. `meltano run` the load job: tap-jsonl -> target-intacct (upsert: records carry their `key`),
5. `meltano run` the extraction again: incremental, only the changed records come back,
6. check the warehouse against the emulator (edited vendors, per-account sums to the cent) and
   print a short summary: where each output is and how to open the warehouse.

Each Meltano command's own output goes to a log file under demo-output/logs/; the terminal gets
one line per step. It needs only the project venv (for the emulator) and the Meltano tool venv
it runs in (meltano + duckdb). Every plugin is declared fully in meltano.yml, so nothing touches
Meltano Hub.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from warehouse_types import create_typed_views

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-output"
PROJECT_BIN = ROOT / ".venv" / "bin"
TOOL_BIN = Path(sys.executable).parent
SEED_RECORDS = int(os.environ.get("DEMO_SEED_RECORDS", "200"))
CHANGED_VENDORS = 10
LOGS = OUT / "logs"
CATALOG = ROOT / ".meltano" / "run" / "tap-intacct" / "tap.properties.json"
RAW, TYPED = "intacct", "intacct_typed"
LINES_OBJECT = "general-ledger/journal-entry-line"
LINES_STREAM = "general_ledger__journal_entry_line"
EXAMPLE_QUERY = (  # printed for the reader, never run here
    "select glaccount__id, sum(txnamount) from intacct_typed.general_ledger__journal_entry_line "
    "group by 1"
)


def free_port() -> int:
    """A free loopback port, so the demo never collides with something already running."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(root_url: str, timeout: float = 60.0) -> None:
    """Poll the emulator's health endpoint until it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{root_url}/_emulator/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"emulator did not become healthy at {root_url}")


def stats(root_url: str) -> dict[str, int]:
    """Request counts per endpoint, as the emulator saw them."""
    with urllib.request.urlopen(f"{root_url}/_emulator/stats", timeout=5) as resp:  # noqa: S310
        return dict(json.load(resp)["requests"])


def meltano(*args: str, env: dict[str, str], log_name: str) -> float:
    """Run one meltano command in the project, its output in a log file; one line here.

    Returns the seconds it took. On failure the end of the log is printed and the demo stops.
    """
    log = LOGS / f"{log_name}.log"
    command = f"meltano {' '.join(args)}"
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(  # noqa: S603
            [str(TOOL_BIN / "meltano"), *args],
            check=False,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise SystemExit(f"{command} failed (exit {done.returncode}); end of {log}:\n{tail}")
    print(f"  {command:58s} {seconds:5.1f} s   log: {log.relative_to(ROOT)}", flush=True)
    return seconds


def warehouse_counts(db_path: Path) -> dict[str, int]:
    """Rows per table in the DuckDB warehouse."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables order by 1, 2"
        ).fetchall()
        return {
            f"{schema}.{name}": int(
                con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]  # type: ignore[index]  # noqa: S608 (names come from information_schema)
            )
            for schema, name in tables
        }


def change_vendors(extracted: Path, out_file: Path) -> list[dict[str, object]]:
    """Rename some vendors in the extracted files (whole records) and keep only those edits."""
    vendors = [json.loads(line) for line in extracted.read_text().splitlines() if line.strip()]
    changes = [
        {**vendor, "name": f"{vendor['name']} (renamed by demo)"}
        for vendor in sorted(vendors, key=lambda v: str(v["id"]))[:CHANGED_VENDORS]
    ]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("".join(json.dumps(c) + "\n" for c in changes))
    return changes


def vendor_names(db_path: Path) -> dict[str, str]:
    """Vendor id -> name in the warehouse, to see exactly which records a load changed."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute('select id, name from "intacct"."accounts_payable__vendor"').fetchall()
    return {str(vid): str(name) for vid, name in rows}


def emulator_rows(base_url: str, object_name: str, fields: list[str]) -> list[dict[str, Any]]:
    """Every row of an object from the emulator's query service (the truth to check against)."""
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "username": "admin@DEMO",
        }
    ).encode()
    with urllib.request.urlopen(f"{base_url}/oauth2/token", data=form, timeout=10) as resp:  # noqa: S310
        token = json.load(resp)["access_token"]
    rows: list[dict[str, Any]] = []
    start = 1
    while True:
        body = {"object": object_name, "fields": fields, "start": start, "size": 4000}
        request = urllib.request.Request(  # noqa: S310
            f"{base_url}/services/core/query",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            payload = json.load(resp)
        rows.extend(payload["ia::result"])
        if not payload["ia::meta"].get("next"):
            return rows
        start = int(payload["ia::meta"]["next"])


def check_sums(db_path: Path, base_url: str) -> tuple[int, Decimal, str]:
    """Journal-entry-line amounts per GL account: typed warehouse view vs the emulator.

    Returns (accounts compared, total, the DuckDB type of the amount column); exits when a sum
    differs by anything at all.
    """
    import duckdb

    truth: dict[str, Decimal] = {}
    for row in emulator_rows(base_url, LINES_OBJECT, ["glAccount.id", "txnAmount"]):
        if row["txnAmount"] is not None:
            account = str(row["glAccount.id"])
            truth[account] = truth.get(account, Decimal(0)) + Decimal(str(row["txnAmount"]))
    with duckdb.connect(str(db_path), read_only=True) as con:
        found = {
            str(account): total
            for account, total in con.execute(
                f'select glaccount__id, sum(txnamount) from {TYPED}."{LINES_STREAM}" '  # noqa: S608
                "where txnamount is not null group by 1"
            ).fetchall()
        }
        kind = con.execute(
            "select data_type from information_schema.columns where table_schema = ? "
            "and table_name = ? and column_name = 'txnamount'",
            [TYPED, LINES_STREAM],
        ).fetchone()
    if found != truth:
        differ = sorted(a for a in set(found) | set(truth) if found.get(a) != truth.get(a))
        raise SystemExit(f"warehouse sums differ from the emulator's for accounts {differ[:10]}")
    return len(truth), sum(truth.values(), Decimal(0)), str(kind[0] if kind else "?")


def main() -> int:
    """Run the demo; returns the process exit code."""
    if OUT.exists():
        shutil.rmtree(OUT)
    LOGS.mkdir(parents=True)
    (ROOT / ".meltano" / "run").mkdir(parents=True, exist_ok=True)
    port = free_port()
    root_url = f"http://127.0.0.1:{port}"
    base_url = f"{root_url}/ia/api/v1"
    warehouse = OUT / "warehouse.duckdb"
    changes_file = OUT / "changes" / "accounts_payable__vendor.jsonl"
    files_dir = OUT / "files"
    started = time.monotonic()

    emulator_log = (LOGS / "emulator.log").open("w")
    emulator = subprocess.Popen(  # noqa: S603
        [
            str(PROJECT_BIN / "intacct-emulator"),
            "serve",
            "--port",
            str(port),
            "--db",
            str(OUT / "emulator.db"),
            "--seed-records",
            str(SEED_RECORDS),
            "--random-seed",
            "42",
        ],
        stdout=emulator_log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(root_url)
        print(f"emulator: {base_url} (client demo-client / demo-secret, user admin@DEMO)")
        env = {
            **os.environ,
            "INTACCT_BASE_URL": base_url,
            "INTACCT_TOKEN_STORE": str(OUT / "tokens.json"),
            "DEMO_WAREHOUSE": str(warehouse),
            "DEMO_CHANGES_FILE": str(changes_file),
            "DEMO_FILES_DIR": str(files_dir),
            "DEMO_RESULTS_FILE": str(OUT / "intacct-results.jsonl"),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        meltano("install", env=env, log_name="1-install")
        # A demo starts from a fresh company, so it ignores state left by an earlier demo.
        meltano("run", "--full-refresh", "intacct-to-warehouse", env=env, log_name="2-extract")
        first = warehouse_counts(warehouse)

        names_before = vendor_names(warehouse)
        meltano("run", "--full-refresh", "intacct-to-files", env=env, log_name="3-files")
        changes = change_vendors(files_dir / "accounts_payable__vendor.jsonl", changes_file)
        meltano("run", "files-to-intacct", env=env, log_name="4-load-back")

        before_incremental = stats(root_url)
        meltano("run", "intacct-to-warehouse", env=env, log_name="5-incremental")
        after = stats(root_url)
        second = warehouse_counts(warehouse)
        decimals = create_typed_views(warehouse, CATALOG, RAW, TYPED)
        accounts, total, amount_type = check_sums(warehouse, base_url)

        results = [
            json.loads(line)
            for line in (OUT / "intacct-results.jsonl").read_text().splitlines()
            if line.strip()
        ]
        ok = sum(1 for r in results if r.get("status") == "ok")
        incremental_queries = after.get("POST /services/core/query", 0) - before_incremental.get(
            "POST /services/core/query", 0
        )
        names_after = vendor_names(warehouse)
        differ = {vid for vid, name in names_after.items() if names_before.get(vid) != name}
        expected = {str(c["id"]) for c in changes}
        rows = sum(first.values())
        print(f"\n== done in {time.monotonic() - started:.0f} s")
        print(
            f"warehouse  {warehouse.relative_to(ROOT)}: {len(first)} tables, {rows} rows "
            f"(raw, schema {RAW}); typed views in schema {TYPED} "
            f"({sum(len(c) for c in decimals.values())} DECIMAL amount columns)"
        )
        print(
            f"           {LINES_STREAM}.txnamount is {amount_type}: sums for {accounts} GL "
            f"accounts equal the emulator's to the cent (total {total})"
        )
        print(f"files      {files_dir.relative_to(ROOT)}/ (target-jsonl, one file per stream)")
        print(
            f"load back  {ok}/{len(results)} records ok, results in "
            f"{(OUT / 'intacct-results.jsonl').relative_to(ROOT)}"
        )
        verdict = "exactly the edited ones" if differ == expected else "UNEXPECTED"
        grew = {t: second[t] - first.get(t, 0) for t in second if second[t] != first.get(t, 0)}
        print(
            f"re-run     incremental: {incremental_queries} query calls; vendors renamed in "
            f"the warehouse: {len(differ)} ({verdict})" + (f"; new rows {grew}" if grew else "")
        )
        print(f"logs       {LOGS.relative_to(ROOT)}/ (each meltano command, the emulator)")
        print(
            'open it    .venv-meltano/bin/python -c "import duckdb; '
            f"print(duckdb.connect('{warehouse.relative_to(ROOT)}', read_only=True).sql("
            f"'{EXAMPLE_QUERY}'))\""
        )
        return 0 if ok == len(changes) == CHANGED_VENDORS and differ == expected else 1
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()
        emulator_log.close()


if __name__ == "__main__":
    sys.exit(main())
