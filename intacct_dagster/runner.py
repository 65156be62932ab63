"""One partition's work: ``meltano el tap-intacct <target>`` for one company's stream group.

Each partition is a Meltano run (``meltano el ... --state-id fleet:<company>:<group>``) in a
small Meltano project generated for it: the two plugins of the fleet file, the company's
configuration, and its secrets only as references to environment variables (``${SECRET}``,
expanded by Meltano at run time, never written to the project). Meltano's system database is
the fleet's PostgreSQL (``MELTANO_DATABASE_URI``), so Meltano's own state backend holds every
company's Singer state: Meltano reads it before the tap starts and writes each STATE the
target emits (the target emits it after committing the rows before it), merged into the
stored state as it arrives; a retry on another worker resumes from the last committed point
and the target's upsert absorbs the replayed tail. Around Meltano this module adds:

* one partition of a company x group at a time, and the company's request budget, across
  every worker and run: the advisory locks of ``FleetDB.partition_lock``; each running group's
  tap gets ``tier // parallel_groups`` requests in flight;
* nothing survives a killed worker: Meltano, and through small exec wrappers the tap and the
  target it starts, die with their parent (Linux ``PR_SET_PDEATHSIG``), so no orphan keeps
  writing into the warehouse while the retry writes the same rows;
* error text taken from the plugins is their exception or ERROR lines, never their config;
* counts for observability: records per stream and API calls from the tap's METRIC lines,
  state checkpoints from Meltano's, as Meltano logs them (``--log-format json``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from intacct_dagster.fleet import Company, Fleet, FleetError
from intacct_dagster.fleet_db import FleetDB, LockTimeoutError, sqlalchemy_url, state_id

_PR_SET_PDEATHSIG = 1
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit): .+")
_NOT_RETRYABLE = ("ConfigError", "invalid_client", "invalid_grant", "client authentication")
"""Error text meaning a retry cannot help (credentials, configuration): fail the partition now."""


class PartitionFailedError(RuntimeError):
    """A partition's tap or target failed; ``retryable`` False means a retry cannot help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class PartitionResult:
    """What one successful partition did (becomes Dagster materialization metadata)."""

    company: str
    group: str
    records: dict[str, int] = field(default_factory=dict)
    api_calls: int = 0
    seconds: float = 0.0
    checkpoints: int = 0
    resumed: bool = False
    waited_seconds: float = 0.0

    @property
    def total_records(self) -> int:
        return sum(self.records.values())


def die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGKILL this child when the worker that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def executable(name: str) -> str:
    """A plugin executable: a path as given, else next to this interpreter, else on PATH."""
    if os.sep in name:
        return name
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def tap_config(company: Company, objects: tuple[str, ...], token_store: Path) -> dict[str, Any]:
    """The tap's config for one group; the secret only as ``${client_secret_env}``."""
    config: dict[str, Any] = {
        **company.tap_config,
        "base_url": company.base_url,
        "client_id": company.client_id,
        "client_secret": "${" + company.client_secret_env + "}",
        "username": company.username,
        "objects": list(objects),
        "max_concurrency": company.per_group_concurrency,
        "token_store": str(token_store),
    }
    if company.entities:
        config["entities"] = list(company.entities)
    return config


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The worker's environment minus any other TAP_INTACCT_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_INTACCT_")}
    env.update(extra)
    return env


def error_summary(log_text: str) -> str:
    """The clear error of a plugin's stderr: its ERROR lines (cause, then fix), else the last
    exception line of a traceback, else its last line. Only messages, never the config."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line.rsplit(" | ", 1)[-1] for line in lines if "| ERROR" in line]
    if errors:
        return "; ".join(errors[-3:])
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line
    return lines[-1] if lines else "(no output)"


def read_metrics(log_text: str) -> tuple[dict[str, int], int]:
    """Records per stream and API calls from singer-sdk's ``METRIC: {...}`` log lines."""
    records: Counter[str] = Counter()
    calls = 0
    for line in log_text.splitlines():
        _, marker, payload = line.partition("METRIC: ")
        if not marker:
            continue
        try:
            metric = json.loads(payload)
        except ValueError:
            continue
        tags = metric.get("tags") or {}
        if metric.get("metric") == "record_count":
            records[str(tags.get("stream"))] += int(metric.get("value") or 0)
        elif metric.get("metric") == "http_request_count":
            calls += int(metric.get("value") or 0)
    return dict(records), calls


# ------------------------------------------------------------------------------ Meltano
TAP_NAME = "tap-intacct"
ENVIRONMENT = "fleet"
_LOADER_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_TEMP_PREFIX = "intacct-fleet-"
_DROPPED_MELTANO_ENV = (
    "MELTANO_PROJECT_ROOT",
    "MELTANO_ENVIRONMENT",
    "MELTANO_DEFAULT_ENVIRONMENT",
)
"""A worker's own Meltano settings that would point the run at another project/environment.
``MELTANO_STATE_BACKEND_URI`` is kept: set it to keep the state in an object store instead."""
_WRAPPER = '''#!{python}
"""Generated by intacct_dagster: exec the plugin so that it dies with Meltano (its parent)."""
import ctypes, os, signal, sys
try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
'''
_NO_STATE = "No state was found, complete import."
_CHECKPOINT = "Incremental state has been updated"


