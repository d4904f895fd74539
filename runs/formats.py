"""Numbers, durations and sizes as plain text, the same on the dashboard and in the admin.

Plain text only (no HTML): each face escapes what it writes.
"""

from __future__ import annotations


def seconds(value) -> str:
    """1.234 -> '1.23 s', 75 -> '1m 15s', 4000 -> '1h 06m'."""
    if value is None or value == "":
        return "—"
    value = float(value)
    if value < 0:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.2f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def count(value) -> str:
    """Thousands separated with thin spaces: 1234567 -> '1 234 567'."""
    try:
        return f"{int(value):,}".replace(",", "\u2009")
    except (TypeError, ValueError):
        return ""


def size(value) -> str:
    value = int(value or 0)
    for unit in ("chars", "K", "M"):
        if value < 1000 or unit == "M":
            return f"{value} {unit}" if unit == "chars" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)
