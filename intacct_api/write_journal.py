"""Idempotency-Keys that protect retries and crash reruns, and nothing else.

Intacct replays the cached result of a key for 48 hours, remembers the key for 60 days and
answers 409 when the key comes back with another body (Sage, "Batch, bulk, and composite
requests"). So a key must belong to **one logical write attempt**:

* every request gets a fresh random key; the client re-sends that same key only for the
  retries of that request (`IntacctClient.request`);
* a target run writes each key to a small **write journal** before the request is sent and
  marks it settled once the results of its records are on disk *and* a STATE covering them
  has been emitted (or the load completed; the target decides when, see
  ``target_intacct.target``), so the records a resuming tap sends again are replayed, and a
  key whose outcome is unknown stays pending until a rerun settles it. A rerun after a crash
  (`kill -9`, a lost machine) finds the keys that were never settled and re-sends *the same
  request* with *the same key*, so Intacct replays the first outcome instead of writing twice.
  Everything else gets a fresh key, so two identical bills in two runs are two bills, and a
  daily upsert of unchanged rows never meets a 409;
* a pending key is reused only within :data:`REPLAY_WINDOW` (a margin under Intacct's 48
  hours); an older one is dropped with a warning (past the window a replay is no longer
  possible: the upsert look-up by natural key is what still prevents a duplicate).

Matching a rerun's request to a pending key is by a fingerprint of the request (object,
operation, method, path, entity, transaction flag, exact body bytes): a rerun of the same input
builds the same requests. Two pending requests with the same fingerprint (two identical bills
in one interrupted run) keep two keys, handed out in their original order.

The journal is JSON lines, appended and fsync'ed (a pending line before its request, a settled
line after its results), compacted when the run ends; an exclusive lock file makes concurrent
runs on the same journal fail fast with a clear message instead of sharing keys.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Protocol

import filelock
import msgspec

from intacct_api.errors import ConfigError

__all__ = [
    "REPLAY_WINDOW",
    "FreshKeys",
    "KeySource",
    "WriteJournal",
    "request_fingerprint",
]

logger = logging.getLogger(__name__)

REPLAY_WINDOW = 47 * 3600.0
"""Seconds a pending key is re-sent on a rerun: an hour under Intacct's 48-hour result cache,
so a reused key never reaches Intacct after its result expired (which is undocumented: 409 or
a second write)."""

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


def request_fingerprint(
    object_name: str,
    operation: str,
    method: str,
    path: str,
    content: bytes,
    *,
    entity: str | None,
    transaction: bool,
) -> str:
    """What makes a rerun's request "the same request" (sha256 hex)."""
    digest = hashlib.sha256()
    for part in (object_name, operation, method.upper(), path, entity or "", str(transaction)):
        digest.update(part.encode())
        digest.update(b"\x00")
    digest.update(content)
    return digest.hexdigest()


def new_key() -> str:
    """A fresh Idempotency-Key: random, so no two write attempts ever share one."""
    return uuid.uuid4().hex


class KeySource(Protocol):
    """Where the Mutate engine gets the Idempotency-Key of each write request."""

    def key_for(self, fingerprint: str, *, what: str) -> str:
        """The key to send with a request (recorded before the request is sent)."""
        ...

    def settle(self, keys: Iterable[str]) -> None:
        """The outcomes of these keys' requests are recorded: never re-send them."""
        ...


class FreshKeys:
    """A new random key per request, remembered nowhere (`intacct mutate`, library use)."""

    def key_for(self, fingerprint: str, *, what: str) -> str:
        """A new key; ``fingerprint`` is ignored."""
        return new_key()

    def settle(self, keys: Iterable[str]) -> None:
        """Nothing to remember."""


