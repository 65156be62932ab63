"""tap-intacct under injected faults: every run completes with exactly the emulator's records.

Each case syncs two streams (customers, vendors; SEED records each, PAGE per page, so several
pages per stream) through the real `tap-intacct` binary while the emulator misbehaves. The
proof is the same for every fault: the records emitted per stream are exactly the emulator's
keys (none lost, none emitted twice), and the emulator's stats show the fault really happened
(so a case can never pass by accident with the fault switched off).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reliability.harness import (
    SEED,
    STREAMS,
    VENDOR,
    Collector,
    emulator_keys,
    pages,
    run_tap,
    stop_faults,
    tap_config,
    write_config,
)

RETRY_HEADERS = (
    "Retry-After",
    "X-IA-Throttle-Limit-RetryAfter",
    "X-IA-Hour-Rate-Limit-Retry-After",
    "X-IA-TENANT-Throttle-Limit-Retry-After",
)
EXPECTED_QUERIES = len(STREAMS) * pages(SEED)


def _sync_and_verify(
    emulator: Any,
    tmp_path: Path,
    collector: Collector,
    before_check: Callable[[], object] | None = None,
    **config: Any,
) -> tuple[dict[str, Any], str]:
    """Run a full sync; assert success and exact record sets; return (stats, stderr)."""
    path = write_config(tmp_path / "tap.json", tap_config(emulator, tmp_path, **config))
    result = run_tap(path)
    if before_check is not None:
        before_check()
    assert result.returncode == 0, result.describe()
    collector.runs_completed += 1
    stats = emulator.stats()  # before our own reads add to it
    stop_faults(emulator)
    for object_name in config.get("objects", STREAMS):
        stream = STREAMS[object_name]
        expected = emulator_keys(emulator, object_name)
        assert len(expected) == SEED
        emitted = [str(r["key"]) for r in result.records(stream)]
        missing, dupes = collector.verified(expected, emitted)
        assert not missing, f"{stream}: lost {sorted(missing)[:10]}"
        assert dupes == 0, f"{stream}: {dupes} duplicate records"
        assert len(emitted) == SEED
    return stats, result.stderr


def _queries(stats: dict[str, Any]) -> int:
    return int(stats["requests"].get("POST /services/core/query", 0))


def _status(stats: dict[str, Any], status: int) -> int:
    return int(stats["responses"].get(str(status), 0))


@pytest.mark.parametrize("header", RETRY_HEADERS)
def test_429_storm_with_each_retry_header(
    emulator: Any, tmp_path: Path, collector: Collector, header: str
) -> None:
    """Six 429s in a row, the wait in `header`: the tap waits as told and loses nothing."""
    emulator.set_faults(fail_next=[429] * 6, retry_after_header=header, retry_after_seconds=0.2)
    stats, stderr = _sync_and_verify(emulator, tmp_path, collector)
    assert _status(stats, 429) == 6
    waits = [line for line in stderr.splitlines() if "429 from" in line]
    assert len(waits) == 6, "each 429 is one logged wait"
    assert all(f"waiting 0.2 s ({header.lower()})" in line.lower() for line in waits), waits[0]
    collector.fault(f"429 ({header})", 6)


def test_rate_per_minute_throttle(emulator: Any, tmp_path: Path, collector: Collector) -> None:
    """A per-minute limit below the sync's request count: 429 + Retry-After, then success.

    The window is a minute long, so the tap's `max_retry_wait` cap (2 s) is what keeps it
    short: the capped wait is retried until the emulator's window lets requests through.
    """
    emulator.set_faults(rate_per_minute=EXPECTED_QUERIES + 3)
    emulator.set_faults(fail_next=[429, 429, 429], retry_after_seconds=0.1)
    stats, _ = _sync_and_verify(emulator, tmp_path, collector)
    assert _status(stats, 429) >= 3
    collector.fault("429 (rate limit)", _status(stats, 429))


def test_503_burst(emulator: Any, tmp_path: Path, collector: Collector) -> None:
    emulator.set_faults(fail_next=[503] * 5, retry_after_seconds=0.1)
    stats, _ = _sync_and_verify(emulator, tmp_path, collector)
    assert _status(stats, 503) == 5
    assert _queries(stats) == EXPECTED_QUERIES + 5
    collector.fault("503", 5)


def test_random_500s(emulator: Any, tmp_path: Path, collector: Collector) -> None:
    emulator.set_faults(error_rate_500=0.2, random_seed=11)
    stats, _ = _sync_and_verify(emulator, tmp_path, collector)
    failures = _status(stats, 500)
    assert failures >= 1, "the seeded dice produced no 500: the case proves nothing"
    assert _queries(stats) == EXPECTED_QUERIES + failures
    collector.fault("500", failures)


def test_connections_dropped_mid_response(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    """Half a body then a dead socket: the read-only query is re-sent, nothing is lost."""
    emulator.set_faults(drop_next=3, drop_connection_rate=0.15, random_seed=5)
    stats, _ = _sync_and_verify(emulator, tmp_path, collector)
    resent = _queries(stats) - EXPECTED_QUERIES
    assert resent >= 3, "every dropped page is asked for again"
    collector.fault("dropped connection", resent)


def test_latency_spikes_beyond_the_timeout(
    emulator: Any, tmp_path: Path, collector: Collector
) -> None:
    """Responses up to 0.6 s late against a 0.3 s client timeout: timed-out reads are retried."""
    emulator.set_faults(latency_ms=20, latency_jitter_ms=580, random_seed=2)
    stats, _ = _sync_and_verify(
        emulator, tmp_path, collector, objects=[VENDOR], timeout=0.3, max_retries=12
    )
    timed_out = _queries(stats) - pages(SEED)
    assert timed_out >= 1, "no request exceeded the timeout: the case proves nothing"
    collector.fault("latency spike (timeout)", timed_out)


def _expire_repeatedly(emulator: Any, stop: threading.Event, every: float) -> Callable[[], int]:
    fired = [0]

    def loop() -> None:
        while not stop.wait(every):
            emulator.set_faults(expire_tokens_now=True)
            fired[0] += 1

    threading.Thread(target=loop, daemon=True).start()
    return lambda: fired[0]


def test_access_token_expiring_mid_run(emulator: Any, tmp_path: Path, collector: Collector) -> None:
    """Every live access token is killed every 0.15 s while the tap pages (each page 40 ms)."""
    emulator.set_faults(latency_ms=40)
    stop = threading.Event()
    fired = _expire_repeatedly(emulator, stop, 0.15)
    try:
        stats, _ = _sync_and_verify(emulator, tmp_path, collector, before_check=stop.set)
    finally:
        stop.set()
    rejected = _status(stats, 401)
    assert fired() >= 2
    assert rejected >= 1, "no request met an expired token: the case proves nothing"
    refreshes = int(stats["requests"].get("POST /oauth2/token", 0))
    assert refreshes >= rejected, "each rejection is followed by a token renewal"
    assert refreshes <= rejected + 2, "no token-request loop"
    collector.fault("access token expired mid-run", rejected)
