"""Django's stock admin changelist over skill_runs: the peer the dashboard is compared with.

A plain ``ModelAdmin`` as one would write it in five minutes, on its own AdminSite, so it
exists only in the benchmark (``bench.settings_bench`` or ``override_settings``).
"""

from django.contrib import admin
from django.urls import path

from runs.models import SkillRun
from skillaudit_site.urls import urlpatterns as site_urlpatterns

stock_site = admin.AdminSite(name="stock_admin")


class StockSkillRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "skill_id",
        "caller_id",
        "channel_id",
        "status",
        "started_at",
        "finished_at",
        "runtime_seconds",
        "total_input_tokens",
        "total_output_tokens",
    )
    list_filter = ("status", "skill_id", "started_at")


stock_site.register(SkillRun, StockSkillRunAdmin)

CHANGELIST = "/stock-admin/runs/skillrun/"

urlpatterns = [path("stock-admin/", stock_site.urls), *site_urlpatterns]
