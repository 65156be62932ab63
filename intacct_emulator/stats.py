"""Request counters behind `GET /_emulator/stats`.

Benchmarks and end-to-end tests assert on *how* a client talks to the API (one query per page,
batches of 500, one token request), so every API call is counted under a stable name: method +
path without the `/ia/api/v1` prefix, with record keys replaced by `{key}`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from intacct_emulator.config import API_PREFIX

_OBJECT_SEGMENTS = 5  # "", "objects", application, object, keys


def stats_key(method: str, path: str) -> str:
    """`PATCH /ia/api/v1/objects/a/b/17` -> `PATCH /objects/a/b/{key}`."""
    rest = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path
    if rest.startswith("/objects/"):
        parts = rest.split("/", _OBJECT_SEGMENTS - 1)
        if len(parts) == _OBJECT_SEGMENTS and parts[4]:
            return f"{method} /objects/{parts[2]}/{parts[3]}/{{key}}"
    return f"{method} {rest}"


class RequestStats:
    """Counts per request name and per response status; reset by `/_emulator/reset`."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    def record(self, name: str, status: int) -> None:
        self.requests[name] += 1
        self.statuses[status] += 1

    def snapshot(self) -> dict[str, Any]:
        """`{"requests": {name: n}, "responses": {"200": n, ...}, "total": n}`."""
        return {
            "requests": dict(self.requests),
            "responses": {str(k): v for k, v in sorted(self.statuses.items())},
            "total": sum(self.requests.values()),
        }

    def reset(self) -> None:
        self.requests.clear()
        self.statuses.clear()
