"""One partition's work: tap-intacct | target for one company's stream group, state in PostgreSQL.

The plugins run as their own processes (exactly as Meltano would run them), wired stdout to
stdin. This module only adds what a fleet needs around them:

* the state comes from, and goes back to, the shared store: read before the tap starts, and
  written each time the *target* emits STATE (the target emits it after committing the rows
  before it), so a retry on another worker resumes from the last committed point;
* the company's request budget: the tap's ``max_concurrency`` is ``tier // parallel_groups``;
* the tap and target die with the worker (Linux ``PR_SET_PDEATHSIG``): a killed worker must not
  leave an orphan still writing into the warehouse while the retry writes the same rows;
* the client secret reaches the tap only through its environment (``--config ENV``), never a
  file or a log line; error text taken from the tap is the exception line, not its config;
* counts for observability: records per stream and API calls from the SDK's METRIC log lines.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intacct_dagster.fleet import Company, Fleet
from intacct_dagster.state_store import StateStore, dumps_state, state_id

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
    """The tap's config for one group, without the secret (that one goes by environment)."""
    config: dict[str, Any] = {
        **company.tap_config,
        "base_url": company.base_url,
        "client_id": company.client_id,
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


def run_partition(
    fleet: Fleet,
    company: Company,
    group: str,
    store: StateStore,
    *,
    run_id: str,
    attempt: int,
    timeout: float = 3600.0,
) -> PartitionResult:
    """Sync one company's stream group from its stored state; raises PartitionFailedError."""
    sid = state_id(company.name, group)
    state = store.get(sid)
    result = PartitionResult(company.name, group, resumed=bool(state))
    attempt_id = store.start_attempt(run_id, company.name, group, attempt, os.getpid(), bool(state))
    started = time.monotonic()
    try:
        _pipe(fleet, company, group, store, sid, state, result, timeout)
    except PartitionFailedError as failed:
        result.seconds = time.monotonic() - started
        store.finish_attempt(
            attempt_id,
            "failed",
            result.total_records,
            result.api_calls,
            result.seconds,
            str(failed),
        )
        raise
    result.seconds = time.monotonic() - started
    store.finish_attempt(
        attempt_id, "succeeded", result.total_records, result.api_calls, result.seconds
    )
    return result


def _pipe(
    fleet: Fleet,
    company: Company,
    group: str,
    store: StateStore,
    sid: str,
    state: dict[str, Any] | None,
    result: PartitionResult,
    timeout: float,
) -> None:
    secret = company.client_secret()
    target_config = fleet.target.config_for(company)
    with tempfile.TemporaryDirectory(prefix=f"intacct-{company.name}-{group}-") as tmp:
        work = Path(tmp)
        tap_file = work / "tap.json"
        tap_file.write_text(
            json.dumps(tap_config(company, fleet.stream_groups[group], work / "tokens.json"))
        )
        target_file = work / "target.json"
        target_file.touch(mode=0o600)  # the warehouse URL may carry a password
        target_file.write_text(json.dumps(target_config))
        tap_cmd = [executable(fleet.tap_executable), "--config", str(tap_file), "--config", "ENV"]
        if state:
            state_file = work / "state.json"
            state_file.write_text(dumps_state(state))
            tap_cmd += ["--state", str(state_file)]
        tap_log, target_log = work / "tap.log", work / "target.log"
        with tap_log.open("w") as tap_err, target_log.open("w") as target_err:
            tap = subprocess.Popen(  # noqa: S603 - configured executables, no shell
                tap_cmd,
                stdout=subprocess.PIPE,
                stderr=tap_err,
                cwd=work,
                env=child_env({"TAP_INTACCT_CLIENT_SECRET": secret}),
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
            )
            target = subprocess.Popen(  # noqa: S603
                [executable(fleet.target.executable), "--config", str(target_file)],
                stdin=tap.stdout,
                stdout=subprocess.PIPE,
                stderr=target_err,
                cwd=work,
                env=child_env({}),
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
            assert tap.stdout is not None
            assert target.stdout is not None
            tap.stdout.close()  # the target holds the only reader now
            deadline = time.monotonic() + timeout
            with target.stdout:
                for line in target.stdout:
                    _checkpoint(line, store, sid, result)
                    if time.monotonic() > deadline:
                        break
            try:
                target_code = target.wait(timeout=max(1.0, deadline - time.monotonic()))
                tap_code = tap.wait(timeout=60)
            except subprocess.TimeoutExpired:
                tap.kill()
                target.kill()
                raise PartitionFailedError(
                    f"{company.name}/{group}: timed out after {timeout:.0f} s", retryable=True
                ) from None
        result.records, result.api_calls = read_metrics(tap_log.read_text())
        if tap_code != 0:
            error = error_summary(tap_log.read_text())
            raise PartitionFailedError(
                f"{company.name}/{group}: tap-intacct exited {tap_code}: {error}",
                retryable=not any(marker in error for marker in _NOT_RETRYABLE),
            )
        if target_code != 0:
            error = error_summary(target_log.read_text())
            raise PartitionFailedError(
                f"{company.name}/{group}: {fleet.target.executable} exited {target_code}: {error}",
                retryable=True,
            )


def _checkpoint(line: bytes, store: StateStore, sid: str, result: PartitionResult) -> None:
    """Persist a state the target emitted (it has committed everything before it).

    A Singer target writes each state as a bare JSON object on stdout; a line that happens to
    be a wrapped ``{"type": "STATE", "value": ...}`` message is unwrapped.
    """
    try:
        state = json.loads(line)
    except ValueError:
        return
    if not isinstance(state, dict):
        return
    if state.get("type") == "STATE" and isinstance(state.get("value"), dict):
        state = state["value"]
    store.put(sid, state)
    result.checkpoints += 1
