from django.apps import AppConfig


class RunsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "runs"
    verbose_name = "Skill runs"

    def ready(self):
        # Connects the price writes' signals in every process, writers (load_prices, the
        # admin) included: runs.pricing keeps the price table per process between writes.
        from . import pricing  # noqa: F401
