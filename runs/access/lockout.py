"""What a locked-out login gets from django-axes: 429 with Retry-After, no form."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = HttpResponse(
        f"Too many failed logins from this address or for this user: try again in "
        f"{seconds // 60} minutes.\n",
        content_type="text/plain; charset=utf-8",
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response
