"""Parallel partitioned reads (setting ``parallel_slices``): one keyset read per slice, at once.

A sequential read pages one query at a time (plus one page prefetched), so at real page
latencies a stream of 1M records is 250 calls in a row while the company's concurrency tier
sits idle. With ``parallel_slices: N`` (N > 1) a query stream's read of one partition:

1. asks for the range of its slicing field with two size-1 queries sent at once (``orderBy``
   ascending and descending, nulls excluded): ``audit.modifiedDateTime``, or ``key`` for an
   object read on key alone;
2. splits it into N contiguous half-open slices ``[lower, e1), [e1, e2), ..., [e(N-1), open)``:
   the first starts at the read's own lower bound (the bookmark minus the look-back, the
   ``start_date``, or nothing, in which case it also reads the rows whose field is null), the
   last has **no upper edge**, so a row modified (or inserted) during the run, which gets a
   newer timestamp, always falls into a slice;
3. pages each slice with its own :class:`~intacct_api.pager.QueryPager` (keyset, so a slice
   cannot lose a row that stays in it) in worker threads, at most ``max_concurrency`` at once,
   and hands the pages to the stream's thread through one bounded queue (at most one page per
   worker waiting, one more being fetched: memory stays at about two pages per worker).

Records come out unordered across slices, so such a stream is declared unsorted. Its state:
while slices run, the partition's state holds ``slices`` (each slice's edges, whether it is
done, and its resume point: the slicing value of the last row of the last page the SDK has
finished with), and ``replication_key_value`` is set to the **resume point of the earliest
unfinished slice** (never past an unfinished slice). A run killed mid-way therefore loses
nothing: the next run sees ``slices`` in its state, skips the finished slices and reads each
unfinished one again from its resume point (``>=``, so the rows at exactly that value come
again: at least once); a sequential run (setting off) reads from the bookmark. When every
slice is done, ``slices`` is removed and the bookmark is the largest value read (the SDK's
progress marker for unsorted streams).

A row modified during the run after the last slice has finished (while other slices still
run) is not met again in that run; its new timestamp is after every value read, so after the
final bookmark, and the next run reads it (as a sequential read does with a row modified
after it ended).
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from intacct_api.errors import IntacctAPIError
from intacct_api.pager import QueryPager, ReplicationFieldRefusedError

__all__ = [
    "SLICES_STATE",
    "Slice",
    "SlicePlan",
    "SlicedReader",
    "key_edges",
    "slicing_range",
    "time_edges",
]

SLICES_STATE = "slices"
"""Partition state key of an unfinished sliced read."""


@dataclass
class Slice:
    """One half-open range ``[lower, upper)`` of the slicing field (None = unbounded)."""

    index: int
    lower: Any
    upper: Any
    resume: Any = None
    """Inclusive resume point: the value of the last row of the last page handed out."""
    done: bool = False

    def start(self) -> Any:
        """Where a read of this slice starts (inclusive)."""
        return self.resume if self.resume is not None else self.lower


@dataclass
class SlicePlan:
    """The slices of one partition's read, and their progress (kept in the partition state)."""

    field: str
    slices: list[Slice]
    nulls: bool = False
    """The first slice also reads rows whose field is null (a read from the very beginning)."""

    @classmethod
    def from_edges(cls, field: str, lower: Any, edges: Sequence[Any], *, nulls: bool) -> SlicePlan:
        bounds = [lower, *edges, None]
        slices = [Slice(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        return cls(field, slices, nulls)

    @classmethod
    def from_state(cls, value: Any, field: str) -> SlicePlan | None:
        """The plan an interrupted run left in the state, if it slices the same field."""
        if not isinstance(value, Mapping) or value.get("field") != field:
            return None
        raw = value.get("slices")
        if not isinstance(raw, list) or len(raw) < 2:
            return None
        slices = []
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping):
                return None
            slices.append(
                Slice(
                    i,
                    item.get("lower"),
                    item.get("upper"),
                    item.get("resume"),
                    bool(item.get("done")),
                )
            )
        return cls(field, slices, bool(value.get("nulls")))

    def to_state(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "nulls": self.nulls,
            "slices": [
                {"lower": s.lower, "upper": s.upper, "resume": s.resume, "done": s.done}
                for s in self.slices
            ],
        }

    @property
    def started(self) -> bool:
        """Some slice is done or has handed out pages (a resumed read is partial)."""
        return any(s.done or s.resume is not None for s in self.slices)

    def pending(self) -> list[Slice]:
        return [s for s in self.slices if not s.done]

    def watermark(self) -> Any:
        """The start of the earliest unfinished slice (None: from the beginning, or all done)."""
        for s in self.slices:
            if not s.done:
                return s.start()
        return None

    def filters(self, s: Slice) -> tuple[list[dict[str, Any]], str | None]:
        """The query filters (and filterExpression) that read exactly this slice."""
        f = self.field
        filters: list[dict[str, Any]] = []
        start = s.start()
        if start is not None:
            filters.append({"$gte": {f: start}})
        if s.upper is not None:
            filters.append({"$lt": {f: s.upper}})
        if s.index == 0 and self.nulls:
            filters.append({"$eq": {f: None}})
            n = len(filters)
            if n == 1:
                return filters, None
            inner = " and ".join(str(i) for i in range(1, n))
            return filters, f"({inner}) or {n}"
        return filters, None


def _parse(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_edges(low: str, high: str, n: int) -> list[str]:
    """Up to ``n - 1`` strictly increasing inner edges splitting ``[low, high]`` evenly (whole
    seconds); fewer when the range is narrower than ``n`` seconds."""
    a, b = _parse(low), _parse(high)
    edges: list[str] = []
    for i in range(1, n):
        moment = a + (b - a) * i / n
        edge = _parse(_iso(moment))  # whole seconds, as Intacct writes them
        if edge > a and edge <= b and (not edges or edge > _parse(edges[-1])):
            edges.append(_iso(edge))
    return edges


def key_edges(low: str, high: str, n: int) -> list[str]:
    """Inner edges splitting the numeric key range ``[low, high]``; none for non-numeric keys."""
    if not (str(low).isdigit() and str(high).isdigit()):
        return []
    a, b = int(low), int(high)
    edges: list[int] = []
    for i in range(1, n):
        edge = a + (b - a) * i // n
        if a < edge <= b and (not edges or edge > edges[-1]):
            edges.append(edge)
    return [str(e) for e in edges]


def slicing_range(
    client: Any,
    object_name: str,
    field: str,
    *,
    lower: Any,
    entity: Any,
    include_private: bool,
    timestamp_field: str | None,
) -> tuple[Any, Any, int | None] | None:
    """(smallest, largest) non-null value of ``field`` at or above ``lower`` and how many rows
    have one (``ia::meta.totalCount``, None if not given); None when there are none.

    Two size-1 queries (ascending, descending) sent at once: one round trip. A refusal of the
    replication field raises :class:`ReplicationFieldRefusedError`, as the pager would.
    """
    filters: list[dict[str, Any]] = [{"$ne": {field: None}}]
    if lower is not None:
        filters.insert(0, {"$gte": {field: lower}})

    def ask(direction: str) -> Any:
        body: dict[str, Any] = {
            "object": object_name,
            "fields": [field],
            "filters": filters,
            "orderBy": [{field: direction}],
            "start": 1,
            "size": 1,
        }
        if include_private:
            body["filterParameters"] = {"includePrivate": True}
        try:
            payload = client.query(body, entity=entity).json()
        except IntacctAPIError as exc:
            refused = exc.refused_query_field()
            if refused and timestamp_field and _names(refused, timestamp_field):
                raise ReplicationFieldRefusedError(object_name, timestamp_field, exc) from exc
            raise
        rows = payload.get("ia::result") if isinstance(payload, Mapping) else None
        meta = payload.get("ia::meta") if isinstance(payload, Mapping) else None
        total = meta.get("totalCount") if isinstance(meta, Mapping) else None
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], Mapping):
            return None, None
        return rows[0].get(field), total if isinstance(total, int) else None

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="intacct-range") as pool:
        low, high = pool.submit(ask, "asc"), pool.submit(ask, "desc")
        (lo, total), (hi, _) = low.result(), high.result()
    if lo is None or hi is None:
        return None
    return lo, hi, total