def resolve(name: str) -> str:
    """An executable's absolute path where it can be found (as ``executable``, then PATH)."""
    path = executable(name)
    if os.sep in path:
        return os.path.abspath(path)
    return shutil.which(path) or path


def loader_name(target_executable: str) -> str:
    """The Meltano loader's name: the target executable's name (``target-postgres``)."""
    name = Path(target_executable).name
    return name if _LOADER_NAME.match(name) and name != TAP_NAME else "fleet-target"


def meltano_env(
    fleet: Fleet, loader: str | None = None, keep: tuple[str, ...] = ()
) -> dict[str, str]:
    """Meltano's environment: the worker's, with Meltano's system database set to the fleet's
    PostgreSQL, and without settings that would override the generated project (the worker's
    own ``TAP_INTACCT_*`` or ``<LOADER>_*`` variables, another project root), except ``keep``
    (the variables the project refers to)."""
    prefixes = ["TAP_INTACCT_"] + ([loader.upper().replace("-", "_") + "_"] if loader else [])
    env = {
        key: value
        for key, value in os.environ.items()
        if key in keep or (not key.startswith(tuple(prefixes)) and key not in _DROPPED_MELTANO_ENV)
    }
    env.update(
        MELTANO_DATABASE_URI=sqlalchemy_url(fleet.state_url()),
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_ENVIRONMENT=ENVIRONMENT,
    )
    return env


def prepare(fleet: Fleet) -> FleetDB:
    """The fleet's database, ready: attempts table, and Meltano's system tables migrated once."""
    meltano = resolve(fleet.meltano_executable)
    if not os.access(meltano, os.X_OK):
        raise FleetError(
            f"meltano_executable {fleet.meltano_executable!r} not found: install "
            "'meltano[postgres]' and put it on PATH or name its path in the fleet file"
        )
    db = FleetDB(fleet.state_url())
    db.ensure_schema()
    db.ensure_meltano_db(meltano, meltano_env(fleet))
    return db


def _wrapper(path: Path, real: str) -> str:
    path.write_text(_WRAPPER.format(python=sys.executable, real=real))
    path.chmod(0o700)
    return str(path)


def meltano_project(fleet: Fleet, company: Company, group: str, work: Path) -> dict[str, Any]:
    """The Meltano project of one partition (``meltano.yml``): no secret values, only
    ``${VARIABLE}`` references that Meltano expands from the environment."""
    loader = loader_name(fleet.target.executable)
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    target = fleet.target
    url_settings = [target.url_setting] if target.url_env else []
    return {
        "project_id": "intacct-fleet",
        "send_anonymous_usage_stats": False,
        "default_environment": ENVIRONMENT,
        "environments": [{"name": ENVIRONMENT}],
        "plugins": {
            "extractors": [
                {
                    "name": TAP_NAME,
                    "namespace": "tap_intacct",
                    "executable": _wrapper(bin_dir / TAP_NAME, resolve(fleet.tap_executable)),
                    "capabilities": ["catalog", "discover", "state", "about"],
                    "settings": [{"name": "client_secret", "kind": "password", "sensitive": True}],
                    "config": tap_config(company, fleet.stream_groups[group], work / "tokens.json"),
                }
            ],
            "loaders": [
                {
                    "name": loader,
                    "namespace": loader.replace("-", "_"),
                    "executable": _wrapper(bin_dir / loader, resolve(target.executable)),
                    "settings": [
                        {"name": name, "kind": "password", "sensitive": True}
                        for name in url_settings
                    ],
                    "config": target.config_for(company),
                }
            ],
        },
    }


