"""Send batches in the background, write their results in order.

A drain used to be serial: validate 500 records, then wait for Intacct, then read the next
500. Here a sink plans its batch (validation, grouping: CPU, in the draining thread) and hands
the sending to a small thread pool, then goes back to reading input while the batch is on the
wire. Results are written by whoever collects them, strictly in the order batches (and
results recorded directly, such as a malformed line's) were submitted, so the results file
keeps its order.

Rules that keep the target's promises:

* **Overlap only where it is safe** (a lane is a sink, i.e. one stream -> object): a batch of
  upserts or updates waits for the lane's batches in flight that touch one of the same records
  (same natural key or key), so an upsert's look-up sees the records an earlier batch created
  and a later update of a record is never overtaken by an earlier one; batches of disjoint
  records go out together (the look-up of the next runs while the previous one writes).
* **Bounded**: at most ``max_in_flight`` (the connection's ``max_concurrency``) batches are
  pending; submitting one more first collects the oldest.
* **STATE only after results**: the target calls :meth:`ResultPipeline.wait_all` after every
  full drain, before the SDK writes the STATE message, so a STATE on stdout still means every
  record before it has its result on disk.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from intacct_api.mutate_results import MutateResult

__all__ = ["ResultPipeline"]

Writer = Callable[[str, list[MutateResult]], object]


class ResultPipeline:
    """Background sending with ordered result collection (thread-safe)."""

    def __init__(self, write: Writer, max_in_flight: int = 4) -> None:
        self._write = write
        self.max_in_flight = max(1, int(max_in_flight))
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[str, Future[list[MutateResult]]]] = deque()
        self._lanes: dict[Hashable, list[tuple[Future[list[MutateResult]], frozenset[Any]]]] = {}
        """Per lane, the batches in flight with the record identities they touch."""
        self._lock = threading.Lock()  # guards _pending, _lanes, _executor
        self._collect_lock = threading.Lock()  # one collector at a time: writes stay in order

    # -- submitting ----------------------------------------------------------------------

    def submit(
        self,
        lane: Hashable | None,
        stream: str,
        job: Callable[[], list[MutateResult]],
        touches: frozenset[Any] | None = None,
    ) -> None:
        """Run ``job`` (which sends a batch and returns its results) in the background.

        ``lane=None``: the batch depends on no other one and may overlap with any. Otherwise
        it waits for the lane's batches still in flight that touch one of the same records
        (``touches``: natural keys and keys; None = every record, i.e. wait for all of them),
        so a later write of a record never overtakes an earlier one and an upsert's look-up
        sees what an earlier batch created, while batches of disjoint records overlap. Also
        blocks while the pipeline is full (collecting the oldest batch's results meanwhile).
        """
        if lane is not None:
            with self._lock:
                in_flight = [
                    (future, keys)
                    for future, keys in self._lanes.get(lane, ())
                    if not future.done()
                ]
                self._lanes[lane] = in_flight
            for future, keys in in_flight:
                if touches is None or not keys or touches & keys:
                    future.exception()  # wait; results (or error) are collected in order below
        while True:
            with self._lock:
                full = len(self._pending) >= self.max_in_flight
            if not full:
                break
            self._collect(block=True, limit=1)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.max_in_flight, thread_name_prefix="intacct-batch"
                )
            future = self._executor.submit(job)
            self._pending.append((stream, future))
            if lane is not None:
                self._lanes.setdefault(lane, []).append((future, touches or frozenset()))
        # results are written as soon as a batch is done, even while no input arrives: that
        # is what lets a STATE waiting for them go out mid-load
        future.add_done_callback(lambda _done: self._collect(block=False))
        self._collect(block=False)

    def add(self, stream: str, results: list[MutateResult]) -> None:
        """Results known now (no request needed): written after every batch submitted before."""
        done: Future[list[MutateResult]] = Future()
        done.set_result(results)
        with self._lock:
            self._pending.append((stream, done))
        self._collect(block=False)

    # -- collecting ----------------------------------------------------------------------

    def wait_all(self) -> None:
        """Wait for every pending batch and write all results (before STATE, at the end)."""
        self._collect(block=True)

    def _collect(self, *, block: bool, limit: int | None = None) -> None:
        """Write finished batches' results in submission order.

        A non-blocking collect never waits for the lock either: it runs in worker threads
        (a batch's done-callback) and must not stall the pool a blocking collector waits on.
        Whoever holds the lock re-checks after releasing it, so no finished batch is left
        unwritten because its callback found the lock taken.
        """
        written = 0
        while True:
            if not self._collect_lock.acquire(blocking=block):
                return
            try:
                while limit is None or written < limit:
                    with self._lock:
                        if not self._pending:
                            return
                        stream, future = self._pending[0]
                        if not block and not future.done():
                            break
                    future.exception()  # wait for it (outside the state lock)
                    with self._lock:
                        self._pending.popleft()
                    written += 1
                    self._write(stream, future.result())  # re-raises a job's unexpected error
                if limit is not None and written >= limit:
                    return
            finally:
                self._collect_lock.release()
            with self._lock:
                head_done = bool(self._pending) and self._pending[0][1].done()
            if not head_done:
                return
            block = False

    def close(self) -> None:
        """Collect everything, then stop the worker threads (idempotent)."""
        try:
            self.wait_all()
        finally:
            with self._lock:
                executor, self._executor = self._executor, None
                self._lanes.clear()
            if executor is not None:
                executor.shutdown(wait=True)
