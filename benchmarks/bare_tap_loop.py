"""The floor for the tap: read every page with httpx, write Singer RECORD lines with msgspec.

Run as its own process by `bench_tap.py`, side by side with the real `tap-intacct`, so that
"tap records/s divided by this loop's records/s" says how much the SDK and our stream code cost
on top of the unavoidable work. It does only what any extractor must do to produce the *same*
output lines:

* mint a token (client credentials), like the tap does inside its own timing;
* page the query service exactly like `intacct_api.pager.QueryPager` in keyset mode (same
  fields, same `orderBy`, same cursor filters and `filterExpression`, `start=1`, stop when
  `ia::meta.next` is null), or in offset mode (`--paging offset`). If the pager changes its
  request bodies, change `keyset_condition` too: `bench_tap.py` warns when the emulator spent
  very different CPU on the two runs, the sign that the bodies differ;
* turn flat rows (`"audit.modifiedDateTime"`) into nested records with a precompiled plan;
* write SCHEMA, one RECORD line per row (msgspec, into a 1 MiB buffer) and a STATE.

No validation, no conformance, no metrics, no logging: deliberately nothing else. It depends
only on httpx and msgspec so it stays a stable yardstick while the connector changes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

TS = "audit.modifiedDateTime"
KEY = "key"

Nester = Callable[[dict[str, Any]], dict[str, Any]]


def compile_nester(fields: Sequence[str]) -> Nester:
    """Build `row -> nested record` once: dotted paths become nested dicts, in field order.

    Generated as one function returning a single dict literal (`{"audit": {"createdBy":
    g("audit.createdBy"), ...}, ...}`), the cheapest plain-Python form of this conversion
    (about twice as fast as nested dict comprehensions), because this loop is meant to be the
    floor. Field names are embedded with `repr`, so any text is safe.
    """
    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node.setdefault(parts[-1], None)

    def literal(node: dict[str, Any], prefix: str) -> str:
        items = []
        for name, child in node.items():
            value = f"g({prefix + name!r})" if child is None else literal(child, f"{prefix}{name}.")
            items.append(f"{name!r}: {value}")
        return "{" + ", ".join(items) + "}"

    source = f"def nest(row):\n    g = row.get\n    return {literal(tree, '')}\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<bare-nester>", "exec"), namespace)
    nest: Nester = namespace["nest"]
    return nest


TIE_KEYS_LIMIT = 500


def keyset_condition(
    last_ts: Any, last_key: Any, ties: set[Any]
) -> tuple[list[dict[str, Any]], str | None]:
    """The pager's cursor condition after a page (no caller filters): same filters, same text.

    Mirrors `intacct_api.pager.QueryPager._keyset_condition`: normally the AND-only form
    "timestamp >= last and key not in (keys already emitted at that timestamp)", which the
    server can answer from an index; the classic OR form only after a mass update gave more
    than 500 rows one timestamp; the null-first form while inside null-timestamp rows.
    """
    if last_ts is None:
        extra = [{"$eq": {TS: None}}, {"$gt": {KEY: last_key}}, {"$ne": {TS: None}}]
        return extra, "((1 and 2) or 3)"
    if len(ties) <= TIE_KEYS_LIMIT:
        return [{"$gte": {TS: last_ts}}, {"$notIn": {KEY: sorted(ties)}}], None
    extra = [{"$gt": {TS: last_ts}}, {"$eq": {TS: last_ts}}, {"$gt": {KEY: last_key}}]
    return extra, "(1 or (2 and 3))"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, page the query service, write Singer lines to stdout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--client-id", default="demo-client")
    ap.add_argument("--client-secret", default="demo-secret")
    ap.add_argument("--username", default="admin@DEMO")
    ap.add_argument("--object", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--fields-file", required=True, type=Path, help="JSON list of field paths")
    ap.add_argument("--schema-file", required=True, type=Path, help="JSON Schema of the stream")
    ap.add_argument("--page-size", type=int, default=4000)
    ap.add_argument("--paging", choices=("keyset", "offset"), default="keyset")
    ap.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME=FIELD",
        help="top-level copy of a row value (the tap's `_modified_at`)",
    )
    ap.add_argument(
        "--constant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="fixed top-level value (the tap's `_entity`)",
    )
    ap.add_argument("--max-pages", type=int, default=100_000, help="safety bound")
    args = ap.parse_args(argv)

    encoder = msgspec.json.Encoder()
    decoder = msgspec.json.Decoder()
    fields: list[str] = msgspec.json.decode(args.fields_file.read_bytes())
    schema = msgspec.json.decode(args.schema_file.read_bytes())
    # 1 MiB buffer: stdout's default 8 KiB would mean one write system call per ~3 KB record.
    out = open(sys.stdout.fileno(), "wb", buffering=1 << 20, closefd=False)  # noqa: SIM115
    write, encode = out.write, encoder.encode
    http = httpx.Client(timeout=120.0)
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
    url = args.base_url + "/services/core/query"
    request_fields = list(fields)
    if args.paging == "keyset":
        request_fields += [f for f in (TS, KEY) if f not in request_fields]
    nest = compile_nester(fields)
    aliases = [tuple(a.split("=", 1)) for a in args.alias]
    constants = {c.split("=", 1)[0]: msgspec.json.decode(c.split("=", 1)[1]) for c in args.constant}
    if aliases or constants:
        plain = nest

        def nest(row: dict[str, Any]) -> dict[str, Any]:
            record = plain(row)
            for name, src in aliases:
                record[name] = row.get(src)
            record.update(constants)
            return record

    stream = args.stream

    out.write(
        encoder.encode(
            {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": ["key"]}
        )
        + b"\n"
    )
    started = False
    last_ts: Any = None
    last_key: Any = None
    ties: set[Any] = set()
    start = 1
    total = calls = 0
    for _ in range(args.max_pages):
        body: dict[str, Any] = {
            "object": args.object,
            "fields": request_fields,
            "start": start if args.paging == "offset" else 1,
            "size": args.page_size,
        }
        if args.paging == "keyset":
            if started:
                extra, expression = keyset_condition(last_ts, last_key, ties)
                body["filters"] = extra
                if expression:
                    body["filterExpression"] = expression
            body["orderBy"] = [{TS: "asc"}, {KEY: "asc"}]
        else:
            body["orderBy"] = [{KEY: "asc"}]
        resp = http.post(url, content=encoder.encode(body), headers=headers)
        calls += 1
        if resp.status_code != 200:
            print(f"query failed: {resp.status_code} {resp.text[:500]}", file=sys.stderr)
            return 1
        payload = decoder.decode(resp.content)
        rows = payload.get("ia::result") or []
        nxt = (payload.get("ia::meta") or {}).get("next")
        extracted = datetime.now(UTC).isoformat()
        for row in rows:
            msg = {"type": "RECORD", "stream": stream, "record": nest(row)}
            msg["time_extracted"] = extracted
            write(encode(msg) + b"\n")
        total += len(rows)
        if nxt is None or not rows:
            break
        if args.paging == "offset":
            start = int(nxt)
            continue
        last = rows[-1]
        new_ts, new_key = last.get(TS), last.get(KEY)
        if not (started and new_ts == last_ts):
            ties = set()
        ties.update(row.get(KEY) for row in rows if row.get(TS) == new_ts)
        started, last_ts, last_key = True, new_ts, new_key
        del resp, payload, rows  # one page in memory at a time, like the tap's pager
    out.write(
        encoder.encode({"type": "STATE", "value": {"bookmarks": {stream: {"rows": total}}}}) + b"\n"
    )
    out.flush()
    print(f"bare tap loop: {total} records, {calls} query calls", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
