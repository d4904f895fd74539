"""API authentication by hashed token, with failed tokens and anonymous calls throttled.

DRF authenticates before it checks permissions and throttles, so a request with a wrong
token is answered 401 before any DRF throttle runs, and an anonymous one 401 by the
permission check: neither would ever be counted. Both are counted here instead, per client
address, in Django's cache (a file cache shared by every gunicorn worker; see settings).
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle

from .clients import throttle_ident
from .models import ApiToken


class AddressThrottle(SimpleRateThrottle):
    """A DRF rate throttle keyed by the client address (runs.access.clients), in two steps:
    `blocked()` only looks, `record()` counts (DRF's allow_request does both at once)."""

    def get_cache_key(self, request, view=None):
        return self.cache_format % {"scope": self.scope, "ident": throttle_ident(request)}

    def _load(self, request) -> bool:
        if self.rate is None:
            return False
        self.key = self.get_cache_key(request)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return True

    def blocked(self, request) -> float | None:
        """Seconds to wait when the address is over its rate, else None."""
        if not self._load(request) or len(self.history) < self.num_requests:
            return None
        return max(self.wait() or 1, 1)

    def record(self, request) -> float | None:
        """Count one event; seconds to wait when this one reached the rate, else None."""
        if not self._load(request):
            return None
        self.throttle_success()
        if len(self.history) >= self.num_requests:
            return max(self.wait() or 1, 1)
        return None


class FailedTokenThrottle(AddressThrottle):
    scope = "failed_token"


class AnonymousThrottle(AnonRateThrottle):
    scope = "anon"

    def get_cache_key(self, request, view):
        # Called while DRF authenticates: asking request.user here would recurse.
        return self.cache_format % {"scope": self.scope, "ident": throttle_ident(request)}


def throttled(wait: float):
    return exceptions.Throttled(wait=wait, detail="Too many failed or anonymous requests.")


class HashedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` checked against the stored digests (runs.access.models).

    An address that sent FAILED_TOKEN_RATE wrong tokens gets 429 with Retry-After for every
    token request, right or wrong, until the window passes (a lockout, like the login's).
    """

    def authenticate(self, request):
        if not self._sends_token(request):
            return None
        failures = FailedTokenThrottle()
        wait = failures.blocked(request)
        if wait:
            raise throttled(wait)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            wait = failures.record(request)
            if wait:
                raise throttled(wait) from None
            raise

    def _sends_token(self, request) -> bool:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        return header.split(" ", 1)[0].lower() == self.keyword.lower()

    def authenticate_credentials(self, key):
        token = ApiToken.objects.matching(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)


class AnonymousRateLimit(BaseAuthentication):
    """Last in DEFAULT_AUTHENTICATION_CLASSES: reached only by requests no other class
    authenticated, it throttles them per address (they would get a 401 from the permission
    check before DRF's own throttles ran) and then lets them go on as anonymous."""

    def authenticate(self, request):
        throttle = AnonymousThrottle()
        if not throttle.allow_request(request, None):
            raise throttled(throttle.wait())
        return None
