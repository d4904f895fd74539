from django.contrib import admin
from django.urls import include, path

from runs.api.otlp import TracesView
from runs.web.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/", include("runs.api.urls")),
    path("v1/traces", TracesView.as_view(), name="otlp-traces"),
    path("", include("runs.web.urls")),
]
