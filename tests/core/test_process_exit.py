"""The console scripts' prompt exit keeps every output and exit status of a normal exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from intacct_api.process_exit import NORMAL_EXIT_ENV
from tests.support.paths import ROOT

SCRIPT = """
import atexit, sys, threading, time
from intacct_api.process_exit import run_and_exit
atexit.register(lambda: print("finalized", file=sys.stderr))
def command():
    print("out-line")  # buffered: must still reach a pipe
    if "thread" in sys.argv:
        threading.Thread(target=time.sleep, args=(0.3,)).start()
    raise SystemExit(eval(sys.argv[1]))
run_and_exit(command)
"""


def run(code: str, *extra: str, normal: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, NORMAL_EXIT_ENV: "1" if normal else "0"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, code, *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [("None", 0, ""), ("0", 0, ""), ("3", 3, ""), ("'no config given'", 1, "no config given")],
)
def test_status_and_output_match_a_normal_exit(code: str, status: int, message: str) -> None:
    fast, normal = run(code), run(code, normal=True)
    assert fast.returncode == normal.returncode == status
    assert fast.stdout == normal.stdout == "out-line\n"
    assert message in fast.stderr
    assert message in normal.stderr
    assert "finalized" not in fast.stderr  # finalization skipped...
    assert "finalized" in normal.stderr  # ...unless asked for


def test_a_thread_still_running_gets_the_normal_exit() -> None:
    result = run("0", "thread")
    assert result.returncode == 0
    assert "finalized" in result.stderr


def test_the_target_script_flushes_its_state_and_results_before_leaving(tmp_path: Path) -> None:
    """The real console script in dry-run: every STATE line and the results file are complete,
    exactly as with a normal exit."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "base_url": "http://127.0.0.1:9/ia/api/v1",
                "client_id": "c",
                "client_secret": "s",
                "username": "u@C",
                "dry_run": True,
                "results_path": str(tmp_path / "results.jsonl"),
            }
        )
    )
    schema = {
        "type": "SCHEMA",
        "stream": "accounts_receivable__customer",
        "schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        "key_properties": ["id"],
    }
    lines = [json.dumps(schema)]
    for i in range(1200):
        record = {"id": f"C{i}", "name": f"Customer {i}"}
        lines.append(json.dumps({"type": "RECORD", "stream": schema["stream"], "record": record}))
        if i % 100 == 99:
            lines.append(json.dumps({"type": "STATE", "value": {"upto": i}}))
    script = Path(sys.executable).parent / "target-intacct"
    outputs = []
    for normal in (False, True):
        (tmp_path / "results.jsonl").unlink(missing_ok=True)
        done = subprocess.run(
            [str(script), "--config", str(config)],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            env={**os.environ, NORMAL_EXIT_ENV: "1" if normal else "0"},
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        results = (tmp_path / "results.jsonl").read_text().splitlines()
        outputs.append((done.stdout.splitlines(), len(results)))
    (fast_states, fast_results), (normal_states, normal_results) = outputs
    assert fast_results == normal_results == 1200
    assert fast_states == normal_states
    assert json.loads(fast_states[-1]) == {"upto": 1199}  # Singer targets print the state value
