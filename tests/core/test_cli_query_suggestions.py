"""`intacct query` on a misspelled object: one error line with the closest object names.

The installed ``intacct`` script runs against the emulator over loopback HTTP. A name the spec
does not know is still sent (custom ``nsp::`` objects are unknown to the spec), and only when
Intacct refuses it too (REST-1105) does the CLI answer with suggestions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from intacct_emulator.testing import EmulatorServer

INTACCT = Path(sys.executable).parent / "intacct"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed_records=2) as server:
        yield server


def query(emulator: EmulatorServer, tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "INTACCT_BASE_URL": emulator.base_url,
        "INTACCT_CLIENT_ID": "demo-client",
        "INTACCT_CLIENT_SECRET": "demo-secret",
        "INTACCT_USERNAME": "admin@DEMO",
        "INTACCT_TOKEN_STORE": str(tmp_path / "tokens.json"),
    }
    return subprocess.run(
        [str(INTACCT), "query", name, "--fields", "key,id", "--limit", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    ("name", "first"),
    [("accounts-payable/vendr", "accounts-payable/vendor"), ("vendor", "accounts-payable/vendor")],
)
def test_misspelled_object_suggests_the_closest_names(
    emulator: EmulatorServer, tmp_path: Path, name: str, first: str
) -> None:
    done = query(emulator, tmp_path, name)
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: unknown object {name!r}; did you mean: {first},")
    assert "Traceback" not in done.stderr


def test_a_correct_name_still_queries(emulator: EmulatorServer, tmp_path: Path) -> None:
    done = query(emulator, tmp_path, "accounts-payable/vendor")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('{"key":')
