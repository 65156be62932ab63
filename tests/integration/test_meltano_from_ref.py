"""A new user's path: `meltano init`, `meltano add --from-ref` both plugins, `meltano run`.

Nothing from this repository's own Meltano project is used: a fresh project in a temp folder
adds tap-intacct and target-intacct from the committed Hub-format definition files
(``plugins/``), unmodified. Their ``pip_url`` is the distribution name, ``intacct-singer``;
until it is on PyPI, the wheel built from this checkout is offered through ``UV_FIND_LINKS``
(Meltano installs plugins with uv). Every setting comes from Meltano's own environment
variables (``TAP_INTACCT_*``, ``TARGET_INTACCT_*``), as the README documents. Then one
``meltano run tap-intacct target-intacct`` goes both ways against the emulator: vendors are
read, renamed by a stream map, and written back, and the emulator must hold the new names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from intacct_emulator.testing import EmulatorServer
from tests.support.paths import ROOT

MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
TAP_REF = ROOT / "plugins" / "extractors" / "tap-intacct--intacct-singer.yml"
TARGET_REF = ROOT / "plugins" / "loaders" / "target-intacct--intacct-singer.yml"
SUFFIX = " (via meltano)"


def meltano(project: Path, env: dict[str, str], *args: str) -> tuple[str, str]:
    """Run one meltano command in the project; (stdout, stderr) (fails loudly)."""
    assert MELTANO.exists(), f"{MELTANO} is missing: `make test` installs Meltano there"
    done = subprocess.run(
        [str(MELTANO), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"meltano {' '.join(args)} failed:\n{output[-4000:]}"
    return done.stdout, done.stderr


def vendor_names(emulator: EmulatorServer) -> dict[str, str]:
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers()) as http:
        body = {"object": "accounts-payable/vendor", "fields": ["key", "name"], "size": 4000}
        rows = http.post("/services/core/query", json=body).raise_for_status().json()
    return {row["key"]: row["name"] for row in rows["ia::result"]}


def plugin_env(prefix: str, emulator: EmulatorServer, tmp_path: Path) -> dict[str, str]:
    return {
        f"{prefix}_BASE_URL": emulator.base_url,
        f"{prefix}_CLIENT_ID": "demo-client",
        f"{prefix}_CLIENT_SECRET": "demo-secret",
        f"{prefix}_USERNAME": "admin@DEMO",
        f"{prefix}_TOKEN_STORE": str(tmp_path / "tokens.json"),
    }


@pytest.mark.slow
def test_fresh_project_adds_both_plugins_from_ref_and_runs_them(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*build, "-w", str(wheels), str(ROOT)],
        check=True,
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "INTACCT_"))},
        "UV_FIND_LINKS": str(wheels),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    meltano(tmp_path, env, "init", "project", "--no_usage_stats")
    project = tmp_path / "project"

    with EmulatorServer(seed_records=8) as emulator:
        before = vendor_names(emulator)
        assert before
        env.update(plugin_env("TAP_INTACCT", emulator, tmp_path))
        env.update(plugin_env("TARGET_INTACCT", emulator, tmp_path))
        env["TAP_INTACCT_OBJECTS"] = json.dumps(["accounts-payable/vendor"])
        env["TAP_INTACCT_STREAM_MAPS"] = json.dumps(
            {"accounts_payable__vendor": {"name": f"name + '{SUFFIX}'"}}
        )
        env["TARGET_INTACCT_RESULTS_PATH"] = str(tmp_path / "results.jsonl")

        meltano(project, env, "add", "--from-ref", str(TAP_REF), "tap-intacct")
        meltano(project, env, "add", "--from-ref", str(TARGET_REF), "target-intacct")
        config = yaml.safe_load((project / "meltano.yml").read_text())
        assert "version" not in config
        (tap,) = config["plugins"]["extractors"]
        (target,) = config["plugins"]["loaders"]
        assert (tap["variant"], tap["pip_url"]) == ("intacct-singer", "intacct-singer")
        assert (target["variant"], target["pip_url"]) == ("intacct-singer", "intacct-singer")

        about, _ = meltano(project, env, "invoke", "tap-intacct", "--about", "--format=json")
        assert json.loads(about)["version"] == "0.1.0"

        _, output = meltano(project, env, "run", "tap-intacct", "target-intacct")
        after = vendor_names(emulator)

    assert "tap-intacct v0.1.0" in output  # the plugin version, read from intacct-singer
    assert after == {key: name + SUFFIX for key, name in before.items()}
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == len(before)
    assert {r["status"] for r in results} == {"ok"}
