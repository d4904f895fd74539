"""The address a request comes from, the same for the login lockout and the API throttles."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_address(request) -> str | None:
    """REMOTE_ADDR, or behind the reverse proxy the address the proxy saw; None if unknown.

    With SKILLAUDIT_BEHIND_PROXY=1 the proxy (nginx with `proxy_set_header X-Forwarded-For
    $proxy_add_x_forwarded_for`) appends the peer it saw to X-Forwarded-For: the LAST entry
    is the one a client cannot forge. Without a proxy the header is the client's own words
    and is ignored, or anyone could dodge the lockout by sending a new one each time. Only
    a well-formed address is returned (django-axes stores it in an address column).
    """
    meta = getattr(request, "META", {})
    if getattr(settings, "SKILLAUDIT_BEHIND_PROXY", False):
        forwarded = _valid(meta.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1])
        if forwarded:
            return forwarded
    return _valid(meta.get("REMOTE_ADDR", "") or "")


def throttle_ident(request) -> str:
    return client_address(request) or "unknown"
