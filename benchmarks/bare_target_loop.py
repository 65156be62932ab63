"""The floor for the target: read Singer lines with msgspec, write 500-record batches with httpx.

Run as its own process by `bench_target.py`, side by side with the real `target-intacct` on
the same input file, so their ratio says what the SDK, validation and the Mutate engine cost on
top of the unavoidable work. Two modes:

* ``--mode create``: each batch of 500 is one `POST /objects/{object}` with a JSON array body;
* ``--mode upsert``: each batch is one `$in` look-up on the natural key (`id`), with the same
  body shape as the engine's (`intacct_api.mutate_upsert.lookup_keys`: fields key + id,
  `$in` filter, `orderBy` key, `start` 1, `size` 4000), then one `POST` (array) of the records
  not found and one `PATCH /objects/{object}` (array, each record with its `key`) of those
  found. Batches never need more than one look-up page (500 values <= 4000 rows).

``--in-flight K`` keeps up to K batches in flight (a thread pool over one keep-alive httpx
client with K connections); K = 1 is the plain sequential loop. Batches are disjoint (ids are
unique in the input), so nothing has to be ordered between them. Records are never decoded into
dicts: each is kept as the raw JSON bytes of its line (only the match value is decoded, for
the look-up) and spliced into the request bodies. Per-record results are read (failures
counted, so a broken run is visible, and the exit status is 1). Nothing else: no validation,
no idempotency keys, no retries. It depends only on httpx and msgspec.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec

LOOKUP_PAGE_SIZE = 4000


class Message(msgspec.Struct, gc=False):
    """The members of a Singer line this loop needs; the record stays raw JSON bytes (it is
    sent as it came: never decoded into a dict, never re-encoded)."""

    type: str
    stream: str | None = None
    record: msgspec.Raw = msgspec.Raw(b"")  # empty: the line had no record


class Counts:
    """Tallies of one run, added to from the worker threads under a lock."""

    def __init__(self) -> None:
        self.sent = self.failed = self.writes = self.lookups = self.created = self.updated = 0
        self._lock = threading.Lock()

    def add(self, **amounts: int) -> None:
        """Add to the named tallies."""
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, stream the file, send the batches, report counts on stderr."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--client-id", default="demo-client")
    ap.add_argument("--client-secret", default="demo-secret")
    ap.add_argument("--username", default="admin@DEMO")
    ap.add_argument("--object", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--input", type=Path, help="Singer file (default: stdin)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--mode", choices=("create", "upsert"), default="create")
    ap.add_argument("--match-on", default="id", help="natural key of the upsert look-up")
    ap.add_argument("--in-flight", type=int, default=1, help="batches in flight at once")
    args = ap.parse_args(argv)
    in_flight = max(1, args.in_flight)

    decoder = msgspec.json.Decoder(Message)
    encoder = msgspec.json.Encoder()
    result_decoder = msgspec.json.Decoder()
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    http = httpx.Client(timeout=300.0, limits=limits)
    token = http.post(
        args.base_url + "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": args.client_id,
            "client_secret": args.client_secret,
            "username": args.username,
        },
    ).json()["access_token"]
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    url = f"{args.base_url}/objects/{args.object}"
    query_url = f"{args.base_url}/services/core/query"
    match_on = args.match_on
    counts = Counts()

    def write(method: str, batch: list[bytes]) -> None:
        body = b"[" + b",".join(batch) + b"]"
        resp = http.request(method, url, content=body, headers=headers)
        counts.add(writes=1)
        if resp.status_code not in (200, 201, 207):
            counts.add(failed=len(batch))
            print(f"{method} failed: {resp.status_code} {resp.text[:500]}", file=sys.stderr)
            return
        result = result_decoder.decode(resp.content).get("ia::result")
        if isinstance(result, list):
            counts.add(
                failed=sum(1 for item in result if isinstance(item, dict) and "ia::error" in item)
            )

    # the look-up's match value only: the other members of a record are skipped, not built
    match_type = msgspec.defstruct("Match", [("value", Any, None)], rename={"value": match_on})
    id_decoder = msgspec.json.Decoder(match_type)

    def lookup(values: list[str]) -> dict[str, str]:
        body = {
            "object": args.object,
            "fields": ["key", match_on],
            "filters": [{"$in": {match_on: sorted(set(values))}}],
            "orderBy": [{"key": "asc"}],
            "start": 1,
            "size": LOOKUP_PAGE_SIZE,
        }
        resp = http.post(query_url, content=encoder.encode(body), headers=headers)
        counts.add(lookups=1)
        resp.raise_for_status()
        rows = result_decoder.decode(resp.content).get("ia::result") or ()
        return {str(row[match_on]): str(row["key"]) for row in rows}

    def flush(batch: list[bytes]) -> None:
        counts.add(sent=len(batch))
        if args.mode == "create":
            write("POST", batch)
            counts.add(created=len(batch))
            return
        values = [str(getattr(id_decoder.decode(raw), "value", None)) for raw in batch]
        existing = lookup(values)
        creates: list[bytes] = []
        updates: list[bytes] = []
        for raw, value in zip(batch, values, strict=True):
            key = existing.get(value)
            if key is None:
                creates.append(raw)
            else:  # `{"key": "123", ...the record...}`, spliced without decoding the record
                updates.append(b'{"key":' + encoder.encode(key) + b"," + raw.lstrip()[1:])
        if creates:
            write("POST", creates)
            counts.add(created=len(creates))
        if updates:
            write("PATCH", updates)
            counts.add(updated=len(updates))

    pool = ThreadPoolExecutor(max_workers=in_flight) if in_flight > 1 else None
    pending: deque[Future[None]] = deque()

    def submit(batch: list[bytes]) -> None:
        if pool is None:
            flush(batch)
            return
        while len(pending) >= in_flight:
            pending.popleft().result()
        pending.append(pool.submit(flush, batch))

    source = args.input.open("rb") if args.input else sys.stdin.buffer
    batch: list[bytes] = []
    with source:
        for line in source:
            if not line.strip():
                continue
            msg = decoder.decode(line)
            if msg.type != "RECORD" or msg.stream != args.stream or not len(msg.record):
                continue
            batch.append(bytes(msg.record))
            if len(batch) >= args.batch_size:
                submit(batch)
                batch = []
    if batch:
        submit(batch)
    while pending:
        pending.popleft().result()
    if pool is not None:
        pool.shutdown()
    print(
        f"bare target loop ({args.mode}, {in_flight} in flight): {counts.sent} records sent "
        f"({counts.created} created, {counts.updated} updated), {counts.failed} failed, "
        f"{counts.writes} write calls, {counts.lookups} look-up calls",
        file=sys.stderr,
    )
    return 1 if counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
