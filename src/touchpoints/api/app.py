"""The FastAPI application: the collector, settings for analytics.js, health, admin."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import RedirectResponse

import touchpoints
from touchpoints.api import (
    activation_loop,
    admin_routes,
    audience_routes,
    audit_routes,
    campaign_routes,
    collect_asgi,
    collector_routes,
    consent_routes,
    email_routes,
    errors,
    experiment_routes,
    housekeeping,
    input_guard,
    insights_routes,
    model_routes,
    offer_routes,
    privacy_routes,
    profile_routes,
    segment_routes,
    survey_routes,
    tracker_routes,
    trigger_routes,
    webhook_routes,
)
from touchpoints.api.collect_asgi import CollectorASGI
from touchpoints.api.ratelimit import ApiLimiter, ApiSettings
from touchpoints.collect.collector import Collector, CollectorSettings
from touchpoints.collect.sources import SourceRegistry
from touchpoints.dashboard import routes as dashboard_routes
from touchpoints.privacy.keys import KeyChecker
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import EventWriter, open_writer


@dataclass
class Services:
    """What the routes need; built once per server process."""

    warehouse: Warehouse
    writer: EventWriter
    collector: Collector
    keys: KeyChecker
    limiter: ApiLimiter = field(default_factory=ApiLimiter)  # per read/admin key
    #: The clock of trigger delays, caps and sends (tests move it forward).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: How far behind arrival triggers read events (the writer's longest delay, and more).
    activation_lag_s: float = 5.0

    @classmethod
    def open(
        cls,
        warehouse: Warehouse,
        settings: CollectorSettings | None = None,
        control_token: str | None = None,
        api_settings: ApiSettings | None = None,
    ) -> Services:
        writer = open_writer(warehouse)
        collector = Collector(SourceRegistry(warehouse), writer, settings)
        keys = KeyChecker(warehouse, control_token)
        return cls(warehouse, writer, collector, keys, ApiLimiter(api_settings))

    def close(self) -> None:
        self.writer.close()


def create_app(services: Services) -> CollectorASGI:
    """The ASGI app over already-open services; the caller closes them. The FastAPI app
    is its `.app` attribute."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        settings = services.limiter.settings
        every = settings.retention_every_s
        chores = [asyncio.create_task(housekeeping.run_daily(services, every))] if every else []
        if settings.activation_every_s:
            chores += activation_loop.start(services, settings.activation_every_s)
        yield
        for chore in chores:
            chore.cancel()
        services.writer.close()

    app = FastAPI(
        title="Touchpoints",
        version=touchpoints.__version__,
        description="Segment-compatible collector and customer data platform API.",
        lifespan=lifespan,
        dependencies=[Depends(input_guard.refuse_nul)],
    )
    app.state.services = services
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=".*",
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        max_age=86400,
    )
    errors.install(app)
    app.include_router(collector_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(profile_routes.router)
    app.include_router(insights_routes.router)
    app.include_router(model_routes.router)
    app.include_router(segment_routes.router)
    app.include_router(consent_routes.router)
    app.include_router(privacy_routes.router)
    app.include_router(tracker_routes.router)
    app.include_router(experiment_routes.router)
    app.include_router(audience_routes.router)
    app.include_router(offer_routes.router)
    app.include_router(campaign_routes.router)
    app.include_router(campaign_routes.overview_router)
    app.include_router(trigger_routes.router)
    app.include_router(email_routes.router)
    app.include_router(webhook_routes.router)
    app.include_router(survey_routes.router)
    app.include_router(dashboard_routes.router)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/dashboard", status_code=307)

    collect_asgi.document(app)
    return CollectorASGI(app, services.collector)
