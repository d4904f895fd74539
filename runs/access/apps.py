from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Who gets in: hashed API tokens, failed-login lockout and API throttles."""

    name = "runs.access"
    # The label (migrations, table names, permissions) stays "access".
    label = "access"
    verbose_name = "API access"
    default_auto_field = "django.db.models.BigAutoField"
