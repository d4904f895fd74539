"""A clean 503 when the database is down or a query ran past its time limit."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """Turns database outages into a 503 page (or JSON for the API), never a traceback.

    OperationalError covers a refused connection, a server restart mid-request and
    PostgreSQL's statement_timeout; the connection is dropped so the next request
    reconnects (CONN_HEALTH_CHECKS does the rest).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.error("database unavailable for %s: %s", request.path, exception)
        wants_json = request.path.startswith("/api/") or "json" in request.headers.get("Accept", "")
        if wants_json:
            response = HttpResponse(
                b'{"detail": "The database is unavailable or too slow; try again shortly."}',
                content_type="application/json",
                status=503,
            )
        else:
            response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = "5"
        return response
