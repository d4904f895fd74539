from django.urls import path

from . import stats_views, views  # noqa: F401 (converters registers <runid:>)

app_name = "runs"

urlpatterns = [
    path("", views.home, name="home"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/export/", views.runs_export, name="runs_export"),
    path("runs/<runid:run_id>/tree/", views.run_tree, name="run_tree"),
    path("runs/<runid:run_id>/live/", views.run_live, name="run_live"),
    path("runs/<runid:run_id>/export/", views.run_export, name="run_export"),
    path("runs/<runid:run_id>/raw/<str:field>/", views.run_raw, name="run_raw"),
    path("runs/<runid:run_id>/events/<int:sequence>/raw/", views.event_raw, name="event_raw"),
    path("runs/<runid:run_id>/", views.run_detail, name="run_detail"),
    path("skills/", views.skill_overview, name="skills"),
    path("stats/", stats_views.stats, name="stats"),
    path("suggest/<str:field>/", views.suggest, name="suggest"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
]