def _names(reported: str, ours: str) -> bool:
    reported, ours = reported.strip().lower(), ours.lower()
    return reported == ours or reported == ours.rsplit(".", 1)[-1]


_DONE = object()
STAGGER_SECONDS = 0.1
"""Workers start this far apart, so their pages do not all arrive (and decode, under the GIL,
and get computed by a server that answers one query at a time) at the same instant."""


class SlicedReader:
    """Pages of several slices read at once; consumed from one thread.

    ``make_pager(slice)`` builds the slice's pager. :meth:`pages` yields ``(slice, rows,
    dropped)`` for each page as it arrives and ``(slice, None, ())`` once a slice has
    ended (after its last page, in order). A worker's error is raised in the consuming thread
    (after the pages received before it). Closing the generator stops the workers and waits
    for the requests in flight, so no thread outlives it.
    """

    def __init__(
        self,
        slices: Sequence[Slice],
        make_pager: Callable[[Slice], QueryPager],
        *,
        workers: int,
    ) -> None:
        self.slices = list(slices)
        self.make_pager = make_pager
        self.workers = max(1, min(workers, len(self.slices)))
        self.pagers: list[QueryPager] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        with self._lock:
            return sum(p.calls for p in self.pagers)

    @property
    def pages_read(self) -> int:
        with self._lock:
            return sum(p.pages for p in self.pagers)

    def dropped_fields(self) -> list[str]:
        with self._lock:
            names: list[str] = []
            for pager in self.pagers:
                names.extend(n for n in pager.dropped_fields if n not in names)
            return names

    def pages(self) -> Generator[tuple[Slice, list[dict[str, Any]] | None, tuple[str, ...]]]:
        handoff: queue.Queue[tuple[Slice, Any, tuple[str, ...]]] = queue.Queue(self.workers)
        stop = threading.Event()

        def put(item: tuple[Slice, Any, tuple[str, ...]]) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work(position: int, s: Slice) -> None:
            if stop.wait(STAGGER_SECONDS * (position % self.workers)):
                return
            try:
                pager = self.make_pager(s)
                with self._lock:
                    self.pagers.append(pager)
                for page in pager:
                    if not put((s, page, tuple(pager.dropped_fields))):
                        return
                    if stop.is_set():
                        return
                put((s, _DONE, ()))
            except BaseException as exc:  # handed to the consumer, raised there
                put((s, exc, ()))

        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="intacct-slice")
        futures: list[Future[None]] = []
        try:
            futures = [pool.submit(work, i, s) for i, s in enumerate(self.slices)]
            remaining = len(self.slices)
            while remaining:
                s, item, dropped = handoff.get()
                if item is _DONE:
                    remaining -= 1
                    yield s, None, ()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield s, item, dropped
                    del item
        finally:
            stop.set()
            for future in futures:
                future.cancel()
            while True:  # unblock workers waiting to hand a page over
                try:
                    handoff.get_nowait()
                except queue.Empty:
                    break
            pool.shutdown(wait=True, cancel_futures=True)
