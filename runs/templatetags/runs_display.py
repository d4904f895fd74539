"""Small display helpers for the dashboard. Every value they return is escaped."""

from datetime import UTC, datetime

from django import template
from django.contrib.admin.utils import quote
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def when(value: datetime | None, empty: str = "—"):
    """A <time> that static/runs.js shows in the reader's local time; UTC on hover."""
    if value is None:
        return empty
    utc = value.astimezone(UTC)
    exact = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return format_html('<time datetime="{}" title="{}">{}</time>', utc.isoformat(), exact, exact)


@register.filter
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


@register.filter
def count(value) -> str:
    """Thousands separated with thin spaces: 1234567 -> '1 234 567'."""
    try:
        return f"{int(value):,}".replace(",", "\u2009")
    except (TypeError, ValueError):
        return ""


@register.filter
def size(value) -> str:
    value = int(value or 0)
    for unit in ("chars", "K", "M"):
        if value < 1000 or unit == "M":
            return f"{value} {unit}" if unit == "chars" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


@register.filter
def status_class(status: str) -> str:
    """A CSS class for a status badge; unknown statuses get a neutral one."""
    known = {
        "ok": "ok",
        "running": "running",
        "error": "bad",
        "timeout": "bad",
        "budget_exceeded": "warn",
        "dry_run": "muted",
        "preempted": "warn",
        "lane_busy": "warn",
    }
    return known.get(status, "muted")


@register.filter
def admin_pk(value: str) -> str:
    """A primary key as the admin's URLs carry it (its own escaping of / _ : and friends)."""
    return quote(value)
