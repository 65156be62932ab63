"""The floor for the target: read Singer lines with msgspec, POST 500-record batches with httpx.

Run as its own process by `bench_target.py`, side by side with the real `target-intacct` on
the same input file, so their ratio says what the SDK, validation and the Mutate engine cost on
top of the unavoidable work: parse each line, collect RECORDs of the stream, send each batch
of 500 as one `POST /objects/{object}` with a JSON array body, and read the per-record results
(counting failures, so a broken run is visible). Nothing else: no validation, no idempotency
keys, no retries, one request at a time. It depends only on httpx and msgspec.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec


class Message(msgspec.Struct):
    """The two members of a Singer line this loop needs; everything else is skipped unparsed."""

    type: str
    stream: str | None = None
    record: dict[str, Any] | None = None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, stream the file, post the batches, report counts on stderr."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--client-id", default="demo-client")
    ap.add_argument("--client-secret", default="demo-secret")
    ap.add_argument("--username", default="admin@DEMO")
    ap.add_argument("--object", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--input", type=Path, help="Singer file (default: stdin)")
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args(argv)

    decoder = msgspec.json.Decoder(Message)
    encoder = msgspec.json.Encoder()
    result_decoder = msgspec.json.Decoder()
    http = httpx.Client(timeout=300.0)
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
    sent = failed = calls = 0

    def flush(batch: list[dict[str, Any]]) -> None:
        nonlocal sent, failed, calls
        resp = http.post(url, content=encoder.encode(batch), headers=headers)
        calls += 1
        sent += len(batch)
        if resp.status_code not in (200, 201, 207):
            failed += len(batch)
            if failed == len(batch):
                print(f"batch failed: {resp.status_code} {resp.text[:500]}", file=sys.stderr)
            return
        result = result_decoder.decode(resp.content).get("ia::result")
        if isinstance(result, list):
            failed += sum(1 for item in result if isinstance(item, dict) and "ia::error" in item)

    source = args.input.open("rb") if args.input else sys.stdin.buffer
    batch: list[dict[str, Any]] = []
    with source:
        for line in source:
            if not line.strip():
                continue
            msg = decoder.decode(line)
            if msg.type != "RECORD" or msg.stream != args.stream or msg.record is None:
                continue
            batch.append(msg.record)
            if len(batch) >= args.batch_size:
                flush(batch)
                batch = []
    if batch:
        flush(batch)
    print(
        f"bare target loop: {sent} records sent, {failed} failed, {calls} write calls",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
