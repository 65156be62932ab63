"""The floor for the tap: page the query service with httpx, write Singer RECORD lines with msgspec.

Run as its own process by `bench_tap.py`, side by side with the real `tap-intacct`, so that
"tap records/s divided by this loop's records/s" says how much the SDK and our stream code cost
on top of the unavoidable work. It is meant to be as lean as a hand-written extractor producing
the *same* output lines can be:

* mint a token (client credentials), like the tap does inside its own timing;
* page the query service exactly like `intacct_api.pager.QueryPager` in keyset mode (same
  fields, same `orderBy`, same cursor filters and `filterExpression`, `start=1`, stop when
  `ia::meta.next` is null), or in offset mode (`--paging offset`). If the pager changes its
  request bodies, change `keyset_condition` too: `bench_tap.py` warns when the emulator spent
  very different CPU on the two runs, the sign that the bodies differ;
* prefetch: one background thread requests (and decodes) page k+1 as soon as page k's cursor
  is known, while the main thread writes page k, never more than one page ahead (like the
  tap's `QueryPager.prefetched`);
* decode each page straight into a msgspec Struct generated for the requested fields (one
  attribute per dotted field name, `gc=False`: no per-row dict, nothing for the collector to
  track), and nest each row with a generated function returning one dict literal;
* encode every RECORD of a page into one buffer (msgspec `encode_into`) and write it to a
  1 MiB-buffered stdout, then SCHEMA first and a STATE last;
* automatic garbage collection off, one `gc.collect()` per page instead (the tap's memory
  discipline; without it, a long sync's heap keeps growing).

No validation, no conformance, no metrics, no logging: deliberately nothing else. It depends
only on httpx and msgspec so it stays a stable yardstick while the connector changes.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

TS = "audit.modifiedDateTime"
KEY = "key"

LineBuilder = Callable[[Any, str], dict[str, Any]]


class Meta(msgspec.Struct, frozen=True, gc=False):
    """The part of `ia::meta` paging needs."""

    next: Any = None


def compile_row_types(
    request_fields: Sequence[str],
    fields: Sequence[str],
    stream: str,
    aliases: Sequence[tuple[str, str]] = (),
    constants: dict[str, Any] | None = None,
) -> tuple[type[msgspec.Struct], LineBuilder]:
    """(Page struct type, `(row, time_extracted) -> RECORD message`), both generated once.

    The row struct has one attribute `f<i>` per requested field, renamed to the dotted wire
    name (`"audit.modifiedDateTime"`), default None, so msgspec decodes a row without building
    a dict. The builder is one generated function returning a single nested dict literal
    (`{"audit": {"createdBy": r.f3, ...}, ...}`), the cheapest plain-Python form of this
    conversion. Field names are embedded with `repr`, so any text is safe.
    """
    attr = {path: f"f{i}" for i, path in enumerate(request_fields)}
    row_type = msgspec.defstruct(
        "Row",
        [(name, Any, None) for name in attr.values()],
        rename={name: path for path, name in attr.items()},
        gc=False,
    )
    page_type = msgspec.defstruct(
        "Page",
        [("result", list[row_type], msgspec.field(default_factory=list)), ("meta", Meta, Meta())],  # type: ignore[valid-type]
        rename={"result": "ia::result", "meta": "ia::meta"},
    )
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

    def literal(node: dict[str, Any], prefix: str, extra: Sequence[str] = ()) -> str:
        items = []
        for name, child in node.items():
            path = prefix + name
            value = f"r.{attr[path]}" if child is None else literal(child, f"{path}.")
            items.append(f"{name!r}: {value}")
        return "{" + ", ".join([*items, *extra]) + "}"

    namespace: dict[str, Any] = {"STREAM": stream, "CONSTANTS": dict(constants or {})}
    extra = [f"{name!r}: r.{attr[src]}" for name, src in aliases]
    extra += [f"{name!r}: CONSTANTS[{name!r}]" for name in namespace["CONSTANTS"]]
    source = (
        "def line(r, t):\n"
        f"    return {{'type': 'RECORD', 'stream': STREAM, 'record': {literal(tree, '', extra)}, "
        "'time_extracted': t}\n"
    )
    exec(compile(source, "<bare-line-builder>", "exec"), namespace)
    line: LineBuilder = namespace["line"]
    return page_type, line


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
    fields: list[str] = msgspec.json.decode(args.fields_file.read_bytes())
    schema = msgspec.json.decode(args.schema_file.read_bytes())
    # 1 MiB buffer: stdout's default 8 KiB would mean one write system call per ~3 KB record.
    out = open(sys.stdout.fileno(), "wb", buffering=1 << 20, closefd=False)  # noqa: SIM115
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
    aliases = [(a.split("=", 1)[0], a.split("=", 1)[1]) for a in args.alias]
    constants = {c.split("=", 1)[0]: msgspec.json.decode(c.split("=", 1)[1]) for c in args.constant}
    stream = args.stream
    page_type, build_line = compile_row_types(request_fields, fields, stream, aliases, constants)
    page_decoder = msgspec.json.Decoder(page_type)
    # attributes of the cursor columns (keyset mode always requests both)
    ts_attr = f"f{request_fields.index(TS)}" if TS in request_fields else ""
    key_attr = f"f{request_fields.index(KEY)}" if KEY in request_fields else ""
    calls = 0

    def fetch(body: dict[str, Any]) -> Any:
        """One page, requested and decoded (runs on the prefetch thread)."""
        nonlocal calls
        resp = http.post(url, content=encoder.encode(body), headers=headers)
        calls += 1
        if resp.status_code != 200:
            raise RuntimeError(f"query failed: {resp.status_code} {resp.text[:500]}")
        return page_decoder.decode(resp.content)

    def body_for(start: int, condition: tuple[list[dict[str, Any]], str | None] | None) -> Any:
        body: dict[str, Any] = {
            "object": args.object,
            "fields": request_fields,
            "start": start if args.paging == "offset" else 1,
            "size": args.page_size,
        }
        if args.paging == "keyset":
            if condition is not None:
                body["filters"] = condition[0]
                if condition[1]:
                    body["filterExpression"] = condition[1]
            body["orderBy"] = [{TS: "asc"}, {KEY: "asc"}]
        else:
            body["orderBy"] = [{KEY: "asc"}]
        return body

    gc.disable()  # one collection per page instead (below)
    out.write(
        encoder.encode(
            {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": ["key"]}
        )
        + b"\n"
    )
    started = False
    last_ts: Any = None
    ties: set[Any] = set()
    total = 0
    buffer = bytearray()
    encode_into = encoder.encode_into
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bare-prefetch")
    ahead: Future[Any] | None = prefetch.submit(fetch, body_for(1, None))
    try:
        for _ in range(args.max_pages):
            if ahead is None:
                break
            page = ahead.result()
            rows = page.result
            nxt = page.meta.next
            ahead = None
            if nxt is not None and rows:  # the next page's cursor is known: request it now
                if args.paging == "offset":
                    ahead = prefetch.submit(fetch, body_for(int(nxt), None))
                else:
                    last = rows[-1]
                    new_ts, new_key = getattr(last, ts_attr), getattr(last, key_attr)
                    if not (started and new_ts == last_ts):
                        ties = set()
                    ties.update(getattr(r, key_attr) for r in rows if getattr(r, ts_attr) == new_ts)
                    started, last_ts = True, new_ts
                    condition = keyset_condition(new_ts, new_key, ties)
                    ahead = prefetch.submit(fetch, body_for(1, condition))
            extracted = datetime.now(UTC).isoformat()
            for row in rows:
                encode_into(build_line(row, extracted), buffer, -1)
                buffer += b"\n"
            out.write(buffer)
            buffer.clear()
            total += len(rows)
            del page, rows  # at most two pages alive: this one is done, the next is in flight
            gc.collect()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
    out.write(
        encoder.encode({"type": "STATE", "value": {"bookmarks": {stream: {"rows": total}}}}) + b"\n"
    )
    out.flush()
    print(f"bare tap loop: {total} records, {calls} query calls", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
