"""GET /api/: the index of the API's endpoints, read off the URL configuration so
it cannot drift from what is routed. Login and runs.view_skillrun, like every other read."""

from __future__ import annotations

import re

from django.urls import URLPattern
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from .permissions import CanViewRuns
from .views import READ_ERRORS

METHODS = ("get", "post", "put", "patch", "delete")


def _endpoints(prefix: str) -> list[dict]:
    from . import urls

    found = []
    for entry in urls.urlpatterns:
        if not isinstance(entry, URLPattern) or entry.name in ("index", "not-found"):
            continue
        route = getattr(entry.pattern, "_route", None)
        if route is None:
            continue
        view = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
        methods = [m.upper() for m in METHODS if view is not None and hasattr(view, m)]
        doc = ((view.__doc__ if view is not None else entry.callback.__doc__) or "").strip()
        found.append(
            {
                "path": prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route),
                "name": entry.name,
                "methods": methods,
                "about": doc.split("\n\n")[0].replace("\n", " "),
            }
        )
    return found


class ApiIndexView(APIView):
    """This index: every endpoint with its methods, and where the OpenAPI document is."""

    permission_classes: list[type[BasePermission]] = [CanViewRuns]

    @extend_schema(
        operation_id="api_index",
        summary="The API's endpoints",
        responses={200: dict, **READ_ERRORS},
    )
    def get(self, request):
        prefix = request.path if request.path.endswith("/") else request.path + "/"
        return Response(
            {
                "schema": prefix + "schema/",
                "endpoints": _endpoints(prefix),
                "authentication": "Authorization: Token <key>, or a logged-in session",
            }
        )
