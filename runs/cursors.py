"""Opaque keyset cursors for run lists: a position (started_at, id) in newest-first order."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from . import contract


class InvalidCursor(ValueError):
    pass


def encode(started_at: datetime, run_id: str) -> str:
    raw = json.dumps([started_at.astimezone(UTC).isoformat(), run_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, str]:
    if len(cursor) > 400:
        raise InvalidCursor("is too long to be a cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        started, run_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        started_at = datetime.fromisoformat(started)
    except (binascii.Error, ValueError, TypeError, UnicodeError):
        raise InvalidCursor("is not a cursor from this site") from None
    if not isinstance(run_id, str) or started_at.tzinfo is None:
        raise InvalidCursor("is not a cursor from this site")
    try:
        started_at = started_at.astimezone(UTC)
    except OverflowError:  # a forged cursor: year 1 or 9999 with an offset
        raise InvalidCursor("is not a cursor from this site") from None
    return started_at, contract.clean_text(run_id)
