"""The target's results file (one JSON line per input record) and its end-of-run summary.

Singer has no per-record error channel, yet "nothing is lost" is the target's promise: every
record, written or not, gets a line here with the reason naming the record and the field.
Sinks drain in parallel threads, so writes are serialised by a lock and each batch's lines
are flushed together; the target only emits STATE after the drain that wrote them, so a
STATE on stdout always means its records' results are on disk.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import msgspec

from intacct_api.mutate_results import MutateResult

__all__ = ["ResultsWriter", "default_results_path"]

_COUNTED = {"create": "created", "update": "updated", "delete": "deleted"}


def _enc_hook(value: Any) -> Any:
    """Records echoed in results may still hold the SDK's parsed types."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="number")
"""``decimal_format="number"``: the echoed request shows amounts exactly as they were sent
(the engine sends a ``Decimal`` as a JSON number)."""


def default_results_path(now: dt.datetime | None = None) -> str:
    """``intacct-results-<UTC timestamp>.jsonl`` in the current directory (one file per run)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"intacct-results-{now.strftime('%Y%m%dT%H%M%S%fZ')}.jsonl"


FIRST_FAILURES_LOGGED = 10
"""Failures quoted in the end-of-run log (with record, field and reason) before the counts."""

CONNECTION_ERRORS = frozenset(
    {"LoginRequiredError", "InsecureTokenStoreError", "ConfigError", "TransportError"}
)
"""Error codes of whole-request failures caused by the connection (login, token store,
settings, network), as opposed to problems of the records themselves."""


class ResultsWriter:
    """Thread-safe JSON-lines writer plus counters per (stream, operation)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = self.path.open("wb")
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.failed_by_operation: Counter[tuple[str, str]] = Counter()
        self.connection_failures: Counter[str] = Counter()
        """Failures that say the connection is broken, not the record (see CONNECTION_ERRORS)."""
        self.first_connection_error: str | None = None
        """The reason of the first connection failure (it names the setting to fix)."""
        self.first_failures: list[tuple[str, str]] = []
        """(stream, reason) of the first failures, for the end-of-run log."""

    def write(self, stream: str, results: Iterable[MutateResult]) -> int:
        """Append one line per result (in the given order), flush; return the failure count."""
        buffer = bytearray()
        failed = 0
        counts: Counter[tuple[str, str]] = Counter()
        failed_ops: Counter[tuple[str, str]] = Counter()
        connection: Counter[str] = Counter()
        firsts: list[tuple[str, str]] = []
        encode_into = _ENCODER.encode_into
        for result in results:
            line = {"stream": stream, **result.to_dict()}
            encode_into(line, buffer, -1)  # appended in place: one buffer, one write per batch
            buffer += b"\n"
            if result.status == "skipped":
                counts[(stream, "skipped")] += 1
            elif result.status == "unknown":
                counts[(stream, "unknown")] += 1
            elif result.ok:
                what = "validated" if result.dry_run else _COUNTED.get(result.operation)
                counts[(stream, what or result.operation)] += 1
                if result.replayed:
                    counts[(stream, "replayed")] += 1
            else:
                failed += 1
                counts[(stream, "failed")] += 1
                failed_ops[(stream, result.operation)] += 1
                if len(firsts) < FIRST_FAILURES_LOGGED:
                    firsts.append((stream, result.error or result.error_code or "failed"))
                if result.error_code in CONNECTION_ERRORS:
                    connection[result.error_code] += 1
                    if self.first_connection_error is None and result.error:
                        self.first_connection_error = result.error.split(": ", 1)[-1]
        with self._lock:
            if self._file is None:
                raise RuntimeError("results file already closed")
            self._file.write(buffer)
            self._file.flush()
            self.counts.update(counts)
            self.failed_by_operation.update(failed_ops)
            self.connection_failures.update(connection)
            room = FIRST_FAILURES_LOGGED - len(self.first_failures)
            self.first_failures.extend(firsts[: max(0, room)])
        return failed

    @property
    def failed(self) -> int:
        """Records that were not written (any stream)."""
        with self._lock:
            return sum(n for (_, what), n in self.counts.items() if what == "failed")

    @property
    def unknown(self) -> int:
        """Records whose write may or may not have happened (a rerun settles them)."""
        with self._lock:
            return sum(n for (_, what), n in self.counts.items() if what == "unknown")

    def summary(self) -> dict[str, dict[str, int]]:
        """``{stream: {created, updated, deleted, failed, [dry_run]}}`` for the log."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (stream, what), count in sorted(self.counts.items()):
                entry = out.setdefault(
                    stream, {"created": 0, "updated": 0, "deleted": 0, "failed": 0}
                )
                entry[what] = entry.get(what, 0) + count
        return out

    def log_summary(self, logger: logging.Logger) -> None:
        """One line per stream (created, updated, deleted, failed) and where the file is."""
        summary = self.summary()
        if not summary:
            logger.info("No records received; results file %s is empty.", self.path)
        if self.first_failures:
            total = self.failed
            logger.error(
                "First %d of %d failed record(s):", len(self.first_failures), max(total, 1)
            )
            for stream, reason in self.first_failures:
                logger.error("  %s: %s", stream or "(no stream)", reason[:500])
        for stream, counts in summary.items():
            failed_ops = ", ".join(
                f"{op} {n}"
                for (s, op), n in sorted(self.failed_by_operation.items())
                if s == stream
            )
            extra = "".join(
                f", {what} {counts[what]}"
                for what in ("unknown", "replayed", "skipped", "validated")
                if what in counts
            )
            logger.info(
                "Summary for stream '%s': created %d, updated %d, deleted %d, failed %d%s%s",
                stream,
                counts.get("created", 0),
                counts.get("updated", 0),
                counts.get("deleted", 0),
                counts.get("failed", 0),
                f" (by operation: {failed_ops})" if failed_ops else "",
                extra,
            )
        logger.info("Per-record results written to %s", self.path)

    def close(self) -> None:
        """Flush and close (idempotent)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
