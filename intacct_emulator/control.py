"""`/_emulator/*`: the emulator's own control surface (stats, reset, faults, health).

Outside the API prefix on purpose: no token needed, never counted, never faulted, so a test can
always observe and repair the emulator it is breaking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from intacct_emulator.config import API_PREFIX, CONTROL_PREFIX
from intacct_emulator.http_errors import json_response
from intacct_emulator.state import EmulatorState

RESET_PARTS = ("stats", "faults", "data", "tokens", "idempotency")


class ControlRoutes:
    """Handlers bound to one emulator's state."""

    def __init__(self, state: EmulatorState, resets: Sequence[Callable[[], object]] = ()) -> None:
        self.state = state
        self.resets = tuple(resets)
        """Other services' knobs (reports, bulk jobs), reset with the faults."""

    def routes(self) -> list[Route]:
        base = CONTROL_PREFIX
        return [
            Route(base + "/health", self.health, methods=["GET"]),
            Route(base + "/stats", self.stats, methods=["GET"]),
            Route(base + "/reset", self.reset, methods=["POST"]),
            Route(base + "/faults", self.faults, methods=["GET", "POST"]),
            Route(base + "/clock", self.clock, methods=["GET", "POST"]),
            Route(base + "/idempotency", self.idempotency, methods=["GET", "POST"]),
        ]

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok", "apiPrefix": API_PREFIX, "db": self.state.config.db})

    async def stats(self, request: Request) -> Response:
        return json_response(self.state.stats.snapshot())

    async def reset(self, request: Request) -> Response:
        """Reset everything, or only the parts named false-y in an optional JSON body.

        Body example: `{"tokens": false}` keeps issued tokens valid (a long-lived client in a
        benchmark), everything else is reset. Faults go back to the start-up knobs, data to what
        `Company.reset()` defines.
        """
        options = await _json_object(request)
        if isinstance(options, Response):
            return options
        unknown = set(options) - set(RESET_PARTS)
        if unknown:
            return _bad(f"unknown reset part(s): {', '.join(sorted(unknown))}")
        chosen = [part for part in RESET_PARTS if options.get(part, True)]
        state = self.state
        if "stats" in chosen:
            state.stats.reset()
        if "tokens" in chosen:
            state.oauth.reset()
        if "idempotency" in chosen:
            state.idempotency.reset()
        if "data" in chosen:
            state.company.reset()
            if state.config.seed_records:
                state.company.seed(state.config.seed_records, state.config.random_seed)
        if "faults" in chosen:
            state.restore_refused_fields()
            state.faults.reset()
            for reset in self.resets:
                reset()
        return json_response({"reset": chosen})

    async def faults(self, request: Request) -> Response:
        """GET reads the knobs; POST changes the named ones and answers with all of them."""
        state = self.state
        if request.method == "POST":
            patch = await _json_object(request)
            if isinstance(patch, Response):
                return patch
            try:
                state.faults.configure(patch)
            except ValueError as exc:
                return _bad(str(exc))
        knobs = state.faults.snapshot()
        knobs["refuse_query_fields"] = state.effective_refused_fields()
        return json_response(knobs)

    async def clock(self, request: Request) -> Response:
        """The emulated clock: POST ``{"advance_seconds": N}`` or ``{"offset_seconds": N}``.

        Lets a test cross Intacct's 48-hour replay and 60-day key windows in a second.
        """
        clock = self.state.idempotency.clock
        if request.method == "POST":
            body = await _json_object(request)
            if isinstance(body, Response):
                return body
            unknown = set(body) - {"advance_seconds", "offset_seconds"}
            if unknown:
                return _bad(f"unknown clock option(s): {', '.join(sorted(unknown))}")
            try:
                if "offset_seconds" in body:
                    clock.offset = float(body["offset_seconds"])
                if "advance_seconds" in body:
                    clock.advance(float(body["advance_seconds"]))
            except (TypeError, ValueError):
                return _bad("clock options take a number of seconds")
        return json_response(clock.snapshot())

    async def idempotency(self, request: Request) -> Response:
        """GET/POST the undocumented idempotency choices (``after_result_ttl``)."""
        cache = self.state.idempotency
        if request.method == "POST":
            body = await _json_object(request)
            if isinstance(body, Response):
                return body
            try:
                cache.configure(body)
            except ValueError as exc:
                return _bad(str(exc))
        return json_response(cache.snapshot())


async def _json_object(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return _bad("body is not valid JSON")
    if not isinstance(data, dict):
        return _bad("body must be a JSON object")
    return data


def _bad(message: str) -> Response:
    return json_response({"error": message}, 400)
