"""Routes of the JSON API, mounted at /api/ (namespace "api").

Run ids may contain any character, "/" included: the routes with a suffix come before the
bare run route so that their greedy <runid:run_id> takes everything before the suffix.
"""

from django.urls import path, re_path
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView

from .. import converters  # noqa: F401 (registers <runid:>)
from . import contract_methods, index, stats
from . import export as transfer
from . import views as api

app_name = "api"

urlpatterns = [
    path("", index.ApiIndexView.as_view(), name="index"),
    path("runs/", api.RunListView.as_view(), name="runs"),
    # Before the run routes: a run whose id is "export" or "import" is read with
    # POST /api/contract/get_run/.
    path("runs/export/", transfer.RunsExportView.as_view(), name="runs-export"),
    path("runs/import/", transfer.RunsImportView.as_view(), name="runs-import"),
    path("runs/<runid:run_id>/logs/", api.RunLogsView.as_view(), name="run-logs"),
    path("runs/<runid:run_id>/finish/", api.RunFinishView.as_view(), name="run-finish"),
    path("runs/<runid:run_id>/chain/", api.RunChainView.as_view(), name="run-chain"),
    path("runs/<runid:run_id>/children/", api.RunChildrenView.as_view(), name="run-children"),
    path("runs/<runid:run_id>/tree/", api.RunTreeView.as_view(), name="run-tree"),
    path("runs/<runid:run_id>/export/", transfer.RunExportView.as_view(), name="run-export"),
    path("runs/<runid:run_id>/", api.RunDetailView.as_view(), name="run"),
    path("skills/last-run/", api.LastRunView.as_view(), name="last-run"),
    path("stats/", stats.StatsView.as_view(), name="stats"),
    *contract_methods.urls(),
    # JSON by default; YAML for Accept: application/vnd.oai.openapi.
    path(
        "schema/",
        SpectacularAPIView.as_view(renderer_classes=[OpenApiJsonRenderer, OpenApiYamlRenderer]),
        name="schema",
    ),
    # Everything else under /api/ is a JSON 404, not the site's HTML page.
    re_path(r"[\s\S]*", api.not_found, name="not-found"),
]
