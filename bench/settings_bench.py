"""The project's settings with the stock-admin peer mounted at /stock-admin/ (bench only)."""

from skillaudit_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.stock_admin"