@dataclass
class MeltanoLog:
    """Meltano's JSON log lines of one run, split by who wrote them."""

    tap: list[str] = field(default_factory=list)
    target: list[str] = field(default_factory=list)
    meltano_errors: list[str] = field(default_factory=list)
    meltano: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Every message in order, each after the name of who wrote it."""

    @classmethod
    def parse(cls, text: str, loader: str) -> MeltanoLog:
        log = cls()
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                continue
            message = event["event"]
            log.lines.append(f"{event.get('name') or 'meltano'}: {message}")
            if event.get("stdio") and event.get("name") == TAP_NAME:
                log.tap.append(message)
            elif event.get("stdio") and event.get("name") == loader:
                log.target.append(message)
            else:
                log.meltano.append(message)
                if event.get("level") in ("error", "critical"):
                    log.meltano_errors.append(message)
        return log

    @property
    def resumed(self) -> bool:
        """Meltano found a stored state for the run (it says so when it finds none)."""
        return any(m.startswith("Reading state") for m in self.meltano) and not any(
            m.startswith(_NO_STATE) for m in self.meltano
        )

    @property
    def checkpoints(self) -> int:
        return sum(m.startswith(_CHECKPOINT) for m in self.meltano)

    def error(self) -> str:
        """The clear error: of the plugin Meltano says failed (its ERROR or exception lines,
        else its last two lines: Meltano logs a plugin's stderr without its levels), else
        Meltano's own."""
        failed = " ".join(self.meltano_errors)
        for marker, lines in (("Extraction failed", self.tap), ("Loading failed", self.target)):
            if marker in failed and lines:
                return plugin_error("\n".join(lines)) or "; ".join(lines[-2:])
        for lines in (self.tap, self.target):
            found = plugin_error("\n".join(lines))
            if found:
                return found
        if self.meltano_errors:
            return "; ".join(m.splitlines()[0] for m in self.meltano_errors[-3:])
        return self.meltano[-1] if self.meltano else "(no output)"


def plugin_error(log_text: str) -> str:
    """A plugin's ERROR or exception lines, or "" when it logged none."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    if any("| ERROR" in line for line in lines) or any(_ERROR_LINE.match(line) for line in lines):
        return error_summary(log_text)
    return ""


def sweep_orphans() -> None:
    """Remove partition folders left by killed workers on this host (Meltano writes plugin
    configs, with the expanded secrets, into the project's run folder while it runs)."""
    for folder in Path(tempfile.gettempdir()).glob(_TEMP_PREFIX + "*"):
        pid = folder.name[len(_TEMP_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue


def run_partition(
    fleet: Fleet,
    company: Company,
    group: str,
    db: FleetDB,
    *,
    run_id: str,
    attempt: int,
    timeout: float = 3600.0,
) -> PartitionResult:
    """Sync one company's stream group from Meltano's stored state; raises
    PartitionFailedError (or FleetError for a wrong fleet file/environment)."""
    company.client_secret()  # FleetError now, not a tap failure later
    fleet.target.config_for(company)
    sid = state_id(company.name, group)
    result = PartitionResult(company.name, group)
    sweep_orphans()
    try:
        with db.partition_lock(
            company.name, group, company.parallel_groups, timeout=timeout
        ) as waited:
            result.waited_seconds = waited
            attempt_id = db.start_attempt(run_id, company.name, group, attempt, os.getpid(), False)
            started = time.monotonic()
            try:
                _meltano_el(fleet, company, group, sid, result, timeout)
            except PartitionFailedError as failed:
                result.seconds = time.monotonic() - started
                db.finish_attempt(
                    attempt_id,
                    "failed",
                    result.total_records,
                    result.api_calls,
                    result.seconds,
                    str(failed),
                    resumed=result.resumed,
                )
                raise
            result.seconds = time.monotonic() - started
            db.finish_attempt(
                attempt_id,
                "succeeded",
                result.total_records,
                result.api_calls,
                result.seconds,
                resumed=result.resumed,
            )
    except LockTimeoutError as busy:
        raise PartitionFailedError(str(busy), retryable=True) from None
    return result


def _meltano_el(
    fleet: Fleet,
    company: Company,
    group: str,
    sid: str,
    result: PartitionResult,
    timeout: float,
) -> None:
    loader = loader_name(fleet.target.executable)
    prefix = f"{_TEMP_PREFIX}{os.getpid()}-{company.name}-{group}-"
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        project = meltano_project(fleet, company, group, work)
        (work / "meltano.yml").write_text(yaml.safe_dump(project, sort_keys=False))
        referenced = (company.client_secret_env, fleet.target.url_env or "")
        command = [resolve(fleet.meltano_executable), "--log-format", "json", "el"]
        command += [TAP_NAME, loader, "--state-id", sid, "--force"]
        log_path = work / "meltano.log"
        with log_path.open("w") as log_file:
            try:
                meltano = subprocess.Popen(  # noqa: S603 - configured executables, no shell
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=work,
                    env={
                        **meltano_env(fleet, loader, keep=referenced),
                        "XDG_STATE_HOME": str(work / "state"),  # Meltano's logs: not kept
                    },
                    preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
                )
            except OSError as missing:
                raise PartitionFailedError(
                    f"{company.name}/{group}: cannot start Meltano ({command[0]}): {missing}",
                    retryable=False,
                ) from None
            try:
                code = meltano.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                meltano.kill()  # its tap and target die with it
                meltano.wait()
                raise PartitionFailedError(
                    f"{company.name}/{group}: timed out after {timeout:.0f} s", retryable=True
                ) from None
        log = MeltanoLog.parse(log_path.read_text(), loader)
        result.records, result.api_calls = read_metrics("\n".join(log.tap))
        result.checkpoints = log.checkpoints
        result.resumed = log.resumed
        if code != 0:
            error = log.error()
            # The run's folder goes away with the partition: its log's tail goes to this step's
            # stderr (Dagster's compute log) for whoever reads the failure.
            tail = log.lines[-40:]
            print(f"{sid}: meltano el exited {code}; log tail:", *tail, sep="\n  ", file=sys.stderr)
            raise PartitionFailedError(
                f"{company.name}/{group}: meltano el exited {code}: {error}",
                retryable=not any(marker in error for marker in _NOT_RETRYABLE),
            )
