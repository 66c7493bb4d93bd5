"""What can go wrong in a request, and the one place where that becomes an HTTP answer.

Route code raises these; `error_response` is the app's only exception handler, so every
error, ours or Litestar's, leaves as the same `ErrorBody` JSON. A message says what was
wrong and what to do about it.
"""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from ingest_api.schemas import ErrorBody, FieldError

logger = logging.getLogger(__name__)


class TributaryError(Exception):
    status_code = 500

    def __init__(self, message: str, fields: list[FieldError] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or []

    @property
    def headers(self) -> dict[str, str]:
        return {}


class ClientError(TributaryError):
    """The request is wrong; sending it again unchanged will fail again."""

    status_code = 400


class AuthError(ClientError):
    status_code = 401

    @property
    def headers(self) -> dict[str, str]:
        # Bearer, not Basic: a Basic challenge makes browsers pop up a login dialog.
        return {"WWW-Authenticate": 'Bearer realm="tributary"'}


class Forbidden(ClientError):
    status_code = 403


class PayloadTooLarge(ClientError):
    status_code = 413


class UnsupportedMediaType(ClientError):
    status_code = 415


class Unavailable(TributaryError):
    """The events could not be made durable now; the client should retry shortly."""

    status_code = 503

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


def error_response(request: Request, error: Exception) -> Response[ErrorBody]:
    """The app's one exception handler: every error leaves as an `ErrorBody`."""
    if isinstance(error, TributaryError):
        status, headers, body = error.status_code, error.headers, ErrorBody(error.message, error.fields)
    elif isinstance(error, HTTPException):
        # Litestar's own: unknown route (404), wrong method (405), a malformed Content-Length.
        status, headers = error.status_code, dict(error.headers or {})
        body = ErrorBody(f"{error.detail} ({request.method} {request.url.path})")
    else:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        status, headers = 500, {}
        body = ErrorBody("internal error: the request was not processed; retry, and report it if it persists")
    return Response(body, status_code=status, headers=headers, media_type=MediaType.JSON)
