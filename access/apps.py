from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Who gets in: hashed API tokens, failed-login lockout and API throttles (issue 13)."""

    name = "access"
    verbose_name = "API access"
    default_auto_field = "django.db.models.BigAutoField"