class WriteJournal:
    """A durable journal of the keys of one target's write requests (thread-safe)."""

    def __init__(
        self,
        path: str | Path,
        *,
        window: float = REPLAY_WINDOW,
        clock: object = time.time,
    ) -> None:
        self.path = Path(path)
        self.window = window
        self._clock = clock if callable(clock) else time.time
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = filelock.FileLock(str(self.path) + ".lock")
        try:
            self._file_lock.acquire(timeout=0)
        except filelock.Timeout:
            raise ConfigError(
                f"the write journal {self.path} is in use by another target-intacct run; "
                "give each concurrent run its own `journal_path`"
            ) from None
        self._reusable: dict[str, deque[tuple[str, float]]] = {}
        self._pending: dict[str, str] = {}  # key -> its journal line (for compaction)
        self.resumed = 0
        """Keys of an interrupted run re-sent by this run."""
        self.expired = 0
        """Pending keys of an interrupted run too old to be re-sent."""
        self._load()
        self._file: IO[bytes] | None = self.path.open("ab")

    # -- reading the previous runs ---------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        pending: dict[str, dict[str, object]] = {}
        for number, raw in enumerate(self.path.read_bytes().splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                entry = _DECODER.decode(raw)
            except msgspec.DecodeError:  # a line torn by a crash mid-write: nothing was sent
                logger.warning(
                    "write journal %s: line %d is incomplete; ignored", self.path, number
                )
                continue
            if not isinstance(entry, dict):
                continue
            if "settled" in entry:
                for key in entry["settled"] or ():
                    pending.pop(str(key), None)
            elif "key" in entry and "fingerprint" in entry:
                pending[str(entry["key"])] = entry
        now = self._clock()
        oldest_expired: float | None = None
        for key, entry in pending.items():
            at = float(entry.get("at") or 0)  # type: ignore[arg-type]
            if now - at > self.window:
                self.expired += 1
                oldest_expired = at if oldest_expired is None else min(oldest_expired, at)
                continue
            fingerprint = str(entry["fingerprint"])
            self._reusable.setdefault(fingerprint, deque()).append((key, at))
            self._pending[key] = _ENCODER.encode(entry).decode()
        if self._reusable:
            logger.info(
                "Write journal %s: %d request(s) of an interrupted run have no recorded "
                "outcome; the same requests are re-sent with their original Idempotency-Keys, "
                "so Intacct replays what it already did instead of writing twice.",
                self.path,
                sum(len(q) for q in self._reusable.values()),
            )
        if self.expired:
            logger.warning(
                "Write journal %s: %d request(s) of an interrupted run (from %s) are older than "
                "Intacct's 48-hour replay window, so their outcome cannot be replayed; upsert "
                "finds records they created by their natural key, a plain create may write "
                "them again.",
                self.path,
                self.expired,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(oldest_expired or 0)),
            )

    # -- KeySource -------------------------------------------------------------------------

    def key_for(self, fingerprint: str, *, what: str) -> str:
        """The pending key of the same request from an interrupted run, else a fresh one
        (journaled and fsync'ed before this returns, i.e. before the request is sent)."""
        with self._lock:
            queue = self._reusable.get(fingerprint)
            while queue:
                key, at = queue.popleft()
                if self._clock() - at <= self.window:
                    self.resumed += 1
                    return key
            key = new_key()
            line = _ENCODER.encode(
                {"key": key, "fingerprint": fingerprint, "at": self._clock(), "what": what}
            ).decode()
            self._pending[key] = line
            self._append(line)
            return key

    def settle(self, keys: Iterable[str]) -> None:
        """Mark keys done (their results are on disk): a rerun never re-sends them."""
        settled = sorted({k for k in keys if k})
        if not settled:
            return
        with self._lock:
            for key in settled:
                self._pending.pop(key, None)
            self._append(_ENCODER.encode({"settled": settled}).decode())

    @property
    def unsettled(self) -> int:
        """Keys whose outcome is not recorded (yet)."""
        with self._lock:
            return len(self._pending)

    def _append(self, line: str) -> None:
        if self._file is None:
            raise RuntimeError("write journal already closed")
        self._file.write(line.encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    # -- end of run ------------------------------------------------------------------------

    def close(self) -> None:
        """Compact: remove the journal when every key is settled, else keep only the pending
        ones (they are what a rerun needs). Idempotent."""
        with self._lock:
            if self._file is None:
                return
            self._file.close()
            self._file = None
            try:
                if not self._pending:
                    self.path.unlink(missing_ok=True)
                else:
                    tmp = self.path.with_name(self.path.name + ".tmp")
                    tmp.write_text("".join(line + "\n" for line in self._pending.values()))
                    os.replace(tmp, self.path)
            finally:
                self._file_lock.release()
