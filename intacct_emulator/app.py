"""Assembly of the emulator's ASGI application: `create_app(config) -> Starlette`.

Layers, outermost first: Starlette's error middleware, the `Gateway` (stats, faults, bearer
tokens), then the routes: OAuth, API (objects and core services) and `/_emulator` control.
Unknown paths and wrong methods answer in Intacct's error envelope, never in Starlette's text.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from intacct_api.spec import default_registry
from intacct_emulator.api_routes import ApiRoutes
from intacct_emulator.bulk_service import BulkService
from intacct_emulator.company import Company
from intacct_emulator.config import EmulatorConfig
from intacct_emulator.control import ControlRoutes
from intacct_emulator.faults import FaultHooks, FaultInjector, install_log_filter
from intacct_emulator.gateway import Gateway
from intacct_emulator.http_errors import error_response, method_not_allowed, not_found
from intacct_emulator.idempotency import IdempotencyCache
from intacct_emulator.oauth import OAuthServer
from intacct_emulator.oauth_routes import OAuthRoutes
from intacct_emulator.query_engine import QueryOptions
from intacct_emulator.reports_service import ReportsService
from intacct_emulator.state import EmulatorState, apply_refused_fields
from intacct_emulator.stats import RequestStats


def build_company(config: EmulatorConfig) -> Company:
    """The data layer for `config`: registry from the embedded specs (+ extra paths), seeded.

    Seeding is skipped when a file database already holds data, so a demo that stops and
    starts again reads back what it wrote instead of getting a second copy of the seed.
    """
    company = Company(default_registry(config.spec_paths), db=config.db)
    if config.seed_records and not _has_data(company):
        company.seed(config.seed_records, config.random_seed)
    return company


def _has_data(company: Company) -> bool:
    return bool(company.store.objects_with_data())


def create_app(config: EmulatorConfig) -> Starlette:
    """Build one emulator. The company is created (and seeded) here, before serving starts."""
    install_log_filter()
    owns_company = config.company is None
    company = config.company if config.company is not None else build_company(config)
    oauth = OAuthServer(
        config.clients,
        token_lifetime=config.token_lifetime,
        refresh_token_lifetime=config.refresh_token_lifetime,
    )
    # Snapshot the company's own REST-1106 defaults before start-up knobs change them.
    default_refused = {k: set(v) for k, v in company.refused_query_fields.items()}
    hooks = FaultHooks(
        expire_tokens=oauth.expire_all,
        refuse_query_fields=functools.partial(apply_refused_fields, company),
    )
    faults = FaultInjector(config.faults, hooks)
    oauth.refresh_failure = lambda: faults.knobs.refresh_failure
    company.queries.options = lambda: QueryOptions(
        key_sort=faults.knobs.key_sort,
        key_compare=faults.knobs.key_compare,
        refused_field_form=faults.knobs.refused_field_form,
    )
    state = EmulatorState(
        config=config,
        company=company,
        oauth=oauth,
        faults=faults,
        stats=RequestStats(),
        idempotency=IdempotencyCache(config.db),
        default_refused_fields=default_refused,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.idempotency.close()
            if owns_company:
                company.close()

    reports = ReportsService(company)  # GL balance reports (issue 16), computed from lines
    bulk = BulkService(state)  # bulk jobs (issue 16): multipart create, polled status
    app = Starlette(
        routes=[
            *OAuthRoutes(oauth).routes(),
            *reports.routes(),
            *bulk.routes(),
            *ApiRoutes(state).routes(),
            *ControlRoutes(state, resets=(reports.reset, bulk.reset)).routes(),
        ],
        middleware=[
            Middleware(Gateway, oauth=oauth, faults=state.faults, stats=state.stats),
        ],
        exception_handlers={HTTPException: _http_exception},
        lifespan=lifespan,
    )
    app.state.emulator = state
    app.state.reports = reports
    app.state.bulk = bulk
    return app


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Routing failures (404, 405) in Intacct's envelope."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return not_found(request.url.path)
    if status == 405:
        return method_not_allowed(request.method, request.url.path)
    return error_response(status, "invalidRequest", str(getattr(exc, "detail", "")), "REST-1000")
