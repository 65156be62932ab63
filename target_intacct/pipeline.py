"""Send batches in the background, write their results in order.

A drain used to be serial: validate 500 records, then wait for Intacct, then read the next
500. Here a sink plans its batch (validation, grouping: CPU, in the draining thread) and hands
the sending to a small thread pool, then goes back to reading input while the batch is on the
wire. Results are written by whoever collects them, strictly in the order batches (and
results recorded directly, such as a malformed line's) were submitted, so the results file
keeps its order.

Rules that keep the target's promises:

* **One batch in flight per lane** (a lane is a sink, i.e. one stream -> object): the next
  batch of the same stream is only *sent* after the previous one finished, so an upsert's
  lookup sees the records the previous batch created, and a later update of a record is never
  overtaken by an earlier one. Different streams may be in flight together, as the SDK's
  parallel ``drain_all`` already allowed.
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
        self._lanes: dict[Hashable, Future[list[MutateResult]]] = {}
        self._lock = threading.Lock()  # guards _pending, _lanes, _executor
        self._collect_lock = threading.Lock()  # one collector at a time: writes stay in order

    # -- submitting ----------------------------------------------------------------------

    def submit(
        self, lane: Hashable | None, stream: str, job: Callable[[], list[MutateResult]]
    ) -> None:
        """Run ``job`` (which sends a batch and returns its results) in the background.

        Blocks while the lane's previous batch is still running, and while the pipeline is
        full (collecting the oldest batch's results meanwhile). ``lane=None``: the batch
        depends on no other one and may overlap with any (it is not remembered).
        """
        with self._lock:
            previous = self._lanes.get(lane) if lane is not None else None
        if previous is not None:
            previous.exception()  # wait; its results (or error) are collected in order below
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
                self._lanes[lane] = future
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
