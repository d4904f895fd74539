"""API tokens stored as salted SHA-256 digests, never in clear.

A key is 40 hex characters (160 random bits, the format of DRF's keys, so clients and the
`Authorization: Token <key>` header are unchanged). The table keeps its first 8 characters
(`prefix`, shown in the admin and used to find the row), a random per-token salt and
SHA-256(salt + key). The key itself is shown once, when it is made, and nowhere after: a
stolen database or admin screen gives no working key. A keyed hash is enough here because
the keys are random with 160 bits (no dictionary to try); a slow password hash would cost
every API request milliseconds for nothing. The salt, not the SECRET_KEY, keys the hash, so
rotating SECRET_KEY leaves the tokens working.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.conf import settings
from django.db import models

KEY_BYTES = 20  # 40 hex characters
PREFIX_CHARS = 8
# What a key sent by a client may look like before the table is asked: keys made here are
# hex, migrated ones are whatever DRF made (hex too); nothing with NUL or spaces, which
# PostgreSQL would refuse in a query (a 500).
KEY_SHAPE = re.compile(rf"[0-9A-Za-z_-]{{{PREFIX_CHARS},128}}")


def token_digest(salt: str, key: str) -> str:
    return hashlib.sha256((salt + key).encode()).hexdigest()


def hashed_fields(key: str) -> dict[str, str]:
    """The stored columns for a key (also used by the migration that hashed DRF's tokens)."""
    salt = secrets.token_hex(16)
    return {"prefix": key[:PREFIX_CHARS], "salt": salt, "digest": token_digest(salt, key)}


class ApiTokenManager(models.Manager):
    def create(self, *, user, **fields) -> ApiToken:
        """A new token for `user`; only the returned object's `.key` holds the key in clear.

        Keeps `Token.objects.create(user=u).key` (DRF's idiom) working for callers.
        """
        key = secrets.token_hex(KEY_BYTES)
        token = self.model(user=user, **fields, **hashed_fields(key))
        token.save(force_insert=True, using=self.db)
        token.key = key
        return token

    def matching(self, key: str) -> ApiToken | None:
        """The token whose key is `key`, with its user, or None (compared in constant time)."""
        if not KEY_SHAPE.fullmatch(key):
            return None
        found = None
        for token in self.select_related("user").filter(prefix=key[:PREFIX_CHARS]):
            if hmac.compare_digest(token.digest, token_digest(token.salt, key)):
                found = token
        return found


class ApiToken(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_token"
    )
    prefix = models.CharField(max_length=PREFIX_CHARS, db_index=True, editable=False)
    salt = models.CharField(max_length=32, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    objects = ApiTokenManager()

    class Meta:
        db_table = "api_tokens"
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
