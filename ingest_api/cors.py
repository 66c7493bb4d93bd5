"""CORS: open on the event routes, closed on the admin routes.

Browsers post events from any origin, so the event routes answer preflights and carry
`Access-Control-Allow-Origin: *` (no credentials: write keys travel in headers or the
query string, never in cookies). The admin routes must not be callable from a web page
on another origin, so they get no CORS headers at all and their preflight fails in the
browser. Litestar's `cors_config` applies to a whole app, so its middleware is used here
with an `exclude` pattern instead.
"""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.middleware import DefineMiddleware

# Litestar 2 keeps its CORS middleware private (the public name is deprecated); the
# tests in tests/integration/test_admin_api.py fail loudly should it move.
from litestar.middleware._internal.cors import CORSMiddleware

EVENT_CORS = CORSConfig(
    allow_origins=["*"],
    allow_methods=["GET", "POST", "OPTIONS"],
    allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
    expose_headers=["Retry-After"],
    max_age=86400,
)


class EventRoutesCORS(CORSMiddleware):
    exclude = ["^/v1/admin"]


def event_routes_cors() -> DefineMiddleware:
    return DefineMiddleware(EventRoutesCORS, config=EVENT_CORS)
