"""The ingest API's one factory: `uvicorn ingest_api.app:create_app --factory`; tests build theirs from it."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from ingest_api.auth import WriteKeys
from ingest_api.cors import event_routes_cors
from ingest_api.database import Database
from ingest_api.errors import error_response
from ingest_api.ratelimit import RateLimiter
from ingest_api.routes.admin import flush, stats
from ingest_api.routes.events import track_event, track_event_batch
from ingest_api.routes.health import liveness, readiness
from ingest_api.routes.segment import SEGMENT_ROUTES
from tributary.settings import Settings, get_settings

OPENAPI = OpenAPIConfig(
    title="Tributary ingest API",
    version="1",
    description="Posts product-analytics events into Tributary. A 2xx means the events are committed.",
    path="/schema",
    use_handler_docstrings=True,
    components=Components(
        security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer", description="Authorization: Bearer <write key>."),
            "basic": SecurityScheme(
                type="http", scheme="basic", description="The write key as user name, no password."
            ),
            "adminToken": SecurityScheme(
                type="http",
                scheme="bearer",
                description="Authorization: Bearer <TRIBUTARY_ADMIN_TOKEN> (admin routes).",
            ),
            "writeKey": SecurityScheme(
                type="apiKey",
                name="writeKey",
                security_scheme_in="query",
                description="?writeKey=<write key>, for navigator.sendBeacon, which cannot set headers.",
            ),
        }
    ),
)


def create_app(settings: Settings | None = None) -> Litestar:
    """The ingest API. The database pool opens when the app starts, not here."""
    settings = settings or get_settings()
    database = Database(settings)
    write_keys = WriteKeys(database)
    rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    return Litestar(
        route_handlers=[track_event, track_event_batch, liveness, readiness, stats, flush, *SEGMENT_ROUTES],
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "database": Provide(lambda: database, use_cache=True, sync_to_thread=False),
            "write_keys": Provide(lambda: write_keys, use_cache=True, sync_to_thread=False),
            "rate_limiter": Provide(lambda: rate_limiter, use_cache=True, sync_to_thread=False),
        },
        lifespan=[database.lifespan],
        exception_handlers={Exception: error_response},
        middleware=[event_routes_cors()],
        openapi_config=OPENAPI,
    )
